"""Locust for perfkit's agent service: a user class for its chat endpoints, and perfkit's
SLOs as the exit code.

Import this module from a locustfile only: importing ``locust`` monkey-patches the
standard library with gevent, so nothing else in perfkit imports it (``import perfkit``
does not). Importing it registers, on Locust's global ``events``:

- the command-line options ``--slo-p50``, ``--slo-p95``, ``--slo-p99`` (seconds, at
  most), ``--slo-error-rate`` (a fraction, at most), ``--slo-rps-per-worker`` (at least),
  ``--service-workers`` (the service's worker processes the RPS is shared by) and
  ``--wait-min`` / ``--wait-max`` (seconds a user thinks between requests);
- a check that runs when Locust quits (standalone or master, never on a worker): it logs
  a measured-vs-target table and sets the exit code to 1 when a target is missed.

The check covers the chat endpoints' requests; the ``TTFT`` rows (time to the first
``token`` event of ``/chat/stream``) are reported but not gated, and Locust's own
"Aggregated" row counts them too. Percentiles are Locust's, from response times rounded
to two significant digits.

Usage, in a ``locustfile.py``::

    from perfkit.locust import AgentServiceUser  # noqa: F401 (Locust finds it here)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import gevent  # type: ignore[import-untyped]  # gevent ships no type hints
from locust import FastHttpUser, events, task
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, ResponseContextManager
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import RequestStats, StatsEntry

from perfkit._validation import parse_fraction
from perfkit.load import PRODUCTION_TARGETS

__all__ = [
    "CHAT_PATH",
    "DEFAULT_ERROR_RATE",
    "DEFAULT_P50",
    "DEFAULT_P95",
    "DEFAULT_P99",
    "DEFAULT_RPS_PER_WORKER",
    "QUESTIONS",
    "STREAM_PATH",
    "TTFT",
    "AgentServiceUser",
    "SLOResult",
    "SLOTargets",
    "check_slos",
    "slo_table",
]

# perfkit's default SLOs: the book chapter's production targets, as perfkit.load states them.
DEFAULT_P50 = PRODUCTION_TARGETS["p50"]
"""Seconds the median chat request may take at most."""
DEFAULT_P95 = PRODUCTION_TARGETS["p95"]
DEFAULT_P99 = PRODUCTION_TARGETS["p99"]
DEFAULT_ERROR_RATE = PRODUCTION_TARGETS["error_rate"]
"""The share of chat requests that may fail at most (0.1%)."""
DEFAULT_RPS_PER_WORKER = PRODUCTION_TARGETS["min_rps"]
"""Chat requests per second each of the service's worker processes must serve at least."""

DEFAULT_WAIT = (1.0, 3.0)
"""Seconds a user thinks between requests, drawn uniformly (the book chapter's locustfile)."""

CHAT_PATH = "/chat"
STREAM_PATH = "/chat/stream"
TTFT = "TTFT"
"""The request type of the time-to-first-token rows (named after the endpoint)."""

QUESTIONS = (
    "What is the weather in Paris?",
    "And tomorrow?",
    "Where is my order 1234?",
    "How do I reset my password?",
    "Summarize the connection pooling docs.",
    "What does the caching layer do?",
    "Compare the naive and the optimized agent.",
    "Which plan suits a team of ten?",
)
"""What users ask, drawn uniformly; repeats are what the agent's cache is for."""

_TARGET_RANGES = {  # the highest value each target may take (from 0)
    "p50": math.inf,
    "p95": math.inf,
    "p99": math.inf,
    "error_rate": 1.0,
    "rps_per_worker": math.inf,
}

_log = logging.getLogger("locust.stats_logger")  # where Locust prints its own tables


@dataclass(frozen=True, kw_only=True)
class SLOTargets:
    """The service-level objectives a Locust run is held to.

    Latency percentiles are in seconds (at most), ``error_rate`` is a fraction (at most),
    ``rps_per_worker`` is requests per second per service worker (at least)::

        SLOTargets(p95=1.5)  # the defaults, but a tighter p95
    """

    p50: float = DEFAULT_P50
    p95: float = DEFAULT_P95
    p99: float = DEFAULT_P99
    error_rate: float = DEFAULT_ERROR_RATE
    rps_per_worker: float = DEFAULT_RPS_PER_WORKER

    def __post_init__(self) -> None:
        for name, highest in _TARGET_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not 0 <= value <= highest:
                raise ValueError(f"{name} must be a number from 0 to {highest}, got {value!r}")


@dataclass(frozen=True)
class SLOResult:
    """One target checked: its name, the measured value and the target, both as text."""

    name: str
    measured: str
    target: str
    met: bool


class AgentServiceUser(FastHttpUser):
    """A user of perfkit's agent service: asks questions from :data:`QUESTIONS` over
    ``POST /chat`` and ``POST /chat/stream``, as one user id for its whole life.

    FastHttpUser (geventhttpclient) rather than HttpUser (requests): it costs Locust
    several times less CPU per request, so one worker offers more load before its own
    CPU distorts the timings. The stream is timed as a whole (the ``POST /chat/stream``
    row) and to its first ``token`` event (the ``TTFT /chat/stream`` row); an ``error``
    event or a stream that ends without ``done`` is a failure.

    Subclass to change ``questions`` or ``wait_time`` (by default ``--wait-min`` to
    ``--wait-max``). Refer to it through the module: Locust runs every user class in a
    locustfile, an imported ``AgentServiceUser`` too::

        class Shoppers(perfkit.locust.AgentServiceUser):
            questions = ("Where is my order 1234?",)
    """

    abstract = False
    questions: tuple[str, ...] = QUESTIONS

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.user_id = f"locust-{uuid.uuid4().hex[:12]}"

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        low, high = (options.wait_min, options.wait_max) if options else DEFAULT_WAIT
        return random.uniform(low, high)

    @task
    def chat(self) -> None:
        self.client.post(CHAT_PATH, json=self._request())

    @task
    def chat_stream(self) -> None:
        started = time.perf_counter()
        with self.client.post(
            STREAM_PATH, json=self._request(), stream=True, catch_response=True
        ) as response:
            if response.status_code == 200:
                self._read_stream(response, started)

    def _request(self) -> dict[str, str]:
        return {"user_id": self.user_id, "message": random.choice(self.questions)}

    def _read_stream(self, response: ResponseContextManager, started: float) -> None:
        first_token: float | None = None
        failure: str | None = None
        finished = False
        try:
            for event, data in _sse_events(_lines(response)):
                if event == "token" and first_token is None:
                    first_token = time.perf_counter()
                elif event == "error":
                    failure = failure or f"error event: {data}"
                elif event == "done":
                    finished = True
        except FAILURE_EXCEPTIONS as error:
            failure = f"the stream broke off: {error!r}"
        ended = time.perf_counter()
        # Reported once the stream ends, so that the TTFT row and the stream's row count
        # the same requests (a stream cut off by the end of the test is in neither).
        if first_token is not None:
            self._report_ttft(first_token - started)
        # Locust times a streamed request to its headers; the user waits for all of it.
        response.request_meta["response_time"] = (ended - started) * 1000
        if failure is None and not finished:
            failure = "the stream ended without a done event"
        if failure is not None:
            response.failure(failure)  # type: ignore[no-untyped-call]

    def _report_ttft(self, seconds: float) -> None:
        self.environment.events.request.fire(
            request_type=TTFT,
            name=STREAM_PATH,
            response_time=seconds * 1000,
            response_length=0,
            response=None,
            context=self.context(),
            exception=None,
        )


def _lines(response: ResponseContextManager) -> Iterator[bytes]:
    # geventhttpclient's public read(n) waits for n bytes, which would hold back the
    # first token; its readline returns each line as soon as it has arrived.
    reader = response._response
    while reader is not None and (line := reader.readline(b"\n")):
        yield line


def _sse_events(lines: Iterable[bytes]) -> Iterator[tuple[str, Any]]:
    """The (event, data) pairs of a server-sent event stream, data decoded as JSON."""
    data: list[str]
    event, data = "message", []
    for raw in lines:
        line = raw.decode().rstrip("\r\n")
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif field == "event":
            event = value
        elif field == "data":
            data.append(value)


def check_slos(
    stats: RequestStats, targets: SLOTargets, *, service_workers: int = 1
) -> list[SLOResult]:
    """Every target of ``targets`` against the chat requests in ``stats`` (the ``TTFT``
    rows left out), requests per second shared by ``service_workers``."""
    chat = StatsEntry(stats, "chat requests", "")
    for entry in stats.entries.values():
        if entry.method != TTFT:
            chat.extend(entry)
    if not chat.num_requests:
        return [SLOResult("requests", "0", "> 0", met=False)]
    results = [
        _at_most(
            f"p{round(percent * 100)}", chat.get_response_time_percentile(percent) / 1000, limit
        )
        for percent, limit in ((0.5, targets.p50), (0.95, targets.p95), (0.99, targets.p99))
    ]
    error_rate = chat.fail_ratio
    results.append(
        SLOResult(
            "error rate",
            f"{error_rate:.2%}",
            f"<= {targets.error_rate:.2%}",
            met=error_rate <= targets.error_rate,
        )
    )
    rps = chat.total_rps / service_workers
    results.append(
        SLOResult(
            "RPS per worker",
            f"{rps:.1f}",
            f">= {targets.rps_per_worker:.1f}",
            met=rps >= targets.rps_per_worker,
        )
    )
    return results


def slo_table(results: Iterable[SLOResult]) -> str:
    """``results`` as a measured-vs-target table, a missed target marked ``MISSED``."""
    rows = [("SLO", "measured", "target", "")]
    rows += [(r.name, r.measured, r.target, "ok" if r.met else "MISSED") for r in results]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)), row[3]]
        ).rstrip()
        for row in rows
    )


def _at_most(name: str, seconds: float, limit: float) -> SLOResult:
    return SLOResult(name, f"{seconds:.3f} s", f"<= {limit:.3f} s", met=seconds <= limit)


def _non_negative(text: str) -> float:
    value = parse_fraction(text)  # a finite number >= 0
    if value is None:
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer of at least 1, got {text!r}")
    return int(text)


def _add_options(parser: LocustArgumentParser) -> None:
    slo = parser.add_argument_group(
        "perfkit SLOs (checked when Locust quits; exit code 1 if missed)"
    )
    for name, default, unit in (
        ("p50", DEFAULT_P50, "seconds"),
        ("p95", DEFAULT_P95, "seconds"),
        ("p99", DEFAULT_P99, "seconds"),
    ):
        slo.add_argument(
            f"--slo-{name}",
            type=_non_negative,
            default=default,
            help=f"{name} of the chat requests, at most ({unit}; default {default})",
        )
    slo.add_argument(
        "--slo-error-rate",
        type=_fraction,
        default=DEFAULT_ERROR_RATE,
        help=f"share of chat requests failed, at most (default {DEFAULT_ERROR_RATE})",
    )
    slo.add_argument(
        "--slo-rps-per-worker",
        type=_non_negative,
        default=DEFAULT_RPS_PER_WORKER,
        help="chat requests per second per service worker, at least "
        f"(default {DEFAULT_RPS_PER_WORKER})",
    )
    slo.add_argument(
        "--service-workers",
        type=_positive_int,
        default=1,
        help="worker processes of the service under test, which share the RPS (default 1)",
    )
    users = parser.add_argument_group("perfkit agent service users")
    users.add_argument(
        "--wait-min",
        type=_non_negative,
        default=DEFAULT_WAIT[0],
        help=f"seconds a user waits between requests, at least (default {DEFAULT_WAIT[0]})",
    )
    users.add_argument(
        "--wait-max",
        type=_non_negative,
        default=DEFAULT_WAIT[1],
        help=f"seconds a user waits between requests, at most (default {DEFAULT_WAIT[1]})",
    )


def _check_on_quit(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return  # workers report to the master, which holds the whole run's figures
    targets = SLOTargets(
        p50=options.slo_p50,
        p95=options.slo_p95,
        p99=options.slo_p99,
        error_rate=options.slo_error_rate,
        rps_per_worker=options.slo_rps_per_worker,
    )
    results = check_slos(environment.stats, targets, service_workers=options.service_workers)
    missed = [result.name for result in results if not result.met]
    verdict = f"missed: {', '.join(missed)}" if missed else "all met"
    _log.info("perfkit SLOs (%s)\n%s\n", verdict, slo_table(results))
    # The SLOs are the exit code: a met error-rate target overrides Locust's own rule that
    # any failed request exits 1 (--exit-code-on-error).
    environment.process_exit_code = 1 if missed else 0


# Locust's event hooks have no type hints.
events.init_command_line_parser.add_listener(_add_options)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_check_on_quit)  # type: ignore[no-untyped-call]

# The gevent loop caches "now" and has not run since ``import locust``; importing perfkit
# takes seconds, and Locust would time ``--run-time`` from that stale "now" (a run stopping
# as many seconds early).
gevent.get_hub().loop.update_now()
