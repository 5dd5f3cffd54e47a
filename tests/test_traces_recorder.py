"""The trace recorder and the trace file format (perfkit.traces)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfkit.traces import Trace, TraceFormatError, read_traces


def _trace(**changes: object) -> Trace:
    values: dict[str, object] = {
        "at": 1_700_000_000.25,
        "model": "claude-sonnet-4-5",
        "status": 200,
        "stream": True,
        "headers_s": 0.1,
        "complete_s": 0.9,
        "ttft_s": 0.3,
        "gaps_s": (0.2, 0.4),
        "input_tokens": 10,
        "cache_creation_input_tokens": 2,
        "cache_read_input_tokens": 3,
        "output_tokens": 4,
        "request_id": "req_1",
    }
    values.update(changes)
    return Trace(**values)  # type: ignore[arg-type]


def test_a_trace_round_trips_through_a_file_and_unknown_keys_are_ignored(tmp_path: Path) -> None:
    trace = _trace()
    record = json.loads(trace.to_json())
    assert list(record) == [
        "v", "at", "model", "status", "stream", "headers_s", "complete_s", "ttft_s", "gaps_s",
        "retries", "request_id", "error", "input_tokens", "cache_creation_input_tokens",
        "cache_read_input_tokens", "output_tokens",
    ]  # fmt: skip
    path = tmp_path / "traces.jsonl"
    path.write_text(trace.to_json() + "\n\n" + json.dumps({**record, "later": [1]}) + "\n")
    assert read_traces(path) == [trace, trace]


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("not json", "Expecting value"),
        ("[1]", "expected a JSON object"),
        ('{"v": 2}', "v is 2"),
        (json.dumps({**json.loads(_trace().to_json()), "ttft_s": -1}), "ttft_s is -1"),
        (json.dumps({**json.loads(_trace().to_json()), "status": "200"}), "status is '200'"),
        (json.dumps({**json.loads(_trace().to_json()), "gaps_s": [0.1, None]}), "gaps_s is None"),
        (json.dumps({**json.loads(_trace().to_json()), "stream": 1}), "stream is 1"),
    ],
)
def test_a_line_that_is_not_a_trace_is_an_error_naming_the_line(
    tmp_path: Path, line: str, named: str
) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text(_trace().to_json() + "\n" + line + "\n")
    with pytest.raises(TraceFormatError, match=rf"traces\.jsonl, line 2: not a trace: .*{named}"):
        read_traces(path)
