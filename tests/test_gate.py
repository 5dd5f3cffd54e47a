"""The regression gate inside pytest: a small suite gated, refreshed and broken on purpose,
and real regressions injected into perfkit's own benchmark suite against the committed
baseline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from perfkit.reporting import json_schema, load_baseline

REPOSITORY = Path(__file__).resolve().parent.parent
INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
filterwarnings = error
addopts = --strict-markers -p no:cacheprovider -p no:randomly
perfkit_baseline = benchmarks/baseline.json
perfkit_report_dir = perfkit-report
"""
SUITE = """\
import asyncio

import pytest

from perfkit.reporting import Claim, Speedup

CALL = {call}


async def call():
    await asyncio.sleep(CALL)


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_three_calls(perf, perfkit_counters, mode):
    done = []
    perfkit_counters.track("calls", lambda: len(done))

    async def run():
        if mode == "sequential":
            for _ in range(3):
                await call()
        else:
            await asyncio.gather(*(call() for _ in range(3)))
        done.extend([1] * 3)

    perf(run, rounds=2)
"""
SPEEDUPS = """\
from perfkit.reporting import Claim, Speedup


def pytest_perfkit_speedups(config):
    return [
        Speedup(
            "async", "3 calls",
            "test_suite.py::test_three_calls[sequential]",
            "test_suite.py::test_three_calls[concurrent]",
            claim=Claim.factor(3),
        )
    ]
"""
CONCURRENT = "benchmarks/test_suite.py::test_three_calls[concurrent]"


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project with a two-benchmark suite in benchmarks/ and its baseline configured
    (not yet written: outside CI, where a missing baseline is an error; a test sets CI)."""
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini(INI)
    write_suite(pytester, call=0.1)
    (pytester.path / "benchmarks" / "conftest.py").write_text(SPEEDUPS)
    return pytester


def write_suite(pytester: pytest.Pytester, *, call: float, name: str = "test_suite.py") -> None:
    (pytester.path / "benchmarks").mkdir(exist_ok=True)
    (pytester.path / "benchmarks" / name).write_text(SUITE.format(call=call))


def refreshed(pytester: pytest.Pytester) -> dict[str, Any]:
    """Write the suite's baseline: created on a first run, else refreshed."""
    baseline = pytester.path / "benchmarks" / "baseline.json"
    switch = "--perfkit-update-baseline" if baseline.exists() else "--perfkit-create-baseline"
    result = pytester.runpytest("benchmarks", switch)
    result.assert_outcomes(passed=2)
    verb = "updated" if "update" in switch else "created"
    result.stdout.fnmatch_lines([f"baseline benchmarks/baseline.json {verb} from this run"])
    return load_baseline(baseline)


def test_a_refreshed_baseline_holds_the_exact_figures(suite: pytest.Pytester) -> None:
    baseline = refreshed(suite)
    entry = baseline["benchmarks"][CONCURRENT]
    assert entry["modeled"]["mean"] == 0.1
    assert entry["counters"] == {"calls": 6, "usd": 0}
    result = suite.runpytest("benchmarks")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*perfkit speedup report*",
            "async*3 calls*300 ms*100 ms*3.00x*3x*yes",
            "*perfkit regression gate*",
            "gate passed against benchmarks/baseline.json: 0 figure(s) regressed in 0 "
            "benchmark(s), 0 figure(s) improved in 0 benchmark(s), 0 new, 0 missing",
        ]
    )


def test_a_slower_benchmark_fails_the_run_with_a_message_naming_it(
    suite: pytest.Pytester,
) -> None:
    refreshed(suite)
    write_suite(suite, call=0.12)
    result = suite.runpytest("benchmarks")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2)  # every test passed: the gate alone fails the run
    result.stdout.fnmatch_lines(
        [
            f"REGRESSION {CONCURRENT}: modeled.mean rose from 100.000 ms to 120.000 ms "
            "(+20.0%; allowed: +0.1%); also max, p50, p95, p99",
            "gate FAILED against benchmarks/baseline.json: 10 figure(s) regressed in 2 "
            "benchmark(s), 0 figure(s) improved in 0 benchmark(s), 0 new, 0 missing",
        ]
    )
    assert suite.runpytest("benchmarks", "--perfkit-tolerance=0.25").ret == pytest.ExitCode.OK


def test_the_report_files_follow_the_documented_schema(suite: pytest.Pytester) -> None:
    refreshed(suite)
    suite.runpytest("benchmarks").assert_outcomes(passed=2)
    directory = suite.path / "perfkit-report"
    report = json.loads((directory / "report.json").read_text())
    import jsonschema

    jsonschema.validate(report, json_schema())
    assert report["gate"]["status"] == "pass"
    assert report["speedups"][0]["factor"] == 3.0
    assert report["collected"] == sorted(report["benchmarks"])
    assert (directory / "report.md").read_text().startswith("<!-- perfkit-report -->")
    assert (directory / "speedups.svg").read_text().startswith("<svg")


def test_two_runs_give_byte_identical_exact_figures(suite: pytest.Pytester) -> None:
    refreshed(suite)

    def exact() -> str:
        suite.runpytest("benchmarks").assert_outcomes(passed=2)
        report = json.loads((suite.path / "perfkit-report" / "report.json").read_text())
        for entry in report["benchmarks"].values():
            del entry["cpu"], entry["wall"]
        return json.dumps([report["benchmarks"], report["speedups"]])

    assert exact() == exact()


def test_new_and_missing_benchmarks_fail_the_strict_gate_and_deselected_ones_do_not(
    suite: pytest.Pytester,
) -> None:
    (suite.path / "benchmarks" / "conftest.py").unlink()  # its rows name the renamed test
    refreshed(suite)
    source = (suite.path / "benchmarks" / "test_suite.py").read_text()
    (suite.path / "benchmarks" / "test_suite.py").write_text(
        source.replace('["sequential", "concurrent"]', '["sequential", "batched"]')
    )
    result = suite.runpytest("benchmarks")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # a rename cannot slip past the gate
    result.stdout.fnmatch_lines(
        [
            "new        benchmarks/test_suite.py::test_three_calls[batched] (not in the baseline)",
            f"missing    {CONCURRENT} (in the baseline, no longer exists)",
        ]
    )
    assert "refresh the baseline in this change with --perfkit-update-baseline" in str(
        result.stdout
    )
    assert "2 passed, 2 perf unmatched in" in result.stdout.lines[-1]  # not "regressions"
    relaxed = suite.runpytest("benchmarks", "--perfkit-allow-unmatched")
    assert relaxed.ret == pytest.ExitCode.OK
    suite.runpytest("benchmarks", "--perfkit-update-baseline")
    deselected = suite.runpytest("benchmarks", "-k", "batched")
    assert deselected.ret == pytest.ExitCode.OK
    deselected.stdout.fnmatch_lines(["not run    1 baseline benchmark(s) deselected or skipped"])


def test_a_failing_run_does_not_refresh_the_baseline(suite: pytest.Pytester) -> None:
    baseline = refreshed(suite)
    write_suite(suite, call=0.5)
    (suite.path / "benchmarks" / "test_broken.py").write_text("def test_x():\n    assert 0\n")
    result = suite.runpytest("benchmarks", "--perfkit-update-baseline")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["baseline not updated: the run had failures"])
    assert load_baseline(suite.path / "benchmarks" / "baseline.json") == baseline


def test_benchmarks_outside_the_baseline_directory_are_not_gated(
    suite: pytest.Pytester,
) -> None:
    refreshed(suite)
    shutil.rmtree(suite.path / "perfkit-report")
    (suite.path / "tests").mkdir()
    (suite.path / "tests" / "test_other.py").write_text(
        "def test_other(perf):\n    perf(lambda: None)\n"
    )
    result = suite.runpytest("tests")
    assert result.ret == pytest.ExitCode.OK
    assert "perfkit regression gate" not in result.stdout.str()
    assert not (suite.path / "perfkit-report").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "benchmarks/baseline.json: the baseline file is not valid JSON*"),
        ('{"schema": "perfkit-report/1"}', "*not a perfkit baseline file*"),
        (
            '{"schema": "perfkit-baseline/1", "calibration": {}, "benchmarks": {}}',
            "*the baseline file is corrupt at calibration: 'seconds' is a required property",
        ),
    ],
)
def test_a_corrupt_baseline_is_a_usage_error_before_anything_runs(
    suite: pytest.Pytester, content: str, message: str
) -> None:
    (suite.path / "benchmarks" / "baseline.json").write_text(content)
    result = suite.runpytest("benchmarks")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "passed" not in result.stdout.str()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["-o", "perfkit_baseline=", "--perfkit-update-baseline"],
            "ERROR: --perfkit-update-baseline needs a baseline file: pass --perfkit-baseline "
            "PATH or set the ini option perfkit_baseline",
        ),
        (
            ["--perfkit-tolerance=-1"],
            "ERROR: --perfkit-tolerance must be a number >= 0 (a fraction: 0.001 is 0.1%); "
            "got '-1'",
        ),
        (
            ["--perfkit-cpu-threshold=lots"],
            "ERROR: --perfkit-cpu-threshold must be a number >= 0*got 'lots'",
        ),
        (["--perfkit-baseline= "], "ERROR: --perfkit-baseline must be a baseline file path*"),
    ],
)
def test_bad_gate_options_are_usage_errors(
    suite: pytest.Pytester, arguments: list[str], message: str
) -> None:
    result = suite.runpytest("benchmarks", *arguments)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


# Real regressions, injected into perfkit's own benchmarks, against the committed baseline.

CACHE_NEVER_HITS = """\
from perfkit.cache._multilayer import MultiLayerCache


def _store(self, key, value, ttl, compute_seconds, stats, **fill):
    # The regression: a cache that never keeps what it is given, so it never hits.
    return
    yield


MultiLayerCache._store = _store
"""
SERIAL_GATHER = """\
import perfkit.concurrency


async def gather_one_by_one(awaitables, *, limit=None, return_exceptions=False):
    # The regression: "concurrent" work awaited one item after another.
    return [await (item() if callable(item) else item) for item in awaitables]


perfkit.concurrency.gather_bounded = gather_one_by_one
"""
UNPOOLED_CLIENT = """\
import contextlib

from perfkit.agents import OptimizedAgent


@contextlib.asynccontextmanager
async def _new_client_per_request(self):
    # The regression: the optimized agent opens (and closes) a client for every request.
    session = self._new_session()
    async with session.client:
        yield session


OptimizedAgent._session = _new_client_per_request
"""
NO_PROMPT_CACHING = """\
from perfkit.agents import OptimizedAgent

_request = OptimizedAgent._request


def _unmarked(value):
    if isinstance(value, dict):
        return {key: _unmarked(item) for key, item in value.items() if key != "cache_control"}
    if isinstance(value, list):
        return [_unmarked(item) for item in value]
    return value


def _request_without_cache_control(self, messages):
    # The regression: the optimized agent's requests lose their cache_control breakpoints.
    return _unmarked(_request(self, messages))


OptimizedAgent._request = _request_without_cache_control
"""

NO_CONVERSATION_BREAKPOINTS = """\
import perfkit.agents._agent

_with_breakpoints = perfkit.agents._agent.with_breakpoints


def _unmarked(block):
    return {key: item for key, item in block.items() if key != "cache_control"}


def _tools_and_system_only(request, *, ttl):
    # The regression: the conversation loses its breakpoints; tools and system keep theirs.
    built = _with_breakpoints(request, ttl=ttl)
    built["messages"] = [
        {**message, "content": [_unmarked(block) for block in message["content"]]}
        for message in built["messages"]
    ]
    return built


perfkit.agents._agent.with_breakpoints = _tools_and_system_only
"""


@pytest.fixture
def our_benchmarks(pytester: pytest.Pytester) -> pytest.Pytester:
    """perfkit's benchmark suite and its committed baseline, in a project of its own."""
    pytester.makeini(INI)
    shutil.copytree(
        REPOSITORY / "benchmarks",
        pytester.path / "benchmarks",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return pytester


def glob(pattern: str) -> str:
    """``pattern`` for fnmatch_lines with node ids' brackets taken literally."""
    return pattern.replace("[", "[[]")


def run_injected(project: pytest.Pytester, injection: str, *arguments: str) -> Any:
    """Our suite with a regression injected, its CPU gate opened wide: what these runs
    prove is the exact figures' gate, which a busy machine cannot touch."""
    (project.path / "conftest.py").write_text(injection)
    return project.runpytest_subprocess(*arguments, "--perfkit-cpu-threshold=10", timeout=300)


def test_the_committed_baseline_passes_without_an_injection(
    our_benchmarks: pytest.Pytester,
) -> None:
    result = run_injected(our_benchmarks, "", "benchmarks/test_cache_impact.py")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "gate passed against benchmarks/baseline.json: 0 figure(s) regressed in 0 "
            "benchmark(s), 0 figure(s) improved in 0 benchmark(s), 0 new, 0 missing"
        ]
    )


def test_a_cache_that_never_hits_fails_the_gate(our_benchmarks: pytest.Pytester) -> None:
    result = run_injected(
        our_benchmarks, CACHE_NEVER_HITS, "benchmarks/test_cache_impact.py", "-k", "caching_impact"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=4)  # the benchmarks' own assertions do not notice
    hit = "benchmarks/test_cache_impact.py::test_caching_impact[identical-query-l1-hit]"
    result.stdout.fnmatch_lines(
        [
            f"REGRESSION {hit}: counters.api_requests rose from 0 to 3 (from zero; counters "
            "may not grow)",
            glob(f"REGRESSION {hit}: counters.usd rose from $0.000000 to $0.") + "*",
            f"REGRESSION {hit}: modeled.mean rose from 0.000 ms to 3,000.500 ms (from zero; "
            "allowed: +0.1%); also max, p50, p95, p99",
            "gate FAILED against benchmarks/baseline.json: 16 figure(s) regressed in 2 "
            "benchmark(s), 0 figure(s) improved in 0 benchmark(s), 0 new, 0 missing",
        ]
    )


def test_a_serial_gather_fails_the_gate(our_benchmarks: pytest.Pytester) -> None:
    result = run_injected(our_benchmarks, SERIAL_GATHER, "benchmarks/test_async.py")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=6)
    readme = (REPOSITORY / "README.md").read_text()
    [quoted] = [block for block in readme.split("```text\n")[1:] if "REGRESSION" in block]
    result.stdout.fnmatch_lines(quoted.partition("```")[0].splitlines())  # what README shows
    queries = "benchmarks/test_async.py::test_five_database_queries[concurrent]"
    tools = "benchmarks/test_async.py::test_one_tool_use_turn[concurrent]"
    result.stdout.fnmatch_lines(
        [
            f"REGRESSION {queries}: modeled.mean rose from 100.000 ms to 500.000 ms (+400.0%; "
            "allowed: +0.1%); also max, p50, p95, p99",
            f"REGRESSION {tools}: modeled.mean rose from 500.000 ms to 1,400.000 ms (+180.0%; "
            "allowed: +0.1%); also max, p50, p95, p99",
        ]
    )


@pytest.mark.slow  # the combined benchmark in a subprocess, about 25 s
def test_an_unpooled_client_fails_the_gate(our_benchmarks: pytest.Pytester) -> None:
    result = run_injected(
        our_benchmarks,
        UNPOOLED_CLIENT,
        "benchmarks/test_combined.py::test_combined_workload[optimized]",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1)
    optimized = "benchmarks/test_combined.py::test_combined_workload[optimized]"
    baseline = load_baseline(REPOSITORY / "benchmarks" / "baseline.json")["benchmarks"]
    pooled = baseline[optimized]["counters"]["api_connections"]
    result.stdout.fnmatch_lines(
        [
            glob(f"REGRESSION {optimized}: counters.api_connections rose from {pooled} to *"),
            glob(f"REGRESSION {optimized}: observed.mean rose from * ms to *"),
        ]
    )


@pytest.mark.slow  # the prompt-caching benchmark in a subprocess, about 10 s
def test_dropping_prompt_caching_fails_the_gate_on_cost_and_ttft(
    our_benchmarks: pytest.Pytester,
) -> None:
    result = run_injected(
        our_benchmarks,
        NO_PROMPT_CACHING,
        "benchmarks/test_prompt_caching.py::test_prompt_caching[with-prompt-caching]",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)  # its own check: with prompt caching, reads happen
    cached = "benchmarks/test_prompt_caching.py::test_prompt_caching[with-prompt-caching]"
    # Without breakpoints the agent sends what the run without prompt caching sends.
    baseline = load_baseline(REPOSITORY / "benchmarks" / "baseline.json")["benchmarks"]
    uncached = baseline[cached.replace("[with-", "[without-")]
    assert baseline[cached]["counters"]["usd"] < uncached["counters"]["usd"]
    result.stdout.fnmatch_lines(
        [
            glob(f"REGRESSION {cached}: counters.api_cache_read_tokens fell from * to 0 *"),
            glob(f"REGRESSION {cached}: counters.api_prefilled_tokens rose from * to *"),
            glob(f"REGRESSION {cached}: counters.usd rose from $* to $*"),
            glob(f"REGRESSION {cached}: observed.mean rose from * ms to * ms*; also *p50*p95*"),
        ]
    )
    before, after = (entry["counters"]["usd"] for entry in (baseline[cached], uncached))
    result.stdout.fnmatch_lines([f"*: counters.usd rose from ${before:,.6f} to ${after:,.6f} *"])
    before, after = (entry["series"]["observed"]["mean"] for entry in (baseline[cached], uncached))
    result.stdout.fnmatch_lines(
        [f"*: observed.mean rose from {before * 1e3:,.3f} ms to {after * 1e3:,.3f} ms *"]
    )


@pytest.mark.slow  # the prompt-caching benchmark in a subprocess, about 10 s
def test_dropping_only_the_conversation_breakpoints_fails_the_gate_on_cost_and_ttft(
    our_benchmarks: pytest.Pytester,
) -> None:
    """A partial drop: the tools and system prompt are still read from the cache (so the
    benchmark's own check, that reads happen, passes), the conversation no longer is."""
    cached = "benchmarks/test_prompt_caching.py::test_prompt_caching[with-prompt-caching]"
    result = run_injected(our_benchmarks, NO_CONVERSATION_BREAKPOINTS, cached)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            glob(f"REGRESSION {cached}: counters.api_cache_read_tokens fell from * to *"),
            glob(f"REGRESSION {cached}: counters.usd rose from $* to $*"),
            glob(f"REGRESSION {cached}: observed.mean rose from * ms to * ms*; also *p50*p95*"),
        ]
    )


# What a run covered: selections, deleted files, refreshes


def test_selecting_one_benchmark_by_node_id_leaves_the_others_alone(
    suite: pytest.Pytester,
) -> None:
    baseline = refreshed(suite)
    selected = suite.runpytest(f"{CONCURRENT}", "--perfkit-update-baseline")
    selected.assert_outcomes(passed=1)
    assert "missing" not in selected.stdout.str()
    assert set(load_baseline(suite.path / "benchmarks" / "baseline.json")["benchmarks"]) == set(
        baseline["benchmarks"]
    )


def test_a_deleted_benchmark_file_is_missing_and_a_refresh_drops_it(
    suite: pytest.Pytester,
) -> None:
    write_suite(suite, call=0.1, name="test_other.py")
    suite.runpytest("benchmarks", "--perfkit-create-baseline").assert_outcomes(passed=4)
    (suite.path / "benchmarks" / "test_other.py").unlink()
    result = suite.runpytest("benchmarks")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [glob("missing    benchmarks/test_other.py::test_three_calls[concurrent] (in the*")]
    )
    suite.runpytest("benchmarks", "--perfkit-update-baseline")
    remaining = load_baseline(suite.path / "benchmarks" / "baseline.json")["benchmarks"]
    assert not [nodeid for nodeid in remaining if "test_other.py" in nodeid]


def test_refreshing_when_no_benchmark_ran_says_so(suite: pytest.Pytester) -> None:
    result = suite.runpytest("benchmarks", "-k", "nothing_matches", "--perfkit-create-baseline")
    result.stdout.fnmatch_lines(["baseline not created: no benchmark under benchmarks/ ran*"])
    assert not (suite.path / "benchmarks" / "baseline.json").exists()


@pytest.mark.parametrize("ci", ["", "true"])
def test_a_missing_baseline_is_a_usage_error_before_any_test_runs(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    result = suite.runpytest("benchmarks")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: ini option perfkit_baseline: no baseline file at *benchmarks/baseline.json "
            "(a first run creates it with --perfkit-create-baseline)"
        ]
    )
    assert "test_suite.py" not in result.stdout.str()  # nothing was collected or run


def test_a_baseline_from_the_real_clock_is_a_mismatch(suite: pytest.Pytester) -> None:
    suite.runpytest("benchmarks", "--perfkit-clock=real", "--perfkit-create-baseline")
    result = suite.runpytest("benchmarks")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        ["ERROR: the baseline was measured on the real clock and this run*"]
    )


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (
            'Speedup("a", "b", "test_suite.py::test_three_calls[sequental]", '
            '"test_suite.py::test_three_calls[concurrent]")',
            "ERROR: Speedup 'a', 'b': no benchmark 'test_suite.py::test_three_calls[sequental]' "
            "was collected from its file",
        ),
        (
            'Speedup("a", "b", "test_three_calls", "x")',
            "ERROR: Speedup 'a', 'b': 'test_three_calls' is not a benchmark's node id*",
        ),
    ],
)
def test_a_speedup_row_naming_nothing_is_a_usage_error(
    suite: pytest.Pytester, hook: str, message: str
) -> None:
    (suite.path / "benchmarks" / "conftest.py").write_text(
        "from perfkit.reporting import Claim, Speedup\n\n\n"
        f"def pytest_perfkit_speedups(config):\n    return [{hook}]\n"
    )
    result = suite.runpytest("benchmarks", "--perfkit-create-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines([glob(message) if "*" not in message else message])


def test_a_hook_returning_one_speedup_instead_of_a_list_is_a_usage_error(
    suite: pytest.Pytester,
) -> None:
    (suite.path / "benchmarks" / "conftest.py").write_text(
        SPEEDUPS.replace("    ]\n", "    ][0]\n")
    )
    result = suite.runpytest("benchmarks", "--perfkit-create-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["ERROR: pytest_perfkit_speedups must return a list of Speedup*"])


def test_profiling_and_refreshing_the_baseline_do_not_mix(suite: pytest.Pytester) -> None:
    result = suite.runpytest(
        "benchmarks", "--perfkit-profile=profiles", "--perfkit-update-baseline"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --perfkit-update-baseline cannot be combined with*"])


@pytest.mark.slow  # three benchmark files in a subprocess, twice
def test_our_seeded_benchmarks_give_byte_identical_exact_figures(
    our_benchmarks: pytest.Pytester,
) -> None:
    files = [
        "benchmarks/test_api_calls.py",
        "benchmarks/test_streaming.py",
        "benchmarks/test_cache_impact.py",
    ]

    def exact() -> str:
        result = our_benchmarks.runpytest_subprocess(*files, "--perfkit-tolerance=0", timeout=300)
        assert result.ret == pytest.ExitCode.OK  # and no exact figure moved from the baseline
        report = json.loads((our_benchmarks.path / "perfkit-report" / "report.json").read_text())
        for entry in report["benchmarks"].values():
            del entry["cpu"], entry["wall"]
        rows = [row for row in report["speedups"] if row["deterministic"]]
        return json.dumps([report["benchmarks"], rows])

    assert exact() == exact()
