"""Structured output: the JSON schema a request asks for, and a small reply valid against it.

A request asks for JSON output with ``output_config.format = {"type": "json_schema",
"schema": {...}}`` (``output_config_param.py``, ``json_output_format_param.py``); the SDK's
``messages.parse(output_format=Model)`` sends a model's schema there, transformed by
``anthropic/lib/_parse/_transform.py`` (``$defs`` and ``$ref``, ``anyOf``, ``enum``,
``const``, ``additionalProperties: false``, string ``format``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_FORMATS: Mapping[str, str] = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "hostname": "example.com",
    "uri": "https://example.com/",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
"""A value of each string format the SDK's schema transform keeps (``SupportedStringFormats``)."""

_MAX_DEPTH = 32


def output_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The JSON schema request ``body`` asks the reply to follow, or None.

    >>> output_schema({"output_config": {"format": {"type": "json_schema", "schema": {}}}})
    {}
    """
    config = body.get("output_config")
    wanted = config.get("format") if isinstance(config, Mapping) else None
    if not isinstance(wanted, Mapping) or wanted.get("type") != "json_schema":
        return None
    schema = wanted.get("schema")
    return schema if isinstance(schema, Mapping) else None


def schema_instance(schema: Mapping[str, Any]) -> Any:
    """A small JSON value valid against ``schema``: only the required properties, the first
    ``enum`` value or ``anyOf`` variant, as few array items as allowed, numbers and strings
    at their lower bounds.

    >>> schema_instance({"type": "object", "properties": {"n": {"type": "integer",
    ...     "minimum": 3}, "s": {"type": "string"}}, "required": ["n"]})
    {'n': 3}
    """
    return _instance(schema, schema, 0)


def _instance(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    if depth > _MAX_DEPTH:  # a schema that requires itself has no finite instance
        return None
    if "$ref" in schema:
        return _instance(_resolve(root, str(schema["$ref"])), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return _instance(schema[key][0], root, depth + 1)
    if schema.get("allOf"):
        return _all_of(schema["allOf"], root, depth + 1)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required") or []
        return {name: _instance(properties.get(name) or {}, root, depth + 1) for name in required}
    if kind == "array":
        return [_instance(schema.get("items") or {}, root, depth + 1)] * schema.get("minItems", 0)
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    return None


def _all_of(parts: list[Mapping[str, Any]], root: Mapping[str, Any], depth: int) -> Any:
    merged: dict[str, Any] = {}
    for part in parts:
        value = _instance(part, root, depth)
        if not isinstance(value, dict):
            return value
        merged.update(value)
    return merged


def _resolve(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    """The schema a local ``$ref`` (``#/$defs/Name``) points at; ``{}`` if it points nowhere."""
    node: Any = root
    for part in ref.removeprefix("#").strip("/").split("/") if ref.strip("#/") else []:
        key = part.replace("~1", "/").replace("~0", "~")
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _string(schema: Mapping[str, Any]) -> str:
    text = _FORMATS.get(str(schema.get("format")), "simulated").ljust(
        schema.get("minLength", 0), "x"
    )
    high = schema.get("maxLength")
    return text if high is None else text[:high]


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    low = schema.get("minimum")
    if "exclusiveMinimum" in schema:
        above = schema["exclusiveMinimum"] + 1
        low = above if low is None else max(low, above)
    high = schema.get("maximum")
    if "exclusiveMaximum" in schema:
        below = schema["exclusiveMaximum"] - 1
        high = below if high is None else min(high, below)
    value = low if low is not None else min(0, high) if high is not None else 0
    step = schema.get("multipleOf") or (1 if integer else None)
    if step:
        value = math.ceil(value / step) * step
    return int(value) if integer else value
