"""The speedup report as terminal lines, Markdown (for a pull-request comment) and SVG."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

from perfkit.reporting._figures import FALLBACK_PRICED, MONEY_FIGURES, is_duration, money_text
from perfkit.reporting._gate import REFRESH_HINT, FigureChange, GateResult
from perfkit.reporting._model import Report, as_report
from perfkit.reporting._speedups import Side, SpeedupRow, as_rows

Rows = Sequence[SpeedupRow | Mapping[str, Any]]
"""Speedup rows, typed or as a report file holds them."""

MARKER = "<!-- perfkit-report -->"
"""The first line of the Markdown report: CI finds its earlier comment by it."""
HEADER = ("technique", "scenario", "baseline", "optimized", "improvement", "claim", "inside claim")
VERDICT_TEXT = {
    "inside": "yes",
    "above": "above (better)",
    "below": "below",
    "no claim": "-",
    "not run": "not run",
}


def format_value(figure: str, value: float | None) -> str:
    """A figure for people: durations in ms or µs, counts as numbers."""
    if value is None:
        return "-"
    if figure in MONEY_FIGURES:
        return money_text(value)
    if not is_duration(figure):
        return f"{value:,g}"
    ms = value * 1000
    if ms == 0:
        return "0 ms"
    if ms >= 100:
        return f"{ms:,.0f} ms"
    if ms >= 1:
        return f"{ms:,.1f} ms"
    if ms >= 0.01:
        return f"{ms:.3f} ms"
    return f"{value * 1e6:.2f} µs"


def _counter(name: str, value: float) -> str:
    figure = f"counters.{name}"
    return money_text(value) if figure in MONEY_FIGURES else f"{value:g}"


def format_improvement(row: SpeedupRow) -> str:
    """The measured speedup in the claim's unit (a factor, or the share of time saved)."""
    factor, saved = row.factor, row.percent_saved
    if factor is None:
        return "∞" if saved is not None else "-"
    if row.claim is not None and row.claim.unit == "%" and saved is not None:
        return f"{saved:.1f}% less"
    if factor >= 100:
        return f"{factor:,.0f}x"
    return f"{factor:.2f}x"


def row_cells(row: SpeedupRow) -> tuple[str, ...]:
    return (
        row.technique,
        row.scenario,
        _marked(row.baseline),
        _marked(row.optimized),
        format_improvement(row),
        row.claim.text if row.claim else "-",
        VERDICT_TEXT[row.verdict],
    )


def _marked(side: Side) -> str:
    """A side's value, with ``*`` when it is real time (it varies between runs)."""
    value = format_value(side.figure, side.value)
    return value if side.deterministic or side.value is None else value + " *"


def terminal_lines(rows: Rows) -> list[str]:
    """The speedup table, aligned, with the figure compared under each scenario."""
    rows = as_rows(rows)
    table = [HEADER, *(row_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    numeric = {2, 3, 4}
    lines = []
    for index, cells in enumerate(table):
        padded = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        lines.append("  ".join(padded).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    notes = [_footnote(row) for row in rows if _footnote(row)]
    return lines + notes


def gate_lines(gate: GateResult | Mapping[str, Any] | None) -> list[str]:
    """The gate's outcome: every regression in full, then improvements and changes, and
    what the gate could not match with the baseline (which fails it unless allowed)."""
    if gate is None:
        return ["not gated (no baseline, or a refresh refused because the run failed)"]
    if not isinstance(gate, GateResult):
        gate = GateResult.from_json(gate)
    if gate.status == "updated":
        return [f"baseline {gate.baseline} updated from this run"]
    lines = [f"REGRESSION {message}" for message in _grouped(gate.regressions)]
    lines += [f"improved   {message}" for message in _grouped(gate.improvements)]
    lines += [f"new        {nodeid} (not in the baseline)" for nodeid in gate.new]
    lines += [f"missing    {nodeid} (in the baseline, no longer exists)" for nodeid in gate.missing]
    lines += [f"skipped    {reason}" for reason in gate.skipped]
    if gate.not_run:
        lines.append(f"not run    {len(gate.not_run)} baseline benchmark(s) deselected or skipped")
    unmatched = _unmatched(gate)
    allowed = gate.settings.allow_unmatched
    if unmatched and allowed:
        lines.append(f"unmatched  {unmatched}: not gated (allow_unmatched is set)")
    elif unmatched:
        lines.append(f"UNMATCHED  {unmatched}: the gate cannot compare them; {REFRESH_HINT}")
    if gate.status == "empty":
        reason = gate.reason or "no benchmark was compared"
        return [*lines, f"nothing was gated against {gate.baseline}: {reason}"]
    verdict = "FAILED" if gate.status == "fail" else "passed"
    summary = (
        f"gate {verdict} against {gate.baseline}: {_count(gate.regressions, 'regressed')}, "
        f"{_count(gate.improvements, 'improved')}, {len(gate.new)} new, "
        f"{len(gate.missing)} missing"
    )
    if gate.skipped:
        summary += f", {len(gate.skipped)} not comparable"
    if gate.improvements or (unmatched and allowed):
        summary += " (refresh on purpose: pytest <your benchmarks> --perfkit-update-baseline)"
    return [*lines, summary]


def _unmatched(gate: GateResult) -> str:
    """What the gate could not match with the baseline, counted ("" for nothing)."""
    counts = (
        (len(gate.new), "new"),
        (len(gate.missing), "missing"),
        (len(gate.skipped), "no longer comparable"),
    )
    return ", ".join(f"{count} {what}" for count, what in counts if count)


def _grouped(changes: Sequence[FigureChange]) -> list[str]:
    """One line per benchmark and kind of figure: the mean (or the first) in full, the
    other statistics of the same kind that moved named after it."""
    groups: dict[tuple[str, str], list[FigureChange]] = {}
    for change in changes:
        kind = change.figure.rpartition(".")[0]
        key = (change.benchmark, kind if kind != "counters" else change.figure)
        groups.setdefault(key, []).append(change)
    lines = []
    for members in groups.values():
        ranked = sorted(members, key=lambda change: not change.figure.endswith(".mean"))
        line = ranked[0].message
        if len(ranked) > 1:
            others = ", ".join(change.figure.rpartition(".")[2] for change in ranked[1:])
            line += f"; also {others}"
        lines.append(line)
    return lines


def _count(changes: Sequence[FigureChange], verb: str) -> str:
    benchmarks = len({change.benchmark for change in changes})
    return f"{len(changes)} figure(s) {verb} in {benchmarks} benchmark(s)"


def markdown(document: Report | Mapping[str, Any]) -> str:
    """The report as Markdown: the speedup table, the gate, and every benchmark's figures."""
    report = as_report(document)
    parts = [MARKER, "## perfkit speedup report", ""]
    rows = report.speedups
    if rows:
        parts += [_md_row(HEADER), _md_row(tuple("---" for _ in HEADER))]
        parts += [_md_row(row_cells(row)) for row in rows]
        notes = [f"- {_footnote(row)}" for row in rows if _footnote(row)]
        parts += ["", *notes] if notes else []
    else:
        parts.append("No speedups were declared (see `pytest_perfkit_speedups`).")
    for entry in report.load_tests:
        verdict = "SLO met" if entry["passed"] else "SLO **missed**"
        parts += ["", f"### Load test `{entry['test']}`: {verdict}", "", "```text"]
        parts += [*entry["summary"], "```"]
    parts += ["", "### Regression gate", ""]
    parts += [f"- {line}" for line in gate_lines(report.gate)]
    parts += ["", "<details><summary>Every benchmark's figures</summary>", ""]
    parts += [
        "| benchmark | clock | rounds | modeled mean | modeled p95 | observed p95 | counters |",
        "|---|---|---|---|---|---|---|",
    ]
    for nodeid, entry in report.benchmarks.items():
        observed = entry["series"].get("observed", {}).get("p95")
        counters = ", ".join(
            f"{name}={_counter(name, value)}" for name, value in entry["counters"].items()
        )
        parts.append(
            _md_row(
                (
                    f"`{nodeid}`",
                    entry["clock"],
                    str(entry["rounds"]),
                    format_value("modeled.mean", entry["modeled"].get("mean")),
                    format_value("modeled.p95", entry["modeled"].get("p95")),
                    format_value("observed.p95", observed),
                    counters or "-",
                )
            )
        )
    guessed = [
        f"- `{nodeid}`: {FALLBACK_PRICED}: {entry['parameters'][FALLBACK_PRICED]}"
        for nodeid, entry in report.benchmarks.items()
        if FALLBACK_PRICED in entry.get("parameters", {})
    ]
    price_files = sorted(
        {entry["prices"] for entry in report.benchmarks.values() if "prices" in entry}
    )
    guessed += [f"- usd priced with the price file of {label}" for label in price_files]
    parts += ["", *guessed] if guessed else []
    environment = report.environment
    parts += [
        "",
        "</details>",
        "",
        f"perfkit {report.perfkit}, {environment.implementation} "
        f"{environment.python} on {environment.platform}. Figures marked * are real "
        "time and vary between runs; every other figure is modeled and exact.",
        "",
    ]
    return "\n".join(parts)


def _footnote(row: SpeedupRow) -> str:
    figures = {row.baseline.figure, row.optimized.figure}
    text = f"{row.technique}, {row.scenario}: compares {' vs '.join(sorted(figures))}"
    if not row.deterministic:
        text += " (* real time, varies between runs)"
    if row.note:
        text += f"; {row.note}"
    return text if (row.note or not row.deterministic) else ""


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def svg_chart(rows: Rows) -> str:
    """A horizontal bar chart of the speedups on a log scale, the claims marked."""
    measured = [row for row in as_rows(rows) if row.factor is not None and row.factor > 0]
    label_width, plot_width, row_height, top = 330, 480, 26, 46
    height = top + row_height * max(len(measured), 1) + 40
    largest = max(
        [_factor(row) for row in measured] + [_claim_factor(row) for row in measured] + [10]
    )
    decades = max(1, math.ceil(math.log10(largest)))

    def x(factor: float) -> float:
        return label_width + plot_width * max(0.0, math.log10(max(factor, 1.0))) / decades

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + plot_width + 90}" '
        f'height="{height}" font-family="sans-serif" font-size="12">',
        "<title>perfkit speedups (baseline / optimized, log scale)</title>",
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="22" font-size="15" font-weight="bold">Speedup, baseline / optimized '
        "(log scale; | = the claim)</text>",
    ]
    for decade in range(decades + 1):
        position = x(10.0**decade)
        parts.append(
            f'<line x1="{position:.1f}" y1="{top - 8}" x2="{position:.1f}" '
            f'y2="{height - 30}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{position:.1f}" y="{height - 14}" text-anchor="middle" '
            f'fill="#555">{10**decade:,}x</text>'
        )
    for index, row in enumerate(measured):
        y = top + index * row_height
        colour = {"inside": "#2e7d32", "above": "#1565c0", "below": "#c62828"}.get(
            row.verdict, "#757575"
        )
        label = escape(f"{row.technique}: {row.scenario}")
        parts.append(f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end">{label}</text>')
        width = max(x(_factor(row)) - label_width, 1.5)
        parts.append(
            f'<rect x="{label_width}" y="{y + 4}" width="{width:.1f}" height="{row_height - 8}" '
            f'fill="{colour}"><title>{escape(format_improvement(row))}</title></rect>'
        )
        parts.append(
            f'<text x="{label_width + width + 6:.1f}" y="{y + 15}">'
            f"{escape(format_improvement(row))}</text>"
        )
        claim = _claim_factor(row)
        if claim:
            position = x(claim)
            parts.append(
                f'<line x1="{position:.1f}" y1="{y + 1}" x2="{position:.1f}" '
                f'y2="{y + row_height - 1}" stroke="black" stroke-width="2"/>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _factor(row: SpeedupRow) -> float:
    return row.factor or 0.0


def _claim_factor(row: SpeedupRow) -> float:
    """Where a row's claim sits on the factor axis (a % saved converts to a factor)."""
    claim = row.claim
    if claim is None:
        return 0.0
    if claim.unit == "x":
        return float(claim.low)
    return 1 / (1 - float(claim.low) / 100)
