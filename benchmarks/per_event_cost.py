"""What the simulator costs per streamed event: the wall time of a streamed reply served by
:class:`~perfkit.AnthropicSimulator`, against what the anthropic SDK itself spends parsing
the same bytes from a plain mock transport, measured side by side in one run.

    python benchmarks/per_event_cost.py [--rounds 31] [--requests 1] [--tokens 400]
    python benchmarks/per_event_cost.py --profile sync      # where the simulator's time goes

The bytes are captured once from the simulator (a reply of ``--tokens`` tokens); the SDK
side replays them, chunk for chunk, through ``httpx2.MockTransport`` on the SDK's default
client. The simulator side sends the same request through the simulator, with the
streaming benchmark's latency (500 ms to the first token, 20 ms per token after it) on a
:class:`~perfkit.VirtualClock`, and with no latency on the real clock. Each path reads the
reply as an agent does (``messages.create(stream=True)``) and as ``messages.stream()``
does; sync and async. A round times every path once, in a rotating order; the figure of a
path is its best round (the least disturbed by other processes on a shared machine), per
event on the wire (wall time / SSE events). The median round is shown beside it.

Prints each path's cost per event and its ratio to the SDK's own cost of the same reading
(the goal: at most ``--bound``, 1.5x); the exit status is 1 if a ratio on the virtual
clock is above it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2

from perfkit import AnthropicSimulator, Clock, LLMLatency, RealClock, Reply, VirtualClock

LATENCY = LLMLatency(ttft=0.500, per_token=0.020)
"""The streaming benchmark's latency (benchmarks/test_streaming.py)."""
BASE_URL = "https://api.anthropic.com"
READINGS = ("create", "stream")
"""``messages.create(stream=True)`` (raw events, what the agents use) and
``messages.stream()`` (the SDK's accumulating helper)."""
MODES = ("sync", "async")
SIDES = ("sdk", "virtual", "real")
"""The SDK on a mock transport; the simulator on a virtual clock with latency; the
simulator on the real clock with no latency."""
GATED = ("virtual",)
"""The sides held to the bound: the simulator as the benchmarks and tests run it."""


def request_body(tokens: int) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-5",
        "max_tokens": tokens + 100,
        "messages": [{"role": "user", "content": "Write me a story"}],
    }


@dataclass(frozen=True)
class Recording:
    """The simulator's answer to the request, as it arrived: headers and chunks."""

    headers: list[tuple[str, str]]
    chunks: list[bytes]

    @property
    def events(self) -> int:
        return b"".join(self.chunks).count(b"\nevent: ") + 1


def record(tokens: int) -> Recording:
    """The chunks the simulator sends for one streamed reply of ``tokens`` tokens."""
    with AnthropicSimulator(clock=VirtualClock()) as sim:
        sim.respond_with(Reply.of_tokens(tokens))
        with (
            httpx2.Client() as client,
            client.stream(
                "POST",
                f"{BASE_URL}/v1/messages",
                json={**request_body(tokens), "stream": True},
                headers={"x-api-key": "sim", "anthropic-version": "2023-06-01"},
            ) as response,
        ):
            chunks = list(response.iter_raw())
            headers = [
                (name, value)
                for name, value in response.headers.items()
                if name.lower() != "content-length"
            ]
    assert chunks[0].startswith(b"event: message_start"), chunks[0][:80]
    return Recording(headers, chunks)


class Replayed(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """The recorded chunks, one after the other, as a mock transport's response body."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def mock_transport(recording: Recording) -> httpx2.MockTransport:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=recording.headers, stream=Replayed(recording.chunks))

    return httpx2.MockTransport(handler)


def read_sync(client: anthropic.Anthropic, reading: str, body: dict[str, Any]) -> None:
    if reading == "create":
        with client.messages.create(**body, stream=True) as events:
            for _ in events:
                pass
    else:
        with client.messages.stream(**body) as stream:
            for _ in stream:
                pass


async def read_async(client: anthropic.AsyncAnthropic, reading: str, body: dict[str, Any]) -> None:
    if reading == "create":
        async with await client.messages.create(**body, stream=True) as events:
            async for _ in events:
                pass
    else:
        async with client.messages.stream(**body) as stream:
            async for _ in stream:
                pass


@dataclass(frozen=True)
class Path:
    """One way of reading the reply: which client, in which mode, served by what."""

    side: str
    mode: str
    reading: str

    @property
    def name(self) -> str:
        return f"{self.mode} {self.reading} {self.side}"


class Bench:
    """Times the paths on one recording: each call returns seconds for ``requests`` replies."""

    def __init__(self, tokens: int, requests: int) -> None:
        self.tokens = tokens
        self.requests = requests
        self.body = request_body(tokens)
        self.recording = record(tokens)

    def seconds(self, path: Path) -> float:
        """Wall seconds of ``requests`` replies read along ``path`` (client set-up apart)."""
        gc.collect()
        if path.side == "sdk":
            return self._sdk(path)
        clock: Clock = VirtualClock() if path.side == "virtual" else RealClock()
        latency = LATENCY if path.side == "virtual" else LLMLatency()
        with AnthropicSimulator(clock=clock, latency=latency) as sim:
            sim.respond_with(Reply.of_tokens(self.tokens))
            if path.mode == "sync":
                return self._time_sync(anthropic.DefaultHttpxClient(), path.reading)
            return clock.run(self._time_async(anthropic.DefaultAsyncHttpxClient(), path.reading))

    def _sdk(self, path: Path) -> float:
        transport = mock_transport(self.recording)
        if path.mode == "sync":
            return self._time_sync(anthropic.DefaultHttpxClient(transport=transport), path.reading)
        http_client = anthropic.DefaultAsyncHttpxClient(transport=transport)
        return asyncio.run(self._time_async(http_client, path.reading))

    def _time_sync(self, http_client: httpx2.Client, reading: str) -> float:
        with anthropic.Anthropic(api_key="sim", http_client=http_client, max_retries=0) as client:
            read_sync(client, reading, self.body)  # warm: the client's first request
            start = time.perf_counter()
            for _ in range(self.requests):
                read_sync(client, reading, self.body)
            return time.perf_counter() - start

    async def _time_async(self, http_client: httpx2.AsyncClient, reading: str) -> float:
        async with anthropic.AsyncAnthropic(
            api_key="sim", http_client=http_client, max_retries=0
        ) as client:
            await read_async(client, reading, self.body)
            start = time.perf_counter()
            for _ in range(self.requests):
                await read_async(client, reading, self.body)
            return time.perf_counter() - start

    def per_event(self, seconds: float) -> float:
        return seconds / (self.requests * self.recording.events)


def measure(bench: Bench, paths: Sequence[Path], rounds: int) -> dict[Path, list[float]]:
    """Seconds per event of each path in each round; a round runs every path once, the
    order rotating from round to round so that no path always follows the same one."""
    found: dict[Path, list[float]] = {path: [] for path in paths}
    for round_number in range(rounds):
        shift = round_number % len(paths)
        for path in [*paths[shift:], *paths[:shift]]:
            found[path].append(bench.per_event(bench.seconds(path)))
    return found


def report(found: dict[Path, list[float]], bound: float, rounds: int) -> list[str]:
    """Print each path's cost and ratio; returns the gated ratios above ``bound``."""
    above = []
    print(f"µs per streamed event, best and median of {rounds} round(s), and x the SDK's own:")
    for path, values in found.items():
        best, median = min(values), statistics.median(values)
        line = f"  {path.name:<22} {best * 1e6:7.1f} {median * 1e6:7.1f}"
        if path.side != "sdk":
            own = found[Path("sdk", path.mode, path.reading)]
            ratio = best / min(own)
            line += f"  {ratio:5.2f}x {median / statistics.median(own):5.2f}x"
            if path.side in GATED and ratio > bound:
                above.append(f"{path.name}: {ratio:.2f}x")
                line += f"  ABOVE {bound}x"
        print(line)
    return above


def profile(bench: Bench, path: Path, top: int) -> None:
    """cProfile of one path's replies, the functions with the most time of their own."""
    profiler = cProfile.Profile()
    profiler.enable()
    seconds = bench.seconds(path)
    profiler.disable()
    print(f"{path.name}: {bench.per_event(seconds) * 1e6:.1f} µs per event under cProfile")
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Many short rounds: on a busy machine, more of them run undisturbed.
    parser.add_argument("--rounds", type=int, default=31, help="rounds (default: 31)")
    parser.add_argument("--requests", type=int, default=1, help="replies per path per round")
    parser.add_argument("--tokens", type=int, default=400, help="tokens per reply (default: 400)")
    parser.add_argument("--bound", type=float, default=1.5, help="the goal (default: 1.5x)")
    parser.add_argument("--reading", choices=READINGS, action="append", help="default: both")
    parser.add_argument("--mode", choices=MODES, action="append", help="default: both")
    parser.add_argument(
        "--profile", metavar="SIDE", choices=SIDES, help="profile this side instead of timing"
    )
    parser.add_argument("--top", type=int, default=30, help="profile lines (default: 30)")
    arguments = parser.parse_args(argv)
    if min(arguments.rounds, arguments.requests, arguments.tokens) < 1 or arguments.bound <= 0:
        parser.error("--rounds, --requests and --tokens must be >= 1, --bound > 0")
    bench = Bench(arguments.tokens, arguments.requests)
    # What is alive now stays: frozen out of the collector's way, collecting before each
    # path costs only what the paths left, not a full collection of the heap (0.2 s).
    gc.collect()
    gc.freeze()
    try:
        return run(bench, arguments)
    finally:
        gc.unfreeze()


def run(bench: Bench, arguments: argparse.Namespace) -> int:
    """Profile, or time, the paths the arguments select; the exit status."""
    readings, modes = arguments.reading or READINGS, arguments.mode or MODES
    print(
        f"{arguments.requests} streamed replies of {arguments.tokens} tokens per path and "
        f"round: {bench.recording.events} events in {len(bench.recording.chunks)} chunks each"
    )
    if arguments.profile:
        for mode in modes:
            for reading in readings:
                profile(bench, Path(arguments.profile, mode, reading), arguments.top)
        return 0
    paths = [Path(side, mode, reading) for mode in modes for reading in readings for side in SIDES]
    found = measure(bench, paths, arguments.rounds)
    above = report(found, arguments.bound, arguments.rounds)
    if above:
        print(f"above the goal of {arguments.bound}x: {', '.join(above)}")
        return 1
    print(f"every ratio on the virtual clock within {arguments.bound}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
