"""Tests of perfkit.cache._serialization: exact JSON round trips, and pickle only when signed."""

from __future__ import annotations

import doctest
import enum
import math
import os
import pickle
import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple

import anthropic.types
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfkit._errors import PerfkitError
from perfkit.cache import _serialization
from perfkit.cache._serialization import (
    CorruptPayloadError,
    JsonSerializer,
    RejectedPayloadError,
    SerializationError,
    Serializer,
    SignedPickleSerializer,
    default_serializer,
)

SECRET = b"current-secret-0123456789abcdef"
OLD_SECRET = b"previous-secret-0123456789abcde"
OTHER_SECRET = b"attacker-secret-0123456789abcde"

MESSAGE: dict[str, Any] = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-simulated",
    "content": [
        {"type": "text", "text": "Paris is the capital of France. Caf\u00e9 \u2615, \u4e2d\u6587."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "Paris, France", "unit": "celsius", "days": 3},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 2095,
        "output_tokens": 503,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1800,
    },
}


def same(a: Any, b: Any) -> bool:
    """Equal and of exactly the same types all the way down (so True != 1, (1,) != [1])."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    return bool(a == b)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary()
)
json_keys = st.text() | st.sampled_from(["__perfkit__", "items", "b64"])
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children)
        | st.lists(children).map(tuple)
        | st.dictionaries(json_keys, children)
        # Values shaped like the serializer's own envelopes must not be mistaken for them.
        | st.fixed_dictionaries({"__perfkit__": st.sampled_from(["tuple", "bytes", "dict"])})
        | st.fixed_dictionaries({"__perfkit__": st.just("tuple"), "items": st.lists(children)})
    ),
    max_leaves=30,
)


# --- the protocol and the default ------------------------------------------------------------


def test_default_serializer_is_json() -> None:
    serializer = default_serializer()
    assert isinstance(serializer, JsonSerializer)
    assert isinstance(serializer, Serializer)
    assert serializer.name == "json"


def test_both_serializers_satisfy_the_protocol() -> None:
    assert isinstance(SignedPickleSerializer(SECRET), Serializer)
    assert SignedPickleSerializer(SECRET).name == "signed-pickle"


def test_error_tree() -> None:
    assert issubclass(SerializationError, PerfkitError)
    assert issubclass(SerializationError, ValueError)
    assert issubclass(CorruptPayloadError, PerfkitError)
    assert issubclass(RejectedPayloadError, CorruptPayloadError)


def test_docstring_examples_run() -> None:
    failures, attempted = doctest.testmod(_serialization, optionflags=doctest.ELLIPSIS)
    assert (failures, attempted > 0) == (0, True)


# --- JsonSerializer: round trips ---------------------------------------------------------------


@given(json_values)
def test_json_round_trips_exactly(value: Any) -> None:
    serializer = JsonSerializer()
    assert same(serializer.loads(serializer.dumps(value)), value)


@given(json_values)
def test_json_is_canonical(value: Any) -> None:
    serializer = JsonSerializer()
    data = serializer.dumps(value)
    assert serializer.dumps(serializer.loads(data)) == data


def test_equal_dicts_give_equal_bytes_whatever_their_insertion_order() -> None:
    serializer = JsonSerializer()
    assert serializer.dumps({"b": 1, "a": 2}) == serializer.dumps({"a": 2, "b": 1})


def test_json_is_compact_utf8() -> None:
    data = JsonSerializer().dumps({"text": "caf\u00e9 \u2615", "n": [1, 2]})
    assert data == b'j1{"n":[1,2],"text":"caf\xc3\xa9 \xe2\x98\x95"}'


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**64 + 1,
        -(10**300),
        1.5,
        -0.0,
        1e308,
        "",
        "\u00e9\u4e2d\U0001f600",
        "\ud800 lone surrogate",
        b"",
        bytes(range(256)),
        (),
        (1,),
        [()],
        ((1, 2), [3, (4, b"5")]),
        {"": None, "nested": {"t": (1, [2, (3,)])}},
        {"__perfkit__": "tuple", "items": [1]},
        {"__perfkit__": {"__perfkit__": "bytes"}},
        [1, 1.0, True, "1"],
        MESSAGE,
    ],
    ids=repr,
)
def test_json_round_trips_these_exactly(value: Any) -> None:
    serializer = JsonSerializer()
    assert same(serializer.loads(serializer.dumps(value)), value)


def test_tuples_stay_tuples_and_lists_stay_lists() -> None:
    serializer = JsonSerializer()
    back = serializer.loads(serializer.dumps({"t": (1, 2), "l": [1, 2]}))
    assert type(back["t"]) is tuple
    assert type(back["l"]) is list


# --- JsonSerializer: what it refuses -----------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


class Point(NamedTuple):
    x: int
    y: int


def address_free_repr(value: object) -> str:
    """A test id without a memory address: every pytest-xdist worker collects the same ids."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


@pytest.mark.parametrize(
    ("value", "type_name", "where"),
    [
        ({1, 2}, "'set'", ""),
        (frozenset(), "'frozenset'", ""),
        (object(), "'object'", ""),
        (math.nan, "'float'", ""),
        ({"scores": [1.0, math.inf]}, "'float'", "at value['scores'][1]"),
        ([-math.inf], "'float'", "at value[0]"),
        ({1: "a"}, "'dict'", ""),
        ({"a": {(1, 2): "b"}}, "'dict'", "at value['a']"),
        (Color.RED, f"'{__name__}.Color'", ""),
        (Point(1, 2), f"'{__name__}.Point'", ""),
        (OrderedDict(a=1), "'collections.OrderedDict'", ""),
        (bytearray(b"x"), "'bytearray'", ""),
    ],
    ids=address_free_repr,
)
def test_json_refuses_what_it_cannot_round_trip(value: Any, type_name: str, where: str) -> None:
    with pytest.raises(SerializationError) as caught:
        JsonSerializer().dumps(value)
    message = str(caught.value)
    assert f"JsonSerializer cannot serialize a value of type {type_name}" in message
    assert where in message
    assert "SignedPickleSerializer" in message
    assert "default=" in message


def test_nan_message_says_why() -> None:
    with pytest.raises(SerializationError, match=r"no portable form for the float nan"):
        JsonSerializer().dumps([math.nan])


def test_non_str_key_message_names_the_key() -> None:
    with pytest.raises(SerializationError, match=r"its key 1 is a int, and JSON keys are str"):
        JsonSerializer().dumps({1: "a"})


def test_a_reference_cycle_is_a_serialization_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(SerializationError, match="reference cycle"):
        JsonSerializer().dumps(cycle)


def test_an_int_too_long_to_print_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="SignedPickleSerializer"):
        JsonSerializer().dumps(10**5000)


# --- JsonSerializer: the default= hook ---------------------------------------------------------


class Usage(pydantic.BaseModel):
    input_tokens: int
    output_tokens: int


class Reply(pydantic.BaseModel):
    text: str
    usage: Usage
    tags: tuple[str, ...] = ()


def test_pydantic_models_are_refused_without_a_hook() -> None:
    reply = Reply(text="hi", usage=Usage(input_tokens=1, output_tokens=2))
    with pytest.raises(SerializationError, match=rf"type '{__name__}\.Reply'"):
        JsonSerializer().dumps({"reply": reply})


def test_default_hook_converts_pydantic_models_one_way() -> None:
    serializer = JsonSerializer(default=lambda model: model.model_dump(mode="json"))
    reply = Reply(text="hi", usage=Usage(input_tokens=1, output_tokens=2), tags=("a",))
    back = serializer.loads(serializer.dumps({"reply": reply}))
    assert back == {
        "reply": {"text": "hi", "usage": {"input_tokens": 1, "output_tokens": 2}, "tags": ["a"]}
    }
    assert Reply.model_validate(back["reply"]) == reply


def test_default_hook_converts_an_anthropic_sdk_message() -> None:
    message = anthropic.types.Message.model_validate(MESSAGE)
    serializer = JsonSerializer(default=lambda model: model.model_dump(mode="json"))
    back = serializer.loads(serializer.dumps(message))
    assert anthropic.types.Message.model_validate(back) == message


def test_default_hook_is_applied_again_to_what_it_returns() -> None:
    def default(obj: Any) -> Any:
        if isinstance(obj, set):
            return sorted(obj)
        if isinstance(obj, frozenset):
            return set(obj)
        raise TypeError(f"no conversion for {type(obj).__name__}")

    serializer = JsonSerializer(default=default)
    assert serializer.loads(serializer.dumps({"s": frozenset({2, 1})})) == {"s": [1, 2]}
    with pytest.raises(SerializationError, match=r"default= refused it: no conversion for object"):
        serializer.dumps(object())


def test_default_hook_returning_its_argument_is_an_error() -> None:
    with pytest.raises(SerializationError, match="default= returned it unchanged"):
        JsonSerializer(default=lambda obj: obj).dumps({1, 2})


def test_default_must_be_callable() -> None:
    with pytest.raises(TypeError, match=r"default must be a callable or None, got 'json'"):
        JsonSerializer(default="json")  # type: ignore[arg-type]


def test_json_repr() -> None:
    assert repr(JsonSerializer()) == "JsonSerializer()"
    assert repr(JsonSerializer(default=str)).startswith("JsonSerializer(default=<class 'str'>")


# --- JsonSerializer: bytes that are not its payloads -------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"j",
        b"{}",
        b'j2{"a":1}',
        b"p1" + bytes(40),
        pickle.dumps({"a": 1}),
        b"j1",
        b"j1{",
        b'j1{"a":1}trailing',
        b"j1NaN",
        b"j1[Infinity]",
        b'j1"\xff"',
        b"j1" + "[]".encode("utf-16"),
        b'j1{"__perfkit__":"set","items":[]}',
        b'j1{"__perfkit__":"tuple"}',
        b'j1{"__perfkit__":"tuple","items":{}}',
        b'j1{"__perfkit__":"tuple","items":[],"extra":1}',
        b'j1{"__perfkit__":"bytes","b64":"not base64!"}',
        b'j1{"__perfkit__":"bytes","b64":1}',
        b'j1{"__perfkit__":"dict","items":[["a"]]}',
        b'j1{"__perfkit__":"dict","items":[[1,2]]}',
        b"j1" + b"[" * 100_000,
    ],
    ids=lambda data: repr(data[:40]),
)
def test_json_loads_rejects_foreign_or_corrupt_bytes(data: bytes) -> None:
    with pytest.raises(CorruptPayloadError, match="not a JsonSerializer payload"):
        JsonSerializer().loads(data)


def test_json_loads_names_the_prefix_it_found() -> None:
    with pytest.raises(CorruptPayloadError, match=r"expected prefix b'j1', got b'p1'"):
        JsonSerializer().loads(SignedPickleSerializer(SECRET).dumps(1))


# --- SignedPickleSerializer: round trips -------------------------------------------------------


class Session:
    """A plain class JSON cannot carry."""

    def __init__(self, user: str, seen: set[int]) -> None:
        self.user = user
        self.seen = seen


def test_signed_pickle_round_trips_an_instance() -> None:
    serializer = SignedPickleSerializer(SECRET)
    session = Session("ada", {1, 2})
    back = serializer.loads(serializer.dumps(session))
    assert type(back) is Session
    assert vars(back) == {"user": "ada", "seen": {1, 2}}


@given(json_values | st.frozensets(st.integers()))
def test_signed_pickle_round_trips_exactly(value: Any) -> None:
    serializer = SignedPickleSerializer(SECRET)
    assert same(serializer.loads(serializer.dumps(value)), value)


def test_signed_pickle_layout() -> None:
    data = SignedPickleSerializer(SECRET, protocol=2).dumps([1])
    assert data[:2] == b"p1"
    assert data[34:] == pickle.dumps([1], protocol=2)


@pytest.mark.parametrize("secret", [SECRET, SECRET.decode()])
def test_str_and_bytes_secrets_sign_alike(secret: bytes | str) -> None:
    assert SignedPickleSerializer(secret).dumps(1) == SignedPickleSerializer(SECRET).dumps(1)


def test_unpicklable_values_are_serialization_errors() -> None:
    with pytest.raises(SerializationError) as caught:
        SignedPickleSerializer(SECRET).dumps(lambda: None)
    message = str(caught.value)
    assert "SignedPickleSerializer cannot serialize a value of type 'function'" in message
    assert "JsonSerializer" in message


def test_a_signed_payload_that_no_longer_unpickles_is_corrupt_not_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serializer = SignedPickleSerializer(SECRET)
    data = serializer.dumps(Session("ada", set()))
    monkeypatch.delattr(sys.modules[__name__], "Session")
    with pytest.raises(CorruptPayloadError, match="verified but could not be unpickled") as caught:
        serializer.loads(data)
    assert not isinstance(caught.value, RejectedPayloadError)


def test_signed_pickle_repr_never_shows_secrets() -> None:
    serializer = SignedPickleSerializer(SECRET, previous_secrets=[OLD_SECRET], protocol=4)
    assert repr(serializer) == "SignedPickleSerializer(protocol=4, previous_secrets=1)"


# --- SignedPickleSerializer: tampered payloads are never unpickled -----------------------------


class Exploit:
    """Unpickling this creates the directory ``marker``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


TAMPERINGS = {
    "signed with another secret": lambda good, evil: evil,
    "one bit of the MAC flipped": lambda good, evil: _flip(good, 2),
    "last bit of the MAC flipped": lambda good, evil: _flip(good, 33),
    "one bit of the pickle flipped": lambda good, evil: _flip(good, len(good) - 2),
    "signature stripped": lambda good, evil: b"p1" + good[34:],
    "raw pickle, no magic": lambda good, evil: good[34:],
    "magic stripped": lambda good, evil: good[2:],
    "wrong magic": lambda good, evil: b"p2" + good[2:],
    "byte appended": lambda good, evil: good + b".",
    "MAC truncated": lambda good, evil: good[:20] + good[34:],
    "MAC zeroed": lambda good, evil: b"p1" + bytes(32) + good[34:],
}


@pytest.mark.parametrize("tampering", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_a_tampered_payload_is_rejected_and_never_unpickled(
    tampering: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    exploit = Exploit(marker)
    good = SignedPickleSerializer(SECRET).dumps(exploit)
    evil = SignedPickleSerializer(OTHER_SECRET).dumps(exploit)
    tampered = tampering(good, evil)
    real_loads = pickle.loads
    unpickled: list[bytes] = []
    monkeypatch.setattr(pickle, "loads", lambda data, **kwargs: unpickled.append(data))

    with pytest.raises(RejectedPayloadError, match="rejected pickle payload"):
        SignedPickleSerializer(SECRET, previous_secrets=[OLD_SECRET]).loads(tampered)

    assert unpickled == []
    assert not marker.exists()
    # The payload was live: unpickling what was rejected would really have run the exploit.
    real_loads(evil[34:])
    assert marker.is_dir()


def test_an_unsigned_raw_pickle_is_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(RejectedPayloadError, match=r"expected magic b'p1'"):
            SignedPickleSerializer(SECRET).loads(pickle.dumps(Exploit(marker), protocol))
    assert not marker.exists()


@pytest.mark.parametrize("data", [b"", b"p", b"p1", b"p1" + bytes(32)], ids=repr)
def test_payloads_too_short_to_hold_a_signature_are_rejected(data: bytes) -> None:
    with pytest.raises(RejectedPayloadError, match="rejected pickle payload"):
        SignedPickleSerializer(SECRET).loads(data)


def test_a_json_payload_is_rejected_by_the_pickle_serializer() -> None:
    with pytest.raises(RejectedPayloadError, match=r"expected magic b'p1', got b'j1'"):
        SignedPickleSerializer(SECRET).loads(JsonSerializer().dumps([1]))


def test_the_signature_message_counts_previous_secrets() -> None:
    serializer = SignedPickleSerializer(SECRET, previous_secrets=[OLD_SECRET])
    with pytest.raises(RejectedPayloadError, match="nor any of the 1 previous secrets"):
        serializer.loads(SignedPickleSerializer(OTHER_SECRET).dumps(1))


# --- SignedPickleSerializer: key rotation ------------------------------------------------------


def test_previous_secrets_still_verify_but_dumps_signs_with_the_current_one() -> None:
    old = SignedPickleSerializer(OLD_SECRET)
    rotated = SignedPickleSerializer(SECRET, previous_secrets=(OLD_SECRET,))
    written_before_rotation = old.dumps({"a": 1})
    assert rotated.loads(written_before_rotation) == {"a": 1}

    written_after_rotation = rotated.dumps({"b": 2})
    assert written_after_rotation == SignedPickleSerializer(SECRET).dumps({"b": 2})
    assert SignedPickleSerializer(SECRET).loads(written_after_rotation) == {"b": 2}
    with pytest.raises(RejectedPayloadError):
        old.loads(written_after_rotation)


def test_without_previous_secrets_old_entries_are_rejected() -> None:
    with pytest.raises(RejectedPayloadError):
        SignedPickleSerializer(SECRET).loads(SignedPickleSerializer(OLD_SECRET).dumps(1))


def test_previous_secrets_accepts_any_iterable() -> None:
    rotated = SignedPickleSerializer(SECRET, previous_secrets=iter([OLD_SECRET.decode()]))
    assert rotated.loads(SignedPickleSerializer(OLD_SECRET).dumps(1)) == 1


# --- SignedPickleSerializer: configuration mistakes --------------------------------------------


@pytest.mark.parametrize(
    ("secret", "length"), [(b"", 0), ("", 0), (b"x" * 15, 15), ("\u00e9" * 7, 14)], ids=repr
)
def test_short_secrets_are_rejected_naming_the_length(secret: bytes | str, length: int) -> None:
    with pytest.raises(ValueError, match=rf"secret must be at least 16 bytes long, got {length}"):
        SignedPickleSerializer(secret)


def test_a_secret_is_measured_in_utf8_bytes() -> None:
    SignedPickleSerializer("\u00e9" * 8)  # 8 characters, 16 bytes


def test_a_short_previous_secret_is_rejected_naming_which() -> None:
    with pytest.raises(ValueError, match=r"previous_secrets\[1\] must be at least 16 bytes"):
        SignedPickleSerializer(SECRET, previous_secrets=[OLD_SECRET, b"short"])


def test_a_secret_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="secret must be bytes or str, got int"):
        SignedPickleSerializer(12345678901234567890)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", [-1, pickle.HIGHEST_PROTOCOL + 1, 2.0, True], ids=repr)
def test_a_bad_protocol_is_rejected_naming_the_range(protocol: Any) -> None:
    with pytest.raises(ValueError, match=rf"protocol must be an int from 0 to \d+, got {protocol}"):
        SignedPickleSerializer(SECRET, protocol=protocol)
