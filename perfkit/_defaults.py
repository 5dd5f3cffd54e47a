"""Settings shared by the plugin, the CLI and the layers below them, in a module that
imports nothing (the pytest plugin and the CLI read it before anything heavy loads)."""

from __future__ import annotations

from typing import Literal

ClockMode = Literal["virtual", "real"]
CLOCK_MODES: tuple[ClockMode, ...] = ("virtual", "real")
DEFAULT_CLOCK: ClockMode = "virtual"

DEFAULT_TOLERANCE = 0.001
"""The rise of an exact figure the regression gate allows (0.1%)."""
DEFAULT_CPU_THRESHOLD = 1.0
"""The least rise of CPU time, in calibration units, the gate allows (100%)."""
DEFAULT_CPU_MINIMUM = 0.02
"""CPU seconds per round below which a benchmark's CPU time is not gated."""
DEFAULT_PROFILE_TOP = 20
"""Functions listed in each profile's table."""

# The load generator's choices, defaults and production targets (``perfkit load --help``
# shows them without importing the generator).

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
