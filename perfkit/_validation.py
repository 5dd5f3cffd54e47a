"""Argument checks shared across perfkit: one wording for one mistake."""

from __future__ import annotations


def check_count(name: str, value: int, *, minimum: int = 1) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``, else ValueError.

    >>> check_count("rounds", 3)
    3
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value
