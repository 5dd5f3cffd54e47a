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
