"""The speedup report, the committed baseline and the regression gate.

Public names: :class:`Claim` and :class:`Speedup` (a suite's report rows, returned by the
``pytest_perfkit_speedups`` hook), :class:`GateSettings`; the report as typed objects,
:class:`Report` (its :class:`SpeedupRow` rows and :class:`GateResult`, whose
:class:`FigureChange` are the regressions and improvements: ``Report.from_json`` reads what
:func:`load_report` returns, ``to_json`` gives it back byte for byte); and the functions the
``perfkit`` CLI is built on: :func:`load_report`, :func:`load_baseline`,
:func:`gate_report`, :func:`update_baseline`, :func:`write_report`, and
:func:`baseline_diff` (what a refreshed baseline moved, for a pull request). The pytest
plugin ends a run with :func:`finish_run` (a :class:`RunOutcome`), and records a run that
gated nothing with :func:`empty_gate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfkit.reporting._diff import (
    BaselineChange,
    baseline_changes,
    baseline_changes_markdown,
    baseline_diff,
)
from perfkit.reporting._documents import json_schema, load, write_text
from perfkit.reporting._gate import FigureChange, GateResult, GateSettings, Selection
from perfkit.reporting._model import Report
from perfkit.reporting._render import gate_lines, markdown, svg_chart, terminal_lines
from perfkit.reporting._run import (
    RunOutcome,
    empty_gate,
    finish_run,
    gate_document,
    scope_of,
    update,
    write_report,
)
from perfkit.reporting._speedups import Claim, Speedup, SpeedupRow, find_benchmark


def load_report(path: Path | str) -> dict[str, Any]:
    """Read and validate a report file (``report.json``); BaselineError if it is unusable."""
    return load(Path(path), "report")


def load_baseline(path: Path | str, name: str = "") -> dict[str, Any]:
    """Read and validate a baseline file (named ``name`` in errors); BaselineError if it is
    unusable."""
    return load(Path(path), "baseline", name)


def gate_report(
    report: dict[str, Any], baseline: Path, settings: GateSettings | None = None
) -> dict[str, Any]:
    """Gate a loaded report against a baseline file: the report's new ``gate`` section."""
    return gate_document(report, load_baseline(baseline), str(baseline), settings)


def update_baseline(report: dict[str, Any], baseline: Path) -> None:
    """Refresh a baseline file from a loaded report, on purpose."""
    update(report, baseline)


__all__ = [
    "BaselineChange",
    "Claim",
    "FigureChange",
    "GateResult",
    "GateSettings",
    "Report",
    "RunOutcome",
    "Selection",
    "Speedup",
    "SpeedupRow",
    "baseline_changes",
    "baseline_changes_markdown",
    "baseline_diff",
    "empty_gate",
    "find_benchmark",
    "finish_run",
    "gate_lines",
    "gate_report",
    "json_schema",
    "load_baseline",
    "load_report",
    "markdown",
    "scope_of",
    "svg_chart",
    "terminal_lines",
    "update_baseline",
    "write_report",
    "write_text",
]
