"""Budget amounts and counters (§9.6): exact decimals, child spend charged to parents (§10)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arcp_grpc.errors import InvalidRequest
from arcp_grpc.lease.budget import BudgetCounters, format_amount, parse_amount

D = Decimal


@pytest.mark.parametrize(
    ("text", "currency", "amount"),
    [
        ("USD:5.00", "USD", D("5.00")),
        ("credits:1000", "credits", D("1000")),  # §9.6 example
        ("EUR:0", "EUR", D("0")),
        ("USD:0.0234", "USD", D("0.0234")),
        ("x_1-y:7", "x_1-y", D("7")),
        ("A" + "b" * 15 + ":1", "A" + "b" * 15, D("1")),
    ],
)
def test_parse_amount_valid(text: str, currency: str, amount: Decimal) -> None:
    got_currency, got_amount = parse_amount(text)
    assert got_currency == currency
    assert got_amount == amount
    assert format_amount(got_amount) == text.split(":", 1)[1]  # scale is kept


@pytest.mark.parametrize(
    "text",
    [
        "",
        "USD",
        "USD:",
        ":5",
        "USD:-1",  # non-negative only
        "USD:+1",
        "USD:1e3",  # no exponent
        "USD:1.",
        "USD:.5",
        "USD:1.2.3",
        "USD: 1",
        "USD :1",
        "1USD:1",  # currency starts with a letter
        "U$D:1",
        "A" + "b" * 16 + ":1",  # currency over 16 characters
        "USD:١",  # Arabic-Indic digit: \d would accept it
        "USD:NaN",
        "USD:Infinity",
        "USD:1\n",
        "USD:" + "9" * 100,
    ],
)
def test_parse_amount_invalid(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_amount(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("5.00"), "5.00"),
        (D("0.0234"), "0.0234"),
        (D("-0.50"), "-0.50"),
        (D("1E+2"), "100"),
        (D("1E-7"), "0.0000001"),
        (D("0"), "0"),
        (D("0.1") + D("0.2"), "0.3"),
    ],
)
def test_format_amount_is_exact_and_never_exponent(value: Decimal, text: str) -> None:
    assert format_amount(value) == text


@pytest.mark.parametrize("value", [D("NaN"), D("Infinity"), D("-Infinity")])
def test_format_amount_rejects_non_finite(value: Decimal) -> None:
    with pytest.raises(ValueError, match="finite"):
        format_amount(value)


def test_tenths_sum_exactly() -> None:
    counters = BudgetCounters({"USD": D("0.3")})
    assert counters.charge("USD", D("0.1"))
    assert counters.charge("USD", D("0.2"))
    assert counters.remaining("USD") == D("0")
    assert counters.exhausted() == "USD"  # ≤ 0 blocks (§9.6)


def test_fifty_dimes_reach_exactly_zero() -> None:
    counters = BudgetCounters({"USD": D("5.00")})
    for _ in range(49):
        counters.charge("USD", D("0.10"))
    assert counters.snapshot() == {"USD": "0.10"}
    assert counters.exhausted() is None
    counters.charge("USD", D("0.10"))
    assert counters.snapshot() == {"USD": "0.00"}
    assert counters.exhausted() == "USD"


def test_large_budget_minus_tiny_charge_is_not_rounded() -> None:
    # The default 28-digit context would round this result to 1E+30.
    counters = BudgetCounters({"credits": D("1" + "0" * 30)})
    counters.charge("credits", D("0.000001"))
    assert counters.snapshot() == {"credits": "9" * 30 + ".999999"}


def test_counter_may_go_negative_after_post_hoc_cost() -> None:
    counters = BudgetCounters({"USD": D("1.00")})
    assert counters.charge("USD", D("1.50"))
    assert counters.remaining("USD") == D("-0.50")
    assert counters.snapshot() == {"USD": "-0.50"}
    assert counters.exhausted() == "USD"


def test_negative_charge_rejected_without_decrement() -> None:
    counters = BudgetCounters({"USD": D("1.00")})
    with pytest.raises(InvalidRequest):
        counters.charge("USD", D("-0.01"))
    assert counters.remaining("USD") == D("1.00")


@pytest.mark.parametrize("amount", [D("NaN"), D("Infinity"), D("sNaN")])
def test_non_finite_charge_rejected(amount: Decimal) -> None:
    counters = BudgetCounters({"USD": D("1.00")})
    with pytest.raises(InvalidRequest):
        counters.charge("USD", amount)
    assert counters.remaining("USD") == D("1.00")


def test_unbudgeted_currency_is_ignored() -> None:
    parent = BudgetCounters({"EUR": D("3")})
    counters = BudgetCounters({"USD": D("1.00")}, parent)
    assert counters.charge("EUR", D("1")) is False  # the child has no EUR budget
    assert counters.remaining("EUR") is None
    assert parent.remaining("EUR") == D("3")
    assert counters.snapshot() == {"USD": "1.00"}


def test_zero_charge_is_accepted() -> None:
    counters = BudgetCounters({"USD": D("1")})
    assert counters.charge("USD", D("0"))
    assert counters.remaining("USD") == D("1")


def test_currencies_tracked_independently_and_snapshot_sorted() -> None:
    counters = BudgetCounters({"credits": D("1000"), "USD": D("5.00"), "EUR": D("2")})
    counters.charge("USD", D("0.0234"))
    assert counters.currencies == ("EUR", "USD", "credits")
    assert list(counters.snapshot().items()) == [
        ("EUR", "2"),
        ("USD", "4.9766"),
        ("credits", "1000"),
    ]


def test_exhausted_reports_first_sorted_currency() -> None:
    counters = BudgetCounters({"b": D("0"), "a": D("0"), "c": D("1")})
    assert counters.exhausted() == "a"


def test_child_spend_counts_against_every_ancestor() -> None:
    root = BudgetCounters({"USD": D("5.00"), "credits": D("10")})
    parent = BudgetCounters({"USD": D("3.00")}, root)
    child = BudgetCounters({"USD": D("1.00")}, parent)
    assert child.charge("USD", D("0.25"))
    assert child.remaining("USD") == D("0.75")
    assert parent.remaining("USD") == D("2.75")
    assert root.remaining("USD") == D("4.75")
    assert root.remaining("credits") == D("10")
    assert child.parent is parent


def test_parent_spend_does_not_touch_child() -> None:
    parent = BudgetCounters({"USD": D("3")})
    child = BudgetCounters({"USD": D("1")}, parent)
    parent.charge("USD", D("1"))
    assert child.remaining("USD") == D("1")


def test_ancestor_exhaustion_blocks_child() -> None:
    parent = BudgetCounters({"USD": D("1.00"), "credits": D("5")})
    child = BudgetCounters({"credits": D("2")}, parent)
    sibling = BudgetCounters({"USD": D("1.00")}, parent)
    assert child.exhausted() is None
    sibling.charge("USD", D("1.00"))
    assert parent.exhausted() == "USD"
    assert child.exhausted() == "USD"  # the whole tree is out of USD


def test_available_is_least_along_the_chain() -> None:
    root = BudgetCounters({"USD": D("1.00")})
    parent = BudgetCounters({"USD": D("3.00"), "credits": D("7")}, root)
    assert parent.available() == {"USD": D("1.00"), "credits": D("7")}
    root.charge("USD", D("0.40"))
    assert parent.available() == {"USD": D("0.60"), "credits": D("7")}


def test_initial_must_be_finite_decimals() -> None:
    with pytest.raises(ValueError, match="finite"):
        BudgetCounters({"USD": D("NaN")})
    with pytest.raises(ValueError, match="finite"):
        BudgetCounters({"USD": 5})  # type: ignore[dict-item]


_cents = st.integers(min_value=0, max_value=10_000).map(lambda c: Decimal(c).scaleb(-2))


@given(budget=_cents, charges=st.lists(_cents, max_size=30))
def test_remaining_equals_budget_minus_sum(budget: Decimal, charges: list[Decimal]) -> None:
    parent = BudgetCounters({"USD": budget + 100})
    counters = BudgetCounters({"USD": budget}, parent)
    for amount in charges:
        counters.charge("USD", amount)
    assert counters.remaining("USD") == budget - sum(charges, Decimal(0))
    assert parent.remaining("USD") == budget + 100 - sum(charges, Decimal(0))
    assert (counters.exhausted() is not None) == (budget - sum(charges, Decimal(0)) <= 0)
