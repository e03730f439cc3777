"""The lease: what a job may do, checked on every action and every delegation (§9).

A lease maps namespaces to glob patterns (§9.2). Everything an agent does
through the runtime is checked against it (§9.3), so the one property this
package exists for is: **no spelling of a resource escapes a grant**. Both
the patterns and every resource checked against them are reduced to one
canonical form (:mod:`arcp_grpc.lease.canonical`) and only then matched
segment by segment (:mod:`arcp_grpc.lease.patterns`), by the matcher of the
namespace's family (:mod:`arcp_grpc.lease.matchers`). Callers should act on
the canonical resource :meth:`Lease.authorize` returns, so that what was
checked is exactly what is touched.

A delegated job's lease must be a subset of its parent's (§9.4), its
``cost.budget`` included (§9.6; amounts in :mod:`arcp_grpc.lease.budget`).
Expiry (§9.5) is :mod:`arcp_grpc.lease.expiry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType

from arcp_grpc.errors import InvalidRequest, LeaseSubsetViolation, PermissionDenied
from arcp_grpc.lease.budget import format_amount, parse_amount
from arcp_grpc.lease.matchers import BUDGET_NAMESPACE, Matcher, matcher_class

__all__ = ["Lease", "check_subset"]

# Bounds so a hostile lease cannot make matching or subsetting expensive.
_MAX_NAMESPACES = 32
_MAX_PATTERNS = 256


def _violation(message: str, **details: str) -> LeaseSubsetViolation:
    return LeaseSubsetViolation(f"{message} (§9.4)", details=details)


class Lease:
    """An immutable, validated, canonical lease (§9.1, §9.2).

    Build one with :meth:`parse` (a client's ``lease_request``) or
    :meth:`derive_child` (a delegation, §9.4). Patterns are stored in their
    canonical spelling, namespaces sorted, duplicates removed, so the
    effective lease echoed in ``job.accepted`` is deterministic.
    """

    __slots__ = ("_budget", "_grants", "_matchers")

    def __init__(
        self,
        grants: Mapping[str, tuple[str, ...]],
        matchers: Mapping[str, tuple[Matcher, ...]],
        budget: Mapping[str, Decimal],
    ) -> None:
        """Internal: use :meth:`parse` or :meth:`derive_child`."""
        self._grants = MappingProxyType({ns: grants[ns] for ns in sorted(grants)})
        self._matchers = dict(matchers)
        self._budget = dict(budget)

    @classmethod
    def parse(cls, grants: Mapping[str, Sequence[str]]) -> Lease:
        """Validate and canonicalise a ``lease_request`` (§9.2).

        Unknown namespaces (neither reserved nor ``x-``), malformed patterns
        and two different amounts for one currency raise
        :class:`InvalidRequest` whose ``details.field`` points at the
        offender, e.g. ``lease_request.fs.read[1]``.
        """
        if not isinstance(grants, Mapping):
            raise InvalidRequest(
                "lease_request must be an object", details={"field": "lease_request"}
            )
        if len(grants) > _MAX_NAMESPACES:
            raise InvalidRequest(
                f"lease_request has more than {_MAX_NAMESPACES} namespaces",
                details={"field": "lease_request"},
            )
        canonical: dict[str, tuple[str, ...]] = {}
        matchers: dict[str, tuple[Matcher, ...]] = {}
        budget: dict[str, Decimal] = {}
        for namespace in sorted(grants, key=str):
            patterns = _pattern_list(namespace, grants[namespace])
            if namespace == BUDGET_NAMESPACE:
                canonical[namespace], budget = _parse_budget(patterns)
                matchers[namespace] = ()
                continue
            klass = matcher_class(namespace)
            if klass is None:
                field = f"lease_request.{namespace}"
                raise InvalidRequest(
                    f"{field}: namespace {namespace!r} is neither reserved (§9.2) "
                    "nor 'x-' prefixed",
                    details={"field": field},
                )
            compiled: dict[str, Matcher] = {}
            for index, pattern in enumerate(patterns):
                try:
                    matcher = klass(pattern)
                except InvalidRequest as exc:
                    raise _field_error(namespace, index, exc.message) from None
                compiled.setdefault(matcher.text, matcher)
            canonical[namespace] = tuple(compiled)
            matchers[namespace] = tuple(compiled.values())
        return cls(canonical, matchers, budget)

    @property
    def grants(self) -> Mapping[str, tuple[str, ...]]:
        """Canonical patterns per namespace; namespaces sorted, pattern order kept."""
        return self._grants

    def to_dict(self) -> dict[str, list[str]]:
        """The lease as plain JSON-ready data, for ``job.accepted`` (§7.1)."""
        return {namespace: list(patterns) for namespace, patterns in self._grants.items()}

    def budget_amounts(self) -> dict[str, Decimal]:
        """``cost.budget`` as currency → amount (§9.6); empty without a budget."""
        return dict(self._budget)

    def permits(self, namespace: str, resource: str) -> bool:
        """Whether the lease covers ``resource`` in ``namespace`` (§9.3).

        The resource is canonicalised exactly as patterns were; a resource
        that cannot be canonicalised (relative path, NUL, userinfo, ...) and
        a namespace the lease lacks are both simply not permitted.
        ``cost.budget`` is not an authority namespace and permits nothing.
        """
        matchers = self._matchers.get(namespace)
        if not matchers:
            return False
        try:
            value = matchers[0].parse_value(resource)
        except InvalidRequest:
            return False
        return any(matcher.matches(value) for matcher in matchers)

    def authorize(self, namespace: str, resource: str) -> str:
        """Check ``resource`` (§9.3) and return the canonical form to act on.

        Raises :class:`PermissionDenied` when not covered. Acting on the
        returned spelling, not the caller's, guarantees the operation touches
        exactly what the lease was checked against.
        """
        matchers = self._matchers.get(namespace)
        if not matchers:
            raise PermissionDenied(
                f"the lease grants nothing in {namespace!r} (§9.3)",
                details={"namespace": namespace},
            )
        try:
            value = matchers[0].parse_value(resource)
        except InvalidRequest as exc:
            raise PermissionDenied(
                f"{namespace} resource rejected: {exc.message} (§9.3)",
                details={"namespace": namespace},
            ) from None
        if not any(matcher.matches(value) for matcher in matchers):
            raise PermissionDenied(
                f"{namespace} {resource!r} is not covered by the lease (§9.3)",
                details={"namespace": namespace, "resource": resource},
            )
        return value.text

    def derive_child(
        self,
        request: Mapping[str, Sequence[str]] | None,
        parent_remaining: Mapping[str, Decimal],
    ) -> Lease:
        """The lease of a delegated job, ``self`` being the delegating job's (§9.4, §10).

        ``parent_remaining`` is what the parent may still hand out per
        currency (``BudgetCounters.available()``). Without a request the
        child inherits this lease with each budget capped at the remaining
        amount. A request is parsed and must be a subset
        (:func:`check_subset`); then two bounds are filled in from the
        parent so that no runtime default can widen the child: budget
        currencies the child did not name are inherited (capped), so every
        cost the child reports is also charged to the parent; and
        ``model.use`` is inherited when the child omits it, because an
        absent ``model.use`` may mean "any model" by policy (§9.7).
        """
        inherited_budget = _capped_budget(self._budget, parent_remaining)
        if request is None:
            grants = dict(self._grants)
            matchers = dict(self._matchers)
            budget = inherited_budget
        else:
            child = Lease.parse(request)
            check_subset(child, self, parent_remaining=parent_remaining)
            grants = dict(child._grants)
            matchers = dict(child._matchers)
            budget = {**inherited_budget, **child._budget}
            if "model.use" in self._grants and "model.use" not in grants:
                grants["model.use"] = self._grants["model.use"]
                matchers["model.use"] = self._matchers["model.use"]
        if BUDGET_NAMESPACE in self._grants or BUDGET_NAMESPACE in grants:
            budget = {currency: budget[currency] for currency in sorted(budget)}
            grants[BUDGET_NAMESPACE] = tuple(
                f"{currency}:{format_amount(amount)}" for currency, amount in budget.items()
            )
            matchers[BUDGET_NAMESPACE] = ()
        return Lease(grants, matchers, budget)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lease):
            return NotImplemented
        return self._grants == other._grants

    def __hash__(self) -> int:
        return hash(tuple(self._grants.items()))

    def __repr__(self) -> str:
        return f"Lease({self.to_dict()!r})"


def _field_error(namespace: str, index: int, message: str) -> InvalidRequest:
    field = f"lease_request.{namespace}[{index}]"
    return InvalidRequest(f"{field}: {message}", details={"field": field})


def _pattern_list(namespace: object, patterns: object) -> Sequence[str]:
    if not isinstance(namespace, str):
        raise InvalidRequest("lease namespaces must be strings", details={"field": "lease_request"})
    field = f"lease_request.{namespace}"
    # A bare string is a Sequence too; "fs.read": "/ws/**" is a client bug.
    if isinstance(patterns, str | bytes) or not isinstance(patterns, Sequence):
        raise InvalidRequest(f"{field} must be a list of strings", details={"field": field})
    if len(patterns) > _MAX_PATTERNS:
        raise InvalidRequest(
            f"{field} has more than {_MAX_PATTERNS} patterns", details={"field": field}
        )
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            raise _field_error(namespace, index, "pattern must be a string")
    return patterns


def _parse_budget(patterns: Sequence[str]) -> tuple[tuple[str, ...], dict[str, Decimal]]:
    budget: dict[str, Decimal] = {}
    texts: dict[str, str] = {}
    for index, pattern in enumerate(patterns):
        try:
            currency, amount = parse_amount(pattern)
        except InvalidRequest as exc:
            raise _field_error(BUDGET_NAMESPACE, index, exc.message) from None
        if currency in budget:
            # A repeat of the same amount is a duplicate; another is ambiguous.
            if budget[currency] != amount:
                raise _field_error(
                    BUDGET_NAMESPACE, index, f"a second, different amount for {currency!r}"
                )
            continue
        budget[currency] = amount
        texts[currency] = f"{currency}:{format_amount(amount)}"
    return tuple(texts.values()), budget


def _budget_limit(granted: Decimal, remaining: Decimal | None) -> Decimal:
    return granted if remaining is None or granted <= remaining else remaining


def _capped_budget(
    budget: Mapping[str, Decimal], remaining: Mapping[str, Decimal]
) -> dict[str, Decimal]:
    capped: dict[str, Decimal] = {}
    for currency, granted in budget.items():
        limit = _budget_limit(granted, remaining.get(currency))
        # An overspent parent hands out nothing, not a negative amount.
        capped[currency] = limit if limit > 0 else Decimal(0)
    return capped


def check_subset(child: Lease, parent: Lease, *, parent_remaining: Mapping[str, Decimal]) -> None:
    """Raise :class:`LeaseSubsetViolation` unless ``child`` ⊆ ``parent`` (§9.4).

    Every child pattern must be covered by one parent pattern of the same
    namespace (pattern contains pattern, decided conservatively: when in
    doubt, not covered). A child budget must name only parent currencies and
    stay within what the parent has left (``parent_remaining``, or the
    parent's granted amount for a currency missing from it). Namespaces are
    checked in sorted order; the error names the first offender.
    """
    for namespace, patterns in child.grants.items():
        if namespace == BUDGET_NAMESPACE:
            _check_budget_subset(child, parent, parent_remaining)
            continue
        if not patterns:
            continue
        parent_matchers = parent._matchers.get(namespace)
        if parent_matchers is None:
            raise _violation(
                f"the parent lease grants nothing in {namespace!r}", namespace=namespace
            )
        for index, matcher in enumerate(child._matchers[namespace]):
            if not any(candidate.covers(matcher) for candidate in parent_matchers):
                raise _violation(
                    f"{namespace} {matcher.text!r} is not covered by the parent lease",
                    namespace=namespace,
                    pattern=matcher.text,
                    field=f"lease_request.{namespace}[{index}]",
                )


def _check_budget_subset(
    child: Lease, parent: Lease, parent_remaining: Mapping[str, Decimal]
) -> None:
    for currency, amount in child.budget_amounts().items():
        granted = parent._budget.get(currency)
        if granted is None:
            raise _violation(
                f"cost.budget currency {currency!r} is not in the parent's budget",
                namespace=BUDGET_NAMESPACE,
                pattern=f"{currency}:{format_amount(amount)}",
            )
        limit = _budget_limit(granted, parent_remaining.get(currency))
        if amount > limit:
            raise _violation(
                f"cost.budget {currency}:{format_amount(amount)} exceeds the parent's "
                f"remaining {currency}:{format_amount(limit)}",
                namespace=BUDGET_NAMESPACE,
                pattern=f"{currency}:{format_amount(amount)}",
            )
