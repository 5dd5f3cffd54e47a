"""The examples run and show what they claim."""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


# --- support_agent: a user's project, benchmarked and gated ----------------------------------

SUPPORT_AGENT = EXAMPLES / "support_agent"
GUIDE = EXAMPLES.parent / "docs" / "writing-benchmarks.md"
INBOX = "benchmarks/test_support_agent.py::test_inbox"
CONCURRENT_LOOKUPS = """\
    order, policy = await asyncio.gather(
        _lookup(store, f"order:{order_id}"), _lookup(store, POLICY_KEY)
    )
"""
SEQUENTIAL_LOOKUPS = """\
    order = await _lookup(store, f"order:{order_id}")
    policy = await _lookup(store, POLICY_KEY)
"""


@pytest.fixture
def support_agent(tmp_path: Path) -> Path:
    """A copy of the example project: its runs write their report and baseline there."""
    copy = tmp_path / "support_agent"
    shutil.copytree(
        SUPPORT_AGENT,
        copy,
        ignore=shutil.ignore_patterns("perfkit-report", "__pycache__", ".*_cache", ".benchmarks"),
    )
    return copy


# These runs check the exact figures; the CPU gate, real time however noise-aware, is
# opened wide for them (up to +1,000%), so that a busy CI machine cannot touch what they
# test. The CPU gate has tests of its own (tests/test_reporting.py).
WIDE_CPU_GATE = "--perfkit-cpu-threshold=10"


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COLUMNS": "80"}  # the width of the quoted output
    environment.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", WIDE_CPU_GATE, *args],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_lookups_sequential(project: Path) -> None:
    """The regression: the improved agent looks the order and the policy up one by one."""
    agent = project / "support_agent.py"
    source = agent.read_text()
    assert CONCURRENT_LOOKUPS in source
    agent.write_text(source.replace(CONCURRENT_LOOKUPS, SEQUENTIAL_LOOKUPS))


def fenced_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.M | re.S)


def quoted_output(containing: str) -> list[str]:
    """The output blocks of the guide and the example's README that contain a text."""
    documents = (GUIDE, SUPPORT_AGENT / "README.md")
    blocks = [block for path in documents for block in fenced_blocks(path, "text")]
    found = [block for block in blocks if containing in block]
    assert found, f"no quoted output contains {containing!r}"
    return found


def assert_printed(quoted: str, output: str) -> None:
    """Every line of a quoted output block was printed (up to spacing); the gate's summary
    line up to its counts."""
    printed = [" ".join(line.split()) for line in output.splitlines()]
    for line in quoted.splitlines():
        expected = " ".join(line.split())
        if expected.startswith("gate "):
            expected = expected.partition(":")[0] + ":"
            assert any(shown.startswith(expected) for shown in printed), line
        else:
            assert expected in printed, line


def test_the_guide_quotes_the_example_as_it_is() -> None:
    sources = [path.read_text() for path in SUPPORT_AGENT.rglob("*.py")]
    code = fenced_blocks(GUIDE, "python")
    assert len(code) >= 6
    for block in code:
        assert any(block in source for source in sources), block
    settings = fenced_blocks(GUIDE, "toml")
    assert settings
    for block in settings:
        assert block in (SUPPORT_AGENT / "pyproject.toml").read_text(), block


def test_the_support_agent_benchmarks_pass_their_gate(support_agent: Path) -> None:
    completed = run_pytest(support_agent)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "3 passed" in completed.stdout
    assert "gate passed against benchmarks/baseline.json" in completed.stdout
    for block in quoted_output("inside claim"):
        assert_printed(block, completed.stdout)
    report = json.loads((support_agent / "perfkit-report" / "report.json").read_text())
    assert [(row["factor"], row["verdict"]) for row in report["speedups"]] == [
        (1.9921, "inside"),
        (2.0, "no claim"),
    ]
    gate = report["gate"]  # the committed baseline is this code's: nothing moved
    assert (gate["status"], gate["improvements"], gate["new"], gate["missing"]) == (
        "pass",
        [],
        [],
        [],
    )


def test_a_regression_in_the_support_agent_fails_the_gate(support_agent: Path) -> None:
    make_lookups_sequential(support_agent)
    completed = run_pytest(support_agent, "-k", "test_inbox")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "2 passed, 1 deselected" in completed.stdout  # the gate alone fails the run
    assert (
        f"REGRESSION {INBOX}[improved]: modeled.mean rose from 4,032.000 ms to 4,040.000 ms"
        in completed.stdout
    )
    assert f"REGRESSION {INBOX}[naive]" not in completed.stdout
    assert "gate FAILED against benchmarks/baseline.json" in completed.stdout
    for block in quoted_output("REGRESSION"):
        assert_printed(block, completed.stdout)


@pytest.mark.slow  # three pytest runs of the example project
def test_the_support_agent_baseline_is_refreshed_on_purpose(
    support_agent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)  # a baseline is refreshed on a developer's machine
    baseline = support_agent / "benchmarks" / "baseline.json"
    committed = baseline.read_text()
    make_lookups_sequential(support_agent)

    refused = run_pytest(support_agent, "--perfkit-update-baseline")
    assert refused.returncode == 1  # the exact test sees the slower miss
    assert "baseline not updated: the run had failures" in refused.stdout
    assert baseline.read_text() == committed

    updated = run_pytest(support_agent, "--perfkit-update-baseline", "-k", "test_inbox")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "baseline benchmarks/baseline.json updated from this run" in updated.stdout
    benchmarks = json.loads(baseline.read_text())["benchmarks"]
    assert benchmarks[f"{INBOX}[improved]"]["modeled"]["mean"] == 4.04
    assert benchmarks[f"{INBOX}[naive]"]["modeled"]["mean"] == 8.032

    gated = run_pytest(support_agent, "-k", "test_inbox")
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert "gate passed against benchmarks/baseline.json" in gated.stdout
