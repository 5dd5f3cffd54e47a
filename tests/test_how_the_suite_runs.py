"""How perfkit's own test suite runs: on every core (pytest-xdist, set in tests/conftest.py),
the benchmarks serially, and a pytest run that a test starts as a run of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent


def collected_by(*arguments: str, report_dir: Path) -> str:
    """What ``pytest ARGUMENTS`` prints from the repository, run outside CI, selecting nothing."""
    environment = {name: value for name, value in os.environ.items() if name != "CI"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-k", "no_such_test"]
    completed = subprocess.run(
        [*command, f"--perfkit-report-dir={report_dir}", *arguments],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return completed.stdout


@pytest.mark.slow  # two pytest runs of their own
def test_the_tests_run_on_every_core_and_the_benchmarks_serially(tmp_path: Path) -> None:
    assert "created: " in collected_by("tests/test_how_the_suite_runs.py", report_dir=tmp_path)
    assert "created: " not in collected_by("benchmarks", report_dir=tmp_path)


def test_a_pytest_run_that_a_test_starts_is_not_an_xdist_worker() -> None:
    # pytest-benchmark, for one, turns itself off in an xdist worker.
    assert [name for name in os.environ if name.startswith("PYTEST_XDIST_")] == []
