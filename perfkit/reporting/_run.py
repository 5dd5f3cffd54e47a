"""What a benchmark run ends with: its report, the gate's verdict, and the files written.

Shared by the pytest plugin (at the end of a session) and the CLI (from a results file).
A run reports and gates the benchmarks in its *scope*: the directory that holds the
baseline file (``benchmarks/`` for ``benchmarks/baseline.json``), so a test suite that
happens to use ``perf`` elsewhere is neither gated nor reported against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfkit._calibration import Calibration, calibrate
from perfkit._perf import PerfResult
from perfkit.reporting._documents import (
    baseline_document,
    load,
    report_document,
    write_json,
    write_text,
)
from perfkit.reporting._figures import benchmark_entry, require_finite
from perfkit.reporting._gate import GateOutcome, GateSettings, Selection, compare
from perfkit.reporting._render import markdown, svg_chart
from perfkit.reporting._speedups import Speedup, speedup_rows

REPORT_FILES = ("report.json", "report.md", "speedups.svg")


@dataclass
class RunOutcome:
    """A finished run: its report document and the files it wrote."""

    document: dict[str, Any]
    written: list[Path] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        """Whether the gate failed (a regression, or a benchmark it could not match)."""
        gate = self.document["gate"]
        return gate is not None and gate["status"] == "fail"

    @property
    def gated_nothing(self) -> bool:
        """Whether a baseline was given but the gate compared no benchmark with it (status
        ``"empty"``): not a regression, but not a pass either."""
        gate = self.document["gate"]
        return gate is not None and gate["status"] == "empty"


def scope_of(baseline: Path | None, rootpath: Path) -> str:
    """The node-id prefix of the benchmarks a baseline covers ("" for every benchmark)."""
    if baseline is None:
        return ""
    try:
        relative = baseline.resolve().parent.relative_to(rootpath.resolve())
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
    rows = speedup_rows(speedups, entries)
    document = report_document(
        version=version,
        calibration=calibration,
        benchmarks=entries,
        selection=selection,
        speedups=rows,
        comparisons=comparisons,
        load_tests=load_tests,
        gate=None,
    )
    outcome = RunOutcome(document)
    if baseline is not None:
        document["gate"] = _gate_or_update(
            document,
            baseline,
            baseline_name or str(baseline),
            update_baseline,
            gate_settings,
            outcome,
            selection.root,
        )
    if report_dir is not None:
        outcome.written += write_report(document, report_dir)
    return outcome


def selection_of(document: Mapping[str, Any], root: Path | None = None) -> Selection:
    """What a report's run covered (``root``: where its benchmark files are, if known)."""
    return Selection(frozenset(document["collected"]), frozenset(document["complete_files"]), root)


def gate_document(
    document: Mapping[str, Any],
    baseline: Mapping[str, Any],
    baseline_name: str,
    settings: GateSettings | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """The gate section of a report: its benchmarks against a loaded baseline."""
    settings = settings or GateSettings()
    result = compare(
        document["benchmarks"],
        baseline,
        settings=settings,
        calibration_spread=float(document["calibration"]["spread"]),
        selection=selection_of(document, root),
        source=baseline_name,
    )
    return {"baseline": baseline_name, "settings": settings.as_dict(), **result.as_dict()}


def empty_gate(
    baseline_name: str, reason: str, settings: GateSettings | None = None
) -> dict[str, Any]:
    """The gate section of a run that gated nothing against ``baseline_name``, saying why
    (status ``"empty"``; :func:`gate_lines` prints "nothing was gated against ...")."""
    return {
        "baseline": baseline_name,
        "settings": (settings or GateSettings()).as_dict(),
        **GateOutcome().as_dict(),
        "reason": reason,
    }


def update(
    document: Mapping[str, Any], baseline: Path, name: str = "", root: Path | None = None
) -> None:
    """Write the baseline from a report's benchmarks (keeping the entries of benchmarks
    it did not run, dropping those that no longer exist), atomically."""
    previous = load(baseline, "baseline", name) if baseline.exists() else None
    write_json(
        baseline,
        baseline_document(
            document["benchmarks"],
            document["calibration"],
            previous=previous,
            selection=selection_of(document, root),
        ),
    )


def write_report(document: Mapping[str, Any], directory: Path) -> list[Path]:
    """Write report.json, report.md and speedups.svg into ``directory``."""
    paths = [directory / name for name in REPORT_FILES]
    write_json(paths[0], document)
    write_text(paths[1], markdown(document))
    write_text(paths[2], svg_chart(document["speedups"]))
    return paths


def _gate_or_update(
    document: dict[str, Any],
    baseline: Path,
    baseline_name: str,
    refresh: bool,
    settings: GateSettings | None,
    outcome: RunOutcome,
    root: Path | None,
) -> dict[str, Any] | None:
    if refresh:
        update(document, baseline, baseline_name, root)
        outcome.written.append(baseline)
        return _updated(baseline_name, settings)
    if not baseline.exists():
        return None
    return gate_document(
        document, load(baseline, "baseline", baseline_name), baseline_name, settings, root
    )


def _updated(baseline_name: str, settings: GateSettings | None) -> dict[str, Any]:
    gate = empty_gate(baseline_name, "", settings)
    del gate["reason"]
    return {**gate, "status": "updated"}
