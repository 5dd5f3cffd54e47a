"""The perfkit command line and its demos."""

from __future__ import annotations

import io
import json
import os
import stat
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
      ("demo", "serve", "load", "report", "compare", "update-baseline", "calibrate")),
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
    ["calibrate", "missing.jsonl", "-o", "profile.json"],
    ["calibrate", "traces.jsonl"],
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


# calibrate: a latency profile from recorded traces


def write_traces(path: Path, count: int = 60, **options: object) -> Path:
    from tests.synthetic_traces import synthetic

    traces = synthetic(count, 0, **options)  # type: ignore[arg-type]
    path.write_text("".join(trace.to_json() + "\n" for trace in traces))
    return path


def test_calibrate_prints_the_fit_and_writes_a_profile_the_simulator_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from perfkit.simulation import LLMLatency

    traces = write_traces(tmp_path / "traces.jsonl")
    profile = tmp_path / "out" / "profile.json"
    status, out, err = run_cli(["calibrate", str(traces), "-o", str(profile)], capsys)
    assert (status, err) == (cli.EXIT_OK, "")
    lines = out.splitlines()
    assert lines[0] == "model m: fitted from 60 requests"
    assert any(line.startswith("  prefill_per_token     fixed 0.000") for line in lines)
    assert any(line.startswith("  ttft       ") and line.count("s") >= 6 for line in lines)
    assert any(line.startswith("  complete   ") for line in lines)
    assert "  verdict: the fit holds" in out
    assert lines[-1] == f"{profile}: profile written (1 model(s))"
    document = json.loads(profile.read_text())
    assert document["source"]["traces"] == str(traces)
    assert document["models"]["m"]["fit"]["requests"] == 60
    latency = LLMLatency.from_profile(profile, seed=1)
    assert latency.prefill_per_token.sample() > 0  # type: ignore[attr-defined]


def test_calibrate_fits_one_model_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = tmp_path / "traces.jsonl"
    write_traces(tmp_path / "a.jsonl", model="a")
    write_traces(tmp_path / "b.jsonl", 5, model="b")
    traces.write_text((tmp_path / "a.jsonl").read_text() + (tmp_path / "b.jsonl").read_text())
    profile = tmp_path / "profile.json"
    status, out, _ = run_cli(["calibrate", str(traces), "-o", str(profile)], capsys)
    assert status == cli.EXIT_OK
    assert "model b: not fitted: model 'b': only 5 usable request(s) of 5" in out
    assert list(json.loads(profile.read_text())["models"]) == ["a"]
    status, _, err = run_cli(["calibrate", str(traces), "-o", str(profile), "--model", "b"], capsys)
    assert status == cli.EXIT_USAGE
    assert err == (
        "perfkit calibrate: error: model 'b': only 5 usable request(s) of 5 "
        "(at least 20 are needed)\n"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("missing", "{traces}: no such trace file"),
        ("empty", "{traces}: no traces in the file"),
        ("directory", "{traces}: Is a directory"),
        ("garbage", "{traces}, line 2: not a trace: "),
        ("binary", "{traces}: not a trace file: not UTF-8 text"),
        ("failed", "model 'm': only 0 usable request(s) of 30 (at least 20 are needed); "
                   "excluded: status 500: 30"),
        ("unwritable", "{output}: cannot write: "),
        ("same", "{output}: is the trace file; write the profile elsewhere"),
        ("other model", "no traces of model 'x'; the traces have: m"),
        ("deep", "{traces}, line 2: not a trace: nested too deeply"),
        ("huge number", "{traces}, line 2: not a trace: headers_s is an integer of 401 digits"),
        ("long line", "{traces}, line 2: not a trace: longer than "),
        ("fifo output", "{output}: not a regular file; write the profile to a file"),
    ],
)  # fmt: skip
def test_calibrate_mistakes_exit_2_with_one_line_and_write_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    make: str,
    message: str,
) -> None:
    from perfkit.traces import _format

    traces, output = tmp_path / "traces.jsonl", tmp_path / "profile.json"
    extra: list[str] = []
    if make == "empty":
        traces.write_text("\n")
    elif make == "directory":
        traces.mkdir()
    elif make == "garbage":
        first = write_traces(tmp_path / "t.jsonl", 20).read_text().split("\n")[0]
        traces.write_text(first + "\n{\n")
    elif make == "binary":
        traces.write_bytes(b"\xff\xfe\x00")
    elif make == "failed":
        from tests.synthetic_traces import synthetic

        lines = (json.loads(t.to_json()) | {"status": 500} for t in synthetic(30, 0))
        traces.write_text("".join(json.dumps(line) + "\n" for line in lines))
    elif make in ("unwritable", "same", "other model"):
        write_traces(traces)
        if make == "unwritable":
            output = tmp_path / "a-file" / "profile.json"
            (tmp_path / "a-file").write_text("")
        elif make == "same":
            output = traces
        else:
            extra = ["--model", "x"]
    elif make in ("deep", "huge number", "long line"):
        first = write_traces(tmp_path / "t.jsonl", 20).read_text().split("\n")[0]
        bad = {
            "deep": "[" * 100_000,
            "huge number": json.dumps(json.loads(first) | {"headers_s": 10**400}),
            "long line": " " * 4 * len(first),
        }[make]
        traces.write_text(first + "\n" + bad + "\n" + first + "\n")
        if make == "long line":
            monkeypatch.setattr(_format, "MAX_LINE_CHARS", 2 * len(first))  # 64 MiB in earnest
    elif make == "fifo output":
        write_traces(traces)
        output = tmp_path / "profile.fifo"
        os.mkfifo(output)
    before = traces.read_bytes() if traces.is_file() else None
    status, out, err = run_cli(["calibrate", str(traces), "-o", str(output), *extra], capsys)
    assert (status, out) == (cli.EXIT_USAGE, "")
    assert err.count("\n") == 1
    assert err.startswith("perfkit calibrate: error: ")
    assert message.format(traces=traces, output=output) in err
    assert not (tmp_path / "profile.json").exists() or make == "same"
    assert list(tmp_path.glob(".profile.json.*")) == []  # no temporary file left behind
    if before is not None:
        assert traces.read_bytes() == before
    if make == "fifo output":  # not replaced by a regular file
        assert stat.S_ISFIFO(output.stat().st_mode)


def test_perfkit_calibrate_end_to_end(tmp_path: Path) -> None:
    traces = write_traces(tmp_path / "traces.jsonl")
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-m", "perfkit", "calibrate", str(traces), "-o",
         str(tmp_path / "profile.json"), "--seed", "3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (completed.returncode, completed.stderr) == (0, "")
    assert "verdict: the fit holds" in completed.stdout
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert profile["perfkit_latency_profile"] == 1
