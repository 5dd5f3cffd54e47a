"""What a benchmark run ends with: its report, the gate's verdict, and the files written.

Shared by the pytest plugin (at the end of a session) and the CLI (from a results file).
A run reports and gates the benchmarks in its *scope*: the directory that holds the
baseline file (``benchmarks/`` for ``benchmarks/baseline.json``), so a test suite that
happens to use ``perf`` elsewhere is neither gated nor reported against it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from perfkit._calibration import Calibration, calibrate
from perfkit._perf import PerfResult
from perfkit.reporting._documents import baseline_document, load, write_json, write_text
from perfkit.reporting._figures import benchmark_entry, require_finite
from perfkit.reporting._gate import GateResult, GateSettings, Selection, compare
from perfkit.reporting._model import Environment, Report, as_report
from perfkit.reporting._render import markdown, svg_chart
from perfkit.reporting._speedups import Speedup, speedup_rows

REPORT_FILES = ("report.json", "report.md", "speedups.svg")


@dataclass
class RunOutcome:
    """A finished run: its report and the files it wrote."""

    report: Report
    written: list[Path] = field(default_factory=list)

    @cached_property
    def document(self) -> dict[str, Any]:
        """The report as ``report.json`` holds it."""
        return self.report.to_json()

    @property
    def regressed(self) -> bool:
        """Whether the gate failed (a regression, or a benchmark it could not match)."""
        return self.report.gate is not None and self.report.gate.status == "fail"

    @property
    def gated_nothing(self) -> bool:
        """Whether a baseline was given but the gate compared no benchmark with it (status
        ``"empty"``): not a regression, but not a pass either."""
        return self.report.gate is not None and self.report.gate.status == "empty"


def scope_of(baseline: Path | None, rootpath: Path) -> str:
    """The node-id prefix of the benchmarks a baseline covers ("" for every benchmark)."""
    if baseline is None:
        return ""
    # Not resolved: a baseline reached through a symlink covers the directory it is in.
    try:
        relative = Path(os.path.abspath(baseline)).parent.relative_to(os.path.abspath(rootpath))
    except ValueError:
        return ""
    return "" if relative == Path() else relative.as_posix() + "/"


def finish_run(
    *,
    results: Sequence[PerfResult],
    selection: Selection,
    speedups: Sequence[Speedup],
    comparisons: Sequence[Mapping[str, Any]],
    version: str,
    load_tests: Sequence[Mapping[str, Any]] = (),
    baseline: Path | None = None,
    baseline_name: str = "",
    update_baseline: bool = False,
    report_dir: Path | None = None,
    gate_settings: GateSettings | None = None,
    calibration: Calibration | None = None,
) -> RunOutcome:
    """Compute the report from a run's results, gate it or refresh the baseline, and
    write the report files. ``baseline_name`` is how messages name the baseline file."""
    calibration = calibration or calibrate()
    entries = {result.name: benchmark_entry(result, calibration) for result in results}
    require_finite({"benchmarks": entries}, "this run")
    report = Report(
        perfkit=version,
        environment=Environment.current(),
        calibration=calibration,
        benchmarks={nodeid: entries[nodeid] for nodeid in sorted(entries)},
        collected=tuple(sorted(selection.collected)),
        complete_files=tuple(sorted(selection.complete_files)),
        speedups=tuple(speedup_rows(speedups, entries)),
        comparisons=tuple(comparisons),
        load_tests=tuple(load_tests),
    )
    written: list[Path] = []
    if baseline is not None:
        name = baseline_name or str(baseline)
        settings = gate_settings or GateSettings()
        if update_baseline:
            update(report, baseline, name, selection.root)
            written.append(baseline)
            report = report.gated(GateResult(name, settings, "updated"))
        elif baseline.exists():
            previous = load(baseline, "baseline", name)
            report = report.gated(gate_run(report, previous, name, settings, selection.root))
    if report_dir is not None:
        written += write_report(report, report_dir)
    return RunOutcome(report, written)


def gate_run(
    report: Report,
    baseline: Mapping[str, Any],
    baseline_name: str,
    settings: GateSettings | None = None,
    root: Path | None = None,
) -> GateResult:
    """The gate section of a report: its benchmarks against a loaded baseline."""
    settings = settings or GateSettings()
    outcome = compare(
        report.benchmarks,
        baseline,
        settings=settings,
        calibration_spread=float(report.calibration.spread),
        selection=report.selection(root),
        source=baseline_name,
    )
    return outcome.result(baseline_name, settings)


def gate_document(
    document: Report | Mapping[str, Any],
    baseline: Mapping[str, Any],
    baseline_name: str,
    settings: GateSettings | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """:func:`gate_run` for a report's JSON document: the gate section as JSON."""
    return gate_run(as_report(document), baseline, baseline_name, settings, root).to_json()


def empty_gate(
    baseline_name: str, reason: str, settings: GateSettings | None = None
) -> dict[str, Any]:
    """The gate section (JSON) of a run that gated nothing against ``baseline_name``,
    saying why (status ``"empty"``; :func:`gate_lines` prints "nothing was gated
    against ...")."""
    return GateResult.nothing_gated(baseline_name, reason, settings).to_json()


def update(
    document: Report | Mapping[str, Any],
    baseline: Path,
    name: str = "",
    root: Path | None = None,
) -> None:
    """Write the baseline from a report's benchmarks (keeping the entries of benchmarks
    it did not run, dropping those that no longer exist), atomically."""
    report = as_report(document)
    previous = load(baseline, "baseline", name) if baseline.exists() else None
    write_json(
        baseline,
        baseline_document(
            report.benchmarks,
            report.calibration.as_dict(),
            previous=previous,
            selection=report.selection(root),
        ),
    )


def write_report(document: Report | Mapping[str, Any], directory: Path) -> list[Path]:
    """Write report.json, report.md and speedups.svg into ``directory``."""
    report = as_report(document)
    paths = [directory / name for name in REPORT_FILES]
    write_json(paths[0], report.to_json() if isinstance(document, Report) else document)
    write_text(paths[1], markdown(report))
    write_text(paths[2], svg_chart(report.speedups))
    return paths
