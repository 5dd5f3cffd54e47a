"""Report and baseline files: build, validate, load and write them (atomically)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from perfkit._errors import BaselineError, ReportWriteError
from perfkit.reporting._figures import fallback_priced, non_finite, require_finite
from perfkit.reporting._gate import Selection
from perfkit.reporting._model import REPORT_SCHEMA

BASELINE_SCHEMA = "perfkit-baseline/1"
BASELINE_FIELDS = ("clock", "rounds", "modeled", "series", "counters", "higher_is_better")
KINDS = {REPORT_SCHEMA: "report", BASELINE_SCHEMA: "baseline"}


@cache
def json_schema() -> dict[str, Any]:
    """The JSON Schema of both files (``perfkit/reporting/schema.json``)."""
    text = resources.files("perfkit.reporting").joinpath("schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def baseline_document(
    benchmarks: Mapping[str, Mapping[str, Any]],
    calibration: Mapping[str, Any],
    *,
    previous: Mapping[str, Any] | None = None,
    selection: Selection | None = None,
) -> dict[str, Any]:
    """A baseline of ``benchmarks``. With a ``previous`` baseline, its benchmarks that
    this run did not measure are kept, unless they no longer exist (see
    :class:`Selection`)."""
    selection = selection or Selection()
    kept: dict[str, Any] = {}
    if previous is not None:
        for nodeid, entry in previous["benchmarks"].items():
            if not selection.vanished(nodeid):
                kept[nodeid] = entry
    for nodeid, entry in benchmarks.items():
        fields = {name: entry[name] for name in BASELINE_FIELDS}
        if "prices" in entry:  # usd made with a price file: the gate compares like with like
            fields["prices"] = entry["prices"]
        guessed = fallback_priced(entry)
        if guessed is not None:  # so are models priced by the fallback row
            fields["fallback_priced"] = guessed
        cpu = entry["cpu"]
        kept[nodeid] = {**fields, "cpu": {"normalized": cpu["normalized"], "spread": cpu["spread"]}}
    return {
        "schema": BASELINE_SCHEMA,
        "calibration": dict(calibration),
        "benchmarks": {nodeid: kept[nodeid] for nodeid in sorted(kept)},
    }


def load(path: Path, kind: str, name: str = "") -> dict[str, Any]:
    """Read and validate a ``"report"`` or ``"baseline"`` file; BaselineError says what is
    wrong with it (missing, not JSON, another kind of file, a field out of shape), naming
    the file as ``name`` (by default its path)."""
    shown = name or str(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise BaselineError(f"{shown}: no such {kind} file") from None
    except OSError as error:
        raise BaselineError(f"{shown}: cannot read the {kind} file: {error.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise BaselineError(f"{shown}: the {kind} file is not valid JSON ({error})") from None
    validate(document, kind, shown)
    return dict(document)


def validate(document: Any, kind: str, source: str) -> None:
    """Check a document against the schema of ``kind``; BaselineError names the problem."""
    found = document.get("schema") if isinstance(document, dict) else None
    if KINDS.get(str(found)) != kind:
        expected = next(schema for schema, name in KINDS.items() if name == kind)
        raise BaselineError(
            f"{source}: not a perfkit {kind} file (its schema is {found!r}; expected {expected!r})"
        )
    schema = {key: value for key, value in json_schema().items() if key != "oneOf"}
    schema["$ref"] = f"#/$defs/{kind}"
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(document)
    )
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "top level"
        raise BaselineError(f"{source}: the {kind} file is corrupt at {where}: {error.message}")
    require_finite(document, f"{source}: the {kind} file is corrupt")


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as stable, readable JSON, all or nothing (a temporary file
    renamed over the target, so an interrupted write never leaves half a file).
    ReportWriteError if it holds NaN or an infinity, which JSON has no spelling for."""
    found = non_finite(document)
    if found is not None:
        location, constant = found
        raise ReportWriteError(
            f"{path}: not written: {location} is {constant}, which JSON cannot hold "
            "(every figure must be a finite number)"
        )
    write_text(path, json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; ReportWriteError names ``path`` (never the
    temporary file) and the system's reason."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportWriteError(
            f"{path}: cannot write: cannot create its directory {error.filename or path.parent}: "
            f"{error.strerror or error}"
        ) from None
    try:
        _replace_atomically(path, text)
    except OSError as error:
        raise ReportWriteError(f"{path}: cannot write: {error.strerror or error}") from None


def _replace_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's file is private; this is not
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
