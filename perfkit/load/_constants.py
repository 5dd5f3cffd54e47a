"""The load generator's choices, defaults and production targets (kept in
:mod:`perfkit._defaults`, which imports nothing, for the CLI's help and usage errors)."""

from __future__ import annotations

from perfkit._defaults import (
    ARRIVALS,
    DEFAULT_TIMEOUT,
    METHODS,
    PRODUCTION_TARGETS,
    TARGET_NAMES,
    Arrivals,
)

__all__ = [
    "ARRIVALS",
    "DEFAULT_TIMEOUT",
    "METHODS",
    "PRODUCTION_TARGETS",
    "TARGET_NAMES",
    "Arrivals",
]
