"""Tests of perfkit._profiling and the ``--perfkit-profile`` option of the ``perf`` fixture."""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perfkit._clock import VirtualClock
from perfkit._errors import PerfkitError
from perfkit._perf import Perf
from perfkit._profiling import (
    DEFAULT_TOP,
    BenchmarkProfiler,
    ProfileFiles,
    collapsed_stacks,
    file_stem,
    frame_label,
)
from perfkit._settings import Settings
from perfkit.pytest_plugin import SETTINGS_KEY

ROW = re.compile(r"^\s*(\d+(?:/\d+)?)\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\S.*)$")
COLLAPSED_LINE = re.compile(r"^(?P<stack>[^;\n]+(?:;[^;\n]+)*) (?P<count>[1-9]\d*)$")


def leaf(n: int) -> int:
    return sum(i * i for i in range(n))


def branch(n: int) -> int:
    return leaf(n) + leaf(n // 2)


def trunk() -> list[int]:
    return [branch(200) for _ in range(3)]


def profiled_names(files: ProfileFiles) -> set[str]:
    """The function names in a written ``.prof`` file."""
    return {name for _file, _line, name in pstats.Stats(str(files.prof)).stats}  # type: ignore[attr-defined]


def table_rows(files: ProfileFiles) -> list[tuple[str, float, float, str]]:
    """(ncalls, tottime ms, cumtime ms, function) of each row of the ``.txt`` table."""
    lines = files.table.read_text(encoding="utf-8").splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["ncalls"])
    rows = [ROW.match(line) for line in lines[header + 1 :]]
    assert all(rows), lines
    return [(m[1], float(m[2]), float(m[3]), m[4]) for m in rows if m]


def profile_of(tmp_path: Path, work: Callable[[], Any], *, top: int = DEFAULT_TOP) -> ProfileFiles:
    profiler = BenchmarkProfiler(tmp_path / "profiles", name="test_x.py::test_y", top=top)
    profiler.runcall(work)
    return profiler.write()


# --- the files ------------------------------------------------------------------------------


def test_write_creates_the_directory_and_three_files_named_after_the_benchmark(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "nested" / "profiles"
    profiler = BenchmarkProfiler(directory, name="benchmarks/test_x.py::test_y[a-b]")
    profiler.runcall(trunk)
    files = profiler.write()
    stem = file_stem("benchmarks/test_x.py::test_y[a-b]")
    assert files == ProfileFiles(
        prof=directory / f"{stem}.prof",
        table=directory / f"{stem}.txt",
        collapsed=directory / f"{stem}.collapsed",
    )
    assert sorted(path.name for path in directory.iterdir()) == sorted(path.name for path in files)


def test_the_prof_file_loads_with_pstats_and_holds_the_profiled_functions(tmp_path: Path) -> None:
    files = profile_of(tmp_path, trunk)
    assert {"trunk", "branch", "leaf"} <= profiled_names(files)


def test_the_profile_accumulates_over_calls(tmp_path: Path) -> None:
    profiler = BenchmarkProfiler(tmp_path, name="t")
    for _ in range(4):
        profiler.runcall(branch, 10)
    files = profiler.write()
    calls = {row[3].split()[0]: row[0] for row in table_rows(files)}
    assert calls["branch"] == "4"
    assert calls["leaf"] == "8"
    assert profiler.calls == 4
    assert "(4 measured rounds, cProfile)" in files.table.read_text(encoding="utf-8")


def test_runcall_returns_the_value_and_passes_arguments(tmp_path: Path) -> None:
    profiler = BenchmarkProfiler(tmp_path, name="t")
    assert profiler.runcall(branch, 4) == leaf(4) + leaf(2)


def test_the_table_lists_top_functions_by_cumulative_time(tmp_path: Path) -> None:
    files = profile_of(tmp_path, trunk, top=3)
    rows = table_rows(files)
    assert len(rows) == 3
    cumulative = [row[2] for row in rows]
    assert cumulative == sorted(cumulative, reverse=True)
    assert rows[0][3].startswith("trunk (test_profiling.py:")
    text = files.table.read_text(encoding="utf-8")
    assert (
        text.splitlines()[0] == "perfkit profile of test_x.py::test_y (1 measured round, cProfile)"
    )
    assert re.search(r"top 3 of \d+ functions by cumulative time", text)


def test_a_short_profile_lists_every_function(tmp_path: Path) -> None:
    files = profile_of(tmp_path, trunk, top=1000)
    assert len(table_rows(files)) == len(pstats.Stats(str(files.prof)).stats)  # type: ignore[attr-defined]


def test_recursive_calls_show_total_over_primitive_calls(tmp_path: Path) -> None:
    def countdown(n: int) -> int:
        return 0 if n == 0 else countdown(n - 1)

    files = profile_of(tmp_path, lambda: countdown(3))
    calls = {row[3].split()[0]: row[0] for row in table_rows(files)}
    assert calls["countdown"] == "4/1"


# --- collapsed stacks -----------------------------------------------------------------------


def test_the_collapsed_file_is_in_the_flame_graph_format(tmp_path: Path) -> None:
    files = profile_of(tmp_path, trunk)
    lines = files.collapsed.read_text(encoding="utf-8").splitlines()
    matches = [COLLAPSED_LINE.match(line) for line in lines]
    assert lines
    assert all(matches), lines
    stacks = [
        [frame.split()[0] for frame in match["stack"].split(";")] for match in matches if match
    ]
    assert any(calls_in_order(stack, "trunk", "branch", "leaf") for stack in stacks)
    assert all(calls_in_order(stack, "branch", "leaf") for stack in stacks if "leaf" in stack)


def calls_in_order(stack: list[str], *names: str) -> bool:
    """Whether ``names`` appear in ``stack`` in this order (callers first)."""
    positions = [stack.index(name) for name in names if name in stack]
    return len(positions) == len(names) and positions == sorted(positions)


def _function(name: str) -> tuple[str, int, str]:
    return (f"/src/{name.lower()}.py", 1, name)


def _edge(seconds: float) -> tuple[int, int, float, float]:
    return (1, 1, seconds, seconds)


def test_collapsed_stacks_split_a_callee_among_its_callers_by_their_share() -> None:
    a, b, c, d = (_function(name) for name in "ABCD")
    stats = {
        a: (1, 1, 1.0, 10.0, {}),
        d: (1, 1, 0.0, 3.0, {}),
        b: (2, 2, 2.0, 12.0, {a: _edge(9.0), d: _edge(3.0)}),
        c: (2, 2, 10.0, 10.0, {b: _edge(10.0)}),
    }
    assert collapsed_stacks(stats) == [
        "A (a.py:1) 1000000",
        "A (a.py:1);B (b.py:1) 1500000",
        "A (a.py:1);B (b.py:1);C (c.py:1) 7500000",
        "D (d.py:1);B (b.py:1) 500000",
        "D (d.py:1);B (b.py:1);C (c.py:1) 2500000",
    ]


def test_collapsed_stacks_cut_recursion_at_the_first_repeat() -> None:
    root, f = _function("Root"), _function("F")
    stats = {
        root: (1, 1, 0.0, 2.0, {}),
        f: (1, 3, 2.0, 2.0, {root: _edge(2.0), f: _edge(1.0)}),
    }
    assert collapsed_stacks(stats) == ["Root (root.py:1);F (f.py:1) 2000000"]


def test_frame_labels_have_no_separator_or_line_break() -> None:
    assert frame_label(("/a;b\n/c.py", 7, "go")) == "go (c.py:7)"
    assert frame_label(("/src/x;y.py", 3, "f")) == "f (x_y.py:3)"
    assert frame_label(("~", 0, "<built-in method time.sleep>")) == "<built-in method time.sleep>"


# --- what the perf fixture profiles ---------------------------------------------------------


class StubBenchmark:
    """What Perf needs of pytest-benchmark's fixture: pedantic mode reading ``_timer``."""

    name = "test_stub"

    def __init__(self) -> None:
        self._timer: Callable[[], float] = lambda: 0.0
        self.extra_info: dict[str, Any] = {}

    def pedantic(self, target: Callable[[], Any], *, rounds: int, iterations: int) -> Any:
        return [target() for _ in range(rounds)][-1]


def in_setup() -> None:
    """Called by the benchmark's setup only."""


def in_warmup() -> None:
    """Called by warm-up rounds only."""


def in_measured() -> None:
    """Called by measured rounds only."""


def in_thread() -> None:
    """Called in a worker thread during measured rounds."""


def test_perf_profiles_the_measured_rounds_only(tmp_path: Path) -> None:
    profiler = BenchmarkProfiler(tmp_path, name="test_stub")
    perf = Perf(StubBenchmark(), VirtualClock(), profiler=profiler)
    warmups = 2

    def work() -> None:
        nonlocal warmups
        if warmups:
            warmups -= 1
            in_warmup()
        else:
            in_measured()

    perf(work, rounds=3, warmup_rounds=2, setup=in_setup)
    assert perf.profile_files is not None
    names = profiled_names(perf.profile_files)
    assert {"work", "in_measured"} <= names
    assert not {"in_warmup", "in_setup"} & names
    assert profiler.calls == 3


def test_perf_profiles_coroutines_and_other_threads_from_python_3_12(tmp_path: Path) -> None:
    clock = VirtualClock()
    perf = Perf(StubBenchmark(), clock, profiler=BenchmarkProfiler(tmp_path, name="t"))

    async def work() -> None:
        await asyncio.sleep(0.5)
        in_measured()
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()

    perf(work, rounds=2)
    assert perf.result.modeled == [0.5, 0.5]
    assert perf.profile_files is not None
    names = profiled_names(perf.profile_files)
    assert {"work", "in_measured"} <= names
    assert ("in_thread" in names) == (sys.version_info >= (3, 12))  # cProfile on sys.monitoring


def test_perf_writes_the_profile_even_when_a_round_fails(tmp_path: Path) -> None:
    perf = Perf(StubBenchmark(), VirtualClock(), profiler=BenchmarkProfiler(tmp_path, name="t"))

    def work() -> None:
        in_measured()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        perf(work)
    assert perf.profile_files is not None
    assert "in_measured" in profiled_names(perf.profile_files)


def test_perf_without_a_profiler_writes_nothing(tmp_path: Path) -> None:
    perf = Perf(StubBenchmark(), VirtualClock())
    perf(in_measured, rounds=2)
    assert perf.profile_files is None


def test_a_second_profiler_is_refused_from_python_3_12(tmp_path: Path) -> None:
    profiler = BenchmarkProfiler(tmp_path, name="test_x.py::test_y")
    with cProfile.Profile():
        if sys.version_info < (3, 12):  # the newest profiler takes over
            assert profiler.runcall(branch, 4) == leaf(4) + leaf(2)
            return
        with pytest.raises(PerfkitError, match=r"^cannot profile test_x.py::test_y: .*--benchmark"):
            profiler.runcall(branch, 4)
    assert profiler.calls == 0


# --- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize("top", [0, -1, 2.0, True, "3", None])
def test_top_must_be_a_positive_int(tmp_path: Path, top: Any) -> None:
    with pytest.raises(ValueError, match=rf"^top must be an int >= 1, got {re.escape(repr(top))}$"):
        BenchmarkProfiler(tmp_path, name="t", top=top)


# --- file stems -------------------------------------------------------------------------------

SAFE_STEM = re.compile(r"^[A-Za-z0-9_\-\[\]][A-Za-z0-9._\-\[\]]*-[0-9a-f]{10}$")
WINDOWS_DEVICES = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)),
}
NODE_IDS = [
    "benchmarks/test_x.py::test_y[a-b]",
    "benchmarks.test_x.py::test_y[a-b]",  # '/' and '.' read alike once cleaned
    "benchmarks/test_x.py::test_Y[a-b]",  # differs in case only (Windows, macOS)
    "benchmarks/test_x.py::test_y[a/b]",
    "benchmarks/test_x.py::test_y[a.b]",
    "benchmarks/test_x.py::test_y[a b]",
    "benchmarks/test_x.py::test_y[a_b]",
    "benchmarks/test_x.py::test_y[a:b]",
    'benchmarks/test_x.py::test_y[a*b?<c>|"d"]',
    "benchmarks\\test_x.py::test_y[a-b]",
    "../outside/test_x.py::test_y",
    "tests/test_ü.py::test_ünïcode[日本]",
    "tests/test_x.py::test_y[" + "a" * 300 + "]",
    "tests/test_x.py::test_y[" + "a" * 300 + "b]",  # the same once truncated
    "aux.py::test_y",
    "CON",
    "",
]


def test_the_stem_is_readable() -> None:
    assert file_stem("benchmarks/test_x.py::test_y[a-b]").startswith(
        "benchmarks.test_x.py..test_y[a-b]-"
    )


def test_the_stem_is_stable() -> None:
    assert file_stem(NODE_IDS[0]) == file_stem(NODE_IDS[0])


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_the_stem_is_safe_on_every_platform(node_id: str) -> None:
    stem = file_stem(node_id)
    assert SAFE_STEM.match(stem), stem
    assert len(stem) <= 132
    assert stem.split(".")[0].upper() not in WINDOWS_DEVICES


def test_stems_of_different_ids_differ_even_ignoring_case(tmp_path: Path) -> None:
    stems = [file_stem(node_id) for node_id in NODE_IDS]
    assert len({stem.lower() for stem in stems}) == len(NODE_IDS)
    for stem in stems:
        (tmp_path / f"{stem}.prof").write_bytes(b"")
    assert len(list(tmp_path.iterdir())) == len(NODE_IDS)


# --- the --perfkit-profile option -------------------------------------------------------------

INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
{extra}
"""

BENCHMARKS = """
import pytest

def helper(n):
    return sum(range(n))

@pytest.mark.parametrize("size", [10, 20])
def test_bench(perf, size):
    perf(helper, size, rounds=3, warmup_rounds=1)
    assert {expected}

def test_not_a_benchmark():
    pass
"""
PROFILED = "perf.profile_files.prof.exists()"
SUMMARY = "perfkit: cProfile of each benchmark's measured rounds"

# hypothesis's plugin (installed, unused here) imports hypothesis afresh in every run.
PLUGINS_OFF = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def run_benchmarks(
    pytester: pytest.Pytester, *args: str, ini: str = "", expected: str = PROFILED
) -> pytest.RunResult:
    pytester.makeini(INI.format(extra=ini))
    pytester.makepyfile(test_bench=BENCHMARKS.format(expected=expected))
    return pytester.runpytest(*PLUGINS_OFF, *args)


def written(directory: Path) -> dict[str, ProfileFiles]:
    """The profile files in ``directory`` by benchmark, checking each has all three."""
    stems = {file_stem(f"test_bench.py::test_bench[{size}]"): size for size in (10, 20)}
    expected = {f"{stem}{suffix}" for stem in stems for suffix in (".prof", ".txt", ".collapsed")}
    assert {path.name for path in directory.iterdir()} == expected
    return {
        str(size): ProfileFiles(
            *(directory / f"{stem}{s}" for s in (".prof", ".txt", ".collapsed"))
        )
        for stem, size in stems.items()
    }


def test_the_option_writes_a_profile_per_benchmark(pytester: pytest.Pytester) -> None:
    result = run_benchmarks(pytester, "--perfkit-profile=out/profiles", "--perfkit-profile-top=2")
    result.assert_outcomes(passed=3)
    profiles = written(pytester.path / "out" / "profiles")
    for files in profiles.values():
        assert "helper" in profiled_names(files)
        assert len(table_rows(files)) == 2
    lines = result.stdout.lines
    section = next(i for i, line in enumerate(lines) if SUMMARY in line)
    assert lines[section + 1 : section + 3] == [
        f"{files.prof.parent / files.prof.stem}.{{prof,txt,collapsed}}"
        for files in profiles.values()
    ]


def test_an_option_is_relative_to_the_invocation_directory_and_ini_to_the_ini_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    result = run_benchmarks(pytester, str(pytester.path), ini="perfkit_profile = from-ini")
    result.assert_outcomes(passed=3)
    written(pytester.path / "from-ini")
    result = run_benchmarks(pytester, str(pytester.path), "--perfkit-profile=from-option")
    result.assert_outcomes(passed=3)
    written(pytester.path / "elsewhere" / "from-option")


def test_without_the_option_nothing_is_profiled(pytester: pytest.Pytester) -> None:
    result = run_benchmarks(pytester, expected="perf.profile_files is None")
    result.assert_outcomes(passed=3)
    assert SUMMARY not in result.stdout.str()
    assert not list(pytester.path.rglob("*.prof"))


def test_settings_resolve_the_profile_options(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra="perfkit_profile = ini-profiles\nperfkit_profile_top = 7"))
    config = pytester.parseconfigure(*PLUGINS_OFF)
    assert config.stash[SETTINGS_KEY] == Settings(
        profile_dir=pytester.path / "ini-profiles", profile_top=7
    )
    config = pytester.parseconfigure(*PLUGINS_OFF, "--perfkit-profile-top=3", "--perfkit-profile=p")
    assert config.stash[SETTINGS_KEY] == Settings(profile_dir=pytester.path / "p", profile_top=3)


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--perfkit-profile-top=0"], "", "--perfkit-profile-top must be an int >= 1; got '0'"),
        (["--perfkit-profile-top=-3"], "", "--perfkit-profile-top must be an int >= 1; got '-3'"),
        (["--perfkit-profile-top=2.5"], "", "--perfkit-profile-top must be an int >= 1; got '2.5'"),
        (["--perfkit-profile-top=ten"], "", "--perfkit-profile-top must be an int >= 1; got 'ten'"),
        (
            [],
            "perfkit_profile_top = 0",
            "ini option perfkit_profile_top must be an int >= 1; got '0'",
        ),
        (["--perfkit-profile="], "", "--perfkit-profile must be a directory path; got ''"),
        (
            ["--perfkit-profile=test_bench.py"],
            "",
            "--perfkit-profile must be a directory path; got 'test_bench.py'",
        ),
    ],
    ids=[
        "top-zero",
        "top-negative",
        "top-float",
        "top-word",
        "top-ini-zero",
        "dir-empty",
        "dir-file",
    ],
)
def test_a_bad_profile_option_is_a_one_line_usage_error(
    pytester: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    result = run_benchmarks(pytester, *args, ini=ini)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.startswith("ERROR:")] == [f"ERROR: {message}"]
    assert "test_bench" not in result.stdout.str()


# --- the docs ---------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "profiling.md"


def doc_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_doc_examples_run(pytester: pytest.Pytester) -> None:
    test_example, stats_example = doc_examples()
    pytester.makeini(INI.format(extra=""))
    pytester.makepyfile(test_example=test_example)
    result = pytester.runpytest(*PLUGINS_OFF, "-s", "--perfkit-profile=profiles")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*agent_turn (test_example.py:*"])
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-c", stats_example],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "test_example.py:1(agent_turn)" in completed.stdout
