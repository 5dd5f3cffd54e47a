"""``perfkit load`` against servers that misbehave: every run ends within duration +
timeout + 1 s and classifies each request correctly, the target's ``/metrics`` is read
only from a perfkit service (or ``--metrics-url``) and never fails the run, malformed
URLs are usage errors, and credentials in the URL are sent as basic auth and never
printed. Every server is a real one on loopback (asyncio, in a thread of its own)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import perfkit.reporting  # noqa: F401 - imported once here, not inside a timed run
from perfkit import cli
from perfkit.load import LatencyHistogram, OpenModel, Request, run
from perfkit.load._http import EventParser, HttpxClient
from perfkit.load._service import CacheCounter

DURATION = TIMEOUT = 0.5
BOUND = DURATION + TIMEOUT + 1.0
"""The acceptance bound: a run ends within duration + timeout + 1 s whatever the server does."""
RATE = 4
SENT = 2  # constant arrivals at 0 and 0.25 s: the last request times out by 0.75 s, well
# before the run gives up on requests at duration + timeout (as "unfinished")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
HEALTHZ = b'{"status": "ok", "agent": "OptimizedAgent", "backend": "simulated"}'
"""What perfkit's service answers on ``/healthz``."""


def _ignore_a_handler_cancelled_before_it_ran(
    loop: asyncio.AbstractEventLoop, context: dict[str, Any]
) -> None:
    """Closing cancels every connection's handler task; one cancelled before its first
    step never reaches its ``except CancelledError``, and Python 3.11's stream callback
    then raises CancelledError from ``task.exception()``, which the loop logs as an error
    (a flaky error in a busy run). Anything else goes to the default handler."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


class LoopbackServers:
    """Real TCP servers on 127.0.0.1, each running a behaviour on one event loop in a
    thread of its own; :meth:`close` stops them all and closes every connection."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_ignore_a_handler_cancelled_before_it_ran)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.Server] = []
        self.requests: list[bytes] = []
        """The head of every request a server read, in order."""

    def start(self, behaviour: Handler) -> str:
        """Serve ``behaviour`` (on every connection) on a new port; its base URL."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await behaviour(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the client went away: that is the client's business
            except asyncio.CancelledError:
                pass  # closing: asyncio's stream callback would log a cancelled handler
            finally:
                writer.close()

        async def start() -> str:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.servers.append(server)
            return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)

    async def read_request(self, reader: asyncio.StreamReader) -> str:
        """Read one request's head; its path."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        return head.split(b" ", 2)[1].decode()

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for server in self.servers:
                await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def servers() -> Iterator[LoopbackServers]:
    running = LoopbackServers()
    yield running
    running.close()


# Behaviours


def answering(servers: LoopbackServers, response: bytes, *, close: bool = False) -> Handler:
    """Answer every request with ``response`` (then close the connection, if ``close``)."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await servers.read_request(reader)
            writer.write(response)
            await writer.drain()
            if close:
                return

    return behaviour


def silent(servers: LoopbackServers) -> Handler:
    """Accept, read, and never answer."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await servers.read_request(reader)
        await reader.read()  # until the client gives up

    return behaviour


def trickling(servers: LoopbackServers, response: bytes = OK, interval: float = 1.0) -> Handler:
    """Answer with ``response`` one byte a second."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await servers.read_request(reader)
        for byte in response:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(interval)

    return behaviour


def endless(servers: LoopbackServers, head: bytes, chunk: bytes) -> Handler:
    """Send ``head``, then ``chunk`` after ``chunk`` for ever, as fast as the client reads."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await servers.read_request(reader)
        writer.write(head)
        while True:
            writer.write(chunk)
            await writer.drain()

    return behaviour


def endless_body(servers: LoopbackServers) -> Handler:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    return endless(servers, head, b"4000\r\n" + b"x" * 0x4000 + b"\r\n")


def stalling_after_headers(servers: LoopbackServers) -> Handler:
    """Send the headers of a 10-byte body, then nothing."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await servers.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        await writer.drain()
        await reader.read()

    return behaviour


def resetting(servers: LoopbackServers) -> Handler:
    """Read the request, then reset the connection (RST, not FIN)."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await servers.read_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    return behaviour


def closing_mid_headers(servers: LoopbackServers) -> Handler:
    return answering(servers, b"HTTP/1.1 200 OK\r\nContent-Le", close=True)


def http_1_0(servers: LoopbackServers) -> Handler:
    """A valid HTTP/1.0 response whose body ends when the connection closes."""
    return answering(
        servers, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello", close=True
    )


def redirecting(servers: LoopbackServers) -> Handler:
    return answering(
        servers, b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    )


def plain_ok(servers: LoopbackServers) -> Handler:
    """A server that is not perfkit's: ``ok`` to everything, ``/metrics`` included."""
    return answering(servers, OK)


def routed(servers: LoopbackServers, routes: dict[str, Handler], default: Handler) -> Handler:
    """Serve each connection by its first request's path (a route that may be followed by
    another closes the connection after its response)."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        replay = asyncio.StreamReader()
        replay.feed_data(head)
        forward = asyncio.create_task(_forward(reader, replay))
        try:
            await routes.get(path, default)(replay, writer)
        finally:
            forward.cancel()

    return behaviour


async def _forward(source: asyncio.StreamReader, target: asyncio.StreamReader) -> None:
    while data := await source.read(65536):
        target.feed_data(data)
    target.feed_eof()


def perfkit_like(servers: LoopbackServers, metrics: Handler) -> Handler:
    """A server that answers ``/healthz`` as perfkit's service does, serves ``/metrics``
    with ``metrics``, and ``ok`` to everything else."""
    healthz = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
    healthz += b"Content-Length: %d\r\n\r\n%s" % (len(HEALTHZ), HEALTHZ)
    routes = {"/healthz": answering(servers, healthz, close=True), "/metrics": metrics}
    return routed(servers, routes, plain_ok(servers))


def counting_metrics(servers: LoopbackServers) -> Handler:
    """``/metrics`` whose cache counts grow by 3 hits and 1 miss at each reading."""
    readings = [0]

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await servers.read_request(reader)
            readings[0] += 1
            body = (
                f'perfkit_cache_hits_total{{layer="l1"}} {3 * readings[0]}\n'
                f"perfkit_cache_misses_total {readings[0]}\n"
            ).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    return behaviour


# Running perfkit load


class Outcome:
    """What one ``perfkit load`` run did: its exit status, output, JSON result and time."""

    def __init__(self, status: int, out: str, err: str, seconds: float, path: Path) -> None:
        self.status, self.out, self.err, self.seconds = status, out, err, seconds
        self.json_out = path.with_suffix(".json")
        self.markdown_out = path.with_suffix(".md")
        self.result: dict[str, Any] = (
            json.loads(self.json_out.read_text()) if self.json_out.exists() else {}
        )


def perfkit_load(
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *options: str,
    rate: float = RATE,
    duration: float = DURATION,
    timeout: float = TIMEOUT,
) -> Outcome:
    """``perfkit load URL`` (rate, duration and timeout as given), run in a thread so that
    a hang fails the test instead of blocking it."""
    bound = duration + timeout + 1
    path = tmp_path / "load"
    argv = [
        "load", url, "--rate", str(rate), "--duration", str(duration),
        "--timeout", str(timeout), "--max-error-rate", "1",
        "--json-out", str(path.with_suffix(".json")),
        "--markdown-out", str(path.with_suffix(".md")), *options,
    ]  # fmt: skip
    finished: list[tuple[int, float]] = []
    out = io.StringIO()

    def main() -> None:
        start = time.perf_counter()
        try:
            status = cli.main(argv, out=out)
        except SystemExit as exited:
            status = int(exited.code or 0)
        finished.append((status, time.perf_counter() - start))

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    thread.join(bound + 10)
    assert finished, f"perfkit load was still running {bound + 10:g} s later"
    status, seconds = finished[0]
    return Outcome(status, out.getvalue(), capsys.readouterr().err, seconds, path)


HOSTILE: dict[str, tuple[Callable[[LoopbackServers], Handler], dict[str, int]]] = {
    "accepts and never answers": (silent, {"timeout": SENT}),
    "trickles its response at 1 byte/s": (trickling, {"timeout": SENT}),
    "sends an endless body": (endless_body, {"timeout": SENT}),
    "sends headers then stalls": (stalling_after_headers, {"timeout": SENT}),
    "resets the connection": (resetting, {"connection": SENT}),
    "answers ok to /metrics (not perfkit's)": (plain_ok, {}),
    "closes mid-headers": (closing_mid_headers, {"connection": SENT}),
    "answers HTTP/1.0, delimited by closing": (http_1_0, {}),
    "redirects with a 302": (redirecting, {"redirect_302": SENT}),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_every_hostile_server_ends_in_time_with_a_correct_classification(
    name: str, servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    behaviour, errors = HOSTILE[name]
    outcome = perfkit_load(servers.start(behaviour(servers)) + "/", tmp_path, capsys, "--quiet")
    assert outcome.seconds < BOUND
    assert (outcome.status, outcome.err) == (cli.EXIT_OK, "")
    result = outcome.result
    found = dict(result["errors"])
    if "timeout" in errors and "unfinished" in found:
        # A request that a starved machine sent late can still be waiting at duration +
        # timeout, when the run gives up on it: unfinished is its right name then.
        found["timeout"] = found.get("timeout", 0) + found.pop("unfinished")
    assert (result["requests"], found) == (SENT, errors)
    assert result["successes"] == SENT - sum(errors.values())


def test_a_redirect_is_reported_as_its_own_cause(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(redirecting(servers)) + "/"
    outcome = perfkit_load(url, tmp_path, capsys, "--quiet", "--max-error-rate", "0")
    assert outcome.status == cli.EXIT_REGRESSION
    assert f"(redirect_302: {SENT})" in outcome.err
    assert f"redirect_302 {SENT}" in outcome.out


def test_a_304_not_modified_is_not_a_redirect(servers: LoopbackServers) -> None:
    url = servers.start(answering(servers, b"HTTP/1.1 304 Not Modified\r\n\r\n"))
    result = run(url, OpenModel(rate=RATE), duration=DURATION, request_timeout=TIMEOUT)
    assert (result.successes, result.errors) == (SENT, {})


def test_informational_responses_before_the_reply_are_skipped(servers: LoopbackServers) -> None:
    url = servers.start(answering(servers, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK))
    result = run(url, OpenModel(rate=RATE), duration=DURATION, request_timeout=TIMEOUT)
    assert (result.successes, result.errors) == (SENT, {})


def test_an_endless_event_stream_without_events_ends_in_time(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    url = servers.start(endless(servers, head, b"data: " + b"x" * 0x4000)) + "/"
    outcome = perfkit_load(url, tmp_path, capsys, "--quiet", "--stream")
    assert outcome.seconds < BOUND
    errors = outcome.result["errors"]
    assert sum(errors.values()) == SENT
    assert set(errors) <= {"timeout", "connection"}


def test_an_event_larger_than_the_cap_fails_the_stream() -> None:
    parser = EventParser(lambda _name: None)
    for _ in range(63):  # 63 lines of 16 KiB: under 1 MiB
        parser.feed(b"data: " + b"x" * 0x4000 + b"\n")
    with pytest.raises(ConnectionError, match="a server-sent event over 1 MiB"):
        parser.feed(b"data: " + b"x" * 0x4000 + b"\n")


def test_crlf_split_between_chunks_still_ends_an_event() -> None:
    names: list[str] = []
    parser = EventParser(names.append)
    for chunk in (b"event: token\r", b"\ndata: {}\r\n\r", b"\n", b"data: x\r\n\r\n"):
        parser.feed(chunk)
    assert names == ["token", "message"]


def test_close_delimited_and_redirect_responses_through_httpx(servers: LoopbackServers) -> None:
    async def statuses() -> list[int]:
        found = []
        for behaviour in (http_1_0, redirecting):
            client = HttpxClient(servers.start(behaviour(servers)), 1, TIMEOUT)
            try:
                found.append(await client.send(Request(), None))
            finally:
                await client.aclose()
        return found

    assert asyncio.run(statuses()) == [200, 302]


# The service's /metrics


METRICS: dict[str, Callable[[LoopbackServers], Handler]] = {
    "answers a counter that is no number": lambda servers: answering(
        servers, _ok_with(b"perfkit_cache_hits_total ok\n")
    ),
    "sends an endless body": endless_body,
    "trickles at 1 byte/s": lambda servers: trickling(
        servers, b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nperfkit_cache_hits_total 1\n"
    ),
    "never answers": silent,
    "is too large": lambda servers: answering(
        servers,
        b"HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\n\r\n"
        + b"perfkit_cache_hits_total 1\n" * (4000000 // 27)
        + b"\n" * (4000000 % 27),
    ),
}


@pytest.mark.parametrize("name", METRICS)
def test_a_perfkit_service_whose_metrics_misbehave_never_fails_or_prolongs_the_run(
    name: str, servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(perfkit_like(servers, METRICS[name](servers)))
    outcome = perfkit_load(f"{url}/chat", tmp_path, capsys, "--quiet")
    assert outcome.seconds < BOUND
    assert (outcome.status, outcome.err) == (cli.EXIT_OK, "")
    assert (outcome.result["successes"], outcome.result["errors"]) == (SENT, {})
    assert outcome.result["cache_hit_rate"] is None
    assert any(
        warning.startswith(f"the cache hit rate was not measured: {url}/metrics")
        for warning in outcome.result["warnings"]
    )


def test_a_plain_server_answering_ok_is_loaded_and_its_metrics_ignored(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(plain_ok(servers))
    outcome = perfkit_load(f"{url}/", tmp_path, capsys, "--quiet")
    assert (outcome.status, outcome.err) == (cli.EXIT_OK, "")
    assert outcome.result["successes"] == SENT
    assert not any("cache hit rate" in warning for warning in outcome.result["warnings"])
    paths = [head.split(b" ", 2)[1] for head in servers.requests]
    assert b"/metrics" not in paths  # not perfkit's service: its /metrics are none of ours


def test_metrics_url_names_where_the_cache_counts_are(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(plain_ok(servers))
    metrics = servers.start(counting_metrics(servers))
    outcome = perfkit_load(
        f"{url}/", tmp_path, capsys, "--quiet", "--metrics-url", f"{metrics}/metrics"
    )
    assert (outcome.status, outcome.err) == (cli.EXIT_OK, "")
    assert outcome.result["cache_hit_rate"] == 0.75
    assert "cache hit rate 75.0%" in outcome.out

    outcome = perfkit_load(
        f"{url}/", tmp_path, capsys, "--quiet", "--metrics-url", f"{url}/metrics"
    )  # a plain server: ok is no Prometheus text
    assert (outcome.status, outcome.err) == (cli.EXIT_OK, "")
    assert outcome.result["successes"] == SENT
    assert (
        f"the cache hit rate was not measured: {url}/metrics reported no perfkit cache counters"
    ) in outcome.result["warnings"]


def test_a_perfkit_service_is_recognised_by_its_healthz(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(perfkit_like(servers, counting_metrics(servers)))
    outcome = perfkit_load(f"{url}/chat", tmp_path, capsys, "--quiet")
    assert outcome.result["cache_hit_rate"] == 0.75
    assert not any("cache hit rate" in warning for warning in outcome.result["warnings"])


@pytest.mark.parametrize(("agent", "counts"), [("optimized", (0.0, 0.0)), ("naive", None)])
def test_perfkit_services_own_healthz_is_recognised(agent: Any, counts: Any) -> None:
    from perfkit.service import build_app

    async def read() -> tuple[float, float] | None:
        async with CacheCounter(build_app(agent=agent), deadline=30) as counter:
            counts = await counter.read()
        assert counter.warning is None
        return counts

    assert asyncio.run(read()) == counts  # the naive agent has no cache


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://127.0.0.1:99999/",
            "the URL's port must be an integer from 1 to 65535, got '99999'",
        ),
        ("http://127.0.0.1:0/", "the URL's port must be an integer from 1 to 65535, got '0'"),
        ("http://127.0.0.1:-1/", "the URL's port must be an integer from 1 to 65535, got '-1'"),
        ("http://127.0.0.1:abc/", "the URL's port must be an integer from 1 to 65535, got 'abc'"),
        ("http://[::1/", "the URL is malformed (Invalid IPv6 URL), got 'http://[::1/'"),
        ("http://:80/", "URL must be an http:// or https:// URL with a host, got 'http://:80/'"),
        (
            "http://alice@/",
            "URL must be an http:// or https:// URL with a host, got 'http://***@/'",
        ),
        ("http://a b/", "URL must be ASCII, with no spaces or control characters"),
        ("http://x/a\r\nX-Injected: 1", "got 'http://x/a\\r\\nX-Injected: 1'"),
        ("http://x/caf\u00e9", "URL must be ASCII, with no spaces or control characters"),
        (
            "http://alice:s3cr3t@127.0.0.1:99999/",
            "got '99999' (in 'http://alice:***@127.0.0.1:99999/')",
        ),
    ],
)
def test_a_malformed_url_is_a_usage_error(
    url: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["load", url, "--rate", "1", "--duration", "1"])
    err = capsys.readouterr().err
    assert status == cli.EXIT_USAGE
    assert err.count("\n") == 1
    assert err.startswith("perfkit load: error: ")
    assert message in err
    assert "s3cr3t" not in err


def test_metrics_url_is_checked_like_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["load", "http://x/", "--rate", "1", "--duration", "1", "--metrics-url", "ftp://y"]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        "perfkit load: error: --metrics-url must be an http:// or https:// URL with a host, "
        "got 'ftp://y'\n"
    )


def test_the_library_refuses_a_malformed_url_with_a_value_error() -> None:
    with pytest.raises(ValueError, match="port must be an integer from 1 to 65535, got '99999'"):
        run("http://127.0.0.1:99999", OpenModel(rate=1), duration=0.1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Request(path="/a\r\nX: 1"), "path must be ASCII and start with '/', with no"),
        (lambda: Request(path="/a b"), "path must be ASCII and start with '/', with no"),
        (
            lambda: Request(headers={"X": "a\r\nY: 1"}),
            "header X's value must be a str without CR, LF or NUL",
        ),
        (lambda: Request(headers={"X Y": "1"}), "header name must be a token, got 'X Y'"),
    ],
)
def test_a_request_cannot_inject_lines(make: Callable[[], Request], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make()


# Credentials in the URL


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_printed(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(perfkit_like(servers, counting_metrics(servers)))
    port = url.rpartition(":")[2]
    secret_url = f"http://alice:s3cr3t@127.0.0.1:{port}/chat"
    outcome = perfkit_load(secret_url, tmp_path, capsys, "--max-error-rate", "0")
    expected = "Basic " + base64.b64encode(b"alice:s3cr3t").decode()
    heads = [head.decode() for head in servers.requests]
    assert heads
    assert all(f"\r\nAuthorization: {expected}\r\n" in head for head in heads)
    assert all(f"\r\nHost: 127.0.0.1:{port}\r\n" in head for head in heads)
    assert outcome.result["target"] == f"http://alice:***@127.0.0.1:{port}"
    assert outcome.result["cache_hit_rate"] == 0.75  # /healthz and /metrics got it too
    shown = [outcome.out, outcome.err, outcome.json_out.read_text()]
    shown.append(outcome.markdown_out.read_text())
    assert f"http://alice:***@127.0.0.1:{port}" in outcome.out
    assert not any("s3cr3t" in text for text in shown)


def test_credentials_are_never_printed_in_warnings_or_failures(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(perfkit_like(servers, silent(servers)))
    port = url.rpartition(":")[2]
    outcome = perfkit_load(
        f"http://alice:s3cr3t@127.0.0.1:{port}/nowhere", tmp_path, capsys,
        "--metrics-url", f"http://bob:hunter2@127.0.0.1:{port}/metrics", "--max-error-rate", "0",
        "--slo", "p50=0",
    )  # fmt: skip
    shown = [outcome.out, outcome.err, outcome.json_out.read_text()]
    shown.append(outcome.markdown_out.read_text())
    assert f"http://bob:***@127.0.0.1:{port}/metrics" in outcome.out  # the warning
    assert not any(secret in text for text in shown for secret in ("s3cr3t", "hunter2"))


def test_httpx_sends_credentials_as_basic_auth(servers: LoopbackServers) -> None:
    url = servers.start(plain_ok(servers))

    async def send() -> int:
        client = HttpxClient(url.replace("http://", "http://alice:s3cr3t@"), 1, TIMEOUT)
        try:
            return await client.send(Request(), None)
        finally:
            await client.aclose()

    assert asyncio.run(send()) == 200
    head = servers.requests[0].decode().lower()
    assert "authorization: basic " + base64.b64encode(b"alice:s3cr3t").decode().lower() in head
    assert "s3cr3t" not in head.replace(base64.b64encode(b"alice:s3cr3t").decode().lower(), "")


def test_a_request_shows_no_credentials_in_its_repr() -> None:
    request = Request(headers={"Authorization": "Bearer s3cr3t", "x-api-key": "k3y", "X": "1"})
    assert "s3cr3t" not in repr(request)
    assert "k3y" not in repr(request)
    assert "'X': '1'" in repr(request)


def test_the_mean_latency_is_exact() -> None:
    histogram = LatencyHistogram()
    for seconds in (1.234567, 0.000001, 2.5):
        histogram.record(seconds)
    assert histogram.mean == pytest.approx((1.234567 + 0.000001 + 2.5) / 3, abs=1e-9)


@pytest.mark.slow  # about 7 s: the issue's own settings
@pytest.mark.parametrize("name", ["sends an endless body", "trickles at 1 byte/s"])
def test_the_issues_metrics_that_held_the_run_95_and_42_s(
    name: str, servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(perfkit_like(servers, METRICS[name](servers)))
    outcome = perfkit_load(
        f"{url}/chat", tmp_path, capsys, "--quiet", rate=10, duration=3, timeout=2
    )
    assert outcome.seconds < 3 + 2 + 1
    assert (outcome.status, outcome.err) == (cli.EXIT_OK, "")
    assert (outcome.result["successes"], outcome.result["errors"]) == (30, {})


def test_a_header_goes_with_every_request_and_the_services_metrics_unprinted(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(perfkit_like(servers, counting_metrics(servers)))
    outcome = perfkit_load(
        f"http://nobody:s3cr3t@{url.removeprefix('http://')}/chat", tmp_path, capsys,
        "--header", "Authorization: Bearer t0k3n", "--header", "X-Trace:  1 ",
    )  # fmt: skip
    heads = [head.decode() for head in servers.requests]
    paths = {head.split(" ", 2)[1] for head in heads}
    assert paths == {"/healthz", "/metrics", "/chat"}
    assert all("\r\nAuthorization: Bearer t0k3n\r\n" in head for head in heads)  # not basic
    assert all("\r\nX-Trace: 1\r\n" in head for head in heads if "/chat" in head)
    assert outcome.result["cache_hit_rate"] == 0.75
    shown = [outcome.out, outcome.err, outcome.json_out.read_text()]
    shown.append(outcome.markdown_out.read_text())
    assert not any(secret in text for text in shown for secret in ("t0k3n", "s3cr3t"))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Authorization Bearer t0k3n", "argument --header: must be 'NAME: VALUE' (curl's -H form)"),
        (": t0k3n", "argument --header: must be 'NAME: VALUE' (curl's -H form)"),
        ("X Y: t0k3n", "a header name must be a token, got 'X Y'"),
    ],
)
def test_a_malformed_header_is_a_usage_error_that_shows_no_value(
    header: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["load", "http://x/", "--rate", "1", "--duration", "1", "--header", header]
    try:
        status = cli.main(argv)
    except SystemExit as exited:
        status = int(exited.code or 0)
    err = capsys.readouterr().err
    assert status == cli.EXIT_USAGE
    assert err.count("\n") == 1
    assert message in err
    assert "t0k3n" not in err


# A second hostile review: what the first one missed


def extra_response_after_each(servers: LoopbackServers) -> Handler:
    """Answer each request, then start a response nobody asked for (its body never sent)."""
    junk = b"HTTP/1.1 500 Oops\r\nContent-Length: 1000\r\n\r\n"
    return answering(servers, OK + junk)


def endless_header_line(servers: LoopbackServers) -> Handler:
    """Send a status line, then one header line that never ends (up to 16 MiB)."""
    head = b"HTTP/1.1 200 OK\r\nX-Big: "
    chunk = b"a" * 0x10000
    counted = endless(servers, head, chunk)

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(counted(reader, writer), 3)

    return behaviour


SECOND_REVIEW: dict[str, tuple[Callable[[LoopbackServers], Handler], dict[str, int]]] = {
    "sends an extra response after each": (extra_response_after_each, {}),
    "sends a header line that never ends": (endless_header_line, {"connection": SENT}),
}


@pytest.mark.parametrize("name", SECOND_REVIEW)
def test_a_second_round_of_hostile_servers(
    name: str, servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    behaviour, errors = SECOND_REVIEW[name]
    outcome = perfkit_load(servers.start(behaviour(servers)) + "/", tmp_path, capsys, "--quiet")
    assert outcome.seconds < BOUND
    assert (outcome.result["requests"], outcome.result["errors"]) == (SENT, errors)


def test_a_response_head_is_capped_in_size() -> None:
    from perfkit.load._http import MAX_HEAD_BYTES, _Connection

    connection = _Connection()
    connection.connection_made(_NullTransport())

    async def exchange() -> None:
        waiting = asyncio.ensure_future(connection.exchange(b"GET / HTTP/1.1\r\n\r\n", None))
        await asyncio.sleep(0)
        connection.data_received(b"HTTP/1.1 200 OK\r\nX-Big: ")
        for _ in range(MAX_HEAD_BYTES // 0x4000 + 1):
            connection.data_received(b"a" * 0x4000)
        await waiting

    with pytest.raises(ConnectionError, match="response headers over"):
        asyncio.run(exchange())


class _NullTransport(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def close(self) -> None:
        pass


def responding(status: bytes, content_type: bytes, body: bytes) -> Callable[..., Handler]:
    head = b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
    return lambda servers: answering(servers, head % (status, content_type, len(body)) + body)


BIG = b"x" * (2 << 20)  # no blank line in 2 MiB: as events, one over the cap
STREAMED: dict[str, tuple[Callable[[LoopbackServers], Handler], dict[str, int]]] = {
    "a large error body": (responding(b"500 Oops", b"text/plain", BIG), {"http_500": SENT}),
    "a large JSON body": (responding(b"200 OK", b"application/json", b'"%s"' % BIG), {}),
}


@pytest.mark.parametrize("name", STREAMED)
@pytest.mark.parametrize("client", ["lean", "httpx"])
def test_stream_reads_events_only_from_an_event_stream(
    name: str, client: str, servers: LoopbackServers
) -> None:
    behaviour, errors = STREAMED[name]
    url = servers.start(behaviour(servers))
    target: Any = url
    if client == "httpx":
        target = _httpx_app(url)
    # Two requests, at 0 and 0.5 s, with time to spare: reading 2 MiB (through the relay,
    # on this loop) may take a busy machine a large part of a second, which with the
    # module's 0.25 s spacing and 0.5 s timeout made a late generator and a timeout.
    result = run(
        target,
        OpenModel(rate=2),
        duration=1.0,
        request_timeout=10.0,
        request=Request(stream=True),
    )
    assert (result.requests, result.errors) == (SENT, errors)


def _httpx_app(url: str) -> Any:
    """An ASGI app that relays each request to ``url`` (so the httpx client reads it)."""
    import httpx

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
        headers = [(b"content-type", response.headers["content-type"].encode())]
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": headers})  # fmt: skip
        await send({"type": "http.response.body", "body": response.content})

    return app


def test_events_end_with_a_lone_cr_too() -> None:
    names: list[str] = []
    parser = EventParser(names.append)
    for chunk in (b"event: token\rdata: {}\r", b"\r", b"event: done\rdata: {}\r\r", b"data: x"):
        parser.feed(chunk)
    assert names == ["token", "done"]


ESCAPES = b'perfkit_cache_hits_total{a="' + b'\\"' * 400_000 + b'"} 1\n'
"""Under 1 MiB, and slow to parse for a parser that backtracks over escapes."""


def test_metrics_that_are_slow_to_parse_never_prolong_the_run(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(perfkit_like(servers, answering(servers, _ok_with(ESCAPES))))
    outcome = perfkit_load(f"{url}/chat", tmp_path, capsys, "--quiet")
    assert outcome.seconds < BOUND
    assert (outcome.result["successes"], outcome.result["errors"]) == (SENT, {})


def _ok_with(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_the_cache_counts_are_read_line_by_line() -> None:
    from perfkit.load._service import parse_cache_counts

    text = (
        "# HELP perfkit_cache_hits_total hits\n"
        'perfkit_cache_hits_total{layer="l1",note="a } b"} 3 1700000000\n'
        "perfkit_cache_hits_total_created 99\n"
        "perfkit_cache_misses_total\t2\n"
    )
    assert parse_cache_counts(text) == (3.0, 2.0)
    start = time.perf_counter()
    parse_cache_counts(ESCAPES.decode())
    slow = time.perf_counter() - start
    start = time.perf_counter()
    parse_cache_counts("x" * len(ESCAPES))
    assert slow < 50 * (time.perf_counter() - start) + 0.05


@pytest.mark.parametrize("arrivals", ["constant", "poisson"])
def test_a_rate_the_generator_cannot_reach_still_ends_in_time(
    arrivals: Any, servers: LoopbackServers
) -> None:
    url = servers.start(plain_ok(servers))
    start = time.perf_counter()
    result = run(url, OpenModel(rate=1e7, arrivals=arrivals), duration=0.3, request_timeout=0.3)
    assert time.perf_counter() - start < 0.3 + 0.3 + 1
    if arrivals == "constant":
        assert result.requests == 3_000_000  # every request the schedule meant to send
    assert result.errors.get("generator_overload", 0) > 0
    assert result.successes > 0  # the requests it did start were sent, not starved


@pytest.mark.parametrize(
    "secret_url",
    [
        "http://alice:s3cr#t@127.0.0.1:80/",
        "http://alice:s3cr/t@127.0.0.1:80/",
        "http://alice:s3cr?t@127.0.0.1:80/",
    ],
)
def test_a_password_that_breaks_the_url_is_not_printed(
    secret_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["load", secret_url, "--rate", "1", "--duration", "1"],
        ["load", "http://127.0.0.1:80/", "--metrics-url", secret_url, "--rate", "1",
         "--duration", "1"],
    ):  # fmt: skip
        assert cli.main(argv) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "s3cr" not in err
        assert "t@" not in err


def test_a_header_value_http_cannot_carry_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["load", "http://127.0.0.1:80/", "--rate", "1", "--duration", "1"]
    assert cli.main([*argv, "--header", "X-Name: \u6f22\u5b57"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "must be ASCII text" in err
    assert "\u6f22" not in err


@pytest.mark.slow  # about 2 s: a perfkit process of its own, interrupted
def test_ctrl_c_ends_the_run_at_once_with_one_line(
    servers: LoopbackServers, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    url = servers.start(silent(servers))
    out = tmp_path / "result.json"
    # Ctrl-C's handler set explicitly: a shell without job control starts a background
    # process (a CI runner, say) with SIGINT ignored, and Python keeps it ignored.
    perfkit = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from perfkit.cli import main; sys.exit(main())"
    )
    argv = [sys.executable, "-c", perfkit, "load", f"{url}/", "--rate", "20", "--duration",
            "30", "--timeout", "30", "--json-out", str(out)]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    assert "sent" in process.stderr.readline()  # the first progress line: it is running
    process.send_signal(signal.SIGINT)
    start = time.perf_counter()
    _out, err = process.communicate(timeout=30)
    assert time.perf_counter() - start < 5
    assert process.returncode == cli.EXIT_INTERRUPTED
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "perfkit load: interrupted (no result written)"
    assert not out.exists()


def endless_informational(servers: LoopbackServers) -> Handler:
    """Answer with 100 Continue, again and again, and never with the reply."""
    return endless(servers, b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 1000)


def test_an_endless_run_of_informational_responses_is_a_timeout(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = servers.start(endless_informational(servers)) + "/"
    outcome = perfkit_load(url, tmp_path, capsys, "--quiet")
    assert outcome.seconds < BOUND
    found = dict(outcome.result["errors"])
    found["timeout"] = found.get("timeout", 0) + found.pop("unfinished", 0)
    assert found == {"timeout": SENT}  # small heads, each under the cap: no reply in time


def test_metrics_answered_just_inside_the_deadline_twice_never_prolong_the_run(
    servers: LoopbackServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from perfkit.load._service import METRICS_DEADLINE

    body = b"perfkit_cache_hits_total 1\nperfkit_cache_misses_total 1\n"

    async def slow_metrics(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await servers.read_request(reader)
            await asyncio.sleep(METRICS_DEADLINE * 0.8)
            writer.write(_ok_with(body))
            await writer.drain()

    routes = {"/healthz": perfkit_like(servers, silent(servers)), "/metrics": slow_metrics}
    url = servers.start(routed(servers, routes, silent(servers)))
    # 40 requests/s: the last is sent just before the end, and times out at duration + timeout
    outcome = perfkit_load(f"{url}/chat", tmp_path, capsys, "--quiet", rate=40)
    assert outcome.seconds < BOUND
    # The reading after the test got what the one before left of the budget (1.5 - 0.8
    # deadlines at most, too little): with a whole deadline each, the two could take all
    # of the 1 s allowed, and any hiccup went past it.
    (warning,) = outcome.result["warnings"]
    allowed = float(warning.partition("did not answer within ")[2].removesuffix(" s"))
    assert allowed <= METRICS_DEADLINE * 0.7


def test_users_the_generator_could_not_start_in_time_are_reported(
    servers: LoopbackServers,
) -> None:
    from perfkit.load import ClosedModel

    url = servers.start(plain_ok(servers))
    # Starting 2,000 users (a connection each) takes far longer than a millisecond.
    result = run(url, ClosedModel(users=2000), duration=0.001, request_timeout=TIMEOUT)
    (warning,) = [w for w in result.warnings if "users never sent a request" in w]
    idle = int(warning.partition(" users")[0].replace(",", ""))
    assert idle > 0
    assert result.requests >= 2000 - idle  # each user that started sent at least once


def test_closing_loopback_servers_hides_only_a_cancelled_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level("ERROR", logger="asyncio"):
            _ignore_a_handler_cancelled_before_it_ran(
                loop, {"message": "callback", "exception": asyncio.CancelledError()}
            )
            assert caplog.records == []
            _ignore_a_handler_cancelled_before_it_ran(
                loop, {"message": "callback", "exception": RuntimeError("boom")}
            )
        assert [record.getMessage() for record in caplog.records] == ["callback"]
    finally:
        loop.close()
