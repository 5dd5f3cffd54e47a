"""The gate as a user's run sees it: under pytest-xdist, with baseline paths that are wrong,
refreshed where they must not be, or gating nothing, and in pytest's final line."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import test_gate
from test_gate import (
    CACHE_NEVER_HITS,
    CONCURRENT,
    SERIAL_GATHER,
    glob,
    refreshed,
    run_injected,
    write_suite,
)

from perfkit.reporting import load_baseline

suite = test_gate.suite
our_benchmarks = test_gate.our_benchmarks

XDIST = ("-n", "2")


def exact_figures(project: pytest.Pytester) -> str:
    """The report's exact figures, speedup rows and verdict (real time left out)."""
    report = json.loads((project.path / "perfkit-report" / "report.json").read_text())
    for entry in report["benchmarks"].values():
        del entry["cpu"], entry["wall"]
    gate = report["gate"]
    verdict = [gate["status"], gate["regressions"], gate["new"], gate["missing"]]
    return json.dumps([report["benchmarks"], report["speedups"], verdict], sort_keys=True)


# --- pytest-xdist: the controller alone reports and gates --------------------------------------


@pytest.mark.parametrize(
    "distribution",
    [
        ["-n", "2"],
        pytest.param(["-n", "auto"], marks=pytest.mark.slow),  # -n 2 shows it in every run
        pytest.param(["-n", "2", "--dist", "loadfile"], marks=pytest.mark.slow),
    ],
)
def test_a_parallel_run_reports_and_gates_what_a_serial_run_does(
    suite: pytest.Pytester, distribution: list[str]
) -> None:
    write_suite(suite, call=0.1, name="test_more.py")
    suite.runpytest("benchmarks", "--perfkit-create-baseline").assert_outcomes(passed=4)
    serial = suite.runpytest("benchmarks")
    assert serial.ret == pytest.ExitCode.OK
    expected = exact_figures(suite)
    parallel = suite.runpytest_subprocess("benchmarks", *distribution, timeout=120)
    assert parallel.ret == pytest.ExitCode.OK, parallel.stdout.str()
    parallel.stdout.fnmatch_lines(
        [
            "*perfkit speedup report*",
            "async*3 calls*300 ms*100 ms*3.00x*3x*yes",
            "gate passed against benchmarks/baseline.json: 0 figure(s) regressed in 0 "
            "benchmark(s), 0 figure(s) improved in 0 benchmark(s), 0 new, 0 missing",
        ]
    )
    assert exact_figures(suite) == expected


def test_a_regression_fails_a_parallel_run_whichever_worker_ran_it(
    suite: pytest.Pytester,
) -> None:
    write_suite(suite, call=0.1, name="test_more.py")
    suite.runpytest("benchmarks", "--perfkit-create-baseline").assert_outcomes(passed=4)
    write_suite(suite, call=0.12, name="test_more.py")
    result = suite.runpytest_subprocess("benchmarks", *XDIST, timeout=120)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    more = "benchmarks/test_more.py::test_three_calls"
    result.stdout.fnmatch_lines(
        [
            glob(
                f"REGRESSION {more}[concurrent]: modeled.mean rose from 100.000 ms to 120.000 ms*"
            ),
            "gate FAILED against benchmarks/baseline.json: 10 figure(s) regressed in 2 "
            "benchmark(s)*",
        ]
    )
    assert re.search(r"== 4 passed, 2 perf regressions in [\d.]+s", result.stdout.str())


@pytest.mark.slow  # parts of our benchmark suite in a subprocess and its workers
@pytest.mark.parametrize(
    ("injection", "arguments", "regressed"),
    [
        (
            SERIAL_GATHER,
            ["benchmarks/test_async.py", "benchmarks/test_api_calls.py"],
            "benchmarks/test_async.py::test_five_database_queries[concurrent]: modeled.mean "
            "rose from 100.000 ms to 500.000 ms*",
        ),
        (
            CACHE_NEVER_HITS,
            ["benchmarks/test_cache_impact.py", "-k", "caching_impact"],
            "benchmarks/test_cache_impact.py::test_caching_impact[identical-query-l1-hit]: "
            "counters.api_requests rose from 0 to 3*",
        ),
    ],
    # The unpooled client (one 35 s benchmark, run by one worker) is tests/test_gate.py's
    # test_an_unpooled_client_fails_the_gate: under xdist it would only cost CI that again.
    ids=["serial-gather", "cache-never-hits"],
)
def test_injected_regressions_fail_under_xdist_and_are_named(
    our_benchmarks: pytest.Pytester,
    injection: str,
    arguments: list[str],
    regressed: str,
) -> None:
    result = run_injected(our_benchmarks, injection, *arguments, *XDIST)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines([glob(f"REGRESSION {regressed}"), "gate FAILED against *"])
    assert re.search(r"== \d+ passed, \d+ perf regressions? in ", result.stdout.str())


# --- the final line ------------------------------------------------------------------------------


def test_a_failed_gate_is_counted_in_red_in_the_final_line(suite: pytest.Pytester) -> None:
    refreshed(suite)
    write_suite(suite, call=0.12)
    result = suite.runpytest("benchmarks", "--color=yes")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    [last] = [line for line in result.stdout.lines if "passed" in line][-1:]
    assert "2 passed" in last
    assert "2 perf regressions" in last
    assert "\x1b[31m" in last  # red, like "failed"
    assert "\x1b[32m" not in last.split("passed")[1]  # not the green of a passing run


# --- baseline paths and switches that must not mean "ungated" -----------------------------------


def test_a_baseline_given_on_the_command_line_that_does_not_exist_stops_the_run(
    suite: pytest.Pytester,
) -> None:
    refreshed(suite)
    marker = suite.path / "ran"
    (suite.path / "benchmarks" / "test_marker.py").write_text(
        f"def test_marker():\n    open({str(marker)!r}, 'w').close()\n"
    )
    result = suite.runpytest("benchmarks", "--perfkit-baseline=benchmarks/no-such-baseline.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --perfkit-baseline: no baseline file at *benchmarks/no-such-baseline.json (*"]
    )
    assert not marker.exists()


def test_a_first_run_is_asked_for_by_name_and_never_overwrites(suite: pytest.Pytester) -> None:
    created = suite.runpytest("benchmarks", "--perfkit-create-baseline")
    assert created.ret == pytest.ExitCode.OK
    created.stdout.fnmatch_lines(["baseline benchmarks/baseline.json created from this run"])
    baseline = load_baseline(suite.path / "benchmarks" / "baseline.json")
    assert CONCURRENT in baseline["benchmarks"]
    again = suite.runpytest("benchmarks", "--perfkit-create-baseline")
    assert again.ret == pytest.ExitCode.USAGE_ERROR
    again.stderr.fnmatch_lines(["ERROR: --perfkit-create-baseline: * exists already; *"])
    both = suite.runpytest("benchmarks", "--perfkit-create-baseline", "--perfkit-update-baseline")
    assert both.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize("switch", ["--perfkit-update-baseline", "--perfkit-create-baseline"])
def test_under_ci_the_baseline_is_never_rewritten(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    before = refreshed(suite)
    write_suite(suite, call=0.3)  # a 3x regression the refresh would hide
    monkeypatch.setenv("CI", "1")
    result = suite.runpytest("benchmarks", switch)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {switch} is refused under CI (CI is set)*"])
    assert load_baseline(suite.path / "benchmarks" / "baseline.json") == before


def test_a_baseline_that_gates_none_of_the_collected_benchmarks_is_an_error(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    refreshed(suite)
    (suite.path / "other").mkdir()
    (suite.path / "benchmarks" / "baseline.json").rename(suite.path / "other" / "baseline.json")
    write_suite(suite, call=0.3)  # a 3x regression
    monkeypatch.setenv("CI", "1")
    result = suite.runpytest("benchmarks", "--perfkit-baseline=other/baseline.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: other/baseline.json gates the benchmarks under other/ (a baseline gates the "
            "benchmarks in its own directory), but it holds benchmarks/test_suite.py::* and 1 "
            "more: move it beside them*"
        ]
    )
    assert "test_suite.py ." not in result.stdout.str()  # found before any test ran


def test_a_baseline_whose_benchmarks_are_gone_fails_even_if_nothing_ran_in_its_directory(
    suite: pytest.Pytester,
) -> None:
    refreshed(suite)
    (suite.path / "other").mkdir()
    (suite.path / "other" / "baseline.json").write_text(
        (suite.path / "benchmarks" / "baseline.json")
        .read_text()
        .replace("benchmarks/test_suite.py", "other/test_gone.py")
    )
    write_suite(suite, call=0.3)  # a 3x regression
    result = suite.runpytest("benchmarks", "--perfkit-baseline=other/baseline.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([glob("missing    other/test_gone.py::test_three_calls[*")])
    assert "2 perf unmatched" in result.stdout.lines[-1]


@pytest.mark.parametrize("how", [["--benchmark-skip"], ["-m", "not_a_marker_anyone_set"]])
@pytest.mark.parametrize("ci", ["", "1"])
def test_a_run_that_gated_nothing_says_so_and_fails_under_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: list[str], ci: str
) -> None:
    refreshed(suite)
    write_suite(suite, call=0.3)  # a 3x regression nobody measures
    monkeypatch.setenv("CI", ci)
    (suite.path / "benchmarks" / "test_plain.py").write_text("def test_plain():\n    pass\n")
    arguments = how if how[0] != "-m" else ["-k", "test_plain"]
    result = suite.runpytest("benchmarks", *arguments)
    result.stdout.fnmatch_lines(
        ["nothing was gated: this run measured none of the baseline's benchmarks (2 of its*"]
    )
    expected = pytest.ExitCode.TESTS_FAILED if ci else pytest.ExitCode.OK
    assert result.ret == expected
    assert "perf not gated" in result.stdout.lines[-1]


# --- misuse inside a test ------------------------------------------------------------------------

MISUSE: dict[str, tuple[str, str]] = {
    "coroutine-object": (
        """
import asyncio

async def one_call():
    await asyncio.sleep(0.1)

def test_misuse(perf):
    perf(one_call(), rounds=2)
""",
        "perf got the function to benchmark as an awaitable (one_call), which runs once at "
        "most: pass the function, not its call: perf(one_call, ...) rather than "
        "perf(one_call(), ...)",
    ),
    "rounds-zero": (
        "def test_misuse(perf):\n    perf(lambda: None, rounds=0)\n",
        "perf: rounds must be an int >= 1, got 0",
    ),
    "network-without-simulator": (
        """
import anthropic

def test_misuse(perf):
    def ask():
        client = anthropic.Anthropic(api_key="x", base_url="http://127.0.0.1:9", max_retries=0)
        with client:
            client.messages.create(
                model="claude-simulated", max_tokens=8,
                messages=[{"role": "user", "content": "Hi"}],
            )
    perf(ask)
""",
        "a perf round tried to reach a real server (APIConnectionError: Connection error.). "
        "Benchmarks run against the simulated API: add the anthropic_sim fixture",
    ),
    "unacknowledged-failure": (
        """
import anthropic
import pytest

def test_misuse(anthropic_sim):
    with anthropic.Anthropic(api_key="x", max_retries=0) as client, pytest.raises(Exception):
        client.get("/v1/not-simulated", cast_to=object)
""",
        "the simulated Anthropic API recorded a failure the test did not take: "
        "UnmatchedRequestError",
    ),
}


@pytest.mark.parametrize("case", sorted(MISUSE))
def test_misuse_is_one_error_naming_the_fix(pytester: pytest.Pytester, case: str) -> None:
    source, message = MISUSE[case]
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_inner=source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes: dict[str, Any] = result.parseoutcomes()
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == 1, result.stdout.str()
    output = result.stdout.str()
    assert message in output.replace("\n", " "), output
    failure = output.split("short test summary info")[0].split(" FAILURES ")[-1]
    assert "Traceback" not in failure, failure
    assert "site-packages" not in failure, failure
    assert "During handling of the above exception" not in output, output
    if case == "unacknowledged-failure":  # found when the simulator stops: at teardown
        assert "anthropic_sim.pop_failures()" in output
    else:
        assert "at teardown" not in output  # no second, spurious error


def test_an_unwritable_report_directory_is_one_line_naming_the_users_path(
    suite: pytest.Pytester,
) -> None:
    refreshed(suite)
    blocker = suite.path / "blocker"
    blocker.write_text("a file where a directory is needed")
    result = suite.runpytest("benchmarks", f"--perfkit-report-dir={blocker}/report")
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    [line] = [line for line in result.stdout.lines if line.startswith("ERROR:")]
    assert f"{blocker}/report/report.json" in line
    assert "cannot write" in line
    assert ".tmp" not in line
    assert "Traceback" not in output


@pytest.mark.parametrize("listing", ["--collect-only", "--fixtures", "--markers"])
def test_listing_runs_neither_report_nor_gate(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, listing: str
) -> None:
    refreshed(suite)
    monkeypatch.setenv("CI", "1")
    result = suite.runpytest("benchmarks", listing)
    assert result.ret == pytest.ExitCode.OK
    assert "nothing was gated" not in result.stdout.str()


# --- found by probing the gate: each a way a regression passed, or a run that said nothing ------


@pytest.mark.parametrize(
    "exclusion",
    [
        ("importorskip", []),
        ("ignore", ["--ignore=benchmarks/test_suite.py"]),
        ("renamed", []),
    ],
    ids=lambda exclusion: exclusion[0],
)
def test_a_baseline_file_the_run_asked_for_but_did_not_collect_is_missing(
    suite: pytest.Pytester, exclusion: tuple[str, list[str]]
) -> None:
    write_suite(suite, call=0.1, name="test_more.py")
    suite.runpytest("benchmarks", "--perfkit-create-baseline").assert_outcomes(passed=4)
    how, arguments = exclusion
    source = suite.path / "benchmarks" / "test_suite.py"
    if how == "importorskip":
        source.write_text(
            'import pytest\npytest.importorskip("no_such_module")\n' + source.read_text()
        )
    elif how == "renamed":
        source.write_text(source.read_text().replace("def test_three_calls", "def bench_three"))
    result = suite.runpytest("benchmarks", *arguments)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines([glob(f"missing    {CONCURRENT} (*")])


def test_a_symlinked_baseline_gates_the_directory_it_is_in(suite: pytest.Pytester) -> None:
    refreshed(suite)
    (suite.path / "store").mkdir()
    stored = suite.path / "store" / "baseline.json"
    (suite.path / "benchmarks" / "baseline.json").rename(stored)
    (suite.path / "benchmarks" / "baseline.json").symlink_to(stored)
    write_suite(suite, call=0.3)
    result = suite.runpytest("benchmarks")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([glob(f"REGRESSION {CONCURRENT}: modeled.mean rose *")])


def test_a_baseline_deleted_during_the_run_is_an_error(suite: pytest.Pytester) -> None:
    refreshed(suite)
    (suite.path / "benchmarks" / "test_zz_cleanup.py").write_text(
        "import pathlib\n\n\ndef test_cleanup():\n"
        "    pathlib.Path(__file__).with_name('baseline.json').unlink()\n"
    )
    result = suite.runpytest("benchmarks")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["ERROR: benchmarks/baseline.json: the baseline was there when*"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["-o", "perfkit_tolerance=5"],
            "ERROR: ini option perfkit_tolerance must be a fraction below 1 (0.05 is 5%); got "
            "'5', which would allow a rise of 500%",
        ),
        (
            ["-o", "perfkit_basline=benchmarks/baseline.json"],
            "ERROR: unknown perfkit ini option 'perfkit_basline' (did you mean perfkit_baseline?)*",
        ),
    ],
    ids=["tolerance-5", "ini-typo"],
)
def test_settings_that_would_open_the_gate_are_usage_errors(
    suite: pytest.Pytester, option: list[str], message: str
) -> None:
    refreshed(suite)
    result = suite.runpytest("benchmarks", *option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_benchmark_only_runs_perf_benchmarks(suite: pytest.Pytester) -> None:
    refreshed(suite)
    write_suite(suite, call=0.3)
    result = suite.runpytest("benchmarks", "--benchmark-only")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([glob(f"REGRESSION {CONCURRENT}: *")])


def test_a_users_speedup_hook_that_raises_is_one_line(suite: pytest.Pytester) -> None:
    refreshed(suite)
    (suite.path / "benchmarks" / "conftest.py").write_text(
        "def pytest_perfkit_speedups(config):\n    return config.no_such_attribute\n"
    )
    result = suite.runpytest("benchmarks")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        ["ERROR: pytest_perfkit_speedups raised AttributeError: *no_such_attribute*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_the_final_line_counts_a_regression_after_an_early_stop(suite: pytest.Pytester) -> None:
    refreshed(suite)
    write_suite(suite, call=0.3)
    (suite.path / "benchmarks" / "test_zz_broken.py").write_text(
        "def test_broken():\n    assert False\n\n\ndef test_after():\n    pass\n"
    )
    result = suite.runpytest("benchmarks", "-x")
    assert "2 perf regressions" in result.stdout.lines[-1]


def test_help_and_collection_work_before_the_first_baseline(suite: pytest.Pytester) -> None:
    assert suite.runpytest("--help").ret == pytest.ExitCode.OK
    assert suite.runpytest("benchmarks", "--collect-only").ret == pytest.ExitCode.OK
    assert suite.runpytest("benchmarks").ret == pytest.ExitCode.USAGE_ERROR


def test_a_run_without_a_baseline_reports_without_a_gate(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_bench="def test_bench(perf):\n    perf(lambda: None, rounds=2)\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--perfkit-report-dir=report")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "perfkit regression gate" not in result.stdout.str()
    assert (pytester.path / "report" / "report.json").is_file()
