"""perfkit's pytest settings: each a command-line option with an ini twin, resolved once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from perfkit._clock import CLOCK_MODES, ClockMode

DEFAULT_CLOCK: ClockMode = "virtual"


@dataclass(frozen=True)
class Settings:
    """The resolved perfkit settings of a pytest run."""

    clock: ClockMode = DEFAULT_CLOCK
    redis_url: str | None = None
    redis_latency: float = 0.0


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfkit", "perfkit: performance testing of LLM agents")
    group.addoption(
        "--perfkit-clock",
        default=None,
        help=f"clock for perfkit fixtures: {' or '.join(CLOCK_MODES)} (default: {DEFAULT_CLOCK}; "
        "ini: perfkit_clock)",
    )
    group.addoption(
        "--perfkit-redis-url",
        default=None,
        help="use the Redis server at this URL for redis_client fixtures instead of fakeredis; "
        "its database is flushed around each test (ini: perfkit_redis_url)",
    )
    group.addoption(
        "--perfkit-redis-latency",
        default=None,
        help="modeled round-trip seconds of each fakeredis command (default: 0; "
        "ini: perfkit_redis_latency)",
    )
    parser.addini(
        "perfkit_clock", f"clock for perfkit fixtures: {' or '.join(CLOCK_MODES)}", default=None
    )
    parser.addini(
        "perfkit_redis_url",
        "Redis URL for redis_client fixtures instead of fakeredis",
        default=None,
    )
    parser.addini(
        "perfkit_redis_latency", "modeled round-trip seconds of fakeredis commands", default=None
    )


def _value(config: pytest.Config, name: str) -> tuple[str | None, str]:
    """The option's value (command line first, then ini) and where it came from."""
    option = config.getoption(name)
    if option is not None:
        return str(option), f"--{name.replace('_', '-')}"
    ini: Any = config.getini(name)
    if ini not in (None, ""):
        return str(ini).strip(), f"ini option {name}"
    return None, ""


def parse_clock(value: str, source: str = "--perfkit-clock") -> ClockMode:
    for mode in CLOCK_MODES:
        if value == mode:
            return mode
    raise pytest.UsageError(f"{source} must be one of {', '.join(CLOCK_MODES)}; got {value!r}")


def resolve(config: pytest.Config) -> Settings:
    """Read and validate every perfkit setting; bad values are a usage error."""
    clock_value, clock_source = _value(config, "perfkit_clock")
    clock = parse_clock(clock_value, clock_source) if clock_value is not None else DEFAULT_CLOCK

    url, url_source = _value(config, "perfkit_redis_url")
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise pytest.UsageError(
            f"{url_source} must be a redis://, rediss:// or unix:// URL; got {url!r}"
        )

    latency_value, latency_source = _value(config, "perfkit_redis_latency")
    latency = 0.0
    if latency_value is not None:
        try:
            latency = float(latency_value)
        except ValueError:
            latency = math.nan
        if not (latency >= 0 and math.isfinite(latency)):
            raise pytest.UsageError(
                f"{latency_source} must be a number of seconds >= 0; got {latency_value!r}"
            )
    return Settings(clock=clock, redis_url=url, redis_latency=latency)
