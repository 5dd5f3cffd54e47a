"""Unit tests of perfkit.reporting: claims, speedup rows, figures, the gate, files, rendering."""

from __future__ import annotations

import errno
import json
import math
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from perfkit._calibration import Calibration, calibrate, relative_spread
from perfkit._errors import BaselineError, ReportWriteError
from perfkit._perf import PerfResult
from perfkit.reporting import (
    Claim,
    FigureChange,
    GateResult,
    GateSettings,
    Report,
    Speedup,
    SpeedupRow,
    baseline_changes,
    baseline_changes_markdown,
    baseline_diff,
    gate_lines,
    gate_report,
    json_schema,
    load_baseline,
    load_report,
    markdown,
    svg_chart,
    terminal_lines,
    update_baseline,
    write_report,
)
from perfkit.reporting._documents import _umask, baseline_document, write_json, write_text
from perfkit.reporting._figures import benchmark_entry, flat_figures, is_exact
from perfkit.reporting._gate import Selection, compare
from perfkit.reporting._model import Environment
from perfkit.reporting._render import MARKER, format_value
from perfkit.reporting._run import RunOutcome, empty_gate, finish_run, scope_of
from perfkit.reporting._speedups import Side, find_benchmark, speedup_rows

CALIBRATION = Calibration(seconds=0.01, spread=0.01, repeats=9)
SEQUENTIAL = "benchmarks/test_x.py::test_calls[sequential]"
CONCURRENT = "benchmarks/test_x.py::test_calls[concurrent]"


def result(
    name: str = CONCURRENT,
    modeled: float = 0.3,
    *,
    rounds: int = 3,
    cpu: float = 0.001,
    counters: dict[str, float] | None = None,
    samples: list[float] | None = None,
    clock: Any = "virtual",
) -> PerfResult:
    return PerfResult(
        name=name,
        clock=clock,
        modeled=[modeled] * rounds,
        wall=[0.002] * rounds,
        cpu=[cpu] * rounds,
        samples=list(samples or []),
        counters=dict({"api_requests": 3} if counters is None else counters),
    )


def entries(*results: PerfResult) -> dict[str, dict[str, Any]]:
    return {r.name: benchmark_entry(r, CALIBRATION) for r in results}


def baseline_of(*results: PerfResult) -> dict[str, Any]:
    return baseline_document(entries(*results), CALIBRATION.as_dict())


# Claims


def test_claim_texts_read_like_the_source() -> None:
    assert Claim.factor(3).text == "3x"
    assert Claim.factor(10, 100).text == "10-100x"
    assert Claim.factor(60_000).text == "60,000x"
    assert Claim.percent(15).text == "15%"
    assert Claim.factor(4.3, text="4.3x (the chapter)").text == "4.3x (the chapter)"


@pytest.mark.parametrize(
    ("claim", "factor", "verdict"),
    [
        (Claim.factor(3), 3.0, "inside"),
        (Claim.factor(3.3), 3.3333, "inside"),  # quoted rounded: within 5%
        (Claim.factor(3.3), 1.4286, "below"),
        (Claim.factor(4.3), 7.99, "above"),
        (Claim.factor(10, 100), 50, "inside"),
        (Claim.factor(10, 100), 6002, "above"),
        (Claim.percent(15), 6000 / 5100, "inside"),
        (Claim.percent(15), 60000 / 50100, "above"),
        (Claim.percent(15), 1.0, "below"),
    ],
)
def test_claim_verdicts(claim: Claim, factor: float, verdict: str) -> None:
    assert claim.verdict(factor) == verdict


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"low": 0, "high": 1}, "0 < low <= high"),
        ({"low": 3, "high": 2}, "0 < low <= high"),
        ({"low": 1, "high": math.inf}, "0 < low <= high"),
        ({"low": 1, "high": 1, "unit": "ms"}, "unit is 'x' or '%'"),
        ({"low": 50, "high": 100, "unit": "%"}, "below 100%"),
        ({"low": 1, "high": 1, "tolerance": 1.5}, "tolerance"),
    ],
)
def test_bad_claims_are_refused(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Claim(**arguments)


# Speedups


def test_bad_speedups_are_refused() -> None:
    with pytest.raises(ValueError, match="scenario must be a non-empty string"):
        Speedup("async", "", "a", "b")
    with pytest.raises(ValueError, match=r"'<group>\.<statistic>'.*got 'mean'"):
        Speedup("async", "calls", "a", "b", figure="mean")
    with pytest.raises(TypeError, match="claim must be a Claim"):
        Speedup("async", "calls", "a", "b", claim=3)  # type: ignore[arg-type]


def test_benchmarks_are_found_by_node_id_or_its_tail() -> None:
    ids = [SEQUENTIAL, CONCURRENT, "other/test_x.py::test_calls[concurrent]"]
    assert find_benchmark(SEQUENTIAL, ids) == SEQUENTIAL
    assert find_benchmark("test_x.py::test_calls[sequential]", ids) == SEQUENTIAL
    assert find_benchmark("x.py::test_calls[sequential]", ids) is None  # not a path boundary
    with pytest.raises(ValueError, match="names several benchmarks"):
        find_benchmark("test_x.py::test_calls[concurrent]", ids)


def test_a_row_compares_two_benchmarks_of_this_run() -> None:
    found = entries(result(SEQUENTIAL, 0.9), result(CONCURRENT, 0.3))
    speedup = Speedup(
        "async", "3 calls", "test_x.py::test_calls[sequential]",
        "test_x.py::test_calls[concurrent]", claim=Claim.factor(3),
    )  # fmt: skip
    [row] = speedup_rows([speedup], found)
    assert row.baseline == Side(SEQUENTIAL, "modeled.mean", 0.9, deterministic=True)
    assert row.factor == 3.0
    assert row.percent_saved == pytest.approx(66.667)
    assert row.verdict == "inside"
    assert row.deterministic is True


def test_a_row_whose_benchmark_did_not_run_says_so() -> None:
    [row] = speedup_rows([Speedup("a", "b", SEQUENTIAL, CONCURRENT)], entries(result(CONCURRENT)))
    assert row.verdict == "not run"
    assert row.factor is None
    assert row.baseline.value is None


def test_a_real_time_figure_makes_a_row_non_deterministic() -> None:
    found = entries(result(SEQUENTIAL, 0.9), result(CONCURRENT, 0.0))
    speedup = Speedup("caching", "hit", SEQUENTIAL, CONCURRENT, optimized_figure="wall.median")
    [row] = speedup_rows([speedup], found)
    assert row.optimized.value == 0.002
    assert row.factor == pytest.approx(450)
    assert row.deterministic is False
    assert row.verdict == "no claim"


def test_an_optimized_figure_of_zero_has_no_finite_factor() -> None:
    found = entries(result(SEQUENTIAL, 0.9), result(CONCURRENT, 0.0))
    [row] = speedup_rows([Speedup("caching", "hit", SEQUENTIAL, CONCURRENT)], found)
    assert row.factor is None
    assert row.percent_saved == 100.0


# Figures


def test_an_entry_names_every_figure() -> None:
    perf = result(samples=[0.1, 0.2, 0.3, 0.4], counters={"api_requests": 3, "hit_rate": 0.5})
    perf.series["complete"] = [1.0, 2.0]
    perf.higher_is_better = frozenset({"hit_rate"})
    perf.parameters = {"users": 10}
    entry = benchmark_entry(perf, CALIBRATION)
    figures = flat_figures(entry)
    assert figures["modeled.mean"] == 0.3
    assert figures["observed.p50"] == 0.25
    assert figures["observed.count"] == 4
    assert figures["complete.max"] == 2.0
    assert figures["counters.api_requests"] == 3
    assert figures["cpu.normalized"] == 0.1  # 1 ms of CPU over a 10 ms calibration
    assert entry["higher_is_better"] == ["hit_rate"]
    assert entry["parameters"] == {"users": 10}
    assert isinstance(entry["counters"]["api_requests"], int)
    assert is_exact(entry, "observed.p95")
    assert is_exact(entry, "counters.api_requests")
    assert not is_exact(entry, "cpu.normalized")
    real = benchmark_entry(result(clock="real"), CALIBRATION)
    assert not is_exact(real, "modeled.mean")
    assert is_exact(real, "counters.api_requests")


# The gate


def test_an_unchanged_run_passes() -> None:
    outcome = compare(entries(result()), baseline_of(result()))
    assert outcome.passed
    assert outcome.improvements == outcome.skipped == []
    assert outcome.new == outcome.missing == []


def test_a_slower_modeled_figure_is_a_regression_named_in_full() -> None:
    outcome = compare(entries(result(modeled=0.9)), baseline_of(result(modeled=0.3)))
    assert not outcome.passed
    messages = [change.message() for change in outcome.regressions]
    assert (
        f"{CONCURRENT}: modeled.mean rose from 300.000 ms to 900.000 ms (+200.0%; allowed: +0.1%)"
        in messages
    )
    assert {change.figure for change in outcome.regressions} == {
        f"modeled.{name}" for name in ("mean", "p50", "p95", "p99", "max")
    }


def test_the_tolerance_decides_what_counts() -> None:
    slower = entries(result(modeled=0.3003))  # +0.1%
    assert compare(slower, baseline_of(result())).passed
    outcome = compare(slower, baseline_of(result()), settings=GateSettings(tolerance=0.0))
    assert not outcome.passed


def test_a_counter_may_not_grow_at_all() -> None:
    outcome = compare(
        entries(result(counters={"api_requests": 4})),
        baseline_of(result(counters={"api_requests": 3})),
    )
    [change] = outcome.regressions
    assert change.message() == (
        f"{CONCURRENT}: counters.api_requests rose from 3 to 4 (+33.3%; counters may not grow)"
    )


def test_a_rise_in_cost_is_a_regression_shown_in_dollars() -> None:
    outcome = compare(
        entries(result(counters={"usd": 0.02})),
        baseline_of(result(counters={"usd": 0.012345})),
    )
    [change] = outcome.regressions
    assert change.message() == (
        f"{CONCURRENT}: counters.usd rose from $0.012345 to $0.020000 (+62.0%; "
        "counters may not grow)"
    )
    cheaper = compare(
        entries(result(counters={"usd": 0.012345})), baseline_of(result(counters={"usd": 0.02}))
    )
    assert cheaper.passed
    assert "counters.usd fell from $0.020000 to $0.012345" in cheaper.improvements[0].message()
    # Two millionths of a dollar more (the meter's resolution is one) fail the gate.
    tiny = compare(
        entries(result(counters={"usd": 0.000012})), baseline_of(result(counters={"usd": 0.00001}))
    )
    assert [change.figure for change in tiny.regressions] == ["counters.usd"]


def test_a_higher_is_better_counter_may_not_fall() -> None:
    before, after = result(counters={"hit_rate": 0.3}), result(counters={"hit_rate": 0.0})
    for perf in (before, after):
        perf.higher_is_better = frozenset({"hit_rate"})
    [change] = compare(entries(after), baseline_of(before)).regressions
    assert "counters.hit_rate fell from 0.3 to 0 (-100.0%; counters may not fall)" in (
        change.message()
    )
    assert compare(entries(before), baseline_of(after)).improvements


def test_a_regression_from_zero_is_reported_as_such() -> None:
    [change, *_] = compare(
        entries(result(modeled=3.0)), baseline_of(result(modeled=0.0))
    ).regressions
    assert "rose from 0.000 ms to 3,000.000 ms (from zero;" in change.message()
    assert change.record().change is None


def test_faster_figures_are_improvements_not_failures() -> None:
    outcome = compare(entries(result(modeled=0.1)), baseline_of(result(modeled=0.3)))
    assert outcome.passed
    assert any(
        "modeled.mean fell from 300.000 ms to 100.000 ms (-66.7%" in change.message()
        for change in outcome.improvements
    )


def test_new_missing_and_not_run_benchmarks_are_told_apart(tmp_path: Path) -> None:
    gone = "benchmarks/test_x.py::test_gone"  # its file ran in full without it
    deselected = "benchmarks/test_x.py::test_deselected"  # collected, then -k dropped it
    deleted = "benchmarks/test_deleted.py::test_a"  # its file no longer exists
    narrowed = "benchmarks/test_y.py::test_other"  # its file was narrowed to test_y.py::test_one
    elsewhere = "benchmarks/test_z.py::test_z"  # its file was not part of this run
    for file in ("test_x.py", "test_y.py", "test_z.py"):
        (tmp_path / "benchmarks").mkdir(exist_ok=True)
        (tmp_path / "benchmarks" / file).write_text("")
    baseline = baseline_of(
        *(result(name) for name in (CONCURRENT, gone, deselected, deleted, narrowed, elsewhere))
    )
    selection = Selection(
        collected=frozenset({CONCURRENT, SEQUENTIAL, deselected, "benchmarks/test_y.py::test_one"}),
        complete_files=frozenset({"benchmarks/test_x.py"}),
        root=tmp_path,
    )
    outcome = compare(entries(result(), result(SEQUENTIAL)), baseline, selection=selection)
    assert outcome.new == [SEQUENTIAL]
    assert outcome.missing == [deleted, gone]
    assert outcome.not_run == [deselected]  # test_y.py's other test and test_z.py: not in scope
    assert outcome.status == "fail"  # new and missing benchmarks could hide a regression
    allowed = GateSettings(allow_unmatched=True)
    assert compare(entries(result()), baseline, selection=selection, settings=allowed).passed


def test_deselected_and_out_of_scope_benchmarks_do_not_fail_the_gate(tmp_path: Path) -> None:
    deselected, elsewhere = "benchmarks/test_x.py::test_other", "benchmarks/test_z.py::test_z"
    baseline = baseline_of(result(), result(deselected), result(elsewhere))
    selection = Selection(frozenset({CONCURRENT, deselected}), frozenset({"benchmarks/test_x.py"}))
    outcome = compare(entries(result()), baseline, selection=selection)
    assert outcome.status == "pass"
    assert outcome.not_run == [deselected]


def test_a_baseline_on_another_clock_is_a_mismatch() -> None:
    with pytest.raises(BaselineError, match="measured on the real clock and this run on the vir"):
        compare(entries(result()), baseline_of(result(clock="real")))


def test_a_change_in_rounds_is_not_compared_and_fails_the_gate() -> None:
    # A 3x regression hidden by changing the rounds from 2 to 4.
    outcome = compare(
        entries(result(modeled=0.9, rounds=4), result("b")),
        baseline_of(result(rounds=2), result("b")),
    )
    assert outcome.regressions == []
    assert outcome.skipped == [
        f"{CONCURRENT}: measured over 4 round(s), the baseline over 2 (counters are totals "
        "over the rounds: refresh the baseline)"
    ]
    assert outcome.status == "fail"


def test_a_benchmark_moved_to_another_clock_is_skipped_with_the_reason_and_fails() -> None:
    outcome = compare(
        entries(result(clock="real", modeled=0.9), result("b")),
        baseline_of(result(), result("b")),
    )
    assert outcome.skipped == [
        f"{CONCURRENT}: measured on the real clock, the baseline on the virtual clock "
        "(not comparable)"
    ]
    assert outcome.status == "fail"


def test_a_figure_no_longer_measured_is_reported_and_fails() -> None:
    outcome = compare(entries(result(counters={})), baseline_of(result()))
    assert outcome.skipped == [
        f"{CONCURRENT}: counters.api_requests is in the baseline but was not measured"
    ]
    assert outcome.status == "fail"


def test_a_figure_new_to_the_run_is_reported_and_fails() -> None:
    outcome = compare(
        entries(result(counters={"api_requests": 3, "retries": 40})), baseline_of(result())
    )
    assert outcome.skipped == [
        f"{CONCURRENT}: counters.retries was measured but is not in the baseline"
    ]
    assert outcome.status == "fail"


def test_a_renamed_benchmark_fails_the_gate_with_the_way_out() -> None:
    renamed = "benchmarks/test_x.py::test_calls[gathered]"
    baseline = baseline_of(result())
    selection = Selection(frozenset({renamed}), frozenset({"benchmarks/test_x.py"}))
    outcome = compare(entries(result(renamed, 0.9)), baseline, selection=selection)
    assert (outcome.new, outcome.missing, outcome.status) == ([renamed], [CONCURRENT], "fail")
    gate = outcome.result("benchmarks/baseline.json", GateSettings())
    assert gate_lines(gate)[-2:] == [
        "UNMATCHED  1 new, 1 missing: the gate cannot compare them; refresh the baseline in "
        "this change with --perfkit-update-baseline",
        "gate FAILED against benchmarks/baseline.json: 0 figure(s) regressed in 0 "
        "benchmark(s), 0 figure(s) improved in 0 benchmark(s), 1 new, 1 missing",
    ]


def test_allow_unmatched_lists_what_the_gate_could_not_compare_without_failing() -> None:
    settings = GateSettings(allow_unmatched=True)
    outcome = compare(
        entries(result(rounds=4), result("b"), result("new")),
        baseline_of(result(rounds=2), result("b")),
        settings=settings,
    )
    assert outcome.status == "pass"
    gate = outcome.result("b.json", settings)
    lines = gate_lines(gate)
    assert "unmatched  1 new, 1 no longer comparable: not gated (allow_unmatched is set)" in lines
    assert lines[-1].startswith("gate passed against b.json: ")
    assert lines[-1].endswith(
        ", 1 new, 0 missing, 1 not comparable (refresh on purpose: "
        "pytest <your benchmarks> --perfkit-update-baseline)"
    )
    # A regression still fails it.
    assert not compare(
        entries(result(modeled=0.9), result("new")), baseline_of(result()), settings=settings
    ).passed


def test_cpu_time_is_gated_in_calibration_units_above_the_noise() -> None:
    heavy = result(cpu=0.05)
    slower = entries(result(cpu=0.12))
    [change] = compare(slower, baseline_of(heavy)).regressions
    assert change.figure == "cpu.normalized"
    assert "rose from 5 calibration units to 12 calibration units (+140.0%; allowed: +100.0%)" in (
        change.message()
    )
    assert compare(entries(result(cpu=0.09)), baseline_of(heavy)).passed  # +80%: noise
    # A run whose calibration was noisy widens the allowance: 4 x 40% spread = 160%.
    assert compare(slower, baseline_of(heavy), calibration_spread=0.4).passed


def test_cpu_time_is_normalized_by_the_calibration_timed_beside_it() -> None:
    busy = result(cpu=0.10)  # the same code on a machine twice as busy
    busy.calibration = Calibration(seconds=0.02, spread=0.0, repeats=4)
    assert benchmark_entry(busy, CALIBRATION)["cpu"]["normalized"] == 5.0
    assert compare(entries(busy), baseline_of(result(cpu=0.05))).passed


def test_cpu_time_below_the_minimum_is_not_gated() -> None:
    baseline = baseline_of(result(cpu=0.001))
    assert compare(entries(result(cpu=0.01)), baseline).passed  # 10x, but 10 ms: noise


def test_gate_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0, got -1"):
        GateSettings(tolerance=-1)
    with pytest.raises(ValueError, match="cpu_threshold must be a finite number >= 0, got 'x'"):
        GateSettings(cpu_threshold="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0, got nan"):
        GateSettings(tolerance=math.nan)
    with pytest.raises(TypeError, match="allow_unmatched must be True or False, got 'no'"):
        GateSettings(allow_unmatched="no")  # type: ignore[arg-type]
    assert GateSettings().as_dict() == {
        "tolerance": 0.001,
        "cpu_threshold": 1.0,
        "cpu_minimum": 0.02,
        "allow_unmatched": False,
    }


# Files


def test_a_baseline_keeps_only_what_can_be_gated(tmp_path: Path) -> None:
    document = baseline_of(result())
    entry = document["benchmarks"][CONCURRENT]
    assert "wall" not in entry
    assert set(entry["cpu"]) == {"normalized", "spread"}
    path = tmp_path / "baseline.json"
    write_json(path, document)
    assert load_baseline(path) == document
    assert path.read_text().endswith("}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]  # no temporary left
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # readable, like any file


def test_refreshing_a_baseline_keeps_benchmarks_not_run_and_drops_vanished_ones() -> None:
    gone, elsewhere = "benchmarks/test_x.py::test_gone", "benchmarks/test_y.py::test_other"
    previous = baseline_of(result(modeled=1.0), result(gone), result(elsewhere))
    refreshed = baseline_document(
        entries(result(modeled=0.5)),
        CALIBRATION.as_dict(),
        previous=previous,
        selection=Selection(frozenset({CONCURRENT}), frozenset({"benchmarks/test_x.py"})),
    )
    assert list(refreshed["benchmarks"]) == [CONCURRENT, elsewhere]
    assert refreshed["benchmarks"][CONCURRENT]["modeled"]["mean"] == 0.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such baseline file"),
        ("{", "not valid JSON"),
        ("[]", "not a perfkit baseline file (its schema is None"),
        ('{"schema": "perfkit-report/1"}', "its schema is 'perfkit-report/1'"),
        (
            '{"schema": "perfkit-baseline/1", "calibration": {"seconds": 1, "spread": 0, '
            '"repeats": 1}, "benchmarks": {"t": {"clock": "virtual"}}}',
            "corrupt at benchmarks/t: 'rounds' is a required property",
        ),
        (
            '{"schema": "perfkit-baseline/1", "calibration": {"seconds": 0, "spread": 0, '
            '"repeats": 1}, "benchmarks": {}}',
            "corrupt at calibration/seconds",
        ),
    ],
)
def test_an_unusable_baseline_is_a_clear_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_baseline(path)


def run_outcome(tmp_path: Path, *results: PerfResult, **options: Any) -> dict[str, Any]:
    speedups = [Speedup("async", "3 calls", SEQUENTIAL, CONCURRENT, claim=Claim.factor(3))]
    outcome = finish_run(
        results=list(results),
        selection=Selection(frozenset(r.name for r in results)),
        speedups=speedups,
        comparisons=[],
        version="0.0",
        calibration=CALIBRATION,
        **options,
    )
    return outcome.document


def test_a_report_matches_its_documented_schema_and_loads_back(tmp_path: Path) -> None:
    document = run_outcome(tmp_path, result(SEQUENTIAL, 0.9), result(CONCURRENT, 0.3))
    jsonschema.validate(document, json_schema())
    written = write_report(document, tmp_path / "report")
    assert [path.name for path in written] == ["report.json", "report.md", "speedups.svg"]
    assert load_report(written[0]) == json.loads(json.dumps(document))


def test_a_run_gates_updates_and_reports_through_its_files(tmp_path: Path) -> None:
    baseline = tmp_path / "benchmarks" / "baseline.json"
    runs = (result(SEQUENTIAL, 0.9), result(CONCURRENT, 0.3))
    updated = run_outcome(tmp_path, *runs, baseline=baseline, update_baseline=True)
    assert updated["gate"]["status"] == "updated"
    assert set(load_baseline(baseline)["benchmarks"]) == {SEQUENTIAL, CONCURRENT}
    slower = run_outcome(tmp_path, runs[0], result(CONCURRENT, 0.45), baseline=baseline)
    assert slower["gate"]["status"] == "fail"
    assert slower["gate"]["regressions"][0]["message"].startswith(f"{CONCURRENT}: modeled.")
    report = tmp_path / "report.json"
    write_json(report, slower)
    regated = gate_report(load_report(report), baseline, GateSettings(tolerance=0.6))
    assert regated["status"] == "pass"
    update_baseline(load_report(report), baseline)
    assert load_baseline(baseline)["benchmarks"][CONCURRENT]["modeled"]["mean"] == 0.45


def test_the_scope_is_the_baseline_directory(tmp_path: Path) -> None:
    assert scope_of(tmp_path / "benchmarks" / "baseline.json", tmp_path) == "benchmarks/"
    assert scope_of(tmp_path / "baseline.json", tmp_path) == ""
    assert scope_of(Path("/elsewhere/baseline.json"), tmp_path) == ""
    assert scope_of(None, tmp_path) == ""


# Rendering


def test_values_read_naturally() -> None:
    assert format_value("modeled.mean", 3.001) == "3,001 ms"
    assert format_value("modeled.mean", 0.0123) == "12.3 ms"
    assert format_value("wall.median", 0.000054) == "0.054 ms"
    assert format_value("wall.median", 0.000002) == "2.00 µs"
    assert format_value("modeled.mean", 0.0) == "0 ms"
    assert format_value("counters.connections_opened", 10) == "10"
    assert format_value("observed.mean", None) == "-"
    assert format_value("counters.usd", 0.0123456) == "$0.012346"
    assert format_value("counters.usd", 1234.5) == "$1,234.500000"


def report_rows() -> list[SpeedupRow]:
    found = entries(result(SEQUENTIAL, 6.0), result(CONCURRENT, 5.1))
    return speedup_rows(
        [
            Speedup("pooling", "10 requests", SEQUENTIAL, CONCURRENT, claim=Claim.percent(15)),
            Speedup("async", "calls", SEQUENTIAL, CONCURRENT, note="a note"),
            Speedup("async", "not run", SEQUENTIAL, "test_missing.py::test_y"),
        ],
        found,
    )


def test_the_terminal_table_is_aligned_with_notes() -> None:
    lines = terminal_lines(report_rows())
    assert lines[0].split() == [
        "technique", "scenario", "baseline", "optimized", "improvement", "claim", "inside",
        "claim",
    ]  # fmt: skip
    assert "15.0% less" in lines[2]
    assert lines[2].endswith("yes")
    assert "1.18x" in lines[3]
    assert lines[4].endswith("not run")
    assert len({len(line) for line in lines[:2]}) == 1
    assert lines[-1] == "async, calls: compares modeled.mean; a note"


def test_the_markdown_report_is_ready_for_a_pull_request_comment() -> None:
    report = Report(
        perfkit="0.0",
        environment=Environment("3.11", "CPython", "Linux", cpus=2),
        calibration=CALIBRATION,
        benchmarks=entries(result()),
        speedups=tuple(report_rows()),
    )
    text = markdown(report)
    assert markdown(report.to_json()) == text
    assert text.startswith(MARKER + "\n")
    assert "| pooling | 10 requests | 6,000 ms | 5,100 ms | 15.0% less | 15% | yes |" in text
    assert "- not gated (no baseline, or a refresh refused because the run failed)" in text
    assert f"| `{CONCURRENT}` | virtual | 3 | 300 ms |" in text


def test_the_markdown_report_shows_cost_in_dollars_and_names_guessed_prices() -> None:
    priced = result(counters={"api_requests": 3, "usd": 0.004521})
    priced.parameters = {"usd priced by the fallback row": "claude-simulated (no price known)"}
    report = Report(
        perfkit="0.0",
        environment=Environment("3.11", "CPython", "Linux", cpus=2),
        calibration=CALIBRATION,
        benchmarks=entries(priced),
        speedups=(),
    )
    text = markdown(report)
    assert "api_requests=3, usd=$0.004521 |" in text
    assert "usd priced by the fallback row: claude-simulated (no price known)" in text


def test_the_chart_has_a_bar_and_a_claim_mark_per_measured_row() -> None:
    svg = svg_chart(report_rows())
    root = ET.fromstring(svg)
    namespace = "{http://www.w3.org/2000/svg}"
    bars = [
        rect for rect in root.iter(f"{namespace}rect") if rect.find(f"{namespace}title") is not None
    ]
    assert len(bars) == 2  # the row that did not run has no bar
    assert "15.0% less" in svg
    assert ET.fromstring(svg_chart([])) is not None


def test_gate_lines_name_every_regression_and_the_way_to_refresh() -> None:
    def rose(figure: str) -> FigureChange:
        return FigureChange("b", figure, 1.0, 2.0, 1.0, 0.0, f"b: {figure} rose")

    gate = GateResult(
        "benchmarks/baseline.json",
        GateSettings(),
        "fail",
        compared=1,
        regressions=(rose("modeled.p95"), rose("modeled.mean"), rose("counters.calls")),
        new=("b2",),
        not_run=("b3",),
    )
    assert (
        gate_lines(gate.to_json())
        == gate_lines(gate)
        == [
            "REGRESSION b: modeled.mean rose; also p95",
            "REGRESSION b: counters.calls rose",
            "new        b2 (not in the baseline)",
            "not run    1 baseline benchmark(s) deselected or skipped",
            "UNMATCHED  1 new: the gate cannot compare them; refresh the baseline in this change "
            "with --perfkit-update-baseline",
            "gate FAILED against benchmarks/baseline.json: 3 figure(s) regressed in 1 "
            "benchmark(s), 0 figure(s) improved in 0 benchmark(s), 1 new, 0 missing",
        ]
    )


# Calibration


def test_relative_spread_is_robust_to_one_outlier() -> None:
    assert relative_spread([1.0, 1.0, 1.0, 1.0, 50.0]) == 0.0
    assert relative_spread([2.0]) == 0.0


def test_calibration_takes_the_median_of_its_repeats() -> None:
    ticks = iter([0.0, 0.010, 1.0, 1.012, 2.0, 2.050])
    calibration = calibrate(repeats=3, cpu_time=lambda: next(ticks))
    assert calibration.seconds == pytest.approx(0.012)
    assert calibration.repeats == 3
    with pytest.raises(ValueError, match="repeats must be an int >= 1, got 0"):
        calibrate(repeats=0)


def test_the_schema_documentation_names_every_field() -> None:
    documented = (Path(__file__).resolve().parent.parent / "docs" / "report.md").read_text()
    definitions = json_schema()["$defs"]
    names = (
        "report",
        "baseline",
        "benchmark",
        "speedup",
        "gate",
        "change",
        "load_test",
        "load_result",
    )
    for name in names:
        for field in definitions[name]["properties"]:
            assert f"`{field}`" in documented, f"docs/report.md does not describe {name}.{field}"


def test_cpu_drift_shared_by_the_whole_run_is_not_a_regression() -> None:
    names = [f"benchmarks/test_x.py::test_{n}" for n in range(6)]
    baseline = baseline_of(*(result(name, cpu=0.05) for name in names))
    # A busy machine: every benchmark's CPU time rose 70-130%, none stands out.
    busier = [
        result(name, cpu=0.05 * factor)
        for name, factor in zip(names, (1.7, 1.8, 1.9, 2.0, 2.1, 2.3), strict=True)
    ]
    assert compare(entries(*busier), baseline).passed
    # One benchmark at 5.7x fails: 2.92x the run's median ratio of 1.95 (the drift).
    regressed = [*busier[:-1], result(names[-1], cpu=0.05 * 1.9 * 3)]
    [change] = compare(entries(*regressed), baseline).regressions
    assert change.benchmark == names[-1]
    assert "(+470.0%, +192.3% beyond this run's CPU drift of +95.0%; allowed: +100.0%)" in (
        change.message()
    )


def test_without_enough_benchmarks_the_run_has_no_drift_to_remove() -> None:
    names = [f"benchmarks/test_x.py::test_{n}" for n in range(4)]
    baseline = baseline_of(*(result(name, cpu=0.05) for name in names))
    doubled = [result(name, cpu=0.05 * 2.2) for name in names]
    assert len(compare(entries(*doubled), baseline).regressions) == 4


def test_cpu_drift_never_forgives_less_than_nothing() -> None:
    names = [f"benchmarks/test_x.py::test_{n}" for n in range(7)]
    baseline = baseline_of(*(result(name, cpu=0.09) for name in names))
    # An optimisation made four of seven benchmarks 3x cheaper; the other three did not move.
    after = [result(name, cpu=0.03 if n < 4 else 0.09) for n, name in enumerate(names)]
    outcome = compare(entries(*after), baseline)
    assert outcome.passed


def test_a_profiled_benchmark_is_not_cpu_gated() -> None:
    profiled = result(cpu=0.5)
    profiled.profiled = True
    entry = benchmark_entry(profiled, CALIBRATION)
    assert entry["profiled"] is True
    assert compare({CONCURRENT: entry}, baseline_of(result(cpu=0.05))).passed


def test_rows_of_equal_or_zero_figures() -> None:
    found = entries(result(SEQUENTIAL, 0.0), result(CONCURRENT, 0.0), result("b", 0.3))
    same, from_zero = speedup_rows(
        [
            Speedup("a", "same", SEQUENTIAL, CONCURRENT, claim=Claim.factor(1)),
            Speedup("a", "from zero", SEQUENTIAL, "b", claim=Claim.percent(15)),
        ],
        found,
    )
    assert (same.factor, same.verdict) == (1.0, "inside")
    assert from_zero.percent_saved == 0.0
    assert terminal_lines([same, from_zero])  # renders without a TypeError


def test_a_failed_write_names_the_file_not_its_temporary(tmp_path: Path) -> None:
    (tmp_path / "report.md").mkdir()
    with pytest.raises(ReportWriteError) as raised:
        write_text(tmp_path / "report.md", "x")
    assert str(raised.value) == f"{tmp_path / 'report.md'}: cannot write: Is a directory"
    assert [path.name for path in tmp_path.iterdir()] == ["report.md"]


# Hostile figures: NaN and infinities never pass


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_figure_in_the_run_is_an_error_naming_it(value: float) -> None:
    # NaN > baseline is false: compared like any number, it passed silently.
    broken = entries(result(counters={"api_requests": value}))
    with pytest.raises(BaselineError) as raised:
        compare(broken, baseline_of(result()))
    constant = {math.inf: "Infinity", -math.inf: "-Infinity"}.get(value, "NaN")
    assert str(raised.value) == (
        f"this run: {CONCURRENT}: counters.api_requests is {constant}; every figure must be "
        "a finite number"
    )


@pytest.mark.parametrize(
    ("where", "named"),
    [
        (("benchmarks", CONCURRENT, "modeled", "mean"), f"{CONCURRENT}: modeled.mean"),
        (("benchmarks", CONCURRENT, "series", "observed", "p95"), f"{CONCURRENT}: observed.p95"),
        (("benchmarks", CONCURRENT, "cpu", "normalized"), f"{CONCURRENT}: cpu.normalized"),
        (("calibration", "spread"), "calibration/spread"),
    ],
)
def test_a_non_finite_figure_in_a_baseline_is_an_error_naming_it(
    where: tuple[str, ...], named: str
) -> None:
    baseline = baseline_of(result(samples=[0.1, 0.2], cpu=0.05))
    node: Any = baseline
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = math.nan
    with pytest.raises(BaselineError, match=re.escape(f"b.json: {named} is NaN; every figure")):
        compare(entries(result(samples=[0.1, 0.2], cpu=0.2)), baseline, source="b.json")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("kind", ["baseline", "report"])
def test_reading_a_file_holding_nan_or_infinity_is_an_error_naming_the_figure(
    tmp_path: Path, constant: str, kind: str
) -> None:
    document: dict[str, Any] = (
        baseline_of(result()) if kind == "baseline" else run_outcome(tmp_path, result())
    )
    text = json.dumps(document).replace('"api_requests": 3', f'"api_requests": {constant}')
    assert constant in text
    path = tmp_path / f"{kind}.json"
    path.write_text(text)
    shown = {"1e999": "Infinity"}.get(constant, constant)
    with pytest.raises(BaselineError) as raised:
        (load_baseline if kind == "baseline" else load_report)(path)
    assert str(raised.value) == (
        f"{path}: the {kind} file is corrupt: {CONCURRENT}: counters.api_requests is {shown}; "
        "every figure must be a finite number"
    )


def test_nan_is_never_written_into_a_baseline_or_a_report(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    document = baseline_of(result())
    document["benchmarks"][CONCURRENT]["counters"]["hit_rate"] = math.nan
    with pytest.raises(ReportWriteError) as raised:
        write_json(path, document)
    assert str(raised.value) == (
        f"{path}: not written: {CONCURRENT}: counters.hit_rate is NaN, which JSON cannot hold "
        "(every figure must be a finite number)"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("refresh", [False, True])
def test_a_run_with_a_nan_counter_fails_before_gating_or_writing(
    tmp_path: Path, refresh: bool
) -> None:
    baseline = tmp_path / "benchmarks" / "baseline.json"
    write_json(baseline, baseline_of(result(counters={"hit_rate": 0.5})))
    before = baseline.read_text()
    with pytest.raises(BaselineError, match=r"this run: .*counters\.hit_rate is NaN"):
        run_outcome(
            tmp_path,
            result(counters={"hit_rate": math.nan}),
            baseline=baseline,
            update_baseline=refresh,
            report_dir=tmp_path / "report",
        )
    assert baseline.read_text() == before
    assert not (tmp_path / "report").exists()


# A gate that gated nothing


def test_a_gate_that_compared_nothing_is_empty_not_a_pass() -> None:
    baseline = baseline_of(result())
    deselected = Selection(frozenset({CONCURRENT}))
    outcome = compare({}, baseline, selection=deselected)
    assert (outcome.status, outcome.passed) == ("empty", False)
    gate = outcome.result("benchmarks/baseline.json", GateSettings())
    assert gate.to_json()["compared"] == 0
    assert gate_lines(gate) == [
        "not run    1 baseline benchmark(s) deselected or skipped",
        "nothing was gated against benchmarks/baseline.json: this run measured none of the "
        "baseline's benchmarks (1 of its benchmarks deselected or skipped)",
    ]


def test_with_unmatched_allowed_a_run_of_only_new_benchmarks_gated_nothing() -> None:
    outcome = compare(
        entries(result("b")), baseline_of(result()), settings=GateSettings(allow_unmatched=True)
    )
    assert outcome.status == "empty"
    assert outcome.result("b.json", GateSettings()).reason == (
        "none of this run's benchmarks could be compared with a baseline entry"
    )


def test_a_run_gating_nothing_says_so_in_its_outcome_and_report(tmp_path: Path) -> None:
    baseline = tmp_path / "benchmarks" / "baseline.json"
    write_json(baseline, baseline_of(result()))
    outcome = finish_run(
        results=[],
        selection=Selection(frozenset({CONCURRENT})),
        speedups=[],
        comparisons=[],
        version="0.0",
        calibration=CALIBRATION,
        baseline=baseline,
        report_dir=tmp_path / "report",
    )
    assert outcome.gated_nothing
    assert not outcome.regressed
    jsonschema.validate(outcome.document, json_schema())
    assert "- nothing was gated against " in (tmp_path / "report" / "report.md").read_text()


def test_the_plugin_can_record_a_gate_that_gated_nothing() -> None:
    gate = empty_gate(
        "other/baseline.json",
        "no benchmark under other/ ran (3 ran under benchmarks/)",
        GateSettings(allow_unmatched=True),
    )
    assert gate["status"] == "empty"
    assert gate["settings"]["allow_unmatched"] is True
    assert gate_lines(gate) == [
        "nothing was gated against other/baseline.json: no benchmark under other/ ran (3 ran "
        "under benchmarks/)"
    ]
    document = run_outcome(Path(), result())
    jsonschema.validate({**document, "gate": gate}, json_schema())
    assert RunOutcome(Report.from_json({**document, "gate": gate})).gated_nothing


# Unwritable report directories and baselines


def test_an_unwritable_directory_names_the_users_path_and_the_reason(tmp_path: Path) -> None:
    (tmp_path / "perfkit-report").write_text("a file where the directory should be")
    target = tmp_path / "perfkit-report" / "report.json"
    with pytest.raises(ReportWriteError) as raised:
        write_json(target, {"schema": "x"})
    assert str(raised.value) == (
        f"{target}: cannot write: cannot create its directory {target.parent}: File exists"
    )


def test_a_temporary_file_that_cannot_be_created_is_not_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a read-only directory does (root, running these tests, may write anywhere).
    def refused(dir: str, prefix: str, suffix: str) -> tuple[int, str]:
        name = f"{dir}/{prefix}x1y2z3{suffix}"
        raise PermissionError(errno.EACCES, "Permission denied", name)

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    target = tmp_path / "baseline.json"
    with pytest.raises(ReportWriteError) as raised:
        write_json(target, baseline_of(result()))
    assert str(raised.value) == f"{target}: cannot write: Permission denied"
    assert isinstance(raised.value, BaselineError)  # the plugin's one-line usage error


def test_a_run_whose_report_directory_is_unwritable_raises_one_clear_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "report").write_text("")
    with pytest.raises(ReportWriteError, match=re.escape(f"{tmp_path / 'report'}")):
        run_outcome(tmp_path, result(), report_dir=tmp_path / "report")


# What a refreshed baseline moved, for a pull request


def test_a_refresh_hiding_a_regression_shows_every_figure_it_moved() -> None:
    base = baseline_of(result(modeled=0.3), result(SEQUENTIAL, 0.9))
    head = baseline_of(result(modeled=0.9), result(SEQUENTIAL, 0.9))
    changes = baseline_changes(base, head)
    assert [(c.benchmark, c.kind, c.figure, c.worse) for c in changes if c.exact] == [
        (CONCURRENT, "rose", f"modeled.{name}", True)
        for name in ("max", "mean", "p50", "p95", "p99")
    ]
    text = baseline_changes_markdown(changes, "benchmarks/baseline.json")
    assert text.startswith("### Baseline changes in `benchmarks/baseline.json`\n")
    assert "**5 figure(s) worse**, 0 other change(s), 0 benchmark(s) added, 0 removed." in text
    assert (
        f"| `{CONCURRENT}` | modeled.mean | 300.000 ms | 900.000 ms | **+200.0% (worse)** |" in text
    )


def test_a_baseline_diff_tells_worse_from_better_and_names_every_kind_of_change() -> None:
    hits = {"api_requests": 3, "hit_rate": 0.8}
    before = result(counters=hits, samples=[0.1, 0.2])
    after = result(
        counters={"api_requests": 2, "hit_rate": 0.5, "retries": 1}, samples=[0.1, 0.2, 0.3]
    )
    for perf in (before, after):
        perf.higher_is_better = frozenset({"hit_rate"})
    gone, new, rounds = "b/test_a.py::gone", "b/test_a.py::new", "b/test_a.py::rounds"
    base = baseline_of(before, result(gone), result(rounds, rounds=2))
    head = baseline_of(after, result(new), result(rounds, rounds=3, clock="real"))
    found = {(c.benchmark, c.kind, c.figure): c for c in baseline_changes(base, head)}
    assert found[(CONCURRENT, "fell", "counters.hit_rate")].worse
    assert not found[(CONCURRENT, "fell", "counters.api_requests")].worse
    assert not found[(CONCURRENT, "rose", "observed.count")].worse  # more is not worse
    assert found[(CONCURRENT, "added", "counters.retries")].after == 1
    assert (
        found[(rounds, "changed", "rounds")].before,
        found[(rounds, "changed", "rounds")].after,
    ) == (2, 3)
    assert found[(rounds, "changed", "clock")].after == "real"
    assert (gone, "removed", "") in found
    assert (new, "added", "") in found
    text = baseline_changes_markdown(list(found.values()), "baseline.json")
    assert "Removed (no longer gated):\n- `b/test_a.py::gone`" in text
    assert "Added (gated from now on):\n- `b/test_a.py::new`" in text
    assert f"| `{CONCURRENT}` | counters.hit_rate | 0.8 | 0.5 | **-37.5% (worse)** |" in text
    assert f"| `{rounds}` | rounds | 2 | 3 | changed |" in text


def test_cpu_time_moving_is_folded_away_not_counted_as_worse() -> None:
    base, head = baseline_of(result(cpu=0.05)), baseline_of(result(cpu=0.06))
    changes = baseline_changes(base, head)
    assert [(c.figure, c.exact) for c in changes] == [("cpu.normalized", False)]
    assert baseline_changes_markdown(changes, "b.json") == (
        "### Baseline changes in `b.json`\n\nNo exact figure moved and no benchmark was added "
        "or removed (only CPU time moved, in 1 figure(s)).\n"
    )
    assert baseline_changes(base, base) == []
    regressed = baseline_changes_markdown(
        baseline_changes(base, baseline_of(result(modeled=0.9, cpu=0.06))), "b.json"
    )
    assert (
        "<details><summary>CPU time (real time, moves on every refresh): 1 figure(s)" in regressed
    )


def test_the_baseline_diff_command_reads_two_files_and_names_an_unreadable_one(
    tmp_path: Path,
) -> None:
    base, head = tmp_path / "base.json", tmp_path / "head.json"
    write_json(base, baseline_of(result()))
    write_json(head, baseline_of(result(modeled=0.9)))
    assert "**5 figure(s) worse**" in baseline_diff(base, head)
    head.write_text('{"schema": "perfkit-baseline/1", "calibration": NaN}')
    with pytest.raises(BaselineError, match=re.escape(f"{head}: the baseline file is corrupt")):
        baseline_diff(base, head)
    with pytest.raises(BaselineError, match=re.escape(f"{tmp_path / 'no.json'}: no such baseline")):
        baseline_diff(tmp_path / "no.json", base)


# The report as typed objects


def test_a_run_hands_back_typed_objects(tmp_path: Path) -> None:
    baseline = tmp_path / "benchmarks" / "baseline.json"
    write_json(baseline, baseline_of(result(SEQUENTIAL, 0.9), result()))
    outcome = finish_run(
        results=[result(SEQUENTIAL, 0.9), result(modeled=0.45)],
        selection=Selection(frozenset({SEQUENTIAL, CONCURRENT})),
        speedups=[Speedup("async", "3 calls", SEQUENTIAL, CONCURRENT, claim=Claim.factor(3))],
        comparisons=[],
        version="0.0",
        calibration=CALIBRATION,
        baseline=baseline,
    )
    report = outcome.report
    assert isinstance(report, Report)
    [row] = report.speedups
    assert (row.factor, row.verdict, row.claim) == (2.0, "below", Claim.factor(3))
    assert report.gate is not None
    assert report.gate.status == "fail"
    assert {change.benchmark for change in report.gate.regressions} == {CONCURRENT}
    assert report.gate.regressions[0].message.startswith(f"{CONCURRENT}: modeled.")
    assert outcome.document == report.to_json()


def test_a_report_file_reads_into_objects_and_back_byte_for_byte(tmp_path: Path) -> None:
    baseline = tmp_path / "benchmarks" / "baseline.json"
    write_json(baseline, baseline_of(result(SEQUENTIAL, 0.9), result(), result("b")))
    perf = result(modeled=0.1, counters={"api_requests": 3, "hit_rate": 0.5})
    perf.higher_is_better = frozenset({"hit_rate"})
    perf.parameters = {"users": 10}
    run_outcome(
        tmp_path,
        result(SEQUENTIAL, 1.2, samples=[0.1, 0.3]),
        perf,
        baseline=baseline,
        report_dir=tmp_path / "report",
        gate_settings=GateSettings(allow_unmatched=True),
    )
    written = (tmp_path / "report" / "report.json").read_text()
    report = Report.from_json(load_report(tmp_path / "report" / "report.json"))
    assert report.gate is not None
    assert report.gate.regressions
    assert report.gate.skipped
    assert json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n" == written
    assert markdown(report) == (tmp_path / "report" / "report.md").read_text()
    assert svg_chart(report.speedups) == (tmp_path / "report" / "speedups.svg").read_text()
    assert GateResult.from_json(report.gate.to_json()) == report.gate
    assert [SpeedupRow.from_json(row.to_json()) for row in report.speedups] == list(report.speedups)


def priced_with(label: str | None, usd: float) -> PerfResult:
    priced = result(counters={"api_requests": 3, "usd": usd})
    if label is not None:
        priced.parameters = {"usd prices": label}
    return priced


def test_usd_priced_with_other_prices_than_the_baseline_is_not_compared() -> None:
    """A run priced with a cheaper price file must not hide a cost regression behind the
    cheaper prices (nor a dearer file fail a run that spent less): usd made with other
    prices than the baseline's cannot be compared, which fails a strict gate."""
    cheap = "2026-01-01 sha256:0123456789abcdef"
    for now, then in ((cheap, None), (None, cheap), (cheap, "2025-01-01 sha256:fedcba9876543210")):
        outcome = compare(entries(priced_with(now, 0.002)), baseline_of(priced_with(then, 0.001)))
        assert not outcome.passed
        assert not outcome.regressions
        assert not outcome.improvements
        (skipped,) = outcome.skipped
        assert skipped.startswith(f"{CONCURRENT}: counters.usd was priced with ")
        for label in (now, then):
            assert (label or "perfkit's shipped prices") in skipped
    same = compare(entries(priced_with(cheap, 0.002)), baseline_of(priced_with(cheap, 0.001)))
    assert [change.figure for change in same.regressions] == ["counters.usd"]
    assert baseline_of(priced_with(cheap, 0.001))["benchmarks"][CONCURRENT]["prices"] == cheap


def test_the_markdown_report_names_the_price_file_usd_was_priced_with() -> None:
    report = Report(
        perfkit="0.0",
        environment=Environment("3.11", "CPython", "Linux", cpus=2),
        calibration=CALIBRATION,
        benchmarks=entries(priced_with("2026-01-01 sha256:0123456789abcdef", 0.002)),
        speedups=(),
    )
    assert "usd priced with the price file of 2026-01-01 sha256:0123456789abcdef" in markdown(
        report
    )


def test_usd_priced_by_the_fallback_row_for_other_models_than_the_baseline_is_not_compared() -> (
    None
):
    """A benchmark whose model was renamed to one no price row knows is priced by the
    fallback row, maybe cheaper than its real price: its usd falling is a guess, not a
    saving. usd priced by the fallback row for other models than the baseline's (or for
    some where the baseline had none) is not comparable, which fails a strict gate."""
    guessed = "claude-opus-4-5-typo (no price known; priced as Claude Sonnet 5.5)"

    def priced(fallback: str | None, usd: float) -> PerfResult:
        run = result(counters={"api_requests": 3, "usd": usd})
        if fallback is not None:
            run.parameters = {"usd priced by the fallback row": fallback}
        return run

    outcome = compare(entries(priced(guessed, 0.001)), baseline_of(priced(None, 0.004)))
    assert not outcome.passed
    assert not outcome.improvements
    (skipped,) = outcome.skipped
    assert skipped.startswith(f"{CONCURRENT}: counters.usd was priced by the fallback row for ")
    assert "claude-opus-4-5-typo" in skipped
    kept = baseline_of(priced(guessed, 0.001))["benchmarks"][CONCURRENT]
    assert kept["fallback_priced"] == guessed
    same = compare(entries(priced(guessed, 0.002)), baseline_of(priced(guessed, 0.001)))
    assert [change.figure for change in same.regressions] == ["counters.usd"]
    assert compare(entries(priced(None, 0.002)), baseline_of(priced(None, 0.002))).passed


@pytest.mark.parametrize(
    ("then", "now"), [(0.000162, 0.000163), (0.438979, 0.43898), (7.0, 7.000001)]
)
def test_a_counter_rising_by_its_last_rounded_digit_fails_the_gate(then: float, now: float) -> None:
    """Counters are rounded to 6 decimals and may not grow at all: a usd one millionth of a
    dollar higher is a regression, whichever way the floats' difference falls around 1e-6
    (0.000163 - 0.000162 is a hair below it)."""
    outcome = compare(
        entries(result(counters={"usd": now})), baseline_of(result(counters={"usd": then}))
    )
    assert [change.figure for change in outcome.regressions] == ["counters.usd"]
    assert compare(
        entries(result(counters={"usd": then})), baseline_of(result(counters={"usd": now}))
    ).improvements
