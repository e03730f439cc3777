"""A job's authority in server frames: lease, budget and credentials (§9), both ways.

``job.accepted``, ``job.subscribed`` and each ``session.jobs`` entry carry the
same fields: the lease (§9.2) and its constraints (§9.5), the budget (§9.6)
and the provisioned credentials (§9.8). Where the two wire profiles differ
(budget counters, credential schemes) the rendering and the reading are kept
side by side here, so that what one writes the other reads back; the frame
renderers (:mod:`gateway._render_frames`) and readers
(:mod:`gateway._read_frames`, :mod:`gateway._read_events` for ``delegate``,
§10) share them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final

from arcp_grpc.v1 import lease_pb2
from gateway._fields import (
    bad,
    get_list,
    get_object,
    read_credential,
    read_lease,
    render_credential,
    render_lease,
    render_lease_constraints,
    type_name,
)
from gateway._values import Raw

if TYPE_CHECKING:  # the protobuf stubs' container type; annotations only
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

__all__ = ["read_budget", "read_credentials", "read_rendered_lease", "render_authority"]

_DECIMAL_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


def _budget(budget: Mapping[str, str], sdk: bool) -> dict[str, Any]:
    # §9.6 counters are exact decimal strings in the proto. The spec renders
    # them as JSON numbers, written here as the exact token (`5.00`); the
    # published client wants `"USD:5.00"` strings.
    out: dict[str, Any] = {}
    for currency in sorted(budget):
        amount: str = budget[currency]
        if _DECIMAL_RE.fullmatch(amount) is None:
            try:
                parsed = Decimal(amount)
            except InvalidOperation:
                raise ValueError(f"budget[{currency!r}] = {amount!r} is not a decimal") from None
            if not parsed.is_finite():
                raise ValueError(f"budget[{currency!r}] = {amount!r} is not a decimal")
            amount = format(parsed, "f")
        out[currency] = f"{currency}:{amount}" if sdk else Raw(amount)
    return out


def _credentials(creds: Iterable[lease_pb2.Credential], sdk: bool) -> list[dict[str, Any]]:
    # §9.8.1: clients ignore schemes they do not know; the published client
    # instead fails the whole frame on anything but "bearer", so the
    # compatibility profile leaves other schemes out.
    return [render_credential(c) for c in creds if not sdk or c.scheme == "bearer"]


def render_authority(
    out: dict[str, Any],
    sdk: bool,
    *,
    lease: lease_pb2.Lease,
    constraints: lease_pb2.LeaseConstraints,
    has_constraints: bool,
    budget: Mapping[str, str],
    credentials: Iterable[lease_pb2.Credential],
) -> None:
    """Write a job's lease, constraints, budget and credentials into ``out`` (§9)."""
    out["lease"] = render_lease(lease)
    if has_constraints:
        out["lease_constraints"] = render_lease_constraints(constraints)
    if budget:
        out["budget"] = _budget(budget, sdk)
    if credentials:
        rendered = _credentials(credentials, sdk)
        if rendered:
            out["credentials"] = rendered


def read_budget(payload: dict[str, Any], path: str, into: MutableMapping[str, str]) -> None:
    """Read ``budget`` in either profile's form into exact decimal strings (§9.6)."""
    budget = get_object(payload, "budget", path)
    for currency, amount in (budget or {}).items():
        where = f"{path}.budget.{currency}"
        if type(amount) is str:
            prefix = f"{currency}:"
            if not amount.startswith(prefix):
                raise bad(where, f"must look like {prefix}<decimal>")
            into[currency] = amount[len(prefix) :]
        elif type(amount) is int:
            into[currency] = str(amount)
        elif type(amount) is Decimal and amount.is_finite():
            into[currency] = format(amount, "f")  # plain notation, never 1E-7
        else:
            raise bad(where, f"must be a number or a string, got {type_name(amount)}")


def read_credentials(
    payload: dict[str, Any],
    path: str,
    into: RepeatedCompositeFieldContainer[lease_pb2.Credential],
) -> None:
    """Read ``credentials`` (§9.8.1) into ``into``."""
    for index, item in enumerate(get_list(payload, "credentials", path) or ()):
        read_credential(item, f"{path}.credentials[{index}]", into.add())


def read_rendered_lease(obj: dict[str, Any], path: str, parent: Any) -> None:
    """Read ``lease`` into ``parent.lease``, leaving it unset when empty.

    The renderer always sends `lease` (the published client defaults it to
    {}), so an empty one reads back as the unset field it came from."""
    if read_lease(obj, "lease", path, parent.lease) and not parent.lease.capabilities:
        parent.ClearField("lease")
