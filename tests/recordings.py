"""Responses recorded from the real Anthropic API, and a structural comparison with them.

The recordings live in ``tests/data/anthropic_recordings`` (their README names each one's
source). :func:`compare_streams` and :func:`compare_bodies` say how a response differs from
a recording in structure, not in content: the order of events, the keys of each object, the
types of their values and the prefixes of ids. Each returns readable differences, none when
the two agree::

    assert compare_streams(parse_sse(body), load_stream("sdk_basic_response.txt")) == []
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).parent / "data" / "anthropic_recordings"

# Values that are data rather than structure: only their type is compared.
OPAQUE_KEYS = frozenset({"input", "text", "thinking", "signature", "partial_json", "data"})
# Strings whose prefix (up to the first "_") names what they identify: msg_, toolu_, ...
ID_KEYS = frozenset({"id", "tool_use_id", "request_id", "tool_id"})

RATELIMIT_HEADERS = tuple(
    f"anthropic-ratelimit-{kind}-{field}"
    for kind in ("requests", "input-tokens", "output-tokens", "tokens")
    for field in ("limit", "remaining", "reset")
)
"""The rate-limit headers a recorded 200 carries (sdk_runner_ratelimit_exchange.json)."""

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@dataclass(frozen=True)
class Event:
    """One server-sent event: its name and its JSON data."""

    name: str
    data: dict[str, Any]


def parse_sse(stream: str | bytes) -> list[Event]:
    """The events of a server-sent event stream, as the SDK's decoder reads them (blank lines
    end an event; a JSON value may carry trailing spaces, as recorded streams do)."""
    text = stream.decode() if isinstance(stream, bytes) else stream
    events = []
    for frame in re.split(r"\r?\n\r?\n", text):
        fields: dict[str, str] = {}
        for line in frame.splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "data" in fields:
            events.append(Event(fields.get("event", "message"), json.loads(fields["data"])))
    return events


def load_stream(name: str) -> list[Event]:
    """A recorded event stream (a ``.txt`` file of the corpus)."""
    return parse_sse((RECORDINGS / name).read_text(encoding="utf-8"))


def load_json(name: str) -> Any:
    """A recorded JSON file of the corpus: a message body, or an SDK snapshot of exchanges."""
    return json.loads((RECORDINGS / name).read_text(encoding="utf-8"))


def exchange(name: str, index: int) -> dict[str, Any]:
    """The ``index``-th recorded exchange (request and response) of an SDK snapshot file."""
    exchanges: list[dict[str, Any]] = load_json(name)
    return exchanges[index]


def exchange_stream(name: str, index: int) -> list[Event]:
    """The event stream that answered the ``index``-th exchange of an SDK snapshot file."""
    body: str = exchange(name, index)["response"]["body"]
    return parse_sse(body)


# --- structure ---------------------------------------------------------------------------------


def compare_bodies(actual: Any, recorded: Any, *, allow_extra_keys: bool = False) -> list[str]:
    """How JSON value ``actual`` differs from ``recorded`` in structure: keys missing (or,
    unless ``allow_extra_keys``, added), value types, the types of content blocks, id prefixes.
    ``allow_extra_keys`` is for recordings older than a field the API has since added."""
    differences: list[str] = []
    _diff(actual, recorded, "$", allow_extra_keys, differences)
    return differences


def compare_streams(
    actual: Sequence[Event], recorded: Sequence[Event], *, allow_extra_keys: bool = False
) -> list[str]:
    """How event stream ``actual`` differs from ``recorded`` in structure: the order of events
    (runs of deltas of one kind count once), where ``ping`` comes, the empty first
    ``input_json_delta`` of each tool block, and the structure of each kind of event."""
    differences = []
    got, want = stream_pattern(actual), stream_pattern(recorded)
    if got != want:
        differences.append(f"event order: {' '.join(got)}\n   recorded: {' '.join(want)}")
    differences += _ping_differences(actual, recorded)
    differences += _first_json_delta_differences(actual)
    recorded_kinds = _first_of_each_kind(recorded)
    for kind, event in _first_of_each_kind(actual).items():
        if kind in recorded_kinds:
            _diff(event.data, recorded_kinds[kind].data, kind, allow_extra_keys, differences)
    return differences


def stream_pattern(events: Iterable[Event]) -> list[str]:
    """The order of events, pings left out, each run of deltas of one kind as one ``kind+``,
    and the first input_json_delta of a block apart (``input_json_delta("")`` when empty)."""
    pattern: list[str] = []
    started: set[int] = set()
    for event in events:
        if event.name == "ping":
            continue
        token = _kind(event)
        if event.name != "content_block_delta":
            pattern.append(token)
        elif token == "input_json_delta" and event.data["index"] not in started:
            started.add(event.data["index"])
            empty = event.data["delta"].get("partial_json") == ""
            pattern.append('input_json_delta("")' if empty else "input_json_delta(json)")
        elif not pattern or pattern[-1] != token + "+":
            pattern.append(token + "+")
    return pattern


def ratelimit_header_differences(headers: Mapping[str, str]) -> list[str]:
    """How ``headers`` differ from the recorded set of ``anthropic-ratelimit-*`` headers:
    all twelve present, limits and remaining counts as integers, resets in RFC 3339 (UTC)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    differences = []
    for name in RATELIMIT_HEADERS:
        value = lowered.get(name)
        if value is None:
            differences.append(f"header {name}: missing")
        elif name.endswith("-reset"):
            if not RFC3339.match(value):
                differences.append(f"header {name}: {value!r} is not an RFC 3339 UTC time")
        elif not value.isdigit():
            differences.append(f"header {name}: {value!r} is not a whole number")
    extra = sorted(
        name
        for name in lowered
        if name.startswith("anthropic-ratelimit-") and name not in RATELIMIT_HEADERS
    )
    differences += [f"header {name}: not in the recording" for name in extra]
    return differences


def _kind(event: Event) -> str:
    if event.name == "content_block_start":
        return f"content_block_start({event.data['content_block']['type']})"
    if event.name == "content_block_delta":
        return str(event.data["delta"]["type"])
    return event.name


def _first_of_each_kind(events: Iterable[Event]) -> dict[str, Event]:
    kinds: dict[str, Event] = {}
    for event in events:
        kinds.setdefault(_kind(event), event)
    return kinds


def _ping_differences(actual: Sequence[Event], recorded: Sequence[Event]) -> list[str]:
    """Every recording that has a ping has it after the first content_block_start and
    before that block ends (the SDK's recordings right after it); never before."""
    pinged = any(event.name == "ping" for event in recorded)
    names = [event.name for event in actual]
    if not pinged:
        return []
    if "ping" not in names:
        return ["ping: none, where the recording has one"]
    first_ping = names.index("ping")
    first_start = names.index("content_block_start") if "content_block_start" in names else None
    if first_start is None or first_ping < first_start:
        return [f"ping: event {first_ping} comes before the first content_block_start"]
    first_stop = names.index("content_block_stop") if "content_block_stop" in names else len(names)
    if first_ping > first_stop:
        return [f"ping: event {first_ping} comes after the first block ends"]
    return []


def _first_json_delta_differences(events: Sequence[Event]) -> list[str]:
    """The recordings open every tool block's input with an empty input_json_delta."""
    differences = []
    seen: set[int] = set()
    for event in events:
        if event.name != "content_block_delta" or event.data["delta"]["type"] != (
            "input_json_delta"
        ):
            continue
        index = event.data["index"]
        if index not in seen:
            seen.add(index)
            first = event.data["delta"]["partial_json"]
            if first != "":
                differences.append(
                    f"block {index}: first input_json_delta is {first!r}, recorded ones are ''"
                )
    return differences


def _diff(actual: Any, recorded: Any, path: str, allow_extra: bool, out: list[str]) -> None:
    if isinstance(recorded, dict):
        if not isinstance(actual, dict):
            out.append(f"{path}: {_type(actual)} where the recording has an object")
            return
        for key, value in recorded.items():
            if key not in actual:
                out.append(f"{path}.{key}: missing (recorded: {_short(value)})")
        if not allow_extra:
            out += [
                f"{path}.{key}: not in the recording ({_short(actual[key])})"
                for key in actual
                if key not in recorded
            ]
        for key in recorded.keys() & actual.keys():
            where = f"{path}.{key}"
            if key in OPAQUE_KEYS:
                if _type(actual[key]) != _type(recorded[key]):
                    out.append(f"{where}: {_type(actual[key])}, recorded {_type(recorded[key])}")
            elif key in ID_KEYS and isinstance(recorded[key], str):
                _diff_id(actual[key], recorded[key], where, out)
            else:
                _diff(actual[key], recorded[key], where, allow_extra, out)
    elif isinstance(recorded, list):
        if not isinstance(actual, list):
            out.append(f"{path}: {_type(actual)} where the recording has a list")
            return
        got, want = _block_types(actual), _block_types(recorded)
        if got != want:
            out.append(f"{path}: blocks {got}, recorded {want}")
        for index, (item, recorded_item) in enumerate(zip(actual, recorded, strict=False)):
            _diff(item, recorded_item, f"{path}[{index}]", allow_extra, out)
    elif _type(actual) != _type(recorded):
        out.append(f"{path}: {_type(actual)} {_short(actual)}, recorded {_type(recorded)}")


def _diff_id(actual: Any, recorded: str, path: str, out: list[str]) -> None:
    if not isinstance(actual, str):
        out.append(f"{path}: {_type(actual)}, recorded an id {recorded!r}")
    elif _prefix(actual) != _prefix(recorded):
        out.append(f"{path}: {actual!r} has not the recorded prefix {_prefix(recorded)!r}")


def _prefix(identifier: str) -> str:
    return identifier.split("_", 1)[0] + "_" if "_" in identifier else identifier


def _block_types(items: list[Any]) -> list[str] | None:
    if items and all(isinstance(item, dict) and "type" in item for item in items):
        return [str(item["type"]) for item in items]
    return None


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object" if isinstance(value, dict) else type(value).__name__


def _short(value: Any) -> str:
    shown = json.dumps(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
