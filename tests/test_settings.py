"""Tests of perfkit._settings: every option, its ini twin, precedence and usage errors."""

from __future__ import annotations

import pytest

from perfkit._settings import DEFAULT_CLOCK, Settings, parse_clock
from perfkit.pytest_plugin import SETTINGS_KEY

INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
{extra}
"""


def write_ini(pytester: pytest.Pytester, **settings: str) -> None:
    """A pytest.ini like the project's own, plus ``name = value`` lines."""
    extra = "\n".join(f"{name} = {value}" for name, value in settings.items())
    pytester.makeini(INI.format(extra=extra))


# hypothesis's plugin (installed, unused here) imports hypothesis afresh in every run.
PLUGINS_OFF = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def resolved(pytester: pytest.Pytester, *args: str) -> Settings:
    config = pytester.parseconfigure(*PLUGINS_OFF, *args)
    return config.stash[SETTINGS_KEY]


def usage_error_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.errlines if line.startswith("ERROR:")]


# --- resolution ----------------------------------------------------------------------------


def test_defaults_without_any_setting(pytester: pytest.Pytester) -> None:
    write_ini(pytester)
    assert resolved(pytester) == Settings(clock="virtual", redis_url=None, redis_latency=0.0)
    assert DEFAULT_CLOCK == "virtual"


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (["--perfkit-clock=real"], {}, Settings(clock="real")),
        (["--perfkit-clock", "virtual"], {}, Settings(clock="virtual")),
        ([], {"perfkit_clock": "real"}, Settings(clock="real")),
        ([], {"perfkit_clock": "  real  "}, Settings(clock="real")),
        (
            ["--perfkit-redis-url=redis://127.0.0.1:6390/2"],
            {},
            Settings(redis_url="redis://127.0.0.1:6390/2"),
        ),
        (
            [],
            {"perfkit_redis_url": "unix:///tmp/redis.sock"},
            Settings(redis_url="unix:///tmp/redis.sock"),
        ),
        (
            [],
            {"perfkit_redis_url": "rediss://cache:6380"},
            Settings(redis_url="rediss://cache:6380"),
        ),
        (["--perfkit-redis-latency=0.002"], {}, Settings(redis_latency=0.002)),
        ([], {"perfkit_redis_latency": "0.005"}, Settings(redis_latency=0.005)),
        ([], {"perfkit_redis_latency": "0"}, Settings(redis_latency=0.0)),
    ],
    ids=[
        "clock-option",
        "clock-option-separate-value",
        "clock-ini",
        "clock-ini-padded",
        "url-option",
        "url-ini-unix",
        "url-ini-tls",
        "latency-option",
        "latency-ini",
        "latency-ini-zero",
    ],
)
def test_each_option_and_its_ini_twin(
    pytester: pytest.Pytester, args: list[str], ini: dict[str, str], expected: Settings
) -> None:
    write_ini(pytester, **ini)
    assert resolved(pytester, *args) == expected


def test_the_command_line_overrides_the_ini_file(pytester: pytest.Pytester) -> None:
    write_ini(
        pytester,
        perfkit_clock="virtual",
        perfkit_redis_url="redis://ini-host:6379/0",
        perfkit_redis_latency="0.5",
    )
    settings = resolved(
        pytester,
        "--perfkit-clock=real",
        "--perfkit-redis-url=redis://cli-host:6379/1",
        "--perfkit-redis-latency=0.001",
    )
    assert settings == Settings(
        clock="real", redis_url="redis://cli-host:6379/1", redis_latency=0.001
    )


def test_an_empty_ini_value_means_not_set(pytester: pytest.Pytester) -> None:
    write_ini(pytester, perfkit_clock="", perfkit_redis_url="", perfkit_redis_latency="")
    assert resolved(pytester) == Settings()


def test_settings_from_pyproject_toml(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        asyncio_mode = "auto"
        asyncio_default_fixture_loop_scope = "function"
        filterwarnings = ["error"]
        perfkit_clock = "real"
        perfkit_redis_latency = "0.25"
        """
    )
    assert resolved(pytester) == Settings(clock="real", redis_latency=0.25)


# --- the settings reach the fixtures ---------------------------------------------------------

CLOCK_PROBE = """
def test_clock(perfkit_clock):
    assert perfkit_clock.mode == {mode!r}
"""

REDIS_LATENCY_PROBE = """
def test_get_costs_the_configured_latency(redis_client, perfkit_clock):
    start = perfkit_clock.now()
    assert redis_client.get("missing") is None
    assert perfkit_clock.elapsed(start) == {seconds!r}
"""


@pytest.mark.parametrize(
    ("args", "ini", "mode"),
    [
        ([], {}, "virtual"),
        ([], {"perfkit_clock": "real"}, "real"),
        (["--perfkit-clock=real"], {}, "real"),
        (["--perfkit-clock=virtual"], {"perfkit_clock": "real"}, "virtual"),
    ],
    ids=["default", "ini", "option", "option-over-ini"],
)
def test_the_clock_setting_picks_the_fixture_clock(
    pytester: pytest.Pytester, args: list[str], ini: dict[str, str], mode: str
) -> None:
    write_ini(pytester, **ini)
    pytester.makepyfile(CLOCK_PROBE.format(mode=mode))
    pytester.runpytest(*PLUGINS_OFF, *args).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "ini", "seconds"),
    [
        (["--perfkit-redis-latency=0.002"], {}, 0.002),
        ([], {"perfkit_redis_latency": "0.005"}, 0.005),
        (["--perfkit-redis-latency=0.003"], {"perfkit_redis_latency": "0.5"}, 0.003),
    ],
    ids=["option", "ini", "option-over-ini"],
)
def test_the_redis_latency_setting_reaches_redis_client(
    pytester: pytest.Pytester, args: list[str], ini: dict[str, str], seconds: float
) -> None:
    write_ini(pytester, **ini)
    pytester.makepyfile(REDIS_LATENCY_PROBE.format(seconds=seconds))
    pytester.runpytest(*PLUGINS_OFF, *args).assert_outcomes(passed=1)


# --- bad values are usage errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ["--perfkit-clock=fast"],
            {},
            "ERROR: --perfkit-clock must be one of virtual, real; got 'fast'",
        ),
        (
            ["--perfkit-clock="],
            {},
            "ERROR: --perfkit-clock must be one of virtual, real; got ''",
        ),
        (
            [],
            {"perfkit_clock": "Virtual"},
            "ERROR: ini option perfkit_clock must be one of virtual, real; got 'Virtual'",
        ),
        (
            ["--perfkit-redis-url=http://localhost:6379"],
            {},
            "ERROR: --perfkit-redis-url must be a redis://, rediss:// or unix:// URL; "
            "got 'http://localhost:6379'",
        ),
        (
            [],
            {"perfkit_redis_url": "localhost:6379"},
            "ERROR: ini option perfkit_redis_url must be a redis://, rediss:// or unix:// URL; "
            "got 'localhost:6379'",
        ),
        (
            ["--perfkit-redis-latency=-0.5"],
            {},
            "ERROR: --perfkit-redis-latency must be a number of seconds >= 0; got '-0.5'",
        ),
        (
            ["--perfkit-redis-latency=nan"],
            {},
            "ERROR: --perfkit-redis-latency must be a number of seconds >= 0; got 'nan'",
        ),
        (
            ["--perfkit-redis-latency=inf"],
            {},
            "ERROR: --perfkit-redis-latency must be a number of seconds >= 0; got 'inf'",
        ),
        (
            ["--perfkit-redis-latency=2ms"],
            {},
            "ERROR: --perfkit-redis-latency must be a number of seconds >= 0; got '2ms'",
        ),
        (
            [],
            {"perfkit_redis_latency": "-1"},
            "ERROR: ini option perfkit_redis_latency must be a number of seconds >= 0; got '-1'",
        ),
    ],
    ids=[
        "clock-unknown",
        "clock-empty",
        "clock-ini-wrong-case",
        "url-http",
        "url-ini-no-scheme",
        "latency-negative",
        "latency-nan",
        "latency-inf",
        "latency-unit",
        "latency-ini-negative",
    ],
)
def test_a_bad_value_is_a_one_line_usage_error(
    pytester: pytest.Pytester, args: list[str], ini: dict[str, str], message: str
) -> None:
    write_ini(pytester, **ini)
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError\n")
    result = pytester.runpytest(*PLUGINS_OFF, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert usage_error_lines(result) == [message]
    assert "test_never_runs" not in result.stdout.str()


def test_a_bad_value_fails_configuration_before_any_test_is_collected(
    pytester: pytest.Pytester,
) -> None:
    write_ini(pytester)
    with pytest.raises(pytest.UsageError, match=r"got 'fast'$"):
        pytester.parseconfigure(*PLUGINS_OFF, "--perfkit-clock=fast")


@pytest.mark.parametrize("mode", ["virtual", "real"])
def test_parse_clock_accepts_the_modes(mode: str) -> None:
    assert parse_clock(mode) == mode


def test_parse_clock_names_the_source_in_its_error() -> None:
    with pytest.raises(pytest.UsageError) as error:
        parse_clock("REAL", "test_x.py::test_y: perfkit_clock marker")
    assert str(error.value) == (
        "test_x.py::test_y: perfkit_clock marker must be one of virtual, real; got 'REAL'"
    )


def test_the_help_lists_every_option_with_its_ini_twin(pytester: pytest.Pytester) -> None:
    write_ini(pytester)
    result = pytester.runpytest(*PLUGINS_OFF, "--help")
    assert result.ret == pytest.ExitCode.OK
    help_text = " ".join(result.stdout.str().split())  # undo argparse's line wrapping
    assert "perfkit: performance testing of LLM agents:" in help_text
    for option, ini in [
        ("--perfkit-clock=PERFKIT_CLOCK", "perfkit_clock"),
        ("--perfkit-redis-url=PERFKIT_REDIS_URL", "perfkit_redis_url"),
        ("--perfkit-redis-latency=PERFKIT_REDIS_LATENCY", "perfkit_redis_latency"),
    ]:
        assert option in help_text
        assert f"(ini: {ini})" in help_text or f"; ini: {ini})" in help_text
        assert f"{ini} (string):" in help_text
    assert "clock for perfkit fixtures: virtual or real (default: virtual;" in help_text


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"CI": "false"}, False),
        ({"CI": "0"}, False),
        ({"CI": ""}, False),
        ({"TF_BUILD": "True"}, True),
        ({"JENKINS_URL": "http://jenkins.invalid/"}, True),
    ],
)
def test_under_ci_reads_the_variables_ci_services_set(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: bool
) -> None:
    from perfkit._settings import CI_VARIABLES, under_ci

    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert under_ci() is expected
