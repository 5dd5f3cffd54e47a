"""The simulated API's model catalog and its endpoints besides messages and batches."""

from __future__ import annotations

import re
import ssl
import typing
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Model
from anthropic.types import ModelInfo as SDKModelInfo

from perfkit import VirtualClock
from perfkit.simulation import AnthropicSimulator, LLMLatency, Reply
from perfkit.simulation.anthropic._models import MODELS, model_id, resolve

SDK_MODEL_NAMES: tuple[str, ...] = typing.get_args(typing.get_args(Model)[0])
DATED = re.compile(r"-\d{8}$")


def test_the_catalog_knows_every_model_the_sdk_names() -> None:
    assert all(resolve(name) is not None for name in SDK_MODEL_NAMES)
    assert {model.id for model in MODELS} <= set(SDK_MODEL_NAMES)


def test_an_alias_resolves_to_the_dated_id_the_sdk_lists_beside_it() -> None:
    for name in SDK_MODEL_NAMES:
        dated = [other for other in SDK_MODEL_NAMES if DATED.sub("", other) == name != other]
        assert model_id(name) == (dated[0] if dated else name)
    assert model_id("claude-opus-4-5") == "claude-opus-4-5-20251101"


def test_an_unknown_model_name_is_echoed() -> None:
    assert resolve("claude-simulated") is None
    assert model_id("claude-simulated") == "claude-simulated"


def test_each_model_is_a_valid_sdk_model_info() -> None:
    for model in MODELS:
        parsed = SDKModelInfo.model_validate(model.to_json())
        assert parsed.id == model.id
        assert parsed.max_tokens == model.max_output_tokens
        assert parsed.max_input_tokens == model.context_window
        assert 0 < model.min_cacheable_tokens < model.context_window


# -- through the SDK -----------------------------------------------------------------------

MODEL = "claude-simulated"
TLS = ssl.create_default_context()
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
IMAGE = {
    "type": "image",
    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
}
REQUESTS: dict[str, dict[str, Any]] = {
    "text": {"messages": [{"role": "user", "content": "What is the capital of France?"}]},
    "system": {
        "system": "You are a terse geographer.",
        "messages": [{"role": "user", "content": "Capital of Peru?"}],
    },
    "system blocks": {
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
    },
    "tools": {
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}],
            },
        ],
    },
    "image": {
        "messages": [{"role": "user", "content": [IMAGE, {"type": "text", "text": "What?"}]}]
    },
    "alias": {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "Hi"}],
    },
}


def sdk() -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test", http_client=anthropic.DefaultHttpxClient(verify=TLS))


def async_sdk() -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="test", http_client=anthropic.DefaultAsyncHttpxClient(verify=TLS)
    )


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator(clock=clock, latency=LLMLatency(ttft=0.4, per_token=0.01)) as sim:
        yield sim


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_count_tokens_equals_the_input_tokens_of_the_same_request(
    sim: AnthropicSimulator, name: str
) -> None:
    request = {"model": MODEL, **REQUESTS[name]}
    with sdk() as client:
        counted = client.messages.count_tokens(**request)
        message = client.messages.create(max_tokens=256, **request)
    assert counted.input_tokens > 0
    assert counted.input_tokens == message.usage.input_tokens


def test_count_tokens_async(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    request = {"model": MODEL, **REQUESTS["tools"]}

    async def main() -> tuple[int, int]:
        async with async_sdk() as client:
            counted = await client.messages.count_tokens(**request)
            message = await client.messages.create(max_tokens=256, **request)
        return counted.input_tokens, message.usage.input_tokens

    counted, used = clock.run(main())
    assert counted == used


def test_count_tokens_consumes_no_scripted_reply(sim: AnthropicSimulator) -> None:
    sim.enqueue(Reply.text("scripted"))
    with sdk() as client:
        client.messages.count_tokens(model=MODEL, **REQUESTS["text"])
        message = client.messages.create(model=MODEL, max_tokens=64, **REQUESTS["text"])
    assert message.content[0].type == "text"
    assert message.content[0].text == "scripted"


def test_count_tokens_validates_like_messages_but_takes_no_max_tokens(
    sim: AnthropicSimulator,
) -> None:
    with sdk() as client:
        with pytest.raises(anthropic.BadRequestError) as no_messages:
            client.messages.count_tokens(model=MODEL, messages=[])
        with pytest.raises(anthropic.BadRequestError) as max_tokens:
            client.messages.count_tokens(
                model=MODEL, extra_body={"max_tokens": 5}, **REQUESTS["text"]
            )
    assert no_messages.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in max_tokens.value.message


def test_models_list_pages_through_the_catalog(sim: AnthropicSimulator) -> None:
    with sdk() as client:
        listed = [model.id for model in client.models.list(limit=5)]  # auto-paginates
        first = client.models.list(limit=2)
        before = client.models.list(before_id=MODELS[3].id, limit=2)
    assert listed == [model.id for model in MODELS]
    assert [model.id for model in first.data] == [MODELS[0].id, MODELS[1].id]
    assert (first.first_id, first.last_id, first.has_more) == (MODELS[0].id, MODELS[1].id, True)
    assert [model.id for model in before.data] == [MODELS[1].id, MODELS[2].id]


def test_models_retrieve_resolves_an_alias(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    with sdk() as client:
        model = client.models.retrieve("claude-opus-4-5")
    assert model.id == "claude-opus-4-5-20251101"
    assert model.display_name == "Claude Opus 4.5"
    assert model.type == "model"

    async def main() -> str:
        async with async_sdk() as client:
            return (await client.models.retrieve("claude-haiku-4-5")).id

    assert clock.run(main()) == "claude-haiku-4-5-20251001"


def test_an_unknown_model_is_404_not_found(sim: AnthropicSimulator) -> None:
    with sdk() as client, pytest.raises(anthropic.NotFoundError) as missing:
        client.models.retrieve("claude-nonexistent")
    assert missing.value.status_code == 404
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "claude-nonexistent" in missing.value.message


def test_a_bad_models_limit_is_400(sim: AnthropicSimulator) -> None:
    with sdk() as client, pytest.raises(anthropic.BadRequestError, match="limit"):
        client.models.list(limit=0)


def test_count_tokens_counts_the_whole_prompt_when_part_of_it_is_cached(
    sim: AnthropicSimulator,
) -> None:
    # MessageTokensCount.input_tokens is "the total number of tokens across the provided
    # list of messages, system prompt, and tools"; a response's usage.input_tokens is only
    # the uncached rest, beside cache_creation_input_tokens and cache_read_input_tokens.
    system = [{"type": "text", "text": "word " * 5000, "cache_control": {"type": "ephemeral"}}]
    request: dict[str, Any] = {"model": "claude-sonnet-4-6", "system": system, **REQUESTS["text"]}
    with sdk() as client:
        counted = client.messages.count_tokens(**request).input_tokens
        usages = [client.messages.create(max_tokens=64, **request).usage for _ in range(2)]
    written, read = usages
    assert written.cache_creation_input_tokens
    assert read.cache_read_input_tokens
    for usage in usages:
        cached = (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
        assert counted == usage.input_tokens + cached


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/models/claude-opus-4-5"),
        ("POST", "/v1/messages/count_tokens"),
        ("GET", "/v1/messages/batches"),
    ],
)
def test_the_endpoints_check_the_credential_unless_relaxed(
    clock: VirtualClock, method: str, path: str
) -> None:
    body = {"model": MODEL, **REQUESTS["text"]} if method == "POST" else None
    url = f"https://api.anthropic.com{path}"
    for strict, status in ((True, 401), (False, 200)):
        with AnthropicSimulator(clock=clock, strict=strict), httpx.Client(verify=TLS) as client:
            response = client.request(method, url, json=body)
        assert response.status_code == status, response.text
        if status == 401:
            assert response.json()["error"]["type"] == "authentication_error"


def test_the_other_endpoints_cost_one_route_per_method(clock: VirtualClock) -> None:
    # respx builds mock call lists for each route: a route per endpoint made building a
    # simulator several times dearer.
    names = [route.name for route in AnthropicSimulator(clock=clock).router.routes]
    assert names == ["messages", "post_endpoints", "get_endpoints", "delete_endpoints"]


def test_the_endpoints_answer_under_a_base_url_with_a_path(clock: VirtualClock) -> None:
    base_url = "https://gateway.example/anthropic"
    with AnthropicSimulator(clock=clock, base_url=base_url):
        client = anthropic.Anthropic(api_key="test", base_url=base_url)
        with client:
            assert client.models.retrieve("claude-opus-4-5").id == "claude-opus-4-5-20251101"
            batch = client.messages.batches.create(
                requests=[
                    {
                        "custom_id": "a",
                        "params": {"max_tokens": 8, "model": MODEL, **REQUESTS["text"]},
                    }
                ]
            )
            clock.advance(60.0)
            assert [line.result.type for line in client.messages.batches.results(batch.id)] == [
                "succeeded"
            ]


@pytest.mark.parametrize("name", ["a/b", "claude-opus-4-5?x=1", "%2F", "a b"])
def test_an_odd_model_name_is_404_not_found(sim: AnthropicSimulator, name: str) -> None:
    with sdk() as client, pytest.raises(anthropic.NotFoundError) as missing:
        client.with_options(max_retries=0).models.retrieve(name)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert sim.pop_failures() == []
