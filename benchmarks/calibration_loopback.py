"""Calibration proved on loopback: record a model's latency through the real SDK on the real
clock, fit a latency profile to the traces, and check that the simulator, run on that
profile in virtual time, predicts what was measured.

    python benchmarks/calibration_loopback.py [--requests 150] [--concurrency 12] [--seed 0]
                                              [--replays 2] [--bound 0.10]
                                              [--traces traces.jsonl] [--overhead-tokens 400]

The model is tests/loopback_model.py: a real uvicorn server on 127.0.0.1, in a process of
its own, whose latency parameters are known (headers after 20 ms; the first token after a
30 ms queue, a log-normal base of median 80 ms, 20 µs per prefilled and 2 µs per
cache-read input token; then 5 ms per output token with log-normal noise). The workload
streams requests of 500 to 20,000 input tokens and 8 to 60 output tokens, a third of them
on one of three cached system prompts (3,000 to 9,000 tokens, written by three warm-up
requests sent first, one at a time), ``--concurrency`` at a time through
``anthropic.AsyncAnthropic``, recorded by :class:`perfkit.traces.TraceRecorder`. The
traces are fitted (:func:`perfkit.traces.fit_traces`, what ``perfkit calibrate`` runs);
then the same workload runs against ``AnthropicSimulator(latency=LLMLatency.from_profile(
profile, seed=...))`` on a :class:`~perfkit.VirtualClock`, ``--replays`` times with
successive seeds, pooled: the real run is one draw of the model's noise, and one replay
would add a second draw's luck to the comparison (about 2% at p50 with 150 requests).

Prints the fitted parameters beside the model's, then p50 and p95 of the time to first
token and to the complete reply, measured (the real run, timed by the client) and
predicted (the virtual run), and what the recorder adds to the SDK's reading of a
stream (``--overhead-tokens``); the exit status is 1 if a prediction is off by more than
``--bound`` (10%) of the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import math
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anthropic
import httpx2

from perfkit import AnthropicSimulator, Clock, LLMLatency, RealClock, Reply, VirtualClock
from perfkit.traces import TraceRecorder, fit_traces, read_traces

REPOSITORY = Path(__file__).resolve().parent.parent
LOOPBACK_MODEL = REPOSITORY / "tests" / "loopback_model.py"
MODEL = "claude-sonnet-4-5"
PREFIX_TOKENS = (3_000, 6_000, 9_000)
"""The cached system prompts' lengths (each above the model's 1,024-token minimum)."""
CACHED_SHARE = 1 / 3
INPUT_TOKENS = (500, 20_000)
"""Uncached requests' input, drawn log-uniformly: most prompts short, a few long."""
CACHED_USER_TOKENS = (200, 3_000)
OUTPUT_TOKENS = (8, 60)
OVERHEAD_ROUNDS = 30
"""Requests per client and side in each of the overhead table's 3 alternations."""


@dataclass(frozen=True)
class Timing:
    """One streamed request as the client saw it: seconds to the first token, to the end."""

    ttft: float
    complete: float


def loopback_model() -> ModuleType:
    """tests/loopback_model.py as a module (it holds the model's parameters)."""
    spec = importlib.util.spec_from_file_location("loopback_model", LOOPBACK_MODEL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def words(tag: str, count: int) -> str:
    """``count`` simulator tokens (one per word), starting with ``tag``."""
    return " ".join([tag, *["w"] * (count - 1)])


def workload(requests: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The warm-up requests (one per cached prefix) and the main requests, as keyword
    arguments of ``messages.create``; the same in every run of a seed."""
    rng = random.Random(seed)
    prefixes = [
        [{"type": "text", "text": words(f"ctx{i}", n), "cache_control": {"type": "ephemeral"}}]
        for i, n in enumerate(PREFIX_TOKENS)
    ]

    def request(tag: str, user_tokens: int, system: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": rng.randint(*OUTPUT_TOKENS),
            "messages": [{"role": "user", "content": words(tag, user_tokens)}],
        }
        if system is not None:
            body["system"] = system
        return body

    warmup = [request(f"warm{i}", 100, system) for i, system in enumerate(prefixes)]
    main: list[dict[str, Any]] = []
    low, high = map(math.log, INPUT_TOKENS)
    for i in range(requests):
        if rng.random() < CACHED_SHARE:
            prefix = prefixes[rng.randrange(len(prefixes))]
            main.append(request(f"q{i}", rng.randint(*CACHED_USER_TOKENS), prefix))
        else:
            main.append(request(f"q{i}", round(math.exp(rng.uniform(low, high)))))
    return warmup, main


async def drive(
    client: anthropic.AsyncAnthropic,
    clock: Clock,
    warmup: Sequence[dict[str, Any]],
    main: Sequence[dict[str, Any]],
    concurrency: int,
) -> list[Timing]:
    """Stream the warm-up requests one at a time, then the main ones ``concurrency`` at a
    time (in order); each request's time to its first content delta and to its end."""

    async def one(request: dict[str, Any]) -> Timing:
        start = clock.now()
        first: float | None = None
        stream = await client.messages.create(**request, stream=True)
        async for event in stream:
            if first is None and event.type == "content_block_delta":
                first = clock.now() - start
        assert first is not None, "no content arrived"
        return Timing(first, clock.now() - start)

    timings = [await one(request) for request in warmup]
    gate = asyncio.Semaphore(concurrency)

    async def gated(request: dict[str, Any]) -> Timing:
        async with gate:
            return await one(request)

    timings += await asyncio.gather(*(gated(request) for request in main))
    return timings


def start_model(parameters: Any, seed: int) -> tuple[subprocess.Popen[str], str]:
    """The loopback model in a process of its own, and its base URL."""
    process = subprocess.Popen(
        [sys.executable, str(LOOPBACK_MODEL), "--seed", str(seed), parameters.to_json()],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        stop(process)
        raise RuntimeError(f"the loopback model did not start: {line!r}")
    return process, line.split()[-1]


def measure(
    parameters: Any,
    warmup: Sequence[dict[str, Any]],
    main: Sequence[dict[str, Any]],
    *,
    concurrency: int,
    seed: int,
    traces: Path,
) -> list[Timing]:
    """The real run: the workload through the SDK to the loopback model, recorded."""
    process, url = start_model(parameters, seed)
    clock = RealClock()
    try:
        with TraceRecorder(traces) as recorder:

            async def run() -> list[Timing]:
                async with anthropic.AsyncAnthropic(
                    api_key="loopback",
                    base_url=url,
                    max_retries=0,
                    http_client=recorder.async_http_client(),
                ) as client:
                    return await drive(client, clock, warmup, main, concurrency)

            return asyncio.run(run())
    finally:
        stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    """End the loopback model's process (and close its pipe)."""
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def predict(
    latency: LLMLatency,
    warmup: Sequence[dict[str, Any]],
    main: Sequence[dict[str, Any]],
    *,
    concurrency: int,
) -> list[Timing]:
    """The virtual run: the same workload against the simulator on ``latency``."""
    clock = VirtualClock()
    with AnthropicSimulator(latency=latency, clock=clock) as sim:
        sim.respond_with(lambda logged: Reply.text(words("tok", logged.body["max_tokens"])))

        async def run() -> list[Timing]:
            async with anthropic.AsyncAnthropic(api_key="virtual", max_retries=0) as client:
                return await drive(client, clock, warmup, main, concurrency)

        return clock.run(run())


class Replayed(httpx2.SyncByteStream):
    """Captured chunks, one after the other, as a mock transport's response body."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def recorder_overhead(tokens: int, rounds: int, scratch: Path) -> tuple[float, float, int]:
    """Wall seconds per streamed reply of ``tokens`` tokens read by the sync SDK
    (``create(stream=True)``) from a mock transport without and with the recorder (the
    best of ``rounds``, alternating), and the reply's events."""
    body = {"model": MODEL, "max_tokens": tokens, "messages": [{"role": "user", "content": "Hi"}]}
    with AnthropicSimulator(clock=VirtualClock()) as sim:
        sim.respond_with(Reply.of_tokens(tokens))
        with (
            httpx2.Client() as plain,
            plain.stream(
                "POST",
                "https://api.anthropic.com/v1/messages",
                json={**body, "stream": True},
                headers={"x-api-key": "sim", "anthropic-version": "2023-06-01"},
            ) as response,
        ):
            chunks = list(response.iter_raw())
    events = b"".join(chunks).count(b"event: ")
    headers = {"content-type": "text/event-stream", "request-id": "req_overhead"}

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=headers, stream=Replayed(chunks))

    def seconds(http_client: httpx2.Client) -> float:
        with anthropic.Anthropic(api_key="x", http_client=http_client, max_retries=0) as client:
            best = math.inf
            for _ in range(rounds):
                start = time.perf_counter()
                with client.messages.create(**body, stream=True) as stream:
                    for _ in stream:
                        pass
                best = min(best, time.perf_counter() - start)
            return best

    plain_best, recorded_best = math.inf, math.inf
    with TraceRecorder(scratch / "overhead.jsonl") as recorder:
        for _ in range(3):
            transport = httpx2.MockTransport(handler)
            plain_best = min(plain_best, seconds(anthropic.DefaultHttpxClient(transport=transport)))
            recording = recorder.http_client(transport=httpx2.MockTransport(handler))
            recorded_best = min(recorded_best, seconds(recording))
    return plain_best, recorded_best, events


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile, linearly interpolated between the closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def comparison(measured: list[Timing], predicted: list[Timing]) -> list[tuple[str, float, float]]:
    """(quantity, measured, predicted) for p50 and p95 of TTFT and of the complete reply."""
    rows = []
    for name in ("ttft", "complete"):
        for q in (50, 95):
            rows.append(
                (
                    f"{name} p{q}",
                    percentile([getattr(t, name) for t in measured], q),
                    percentile([getattr(t, name) for t in predicted], q),
                )
            )
    return rows


def parameter_table(parameters: Any, entry: dict[str, Any]) -> list[str]:
    """The fitted profile's parameters beside the model's own."""
    true = {
        "connect": f"{parameters.connect * 1e3:.1f} ms + HTTP",
        "ttft (base)": (
            f"{(parameters.queue + parameters.base_median) * 1e3:.1f} ms median "
            f"(queue {parameters.queue * 1e3:.0f} + base {parameters.base_median * 1e3:.0f}, "
            f"sigma {parameters.base_sigma})"
        ),
        "prefill_per_token": f"{parameters.prefill_per_token * 1e6:.2f} µs",
        "cache_read_per_token": f"{parameters.cache_read_per_token * 1e6:.2f} µs",
        "per_token": (
            f"{parameters.per_token * 1e3:.2f} ms median (sigma {parameters.per_token_sigma})"
        ),
    }
    keys = {"ttft (base)": "ttft"}
    lines = [f"{'parameter':<22}{'model (true)':<52}fitted"]
    for name, value in true.items():
        lines.append(f"{name:<22}{value:<52}{describe(entry.get(keys.get(name, name)))}")
    return lines


def describe(distribution: Any) -> str:
    """A profile distribution in words, in ms or µs as it suits."""
    if not isinstance(distribution, dict):
        return repr(distribution)
    (kind, value), *_ = distribution.items()
    if kind == "fixed":
        return seconds(value)
    if kind == "lognormal":
        return f"{seconds(value['median'])} median (sigma {value['sigma']:.2f})"
    if kind == "normal":
        return f"{seconds(value['mean'])} mean (stddev {seconds(value['stddev'])})"
    return f"{kind} {value}"


def seconds(value: float) -> str:
    return f"{value * 1e3:.2f} ms" if value >= 1e-3 else f"{value * 1e6:.2f} µs"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150, help="main requests (default 150)")
    parser.add_argument("--concurrency", type=int, default=12, help="at a time (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--replays", type=int, default=2, help="virtual runs, seeds apart, pooled (default 2)"
    )
    parser.add_argument("--bound", type=float, default=0.10, help="largest error (0.10)")
    parser.add_argument("--traces", type=Path, help="keep the recorded traces in this file")
    parser.add_argument(
        "--overhead-tokens",
        type=int,
        default=400,
        help="the reply of the recorder's overhead table (default 400; 0: no table)",
    )
    arguments = parser.parse_args(argv)
    if (
        arguments.requests < 20
        or arguments.concurrency < 1
        or arguments.replays < 1
        or not arguments.bound > 0
    ):
        parser.error("--requests must be >= 20, --concurrency and --replays >= 1, --bound > 0")
    parameters = loopback_model().ModelParameters()
    warmup, requests = workload(arguments.requests, arguments.seed)
    with tempfile.TemporaryDirectory() as scratch:
        traces = arguments.traces or Path(scratch) / "traces.jsonl"
        traces.unlink(missing_ok=True)
        wall = time.perf_counter()
        measured = measure(
            parameters,
            warmup,
            requests,
            concurrency=arguments.concurrency,
            seed=arguments.seed,
            traces=traces,
        )
        real_seconds = time.perf_counter() - wall
        fit = fit_traces(read_traces(traces), model=MODEL, seed=arguments.seed)
        overhead = (
            recorder_overhead(arguments.overhead_tokens, OVERHEAD_ROUNDS, Path(scratch))
            if arguments.overhead_tokens > 0
            else None
        )
    fitted_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    profile = fit.profile(source=str(traces), fitted_at=fitted_at)
    wall = time.perf_counter()
    predicted: list[Timing] = []
    for replay in range(arguments.replays):
        latency = LLMLatency.from_profile(profile, model=MODEL, seed=arguments.seed + replay)
        predicted += predict(latency, warmup, requests, concurrency=arguments.concurrency)
    virtual_seconds = time.perf_counter() - wall

    print(
        f"loopback model: {len(measured)} streamed requests ({len(warmup)} warm-up), "
        f"{arguments.concurrency} at a time, recorded in {real_seconds:.1f} s real time; "
        f"replayed {arguments.replays} times (seeds {arguments.seed} to "
        f"{arguments.seed + arguments.replays - 1}) in virtual time in {virtual_seconds:.1f} s"
    )
    print()
    print("\n".join(parameter_table(parameters, profile["models"][MODEL])))
    print()
    print(f"{'':<14}{'measured':>10}{'predicted':>11}{'error':>9}")
    worst = 0.0
    for name, real, virtual in comparison(measured, predicted):
        error = (virtual - real) / real
        worst = max(worst, abs(error))
        print(f"{name:<14}{real * 1e3:>8.1f}ms{virtual * 1e3:>9.1f}ms{error:>+9.1%}")
    print()
    if overhead is not None:
        plain, recorded, events = overhead
        extra = recorded - plain
        print(
            f"recorder overhead, sync SDK create(stream=True) of a "
            f"{arguments.overhead_tokens}-token reply ({events} events) from a mock transport, "
            f"best of {3 * OVERHEAD_ROUNDS}:\n"
            f"  without {plain * 1e3:.2f} ms, with {recorded * 1e3:.2f} ms: "
            f"{extra * 1e6 / events:+.1f} µs per event "
            f"({extra / plain:+.0%} of the SDK's own reading)"
        )
        print()
    verdict = "within" if worst <= arguments.bound else "OUTSIDE"
    print(f"worst error {worst:.1%}: every prediction {verdict} {arguments.bound:.0%}")
    return 0 if worst <= arguments.bound else 1


if __name__ == "__main__":
    sys.exit(main())
