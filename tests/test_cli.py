"""The perfkit command line and its demos."""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfkit import cli
from perfkit._calibration import Calibration
from perfkit._perf import PerfResult
from perfkit.demos import DEMOS, demo
from perfkit.demos import cache as cache_demo
from perfkit.reporting import Claim, Speedup
from perfkit.reporting._gate import Selection
from perfkit.reporting._run import finish_run


def test_demo_cache_walks_through_miss_l1_hit_l2_hit_and_stats() -> None:
    steps, stats = cache_demo.run()
    assert [step.label for step in steps] == [
        "First call (cache miss)",
        "Second call (L1 hit)",
        "Third call (L2 hit)",
    ]
    assert {step.result for step in steps} == {"42 x 42 = 1764"}
    miss, l1_hit, l2_hit = (step.modeled for step in steps)
    # The miss: an L2 GET, the 2 s LLM call, an L2 SET; the L2 hit: one GET.
    assert miss == cache_demo.LLM_SECONDS + 2 * cache_demo.REDIS_ROUND_TRIP
    assert l1_hit == 0.0
    assert l2_hit == cache_demo.REDIS_ROUND_TRIP
    assert stats == {
        "l1_hits": 1,
        "l2_hits": 1,
        "misses": 1,
        "total_requests": 3,
        "hit_rate": 0.6667,
    }


def test_demo_cache_prints_the_measured_figures() -> None:
    out = io.StringIO()
    assert cli.main(["demo", "cache"], out=out) == cli.EXIT_OK
    text = out.getvalue()
    assert "First call (cache miss)...\nResult: '42 x 42 = 1764', Time: 2.002000s modeled" in text
    assert "Third call (L2 hit)...\nResult: '42 x 42 = 1764', Time: 0.001000s modeled" in text
    assert "2,002x faster (modeled)" in text
    assert '"hit_rate": 0.6667' in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["demo"], "the following arguments are required: name"),
        (["demo", "nope"], "invalid choice: 'nope' (choose from 'cache')"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_mistakes_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("perfkit")
    assert message in err


def test_python_dash_m_perfkit_runs_the_demo() -> None:
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-m", "perfkit", "demo", "cache"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Second call (L1 hit)..." in completed.stdout
    assert "demo wall time" in completed.stdout


# report, compare and update-baseline: the benchmark report's jobs outside pytest

SEQUENTIAL = "benchmarks/test_x.py::test_calls[sequential]"
CONCURRENT = "benchmarks/test_x.py::test_calls[concurrent]"


def write_results(path: Path, concurrent_seconds: float) -> Path:
    """A report.json of a run with two benchmarks and one speedup row."""
    results = [
        PerfResult(name=name, clock="virtual", modeled=[seconds] * 3, wall=[0.01] * 3,
                   cpu=[0.001] * 3, counters={"api_requests": 3})
        for name, seconds in ((SEQUENTIAL, 0.9), (CONCURRENT, concurrent_seconds))
    ]  # fmt: skip
    outcome = finish_run(
        results=results,
        selection=Selection(frozenset({SEQUENTIAL, CONCURRENT})),
        speedups=[Speedup("async", "3 calls", SEQUENTIAL, CONCURRENT, claim=Claim.factor(3))],
        comparisons=[],
        version="0.0",
        calibration=Calibration(seconds=0.01, spread=0.0, repeats=9),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outcome.document))
    return path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    try:
        status = cli.main(argv, out=out)
    except SystemExit as exited:
        status = int(exited.code or 0)
    return status, out.getvalue(), capsys.readouterr().err


def test_update_baseline_then_compare_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = write_results(tmp_path / "report.json", 0.3)
    baseline = tmp_path / "benchmarks" / "baseline.json"
    status, out, _ = run_cli(["update-baseline", str(results), "--baseline", str(baseline)], capsys)
    assert status == cli.EXIT_OK
    assert out == f"{baseline}: baseline written (2 benchmarks)\n"
    status, out, err = run_cli(["compare", str(results), "--baseline", str(baseline)], capsys)
    assert (status, err) == (cli.EXIT_OK, "")
    assert out.splitlines()[-1].startswith(f"gate passed against {baseline}: 0 figure(s)")


def test_compare_exits_1_and_names_the_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "baseline.json"
    run_cli(
        ["update-baseline", str(write_results(tmp_path / "a.json", 0.3)), "--baseline",
         str(baseline)],
        capsys,
    )  # fmt: skip
    slower = write_results(tmp_path / "b.json", 0.33)
    status, out, _ = run_cli(["compare", str(slower), "--baseline", str(baseline)], capsys)
    assert status == cli.EXIT_REGRESSION
    assert out.splitlines()[0] == (
        f"REGRESSION {CONCURRENT}: modeled.mean rose from 300.000 ms to 330.000 ms (+10.0%; "
        "allowed: +0.1%); also max, p50, p95, p99"
    )
    status, _, _ = run_cli(
        ["compare", str(slower), "--baseline", str(baseline), "--tolerance", "0.2"], capsys
    )
    assert status == cli.EXIT_OK


def test_report_prints_the_table_and_writes_markdown_and_svg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = write_results(tmp_path / "report.json", 0.3)
    markdown, svg = tmp_path / "out" / "report.md", tmp_path / "out" / "chart.svg"
    status, out, _ = run_cli(
        ["report", str(results), "--markdown", str(markdown), "--svg", str(svg)], capsys
    )
    assert status == cli.EXIT_OK
    assert "async      3 calls     900 ms     300 ms        3.00x  3x     yes" in out
    assert "not gated (no baseline" in out
    assert markdown.read_text().startswith("<!-- perfkit-report -->")
    assert svg.read_text().startswith("<svg")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "{missing}"], "the following arguments are required: --baseline"),
        (["compare", "{missing}", "--baseline", "{results}"], "{missing}: no such report file"),
        (
            ["compare", "{results}", "--baseline", "{results}"],
            "{results}: not a perfkit baseline file (its schema is 'perfkit-report/1'; "
            "expected 'perfkit-baseline/1')",
        ),
        (["compare", "{results}", "--baseline", "{missing}"], "{missing}: no such baseline file"),
        (["report", "{garbage}"], "{garbage}: the report file is not valid JSON"),
        (["report", "{directory}"], "{directory}: cannot read the report file: Is a directory"),
        (
            ["compare", "{results}", "--baseline", "{missing}", "--tolerance", "-1"],
            "argument --tolerance: must be a number >= 0 (a fraction: 0.001 is 0.1%), got '-1'",
        ),
        (
            ["update-baseline", "{results}", "--baseline", "{garbage}"],
            "{garbage}: the baseline file is not valid JSON",
        ),
    ],
)
def test_report_command_mistakes_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    paths = {
        "results": str(write_results(tmp_path / "report.json", 0.3)),
        "missing": str(tmp_path / "nope.json"),
        "garbage": str(tmp_path / "garbage.json"),
        "directory": str(tmp_path),
    }
    Path(paths["garbage"]).write_text("{")
    status, _, err = run_cli([part.format(**paths) for part in argv], capsys)
    assert status == cli.EXIT_USAGE
    assert err.count("\n") == 1
    assert message.format(**paths) in err
    assert Path(paths["garbage"]).read_text() == "{"  # nothing was half-written


def test_a_file_that_cannot_be_written_is_named_as_the_user_gave_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = write_results(tmp_path / "report.json", 0.3)
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    targets = [in_the_way / "report.md", tmp_path]  # under a file; a directory
    if Path("/proc/self").is_dir():
        targets.append(Path("/proc/report.md"))  # no file can be made there, even by root
    for target in targets:
        status, _, err = run_cli(["report", str(results), "--markdown", str(target)], capsys)
        assert status == cli.EXIT_USAGE
        assert err.count("\n") == 1
        assert err.startswith(f"perfkit report: error: {target}: ")
        assert ".tmp" not in err


def test_serve_offers_the_agents_and_backends_the_service_has() -> None:
    from perfkit.service._serve import AGENT_KINDS, BACKENDS

    serve = cli.build_parser().parse_args(["serve"])
    assert (serve.agent, serve.backend) == ("optimized", "simulated")
    for option, allowed in (("--agent", AGENT_KINDS), ("--backend", BACKENDS)):
        for value in allowed:
            assert cli.build_parser().parse_args(["serve", option, value]) is not None


def test_every_demo_has_a_main() -> None:
    assert [demo(name).__name__ for name in DEMOS] == ["main"] * len(DEMOS)
    with pytest.raises(ValueError, match="demo must be one of cache; got 'nope'"):
        demo("nope")


# A CLI that answers at once: help and usage mistakes import nothing heavy

HEAVY = (
    "anthropic", "fakeredis", "hdrh", "httpx", "httpx2", "jsonschema", "looptime",
    "prometheus_client", "pytest", "redis", "starlette", "uvicorn",
)  # fmt: skip
QUICK_ANSWERS = [
    ["--help"],
    *([command, "--help"] for command in
      ("demo", "serve", "load", "report", "compare", "update-baseline")),
    [],
    ["frobnicate"],
    ["demo", "nope"],
    ["serve", "--port", "99999"],
    ["load", "http://x", "--duration", "1"],
    ["load", "http://x", "--rate", "1", "--duration", "1", "--slo", "p96=1"],
    ["load", "ftp://x", "--rate", "1", "--duration", "1"],
    ["load", "http://x", "--rate", "1", "--duration", "1", "--think", "2"],
    ["load", "http://x", "--rate", "1", "--duration", "1", "--warmup", "2"],
    ["compare", "report.json"],
    ["compare", "report.json", "--baseline", "b.json", "--tolerance", "-1"],
]  # fmt: skip


def test_importing_the_cli_imports_no_heavy_dependency() -> None:
    code = (
        "import perfkit.cli, sys; print(sorted(m for m in ('anthropic','httpx','httpx2','redis',"
        "'fakeredis','jsonschema','prometheus_client','hdrh','starlette','uvicorn') "
        "if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout == "[]\n"


def test_help_and_usage_mistakes_import_nothing_heavy() -> None:
    code = f"""
import contextlib, io, sys
from perfkit import cli
for argv in {QUICK_ANSWERS!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            status = cli.main(argv)
        except SystemExit as exited:
            status = exited.code
    assert status in (0, 2), (argv, status)
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert (completed.returncode, completed.stderr) == (0, "")
    assert completed.stdout == "[]\n"


def median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, timeout=60)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_help_and_a_usage_mistake_answer_within_10x_of_bare_python() -> None:
    bare = median_seconds([sys.executable, "-c", "pass"], runs=5)
    for argv in (["--help"], ["load", "--help"], ["load", "http://x"]):
        seconds = median_seconds([sys.executable, "-m", "perfkit", *argv], runs=5)
        ratio = seconds / bare
        print(f"perfkit {' '.join(argv)}: {seconds * 1000:.0f} ms, {ratio:.1f}x "
              f"`python -c pass` ({bare * 1000:.0f} ms); medians of 5")  # fmt: skip
        assert ratio < 10, f"perfkit {' '.join(argv)} took {ratio:.1f}x bare python"


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "missing.json", "--baseline", "also-missing.json"],
        ["report", "missing.json"],
        ["update-baseline", "missing.json", "--baseline", "b.json"],
        ["baseline-diff", "missing.json", "also-missing.json"],
    ],
)
def test_a_missing_file_is_a_usage_error_found_before_reporting_loads(
    argv: list[str], tmp_path: Path
) -> None:
    probe = (
        "import sys\n"
        "from perfkit.cli import main\n"
        f"code = main({argv!r})\n"
        "assert code == 2, code\n"
        "assert 'perfkit.reporting' not in sys.modules\n"
        "assert 'jsonschema' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stderr.splitlines()
    assert line == f"perfkit {argv[0]}: error: missing.json: no such " + (
        "baseline file" if argv[0] == "baseline-diff" else "report file"
    )
