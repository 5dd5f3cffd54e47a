"""Structured output: a request with ``output_config.format`` gets JSON valid against its schema."""

from __future__ import annotations

import json
import ssl
from typing import Any, Literal

import anthropic
import jsonschema
import pydantic
import pytest

from perfkit import VirtualClock
from perfkit.simulation import AnthropicSimulator, Reply, SimRequest, SimulatedAssistant
from perfkit.simulation.anthropic._output_format import output_schema, schema_instance

MODEL = "claude-sonnet-4-5"
TLS = ssl.create_default_context()

SCHEMAS: dict[str, dict[str, Any]] = {
    "object": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    "nested": {
        "type": "object",
        "properties": {
            "owner": {
                "type": "object",
                "properties": {"email": {"type": "string", "format": "email"}},
                "required": ["email"],
                "additionalProperties": False,
            },
            "note": {"type": "string"},
        },
        "required": ["owner"],
        "additionalProperties": False,
    },
    "enum-and-const": {
        "type": "object",
        "properties": {
            "colour": {"type": "string", "enum": ["red", "green"]},
            "kind": {"const": "fixed"},
            "ok": {"type": "boolean"},
        },
        "required": ["colour", "kind", "ok"],
        "additionalProperties": False,
    },
    "arrays": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "points": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                    "required": ["x", "y"],
                    "additionalProperties": False,
                },
                "minItems": 1,
            },
        },
        "required": ["tags", "points"],
        "additionalProperties": False,
    },
    "bounds": {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 3, "maximum": 9},
            "above": {"type": "integer", "exclusiveMinimum": 10},
            "negative": {"type": "number", "maximum": -2.5},
            "even": {"type": "integer", "minimum": 5, "multipleOf": 2},
            "code": {"type": "string", "minLength": 12, "maxLength": 12},
            "short": {"type": "string", "maxLength": 3},
        },
        "required": ["count", "above", "negative", "even", "code", "short"],
        "additionalProperties": False,
    },
    "refs-and-nullables": {
        "$defs": {
            "Item": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "when": {"type": "string", "format": "date-time"},
                },
                "required": ["sku", "when"],
                "additionalProperties": False,
            }
        },
        "type": "object",
        "properties": {
            "item": {"$ref": "#/$defs/Item"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
            "either": {"type": ["null", "string"]},
        },
        "required": ["item", "maybe", "either"],
        "additionalProperties": False,
    },
    "all-of": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    },
    "top-level-array": {"type": "array", "items": {"type": "integer"}, "minItems": 3},
}


def sdk() -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test", http_client=anthropic.DefaultHttpxClient(verify=TLS))


def structured(schema: dict[str, Any], question: str = "Describe it") -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": question}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }


@pytest.mark.parametrize("name", SCHEMAS)
def test_a_schema_instance_is_valid_against_its_schema(name: str) -> None:
    schema = SCHEMAS[name]
    jsonschema.Draft202012Validator(schema).validate(schema_instance(schema))


@pytest.mark.parametrize("name", ["object", "arrays", "refs-and-nullables"])
def test_the_default_reply_is_json_valid_against_the_schema(name: str) -> None:
    # minItems 2 is beyond what the API supports: only a lenient simulator answers it.
    with AnthropicSimulator(clock=VirtualClock(), strict=name != "arrays"), sdk() as client:
        message = client.messages.create(**structured(SCHEMAS[name]))
    jsonschema.Draft202012Validator(SCHEMAS[name]).validate(json.loads(message.content[0].text))


def test_a_streamed_reply_is_json_valid_against_the_schema() -> None:
    schema = SCHEMAS["nested"]
    with (
        AnthropicSimulator(clock=VirtualClock()),
        sdk() as client,
        client.messages.stream(**structured(schema)) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    jsonschema.Draft202012Validator(schema).validate(json.loads(text))
    assert final.usage.output_tokens > 0


class Weather(pydantic.BaseModel):
    city: str
    celsius: float
    sky: Literal["clear", "cloudy", "rain"]
    hourly: list[int]
    wind: int | None = None


def test_the_sdk_parses_the_reply_into_its_output_format_type() -> None:
    with AnthropicSimulator(clock=VirtualClock()), sdk() as client:
        message = client.messages.parse(
            model=MODEL,
            max_tokens=1024,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            output_format=Weather,
        )
    parsed = message.parsed_output
    assert isinstance(parsed, Weather)
    assert parsed.sky == "clear"


def test_a_scripted_reply_is_sent_as_scripted() -> None:
    with AnthropicSimulator(clock=VirtualClock()) as sim, sdk() as client:
        sim.enqueue(Reply.text("not JSON at all"))
        message = client.messages.create(**structured(SCHEMAS["object"]))
    assert message.content[0].text == "not JSON at all"


def test_a_request_without_output_config_gets_prose() -> None:
    with AnthropicSimulator(clock=VirtualClock()), sdk() as client:
        body = structured(SCHEMAS["object"])
        del body["output_config"]
        message = client.messages.create(**body)
    with pytest.raises(json.JSONDecodeError):
        json.loads(message.content[0].text)


def test_the_simulated_assistant_answers_in_the_schema() -> None:
    schema = SCHEMAS["enum-and-const"]
    body = structured(schema, "Pick a colour")
    reply = SimulatedAssistant(seed=3)(
        SimRequest(0, "POST", "https://api.anthropic.com/v1/messages", {}, body, 0.0)
    )
    (block,) = reply.blocks
    jsonschema.Draft202012Validator(schema).validate(json.loads(block.text))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"output_config": {"effort": "low"}},
        {"output_config": {"format": None}},
        {"output_config": {"format": {"type": "text"}}},
    ],
)
def test_no_schema_is_asked_for_without_a_json_schema_format(body: dict[str, Any]) -> None:
    assert output_schema(body) is None
