"""Regressions found in review of perfkit.cache: each test failed before its fix."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import anthropic
import fakeredis
import pytest

from perfkit import AnthropicSimulator, VirtualClock
from perfkit.cache import CachedMessages, MultiLayerCache, anthropic_request_key, cached
from perfkit.cache._singleflight import ThreadFlights
from perfkit.cache._streams import ReplayedStream


def test_a_key_function_is_called_on_every_call_not_memoised() -> None:
    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")
    cache = MultiLayerCache(None)

    @cached(cache, key=lambda user: f"{tenant.get()}:{user}")
    def profile(user: int) -> str:
        return f"{tenant.get()}'s user {user}"

    tenant.set("acme")
    assert profile(1) == "acme's user 1"
    tenant.set("globex")
    assert profile(1) == "globex's user 1"


def test_resetting_stats_does_not_stop_the_hot_path_counting() -> None:
    cache = MultiLayerCache(None)

    @cached(cache)
    def double(x: int) -> int:
        return 2 * x

    double(1)
    cache.stats_counters.reset()
    for _ in range(3):
        double(1)
    assert cache.stats()["l1_hits"] == 3


def test_a_client_that_decodes_responses_is_refused() -> None:
    with pytest.raises(ValueError, match="decode_responses=True"):
        MultiLayerCache(fakeredis.FakeRedis(decode_responses=True))


def test_invalidate_reports_when_redis_could_not_be_told() -> None:
    server = fakeredis.FakeServer()
    cache = MultiLayerCache(fakeredis.FakeRedis(server=server))

    @cached(cache)
    def price() -> int:
        return 10

    price()
    assert price.invalidate() is True
    server.connected = False
    assert price.invalidate() is False
    assert cache.delete("anything") is False


def test_a_thread_that_joins_after_another_finished_reads_l1_not_the_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    cache = MultiLayerCache(None)

    @cached(cache)
    def slow(x: int) -> int:
        calls.append(x)
        return x

    real_join = ThreadFlights.join
    raced = threading.Event()

    def join_after_a_rival_finished(self: ThreadFlights, key: Any) -> Any:
        if not raced.is_set():  # between this caller's L1 miss and its join...
            raced.set()
            rival = threading.Thread(target=slow, args=(7,))
            rival.start()
            rival.join()  # ...another thread computes and stores the value
        return real_join(self, key)

    monkeypatch.setattr(ThreadFlights, "join", join_after_a_rival_finished)
    assert slow(7) == 7
    assert calls == [7]


def test_cache_control_inside_a_tools_input_is_data_and_stays_in_the_key() -> None:
    def request(directive: str) -> dict[str, Any]:
        block = {
            "type": "tool_use",
            "id": "t1",
            "name": "fetch",
            "input": {"cache_control": directive},
        }
        return {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "assistant", "content": [block]}],
        }

    assert anthropic_request_key(request("no-store")) != anthropic_request_key(
        request("max-age=60")
    )


def test_get_returns_a_live_entry_even_with_early_refresh() -> None:
    clock = VirtualClock()
    redis_client = fakeredis.FakeRedis()
    MultiLayerCache(redis_client, clock=clock).store("perfkit:v1:x", 1, compute_seconds=5.0)
    clock.advance(299)
    reader = MultiLayerCache(redis_client, clock=clock, early_refresh=1e9)
    assert reader.get("x") == 1


def test_async_streams_close_with_await() -> None:
    clock = VirtualClock()
    cache = MultiLayerCache(fakeredis.FakeAsyncRedis(), clock=clock)

    async def stream_and_close() -> None:
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            messages = CachedMessages(client, cache)
            request = {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            }
            cut = await messages.create(**request, stream=True)
            await cut.close()  # cut short: nothing cached
            live = await messages.create(**request, stream=True)
            assert [event.type async for event in live][-1] == "message_stop"
            await live.close()
            replayed = await messages.create(**request, stream=True)
            assert isinstance(replayed, ReplayedStream)
            await replayed.close()

    with AnthropicSimulator(clock=clock):
        clock.run(stream_and_close())
    assert ReplayedStream([]).close() is None  # a sync replay closes without await


@pytest.mark.parametrize(("factor", "recomputed"), [(1e9, True), (1e-9, False), (0.0, False)])
def test_early_refresh_applies_to_entries_held_in_l1(factor: float, recomputed: bool) -> None:
    clock = VirtualClock()
    cache = MultiLayerCache(None, clock=clock, early_refresh=factor)
    calls: list[int] = []

    @cached(cache, ttl=100)
    def expensive() -> int:
        calls.append(1)
        clock.sleep(2.0)  # what a recompute costs feeds the XFetch draw
        return len(calls)

    assert expensive() == 1
    clock.advance(90)  # 8 s before expiry
    assert expensive() == (2 if recomputed else 1)
    assert cache.stats()["early_refreshes"] == (1 if recomputed else 0)
    assert cache.stats()["total_requests"] == 2
