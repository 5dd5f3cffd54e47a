"""What perfkit costs a project that does not use it: pytest's wall time on a project of
three trivial tests, with perfkit's plugin loaded and with ``-p no:perfkit``, measured
side by side (alternating runs, medians), and the modules the plugin adds.

    python benchmarks/plugin_startup.py [--runs 7]

Prints the ratio (the goal: within 1.25x) and the modules loading perfkit adds (the goal:
only perfkit's own small modules). pytest-asyncio is left out of both runs (``-p
no:asyncio``): perfkit does not depend on it, and with it a project whose warnings are
errors stops at start-up whatever else is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = """\
def test_a():
    assert 1


def test_b(tmp_path):
    assert tmp_path.is_dir()


def test_c(monkeypatch):
    monkeypatch.setenv("X", "1")
"""
NOT_ASYNCIO = ("-p", "no:asyncio")
OWN = ("perfkit", "looptime")
"""Top-level packages whose modules loading perfkit may add: perfkit's own, and looptime's
pytest plugin, which its entry point loads before perfkit switches it off."""
WITHOUT_PERFKIT = ("-p", "no:perfkit", "-p", "no:looptime_plugin")
"""Without perfkit's plugin, and without the plugin of looptime (perfkit's virtual-time
engine), which cannot run without pytest-asyncio and which perfkit's plugin switches off."""
CONFTEST = """\
import json, os, sys


def pytest_sessionfinish(session):
    with open(os.environ["MODULES_OUT"], "w") as out:
        json.dump(sorted(sys.modules), out)
"""


def make_project(directory: Path) -> None:
    (directory / "test_trivial.py").write_text(TESTS)
    (directory / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")


def run(project: Path, *options: str, modules_out: Path | None = None) -> float:
    env = None
    if modules_out is not None:
        (project / "conftest.py").write_text(CONFTEST)
        env = {**os.environ, "MODULES_OUT": str(modules_out)}
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:asyncio",
            *options,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    (project / "conftest.py").unlink(missing_ok=True)
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each (default: 7)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        make_project(project)
        run(project)  # warm the file cache
        with_perfkit, without = [], []
        for _ in range(arguments.runs):
            with_perfkit.append(run(project))
            without.append(run(project, *WITHOUT_PERFKIT))
        added = project / "with.json"
        base = project / "without.json"
        run(project, modules_out=added)
        run(project, *WITHOUT_PERFKIT, modules_out=base)
        extra = sorted(set(json.loads(added.read_text())) - set(json.loads(base.read_text())))
    a, b = statistics.median(with_perfkit), statistics.median(without)
    print(f"pytest on 3 trivial tests, median of {arguments.runs} runs each:")
    print(f"  with perfkit      {a:6.3f} s")
    print(f"  without perfkit   {b:6.3f} s  ({' '.join(WITHOUT_PERFKIT)})")
    print(f"  ratio             {a / b:6.3f}x  (goal: within 1.25x)")
    foreign = [name for name in extra if name.split(".")[0] not in OWN]
    print(f"  modules perfkit adds: {len(extra)}, of which not perfkit's own: {foreign or 'none'}")
    return 0 if not foreign else 1


if __name__ == "__main__":
    raise SystemExit(main())
