"""LLM-aware keys and the caching messages.create, through the real SDK and the simulator."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import fakeredis
import pytest

from perfkit import AnthropicSimulator, LLMLatency, Reply, VirtualClock
from perfkit.cache import CachedMessages, MultiLayerCache, anthropic_request_key, request_content
from perfkit.cache._llm import samples

MODEL = "claude-sonnet-5"


def ask(question: str = "What is Python?", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": question}],
        **extra,
    }


# -- keys --------------------------------------------------------------------------------------


def test_cache_control_stream_metadata_and_transport_options_do_not_change_the_key() -> None:
    plain = ask(system=[{"type": "text", "text": "Be brief."}])
    decorated = ask(
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        stream=False,
        metadata={"user_id": "u-1"},
        extra_headers={"x-api-key": "sk-secret"},
        timeout=30,
    )
    assert anthropic_request_key(plain) == anthropic_request_key(decorated)
    assert "sk-secret" not in repr(request_content(decorated))


@pytest.mark.parametrize(
    "change",
    [
        {"model": "claude-opus-5"},
        {"max_tokens": 512},
        {"system": "Be brief."},
        {"tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]},
        {"tool_choice": {"type": "any"}},
        {"stop_sequences": ["END"]},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        {"extra_body": {"temperature": 0.0}},
        {"messages": [{"role": "user", "content": "What is Rust?"}]},
    ],
    ids=lambda change: next(iter(change)),
)
def test_anything_that_shapes_the_reply_changes_the_key(change: dict[str, Any]) -> None:
    assert anthropic_request_key(ask()) != anthropic_request_key({**ask(), **change})


def test_different_tools_or_system_prompts_never_share_a_key() -> None:
    tool = {"name": "search", "input_schema": {"type": "object"}}
    keys = {
        anthropic_request_key(ask(tools=[tool])),
        anthropic_request_key(ask(tools=[{**tool, "name": "lookup"}])),
        anthropic_request_key(ask(system="You are a pirate.")),
        anthropic_request_key(ask(system="You are a lawyer.")),
    }
    assert len(keys) == 4


def test_a_request_without_model_or_messages_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="a Messages request needs 'model'"):
        anthropic_request_key({"messages": []})


@pytest.mark.parametrize(
    ("request_fields", "sampling"),
    [
        ({}, False),
        ({"temperature": 0}, False),
        ({"temperature": 0.7}, True),
        ({"extra_body": {"temperature": 1.0}}, True),
        ({"extra_body": {"temperature": 0}}, False),
    ],
)
def test_samples(request_fields: dict[str, Any], sampling: bool) -> None:
    assert samples(ask(**request_fields)) is sampling


# -- the caching create ----------------------------------------------------------------------------


def test_repeated_requests_reach_the_api_once_and_return_the_sdks_message() -> None:
    clock = VirtualClock()
    with (
        AnthropicSimulator(latency=LLMLatency(ttft=3.0), clock=clock) as sim,
        anthropic.Anthropic(api_key="test") as client,
    ):
        messages = CachedMessages(client, MultiLayerCache(fakeredis.FakeRedis(), clock=clock))
        start = clock.now()
        first = messages.create(**ask())
        assert clock.elapsed(start) == 3.0
        start = clock.now()
        second = messages.create(**ask(metadata={"user_id": "someone-else"}))
        assert clock.elapsed(start) == 0.0
        assert sim.call_count == 1
    assert isinstance(second, anthropic.types.Message)
    assert second == first
    assert messages.cache_stats()["l1_hits"] == 1


def test_another_process_gets_the_reply_from_l2() -> None:
    redis_client = fakeredis.FakeRedis()
    with AnthropicSimulator() as sim, anthropic.Anthropic(api_key="test") as client:
        CachedMessages(client, MultiLayerCache(redis_client)).create(**ask())
        elsewhere = CachedMessages(client, MultiLayerCache(redis_client))
        reply = elsewhere.create(**ask())
        assert sim.call_count == 1
    assert reply.content[0].type == "text"
    assert elsewhere.cache_stats()["l2_hits"] == 1


def test_sampling_requests_bypass_the_cache_unless_opted_in() -> None:
    sampled = ask(extra_body={"temperature": 0.8})
    with AnthropicSimulator() as sim, anthropic.Anthropic(api_key="test") as client:
        messages = CachedMessages(client, MultiLayerCache(fakeredis.FakeRedis()))
        messages.create(**sampled)
        messages.create(**sampled)
        assert sim.call_count == 2
        opted_in = CachedMessages(
            client, MultiLayerCache(fakeredis.FakeRedis()), cache_sampled=True
        )
        opted_in.create(**sampled)
        opted_in.create(**sampled)
        assert sim.call_count == 3
    assert sim.requests[0].body["temperature"] == 0.8


def _text_of_stream(stream: Any) -> tuple[list[str], str]:
    kinds, text = [], ""
    with stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
    return kinds, text


def test_a_streamed_reply_is_recorded_then_replayed_as_a_stream() -> None:
    with AnthropicSimulator() as sim, anthropic.Anthropic(api_key="test") as client:
        sim.respond_with(Reply.text("Python is a programming language."))
        messages = CachedMessages(client, MultiLayerCache(fakeredis.FakeRedis()))
        live_kinds, live_text = _text_of_stream(messages.create(**ask(), stream=True))
        replayed_kinds, replayed_text = _text_of_stream(messages.create(**ask(), stream=True))
        plain = messages.create(**ask())  # the same key as the streamed request
        assert sim.call_count == 1
    assert replayed_text == live_text == "Python is a programming language."
    assert (replayed_kinds[0], replayed_kinds[-1]) == ("message_start", "message_stop")
    assert set(replayed_kinds) <= set(live_kinds)
    assert plain.content[0].text == live_text


def test_a_stream_cut_short_is_not_cached() -> None:
    with AnthropicSimulator() as sim, anthropic.Anthropic(api_key="test") as client:
        messages = CachedMessages(client, MultiLayerCache(fakeredis.FakeRedis()))
        with messages.create(**ask(), stream=True) as stream:
            assert next(iter(stream)).type == "message_start"
        _text_of_stream(messages.create(**ask(), stream=True))
        assert sim.call_count == 2


def test_a_streamed_tool_call_is_replayed_with_its_input() -> None:
    clock = VirtualClock()
    cache = MultiLayerCache(fakeredis.FakeAsyncRedis(), clock=clock)

    async def stream_twice() -> list[Any]:
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            messages = CachedMessages(client, cache)
            finals = []
            for _ in range(2):
                stream = await messages.create(**ask("Weather in Paris?"), stream=True)
                blocks: dict[int, str] = {}
                async with stream:
                    async for event in stream:
                        if (
                            event.type == "content_block_delta"
                            and event.delta.type == "input_json_delta"
                        ):
                            blocks[event.index] = (
                                blocks.get(event.index, "") + event.delta.partial_json
                            )
                finals.append(blocks)
            return finals

    with AnthropicSimulator(clock=clock) as sim:
        sim.respond_with(Reply.tool_use("get_weather", {"city": "Paris"}))
        live, replayed = clock.run(stream_twice())
        assert sim.call_count == 1
    assert [json.loads(text) for text in live.values()] == [{"city": "Paris"}]
    assert [json.loads(text) for text in replayed.values()] == [{"city": "Paris"}]


def test_async_client_concurrent_identical_requests_reach_the_api_once() -> None:
    clock = VirtualClock()
    cache = MultiLayerCache(fakeredis.FakeAsyncRedis(), clock=clock)

    async def main() -> list[str]:
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            messages = CachedMessages(client, cache)
            replies = await asyncio.gather(*(messages.create(**ask()) for _ in range(50)))
            return [reply.content[0].text for reply in replies]

    with AnthropicSimulator(latency=LLMLatency(ttft=2.0), clock=clock) as sim:
        sim.respond_with(Reply.text("A programming language."))
        start = clock.now()
        texts = clock.run(main())
        assert clock.elapsed(start) == 2.0
        assert sim.call_count == 1
    assert texts == ["A programming language."] * 50


def test_a_client_without_messages_is_a_type_error() -> None:
    with pytest.raises(
        TypeError, match=r"client must be an anthropic\.Anthropic or AsyncAnthropic"
    ):
        CachedMessages(object(), MultiLayerCache(None))


# -- a wrong-shaped entry under a request's key is corrupt: counted, evicted, refetched --------

WRONG_SHAPES = [
    pytest.param("not a message", id="str"),
    pytest.param([1, 2, 3], id="list"),
    pytest.param({"id": "msg_1"}, id="dict-missing-fields"),
    pytest.param({"content": "x", "usage": 3}, id="dict-wrong-types"),
]


def _plant(messages: CachedMessages, request: dict[str, Any], value: Any) -> str:
    key: str = messages._fetch.cache_key(request)
    messages.cache.store(key, value)
    return key


@pytest.mark.parametrize("wrong", WRONG_SHAPES)
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_a_wrong_shaped_entry_is_counted_evicted_and_the_api_called(
    wrong: Any, stream: bool
) -> None:
    redis_client = fakeredis.FakeRedis()
    with AnthropicSimulator() as sim, anthropic.Anthropic(api_key="test") as client:
        sim.respond_with(Reply.text("A programming language."))
        messages = CachedMessages(client, MultiLayerCache(redis_client))
        key = _plant(messages, ask(), wrong)
        if stream:
            first = _text_of_stream(messages.create(**ask(), stream=True))[1]
            again = _text_of_stream(messages.create(**ask(), stream=True))[1]
        else:
            first = messages.create(**ask()).content[0].text
            again = messages.create(**ask()).content[0].text
        assert sim.call_count == 1  # once for the evicted entry, then served from the cache
    assert first == again == "A programming language."
    assert messages.cache.stats()["corrupt"] == 1
    assert MultiLayerCache(redis_client).lookup(key).value != wrong  # L2 holds the reply now


@pytest.mark.parametrize("wrong", WRONG_SHAPES)
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_async_a_wrong_shaped_entry_is_counted_evicted_and_the_api_called(
    wrong: Any, stream: bool
) -> None:
    clock = VirtualClock()
    cache = MultiLayerCache(fakeredis.FakeAsyncRedis(), clock=clock)

    async def twice() -> list[str]:
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            messages = CachedMessages(client, cache)
            await cache.astore(messages._fetch.cache_key(ask()), wrong)
            texts = []
            for _ in range(2):
                if not stream:
                    texts.append((await messages.create(**ask())).content[0].text)
                    continue
                text = ""
                async with await messages.create(**ask(), stream=True) as events:
                    async for event in events:
                        if event.type == "content_block_delta":
                            text += event.delta.text
                texts.append(text)
            return texts

    with AnthropicSimulator(clock=clock) as sim:
        sim.respond_with(Reply.text("A programming language."))
        assert clock.run(twice()) == ["A programming language."] * 2
        assert sim.call_count == 1
    assert cache.stats()["corrupt"] == 1


# -- a stream recorded across an invalidation is not written back ----------------------------


def test_a_stream_that_began_before_an_invalidation_is_not_cached_after_it() -> None:
    with AnthropicSimulator() as sim, anthropic.Anthropic(api_key="test") as client:
        sim.respond_with(Reply.text("Old answer."))
        messages = CachedMessages(client, MultiLayerCache(fakeredis.FakeRedis()))
        stream = messages.create(**ask(), stream=True)
        messages._fetch.invalidate(ask())  # while the reply is still arriving
        assert _text_of_stream(stream)[1] == "Old answer."
        sim.respond_with(Reply.text("New answer."))
        assert messages.create(**ask()).content[0].text == "New answer."
        assert sim.call_count == 2


def test_async_a_stream_that_began_before_an_invalidation_is_not_cached_after_it() -> None:
    async def main() -> None:
        async with anthropic.AsyncAnthropic(api_key="test") as client:
            sim.respond_with(Reply.text("Old answer."))
            messages = CachedMessages(client, MultiLayerCache(fakeredis.FakeRedis()))
            stream = await messages.create(**ask(), stream=True)
            await messages._fetch.ainvalidate(ask())  # while the reply is still arriving
            text = ""
            async with stream:
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        text += event.delta.text
            assert text == "Old answer."
            sim.respond_with(Reply.text("New answer."))
            assert (await messages.create(**ask())).content[0].text == "New answer."
            assert sim.call_count == 2

    with AnthropicSimulator() as sim:
        asyncio.run(main())


def test_a_stream_invalidated_in_another_process_is_not_cached_in_l2() -> None:
    # The other process's invalidation reaches this one's L2 through the marker, not L1.
    server = fakeredis.FakeServer()
    with AnthropicSimulator() as sim, anthropic.Anthropic(api_key="test") as client:
        sim.respond_with(Reply.text("Old answer."))
        here = CachedMessages(client, MultiLayerCache(fakeredis.FakeRedis(server=server)))
        there = CachedMessages(client, MultiLayerCache(fakeredis.FakeRedis(server=server)))
        stream = here.create(**ask(), stream=True)
        there._fetch.invalidate(ask())
        assert _text_of_stream(stream)[1] == "Old answer."
        sim.respond_with(Reply.text("New answer."))
        assert there.create(**ask()).content[0].text == "New answer."
        assert sim.call_count == 2


def test_a_store_with_a_ticket_from_before_an_invalidation_writes_nothing() -> None:
    cache = MultiLayerCache(fakeredis.FakeRedis(), namespace="tickets")
    key = cache.key("entry")
    found, ticket = cache.lookup_for_fill(key)
    assert not found.hit
    cache.invalidate_key(key)
    cache.store(key, "computed before the invalidation", ticket=ticket)
    assert not cache.lookup(key).hit
    found, ticket = cache.lookup_for_fill(key)
    cache.store(key, "computed after it", ticket=ticket)
    cache.l1.clear()
    assert cache.lookup(key) == (True, "computed after it", "l2")
