"""The codec's small public value types: a decoded client frame and the dialect."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from arcp_grpc.v1 import session_service_pb2

__all__ = ["ClientFrame", "CloseForm", "Dialect", "ResumeForm"]


class ResumeForm(enum.Enum):
    """How a client asked to resume (see DESIGN.md "Wire dialects")."""

    IN_HELLO = "session.hello"
    """``session.hello`` with ``payload.resume``: the published SDKs' form."""
    SESSION_RESUME = "session.resume"
    """A separate ``session.resume`` frame: the v1.1 text's form (§6.3)."""


class CloseForm(enum.Enum):
    """How a client ends a session, and so how the gateway says goodbye."""

    BYE = "session.bye"
    """``session.bye``, answered and announced with ``session.bye`` (the SDKs' form)."""
    CLOSE = "session.close"
    """``session.close``, answered with ``session.closed`` (§6.7)."""


@dataclass(frozen=True, slots=True)
class ClientFrame:
    """One decoded client frame.

    ``request`` goes to the core as is. ``resume_form`` / ``close_form`` are
    set only on frames that resume or close, so the gateway can fold them into
    its :class:`Dialect` with :meth:`Dialect.learn`.
    """

    request: session_service_pb2.ConnectRequest
    type: str
    resume_form: ResumeForm | None = None
    close_form: CloseForm | None = None


@dataclass(frozen=True, slots=True)
class Dialect:
    """The per-connection wire choices learnt from what the client sent.

    The defaults are the published SDKs' forms: a runtime-initiated close has
    no form in the v1.1 text (``session.closed`` only acknowledges a
    ``session.close``), while every SDK client handles ``session.bye``.
    """

    resume: ResumeForm = ResumeForm.IN_HELLO
    close: CloseForm = CloseForm.BYE

    def learn(self, frame: ClientFrame) -> Dialect:
        """This dialect updated with whatever ``frame`` reveals (self when nothing)."""
        if frame.resume_form is not None and frame.resume_form is not self.resume:
            return replace(self, resume=frame.resume_form)
        if frame.close_form is not None and frame.close_form is not self.close:
            return replace(self, close=frame.close_form)
        return self
