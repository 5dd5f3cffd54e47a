"""perfkit as a guest in someone else's project: installed, it changes nothing and costs
nothing until a perfkit fixture, marker or option is used."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
HEAVY = ("anthropic", "httpx", "httpx2", "redis", "fakeredis", "jsonschema", "respx", "hdrh")


def startup_script() -> ModuleType:
    """benchmarks/plugin_startup.py, whose project and runs these tests share."""
    path = REPOSITORY / "benchmarks" / "plugin_startup.py"
    spec = importlib.util.spec_from_file_location("plugin_startup", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def trivial_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    startup_script().make_project(tmp_path)
    return tmp_path


def modules_loaded(project: Path, *options: str) -> set[str]:
    out = project / "modules.json"
    startup_script().run(project, *options, modules_out=out)
    return set(json.loads(out.read_text()))


def test_loading_the_plugin_imports_only_perfkits_own_small_modules(
    trivial_project: Path,
) -> None:
    without = startup_script().WITHOUT_PERFKIT
    added = modules_loaded(trivial_project) - modules_loaded(trivial_project, *without)
    assert added, "the plugin did not load at all"
    assert {name.split(".")[0] for name in added} <= set(startup_script().OWN), sorted(added)
    assert {name for name in added if not name.startswith("perfkit")} <= {
        "looptime._internal.plugin"
    }
    assert not [name for name in added if name.split(".")[0] in HEAVY]
    assert "perfkit.simulation" not in added
    assert "perfkit.reporting" not in added


def summary(project: Path, *options: str) -> tuple[int, str]:
    """A run's exit code and its output without timings."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:asyncio", *options],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    text = re.sub(r"in [\d.]+s", "in Ns", done.stdout + done.stderr)
    lines = [line for line in text.splitlines() if not line.startswith(("plugins:", "rootdir"))]
    return done.returncode, "\n".join(lines)


def test_installed_perfkit_changes_no_outcome_or_warning_of_another_project(
    trivial_project: Path,
) -> None:
    (trivial_project / "test_warns.py").write_text(
        "import warnings\n\n\ndef test_warns():\n    warnings.warn('theirs', UserWarning)\n"
    )
    with_perfkit = summary(trivial_project, "-rA")
    without = summary(trivial_project, "-rA", *startup_script().WITHOUT_PERFKIT)
    assert with_perfkit == without
    assert with_perfkit[0] == pytest.ExitCode.TESTS_FAILED  # their own warning, as an error
    assert "3 passed" in with_perfkit[1]


def test_perfkit_does_not_pull_in_pytest_plugins_that_load_into_every_run() -> None:
    requirements = importlib.metadata.requires("perfkit") or []
    unconditional = [r for r in requirements if "extra ==" not in r]
    names = {re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0].lower() for r in unconditional}
    assert not names & {"pytest-asyncio", "pytest-benchmark", "pytest-xdist", "locust"}, names


def test_a_project_without_pytest_asyncio_uses_fixtures_and_perf(trivial_project: Path) -> None:
    """looptime, which gives perfkit its virtual time, ships a pytest plugin that fails
    every fixture when pytest-asyncio is absent; perfkit's plugin unregisters it then."""
    (trivial_project / "test_bench.py").write_text(
        "import anthropic\n\n\n"
        "def ask():\n"
        "    with anthropic.Anthropic(api_key='sim') as client:\n"
        "        client.messages.create(model='claude-sonnet-5', max_tokens=8,\n"
        "                               messages=[{'role': 'user', 'content': 'Hi'}])\n\n\n"
        "def test_bench(perf, anthropic_sim, tmp_path):\n"
        "    perf(ask, rounds=2)\n"
        "    assert perf.result.counters['api_requests'] == 2\n"
    )
    code, output = summary(trivial_project)
    assert code == pytest.ExitCode.OK, output
    assert "4 passed" in output
