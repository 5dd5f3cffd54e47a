"""Tests of perfkit.cache._keys: canonical arguments, function names and bounded keys."""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import threading
from collections import OrderedDict, namedtuple
from typing import Any

import fakeredis
import pydantic
import pytest

from perfkit.cache import MultiLayerCache, cached
from perfkit.cache._keys import (
    DEFAULT_MAX_KEY_LENGTH,
    DIGEST_LENGTH,
    bind_arguments,
    canonical,
    function_identity,
    identify,
    key_prefix,
    make_key,
)

KEY = re.compile(
    r"^(?P<namespace>[^:]+):v(?P<version>[^:]+):(?P<identity>.+):(?P<digest>[0-9a-f]+)$"
)


def key_of(*args: Any, **kwargs: Any) -> str:
    return make_key("test", 1, "tests:f", args, kwargs)


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Level(enum.IntEnum):
    LOW = 1


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int
    label: str = dataclasses.field(default="", compare=False)


@dataclasses.dataclass(frozen=True)
class Vector:
    x: int
    y: int


class User(pydantic.BaseModel):
    name: str
    tags: list[str] = []


class Account(pydantic.BaseModel):
    name: str
    tags: list[str] = []


# --- canonical: what is told apart, and what is not ---------------------------------------------


def test_canonical_text_is_json() -> None:
    value = {"a": [1, 2.5, None, True], "b": (b"\x00\xff", {3, 4}), 5: frozenset({"x"})}
    assert json.loads(canonical(value))[0] == "dict"


def test_dict_key_order_does_not_matter() -> None:
    forward = {f"k{i}": i for i in range(20)}
    backward = dict(reversed(list(forward.items())))
    assert canonical(forward) == canonical(backward)
    assert canonical({"a": {"x": 1, "y": 2}}) == canonical({"a": {"y": 2, "x": 1}})


def test_dicts_may_have_keys_of_any_supported_type() -> None:
    assert canonical({1: "a"}) != canonical({"1": "a"})
    assert canonical({(1, 2): "a"}) != canonical({"(1, 2)": "a"})


def test_tuples_and_lists_differ() -> None:
    assert canonical((1, 2)) != canonical([1, 2])
    assert canonical(()) != canonical([])
    assert canonical(((1,),)) != canonical(([1],))


def test_sets_are_sorted_and_differ_from_frozensets_and_lists() -> None:
    assert canonical({3, 1, 2}) == canonical({2, 3, 1}) == '["set",1,2,3]'
    assert canonical(frozenset({1, 2})) == '["frozenset",1,2]'
    assert canonical({1, 2}) != canonical([1, 2])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "1"),
        (1.0, "1.0"),
        (True, "true"),
        ("1", '"1"'),
        (None, "null"),
        (0.1, "0.1"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (1e300, "1e+300"),
        (math.inf, '["float","inf"]'),
        (-math.inf, '["float","-inf"]'),
        (math.nan, '["float","nan"]'),
        (b"hi", '["bytes","aGk="]'),
        (bytearray(b"hi"), '["bytearray","aGk="]'),
        ("é\n", '"\\u00e9\\n"'),
    ],
)
def test_scalars(value: object, text: str) -> None:
    assert canonical(value) == text


def test_one_one_point_zero_true_and_the_string_one_never_share_a_key() -> None:
    # 1 == 1.0 == True in Python, but a function may answer them differently
    # (type(x), repr(x), json.dumps(x), 1 / x with -0.0...), so a shared key would be wrong.
    keys = {key_of(value) for value in (1, 1.0, True, "1", Level.LOW)}
    assert len(keys) == 5
    assert key_of(0.0) != key_of(-0.0)


def test_every_nan_has_the_same_text() -> None:
    negative_nan = -math.nan
    assert canonical(math.nan) == canonical(float("nan")) == canonical(negative_nan)
    assert canonical([math.nan]) == canonical([float("nan")])


def test_floats_round_trip_exactly() -> None:
    assert canonical(0.1 + 0.2) == "0.30000000000000004"
    assert canonical(0.1 + 0.2) != canonical(0.3)


def test_huge_ints_do_not_depend_on_the_int_to_str_limit() -> None:
    huge = 7**5000  # over 4300 decimal digits: str() of it raises ValueError
    assert canonical(huge) == f'["int","{hex(huge)}"]'
    assert canonical(-huge) == f'["int","{hex(-huge)}"]'
    assert canonical(2**1024 - 1) == str(2**1024 - 1)


def test_subclasses_of_supported_types_are_written_as_their_base_type() -> None:
    Pair = namedtuple("Pair", "a b")

    class Name(str):
        def __str__(self) -> str:
            return "overridden"

    assert canonical(Pair(1, 2)) == canonical((1, 2))
    assert canonical(OrderedDict([("b", 1), ("a", 2)])) == canonical({"a": 2, "b": 1})
    assert canonical(Name("ada")) == '"ada"'


def test_enums_are_named_by_type_and_member() -> None:
    assert canonical(Color.RED) == f'["enum","{__name__}:Color","RED"]'
    assert canonical(Color.RED) != canonical(Color.GREEN)
    assert canonical(Level.LOW) != canonical(1)
    assert canonical(Perm.READ | Perm.WRITE) != canonical(Perm.READ)
    assert canonical(Perm(0)) == f'["enum","{__name__}:Perm",0]'


def test_dataclasses_by_type_and_compared_fields() -> None:
    assert canonical(Point(1, 2)) == f'["dataclass","{__name__}:Point",["x",1],["y",2]]'
    assert canonical(Point(1, 2, label="a")) == canonical(Point(1, 2, label="b"))
    assert canonical(Point(1, 2)) != canonical(Vector(1, 2))
    assert canonical(Point(1, 2)) != canonical(Point(2, 1))


def test_pydantic_models_by_type_and_json_dump() -> None:
    assert canonical(User(name="ada", tags=["x"])) == canonical(User(tags=["x"], name="ada"))
    assert canonical(User(name="ada")) != canonical(User(name="bob"))
    assert canonical(User(name="ada")) != canonical(Account(name="ada"))
    assert canonical(User(name="ada")) != canonical({"name": "ada", "tags": []})
    assert json.loads(canonical(User(name="ada")))[:2] == ["pydantic", f"{__name__}:User"]


def test_supported_values_nest() -> None:
    value = {"who": [User(name="ada"), Point(1, 2)], "mode": Color.GREEN, "raw": (b"", {0.5})}
    assert canonical(value) == canonical(dict(reversed(list(value.items()))))


# --- canonical: what is refused -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "where", "type_name"),
    [
        (object(), "value", "builtins:object"),
        ({"a": [1, object()]}, "value['a'][1]", "builtins:object"),
        ({1.5j: 1}, "value[<dict key>]", "builtins:complex"),
        ({range(3)}, "value[<set element>]", "builtins:range"),
        (Point(1, object()), "value.y", "builtins:object"),  # type: ignore[arg-type]
        ([Point], "value[0]", "builtins:type"),
        (len, "value", "builtins:builtin_function_or_method"),
    ],
)
def test_unsupported_types_raise_type_error_naming_type_place_and_key(
    value: object, where: str, type_name: str
) -> None:
    with pytest.raises(TypeError) as info:
        canonical(value)
    message = str(info.value)
    assert message.startswith(
        f"cannot make a cache key of {where}: type {type_name} is not supported"
    )
    assert "pass key= (a function of the call's arguments that returns a str) instead" in message


def test_make_key_names_the_argument_that_has_no_key() -> None:
    with pytest.raises(TypeError, match=r"^cannot make a cache key of kwargs\['conn'\]: type "):
        make_key("ns", 1, "m:f", (1,), {"conn": object()})
    with pytest.raises(TypeError, match=r"^cannot make a cache key of args\[1\]\[0\]: type "):
        make_key("ns", 1, "m:f", (1, [object()]), {})


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[object] = [1]
    loop.append(loop)
    with pytest.raises(
        ValueError, match=r"^cannot make a cache key of value\[1\]: it contains itself$"
    ):
        canonical(loop)


def test_a_value_seen_twice_is_not_a_cycle() -> None:
    shared = [1, 2]
    assert canonical([shared, shared]) == canonical([[1, 2], [1, 2]])


# --- stable across processes --------------------------------------------------------------------

STABILITY_SCRIPT = """
import dataclasses, enum, pydantic
from perfkit.cache._keys import make_key

class Mode(enum.Enum):
    FAST = "fast"

@dataclasses.dataclass
class Box:
    items: set[str]

class Query(pydantic.BaseModel):
    text: str
    limits: dict[str, int]

WORDS = {f"word{i}" for i in range(40)}
ARGS = (WORDS, frozenset(WORDS), Mode.FAST, Box(WORDS), -0.0)
KWARGS = {
    "by_word": dict.fromkeys(WORDS, 1.5),
    "query": Query(text="hi", limits=dict.fromkeys(WORDS, 2)),
    "blob": b"\\x00\\x01",
    "nested": [(1, "a"), {"z": None, "y": float("nan")}],
}
KEY = make_key("stable", "2024-06", "tests:stable", ARGS, KWARGS)
"""


def run_with_hash_seed(seed: str) -> list[str]:
    code = STABILITY_SCRIPT + "print(KEY)\nprint(list(WORDS))\n"
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def test_keys_are_the_same_in_processes_with_different_hash_seeds() -> None:
    here: dict[str, Any] = {"__name__": "__main__"}  # as in the subprocess
    exec(STABILITY_SCRIPT, here)
    runs = [run_with_hash_seed(seed) for seed in ("0", "1", "12345")]
    assert {key for key, _order in runs} == {here["KEY"]}
    # The seeds did change set and dict order, so the test could have caught a difference.
    assert len({order for _key, order in runs}) > 1


# --- make_key -----------------------------------------------------------------------------------


def test_key_layout_and_digest() -> None:
    key = make_key("app", 3, "pkg.mod:f", (1, "a"), {"flag": True})
    parts = KEY.match(key)
    assert parts is not None
    assert parts.group("namespace", "version", "identity") == ("app", "3", "pkg.mod:f")
    arguments = canonical(((1, "a"), {"flag": True}))
    assert parts["digest"] == hashlib.sha256(arguments.encode()).hexdigest()[:DIGEST_LENGTH]
    assert len(parts["digest"]) == 32


def test_keyword_argument_order_does_not_matter() -> None:
    assert key_of(a=1, b=2, c={"x": 1, "y": 2}) == key_of(c={"y": 2, "x": 1}, b=2, a=1)


def test_namespace_version_and_identity_are_part_of_the_key() -> None:
    base = make_key("a", 1, "m:f", (1,), {})
    assert make_key("b", 1, "m:f", (1,), {}) != base
    assert make_key("a", 2, "m:f", (1,), {}) != base
    assert make_key("a", "1", "m:f", (1,), {}) == base  # v1 either way
    assert make_key("a", 1, "m:g", (1,), {}) != base
    assert make_key("a", 1, "m:f", (2,), {}) != base


def test_args_and_kwargs_are_not_interchangeable() -> None:
    assert make_key("n", 1, "m:f", (1,), {}) != make_key("n", 1, "m:f", (), {"a": 1})


def test_a_namespace_may_use_colons_like_redis_keys_do() -> None:
    assert make_key("app:llm", 1, "m:f", (), {}).startswith("app%3Allm:v1:m:f:")


def test_short_keys_are_left_alone() -> None:
    key = make_key("n", 1, "m:f", (), {}, max_length=len("n:v1:m:f:") + 32)
    assert ":m:f:" in key


def test_keys_are_bounded_with_a_long_qualname_and_huge_arguments() -> None:
    identity = "some.deeply.nested.module:" + ".".join(["Outer", "<locals>"] * 60) + ".method"
    huge = (list(range(100_000)), "x" * 1_000_000)
    key = make_key("ns", 1, identity, huge, {}, max_length=DEFAULT_MAX_KEY_LENGTH)
    assert len(key) == DEFAULT_MAX_KEY_LENGTH
    assert key.startswith("ns:v1:some.deeply.nested.module:Outer.<locals>.")
    assert make_key("ns", 1, identity, huge, {}) == key
    # Identities that share the kept prefix still give different keys.
    other = make_key("ns", 1, identity + "2", huge, {})
    assert len(other) == DEFAULT_MAX_KEY_LENGTH
    assert other != key
    assert other[:-50] == key[:-50]


@pytest.mark.parametrize("max_length", [60, 100, 199])
def test_any_max_length_with_room_for_the_hashes_is_met_exactly(max_length: int) -> None:
    key = make_key("ns", 1, "m:" + "f" * 500, (), {}, max_length=max_length)
    assert len(key) == max_length
    assert re.search(r"~[0-9a-f]{16}:[0-9a-f]{32}$", key)


def test_a_max_length_without_room_for_the_hashes_is_refused() -> None:
    # "ns:v1:" + "~" and 16 hex digits + ":" and 32 hex digits = 56 characters
    make_key("ns", 1, "m:" + "f" * 100, (), {}, max_length=56)
    with pytest.raises(
        ValueError,
        match=r"^max_length must be at least 56 for namespace 'ns' and version 1, got 55$",
    ):
        make_key("ns", 1, "m:" + "f" * 100, (), {}, max_length=55)


@pytest.mark.parametrize("namespace", ["", "my app", "tab\tbed", "new\nline", 7, None])
def test_namespace_must_be_a_non_empty_str_without_whitespace(namespace: Any) -> None:
    message = f"namespace must be a non-empty str without whitespace, got {namespace!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make_key(namespace, 1, "m:f", (), {})


@pytest.mark.parametrize("version", ["", True, 1.5, None])
def test_version_must_be_an_int_or_a_non_empty_str(version: Any) -> None:
    message = f"version must be an int or a non-empty str, got {version!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make_key("ns", version, "m:f", (), {})


@pytest.mark.parametrize("identity", ["", None])
def test_identity_must_be_a_non_empty_str(identity: Any) -> None:
    with pytest.raises(ValueError, match=r"^identity must be a non-empty str, got "):
        make_key("ns", 1, identity, (), {})


@pytest.mark.parametrize("max_length", [0, -5, 2.5, True])
def test_max_length_must_be_a_positive_int(max_length: Any) -> None:
    message = f"max_length must be an int >= 1, got {max_length!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make_key("ns", 1, "m:f", (), {}, max_length=max_length)


# --- function_identity --------------------------------------------------------------------------


def plain(a: int, b: int = 2) -> int:
    return a + b


class Service:
    def method(self, a: int) -> int:
        return a

    @classmethod
    def build(cls, a: int) -> int:
        return a

    @staticmethod
    def helper(a: int) -> int:
        return a

    def __call__(self, a: int) -> int:
        return a


def make_nested() -> Any:
    def nested(a: int) -> int:
        return a

    return nested


def test_functions_are_named_by_module_and_qualname() -> None:
    assert function_identity(plain) == f"{__name__}:plain"
    nested = function_identity(make_nested())
    assert re.fullmatch(rf"{__name__}:make_nested\.<locals>\.nested@\d+#[0-9a-f]{{16}}", nested)
    assert function_identity(Service) == f"{__name__}:Service"
    assert function_identity(len) == "builtins:len"


def test_methods_bound_or_not_are_named_by_their_function() -> None:
    assert function_identity(Service.method) == f"{__name__}:Service.method"
    assert function_identity(Service().method) == f"{__name__}:Service.method"
    assert function_identity(Service.build) == f"{__name__}:Service.build"
    assert function_identity(Service.helper) == f"{__name__}:Service.helper"


def scaled(factor: int) -> Any:
    def decorate(function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return factor * function(*args, **kwargs)

        return wrapper

    return decorate


def test_a_decorators_wrapper_and_what_it_closes_over_are_part_of_the_name() -> None:
    # functools.wraps copies plain's name onto each wrapper: the name alone cannot tell
    # a doubled plain from a tripled one.
    assert function_identity(scaled(2)(plain)) != function_identity(scaled(3)(plain))
    assert function_identity(scaled(2)(plain)) != function_identity(plain)
    assert function_identity(scaled(2)(plain)) == function_identity(scaled(2)(plain))
    assert function_identity(scaled(2)(plain)).startswith(f"{__name__}:plain@")


def test_lambdas_carry_their_line_and_code_so_two_lambdas_differ() -> None:
    first = lambda a: a  # noqa: E731
    second = lambda a: -a  # noqa: E731
    one, two = lambda a: a + 1, lambda a: a + 2
    line = first.__code__.co_firstlineno
    expected = re.escape(
        f"{__name__}:test_lambdas_carry_their_line_and_code_so_two_lambdas_differ.<locals>.<lambda>"
    )
    assert re.fullmatch(rf"{expected}@{line}#[0-9a-f]{{16}}", function_identity(first))
    assert re.fullmatch(rf"{expected}@{line + 1}#[0-9a-f]{{16}}", function_identity(second))
    assert function_identity(one) != function_identity(two)  # one line, two functions


def make_multiplier(n: Any) -> Any:
    def multiply(x: int) -> Any:
        return x * n

    return multiply


def test_closures_of_one_factory_differ_by_the_values_they_close_over() -> None:
    assert function_identity(make_multiplier(3)) != function_identity(make_multiplier(2))
    assert function_identity(make_multiplier(3)) == function_identity(make_multiplier(3))
    assert function_identity(make_multiplier("a")) != function_identity(make_multiplier(("a",)))
    partial_3 = functools.partial(make_multiplier(3), 5)
    assert function_identity(partial_3) != function_identity(
        functools.partial(make_multiplier(2), 5)
    )


def test_functions_made_in_one_place_under_one_name_differ_by_their_code() -> None:
    def make(kind: str) -> Any:
        if kind == "add":

            def combine(a: int, b: int) -> int:
                return a + b

        else:

            def combine(a: int, b: int) -> int:
                return a - b

        return combine

    assert make("add").__qualname__ == make("sub").__qualname__
    assert function_identity(make("add")) != function_identity(make("sub"))


def test_closed_over_functions_are_named_and_other_objects_told_apart_by_type() -> None:
    assert function_identity(make_multiplier(plain)) != function_identity(
        make_multiplier(make_nested)
    )
    lock = threading.Lock()
    assert identify(make_multiplier(lock))[1] == [("n", lock)]
    assert identify(make_multiplier([1]))[1] == [("n", [1])]  # mutable: by identity
    assert identify(make_multiplier((1, frozenset({"a"}))))[1] == []
    assert function_identity(make_multiplier([1])) == function_identity(make_multiplier([2]))
    assert function_identity(make_multiplier([1])) != function_identity(make_multiplier({1}))


def test_closure_identities_are_the_same_in_another_process() -> None:
    code = (
        "def make(n):\n"
        "    def f(x):\n"
        "        return (x, n)\n"
        "    return f\n"
        "g = make((3, frozenset({'a', 'b', 'c'}), 'x'))\n"
        "h = lambda y: g(y)\n"
    )
    probe = (
        "from perfkit.cache._keys import function_identity\n"
        f"scope = {{'__name__': 'probe'}}\nexec({code!r}, scope)\n"
        "print(function_identity(scope['g']), function_identity(scope['h']))"
    )
    scope: dict[str, Any] = {"__name__": "probe"}
    exec(code, scope)
    here = f"{function_identity(scope['g'])} {function_identity(scope['h'])}"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONHASHSEED": "99"},  # another order of a frozenset's items
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == here


def test_partials_are_named_by_function_and_fixed_arguments() -> None:
    one = functools.partial(plain, 1)
    pattern = rf"{re.escape(__name__)}:plain<partial:[0-9a-f]{{16}}>"
    assert re.fullmatch(pattern, function_identity(one))
    assert function_identity(functools.partial(plain, 1)) == function_identity(one)
    assert function_identity(functools.partial(plain, 2)) != function_identity(one)
    assert function_identity(functools.partial(plain, b=1)) != function_identity(one)


def test_a_partial_fixing_an_unsupported_value_is_refused() -> None:
    with pytest.raises(TypeError, match=r"^cannot make a cache key of partial\.keywords\['b'\]: "):
        function_identity(functools.partial(plain, b=object()))  # type: ignore[arg-type]


def test_callable_instances_have_no_stable_name() -> None:
    message = f"not a {__name__}:Service; cache a function that calls it instead"
    with pytest.raises(TypeError, match=re.escape(message)):
        function_identity(Service())


def test_identities_are_the_same_in_another_process() -> None:
    code = (
        "import functools, json\n"
        "from perfkit.cache._keys import function_identity, make_key\n"
        "print(function_identity(json.dumps), function_identity(functools.partial(json.dumps, 1)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "99"},
        capture_output=True,
        text=True,
        check=True,
    )
    here = f"{function_identity(json.dumps)} {function_identity(functools.partial(json.dumps, 1))}"
    assert done.stdout.strip() == here


# --- bind_arguments -----------------------------------------------------------------------------


def test_positional_and_keyword_spellings_of_a_call_give_one_key() -> None:
    spellings = [((1,), {"b": 2}), ((), {"a": 1, "b": 2}), ((1, 2), {}), ((), {"b": 2, "a": 1})]
    bound = {repr(bind_arguments(plain, args, kwargs)) for args, kwargs in spellings}
    assert bound == {"((1, 2), {})"}
    keys = {key_of(*bind_arguments(plain, args, kwargs)[0]) for args, kwargs in spellings}
    assert len(keys) == 1


def test_defaults_are_applied() -> None:
    assert bind_arguments(plain, (1,), {}) == bind_arguments(plain, (1, 2), {}) == ((1, 2), {})
    assert bind_arguments(plain, (1, 3), {}) != bind_arguments(plain, (1,), {})


def test_keyword_only_and_variadic_parameters() -> None:
    def f(a: int, *rest: int, flag: bool = False, **extra: int) -> None:
        pass

    assert bind_arguments(f, (1, 2, 3), {"z": 1, "flag": True}) == (
        (1, 2, 3),
        {"flag": True, "z": 1},
    )
    assert bind_arguments(f, (), {"a": 1}) == ((1,), {"flag": False})


def test_bound_methods_leave_self_out_and_plain_functions_keep_it() -> None:
    service = Service()
    assert bind_arguments(service.method, (), {"a": 5}) == ((5,), {})
    assert bind_arguments(Service.method, (service,), {"a": 5}) == ((service, 5), {})


def test_a_call_the_function_cannot_accept_raises_type_error() -> None:
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        bind_arguments(plain, (), {"b": 1})
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'c'"):
        bind_arguments(plain, (1,), {"c": 1})


def test_callables_without_a_signature_keep_their_arguments_as_given() -> None:
    assert bind_arguments(min, (3, 1), {"key": None}) == ((3, 1), {"key": None})


# --- components are encoded so that no two distinct keys or namespaces can meet (issue 14) --

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Few letters and every separator, so that collisions, if the encoding allowed any, are likely.
_tricky = st.text(alphabet="ab1v:%~", min_size=1, max_size=8)
_versions = st.one_of(st.integers(min_value=0, max_value=12), _tricky)


def test_a_version_with_a_colon_no_longer_meets_another_identity() -> None:
    # The issue's case: version "1:mod" with identity "f:x", and version 1 with "mod:f:x".
    assert make_key("n", "1:mod", "f:x", (), {}) != make_key("n", 1, "mod:f:x", (), {})


def test_a_namespace_with_a_colon_no_longer_meets_another_namespace() -> None:
    assert make_key("n:v1:x", 1, "m:f", (), {}) != make_key("n", 1, "x:v1:m:f", (), {})
    assert not make_key("n:v1:x", 1, "m:f", (), {}).startswith(key_prefix("n", 1))


def _splits(text: str) -> list[tuple[str, str, str]]:
    """Every (namespace, version, identity) that a plain ``ns:v{version}:identity`` join
    would have turned into ``text``."""
    found = []
    for first in range(1, len(text)):
        if text[first : first + 2] != ":v":
            continue
        for second in range(first + 3, len(text) - 1):
            if text[second] == ":":
                found.append((text[:first], text[first + 2 : second], text[second + 1 :]))
    return found


@settings(max_examples=150, deadline=None)
@given(_tricky, _versions, _tricky)
def test_components_that_join_to_one_text_never_give_one_key(
    namespace: str, version: int | str, identity: str
) -> None:
    key = make_key(namespace, version, identity, (), {})
    for other in _splits(f"{namespace}:v{version}:{identity}"):
        if other != (namespace, str(version), identity):
            assert make_key(*other, (), {}) != key, other


@settings(max_examples=150, deadline=None)
@given(_tricky, _versions, _tricky)
def test_no_other_namespace_has_a_key_that_starts_with_this_namespaces_prefix(
    namespace: str, version: int | str, tail: str
) -> None:
    prefix = key_prefix(namespace, version)
    for other in _splits(f"{namespace}:v{version}:{tail}"):
        if other[:2] != (namespace, str(version)):
            assert not key_prefix(*other[:2]).startswith(prefix), other
            assert not make_key(*other, (), {}).startswith(prefix), other


@settings(max_examples=100, deadline=None)
@given(_tricky, _tricky)
def test_a_named_entry_is_never_a_functions_entry_or_a_lock(name: str, identity: str) -> None:
    cache = MultiLayerCache(None, namespace="n")
    function_key = make_key("n", 1, identity, (), {})
    assert cache.key(function_key.removeprefix(cache.prefix)) != function_key
    assert cache.key(name) != cache.key(identity) or name == identity
    assert cache.key(f"{name}:lock") != f"{cache.key(name)}:lock"


def test_clear_leaves_every_namespace_that_merely_starts_like_its_own() -> None:
    redis_client = fakeredis.FakeRedis()
    target = MultiLayerCache(redis_client, namespace="n")
    neighbours = [
        MultiLayerCache(redis_client, namespace="n:v1:x"),
        MultiLayerCache(redis_client, namespace="n", version="1:x"),
        MultiLayerCache(redis_client, namespace="n%3Av1"),
    ]
    for cache in [target, *neighbours]:
        cache.set("a", cache.namespace)
    target.clear()
    assert target.get("a") is None
    for cache in neighbours:
        cache.l1.clear()
        assert cache.get("a") == cache.namespace


# --- @cached on closures, lambdas, partials and local classes (issue 14) -----------------------


def make_scaler(n: int) -> Any:
    def scale(x: int) -> int:
        return x * n

    return scale


def test_two_closures_of_one_factory_never_share_a_value() -> None:
    cache = MultiLayerCache(fakeredis.FakeRedis(), namespace="closures")
    double, triple = cached(cache)(make_scaler(2)), cached(cache)(make_scaler(3))
    assert double(5) == 10
    assert triple(5) == 15  # it was 10: the closures had one key
    assert double.cache_key(5) != triple.cache_key(5)


def test_closures_made_in_two_processes_never_share_a_value_through_l2() -> None:
    redis_client = fakeredis.FakeRedis()
    assert cached(MultiLayerCache(redis_client))(make_scaler(2))(5) == 10
    assert cached(MultiLayerCache(redis_client))(make_scaler(3))(5) == 15
    assert cached(MultiLayerCache(redis_client))(make_scaler(2))(5) == 10


def test_lambdas_and_partials_of_closures_never_share_a_value() -> None:
    cache = MultiLayerCache(None, namespace="closures")
    plus_one, plus_two = cached(cache)(lambda x: x + 1), cached(cache)(lambda x: x + 2)
    assert (plus_one(1), plus_two(1)) == (2, 3)
    of_two = cached(cache)(functools.partial(make_scaler(2), 5))
    of_three = cached(cache)(functools.partial(make_scaler(3), 5))
    assert (of_two(), of_three()) == (10, 15)


def test_a_recursive_closure_is_cached() -> None:
    cache = MultiLayerCache(None, namespace="closures")

    def make(step: int) -> Any:
        @cached(cache)
        def countdown(n: int) -> int:
            return 0 if n <= 0 else 1 + countdown(n - step)

        return countdown

    assert (make(1)(10), make(5)(10)) == (10, 2)


class Client:
    """A value without a canonical form, like an API client."""

    def __init__(self, factor: int) -> None:
        self.factor = factor


def make_client_scaler(client: Client) -> Any:
    def scale(x: int) -> int:
        return x * client.factor

    return scale


def test_two_closures_over_different_objects_are_refused_on_one_cache() -> None:
    cache = MultiLayerCache(None, namespace="closures")
    client = Client(2)
    first = cached(cache)(make_client_scaler(client))
    cached(cache)(make_client_scaler(client))  # the same object: the same function
    with pytest.raises(TypeError, match=r"closing over another 'client' \(Client\).*pass name="):
        cached(cache)(make_client_scaler(Client(3)))
    third = cached(cache, name="scale-by-3")(make_client_scaler(Client(3)))
    assert (first(5), third(5)) == (10, 15)
    cached(MultiLayerCache(None, namespace="closures"))(make_client_scaler(Client(3)))


def test_a_method_of_a_class_made_in_a_function_needs_a_name() -> None:
    cache = MultiLayerCache(None, namespace="closures")

    def make(factor: int) -> Any:
        class Scaler:
            scale = factor

            def apply(self, x: int) -> int:
                return x * self.scale

        return Scaler

    def method_of(scaler: Any, name: str | None = None) -> Any:
        return cached(cache, name=name)(scaler.__dict__["apply"])

    with pytest.raises(TypeError, match=r"a method of a class made inside a function.*name="):
        method_of(make(2))
    with pytest.raises(TypeError, match=r"is a class made inside a function.*name="):
        cached(cache)(make(2))
    doubled, tripled = make(2), make(3)
    doubled.apply = method_of(doubled, "apply-2")
    tripled.apply = method_of(tripled, "apply-3")
    assert (doubled().apply(5), tripled().apply(5)) == (10, 15)


def test_a_function_made_in_a_function_keeps_a_first_argument_named_self_in_its_key() -> None:
    cache = MultiLayerCache(None, namespace="closures")

    @cached(cache)
    def describe(self: str, detail: str) -> str:  # not a method: self is an argument
        return f"{self}: {detail}"

    assert describe("a", "x") == "a: x"
    assert describe("b", "x") == "b: x"


def test_closures_over_variables_bound_later_or_over_bound_methods_are_told_apart() -> None:
    cache = MultiLayerCache(None, namespace="closures")

    def make(n: int) -> Any:
        @cached(cache)
        def scale(x: int) -> int:
            return x * factor

        factor = n
        return scale

    make(2)
    with pytest.raises(TypeError, match=r"closing over another 'factor'.*pass name="):
        make(3)

    def make_caller(method: Any) -> Any:
        def call(x: int) -> Any:
            return method(x)

        return call

    cached(cache)(make_caller(Client(2).__init__))
    with pytest.raises(TypeError, match=r"closing over another 'self' \(Client\)"):
        cached(cache)(make_caller(Client(3).__init__))
