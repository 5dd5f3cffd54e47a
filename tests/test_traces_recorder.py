"""The trace recorder and the trace file format (perfkit.traces)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gzip
import json
import re
import ssl
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from perfkit import RealClock, VirtualClock
from perfkit.simulation import (
    AnthropicSimulator,
    Fault,
    LLMLatency,
    Reply,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)
from perfkit.traces import Trace, TraceFormatError, TraceRecorder, _recorder, read_traces


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


# --- the recorder, through the real SDK against the simulator on the virtual clock ----------

LATENCY = LLMLatency(
    connect=0.1, ttft=0.5, prefill_per_token=0.001, cache_read_per_token=0.0001, per_token=0.02
)
TLS = ssl.create_default_context()
SECRET_KEY = "sk-ant-api03-SECRET-canary-key"
PROMPT = "PROMPT-CANARY please answer"
MODEL = "claude-sonnet-4-5"


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator(latency=LATENCY, clock=clock) as simulator:
        yield simulator


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "traces.jsonl"


@pytest.fixture
def recorder(path: Path, clock: VirtualClock) -> Iterator[TraceRecorder]:
    with TraceRecorder(path, clock=clock) as trace_recorder:
        yield trace_recorder


def sync_sdk(recorder: TraceRecorder, **options: Any) -> anthropic.Anthropic:
    options.setdefault("max_retries", 0)
    return anthropic.Anthropic(
        api_key=SECRET_KEY, http_client=recorder.http_client(verify=TLS), **options
    )


def async_sdk(recorder: TraceRecorder, **options: Any) -> anthropic.AsyncAnthropic:
    options.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(
        api_key=SECRET_KEY, http_client=recorder.async_http_client(verify=TLS), **options
    )


def ask(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": PROMPT}],
        **extra,
    }


def expected_ttft(usage: Any) -> float:
    """What LATENCY makes the time to first token of a reply with this usage."""
    prefilled = usage.input_tokens + usage.cache_creation_input_tokens
    seconds = 0.1 + 0.5 + 0.001 * prefilled + 0.0001 * usage.cache_read_input_tokens
    return round(seconds, 6)


def only_trace(path: Path) -> Trace:
    (trace,) = read_traces(path)
    return trace


def check_streamed(trace: Trace, usage: Any, sim: AnthropicSimulator) -> None:
    ttft = expected_ttft(usage)
    assert trace.ok
    assert trace.stream
    assert (trace.status, trace.retries, trace.model) == (200, 0, MODEL)
    assert trace.headers_s == 0.1
    assert trace.ttft_s == ttft
    assert trace.gaps_s == (0.02,) * (usage.output_tokens - 1)
    assert trace.complete_s == round(ttft + 0.02 * (usage.output_tokens - 1), 6)
    assert (trace.input_tokens, trace.output_tokens) == (usage.input_tokens, usage.output_tokens)
    logged = sim.last_request
    assert trace.at == logged.sent_at
    assert logged.first_token_at is not None
    assert trace.ttft_s == round(logged.first_token_at - logged.sent_at, 6)
    assert trace.request_id is not None
    assert trace.request_id.startswith("req_")


def test_a_sync_streamed_create_is_recorded_exactly(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path
) -> None:
    with sync_sdk(recorder) as client:
        stream = client.messages.create(**ask(stream=True))
        events = list(stream)
    usage = events[0].message.usage
    usage.output_tokens = events[-2].usage.output_tokens  # message_delta's final count
    check_streamed(only_trace(path), usage, sim)


def test_a_sync_message_stream_is_recorded_exactly(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path
) -> None:
    with sync_sdk(recorder) as client, client.messages.stream(**ask()) as stream:
        message = stream.get_final_message()
    check_streamed(only_trace(path), message.usage, sim)


def test_an_async_message_stream_is_recorded_exactly(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path, clock: VirtualClock
) -> None:
    async def main() -> anthropic.types.Message:
        async with async_sdk(recorder) as client, client.messages.stream(**ask()) as stream:
            return await stream.get_final_message()

    message = clock.run(main())
    check_streamed(only_trace(path), message.usage, sim)


def test_an_async_streamed_create_is_recorded_exactly(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path, clock: VirtualClock
) -> None:
    async def main() -> anthropic.types.Message:
        async with async_sdk(recorder) as client:
            stream = await client.messages.create(**ask(stream=True))
            async for event in stream:
                if event.type == "message_start":
                    usage = event.message.usage
                elif event.type == "message_delta":
                    usage.output_tokens = event.usage.output_tokens
            return usage

    usage = clock.run(main())
    check_streamed(only_trace(path), usage, sim)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_reply_not_streamed_has_its_usage_and_no_ttft(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path, clock: VirtualClock, flavour: str
) -> None:
    if flavour == "sync":
        with sync_sdk(recorder) as client:
            message = client.messages.create(**ask())
    else:

        async def main() -> anthropic.types.Message:
            async with async_sdk(recorder) as client:
                return await client.messages.create(**ask())

        message = clock.run(main())
    trace = only_trace(path)
    total = round(expected_ttft(message.usage) + 0.02 * (message.usage.output_tokens - 1), 6)
    assert (trace.stream, trace.ttft_s, trace.gaps_s) == (False, None, ())
    assert trace.headers_s == trace.complete_s == total  # the whole reply comes at once
    assert (trace.input_tokens, trace.output_tokens) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert trace.request_id == sim.last_request.headers.get("request-id") or trace.request_id


def test_cache_writes_and_reads_are_recorded_with_their_times(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path
) -> None:
    system = [{"type": "text", "text": "rule " * 3000, "cache_control": {"type": "ephemeral"}}]
    usages = []
    with sync_sdk(recorder) as client:
        for _ in range(2):
            with client.messages.stream(**ask(system=system)) as stream:
                usages.append(stream.get_final_message().usage)
    written, read = read_traces(path)
    assert usages[0].cache_creation_input_tokens > 1000
    assert usages[1].cache_read_input_tokens == usages[0].cache_creation_input_tokens
    for trace, usage in zip((written, read), usages, strict=True):
        assert trace.cache_creation_input_tokens == usage.cache_creation_input_tokens
        assert trace.cache_read_input_tokens == usage.cache_read_input_tokens
        assert trace.input_tokens == usage.input_tokens
        assert trace.ttft_s == expected_ttft(usage)
    assert read.ttft_s is not None
    assert written.ttft_s is not None
    assert read.ttft_s < written.ttft_s


FAULTS = [
    pytest.param(Fault.rate_limit(retry_after=1), 429, "rate_limit_error", id="429"),
    pytest.param(Fault.server_error(), 500, "api_error", id="500"),
    pytest.param(Fault.overloaded(), 529, "overloaded_error", id="529"),
]


@pytest.mark.parametrize(("fault", "status", "error"), FAULTS)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_each_retry_attempt_is_its_own_line(
    sim: AnthropicSimulator,
    recorder: TraceRecorder,
    path: Path,
    clock: VirtualClock,
    fault: Fault,
    status: int,
    error: str,
    flavour: str,
) -> None:
    sim.enqueue(fault, fault)

    if flavour == "sync":
        with sync_sdk(recorder, max_retries=2) as client, client.messages.stream(**ask()) as s:
            s.get_final_message()
    else:

        async def main() -> None:
            async with (
                async_sdk(recorder, max_retries=2) as client,
                client.messages.stream(**ask()) as stream,
            ):
                await stream.get_final_message()

        clock.run(main())
    first, second, third = read_traces(path)
    assert [t.retries for t in (first, second, third)] == [0, 1, 2]
    assert [t.status for t in (first, second, third)] == [status, status, 200]
    # The SDK closes a streamed request's error reply unread before it retries: the line
    # names the status; the error type is named where the body was read (next test).
    assert (first.error, second.error, third.error) == (f"HTTP {status}", f"HTTP {status}", None)
    assert first.headers_s == first.complete_s == 0.1
    assert first.ttft_s is None
    assert [t.at for t in (first, second, third)] == [r.sent_at for r in sim.requests]
    assert third.ok
    assert third.ttft_s is not None


@pytest.mark.parametrize(("fault", "status", "error"), FAULTS)
def test_an_error_reply_the_sdk_reads_is_named_by_its_type(
    sim: AnthropicSimulator,
    recorder: TraceRecorder,
    path: Path,
    fault: Fault,
    status: int,
    error: str,
) -> None:
    sim.enqueue(fault, fault, fault)
    with sync_sdk(recorder, max_retries=1) as client:
        with pytest.raises(anthropic.APIStatusError):  # the last attempt's reply is read
            client.messages.create(**ask(stream=True))
        client.messages.create(**ask())  # not streamed: every reply is read
    assert [(t.status, t.error) for t in read_traces(path)] == [
        (status, f"HTTP {status}"),
        (status, error),
        (status, error),
        (200, None),
    ]


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_connection_failure_is_a_line_with_no_status(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path, clock: VirtualClock, flavour: str
) -> None:
    sim.enqueue(Fault.connection_error())
    if flavour == "sync":
        with sync_sdk(recorder) as client, pytest.raises(anthropic.APIConnectionError):
            client.messages.create(**ask())
    else:

        async def main() -> None:
            async with async_sdk(recorder) as client:
                await client.messages.create(**ask())

        with pytest.raises(anthropic.APIConnectionError):
            clock.run(main())
    trace = only_trace(path)
    assert (trace.status, trace.error, trace.request_id) == (0, "ConnectError", None)
    assert trace.headers_s == trace.complete_s == 0.1
    assert not trace.ok


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_an_abandoned_stream_still_writes_what_was_seen(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path, clock: VirtualClock, flavour: str
) -> None:
    sim.enqueue(Reply.text(" ".join(f"word{i}" for i in range(40))))
    if flavour == "sync":
        with sync_sdk(recorder) as client, client.messages.stream(**ask()) as stream:
            for index, _ in enumerate(stream.text_stream):
                if index == 3:
                    break
    else:

        async def main() -> None:
            async with async_sdk(recorder) as client, client.messages.stream(**ask()) as stream:
                index = 0
                async for _ in stream.text_stream:
                    index += 1
                    if index == 4:
                        break

        clock.run(main())
    trace = only_trace(path)
    assert trace.error == "abandoned"
    assert not trace.ok
    assert trace.ttft_s == round(0.1 + 0.5 + 0.001 * trace.input_tokens, 6)
    assert trace.gaps_s == (0.02, 0.02, 0.02)
    assert trace.complete_s == round(trace.ttft_s + 0.06, 6)
    assert trace.input_tokens > 0


def test_a_task_cancelled_mid_stream_writes_its_line(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path, clock: VirtualClock
) -> None:
    sim.enqueue(Reply.text(" ".join(f"word{i}" for i in range(40))))

    async def read_all() -> None:
        async with async_sdk(recorder) as client, client.messages.stream(**ask()) as stream:
            await stream.get_final_message()

    async def main() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read_all(), timeout=0.65)

    clock.run(main())
    trace = only_trace(path)
    assert trace.error in ("CancelledError", "abandoned")
    assert trace.complete_s == 0.65
    assert trace.ttft_s == round(0.1 + 0.5 + 0.001 * trace.input_tokens, 6)


def test_thinking_and_tool_input_are_content_tokens(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path
) -> None:
    sim.enqueue(
        Reply(ThinkingBlock("let me think about it"), TextBlock("answer")),
        Reply(ToolUseBlock("get_weather", {"city": "Paris"})),
    )
    thinking = {"type": "enabled", "budget_tokens": 1024}
    tool = {"name": "get_weather", "input_schema": {"type": "object"}}
    with sync_sdk(recorder) as client:
        with client.messages.stream(**ask(max_tokens=2000, thinking=thinking)) as stream:
            stream.get_final_message()
        with client.messages.stream(**ask(tools=[tool])) as stream:
            stream.get_final_message()
    for trace, logged in zip(read_traces(path), sim.requests, strict=True):
        assert logged.first_token_at is not None
        assert trace.ttft_s == round(logged.first_token_at - logged.sent_at, 6)
        assert trace.ttft_s == round(0.1 + 0.5 + 0.001 * trace.input_tokens, 6)
        assert len(trace.gaps_s) >= 1


def test_other_endpoints_are_not_recorded(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path
) -> None:
    with sync_sdk(recorder) as client:
        client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
        client.models.list()
    assert path.read_text() == ""


def test_nothing_secret_is_recorded(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path
) -> None:
    sim.enqueue(Reply.text("REPLY-CANARY here"), Fault.rate_limit(retry_after=1))
    with sync_sdk(recorder, max_retries=1, default_headers={"x-custom": "HEADER-CANARY"}) as c:
        c.messages.create(**ask())
        with c.messages.stream(**ask(system="SYSTEM-CANARY")) as stream:
            stream.get_final_message()
    text = path.read_text()
    assert len(text.splitlines()) == 3
    for canary in ("SECRET", "CANARY", "x-api-key", "anthropic-version", "stainless"):
        assert canary not in text


# --- the recorder never breaks a request -------------------------------------------------------


def test_a_full_disk_never_breaks_the_request_and_is_logged_once(
    sim: AnthropicSimulator, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    with TraceRecorder("/dev/full", clock=clock) as full:
        with sync_sdk(full) as client:
            for _ in range(3):
                with client.messages.stream(**ask()) as stream:
                    assert stream.get_final_message().content
        assert (full.written, full.dropped) == (0, 3)
    warnings = [r for r in caplog.records if r.name == "perfkit.traces"]
    assert len(warnings) == 1
    assert "/dev/full" in warnings[0].getMessage()
    assert "OSError" in warnings[0].getMessage()


def test_a_closed_recorder_never_breaks_the_request(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path
) -> None:
    with sync_sdk(recorder) as client:
        client.messages.create(**ask())
        recorder.close()
        assert client.messages.create(**ask()).content
    assert (recorder.written, recorder.dropped) == (1, 1)
    assert len(read_traces(path)) == 1


def test_a_line_cut_short_by_a_full_disk_does_not_swallow_the_next(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path
) -> None:
    """A regular file's write(2) that runs out of space writes what fits and says so; the
    next line, once there is space again, must start a line of its own, not end the
    broken one (one unreadable line instead of two lost)."""
    real = recorder._file

    class FullOnce:
        calls = 0

        def write(self, data: bytes) -> int:
            FullOnce.calls += 1
            return real.write(data[: len(data) // 2] if FullOnce.calls == 1 else data)

    recorder._file = FullOnce()  # type: ignore[assignment]
    try:
        with sync_sdk(recorder) as client:
            for _ in range(2):
                client.messages.create(**ask())
    finally:
        recorder._file = real
    assert (recorder.written, recorder.dropped) == (1, 1)
    lines = path.read_bytes().split(b"\n")
    assert lines[2:] == [b""]  # the broken half, then a whole line
    assert Trace.from_json(json.loads(lines[1])).ok


def test_a_failing_recorder_step_never_breaks_the_request(
    sim: AnthropicSimulator,
    recorder: TraceRecorder,
    path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clock: VirtualClock,
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("recorder bug")

    with sync_sdk(recorder) as client:
        for step in ("on_headers", "on_chunk", "finish"):
            with monkeypatch.context() as patch:
                patch.setattr(_recorder._Attempt, step, broken)
                with client.messages.stream(**ask()) as stream:
                    assert stream.get_final_message().content

    async def main() -> None:
        async with async_sdk(recorder) as client:
            assert (await client.messages.create(**ask())).content

    with monkeypatch.context() as patch:
        patch.setattr(_recorder._Attempt, "_read_request", broken)
        clock.run(main())
    assert (recorder.written, recorder.dropped) == (0, 4)
    assert path.read_text() == ""


def test_malformed_events_are_skipped_and_the_line_keeps_the_rest(
    recorder: TraceRecorder, path: Path
) -> None:
    body = (
        b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
        b'{"input_tokens":7,"output_tokens":1}}}\n\n'
        b"event: content_block_delta\ndata: {not json\n\n"
        b"event: content_block_delta\r\ndata: "
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}\r\n\r\n'
        b": a comment\n\nevent: message_delta\ndata: [1]\n\n"
    )

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    transport = recorder.transport(httpx2.MockTransport(handler))
    with httpx2.Client(transport=transport) as client:
        response = client.post("https://x.test/v1/messages", json={"model": "m", "stream": True})
    assert response.content == body
    trace = only_trace(path)
    assert (trace.input_tokens, trace.output_tokens, trace.error) == (7, 1, None)
    assert trace.ttft_s == 0.0


def test_instrument_refuses_what_is_not_an_httpx2_client(recorder: TraceRecorder) -> None:
    with pytest.raises(TypeError, match=r"httpx2\.Client or httpx2\.AsyncClient.*got 'client'"):
        recorder.instrument("client")  # type: ignore[type-var]


def test_a_recorder_wraps_a_transport_once(recorder: TraceRecorder) -> None:
    client = recorder.http_client(verify=TLS)
    transport = client._transport
    assert recorder.instrument(client)._transport is transport
    client.close()


# --- many at once ------------------------------------------------------------------------------


def test_threads_and_tasks_append_whole_lines(
    sim: AnthropicSimulator, recorder: TraceRecorder, path: Path, clock: VirtualClock
) -> None:
    def one_thread(_: int) -> None:
        with sync_sdk(recorder) as client:
            for _ in range(5):
                with client.messages.stream(**ask()) as stream:
                    stream.get_final_message()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one_thread, range(8)))

    async def main() -> None:
        async with async_sdk(recorder) as client:

            async def one() -> None:
                async with client.messages.stream(**ask()) as stream:
                    await stream.get_final_message()

            await asyncio.gather(*(one() for _ in range(40)))

    clock.run(main())
    traces = read_traces(path)
    assert len(traces) == recorder.written == 80
    assert all(trace.ok and trace.gaps_s for trace in traces)


class Chunked(httpx2.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
    b'{"input_tokens":7,"cache_read_input_tokens":3,"output_tokens":1}}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    + b"".join(
        b"event: content_block_delta\ndata: "
        + json.dumps({"type": "content_block_delta", "index": 0, "delta": delta}).encode()
        + b"\n\n"
        for delta in (
            {"type": "thinking_delta", "thinking": "hm"},
            {"type": "signature_delta", "signature": "c2ln"},
            {"type": "text_delta", "text": "a\n\nb"},
            {"type": "input_json_delta", "partial_json": '{"x": '},
        )
    )
    + b'data: {"type":"message_delta","delta":{},"usage":{"output_tokens":5}}\n\n'
    + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("size", [1, 2, 7, len(STREAM)], ids=lambda size: f"{size}-byte chunks")
def test_events_are_found_whatever_the_chunks_and_line_ends(
    tmp_path: Path, line_end: bytes, size: int
) -> None:
    body = STREAM.replace(b"\n", line_end)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    clock = VirtualClock()

    def handler(request: httpx2.Request) -> httpx2.Response:
        clock.advance(0.25)
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Chunked(chunks)
        )

    path = tmp_path / "traces.jsonl"
    with TraceRecorder(path, clock=clock) as recorder:
        client = httpx2.Client(transport=recorder.transport(httpx2.MockTransport(handler)))
        with client, client.stream("POST", "https://x.test/v1/messages", json={}) as response:
            assert response.read() == body
    trace = only_trace(path)
    assert trace.headers_s == trace.ttft_s == trace.complete_s == 0.25
    assert trace.gaps_s == (0.0, 0.0)  # thinking, text and tool input; not the signature
    assert (trace.input_tokens, trace.cache_read_input_tokens, trace.output_tokens) == (7, 3, 5)
    assert trace.error is None


@pytest.mark.parametrize("streamed", [True, False], ids=["event-stream", "json"])
def test_a_body_past_the_limit_costs_its_usage_not_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    monkeypatch.setattr(_recorder, "MAX_JSON_BODY", 64)
    usage = b'"usage":{"input_tokens":7,"output_tokens":5}'
    if streamed:
        content_type = "text/event-stream"
        body = b'event: message_start\ndata: {"type":"message_start","message":{' + usage
        body += b',"content":"' + b"x" * 200  # an event that never ends
    else:
        content_type = "application/json"
        body = b'{"type":"message","content":"' + b"x" * 200 + b'",' + usage + b"}"

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": content_type}, stream=Chunked([body]))

    path = tmp_path / "traces.jsonl"
    with TraceRecorder(path) as recorder:
        client = httpx2.Client(transport=recorder.transport(httpx2.MockTransport(handler)))
        with client:
            assert client.post("https://x.test/v1/messages", json={}).content == body
    if streamed:  # an event growing past the limit: the recorder gives up on this request
        assert (recorder.written, recorder.dropped) == (0, 1)
    else:  # the line is written, without the usage it could not read
        assert (only_trace(path).input_tokens, only_trace(path).output_tokens) == (0, 0)


def test_gaps_can_be_left_out_of_the_lines(
    sim: AnthropicSimulator, path: Path, clock: VirtualClock
) -> None:
    with (
        TraceRecorder(path, clock=clock, gaps=False) as recorder,
        sync_sdk(recorder) as client,
        client.messages.stream(**ask()) as stream,
    ):
        usage = stream.get_final_message().usage
    trace = only_trace(path)
    assert trace.gaps_s == ()
    assert trace.ttft_s == expected_ttft(usage)
    assert trace.complete_s == round(expected_ttft(usage) + 0.02 * (usage.output_tokens - 1), 6)


# --- the docs' examples run as they stand ----------------------------------------------------

CALIBRATION_DOC = Path(__file__).resolve().parent.parent / "docs" / "calibration.md"


def recording_section_blocks(language: str) -> list[str]:
    text = CALIBRATION_DOC.read_text()
    section = text.split("## Recording traces", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def test_the_docs_recording_examples_run_and_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET_KEY)
    examples = recording_section_blocks("python")
    assert len(examples) == 2
    with AnthropicSimulator(clock=RealClock()):
        for number, code in enumerate(examples):
            exec(compile(code, f"docs/calibration.md example {number}", "exec"), {})
    assert capsys.readouterr().out == "end_turn\n"
    traces = read_traces(tmp_path / "traces.jsonl")
    assert [(t.status, t.stream, t.error) for t in traces] == [(200, True, None)] * 2
    assert SECRET_KEY not in (tmp_path / "traces.jsonl").read_text()


def test_the_docs_example_line_is_a_trace() -> None:
    (line,) = recording_section_blocks("json")
    trace = Trace.from_json(json.loads(line))
    assert trace.ok
    assert trace.cache_read_input_tokens == 4096


def brotli_compress(data: bytes) -> bytes:
    brotli = pytest.importorskip("brotli")
    return brotli.compress(data)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("br", brotli_compress)],
)
@pytest.mark.parametrize("streamed", [True, False], ids=["event-stream", "json"])
def test_a_compressed_body_is_read_as_the_sdk_reads_it(
    tmp_path: Path, encoding: str, encode: Any, streamed: bool
) -> None:
    if streamed:
        content_type, plain = "text/event-stream", STREAM
    else:
        content_type = "application/json"
        plain = b'{"type":"message","usage":{"input_tokens":7,"cache_read_input_tokens":3,'
        plain += b'"output_tokens":5}}'
    body = encode(plain)
    chunks = [body[i : i + 5] for i in range(0, len(body), 5)]

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": content_type, "content-encoding": encoding}
        return httpx2.Response(200, headers=headers, stream=Chunked(chunks))

    path = tmp_path / "traces.jsonl"
    with TraceRecorder(path, clock=VirtualClock()) as recorder:
        client = httpx2.Client(transport=recorder.transport(httpx2.MockTransport(handler)))
        with client:
            assert client.post("https://x.test/v1/messages", json={}).content == plain
    trace = only_trace(path)
    assert (trace.input_tokens, trace.cache_read_input_tokens, trace.output_tokens) == (7, 3, 5)
    assert (trace.ttft_s is not None) == streamed
    assert trace.error is None


def test_an_encoding_it_cannot_undo_leaves_the_times_only(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream", "content-encoding": "compress"}
        return httpx2.Response(200, headers=headers, stream=Chunked([b"\x1f\x9d\x90garbage"]))

    path = tmp_path / "traces.jsonl"
    with TraceRecorder(path) as recorder:
        client = httpx2.Client(transport=recorder.transport(httpx2.MockTransport(handler)))
        with client, client.stream("POST", "https://x.test/v1/messages", json={}) as response:
            assert response.read()  # httpx2 passes an unknown encoding through
    trace = only_trace(path)
    assert (trace.status, trace.ttft_s, trace.output_tokens, trace.error) == (200, None, 0, None)
    assert recorder.dropped == 0


def test_every_transport_of_a_client_records_proxies_included(recorder: TraceRecorder) -> None:
    client = recorder.http_client(verify=TLS, proxy="http://127.0.0.1:9")
    transports = [client._transport, *client._mounts.values()]
    assert len(transports) == 2
    assert all(isinstance(t, _recorder._RecordingTransport) for t in transports)
    client.close()


def test_a_recorder_that_cannot_be_made_says_so_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-directory"):
        TraceRecorder(tmp_path / "no-such-directory" / "traces.jsonl")
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        TraceRecorder(tmp_path)
    with pytest.raises(TypeError, match=r"clock must be a perfkit clock .* got 'fast'"):
        TraceRecorder(tmp_path / "traces.jsonl", clock="fast")  # type: ignore[arg-type]


def test_an_event_that_never_ends_costs_time_in_proportion_to_its_bytes(tmp_path: Path) -> None:
    """A hostile or broken server sending one event without its blank line, in small
    chunks: each chunk must cost the recorder its own bytes, not the whole event so far
    (4 MB in 1 KB chunks took 21 s, now about 0.02 s)."""

    def feed(size: int) -> float:
        with TraceRecorder(tmp_path / "traces.jsonl") as recorder:
            request = httpx2.Request("POST", "https://x.test/v1/messages", json={"stream": True})
            attempt = _recorder._Attempt(recorder, request)
            attempt.on_headers(httpx2.Response(200, headers={"content-type": "text/event-stream"}))
            chunk = b"data: " + b"x\r" * 127  # CR line ends too: each chunk ends with one
            start = time.perf_counter()
            for _ in range(size // len(chunk)):
                attempt.on_chunk(chunk)
            return time.perf_counter() - start

    small = min(feed(256 * 1024) for _ in range(3))
    large = min(feed(1024 * 1024) for _ in range(3))
    assert large < 8 * small + 0.02  # four times the bytes: about four times the time
