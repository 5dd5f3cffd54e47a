"""The README's examples run, so they cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def _quick_start() -> list[str]:
    text = README.read_text()
    section = re.search(r"^## Quick start$(.*?)^## ", text, re.S | re.M)
    assert section is not None, "README has no '## Quick start' section"
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", section.group(1), re.S):
        commands += [
            line for line in block.splitlines() if line.strip() and not line.startswith("#")
        ]
    return commands


def test_quick_start_has_exactly_two_commands_benchmarks_then_tests() -> None:
    commands = _quick_start()
    assert len(commands) == 2
    assert commands[0].endswith("pytest benchmarks")
    assert commands[1].endswith("pytest")


def test_ci_runs_the_quick_start_commands_verbatim() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    for command in _quick_start():
        assert command in ci.splitlines()


def test_ci_runs_the_slow_tests_the_quick_start_tests_leave_out() -> None:
    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text())
    addopts = pyproject["tool"]["pytest"]["ini_options"]["addopts"]
    assert addopts[addopts.index("-m") + 1] == "not slow"
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    assert ci.index(".venv/bin/pytest -m slow") > ci.index(_quick_start()[1])


def test_benchmark_example_passes_as_a_test_file(pytester: pytest.Pytester) -> None:
    example = next(block for block in _blocks("python") if "def test_" in block)
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    pytester.makepyfile(test_example=example)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("marker", ["AnthropicSimulator(", "MultiLayerCache(", "SimulatedNetwork("])
def test_example_runs(marker: str) -> None:
    example = next(block for block in _blocks("python") if marker in block)
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-c", example], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
