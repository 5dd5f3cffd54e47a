"""Service throughput: ``perfkit serve --agent naive`` against ``--agent optimized``, each
one uvicorn worker on the simulated backend, under the same open-model load, reported
beside the production target of "more than 10 requests per second per worker".

Both services run as real subprocesses and are driven by perfkit's load generator over
loopback with one seeded schedule: Poisson arrivals at ``RATE`` requests per second to
``POST /chat``, each request from a new visitor (``visitor-<n>``, so no history) asking a
question of a ``CATALOGUE``-question catalogue with Zipf popularity, as in
``test_combined.py``. A visitor's first question is the whole request the model sees, so
a repeated question is a request the optimized agent's cache can answer. The simulated
backend answers in real time, as the combined benchmark's model does: a log-normal time
to first token (median 0.6 s), 60 to 400 tokens at 50 per second, and tool calls for 30%
of questions, so one reply takes from under 2 s to over 10 s.

**Rate and duration.** Measured here by hand (2 CPUs shared with other work): driven
alone, each service served 15, 20 and 40 requests/s without an error, its latency the
model's up to 20 and some 30% above it at 40. Driven at once, 15 requests/s each left
both at the model's latency; 30 each nearly doubled the naive service's p50 (the
optimized one's rose by a quarter) and put the generator 350 ms behind its schedule; 60
each made the naive service fail requests. A request costs the service about 25 to 30 ms
of CPU naive and 20 to 25 ms optimized. ``RATE`` = 15 is above the target's 10 with room
for the Poisson draw, and low enough that neither the services nor the generator
saturate, so the figures describe the services, not the machine. Throughput is what a
service finishes inside the measured period (``LoadResult.rps``), so the period must be
steady state: ``WARMUP`` (10 s) outlasts nearly every reply before the 8 measured
seconds begin. A run lasts ``DURATION`` plus the time the last requests take (up to about
11 s), and a service takes 3 to 5 s to start; so both services are started together and
driven at once, from one event loop, on one schedule: about 35 s in all. Side by side,
both also share whatever else the machine is doing at that moment.

**What is asserted.** The production latency targets (p50 < 1 s, p95 < 2 s, p99 < 5 s) are
out of reach of any service on this backend, whose model takes 2 to 10 s to write most
replies, and an 80% cache hit rate cannot be reached from a cold cache within seconds
(replies land in the cache only once complete, seconds after they were asked). So
the test's SLO keeps the two production targets that describe the service itself: more than
10 requests per second per worker, and an error rate under 0.1%. The optimized service
must meet them; the naive service is measured against the same SLO and reported, not
gated (it is the "before" picture). Offered the same schedule, the optimized service's
p95 may not exceed the naive one's by more than ``P95_MARGIN``: at this rate both p95s
are the model's longest replies, and their ratio (optimized / naive) measured 0.94 to
1.08 here, so the margin catches an optimized service that queues, not noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from perfkit.load import (
    PRODUCTION_TARGETS,
    LoadResult,
    LoadTester,
    OpenModel,
    Request,
    SLOViolation,
)

KINDS = ("naive", "optimized")
RATE = 15.0  # requests per second, to each service
DURATION = 18.0  # seconds of arrivals, the first WARMUP of them not measured
WARMUP = 10.0  # longer than nearly every reply: the measured 8 s are in steady state
SEED = 2026
CATALOGUE = 60  # distinct questions
ZIPF = 1.0  # popularity of the question ranked r is proportional to 1 / r**ZIPF
START_TIMEOUT = 30.0  # seconds for a service to answer /healthz
STOP_TIMEOUT = 10.0  # seconds for a service to exit after SIGTERM, before SIGKILL
P95_MARGIN = 1.25  # the optimized service's p95 may be at most this times the naive one's

QUESTIONS = [f"Question {rank} about our product" for rank in range(1, CATALOGUE + 1)]
WEIGHTS = [1 / rank**ZIPF for rank in range(1, CATALOGUE + 1)]
MODEL = OpenModel(rate=RATE, arrivals="poisson", seed=SEED)


def chat_request(n: int) -> Request:
    """The ``n``-th request: a new visitor's question, the same for both services."""
    question = random.Random(f"{SEED}:{n}").choices(QUESTIONS, WEIGHTS)[0]
    return Request("POST", "/chat", json={"user_id": f"visitor-{n}", "message": question})


@dataclass(frozen=True)
class Service:
    """A running ``perfkit serve`` process."""

    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


@contextlib.contextmanager
def serving(kind: str, log: Path) -> Iterator[Service]:
    """``perfkit serve --agent kind`` on a free loopback port, stopped on exit."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "perfkit",
        "serve",
        "--agent",
        kind,
        "--backend",
        "simulated",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with (
        log.open("wb") as output,
        subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT) as process,
    ):
        try:
            yield Service(kind, f"http://127.0.0.1:{port}", process, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def until_healthy(service: Service) -> None:
    """Wait until the service answers ``GET /healthz``; fail if it exits or never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=service.url, timeout=1.0) as client:
        while service.process.poll() is None and loop.time() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    pytest.fail(
        f"perfkit serve --agent {service.kind} did not become healthy at {service.url} "
        f"(exit code {service.process.poll()}):\n{service.log_tail()}"
    )


async def drive(load_test: LoadTester, service: Service) -> LoadResult:
    """The load test against one service, labelled in the report with its agent."""
    return await load_test.arun(
        service.url,
        MODEL,
        duration=DURATION,
        warmup=WARMUP,
        request=chat_request,
        check=False,  # the optimized service's SLO is checked once both runs are recorded
        label=f"{service.kind} agent service (perfkit serve --agent {service.kind}, 1 worker)",
    )


@pytest.mark.perfkit_slo(
    min_rps=PRODUCTION_TARGETS["min_rps"],
    error_rate=PRODUCTION_TARGETS["error_rate"],
    workers=1,
    p50=None,
    p95=None,
    p99=None,
    cache_hit_rate=None,
)
def test_naive_and_optimized_services_under_one_load(load_test: LoadTester, tmp_path: Path) -> None:
    async def both(services: list[Service]) -> list[LoadResult]:
        await asyncio.gather(*(until_healthy(service) for service in services))
        return await asyncio.gather(*(drive(load_test, service) for service in services))

    with contextlib.ExitStack() as stack:
        services = [stack.enter_context(serving(kind, tmp_path / f"{kind}.log")) for kind in KINDS]
        naive, optimized = asyncio.run(both(services))

    report = load_test.slo.check(optimized, cache_hit_rate=optimized.cache_hit_rate)
    if not report.passed:
        raise SLOViolation(report, f"perfkit serve --agent optimized ({optimized.target})")
    p95_ratio = optimized.latency.percentile(95) / naive.latency.percentile(95)
    assert p95_ratio <= P95_MARGIN, (
        f"the optimized service's p95 is {p95_ratio:.2f}x the naive service's on the same "
        f"schedule (at most {P95_MARGIN}x allowed)"
    )
