"""What one caller may see of a job: one value per call (JobService) or per session.

A `Disclosure` is built once from the caller's principal, the features it
negotiated and the verdict on its transport, and every edge asks it; nothing else
decides what of an acceptance, a summary or an event goes out.

- **Credential values** (§9.8, §14): to the submitting principal only (§7.6:
  "credentials follow the submitter only", `access.is_submitter`), only while the
  job runs (§9.8.2: revoked at its end; DESIGN.md "Replay after a rotation": after
  that no introspection surface shows one), only to a caller that negotiated
  `provisioned_credentials` (§6.2) and only over an encrypted or local transport
  unless the operator opted in to plaintext (§14, `service.transport_policy`). The
  same holds for `credential_rotated` events, which carry a value (§9.8.2).
- **Budget counters and lease bounds** follow the observing principal, not the
  submitter (§7.6): any caller that may see the job sees them, budgets only if it
  negotiated `cost.budget` (§6.2).
- **The submission's input** (kept so that its owner can run a job again): to the
  submitting principal only, like its credentials; listings never carry it
  (`JobQueries.list_jobs` clears it: a page of summaries stays light).
- **Negotiated features** (§6.2): a field of a feature the caller did not negotiate
  never reaches it. A JobService caller negotiates nothing and is served as one that
  negotiated every feature (`JOB_SERVICE_FEATURES`).

Exact replay (§7.2): `accepted` returns the stored bytes themselves unless a rule
strips a field; then it re-serialises deterministically, so a replay to the same
caller is still byte-identical. The acceptance reaches only its submitter (the
replay cache is keyed by principal), so no submitter test is needed there, and it
is not redacted after the job ended: the replayed payload is the original (§7.2).

Cost: the transport verdict can be dear (it reads a gRPC call's peer, auth context
and metadata), so a `Transport` may decide lazily; a `Disclosure` asks it last, and
only when a credential value is about to go out. Sessions fold the verdict into
their features at hello (a client on a plaintext transport is served as one that did
not ask for `provisioned_credentials`) and use `CLEAR`. Nothing here allocates per
event: `rotations` is asked once per delivery, `events` copies a batch only when it
holds a rotation to withhold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from arcp_grpc.runtime.access import is_submitter
from arcp_grpc.runtime.job_credentials import is_rotation, may_be_rotation
from arcp_grpc.v1 import jobs_pb2, lease_pb2

__all__ = [
    "BUDGET_FEATURE",
    "CLEAR",
    "CREDENTIALS_FEATURE",
    "JOB_SERVICE_FEATURES",
    "Disclosure",
    "Transport",
]

CREDENTIALS_FEATURE = "provisioned_credentials"  # §9.8
BUDGET_FEATURE = "cost.budget"  # §9.6
#: The features whose fields a `JobAccepted` or `JobSummary` may hold; a JobService
#: caller, which negotiates nothing, is served all of them.
JOB_SERVICE_FEATURES = frozenset({CREDENTIALS_FEATURE, BUDGET_FEATURE})


class Transport(Protocol):
    """The §14 verdict on one caller's transport, decided once (perhaps only when
    first asked)."""

    def carries_credentials(self) -> bool:
        """Credential values may travel to this caller (encrypted or local hops, or
        the operator's opt-in to plaintext)."""
        ...


class _Clear:
    __slots__ = ()

    def carries_credentials(self) -> bool:
        return True


#: A transport known to carry credentials, or one whose verdict is already folded into
#: the negotiated features (a session's): asking it costs nothing.
CLEAR: Transport = _Clear()


@dataclass(frozen=True, slots=True)
class Disclosure:
    """What `principal`, with `features` over `transport`, may see of a job."""

    principal: str
    features: frozenset[str]
    transport: Transport = CLEAR

    def credentials(
        self, submitter: str, *, running: bool, values: Sequence[lease_pb2.Credential]
    ) -> Sequence[lease_pb2.Credential]:
        """The credential values of a job of `submitter` this caller may see (§9.8,
        §14): `values`, or none. The transport is asked last, and only for values."""
        if not values or not running or not self._may_hold_credentials(submitter):
            return ()
        return values if self.transport.carries_credentials() else ()

    def summary(
        self,
        summary: jobs_pb2.JobSummary,
        submitter: str,
        *,
        running: bool,
        credentials: Sequence[lease_pb2.Credential],
    ) -> jobs_pb2.JobSummary:
        """`summary` (which holds no credentials) as this caller may see it, in place:
        the job's credential values added if it may see them, the budget counters
        cleared unless it negotiated `cost.budget` (§6.2, §7.6), the input unless it
        submitted the job."""
        if BUDGET_FEATURE not in self.features:
            summary.budget.clear()
        if not is_submitter(self.principal, submitter):
            summary.ClearField("input")
        shown = self.credentials(submitter, running=running, values=credentials)
        if shown:
            summary.credentials.extend(shown)
        return summary

    def accepted(self, accepted: bytes) -> bytes:
        """The stored acceptance as this caller may see it: the bytes themselves unless
        a rule strips a field, else the message without it, serialised
        deterministically so a replay is still identical (§7.2)."""
        if self.transport is CLEAR and self.features >= JOB_SERVICE_FEATURES:
            return accepted
        message = jobs_pb2.JobAccepted.FromString(accepted)
        stripped = False
        if message.credentials and not self._credentials_flow():
            del message.credentials[:]
            stripped = True
        if message.budget and BUDGET_FEATURE not in self.features:
            message.budget.clear()
            stripped = True
        return message.SerializeToString(deterministic=True) if stripped else accepted

    def rotations(self, submitter: str) -> bool:
        """`credential_rotated` events of a job of `submitter` may go to this caller
        (§9.8.2: they carry a value; §14). Asked once per delivery, so it decides the
        transport verdict at once: use `events` where that must wait for a rotation."""
        return self._may_hold_credentials(submitter) and self.transport.carries_credentials()

    @staticmethod
    def may_rotate(events: Sequence[bytes]) -> bool:
        """Whether `events` may hold a `credential_rotated` event, the only kind whose
        disclosure depends on who submitted the job: a caller that must look the
        submitter up does so only then (most batches hold none)."""
        return any(map(may_be_rotation, events))

    def events(self, events: Sequence[bytes], submitter: str) -> Sequence[bytes]:
        """The events of a job of `submitter` this caller may see: `events` itself
        unless it holds a rotation the caller may not, then a copy without those."""
        if not self.may_rotate(events) or self.rotations(submitter):
            return events
        return [e for e in events if not is_rotation(e)]

    def _may_hold_credentials(self, submitter: str) -> bool:
        return CREDENTIALS_FEATURE in self.features and is_submitter(self.principal, submitter)

    def _credentials_flow(self) -> bool:
        return CREDENTIALS_FEATURE in self.features and self.transport.carries_credentials()
