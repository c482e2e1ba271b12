"""Confirmation thresholds: exact rational arithmetic over validator power."""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.ledger import passes, required_power

TWO_THIRDS = Fraction(2, 3)


def min_votes(powers: list[int], threshold: Fraction) -> int:
    """The fewest validators (strongest first) whose power passes ``threshold``."""
    total = sum(powers)
    approved = 0
    for n, power in enumerate(sorted(powers, reverse=True), start=1):
        approved += power
        if passes(approved, total, threshold):
            return n
    raise AssertionError("even every validator together does not pass")


def test_four_equal_validators_need_three() -> None:
    assert required_power(4, TWO_THIRDS) == 3
    assert not passes(2, 4, TWO_THIRDS)
    assert passes(3, 4, TWO_THIRDS)
    assert min_votes([1, 1, 1, 1], TWO_THIRDS) == 3


def test_heavy_validator_passes_alone() -> None:
    powers = [10, 1, 1]
    assert passes(10, sum(powers), TWO_THIRDS)
    assert not passes(2, sum(powers), TWO_THIRDS)  # both light validators together
    assert min_votes(powers, TWO_THIRDS) == 1


def test_exactly_at_threshold_passes() -> None:
    assert required_power(3, TWO_THIRDS) == 2
    assert passes(2, 3, TWO_THIRDS)
    assert not passes(1, 3, TWO_THIRDS)
    assert passes(50, 100, Fraction(1, 2))
    assert not passes(49, 100, Fraction(1, 2))


def test_just_below_a_non_integer_threshold_fails() -> None:
    # 2/3 of 10 is 6.67: 6 must not pass (no rounding down), 7 must.
    assert required_power(10, TWO_THIRDS) == 7
    assert not passes(6, 10, TWO_THIRDS)
    assert passes(7, 10, TWO_THIRDS)


def test_full_threshold_needs_everyone() -> None:
    assert required_power(7, Fraction(1)) == 7
    assert not passes(6, 7, Fraction(1))
    assert passes(7, 7, Fraction(1))


@pytest.mark.parametrize("approved", [0, 1, 100])
def test_zero_total_never_passes(approved: int) -> None:
    assert not passes(approved, 0, TWO_THIRDS)
    assert not passes(approved, 0, Fraction(1, 1000))


def test_large_powers_are_exact() -> None:
    # Floats would round 2/3 * (3 * 2**62 + 1); integers must not.
    total = 3 * 2**62 + 1
    need = required_power(total, TWO_THIRDS)
    assert need == 2**63 + 1
    assert passes(need, total, TWO_THIRDS)
    assert not passes(need - 1, total, TWO_THIRDS)


def test_every_subset_of_small_set_matches_exact_rule() -> None:
    powers = [5, 3, 2, 2, 1]
    total = sum(powers)
    for k in range(len(powers) + 1):
        for subset in combinations(powers, k):
            approved = sum(subset)
            assert passes(approved, total, TWO_THIRDS) == (3 * approved >= 2 * total)


thresholds = st.builds(Fraction, st.integers(1, 1000), st.integers(1, 1000)).filter(lambda f: 0 < f <= 1)


@given(
    powers=st.lists(st.integers(0, 2**63 - 1), min_size=0, max_size=12),
    threshold=thresholds,
    data=st.data(),
)
def test_passes_matches_exact_cross_multiplication(
    powers: list[int], threshold: Fraction, data: st.DataObject
) -> None:
    total = sum(powers)
    voted = data.draw(st.lists(st.booleans(), min_size=len(powers), max_size=len(powers)))
    approved = sum(p for p, v in zip(powers, voted, strict=True) if v)
    num, den = threshold.numerator, threshold.denominator
    expected = total > 0 and approved * den >= total * num
    assert passes(approved, total, threshold) == expected
    need = required_power(total, threshold)
    # required_power is the least passing approval: it passes (when total > 0), one less does not.
    assert need * den >= total * num
    assert need == 0 or (need - 1) * den < total * num
    if total > 0:
        assert passes(need, total, threshold)
        assert not passes(need - 1, total, threshold)
