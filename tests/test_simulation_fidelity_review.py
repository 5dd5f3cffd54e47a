"""A review of the simulated Messages API against the real one, as a demanding user would
probe it through the anthropic SDK: hostile output schemas, thinking round trips."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import jsonschema
import pydantic
import pytest

from perfkit import VirtualClock
from perfkit.simulation import AnthropicSimulator, LLMLatency, Reply
from perfkit.simulation.anthropic._output_format import MAX_VALUES, schema_instance

MODEL = "claude-sonnet-4-5"


def structured(schema: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Describe it"}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }


def _explosive(levels: int) -> dict[str, Any]:
    """Each definition requires the next one twice: 2**levels values in the instance."""
    defs = {
        f"L{i}": {
            "type": "object",
            "properties": {"a": {"$ref": f"#/$defs/L{i + 1}"}, "b": {"$ref": f"#/$defs/L{i + 1}"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        }
        for i in range(levels)
    }
    defs[f"L{levels}"] = {"type": "integer"}
    return {"$defs": defs, "$ref": "#/$defs/L0"}


def _deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"c": schema}, "required": ["c"]}
    return schema


NODE = {
    "type": "object",
    "properties": {"next": {"$ref": "#/$defs/Node"}},
    "required": ["next"],
    "additionalProperties": False,
}
HOSTILE: dict[str, Any] = {
    "recursive-required": {"$defs": {"Node": NODE}, "$ref": "#/$defs/Node"},
    "ref-to-itself": {"$ref": "#"},
    "ref-loop": {
        "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}},
        "$ref": "#/$defs/A",
    },
    "ref-nowhere": {"$ref": "#/$defs/Missing"},
    "external-ref": {"$ref": "https://example.com/schema.json"},
    "nested-200-deep": _deep(200),
    "doubling-definitions": _explosive(25),
    "huge-minLength": {"type": "string", "minLength": 10**9},
    "huge-minItems": {"type": "array", "items": {"type": "string"}, "minItems": 10**7},
    "false-schema": {"type": "object", "properties": {"a": False}, "required": ["a"]},
    "empty-enum": {"enum": []},
    "contradictory-allOf": {"allOf": [{"type": "integer"}, {"type": "string"}]},
    "backreference": {"type": "string", "pattern": "^(a)\\1$"},
    "lookahead": {"type": "string", "pattern": "^(?=x)x$"},
}


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_schema_gets_a_clear_400_not_a_crash(
    name: str, strict: bool, client: anthropic.Anthropic
) -> None:
    with AnthropicSimulator(clock=VirtualClock(), strict=strict) as sim:
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.messages.create(**structured(HOSTILE[name]))
        assert sim.call_count == 1
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("output_config.format.schema")
    assert len(message) < 20_000


def test_the_value_budget_bounds_a_doubling_schema() -> None:
    with pytest.raises(ValueError, match=f"more than {MAX_VALUES} values"):
        schema_instance(_explosive(25))


def test_an_infinite_bound_is_refused() -> None:
    # Python's json reads 1e400 as inf; the SDK cannot send it, a plain client can.
    with pytest.raises(ValueError, match="minimum: unusable bound inf"):
        schema_instance({"type": "integer", "minimum": float("inf")})


# The structured-outputs guide's JSON Schema limitations, which the SDK's transform strips.
UNSUPPORTED: dict[str, Any] = {
    "minimum": {"type": "integer", "minimum": 3},
    "multipleOf": {"type": "number", "multipleOf": 2},
    "minLength": {"type": "string", "minLength": 2},
    "maxLength": {"type": "string", "maxLength": 2},
    "minItems-2": {"type": "array", "items": {"type": "string"}, "minItems": 2},
    "maxItems": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    "oneOf": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
    "additionalProperties-true": {"type": "object", "additionalProperties": True},
    "format-unknown": {"type": "string", "format": "credit-card"},
    "enum-of-objects": {"enum": [{"a": 1}]},
    "recursive-optional": {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}},
                "required": ["next"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/Node",
    },
}


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_an_unsupported_schema_is_refused_by_a_strict_simulator_only(
    name: str, client: anthropic.Anthropic
) -> None:
    schema = UNSUPPORTED[name]
    with (
        AnthropicSimulator(clock=VirtualClock()),
        pytest.raises(anthropic.BadRequestError, match=r"output_config\.format\.schema"),
    ):
        client.messages.create(**structured(schema))
    if name in ("format-unknown", "enum-of-objects", "additionalProperties-true"):
        return  # valid JSON Schema the lenient simulator answers with any fitting value
    with AnthropicSimulator(clock=VirtualClock(), strict=False):
        message = client.messages.create(**structured(schema))
    jsonschema.Draft202012Validator(schema).validate(json.loads(message.content[0].text))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[A-Z]{3}-\d{4}$",
        r"^(?:foo|bar)+_[^a-z\s]\w*$",
        r"^\S+@\S+\.[a-z]{2,}$",
        r"v\d+\.\d+",
        r"^[^aA0_ -]$",
    ],
)
def test_a_pattern_gets_a_string_that_matches_it(pattern: str, client: anthropic.Anthropic) -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": pattern}},
        "required": ["code"],
        "additionalProperties": False,
    }
    with AnthropicSimulator(clock=VirtualClock()):
        message = client.messages.create(**structured(schema))
    jsonschema.Draft202012Validator(schema).validate(json.loads(message.content[0].text))  # type: ignore[union-attr]


class Tree(pydantic.BaseModel):
    label: str
    children: list[Tree]


def test_a_recursive_pydantic_model_is_refused_as_the_guide_says(
    client: anthropic.Anthropic,
) -> None:
    with (
        AnthropicSimulator(clock=VirtualClock()),
        pytest.raises(anthropic.BadRequestError, match="recursive schemas are not supported"),
    ):
        client.messages.parse(
            model=MODEL,
            max_tokens=1024,
            messages=[{"role": "user", "content": "A tree"}],
            output_format=Tree,
        )


# -- extended thinking ------------------------------------------------------------------------

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
THINKING = {"type": "enabled", "budget_tokens": 1024}


def _turn(client: anthropic.Anthropic, messages: list[Any], *, stream: bool) -> Any:
    ask: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 2048,
        "tools": [WEATHER_TOOL],
        "thinking": THINKING,
        "messages": messages,
    }
    if not stream:
        return client.messages.create(**ask)
    with client.messages.stream(**ask) as events:
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "streamed"])
def test_a_scripted_reply_without_thinking_still_thinks_first_when_thinking_is_on(
    stream: bool, client: anthropic.Anthropic
) -> None:
    """The API opens every reply with a thinking block when thinking is enabled, and refuses
    a tool-use loop whose last assistant turn does not open with one; a scripted tool call
    without a ThinkingBlock used to come back bare, and its own follow-up was refused."""
    with AnthropicSimulator(clock=VirtualClock(), latency=LLMLatency(ttft=0.1)) as sim:
        sim.enqueue(Reply.tool_use("get_weather", {"city": "Paris"}), Reply.text("Sunny."))
        messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
        first = _turn(client, messages, stream=stream)
        assert [block.type for block in first.content] == ["thinking", "tool_use"]
        assert first.content[0].thinking
        assert first.content[0].signature
        assert first.usage.output_tokens == sim.last_request.output_tokens
        call = first.content[1]
        messages += [
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True) for b in first.content],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ]
        second = _turn(client, messages, stream=stream)
    # The answer to the tool result continues the turn: no new thinking without the
    # interleaved-thinking beta (the guide's tool-use example).
    assert [block.type for block in second.content] == ["text"]
    assert second.content[0].text == "Sunny."


@pytest.mark.parametrize("stream", [False, True], ids=["json", "streamed"])
def test_omitted_thinking_is_signed_but_empty_and_still_takes_its_time(
    stream: bool, client: anthropic.Anthropic
) -> None:
    """``display: "omitted"`` (ThinkingConfigEnabledParam: "thinking content is redacted but
    a signature is returned"): an empty thinking block with its signature, no
    thinking_delta, the thinking still billed and still decoded before the text."""
    from perfkit.simulation import ThinkingBlock, count_tokens

    thought, answer = "Paris is in France and it is sunny there today", "Sunny."
    clock = VirtualClock()
    ask: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 2048,
        "thinking": {**THINKING, "display": "omitted"},
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    latency = LLMLatency(ttft=0.5, per_token=0.02)
    with AnthropicSimulator(clock=clock, latency=latency) as sim:
        sim.enqueue(Reply(ThinkingBlock(thought), answer))
        start = clock.now()
        if stream:
            with client.messages.stream(**ask) as events:
                kinds = [event.type for event in events]
                message = events.get_final_message()
            assert "thinking" not in kinds
            assert kinds.count("signature") == 1
        else:
            message = client.messages.create(**ask)
        elapsed = clock.elapsed(start)
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == ""
    assert message.content[0].signature
    tokens = count_tokens(thought) + count_tokens(answer)
    assert message.usage.output_tokens == tokens
    assert elapsed == round(0.5 + (tokens - 1) * 0.02, 6)


# -- prompt caching ---------------------------------------------------------------------------

DOCUMENT = " ".join(["clause"] * 2000)  # 2,000 simulator tokens: above every minimum


def _cached_question(question: str) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": DOCUMENT, "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": question},
                ],
            }
        ],
    }


def test_a_cache_write_is_read_only_once_its_response_has_begun() -> None:
    """The prompt-caching guide: a cache entry is available only after the first response
    begins, so parallel requests with the same prefix all write it. Here the response begins
    with its first token, 2 s after the request; a request sent with it writes too, one
    sent 2.5 s later (before the first response ends) reads."""
    import asyncio

    clock = VirtualClock()
    latency = LLMLatency(ttft=2.0, per_token=0.1)

    async def scenario() -> list[anthropic.types.Usage]:
        async with anthropic.AsyncAnthropic(api_key="test", max_retries=0) as client:

            async def ask(question: str, after: float) -> anthropic.types.Usage:
                await clock.asleep(after)
                reply = await client.messages.create(**_cached_question(question))
                return reply.usage

            return list(await asyncio.gather(ask("one", 0.0), ask("two", 0.0), ask("three", 2.5)))

    with AnthropicSimulator(clock=clock, latency=latency) as sim:
        for _ in range(3):
            sim.enqueue(Reply.of_tokens(20))
        first, alongside, later = clock.run(scenario())
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (2000, 0)
    assert (alongside.cache_creation_input_tokens, alongside.cache_read_input_tokens) == (2000, 0)
    assert (later.cache_creation_input_tokens, later.cache_read_input_tokens) == (0, 2000)


def test_adaptive_thinking_shows_the_scripted_thinking(client: anthropic.Anthropic) -> None:
    """``{"type": "adaptive"}``: "Claude decides when and how much to think"
    (message_create_params.py). A scripted thinking block is what it decided; it used to be
    dropped, as if thinking were off. Nothing is implied when the script has none."""
    from perfkit.simulation import ThinkingBlock, count_tokens

    thought = " ".join(["ponder"] * 1500)  # no budget_tokens caps adaptive thinking
    ask: dict[str, Any] = {
        "model": "claude-opus-4-6",
        "max_tokens": 4096,
        "thinking": {"type": "adaptive"},
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    with AnthropicSimulator(clock=VirtualClock()) as sim:
        sim.enqueue(Reply(ThinkingBlock(thought), "Sunny."), Reply.text("Sunny."))
        thinking = client.messages.create(**ask)
        plain = client.messages.create(**ask)
    assert [block.type for block in thinking.content] == ["thinking", "text"]
    assert thinking.content[0].thinking == thought
    assert thinking.usage.output_tokens == count_tokens(thought) + 1
    assert [block.type for block in plain.content] == ["text"]


# -- the SDK's types, streamed and not ----------------------------------------------------------


def _extras(value: object, path: str = "message") -> list[str]:
    """Fields the SDK's models do not declare, anywhere in a parsed response."""
    if isinstance(value, pydantic.BaseModel):
        found = [f"{path}: {sorted(value.__pydantic_extra__)}"] if value.__pydantic_extra__ else []
        for name in type(value).model_fields:
            found += _extras(getattr(value, name), f"{path}.{name}")
        return found
    if isinstance(value, list):
        return [extra for i, item in enumerate(value) for extra in _extras(item, f"{path}[{i}]")]
    return []


def _cases() -> dict[str, tuple[Reply, dict[str, Any]]]:
    from perfkit.simulation import RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolUseBlock

    question = [{"role": "user", "content": "Weather in Paris?"}]
    base: dict[str, Any] = {"model": MODEL, "max_tokens": 2048, "messages": question}
    tools = {**base, "tools": [WEATHER_TOOL]}
    thinking = {**base, "thinking": THINKING}
    call = ToolUseBlock("get_weather", {"city": "Paris, France"})
    return {
        "text": (Reply.text("Sunny and warm"), base),
        "tool": (Reply(TextBlock("Checking."), call), tools),
        "thinking-tool": (Reply(ThinkingBlock("I need the tool"), call), {**tools, **thinking}),
        "redacted": (Reply(RedactedThinkingBlock("EmwKAhgBEgy3"), "Sunny"), thinking),
        "cut-text": (Reply.text("one two three four five"), {**base, "max_tokens": 3}),
        "cut-tool": (Reply(call), {**tools, "max_tokens": 4}),
        "stop-sequence": (Reply.text("one two STOP three"), {**base, "stop_sequences": ["STOP"]}),
        "cached": (Reply.text("ok"), _cached_question("Summarise")),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_a_stream_ends_in_the_message_create_returns_in_the_sdks_types_exactly(
    case: str, client: anthropic.Anthropic
) -> None:
    reply, ask = _cases()[case]
    with AnthropicSimulator(clock=VirtualClock()) as sim:
        sim.enqueue(reply, reply, reply)
        created = client.messages.create(**ask)
        sim.reset()
        sim.enqueue(reply, reply)
        with client.messages.stream(**ask) as stream:
            events = list(stream)
            streamed = stream.get_final_message()
        sim.reset()
        sim.enqueue(reply)
        raw = list(client.messages.create(**ask, stream=True))
    assert streamed.model_dump(exclude={"parsed_output"}) == created.model_dump()
    found = _extras(created) + _extras(streamed) + _extras(events) + _extras(raw)
    assert found == []


class Constrained(pydantic.BaseModel):
    count: int = pydantic.Field(ge=3, le=9)
    tags: list[str] = pydantic.Field(min_length=2)
    email: str = pydantic.Field(pattern=r"^\S+@\S+\.[a-z]+$", max_length=40)
    code: str = pydantic.Field(min_length=12)


def test_constraints_the_sdk_moves_into_descriptions_are_honoured(
    client: anthropic.Anthropic,
) -> None:
    """messages.parse strips what the API does not support (ge, min_length, pattern, ...)
    into each field's description, "{minimum: 3, maximum: 9}" (lib/_parse/_transform.py),
    for the model to follow, and validates the reply against the pydantic model: the
    model reads them, and so does the default reply, or parse fails where the API's
    answer would pass."""
    with AnthropicSimulator(clock=VirtualClock()):
        message = client.messages.parse(
            model=MODEL,
            max_tokens=1024,
            messages=[{"role": "user", "content": "Fill it in"}],
            output_format=Constrained,
        )
    parsed = message.parsed_output
    assert isinstance(parsed, Constrained)
    assert parsed.count == 3
    assert len(parsed.tags) == 2


@pytest.mark.parametrize(
    "hint",
    [
        "{pattern: ^(?=x)x$}",
        "{minLength: 1000000000}",
        "{multipleOf: 0}",
        "{minimum: inf}",
        "{minItems: -3}",
        "{minimum: 5, maximum: 1}",
    ],
)
def test_a_description_hint_never_makes_a_request_fail(
    hint: str, client: anthropic.Anthropic
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "description": hint},
            "s": {"type": "string", "description": hint},
            "a": {"type": "array", "items": {"type": "string"}, "description": hint},
        },
        "required": ["n", "s", "a"],
        "additionalProperties": False,
    }
    with AnthropicSimulator(clock=VirtualClock()):
        message = client.messages.create(**structured(schema))
    jsonschema.Draft202012Validator(schema).validate(json.loads(message.content[0].text))  # type: ignore[union-attr]


@pytest.mark.parametrize("after", [0, 3, 10])
def test_a_stream_error_inside_omitted_thinking_comes_when_it_would_if_shown(
    after: int, client: anthropic.Anthropic
) -> None:
    from perfkit.simulation import Fault, ThinkingBlock

    reply = Reply(ThinkingBlock(" ".join(["step"] * 10)), "x y z")
    times = []
    for display in ("summarized", "omitted"):
        clock = VirtualClock()
        with AnthropicSimulator(clock=clock, latency=LLMLatency(ttft=0.5, per_token=0.1)) as sim:
            sim.enqueue(Fault.stream_error(after_tokens=after, reply=reply))
            thinking = {**THINKING, "display": display}
            ask = {"model": MODEL, "max_tokens": 2048, "thinking": thinking}
            question = [{"role": "user", "content": "hi"}]
            with (
                pytest.raises(anthropic.APIStatusError, match="overloaded"),
                client.messages.stream(**ask, messages=question) as stream,
            ):
                stream.until_done()
            times.append(clock.now())
    assert times[0] == times[1]
