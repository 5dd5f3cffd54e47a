"""A run's report as typed objects; ``to_json()`` is exactly what ``report.json`` holds.

Usage::

    report = Report.from_json(load_report("perfkit-report/report.json"))
    if report.gate is not None and report.gate.status == "fail":
        print([change.message for change in report.gate.regressions])

Benchmark entries stay JSON mappings (figures by group, see ``_figures``): the gate and
the baseline work on them as the files hold them.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from perfkit._calibration import Calibration
from perfkit.reporting._gate import GateResult, Selection
from perfkit.reporting._speedups import SpeedupRow

REPORT_SCHEMA = "perfkit-report/1"


@dataclass(frozen=True)
class Environment:
    """Where a report was measured."""

    python: str
    implementation: str
    platform: str
    cpus: int | None

    @classmethod
    def current(cls) -> Environment:
        return cls(
            python=platform.python_version(),
            implementation=platform.python_implementation(),
            platform=platform.platform(),
            cpus=os.cpu_count(),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "implementation": self.implementation,
            "platform": self.platform,
            "cpus": self.cpus,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Environment:
        return cls(data["python"], data["implementation"], data["platform"], data["cpus"])


@dataclass(frozen=True)
class Report:
    """A run's report (``perfkit-report/1``): its benchmarks' figures, what it collected,
    the speedup rows, real-time comparisons, load tests, and the gate's section (None
    when nothing was gated against a baseline file)."""

    perfkit: str
    environment: Environment
    calibration: Calibration
    benchmarks: Mapping[str, Mapping[str, Any]]
    collected: tuple[str, ...] = ()
    complete_files: tuple[str, ...] = ()
    speedups: tuple[SpeedupRow, ...] = ()
    comparisons: tuple[Mapping[str, Any], ...] = ()
    load_tests: tuple[Mapping[str, Any], ...] = ()
    gate: GateResult | None = None

    def selection(self, root: Path | None = None) -> Selection:
        """What the run covered (``root``: the directory its benchmark files are in)."""
        return Selection(frozenset(self.collected), frozenset(self.complete_files), root)

    def gated(self, gate: GateResult | None) -> Report:
        """This report with its gate section."""
        return replace(self, gate=gate)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "perfkit": self.perfkit,
            "environment": self.environment.to_json(),
            "calibration": self.calibration.as_dict(),
            "benchmarks": {nodeid: dict(entry) for nodeid, entry in self.benchmarks.items()},
            "collected": list(self.collected),
            "complete_files": list(self.complete_files),
            "speedups": [row.to_json() for row in self.speedups],
            "comparisons": [dict(comparison) for comparison in self.comparisons],
            "load_tests": [dict(entry) for entry in self.load_tests],
            "gate": self.gate.to_json() if self.gate is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        """A report from its JSON document (as :func:`perfkit.reporting.load_report`
        returns it, validated)."""
        calibration = data["calibration"]
        return cls(
            perfkit=data["perfkit"],
            environment=Environment.from_json(data["environment"]),
            calibration=Calibration(
                calibration["seconds"], calibration["spread"], calibration["repeats"]
            ),
            benchmarks=dict(data["benchmarks"]),
            collected=tuple(data["collected"]),
            complete_files=tuple(data["complete_files"]),
            speedups=tuple(SpeedupRow.from_json(row) for row in data["speedups"]),
            comparisons=tuple(data["comparisons"]),
            load_tests=tuple(data["load_tests"]),
            gate=GateResult.from_json(data["gate"]) if data["gate"] is not None else None,
        )


def as_report(document: Report | Mapping[str, Any]) -> Report:
    """A report, typed already or as its JSON document."""
    return document if isinstance(document, Report) else Report.from_json(document)
