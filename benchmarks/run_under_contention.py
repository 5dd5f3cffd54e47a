"""Run the benchmark suite repeatedly while other processes load every CPU, and count the
gate's false failures (there must be none: the code did not change between runs).

    python benchmarks/run_under_contention.py --runs 10
    python benchmarks/run_under_contention.py --runs 3 --hogs 1 -- benchmarks/test_async.py

Each run is ``python -m pytest benchmarks`` (or the pytest arguments after ``--``) with
its report in a temporary directory; the table shows each run's exit status, the gate's
verdict, its regressions, the wall time and the CPU calibration's spread. The exit
status is 1 if any run failed, else 0.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def burn() -> None:
    """Keep one CPU busy until terminated."""
    while True:
        sum(range(10_000))


@contextmanager
def cpu_hogs(count: int) -> Iterator[list[multiprocessing.Process]]:
    """``count`` processes spinning on the CPU for the duration of the block."""
    hogs = [multiprocessing.Process(target=burn, daemon=True) for _ in range(count)]
    for hog in hogs:
        hog.start()
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.join()


def run_once(pytest_arguments: Sequence[str], report_dir: Path) -> dict[str, Any]:
    """One run of the suite: its exit status, gate verdict and the figures behind it."""
    command = [
        sys.executable, "-m", "pytest", *pytest_arguments, "-q", "-p", "no:cacheprovider",
        f"--perfkit-report-dir={report_dir}",
    ]  # fmt: skip
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    report_file = report_dir / "report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else None
    gate = report["gate"] if report else None
    return {
        "exit": completed.returncode,
        "gate": gate["status"] if gate else "no gate",
        "regressions": [change["message"] for change in gate["regressions"]] if gate else [],
        "seconds": seconds,
        "spread": report["calibration"]["spread"] if report else None,
        "tail": completed.stdout.splitlines()[-1:] if completed.returncode else [],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="how many runs (default: 10)")
    parser.add_argument(
        "--hogs", type=int, default=os.cpu_count() or 2,
        help="CPU-bound processes running meanwhile (default: one per CPU)",
    )  # fmt: skip
    parser.add_argument("pytest_arguments", nargs="*", default=["benchmarks"])
    arguments = parser.parse_args(argv)
    if arguments.runs < 1 or arguments.hogs < 0:
        parser.error(f"--runs must be >= 1 and --hogs >= 0; got {arguments.runs}, {arguments.hogs}")
    results = []
    with cpu_hogs(arguments.hogs), tempfile.TemporaryDirectory() as scratch:
        for run in range(1, arguments.runs + 1):
            result = run_once(arguments.pytest_arguments, Path(scratch) / f"run-{run}")
            results.append(result)
            print(
                f"run {run:>2}: exit {result['exit']}  gate {result['gate']:<7}  "
                f"{len(result['regressions'])} regression(s)  {result['seconds']:6.1f} s  "
                f"calibration spread {result['spread']}",
                flush=True,
            )
            for line in result["regressions"] + result["tail"]:
                print(f"        {line}", flush=True)
    failures = sum(result["exit"] != 0 for result in results)
    print(
        f"{arguments.runs} run(s) beside {arguments.hogs} CPU hog(s): {failures} failure(s)",
        flush=True,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
