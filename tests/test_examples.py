"""The examples run and show what they claim."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_fetch_data_takes_the_longest_lookup_not_the_sum() -> None:
    module = runpy.run_path(str(EXAMPLES / "fetch_data.py"))
    assert module["main"]() == {"sequential": 0.2, "async": 0.1}


def test_fetch_data_prints_its_figures() -> None:
    completed = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / "fetch_data.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "sequential: 200 ms",
        "async:      100 ms",
        "speedup:    2.0x",
    ]
