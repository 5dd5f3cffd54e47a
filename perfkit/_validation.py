"""Argument checks shared across perfkit: one wording for one mistake."""

from __future__ import annotations

import math


def check_count(name: str, value: int, *, minimum: int = 1) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``, else ValueError.

    >>> check_count("rounds", 3)
    3
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def parse_fraction(text: str) -> float | None:
    """``text`` as a finite number >= 0 (a relative threshold: 0.001 is 0.1%), or None.

    >>> parse_fraction("0.5"), parse_fraction("-1"), parse_fraction("inf")
    (0.5, None, None)
    """
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and math.isfinite(value) else None
