"""perfkit's markers: their documentation, and reading them with errors that name the fix."""

from __future__ import annotations

import copy
import difflib
from typing import Any, NoReturn

import pytest

from perfkit._defaults import CLOCK_MODES, ClockMode

SIM_OPTIONS = frozenset({"latency", "base_url", "seed", "handshake", "strict", "rate_limits"})
"""Keyword options of ``@pytest.mark.perfkit_sim`` (the ``anthropic_sim`` fixture)."""
NETWORK_OPTIONS = frozenset({"connect", "tls", "server", "handler", "http2"})
"""Keyword options of ``@pytest.mark.perfkit_network`` (the ``simulated_network`` fixture)."""
SLO_WORKERS = "workers"

MARKERS = {
    "perfkit_clock": "perfkit_clock(mode): run this test's perfkit fixtures on the 'virtual' "
    "or 'real' clock",
    "perfkit_sim": "perfkit_sim(**options): options for the anthropic_sim fixture "
    "(latency=, base_url=, seed=, handshake=, strict=, rate_limits=)",
    "perfkit_slo": "perfkit_slo(**targets): the SLO of the test's load_test (p50=, p95=, p99= "
    "seconds, error_rate=, min_rps=, cache_hit_rate=, workers=; None drops one; the "
    "production targets by default)",
    "perfkit_network": "perfkit_network(**options): options for the simulated_network fixture "
    "(connect=, tls=, server=, handler=, http2=)",
}


def misuse(message: str) -> NoReturn:
    """Fail the test with one line naming the mistake and its fix (no traceback)."""
    pytest.fail(message, pytrace=False)


def clock_mode(item: pytest.Item, default: ClockMode) -> ClockMode:
    """The clock a test runs on: its ``perfkit_clock`` marker, else the run's setting."""
    marker = item.get_closest_marker("perfkit_clock")
    if marker is None:
        return default
    if len(marker.args) != 1 or marker.kwargs:
        misuse(
            "@pytest.mark.perfkit_clock takes one argument, 'virtual' or 'real'; "
            f"got {_call(marker)}",
        )
    for mode in CLOCK_MODES:
        if marker.args[0] == mode:
            return mode
    modes = ", ".join(repr(mode) for mode in CLOCK_MODES)
    misuse(
        f"@pytest.mark.perfkit_clock({marker.args[0]!r}): the clock is one of {modes}"
        f"{_suggestion(marker.args[0], CLOCK_MODES)}",
    )


def options(item: pytest.Item, name: str, allowed: frozenset[str]) -> dict[str, Any]:
    """A marker's keyword options, checked, and copied for this test: a latency model has
    state (a seeded generator, a replay position) that tests must not share."""
    marker = item.get_closest_marker(name)
    if marker is None:
        return {}
    if marker.args:
        misuse(
            f"@pytest.mark.{name} takes keyword options only ({_listed(allowed)}); "
            f"got {_call(marker)}",
        )
    for option in marker.kwargs:
        if option not in allowed:
            misuse(
                f"@pytest.mark.{name} has no option {option!r}"
                f"{_suggestion(option, allowed)}; its options are {_listed(allowed)}",
            )
    return copy.deepcopy(dict(marker.kwargs))


def _listed(names: frozenset[str]) -> str:
    return ", ".join(f"{name}=" for name in sorted(names))


def _suggestion(value: object, allowed: frozenset[str] | tuple[str, ...]) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, sorted(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _call(marker: pytest.Mark) -> str:
    arguments = [repr(value) for value in marker.args]
    arguments += [f"{key}={value!r}" for key, value in marker.kwargs.items()]
    return f"@pytest.mark.{marker.name}({', '.join(arguments)})"
