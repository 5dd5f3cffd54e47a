"""The state of one pytest run as perfkit sees it, and what the run ends with.

:class:`PerfkitSession` holds what the run measured (its ``perf`` results, load tests,
real-time comparisons and profiles) and turns it, at the end, into the report and the
gate's verdict. Under pytest-xdist each worker hands its share to the controller as plain
data (``config.workeroutput``); the controller alone merges, reports and gates, so a
parallel run reports and gates exactly what a serial run of the same selection does.

Reporting is imported when a run has something to report, never at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from perfkit import _settings

if TYPE_CHECKING:
    from perfkit._perf import PerfResult
    from perfkit._profiling import ProfileFiles
    from perfkit.reporting import GateResult, RunOutcome, Selection, Speedup

WORKER_OUTPUT = "perfkit"
"""The key of perfkit's share in a pytest-xdist worker's ``workeroutput``."""
REGRESSION_STAT = "perf regression"
UNMATCHED_STAT = "perf unmatched"
PROBLEM_STAT = "perf gate error"
NOTHING_GATED_STAT = "perf not gated"


@dataclass
class PerfkitSession:
    """What perfkit collected and measured in one pytest run (one process: the run
    itself, a pytest-xdist worker, or the controller that merges the workers)."""

    config: pytest.Config
    settings: _settings.Settings
    comparisons: list[dict[str, Any]]
    """Real-time comparisons a suite records for the report (``benchmark``,
    ``seconds_per_call``, ``ratios``); the same list as ``config.stash[COMPARISONS_KEY]``."""
    results: list[PerfResult] = field(default_factory=list)
    collected: set[str] = field(default_factory=set)
    load_tests: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[ProfileFiles] = field(default_factory=list)
    outcome: RunOutcome | None = None
    problem: str | None = None
    """Why the report or the gate could not be made (a usage error at the end of the run)."""
    not_gated: str | None = None
    """Why nothing was gated although a baseline was given."""
    baseline_entries: frozenset[str] = frozenset()
    """The benchmarks the baseline file holds (read before any test runs)."""
    ran: bool = False
    """Whether the run ran its tests (not ``--collect-only``, ``--fixtures`` and the like,
    which neither report nor gate)."""

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    # -- during the run ---------------------------------------------------------------

    def note_collected(self, items: Iterable[pytest.Item]) -> None:
        """Remember every benchmark collected, before deselection: the report tells a
        deselected baseline benchmark ("not run") from a vanished one ("missing")."""
        self.collected.update(
            item.nodeid for item in items if "perf" in getattr(item, "fixturenames", ())
        )

    def in_scope(self, nodeid: str) -> bool:
        """Whether a benchmark is one the baseline (or, without one, the report) covers."""
        return nodeid.startswith(self.scope)

    @cached_property
    def scope(self) -> str:
        """The node-id prefix of the benchmarks the baseline covers (fixed for the run)."""
        from perfkit.reporting import scope_of

        return scope_of(self.settings.baseline, self.config.rootpath)

    # -- pytest-xdist -----------------------------------------------------------------

    def worker_output(self) -> dict[str, Any]:
        """This worker's share as plain data (what execnet can carry)."""
        plain = {
            "results": [result.to_plain() for result in self.results],
            "collected": sorted(self.collected),
            "comparisons": self.comparisons,
            "load_tests": self.load_tests,
            "profiles": [[str(path) for path in files] for files in self.profiles],
        }
        # JSON in, JSON out: the data the report holds, and nothing execnet cannot carry
        loaded: dict[str, Any] = json.loads(json.dumps(plain))
        return loaded

    def merge(self, worker: str, output: Mapping[str, Any] | None) -> None:
        """Take a worker's share; a worker that ended without one makes the report
        incomplete, which is an error, never a smaller report that passes."""
        if output is None:
            self.problem = (
                f"ERROR: pytest-xdist worker {worker} ended without handing over its perfkit "
                "results (did it crash?), so the report and the gate would be incomplete"
            )
            return
        from perfkit._perf import PerfResult
        from perfkit._profiling import ProfileFiles

        self.results += [PerfResult.from_plain(data) for data in output["results"]]
        self.collected.update(output["collected"])
        self.comparisons += output["comparisons"]
        self.load_tests += output["load_tests"]
        self.profiles += [ProfileFiles(*map(Path, files)) for files in output["profiles"]]

    # -- the end of the run -----------------------------------------------------------

    def finish(self, session: pytest.Session) -> None:
        """Report, then gate against the baseline or refresh it; set the exit status."""
        if self.is_worker or not self.ran:
            return
        if self.problem is not None:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        if not (self.results or self.load_tests) and self.settings.baseline is None:
            return  # nothing to report: reporting is never imported
        self.results.sort(key=lambda result: result.name)
        scope = self.scope
        results = [r for r in self.results if r.name.startswith(scope)]
        loads = [entry for entry in self.load_tests if entry["test"].startswith(scope)]
        if not (results or loads) and not self._expected_in_this_run(scope):
            self._nothing_ran(session, scope)
            return
        passed = session.exitstatus == pytest.ExitCode.OK
        settings = self.settings
        try:
            from perfkit.reporting import GateSettings, finish_run

            selection = self._selection(scope)
            outcome = finish_run(
                results=results,
                selection=selection,
                speedups=self._speedups(selection),
                comparisons=self._comparisons(scope),
                load_tests=loads,
                version=_version(),
                # A failed run does not refresh the baseline (it is still gated when not
                # asked to refresh).
                baseline=settings.baseline if passed or not settings.writes_baseline else None,
                baseline_name=self.display(settings.baseline),
                update_baseline=settings.writes_baseline,
                report_dir=settings.report_dir,
                gate_settings=GateSettings(
                    tolerance=settings.tolerance,
                    cpu_threshold=settings.cpu_threshold,
                    allow_unmatched=settings.allow_unmatched,
                ),
            )
        except (ValueError, TypeError, OSError) as error:
            self._fail(session, f"ERROR: {error}")
            return
        except Exception as error:
            from perfkit._errors import PerfkitError

            if not isinstance(error, PerfkitError):
                raise
            self._fail(session, f"ERROR: {error}")
            return
        self.outcome = outcome
        gone = settings.baseline is not None and not settings.writes_baseline
        if gone and outcome.report.gate is None:
            self._fail(
                session,
                f"ERROR: {self.display(settings.baseline)}: the baseline was there when the run "
                "started and gone at its end, so nothing was gated",
            )
            return
        if outcome.gated_nothing:
            gate = outcome.report.gate
            self._gated_nothing(session, (gate and gate.reason) or "no benchmark was compared")
        if outcome.regressed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _gated_nothing(self, session: pytest.Session, reason: str) -> None:
        """A baseline was given and nothing was gated: said in yellow, and under CI (where
        a green run is read as "gated and passed") the run fails."""
        self.not_gated = f"nothing was gated: {reason}"
        if _settings.under_ci():
            self.not_gated += "; this is a CI run, so it fails"
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _comparisons(self, scope: str) -> list[dict[str, Any]]:
        for comparison in self.comparisons:
            if not isinstance(comparison, dict) or not isinstance(comparison.get("benchmark"), str):
                raise ValueError(
                    "a real-time comparison in config.stash[COMPARISONS_KEY] needs a "
                    f"'benchmark' node id, 'seconds_per_call' and 'ratios'; got {comparison!r}"
                )
        return [c for c in self.comparisons if c["benchmark"].startswith(scope)]

    def _fail(self, session: pytest.Session, problem: str) -> None:
        self.problem = problem
        session.exitstatus = pytest.ExitCode.USAGE_ERROR

    def _nothing_ran(self, session: pytest.Session, scope: str) -> None:
        """No benchmark in the baseline's scope ran: say so, and never as a pass that
        looks gated."""
        settings = self.settings
        if settings.baseline is None:
            return
        where = scope or "the rootdir"
        collected = sorted(n for n in self.collected if n.startswith(scope))
        elsewhere = sorted(n for n in self.collected if not n.startswith(scope))
        if settings.writes_baseline:
            self._fail(
                session,
                f"baseline not {self._written}: no benchmark under {where} ran (run the "
                "benchmark suite itself, e.g. pytest benchmarks --perfkit-update-baseline)",
            )
        elif not collected and settings.baseline_source.startswith("--"):
            shown = f"; this run's {len(elsewhere)} benchmark(s) are elsewhere, e.g. " + (
                elsewhere[0] if elsewhere else ""
            )
            self._fail(
                session,
                f"ERROR: {settings.baseline_source} {self.display(settings.baseline)} gates the "
                f"benchmarks under {where}, and this run collected none there"
                + (shown if elsewhere else "")
                + " (a baseline gates the benchmarks in its own directory)",
            )
        elif collected:
            self._gated_nothing(
                session,
                f"{len(collected)} benchmark(s) under {where} were collected and none ran "
                "(deselected or skipped)",
            )

    @property
    def _written(self) -> str:
        return "created" if self.settings.create_baseline else "updated"

    def _selection(self, scope: str) -> Selection:
        """The benchmarks this run collected in scope, and the files it collected in full
        (a ``file::test`` argument narrows its file)."""
        from perfkit.reporting import Selection

        collected = frozenset(n for n in self.collected if n.startswith(scope))
        files = {nodeid.partition("::")[0] for nodeid in collected}
        files |= self._asked_for_files(scope)
        return Selection(collected, frozenset(files - self._narrowed()), self.config.rootpath)

    def _arguments(self) -> list[tuple[str, bool]]:
        """The run's path arguments, relative to the rootdir, each with whether it names
        tests inside a file (``file::test``)."""
        found = []
        for argument in self.config.args:
            path, separator, _ = argument.partition("::")
            found.append((self.display(self.config.invocation_params.dir / path), bool(separator)))
        return found

    def _narrowed(self) -> set[str]:
        return {path for path, narrowed in self._arguments() if narrowed}

    def _asked_for_files(self, scope: str) -> set[str]:
        """The files of baseline benchmarks that this run asked pytest to collect in full
        (they exist and lie under one of its path arguments): a benchmark of such a file
        that was not collected is missing (its file was skipped at collection, ignored,
        or no longer holds it), never quietly out of the run."""
        asked = [path for path, narrowed in self._arguments() if not narrowed]
        files = {nodeid.partition("::")[0] for nodeid in self.baseline_entries}
        root = self.config.rootpath
        return {
            file
            for file in files
            if file.startswith(scope)
            and (root / file).is_file()
            and any(_inside(file, path) for path in asked)
        }

    def _expected_in_this_run(self, scope: str) -> bool:
        """Whether the baseline holds benchmarks this run should have measured: in files
        it asked for, or in files that are gone (which the gate reports missing)."""
        if self.settings.baseline is None or self.settings.writes_baseline:
            return False
        root = self.config.rootpath
        gone = any(
            not (root / nodeid.partition("::")[0]).is_file() for nodeid in self.baseline_entries
        )
        return gone or bool(self._asked_for_files(scope))

    def _speedups(self, selection: Selection) -> list[Speedup]:
        """The report's rows from every ``pytest_perfkit_speedups`` hook, checked: a row
        naming a benchmark that its collected file does not have is a typo."""
        from perfkit.reporting import Speedup, find_benchmark

        rows: list[Speedup] = []
        try:
            declared = self.config.hook.pytest_perfkit_speedups(config=self.config)
        except Exception as error:  # a user's hook: one line, not a traceback at the end
            raise ValueError(
                f"pytest_perfkit_speedups raised {type(error).__name__}: {error}"
            ) from None
        # Files pytest collected in full: a row naming a benchmark they lack is a typo.
        collected_files = {n.partition("::")[0] for n in selection.collected} - self._narrowed()
        for found in declared:
            if isinstance(found, Speedup) or not isinstance(found, list | tuple):
                raise TypeError(
                    f"pytest_perfkit_speedups must return a list of Speedup, got {found!r}"
                )
            for row in found:
                if not isinstance(row, Speedup):
                    raise TypeError(f"pytest_perfkit_speedups returned {row!r}, not a Speedup")
                for benchmark in (row.baseline, row.optimized):
                    if "::" not in benchmark:
                        raise ValueError(
                            f"Speedup {row.technique!r}, {row.scenario!r}: {benchmark!r} is "
                            "not a benchmark's node id (test_file.py::test_name[parameters])"
                        )
                    if find_benchmark(benchmark, selection.collected) is None and any(
                        (benchmark.partition("::")[0] in (file, file.rpartition("/")[2]))
                        for file in collected_files
                    ):
                        raise ValueError(
                            f"Speedup {row.technique!r}, {row.scenario!r}: no benchmark "
                            f"{benchmark!r} was collected from its file"
                        )
                rows.append(row)
        return rows

    def display(self, path: Path | None) -> str:
        """A path as messages show it: relative to the rootdir where it is inside it."""
        if path is None:
            return ""
        try:
            return path.resolve().relative_to(self.config.rootpath.resolve()).as_posix()
        except ValueError:
            return str(path)

    # -- the terminal -----------------------------------------------------------------

    def write_summary(self, reporter: Any) -> None:
        """perfkit's sections of the terminal summary, and its words in the final line."""
        if self.results:
            from perfkit._report import write_terminal_summary

            write_terminal_summary(reporter, self.results)
        if self.outcome is not None:
            self._write_outcome(reporter, self.outcome)
        if self.not_gated is not None:
            reporter.write_sep("-", "perfkit regression gate", yellow=True)
            reporter.write_line(self.not_gated, yellow=True)
            reporter.stats.setdefault(NOTHING_GATED_STAT, []).append(self.not_gated)
        if self.problem is not None:
            reporter.write_sep("-", "perfkit report", red=True)
            reporter.write_line(self.problem, red=True)
            _count_in_final_line(reporter, PROBLEM_STAT, [self.problem])
        if self.profiles:
            from perfkit._profiling import write_terminal_summary as write_profiles

            write_profiles(reporter, self.profiles)

    def _write_outcome(self, reporter: Any, outcome: RunOutcome) -> None:
        from perfkit.reporting import gate_lines, terminal_lines

        report = outcome.report
        if report.load_tests:
            reporter.write_sep(
                "-", "perfkit load tests (open models: latency from each intended send time)"
            )
            for entry in report.load_tests:
                verdict = "SLO met" if entry["passed"] else "SLO MISSED"
                reporter.write_line(f"{entry['test']}: {verdict}", red=not entry["passed"])
                for line in entry["summary"]:
                    reporter.write_line(f"    {line}")
        if report.speedups:
            reporter.write_sep("-", "perfkit speedup report (this run's measurements)")
            for line in terminal_lines(report.speedups):
                reporter.write_line(line)
        if self.settings.baseline is not None:
            failed = outcome.regressed
            reporter.write_sep("-", "perfkit regression gate", red=failed, green=not failed)
            if report.gate is None and self.settings.writes_baseline:
                reporter.write_line(f"baseline not {self._written}: the run had failures", red=True)
            elif report.gate is not None:
                for line in gate_lines(report.gate):
                    if self.settings.create_baseline:
                        line = line.replace("updated from this run", "created from this run")
                    reporter.write_line(
                        line, red=line.startswith(("REGRESSION", "UNMATCHED", "gate FAILED"))
                    )
            if failed and report.gate is not None:
                regressed, unmatched = _failing(report.gate)
                if regressed:
                    _count_in_final_line(reporter, REGRESSION_STAT, regressed)
                if unmatched or not regressed:
                    _count_in_final_line(reporter, UNMATCHED_STAT, unmatched or ["the gate"])
        if outcome.written:
            shown = ", ".join(self.display(path) for path in outcome.written)
            reporter.write_line(f"perfkit wrote {shown}")


def _inside(file: str, path: str) -> bool:
    """Whether rootdir-relative ``file`` is ``path`` or lies under directory ``path``."""
    return path in (".", "") or file == path or file.startswith(path.rstrip("/") + "/")


def _failing(gate: GateResult) -> tuple[list[str], list[str]]:
    """The benchmarks that failed the gate: those that regressed, and those it could not
    match with the baseline (new, missing, no longer comparable) under the strict gate."""
    regressed = sorted({change.benchmark for change in gate.regressions})
    unmatched: set[str] = set()
    if not gate.settings.allow_unmatched:
        unmatched.update(gate.new, gate.missing)
        unmatched.update(entry.partition(": ")[0] for entry in gate.skipped)
    return regressed, sorted(unmatched - set(regressed))


def _count_in_final_line(reporter: Any, stat: str, entries: list[Any]) -> None:
    """Count ``entries`` in pytest's final line ("8 passed, 1 perf regression in 2.3s"),
    in red: a failed gate must not read as a pass."""
    key = stat if len(entries) == 1 or not stat.endswith("regression") else stat + "s"
    reporter.stats.setdefault(key, []).extend(entries)
    try:  # pytest colours unknown kinds yellow; a failed gate is red, like "failed"
        from _pytest import terminal

        terminal._color_for_type.setdefault(key, "red")
        reporter._determine_main_color = lambda unknown_type_seen: "red"
        reporter._main_color = None  # recomputed with this kind, even after -x stopped early
    except (ImportError, AttributeError):  # another pytest: the words still say it
        pass


def _version() -> str:
    from perfkit import __version__

    return __version__
