"""The load generator's choices, defaults and production targets, in a module that imports
nothing, so ``perfkit load --help`` and its usage errors cost no import of the generator."""

from __future__ import annotations

from typing import Literal

Arrivals = Literal["constant", "poisson"]
ARRIVALS: tuple[Arrivals, ...] = ("constant", "poisson")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_TIMEOUT = 30.0
"""Seconds a whole request may take."""

PRODUCTION_TARGETS: dict[str, float] = {
    "p50": 1.0,
    "p95": 2.0,
    "p99": 5.0,
    "error_rate": 0.001,
    "min_rps": 10.0,
    "cache_hit_rate": 0.8,
}
"""The production targets the book chapter sets for an agent service: p50 under 1 s, p95
under 2 s, p99 under 5 s, errors under 0.1%, more than 10 requests per second per worker,
cache hits above 80% (seconds, fractions, requests per second)."""

TARGET_NAMES = tuple(PRODUCTION_TARGETS)
"""The targets an :class:`~perfkit.load.SLO` can state."""
