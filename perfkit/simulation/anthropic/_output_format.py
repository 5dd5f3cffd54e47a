"""Structured output: the JSON schema a request asks for, and a small reply valid against it.

A request asks for JSON output with ``output_config.format = {"type": "json_schema",
"schema": {...}}`` (``output_config_param.py``, ``json_output_format_param.py``); the SDK's
``messages.parse(output_format=Model)`` sends a model's schema there, transformed by
``anthropic/lib/_parse/_transform.py`` (``$defs`` and ``$ref``, ``anyOf``, ``enum``,
``const``, ``additionalProperties: false``, string ``format``).

What the API refuses follows the structured-outputs guide's "JSON Schema limitations"
(platform.claude.com/docs/en/build-with-claude/structured-outputs: recursive schemas,
external ``$ref``, numerical and string-length constraints, array constraints beyond
``minItems`` 0 or 1, ``additionalProperties`` other than ``false``, complex ``enum``
values; regular expressions without backreferences, lookarounds or word boundaries),
which the SDK's transform mirrors: it moves exactly those keywords (and ``oneOf``, which it
rewrites as ``anyOf``) out of the schema before sending it. The guide answers them with a
400; its wording is not recorded, so the messages here name the schema path and the rule.
"""

from __future__ import annotations

import math
import re
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

MAX_DEPTH = 64
"""Schema nesting (``$ref`` hops included) the simulator follows before it refuses a schema."""
MAX_SIZE = 10_000
"""The longest string and the most array items the simulator writes into a reply."""

_PATH = "output_config.format.schema"
_UNSUPPORTED = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "prefixItems",
    "contains",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
    "unevaluatedItems",
    "not",
    "if",
    "oneOf",
)
"""Keywords the guide lists as unsupported, or the SDK's transform never sends."""


class UnsupportedSchema(ValueError):
    """An output schema the API refuses, or one no value the simulator can write satisfies."""


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


def output_format_problem(body: Mapping[str, Any], *, strict: bool) -> str | None:
    """Why request ``body``'s output schema is refused (a 400 ``invalid_request_error``
    message), or None. ``strict`` applies the API's schema limitations; either way a schema
    the simulator finds no valid value for is refused rather than answered with JSON that
    does not match it."""
    schema = output_schema(body)
    if schema is None:
        return None
    try:
        if strict:
            _check_supported(schema, schema, _PATH, 0)
        schema_instance(schema)
    except UnsupportedSchema as problem:
        return str(problem)
    return None


def schema_instance(schema: Mapping[str, Any]) -> Any:
    """A small JSON value valid against ``schema``: only the required properties, the first
    ``enum`` value or ``anyOf`` variant that fits, as few array items as allowed, numbers and
    strings at their lower bounds, a string matching its ``pattern``. Raises
    :class:`UnsupportedSchema` (bounded: :data:`MAX_DEPTH`, :data:`MAX_SIZE`) when it finds
    none.

    >>> schema_instance({"type": "object", "properties": {"n": {"type": "integer",
    ...     "minimum": 3}, "s": {"type": "string"}}, "required": ["n"]})
    {'n': 3}
    """
    import jsonschema  # lazily: only a structured-output request needs it

    value = _Writer(schema).value(schema, _PATH, 0, ())
    validator = jsonschema.Draft202012Validator(dict(schema))
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = ".".join([_PATH, *map(str, error.absolute_schema_path)])
        raise UnsupportedSchema(f"{where}: no value satisfies the schema ({error.message})")
    return value


MAX_VALUES = 10_000
"""The most JSON values (objects, items, scalars) the simulator writes into one reply."""


class _Writer:
    """Writes a schema's instance, counting the values written against :data:`MAX_VALUES`
    (a definition used twice in each of many nested definitions doubles at every level)."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.values = 0

    def spend(self, values: int, path: str) -> None:
        self.values += values
        if self.values > MAX_VALUES:
            raise UnsupportedSchema(f"{path}: the reply would hold more than {MAX_VALUES} values")

    def value(self, schema: object, path: str, depth: int, refs: tuple[str, ...]) -> Any:
        if depth > MAX_DEPTH:
            raise UnsupportedSchema(f"{path}: the schema nests deeper than {MAX_DEPTH} levels")
        self.spend(1, path)
        if schema is True:
            return None
        if not isinstance(schema, Mapping):
            raise UnsupportedSchema(f"{path}: no value satisfies the schema {schema!r}")
        hints = description_hints(schema.get("description"))
        if hints:
            schema = {**hints, **schema}
        if "$ref" in schema:
            ref = str(schema["$ref"])
            if ref in refs:
                raise UnsupportedSchema(
                    f"{path}: recursive schemas are not supported ($ref {ref!r})"
                )
            target = _resolve(self.root, ref, path)
            return self.value(target, f"{path}.$ref", depth + 1, (*refs, ref))
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return _enum(schema, path)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.first_variant(schema[key], f"{path}.{key}", depth, refs)
        if "allOf" in schema:
            return self.all_of(schema["allOf"], f"{path}.allOf", depth, refs)
        kind = schema.get("type", "object")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object":
            properties = schema.get("properties") or {}
            return {
                name: self.value(
                    properties.get(name, True), f"{path}.properties.{name}", depth + 1, refs
                )
                for name in schema.get("required") or []
            }
        if kind == "array":
            count = _size(schema, "minItems", path)
            if count == 0:
                return []
            before = self.values
            item = self.value(schema.get("items", True), f"{path}.items", depth + 1, refs)
            self.spend((self.values - before) * (count - 1), path)
            return [item] * count
        if kind == "string":
            return _string(schema, path)
        if kind in ("integer", "number"):
            return _number(schema, path, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        raise UnsupportedSchema(f"{path}.type: unknown type {kind!r}")

    def first_variant(self, variants: object, path: str, depth: int, refs: tuple[str, ...]) -> Any:
        """The first variant with a finite value (an optional recursive field takes null)."""
        if not isinstance(variants, list) or not variants:
            raise UnsupportedSchema(f"{path}: must be a non-empty list, got {variants!r}")
        problem: UnsupportedSchema | None = None
        for index, variant in enumerate(variants):
            try:
                return self.value(variant, f"{path}.{index}", depth + 1, refs)
            except UnsupportedSchema as unsupported:
                problem = problem or unsupported
        assert problem is not None
        raise problem

    def all_of(self, parts: object, path: str, depth: int, refs: tuple[str, ...]) -> Any:
        if not isinstance(parts, list) or not parts:
            raise UnsupportedSchema(f"{path}: must be a non-empty list, got {parts!r}")
        merged: dict[str, Any] = {}
        for index, part in enumerate(parts):
            value = self.value(part, f"{path}.{index}", depth + 1, refs)
            if not isinstance(value, dict):
                return value
            merged.update(value)
        return merged


_HINTED = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "pattern",
)
_HINT_BLOCK = re.compile(r"(?:\A|\n\n)\{(.*)\}\Z", re.DOTALL)
_HINT_KEY = re.compile(r"(?:\A|, )(" + "|".join(_HINTED) + r"): ")


def description_hints(description: object) -> dict[str, Any]:
    """The constraints the SDK's transform moved into a description, for the model to
    follow: a closing ``{key: value, ...}`` (``anthropic/lib/_parse/_transform.py``), of
    which the simulator honours the numeric, length, ``minItems`` and ``pattern`` ones.

    >>> description_hints("A count\\n\\n{minimum: 3, maximum: 9}")
    {'minimum': 3, 'maximum': 9}
    """
    block = _HINT_BLOCK.search(description) if isinstance(description, str) else None
    if block is None:
        return {}
    inner = block.group(1)
    keys = list(_HINT_KEY.finditer(inner))
    hints: dict[str, Any] = {}
    for key, following in zip(keys, [*keys[1:], None], strict=True):
        text = inner[key.end() : following.start() if following is not None else len(inner)]
        if key.group(1) == "pattern":
            try:
                pattern_example(text)
            except UnsupportedSchema:
                continue  # a hint never makes a request fail
            hints["pattern"] = text
            continue
        try:
            number = float(text)
        except ValueError:
            continue
        if not math.isfinite(number) or (key.group(1) == "multipleOf" and number <= 0):
            continue
        if key.group(1) in ("minLength", "maxLength", "minItems") and not (
            number.is_integer() and 0 <= number <= MAX_SIZE
        ):
            continue
        hints[key.group(1)] = int(number) if number.is_integer() else number
    return hints


def _enum(schema: Mapping[str, Any], path: str) -> Any:
    values = schema["enum"]
    if not isinstance(values, list) or not values:
        raise UnsupportedSchema(f"{path}.enum: must be a non-empty list, got {values!r}")
    kinds = schema.get("type")
    wanted = set(kinds) if isinstance(kinds, list) else {kinds} if kinds else None
    fitting = (v for v in values if wanted is None or _json_type(v) in wanted)
    return next(fitting, values[0])


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "")


def _resolve(root: Mapping[str, Any], ref: str, path: str) -> object:
    """The schema a local ``$ref`` (``#/$defs/Name``) points at."""
    if not ref.startswith("#"):
        raise UnsupportedSchema(
            f"{path}.$ref: only local references (#/...) are supported: {ref!r}"
        )
    node: object = root
    for part in ref[1:].strip("/").split("/") if ref.strip("#/") else []:
        key = part.replace("~1", "/").replace("~0", "~")
        node = node.get(key) if isinstance(node, Mapping) else None
    if node is None:
        raise UnsupportedSchema(f"{path}.$ref: {ref!r} points nowhere in the schema")
    return node


def _size(schema: Mapping[str, Any], key: str, path: str) -> int:
    value = schema.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SIZE:
        raise UnsupportedSchema(
            f"{path}.{key}: the simulator writes between 0 and {MAX_SIZE}, got {value!r}"
        )
    return value


def _string(schema: Mapping[str, Any], path: str) -> str:
    low = _size(schema, "minLength", path)
    if "pattern" in schema:
        text = pattern_example(str(schema["pattern"]), f"{path}.pattern")
    else:
        text = _FORMATS.get(str(schema.get("format")), "simulated")
    text = text.ljust(low, "x")
    high = schema.get("maxLength")
    return text if not isinstance(high, int) else text[:high]


def _number(schema: Mapping[str, Any], path: str, *, integer: bool) -> int | float:
    """The lowest allowed value (0 when unbounded below), or the highest below 0."""
    bounds: dict[str, float] = {}
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        if key in schema:
            bound = schema[key]
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise UnsupportedSchema(f"{path}.{key}: must be a number, got {bound!r}")
            if not math.isfinite(bound) or (key == "multipleOf" and bound <= 0):
                raise UnsupportedSchema(f"{path}.{key}: unusable bound {bound!r}")
            bounds[key] = bound
    low, high = bounds.get("minimum"), bounds.get("maximum")
    above, below = bounds.get("exclusiveMinimum"), bounds.get("exclusiveMaximum")
    step = bounds.get("multipleOf") or (1 if integer else None)
    value: float
    if above is not None:
        gap = step or min(1.0, ((below if below is not None else above + 2) - above) / 2)
        value = above + gap if low is None else max(low, above + gap)
    elif low is not None:
        value = low
    elif high is not None and high < 0:
        value = high
    elif below is not None and below <= 0:
        value = below - (step or 1)
    else:
        value = 0
    if step:
        value = (math.floor if value < 0 else math.ceil)(value / step) * step
    return int(value) if integer and float(value).is_integer() else value


_CATEGORY = {
    "CATEGORY_DIGIT": "0",
    "CATEGORY_NOT_DIGIT": "a",
    "CATEGORY_WORD": "a",
    "CATEGORY_NOT_WORD": "-",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": "a",
}
_CANDIDATES = "a0A_ -.x!"
_ANCHORS = ("AT_BEGINNING", "AT_BEGINNING_STRING", "AT_END", "AT_END_STRING")


def pattern_example(pattern: str, path: str = "pattern") -> str:
    """A short string ``pattern`` matches (JSON Schema: anywhere in the string): each
    repetition its fewest times, each alternation its first branch. Backreferences,
    lookarounds and word boundaries, which the guide says the API does not support, are
    refused.

    >>> pattern_example(r"^[A-Z]{3}-\\d{4}$")
    'AAA-0000'
    """
    from re import _parser  # type: ignore[attr-defined]  # the stdlib's own regex parser

    try:
        parsed = _parser.parse(pattern)
    except re.error as error:
        raise UnsupportedSchema(f"{path}: not a valid regular expression: {error}") from None
    text = _emit(parsed, pattern, path)
    if re.search(pattern, text) is None:  # flags or anchors the walk does not model
        raise UnsupportedSchema(f"{path}: the simulator found no string matching {pattern!r}")
    return text


def _emit(items: Any, pattern: str, path: str) -> str:
    out: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name in ("NOT_LITERAL", "ANY"):
            out.append("a" if name == "ANY" or arg != ord("a") else "b")
        elif name == "IN":
            out.append(_in_set(arg, pattern, path))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _, sub = arg
            if low > MAX_SIZE:
                raise UnsupportedSchema(f"{path}: repeats more than {MAX_SIZE} times: {pattern!r}")
            out.append(_emit(sub, pattern, path) * low)
        elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
            out.append(_emit(arg[-1], pattern, path))
        elif name == "BRANCH":
            out.append(_emit(arg[1][0], pattern, path))
        elif name == "AT" and str(arg) in _ANCHORS:
            continue
        else:  # GROUPREF, ASSERT, ASSERT_NOT, AT_BOUNDARY, ...
            what = "word boundaries" if name == "AT" else "backreferences and lookarounds"
            raise UnsupportedSchema(f"{path}: {what} are not supported: {pattern!r}")
    return "".join(out)


def _in_set(items: list[tuple[Any, Any]], pattern: str, path: str) -> str:
    """A character of a ``[...]`` class: its first member, or one it excludes if negated."""
    if items and str(items[0][0]) == "NEGATE":
        members = items[1:]
        for char in _CANDIDATES:
            if not any(_member(char, op, arg) for op, arg in members):
                return char
        raise UnsupportedSchema(f"{path}: no character fits a negated class: {pattern!r}")
    op, arg = items[0]
    if str(op) == "LITERAL":
        return chr(arg)
    if str(op) == "RANGE":
        return chr(arg[0])
    if str(op) == "CATEGORY":
        return _CATEGORY[str(arg)]
    raise UnsupportedSchema(f"{path}: unsupported character class in {pattern!r}")


_CATEGORY_REGEX = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
}


def _member(char: str, op: Any, arg: Any) -> bool:
    if str(op) == "LITERAL":
        return bool(ord(char) == arg)
    if str(op) == "RANGE":
        return bool(arg[0] <= ord(char) <= arg[1])
    if str(op) == "CATEGORY":
        return re.fullmatch(_CATEGORY_REGEX[str(arg)], char) is not None
    return True


def _check_supported(
    schema: object,
    root: Mapping[str, Any],
    path: str,
    depth: int,
    active: frozenset[str] = frozenset(),
    done: set[str] | None = None,
) -> None:
    """Refuse what the guide's JSON Schema limitations exclude, anywhere in the schema."""
    if depth > MAX_DEPTH:
        raise UnsupportedSchema(f"{path}: the schema nests deeper than {MAX_DEPTH} levels")
    done = set() if done is None else done
    if isinstance(schema, bool):
        return
    if not isinstance(schema, Mapping):
        raise UnsupportedSchema(f"{path}: a schema must be an object, got {schema!r}")
    for key in _UNSUPPORTED:
        if key in schema:
            hint = " (use anyOf)" if key == "oneOf" else ""
            raise UnsupportedSchema(f"{path}: '{key}' is not supported{hint}")
    if schema.get("minItems", 0) not in (0, 1):
        raise UnsupportedSchema(f"{path}.minItems: only 0 or 1 is supported")
    if schema.get("additionalProperties", False) is not False:
        raise UnsupportedSchema(f"{path}.additionalProperties: only false is supported")
    if "format" in schema and schema["format"] not in _FORMATS:
        raise UnsupportedSchema(
            f"{path}.format: {schema['format']!r} is not supported; one of {sorted(_FORMATS)}"
        )
    enum = schema.get("enum")
    if isinstance(enum, list) and any(isinstance(v, (dict, list)) for v in enum):
        raise UnsupportedSchema(f"{path}.enum: only strings, numbers, booleans and null")
    if "pattern" in schema:
        pattern_example(str(schema["pattern"]), f"{path}.pattern")
    if "$ref" in schema:
        ref = str(schema["$ref"])
        if ref in active:
            raise UnsupportedSchema(f"{path}: recursive schemas are not supported ($ref {ref!r})")
        if ref not in done:  # each definition once: a shared one is not walked again
            target = _resolve(root, ref, path)
            _check_supported(target, root, f"{path}.$ref", depth + 1, active | {ref}, done)
            done.add(ref)
    properties = schema.get("properties")
    for name, child in properties.items() if isinstance(properties, Mapping) else ():
        _check_supported(child, root, f"{path}.properties.{name}", depth + 1, active, done)
    for key in ("anyOf", "allOf"):
        variants = schema.get(key)
        for index, child in enumerate(variants if isinstance(variants, list) else []):
            _check_supported(child, root, f"{path}.{key}.{index}", depth + 1, active, done)
    if "items" in schema:
        _check_supported(schema["items"], root, f"{path}.items", depth + 1, active, done)
