"""perfkit's pytest settings: each a command-line option with an ini twin, resolved once."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from perfkit._defaults import (
    CLOCK_MODES,
    DEFAULT_CLOCK,
    DEFAULT_CPU_THRESHOLD,
    DEFAULT_PROFILE_TOP,
    DEFAULT_TOLERANCE,
    ClockMode,
)
from perfkit._url import redact_url
from perfkit._validation import parse_fraction

if TYPE_CHECKING:
    from perfkit._pricing import PriceTable


@dataclass(frozen=True)
class Settings:
    """The resolved perfkit settings of a pytest run."""

    clock: ClockMode = DEFAULT_CLOCK
    redis_url: str | None = field(default=None, repr=False)  # it may hold a password
    redis_latency: float = 0.0
    profile_dir: Path | None = None
    profile_top: int = DEFAULT_PROFILE_TOP
    baseline: Path | None = None
    baseline_source: str = ""
    """Where the baseline path came from: ``--perfkit-baseline`` or ``ini option ...``."""
    update_baseline: bool = False
    create_baseline: bool = False
    report_dir: Path | None = None
    tolerance: float = DEFAULT_TOLERANCE
    cpu_threshold: float = DEFAULT_CPU_THRESHOLD
    allow_unmatched: bool = False
    prices: PriceTable | None = None
    """The price table of ``--perfkit-prices`` (read over the shipped one), or None."""

    @property
    def writes_baseline(self) -> bool:
        """Whether this run writes the baseline instead of gating against it."""
        return self.update_baseline or self.create_baseline


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
    group.addoption(
        "--perfkit-profile",
        default=None,
        metavar="DIR",
        help="write a cProfile profile of each perf benchmark's measured rounds to DIR "
        "(.prof, .txt top functions, .collapsed stacks; ini: perfkit_profile)",
    )
    group.addoption(
        "--perfkit-profile-top",
        default=None,
        metavar="N",
        help=f"functions in each profile's .txt table (default: {DEFAULT_PROFILE_TOP}; "
        "ini: perfkit_profile_top)",
    )
    group.addoption(
        "--perfkit-baseline",
        default=None,
        metavar="PATH",
        help="gate the run against this baseline file: a modeled figure above it (beyond "
        "the tolerance) or a grown counter fails the run (ini: perfkit_baseline)",
    )
    group.addoption(
        "--perfkit-update-baseline",
        action="store_true",
        default=False,
        help="write this run's figures to the baseline file instead of gating (only when "
        "every test passed); benchmarks not run keep their entries. Refused under CI",
    )
    group.addoption(
        "--perfkit-create-baseline",
        action="store_true",
        default=False,
        help="first run: create the baseline file (which must not exist yet) from this run's "
        "figures; without it a baseline path that does not exist is a usage error",
    )
    group.addoption(
        "--perfkit-allow-unmatched",
        action="store_true",
        default=None,
        help="list benchmarks new to the run, missing from it or no longer comparable "
        "without failing the gate (default: they fail it; ini: perfkit_allow_unmatched)",
    )
    group.addoption(
        "--perfkit-report-dir",
        default=None,
        metavar="DIR",
        help="write the report (report.json, report.md, speedups.svg) to DIR "
        "(ini: perfkit_report_dir)",
    )
    group.addoption(
        "--perfkit-tolerance",
        default=None,
        help=f"relative rise of an exact figure the gate allows (default: {DEFAULT_TOLERANCE}; "
        "ini: perfkit_tolerance)",
    )
    group.addoption(
        "--perfkit-cpu-threshold",
        default=None,
        help="least relative rise of CPU time (in calibration units) the gate allows "
        f"(default: {DEFAULT_CPU_THRESHOLD}; ini: perfkit_cpu_threshold)",
    )
    group.addoption(
        "--perfkit-prices",
        default=None,
        metavar="PATH",
        help="price the simulated usage (counter usd) with this price file's rows over the "
        "shipped table (perfkit/data/prices.json; ini: perfkit_prices)",
    )
    parser.addini("perfkit_baseline", "baseline file the run is gated against", default=None)
    parser.addini("perfkit_prices", "price file the usd counter is priced with", default=None)
    parser.addini("perfkit_report_dir", "directory the report files are written to", default=None)
    parser.addini("perfkit_tolerance", "relative rise of an exact figure allowed", default=None)
    parser.addini("perfkit_cpu_threshold", "least relative rise of CPU time allowed", default=None)
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
    parser.addini(
        "perfkit_profile", "directory for a cProfile profile of each perf benchmark", default=None
    )
    parser.addini("perfkit_profile_top", "functions in each profile's .txt table", default=None)
    parser.addini(
        "perfkit_allow_unmatched",
        "true: benchmarks new, missing or no longer comparable do not fail the gate",
        default=None,
    )


INI_KEYS = (
    "perfkit_allow_unmatched",
    "perfkit_baseline",
    "perfkit_clock",
    "perfkit_cpu_threshold",
    "perfkit_prices",
    "perfkit_profile",
    "perfkit_profile_top",
    "perfkit_redis_latency",
    "perfkit_redis_url",
    "perfkit_report_dir",
    "perfkit_tolerance",
)
LISTING_OPTIONS = (
    "help",
    "version",
    "collectonly",
    "showfixtures",
    "show_fixtures_per_test",
    "markers",
)
"""pytest options with which a run lists things and runs no test."""


def check_ini_keys(config: pytest.Config) -> None:
    """A misspelt perfkit ini key is a usage error, not a gate quietly switched off."""
    import difflib

    unknown = getattr(config, "_get_unknown_ini_keys", None)  # what pytest warns about
    for name in sorted(unknown() if unknown is not None else ()):
        if name.replace("-", "_").lower().startswith("perfkit"):
            close = difflib.get_close_matches(name.replace("-", "_"), INI_KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise pytest.UsageError(
                f"unknown perfkit ini option {name!r}{hint}; perfkit's ini options are "
                f"{', '.join(INI_KEYS)}"
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
            f"{url_source} must be a redis://, rediss:// or unix:// URL; got {redact_url(url)!r}"
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
    tolerance = _fraction(config, "perfkit_tolerance", DEFAULT_TOLERANCE, below_one=True)
    cpu_threshold = _fraction(config, "perfkit_cpu_threshold", DEFAULT_CPU_THRESHOLD)
    allow_unmatched = _flag(config, "perfkit_allow_unmatched")
    profile_dir = _path(config, "perfkit_profile", "a directory")
    profile_top = _profile_top(config)
    report_dir = _path(config, "perfkit_report_dir", "a directory")
    baseline = _path(config, "perfkit_baseline", "a baseline file")
    baseline_source = _value(config, "perfkit_baseline")[1]
    update_baseline = bool(config.getoption("perfkit_update_baseline"))
    create_baseline = bool(config.getoption("perfkit_create_baseline"))
    _check_baseline_options(config, baseline, baseline_source, update_baseline, create_baseline)
    prices = _prices(config)
    return Settings(
        clock=clock,
        redis_url=url,
        redis_latency=latency,
        profile_dir=profile_dir,
        profile_top=profile_top,
        baseline=baseline,
        baseline_source=baseline_source,
        update_baseline=update_baseline,
        create_baseline=create_baseline,
        report_dir=report_dir,
        tolerance=tolerance,
        cpu_threshold=cpu_threshold,
        allow_unmatched=allow_unmatched,
        prices=prices,
    )


def _prices(config: pytest.Config) -> PriceTable | None:
    """The price file's table; a file that is missing or wrong is a usage error."""
    path = _path(config, "perfkit_prices", "a price file")
    if path is None:
        return None
    from perfkit._pricing import load_prices

    try:
        return load_prices(path)
    except ValueError as error:
        problem = str(error)
    raise pytest.UsageError(f"{_value(config, 'perfkit_prices')[1]}: {problem}")


CI_VARIABLES = ("CI", "TF_BUILD", "JENKINS_URL", "TEAMCITY_VERSION", "BUILDKITE", "GITLAB_CI")
"""Environment variables CI services set (most set ``CI``; Azure Pipelines sets
``TF_BUILD``, Jenkins ``JENKINS_URL``, TeamCity ``TEAMCITY_VERSION``)."""


def under_ci() -> bool:
    """Whether this run is a CI run: one of :data:`CI_VARIABLES` is set to something other
    than an empty string, ``0``, ``false`` or ``no``."""
    return any(
        os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
        for name in CI_VARIABLES
    )


def _check_baseline_options(
    config: pytest.Config,
    baseline: Path | None,
    source: str,
    update: bool,
    create: bool,
) -> None:
    """Refuse, before any test runs, every way a run could skip the gate by accident: a
    baseline path that does not exist (a typo, a deleted file), a refresh under CI."""
    writing = "--perfkit-update-baseline" if update else "--perfkit-create-baseline"
    if update and create:
        raise pytest.UsageError(
            "--perfkit-update-baseline and --perfkit-create-baseline exclude each other: "
            "update refreshes an existing baseline, create writes the first one"
        )
    if (update or create) and _value(config, "perfkit_profile")[0] is not None:
        raise pytest.UsageError(
            f"{writing} cannot be combined with --perfkit-profile: a profiler "
            "multiplies CPU time, and the baseline would keep it"
        )
    if (update or create) and baseline is None:
        raise pytest.UsageError(
            f"{writing} needs a baseline file: pass --perfkit-baseline PATH "
            "or set the ini option perfkit_baseline"
        )
    if (update or create) and under_ci():
        raise pytest.UsageError(
            f"{writing} is refused under CI ({_ci_variable()} is set): a CI run gates the change "
            "against "
            "its committed baseline; refresh the baseline on your machine and commit it"
        )
    if baseline is None:
        return
    if create and baseline.exists():
        raise pytest.UsageError(
            f"--perfkit-create-baseline: {baseline} exists already; refresh it with "
            "--perfkit-update-baseline instead"
        )
    listing = any(getattr(config.option, name, False) for name in LISTING_OPTIONS)
    if not create and not baseline.exists() and not listing:
        raise pytest.UsageError(
            f"{source}: no baseline file at {baseline} (a first run creates it with "
            "--perfkit-create-baseline)"
        )


def _ci_variable() -> str:
    return next((name for name in CI_VARIABLES if os.environ.get(name)), "CI")


def _flag(config: pytest.Config, name: str) -> bool:
    """A yes/no setting: the command-line switch, else the ini value (true/false)."""
    value, source = _value(config, name)
    if value is None:
        return False
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise pytest.UsageError(f"{source} must be true or false; got {value!r}")


def _ini_dir(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath is not None else config.rootpath


def _profile_top(config: pytest.Config) -> int:
    """How many functions each profile's table lists."""
    value, source = _value(config, "perfkit_profile_top")
    if value is None:
        return DEFAULT_PROFILE_TOP
    if not (value.isdecimal() and value.isascii() and int(value) >= 1):
        raise pytest.UsageError(f"{source} must be an int >= 1; got {value!r}")
    return int(value)


def _path(config: pytest.Config, name: str, what: str) -> Path | None:
    """A path setting (``what`` is "a directory" or "a ... file"): an option is relative to
    where pytest was invoked, an ini value to the ini file's directory."""
    value, source = _value(config, name)
    if value is None:
        return None
    base = config.invocation_params.dir if source.startswith("--") else _ini_dir(config)
    path = base / value
    wants_directory = what == "a directory"
    if not value.strip() or (path.exists() and path.is_dir() != wants_directory):
        raise pytest.UsageError(f"{source} must be {what} path; got {value!r}")
    return path


def _fraction(
    config: pytest.Config, name: str, default: float, *, below_one: bool = False
) -> float:
    """A relative threshold: a finite number >= 0 (0.001 is 0.1%); ``below_one`` refuses
    1 and more, which would be read as 100% and more (5 meant as 5% opens the gate)."""
    value, source = _value(config, name)
    if value is None:
        return default
    number = parse_fraction(value)
    if number is not None and below_one and number >= 1:
        raise pytest.UsageError(
            f"{source} must be a fraction below 1 (0.05 is 5%); got {value!r}, which would "
            f"allow a rise of {number:.0%}"
        )
    if number is None:
        raise pytest.UsageError(
            f"{source} must be a number >= 0 (a fraction: 0.001 is 0.1%); got {value!r}"
        )
    return number
