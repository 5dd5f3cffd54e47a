"""The docs for a user's project run as they stand, and list what the code has.

- docs/user-guide.md: every example is a test file (or a script) that passes; a mistake's
  example is followed by the line it prints, which it must print.
- docs/installing.md: the project it describes is built from its blocks, and each of its
  commands is run in order, with the exit status and the output it quotes.
- docs/markers.md: the one list of marker options, checked name by name and default by
  default against the code; no other page may name an option the code lacks.
- README.md: its fixtures and options tables against the plugin's.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.fixtures import getfixturemarker

from perfkit import _settings
from perfkit._defaults import CLOCK_MODES
from perfkit.pytest_plugin import _asyncio, _fixtures
from perfkit.pytest_plugin._markers import MARKERS, NETWORK_OPTIONS, SIM_OPTIONS, SLO_WORKERS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
GUIDE = DOCS / "user-guide.md"
INSTALLING = DOCS / "installing.md"
MARKERS_DOC = DOCS / "markers.md"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

INI = (
    "[pytest]\nfilterwarnings = error\nasyncio_mode = auto\n"
    "asyncio_default_fixture_loop_scope = function\nasyncio_default_test_loop_scope = function\n"
)
DEAD_PORT = "http://127.0.0.1:9"
"""Where an SDK client without the simulator is sent in these runs (ANTHROPIC_BASE_URL):
a refused loopback connection, never the internet."""


@dataclasses.dataclass(frozen=True)
class Block:
    language: str
    code: str
    heading: str
    output: str | None = None
    """The ``text`` block right after this one: what running it prints."""


def blocks(path: Path) -> list[Block]:
    """A document's fenced blocks in order, each with its section and, when a ``text``
    block follows it directly, that block as its output."""
    text = path.read_text()
    found: list[Block] = []
    heading = ""
    for match in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```\n?", text, re.M | re.S):
        if match.group(1):
            heading = match.group(1).lstrip("# ")
            continue
        language, code = match.group(2), match.group(3)
        follows = text[: match.start()].rstrip().endswith("```")
        if language == "text" and follows and found and found[-1].output is None:
            found[-1] = dataclasses.replace(found[-1], output=code)
        else:
            found.append(Block(language, code, heading))
    return found


def printed(output: str, quoted: str) -> list[str]:
    """The quoted lines that the output does not contain (spacing aside)."""
    shown = " ".join(output.split())
    return [line for line in quoted.splitlines() if " ".join(line.split()) not in shown]


def clean_environment() -> dict[str, str]:
    environment = {**os.environ, "COLUMNS": "200"}
    for name in ("CI", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "ANTHROPIC_BASE_URL"):
        environment.pop(name, None)
    return environment


# --- docs/user-guide.md ---------------------------------------------------------------------------


def guide_tests() -> list[Block]:
    return [b for b in blocks(GUIDE) if b.language == "python" and "def test_" in b.code]


def test_every_block_of_the_user_guide_is_python_a_test_or_its_output() -> None:
    kinds = {block.language for block in blocks(GUIDE)}
    assert kinds == {"python"}, kinds
    scripts = [b for b in blocks(GUIDE) if "def test_" not in b.code]
    assert all(block.output is None for block in scripts)
    assert len(guide_tests()) >= 10


def test_the_user_guide_examples_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    examples = [block for block in guide_tests() if block.output is None]
    pytester.makeini(INI)
    for number, block in enumerate(examples):
        pytester.makepyfile(**{f"test_guide_{number}": block.code})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    expected = sum(len(re.findall(r"^(?:async )?def test_", b.code, re.M)) for b in examples)
    outcomes = result.parseoutcomes()
    assert outcomes == {"passed": expected}, result.stdout.str()


@pytest.mark.parametrize(
    "block",
    [b for b in blocks(GUIDE) if b.language == "python" and "def test_" not in b.code],
    ids=lambda block: block.heading,
)
def test_the_user_guide_scripts_run(block: Block) -> None:
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-c", block.code],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(),
    )
    assert completed.returncode == 0, completed.stderr


def test_each_mistake_in_the_user_guide_prints_the_line_quoted_after_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    mistakes = [block for block in guide_tests() if block.output is not None]
    assert len(mistakes) >= 5
    monkeypatch.setenv("ANTHROPIC_BASE_URL", DEAD_PORT)
    pytester.makeini(INI)
    for number, block in enumerate(mistakes):
        pytester.makepyfile(**{f"test_mistake_{number}": block.code})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    output = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == len(mistakes), output
    for block in mistakes:
        assert block.output is not None
        assert not printed(output, block.output), (block.code, output)
    assert "Traceback" not in output


# --- docs/markers.md ------------------------------------------------------------------------------


def marker_tables() -> dict[str, dict[str, list[str]]]:
    """Each marker's section: its table's rows by first cell (backticks stripped)."""
    sections = re.split(r"^## `(\w+)`$", MARKERS_DOC.read_text(), flags=re.M)[1:]
    tables: dict[str, dict[str, list[str]]] = {}
    for name, body in zip(sections[::2], sections[1::2], strict=True):
        rows = [line for line in body.splitlines() if line.startswith("| `")]
        cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
        tables[name] = {row[0].strip("`"): row[1:] for row in cells}
    return tables


def slo_defaults() -> dict[str, Any]:
    from perfkit.load import SLO

    return {field.name: field.default for field in dataclasses.fields(SLO)}


def signature_defaults(target: Any) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(target).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def test_the_markers_page_lists_every_marker_and_only_those() -> None:
    assert set(marker_tables()) == set(MARKERS)


def test_the_markers_page_lists_every_option_of_the_code() -> None:
    from perfkit.load import SLO

    tables = marker_tables()
    assert {mode.strip("'") for mode in tables["perfkit_clock"]} == set(CLOCK_MODES)
    assert set(tables["perfkit_sim"]) == {f"{name}=" for name in SIM_OPTIONS}
    assert set(tables["perfkit_network"]) == {f"{name}=" for name in NETWORK_OPTIONS}
    assert set(tables["perfkit_slo"]) == {f"{name}=" for name in [*SLO.names(), SLO_WORKERS]}


@pytest.mark.parametrize(
    ("marker", "defaults"),
    [
        ("perfkit_sim", lambda: signature_defaults(_simulator())),
        ("perfkit_network", lambda: signature_defaults(_network())),
        ("perfkit_slo", slo_defaults),
    ],
)
def test_the_markers_page_gives_each_options_default_as_the_code_has_it(
    marker: str, defaults: Any
) -> None:
    code = defaults()
    for option, (default, _) in marker_tables()[marker].items():
        name = option.rstrip("=")
        try:
            documented = ast.literal_eval(default.strip("`"))
        except (ValueError, SyntaxError):  # described in words: the code's is no literal
            assert callable(code[name]), (option, default)
        else:
            assert documented == code[name], option
            assert type(documented) is type(code[name]), option


def _simulator() -> Any:
    from perfkit.simulation import AnthropicSimulator

    return AnthropicSimulator


def _network() -> Any:
    from perfkit.simulation import SimulatedNetwork

    return SimulatedNetwork


def documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md")), *sorted((ROOT / "examples").rglob("README.md"))]


def marker_mentions(text: str) -> Iterator[tuple[str, list[str]]]:
    """Every ``perfkit_<marker>(...)`` written out in a text, with the names it passes
    (its own keywords, not those of calls inside it)."""
    for match in re.finditer(
        r"\b(perfkit_(?:clock|sim|network|slo))\(((?:[^()]|\([^()]*\))*)\)", text
    ):
        arguments = re.sub(r"\([^()]*\)", "()", match.group(2))
        yield match.group(1), re.findall(r"(\w+)=", arguments)


def test_no_page_names_a_marker_option_the_code_lacks() -> None:
    from perfkit.load import SLO

    allowed = {
        "perfkit_clock": set(),
        "perfkit_sim": set(SIM_OPTIONS),
        "perfkit_network": set(NETWORK_OPTIONS),
        "perfkit_slo": {*SLO.names(), SLO_WORKERS},
    }
    for path in documents():
        text = path.read_text()
        for block in blocks(path):
            if block.output is not None:  # a mistake shown on purpose, with its error
                text = text.replace(block.code, "")
        for marker, names in marker_mentions(text):
            assert marker in allowed, f"{path.name}: no marker {marker}"
            assert set(names) <= allowed[marker], f"{path.name}: {marker}({names})"


def test_pytest_markers_help_lists_the_same_options() -> None:
    from perfkit.load import SLO

    options = {
        "perfkit_sim": set(SIM_OPTIONS),
        "perfkit_network": set(NETWORK_OPTIONS),
        "perfkit_slo": {*SLO.names(), SLO_WORKERS},
    }
    for marker, names in options.items():
        assert set(re.findall(r"(\w+)=", MARKERS[marker])) == names, marker


def test_the_readme_and_the_guides_point_to_the_markers_page() -> None:
    for path in (README, DOCS / "writing-benchmarks.md", GUIDE, INSTALLING):
        assert "markers.md" in path.read_text(), path.name


# --- README.md: fixtures and options --------------------------------------------------------------


def readme_table(header: str) -> list[list[str]]:
    """The rows of the README table whose header row starts with ``header``."""
    text = README.read_text()
    start = text.index(f"| {header} |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip("|"))])
    return rows


def test_the_readme_lists_every_fixture_of_the_plugin() -> None:
    plugin = {
        name
        for module in (_fixtures, _asyncio)
        for name, value in vars(module).items()
        if getfixturemarker(value) is not None
    }
    listed = {name for row in readme_table("fixture") for name in re.findall(r"`(\w+)`", row[0])}
    assert listed == plugin


class _Recorder:
    """Stands in for pytest's parser and option group: records what perfkit adds."""

    def __init__(self) -> None:
        self.options: list[str] = []
        self.ini: list[str] = []

    def getgroup(self, *args: Any) -> _Recorder:
        return self

    def addoption(self, name: str, **kwargs: Any) -> None:
        self.options.append(name)

    def addini(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.ini.append(name)


def test_the_readme_lists_every_option_and_ini_key() -> None:
    recorded = _Recorder()
    _settings.add_options(recorded)  # type: ignore[arg-type]
    rows = {option_name(row[0]): row[1].strip("`") for row in readme_table("option")}
    assert set(rows) == set(recorded.options)
    assert {ini for ini in rows.values() if ini} == set(recorded.ini)
    for option, ini in rows.items():  # an option and its ini twin share one name
        assert ini in ("", option.removeprefix("--").replace("-", "_")), option


def option_name(cell: str) -> str:
    """The option a README table cell starts with (``--perfkit-clock`` for the clock's)."""
    found = re.match(r"`(--[\w-]+)", cell)
    assert found is not None, cell
    return found.group(1)


# --- installing: extras and the user's project, command by command ------------------------------


def pip_lines() -> list[str]:
    found = []
    for path in (README, INSTALLING):
        for block in blocks(path):
            if block.language == "bash":
                found += [
                    line.split("#")[0].strip()
                    for line in block.code.splitlines()
                    if line.startswith("pip install")
                ]
    return found


def test_every_pip_install_names_an_extra_perfkit_has_or_a_package_there_is() -> None:
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    lines = pip_lines()
    assert any("perfkit[asyncio]" in line for line in lines)
    for line in lines:
        for requirement in shlex.split(line)[2:]:
            if requirement.startswith("-"):
                continue
            name, _, chosen = requirement.partition("[")
            if name == "perfkit":
                assert set(chosen.rstrip("]").split(",")) <= extras, line
            else:
                importlib.metadata.version(name)  # a real package, installed here


def extras_table() -> dict[str, str]:
    text = INSTALLING.read_text()
    rows = re.findall(r"^\| `([\w-]+)` \| (.*?) \|", text, re.M)
    return dict(rows)


def test_the_extras_table_is_pyprojects() -> None:
    table = extras_table()
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(table) == set(extras)
    for extra, requirements in extras.items():
        for requirement in requirements:
            name = re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0]
            if name == "perfkit":  # an extra made of other extras
                others = requirement.partition("[")[2].rstrip("]").split(",")
                assert all(f"`{other}`" in table[extra] for other in others), extra
            else:
                assert name in table[extra], (extra, name)


def installing_project(directory: Path) -> None:
    """The project docs/installing.md describes, written from its blocks."""
    (directory / "pyproject.toml").write_text(
        next(block.code for block in blocks(INSTALLING) if block.language == "toml")
    )
    for block in blocks(INSTALLING):
        first = block.code.splitlines()[0]
        if block.language == "python" and first.startswith("# "):
            path = directory / first.removeprefix("# ")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code)


def commands(path: Path) -> list[tuple[str, int, str | None]]:
    """Each ``pytest`` command of a page's bash blocks: the command, the exit status its
    comment states (0 when it states none), and the output quoted after its block."""
    found = []
    for block in blocks(path):
        if block.language != "bash":
            continue
        for line in block.code.splitlines():
            if line.startswith("pip install"):
                continue  # checked against the extras above: these tests stay offline
            command, _, comment = line.partition("#")
            assert command.startswith("pytest "), f"a command the test cannot run: {line}"
            status = re.search(r"exits (\d+)", comment)
            found.append((command.strip(), int(status.group(1)) if status else 0, block.output))
    return found


def workflow_commands() -> list[str]:
    import yaml

    workflow = yaml.safe_load(next(b.code for b in blocks(INSTALLING) if b.language == "yaml"))
    steps = workflow["jobs"]["benchmarks"]["steps"]
    return [step["run"] for step in steps if step.get("run", "").startswith("pytest")]


def run_command(
    project: Path, command: str, **environment: str
) -> subprocess.CompletedProcess[str]:
    arguments = shlex.split(command)[1:]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *arguments],
        cwd=project,
        env={**clean_environment(), **environment},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # eight pytest runs of a small project, two of them on pytest-xdist workers
def test_the_installing_page_runs_command_by_command(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    installing_project(project)
    steps = commands(INSTALLING)
    assert [command for command, _, _ in steps][:2] == [
        "pytest benchmarks",
        "pytest benchmarks --perfkit-create-baseline",
    ]
    for command, status, quoted in steps:
        done = run_command(project, command)
        output = (done.stdout + done.stderr).replace(str(project), "/home/you/project")
        assert done.returncode == status, f"{command}\n{output}"
        if quoted is not None:
            assert not printed(output, quoted), f"{command}\n{output}"
    assert (project / "benchmarks" / "baseline.json").is_file()
    for command in workflow_commands():  # the CI job's, with CI set as CI services do
        done = run_command(project, command, CI="true")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "gate passed against benchmarks/baseline.json" in done.stdout


def test_the_installing_page_runs_the_first_baseline_a_refresh_and_xdist() -> None:
    assert {command for command, _, _ in commands(INSTALLING)} >= {
        "pytest benchmarks --perfkit-create-baseline",
        "pytest benchmarks --perfkit-update-baseline",
        "pytest benchmarks -n 2",
    }
    assert workflow_commands() == ["pytest benchmarks"]


def test_the_installing_pages_workflow_passes_actionlint(tmp_path: Path) -> None:
    beside = Path(sys.executable).parent / "actionlint"
    binary = str(beside) if beside.is_file() else shutil.which("actionlint")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(
                "actionlint is not installed; the workflow check may not be skipped under CI"
            )
        pytest.skip('actionlint is not installed (pip install -e ".[lint]")')
    workflow = tmp_path / ".github" / "workflows" / "benchmarks.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(next(b.code for b in blocks(INSTALLING) if b.language == "yaml"))
    done = subprocess.run(
        [binary, "-no-color", str(workflow)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
