"""The perfkit section of pytest's terminal summary: what each ``perf`` benchmark measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perfkit._perf import Distribution, PerfResult


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def format_table(results: Sequence[PerfResult]) -> list[str]:
    """One row per benchmark: modeled mean/p50/p95/p99 per round (ms), mean/p50/p95 of
    the latencies observed inside it with ``perf.observe`` (ms), real wall and CPU per
    round (ms), and counters."""
    header = (
        "benchmark",
        "clock",
        "rounds",
        "mean",
        "p50",
        "p95",
        "p99",
        "obs mean",
        "obs p50",
        "obs p95",
        "wall",
        "cpu",
        "counters",
    )
    rows = [header]
    for result in results:
        modeled = Distribution(tuple(result.modeled))
        wall = Distribution(tuple(result.wall)).as_dict()
        cpu = Distribution(tuple(result.cpu)).as_dict()
        counters = ", ".join(
            f"{name}=${value:,.6f}" if name == "usd" else f"{name}={value:g}"
            for name, value in result.counters.items()
        )
        stats = modeled.as_dict()
        observed = Distribution(tuple(result.samples))
        observed_cells = (
            (
                _ms(float(observed.as_dict()["mean"])),
                _ms(observed.percentile(50)),
                _ms(observed.percentile(95)),
            )
            if observed.count
            else ("-", "-", "-")
        )
        rows.append(
            (
                result.name,
                result.clock,
                str(result.rounds),
                _ms(stats["mean"]),
                _ms(stats["p50"]),
                _ms(stats["p95"]),
                _ms(stats["p99"]),
                *observed_cells,
                _ms(wall["mean"]),
                _ms(cpu["mean"]),
                counters or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(widths[i]) if i < 2 or i == len(row) - 1 else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines


def write_terminal_summary(reporter: Any, results: Sequence[PerfResult]) -> None:
    reporter.write_sep(
        "-", "perfkit: modeled ms per round; obs = observed latencies; wall/cpu = real ms"
    )
    for line in format_table(results):
        reporter.write_line(line)
