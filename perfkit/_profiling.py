"""Per-benchmark profiles: cProfile around the measured rounds, written as files."""

from __future__ import annotations

import cProfile
import hashlib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeAlias, TypeVar

from perfkit._defaults import DEFAULT_PROFILE_TOP
from perfkit._errors import PerfkitError
from perfkit._validation import check_count

DEFAULT_TOP = DEFAULT_PROFILE_TOP
STEM_MAX_CHARS = 120
STEM_HASH_CHARS = 10
MIN_STACK_SHARE = 1e-4  # collapsed stacks below this share of the profile are left out
UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._\-\[\]]")
UNSAFE_FRAME_CHARS = re.compile(r"[;\r\n]")
WINDOWS_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10)}
)

P = ParamSpec("P")
T = TypeVar("T")
Function: TypeAlias = tuple[str, int, str]  # cProfile's (file name, line, function name)
Entry: TypeAlias = tuple[int, int, float, float, Mapping[Function, tuple[int, int, float, float]]]
Stats: TypeAlias = Mapping[Function, Entry]


class ProfileFiles(NamedTuple):
    """The files written for one benchmark's profile."""

    prof: Path
    table: Path
    collapsed: Path


class BenchmarkProfiler:
    """cProfile over the measured rounds of one benchmark (accumulated over rounds),
    written as ``<stem>.prof`` (pstats), ``<stem>.txt`` (top functions by cumulative
    time) and ``<stem>.collapsed`` (stacks for flame graphs, see ``collapsed_stacks``).

    cProfile sees the calling thread: sync code and the coroutines ``perf`` runs on its
    clock's loop in that thread. On Python 3.11 code in other threads is not profiled;
    from 3.12 (cProfile on ``sys.monitoring``) calls made in other threads meanwhile are
    recorded too, mixed into the same call graph. Times are real seconds of Python
    execution, not modeled latency. Use it as::

        profiler = BenchmarkProfiler("profiles", name="test_x.py::test_y", top=10)
        profiler.runcall(work, 3)
        files = profiler.write()  # ProfileFiles(prof=..., table=..., collapsed=...)
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, name: str, top: int = DEFAULT_TOP
    ) -> None:
        self.directory = Path(directory)
        self.name = name
        self.top = check_count("top", top)
        self.calls = 0
        self._profile = cProfile.Profile()

    def runcall(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args, **kwargs)`` with the profiler on."""
        self._enable()
        self.calls += 1
        try:
            return function(*args, **kwargs)
        finally:
            self._profile.disable()

    def write(self) -> ProfileFiles:
        """Write the three files (creating the directory) and return their paths."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = file_stem(self.name)
        files = ProfileFiles(
            *(self.directory / f"{stem}{suffix}" for suffix in (".prof", ".txt", ".collapsed"))
        )
        self._profile.dump_stats(files.prof)
        stats: Stats = self._profile.stats
        _write_lines(files.table, top_table(stats, self.top, title=self._title()))
        _write_lines(files.collapsed, collapsed_stacks(stats))
        return files

    def _enable(self) -> None:
        try:
            self._profile.enable()
        except ValueError as error:  # Python 3.12+: one profiler at a time
            raise PerfkitError(
                f"cannot profile {self.name}: {error} (pytest-benchmark's "
                "--benchmark-cprofile, python -m cProfile, ...); run one profiler at a time"
            ) from error

    def _title(self) -> str:
        rounds = f"{self.calls} measured round{'' if self.calls == 1 else 's'}"
        return f"perfkit profile of {self.name} ({rounds}, cProfile)"


def file_stem(node_id: str) -> str:
    """A file name stem for a pytest node id, safe on Linux, macOS and Windows; a hash of
    the whole id ends it, so ids that cleaning or truncation merge stay apart.

    >>> file_stem("benchmarks/test_x.py::test_y[a-b]")
    'benchmarks.test_x.py..test_y[a-b]-...'
    """
    readable = node_id.replace("::", "..").replace("/", ".").replace("\\", ".")
    readable = UNSAFE_FILE_CHARS.sub("_", readable).lstrip(".-")[:STEM_MAX_CHARS] or "benchmark"
    if readable.split(".")[0].upper() in WINDOWS_DEVICE_NAMES:  # aux.py: AUX on Windows
        readable = f"_{readable}"
    digest = hashlib.sha256(node_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{readable}-{digest[:STEM_HASH_CHARS]}"


def frame_label(function: Function) -> str:
    """``name (file.py:line)``, or a built-in's name, with no ``;`` or line break."""
    file_name, line, name = function
    label = name if file_name == "~" else f"{name} ({os.path.basename(file_name)}:{line})"
    return UNSAFE_FRAME_CHARS.sub("_", label)


def top_table(stats: Stats, top: int, *, title: str) -> list[str]:
    """The ``top`` functions by cumulative time: calls, own and cumulative ms, function."""
    ranked = sorted(stats.items(), key=lambda item: (-item[1][3], -item[1][2], item[0]))
    calls = sum(entry[1] for entry in stats.values())
    seconds = math.fsum(entry[2] for entry in stats.values())
    lines = [
        title,
        f"{calls} function calls in {seconds * 1000:.3f} ms; "
        f"top {min(top, len(ranked))} of {len(ranked)} functions by cumulative time",
        "",
        f"{'ncalls':>12}  {'tottime ms':>12}  {'cumtime ms':>12}  function",
    ]
    for function, (primitive, total, tottime, cumtime, _) in ranked[:top]:
        ncalls = str(total) if total == primitive else f"{total}/{primitive}"
        lines.append(
            f"{ncalls:>12}  {tottime * 1000:12.3f}  {cumtime * 1000:12.3f}  {frame_label(function)}"
        )
    return lines


def collapsed_stacks(stats: Stats) -> list[str]:
    """Collapsed stacks (``frame;frame;frame microseconds`` lines) for flamegraph.pl,
    inferno or speedscope, estimated from cProfile's caller-callee pairs as flameprof does.

    cProfile keeps no whole stacks, so the time of a function reached along a path is its
    time under the path's last caller, scaled by the share of that caller's time that
    the path carries (calls are assumed spread evenly over the caller's own paths).
    Recursion is cut at the first repeated function, and paths under 0.01% of the
    profile are left out."""
    callees = _callees(stats)
    floor = max(math.fsum(entry[2] for entry in stats.values()) * MIN_STACK_SHARE, 1e-6)
    roots = [function for function, entry in stats.items() if not entry[4]]
    pending: list[tuple[tuple[Function, ...], float]] = [
        ((root,), float(stats[root][3])) for root in roots
    ]
    counts: dict[str, int] = {}
    while pending:
        path, seconds = pending.pop()
        _, _, tottime, cumtime, _ = stats[path[-1]]
        share = seconds / cumtime if cumtime else 0.0
        microseconds = round(tottime * share * 1e6)
        if microseconds:
            stack = ";".join(frame_label(function) for function in path)
            counts[stack] = counts.get(stack, 0) + microseconds
        for callee, edge_seconds in callees.get(path[-1], {}).items():
            if callee not in path and edge_seconds * share >= floor:
                pending.append(((*path, callee), edge_seconds * share))
    return [f"{stack} {count}" for stack, count in sorted(counts.items())]


def _callees(stats: Stats) -> dict[Function, dict[Function, float]]:
    """For each caller, the cumulative seconds of each function it called."""
    callees: dict[Function, dict[Function, float]] = {}
    for callee, entry in stats.items():
        for caller, edge in entry[4].items():
            callees.setdefault(caller, {})[callee] = edge[3]
    return callees


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8", newline="\n")


def write_terminal_summary(reporter: Any, profiles: Sequence[ProfileFiles]) -> None:
    """The perfkit-profile section of pytest's terminal summary: one line per benchmark."""
    reporter.write_sep("-", "perfkit: cProfile of each benchmark's measured rounds")
    for files in profiles:
        reporter.write_line(f"{files.prof.parent / files.prof.stem}.{{prof,txt,collapsed}}")
