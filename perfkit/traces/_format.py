"""The trace file: one JSON object per request, one request per line (format version 1)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from os import PathLike
from typing import Any

FORMAT_VERSION = 1

_INT_FIELDS = (
    "status",
    "retries",
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


MAX_LINE_CHARS = 64 * 2**20
"""The longest line read as a trace: a reply of a million output tokens, its gaps included,
takes about 10 MB."""


class TraceFormatError(ValueError):
    """A trace file line that is not a version-1 trace; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Trace:
    """One request as the client saw it: its times (seconds from sending it) and its usage.

    ``ttft_s`` is None when the reply was not streamed or no content token arrived;
    ``gaps_s`` are the intervals between successive content deltas (streamed only).
    Nothing of the prompt, the reply or the request's headers is kept.

        >>> Trace(at=0.0, model="m", status=200, stream=False, headers_s=0.1, complete_s=0.2).ok
        True
    """

    at: float
    model: str
    status: int
    stream: bool
    headers_s: float
    complete_s: float
    ttft_s: float | None = None
    gaps_s: tuple[float, ...] = ()
    retries: int = 0
    request_id: str | None = None
    error: str | None = None
    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    v: int = field(default=FORMAT_VERSION)

    @property
    def ok(self) -> bool:
        """Whether the request succeeded: a 2xx status and no error seen on the way."""
        return 200 <= self.status < 300 and self.error is None

    def to_json(self) -> str:
        """The trace as one line of JSON (no newline), keys in a stable order."""
        record = {"v": self.v, **{name: getattr(self, name) for name in _FIELDS}}
        record["gaps_s"] = list(self.gaps_s)
        return json.dumps(record, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, record: Any) -> Trace:
        """A trace from one decoded JSON object; unknown keys are ignored, bad values refused."""
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        if record.get("v") != FORMAT_VERSION:
            raise ValueError(f"v is {record.get('v')!r}; only version {FORMAT_VERSION} is read")
        values: dict[str, Any] = {"v": FORMAT_VERSION}
        values["model"] = _string(record, "model")
        values["stream"] = _boolean(record, "stream")
        for name in ("at", "headers_s", "complete_s"):
            values[name] = _number(record, name)
        ttft = record.get("ttft_s")
        values["ttft_s"] = None if ttft is None else _number(record, "ttft_s")
        for name in _INT_FIELDS:
            values[name] = _integer(record, name, required=name == "status")
        for name in ("request_id", "error"):
            value = record.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} is {value!r}; expected a string or null")
            values[name] = value
        gaps = record.get("gaps_s", [])
        if not isinstance(gaps, list):
            raise ValueError(f"gaps_s is {gaps!r}; expected a list of seconds")
        values["gaps_s"] = tuple(_seconds("gaps_s", gap) for gap in gaps)
        return cls(**values)


_FIELDS = tuple(item.name for item in fields(Trace) if item.name != "v")


def read_traces(path: str | PathLike[str]) -> list[Trace]:
    """Every trace in a trace file, in order; blank lines are skipped.

    Raises TraceFormatError naming the file and line of the first line that is not a trace.
    """
    return list(iter_traces(path))


def iter_traces(path: str | PathLike[str]) -> Iterator[Trace]:
    """The traces of a trace file one by one (for files too large to hold at once)."""
    with open(path, encoding="utf-8") as lines:
        number = 0
        # A line is read up to its limit: a file that is not a trace file may have no newline.
        while line := lines.readline(MAX_LINE_CHARS + 1):
            number += 1
            if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                raise TraceFormatError(
                    f"{path}, line {number}: not a trace: longer than {MAX_LINE_CHARS:,} characters"
                )
            if not line.strip():
                continue
            try:
                yield Trace.from_json(json.loads(line))
            except RecursionError:
                raise TraceFormatError(
                    f"{path}, line {number}: not a trace: nested too deeply"
                ) from None
            except ValueError as error:  # json.JSONDecodeError is a ValueError
                raise TraceFormatError(f"{path}, line {number}: not a trace: {error}") from error


def _string(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} is {value!r}; expected a string")
    return value


def _boolean(record: dict[str, Any], name: str) -> bool:
    value = record.get(name)
    if not isinstance(value, bool):
        raise ValueError(f"{name} is {value!r}; expected true or false")
    return value


def _number(record: dict[str, Any], name: str) -> float:
    return _seconds(name, record.get(name))


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, int) and value > sys.float_info.max:  # math.isfinite would overflow
        raise ValueError(f"{name} is an integer of {len(str(value))} digits; expected seconds")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} is {value!r}; expected a finite number of seconds")
    if value < 0:
        raise ValueError(f"{name} is {value!r}; expected seconds >= 0")
    return float(value)


def _integer(record: dict[str, Any], name: str, *, required: bool) -> int:
    value = record.get(name, None if required else 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} is {value!r}; expected an integer >= 0")
    return value
