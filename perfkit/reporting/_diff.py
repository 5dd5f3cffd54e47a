"""What a refreshed baseline changed: every figure it moved, for a pull request's reviewer.

A refreshed baseline is the only way past a failing gate, so it must never pass unseen:
the benchmark workflow compares a pull request's baseline with its base branch's and
posts every figure that rose or fell, and every benchmark added or removed, beside the
report. A regression accepted by a refresh is then in plain sight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from perfkit.reporting._documents import load
from perfkit.reporting._figures import flat_figures, is_exact
from perfkit.reporting._gate import value_text

ChangeKind = Literal["added", "removed", "rose", "fell", "changed"]
NOT_FIGURES = frozenset({"cpu.spread"})
"""How noisy a CPU measurement was is not a figure a refresh moves."""


@dataclass(frozen=True)
class BaselineChange:
    """One difference between two baselines: a benchmark ``added`` or ``removed`` (no
    ``figure``), a figure ``added``, ``removed``, that ``rose`` or ``fell``, or a
    benchmark's ``clock`` or ``rounds`` that ``changed``."""

    benchmark: str
    kind: ChangeKind
    figure: str = ""
    before: float | str | None = None
    after: float | str | None = None
    worse: bool = False
    """A rise of a figure where lower is better, or a fall of one where higher is."""
    exact: bool = True
    """False for real time (CPU), which moves on every refresh."""

    @property
    def relative(self) -> float | None:
        """After over before minus one (inf from zero); None unless it rose or fell."""
        if self.kind not in ("rose", "fell"):
            return None
        before, after = float(self.before or 0), float(self.after or 0)
        if before == 0:
            return math.copysign(math.inf, after)
        return after / before - 1


def baseline_changes(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[BaselineChange]:
    """Every difference between two loaded baselines, by benchmark and figure."""
    before, after = base["benchmarks"], head["benchmarks"]
    changes: list[BaselineChange] = []
    for nodeid in sorted(set(before) | set(after)):
        if nodeid not in before:
            changes.append(BaselineChange(nodeid, "added"))
        elif nodeid not in after:
            changes.append(BaselineChange(nodeid, "removed"))
        else:
            changes += _entry_changes(nodeid, before[nodeid], after[nodeid])
    return changes


def _entry_changes(
    nodeid: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[BaselineChange]:
    changes = [
        BaselineChange(nodeid, "changed", field, before.get(field), after.get(field))
        for field in ("clock", "rounds")
        if before.get(field) != after.get(field)
    ]
    then, now = flat_figures(before), flat_figures(after)
    higher_is_better = set(before.get("higher_is_better", ())) | set(
        after.get("higher_is_better", ())
    )
    for figure in sorted((set(then) | set(now)) - NOT_FIGURES):
        exact = is_exact(after, figure) and is_exact(before, figure)
        if figure not in now:
            changes.append(BaselineChange(nodeid, "removed", figure, then[figure], exact=exact))
        elif figure not in then:
            changes.append(BaselineChange(nodeid, "added", figure, None, now[figure], exact=exact))
        elif now[figure] != then[figure]:
            rose = now[figure] > then[figure]
            group, _, statistic = figure.partition(".")
            if group == "counters":
                worse = rose != (statistic in higher_is_better)
            else:  # how many latencies a series observed: more is not worse
                worse = rose and statistic != "count"
            kind: ChangeKind = "rose" if rose else "fell"
            changes.append(
                BaselineChange(nodeid, kind, figure, then[figure], now[figure], worse, exact)
            )
    return changes


def baseline_changes_markdown(changes: list[BaselineChange], name: str) -> str:
    """The changes as Markdown for a pull request: worse figures first, benchmarks added
    and removed, and real-time figures (which move on every refresh) folded away."""
    title = f"### Baseline changes in `{name}`"
    exact = [change for change in changes if change.exact and change.figure]
    cpu = [change for change in changes if not change.exact and change.figure]
    added = [change.benchmark for change in changes if change.kind == "added" and not change.figure]
    removed = [c.benchmark for c in changes if c.kind == "removed" and not c.figure]
    if not (exact or added or removed):
        moved = f" (only CPU time moved, in {len(cpu)} figure(s))" if cpu else ""
        return f"{title}\n\nNo exact figure moved and no benchmark was added or removed{moved}.\n"
    worse = sum(change.worse for change in exact)
    parts = [
        title,
        "",
        "This change refreshes the baseline. The gate compares against these figures from "
        "now on, so a figure that got worse here was accepted by the refresh, not gated: "
        f"**{worse} figure(s) worse**, {len(exact) - worse} other change(s), "
        f"{len(added)} benchmark(s) added, {len(removed)} removed.",
    ]
    if exact:
        parts += ["", *_table(sorted(exact, key=lambda change: not change.worse))]
    if added:
        parts += ["", "Added (gated from now on):", *(f"- `{nodeid}`" for nodeid in added)]
    if removed:
        parts += ["", "Removed (no longer gated):", *(f"- `{nodeid}`" for nodeid in removed)]
    if cpu:
        parts += [
            "",
            f"<details><summary>CPU time (real time, moves on every refresh): {len(cpu)} "
            "figure(s)</summary>",
            "",
            *_table(cpu),
            "",
            "</details>",
        ]
    return "\n".join(parts) + "\n"


def baseline_diff(base: Path | str, head: Path | str) -> str:
    """``perfkit baseline-diff BASE HEAD``: the Markdown of what HEAD's baseline moved
    against BASE's; BaselineError (naming the file) if either cannot be read."""
    before, after = load(Path(base), "baseline"), load(Path(head), "baseline")
    return baseline_changes_markdown(baseline_changes(before, after), str(head))


def _table(changes: list[BaselineChange]) -> list[str]:
    rows = ["| benchmark | figure | base | head | change |", "|---|---|---|---|---|"]
    for change in changes:
        cells = (
            f"`{change.benchmark}`",
            change.figure,
            _shown(change.figure, change.before),
            _shown(change.figure, change.after),
            _moved(change),
        )
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return rows


def _shown(figure: str, value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) or figure in ("clock", "rounds"):
        return str(value)
    return value_text(figure, value)


def _moved(change: BaselineChange) -> str:
    relative = change.relative
    if relative is None:
        return change.kind
    text = "from zero" if math.isinf(relative) else f"{relative:+,.1%}"
    return f"**{text} (worse)**" if change.worse else text
