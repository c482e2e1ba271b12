"""The confirmation rule, in exact integer arithmetic (no floats: every node must agree)."""

from __future__ import annotations

from fractions import Fraction


def required_power(total: int, threshold: Fraction) -> int:
    """Smallest approved power that meets ``threshold`` of ``total``: ceil(total * t)."""
    return -(-(total * threshold.numerator) // threshold.denominator)


def passes(approved: int, total: int, threshold: Fraction) -> bool:
    return total > 0 and approved >= required_power(total, threshold)
