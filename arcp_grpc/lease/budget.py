"""Budget amounts and counters (spec §9.6, §9.4, §10).

Money is never a float here: amounts are parsed into :class:`~decimal.Decimal`
and all arithmetic runs in a wide decimal context, so ``0.1 + 0.2`` is
exactly ``0.3`` and a budget of ``USD:5.00`` reaches exactly zero after
fifty charges of ``0.10``.

A delegated job's counters hang off its parent's (:class:`BudgetCounters`
``parent=``): what a child spends is charged to every ancestor too, so a
parent can never be overspent through its children.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Context, Decimal, InvalidOperation

from arcp_grpc.errors import InvalidRequest

__all__ = ["BudgetCounters", "format_amount", "parse_amount"]

# §9.6: amount ::= currency ":" decimal; decimal ::= digits ("." digits)?.
# ASCII classes only; the currency length cap is this runtime's choice.
_AMOUNT = re.compile(r"([A-Za-z][A-Za-z0-9_-]{0,15}):([0-9]+(?:\.[0-9]+)?)")
_MAX_AMOUNT_LENGTH = 64

# Wide enough that no realistic sum of amounts is ever rounded; with the
# default 28 digits a large budget minus a tiny charge would be.
_CONTEXT = Context(prec=120, traps=[InvalidOperation])


def parse_amount(text: str) -> tuple[str, Decimal]:
    """Parse ``currency:decimal`` (§9.6) into ``(currency, amount)``.

    The decimal keeps its written scale (``USD:5.00`` → ``Decimal('5.00')``)
    so it can be echoed back as written. Negative, exponent, signed or
    non-ASCII forms are rejected with :class:`InvalidRequest`.
    """
    if not isinstance(text, str) or len(text) > _MAX_AMOUNT_LENGTH:
        raise InvalidRequest(
            "budget amount must be a string of the form 'CUR:decimal' (§9.6)",
            details={"field": "cost.budget"},
        )
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise InvalidRequest(
            f"budget amount {text!r} is not of the form 'CUR:decimal' (§9.6)",
            details={"field": "cost.budget"},
        )
    return match.group(1), Decimal(match.group(2))


def format_amount(value: Decimal) -> str:
    """The exact decimal string of ``value``, never in exponent form.

    ``Decimal('5.00')`` → ``'5.00'``, ``Decimal('1E+2')`` → ``'100'``. Used
    for budget snapshots and echoes, which must not lose or invent digits.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return format(value, "f")


class BudgetCounters:
    """Per-currency budget counters of one job, chained to its ancestors (§9.6, §10).

    Counters start at the lease's ``cost.budget`` amounts and are decremented
    by reported cost. They may go below zero: cost is reported after the
    fact (§9.6), and :meth:`exhausted` then says so.
    """

    __slots__ = ("_counters", "_parent")

    def __init__(
        self, initial: Mapping[str, Decimal], parent: BudgetCounters | None = None
    ) -> None:
        self._counters: dict[str, Decimal] = {}
        for currency in sorted(initial):
            amount = initial[currency]
            if not isinstance(amount, Decimal) or not amount.is_finite():
                raise ValueError(f"budget for {currency!r} is not a finite Decimal")
            self._counters[currency] = amount
        self._parent = parent

    @property
    def currencies(self) -> tuple[str, ...]:
        """The budgeted currencies of this job, sorted."""
        return tuple(self._counters)

    @property
    def parent(self) -> BudgetCounters | None:
        """The delegating job's counters, if this job was delegated (§10)."""
        return self._parent

    def charge(self, currency: str, amount: Decimal) -> bool:
        """Decrement ``currency`` by ``amount`` here and in every ancestor (§9.6).

        Returns ``False`` (and changes nothing) when this job has no budget in
        ``currency``: unbudgeted cost is not enforced (§9.6). A negative or
        non-finite amount is rejected with :class:`InvalidRequest` and
        decrements nothing.
        """
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise InvalidRequest(
                f"cost must be a non-negative finite number, got {amount!r} (§9.6)",
                details={"field": "value", "unit": currency},
            )
        if currency not in self._counters:
            return False
        node: BudgetCounters | None = self
        while node is not None:
            current = node._counters.get(currency)
            if current is not None:
                node._counters[currency] = _CONTEXT.subtract(current, amount)
            node = node._parent
        return True

    def exhausted(self) -> str | None:
        """The first currency at or below zero here or in any ancestor, else ``None``.

        §9.6: any counter ≤ 0 blocks every lease-bearing operation; a child
        whose parent has run dry is blocked too, since its spend counts
        against the parent.
        """
        node: BudgetCounters | None = self
        while node is not None:
            for currency, value in node._counters.items():
                if value <= 0:
                    return currency
            node = node._parent
        return None

    def remaining(self, currency: str) -> Decimal | None:
        """This job's counter for ``currency``, or ``None`` if it is not budgeted."""
        return self._counters.get(currency)

    def available(self) -> dict[str, Decimal]:
        """Per currency of this job, the least counter along the ancestor chain.

        This is what a delegation may still hand out (§9.4): pass it as
        ``parent_remaining`` to :meth:`arcp_grpc.lease.lease.Lease.derive_child`.
        """
        result: dict[str, Decimal] = {}
        for currency, value in self._counters.items():
            least = value
            node = self._parent
            while node is not None:
                other = node._counters.get(currency)
                if other is not None and other < least:
                    least = other
                node = node._parent
            result[currency] = least
        return result

    def snapshot(self) -> dict[str, str]:
        """This job's counters as exact decimal strings, sorted by currency."""
        return {currency: format_amount(value) for currency, value in self._counters.items()}

    def __repr__(self) -> str:
        return f"BudgetCounters({self.snapshot()!r})"
