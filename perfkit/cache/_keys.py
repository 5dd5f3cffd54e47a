"""Cache keys that are the same in every process and every run: canonical JSON, hashed.

A key is ``{namespace}:v{version}:{identity}:{digest}``, where the identity names the
cached function (``module:qualname``) and the digest is the first 32 hex digits of the
SHA-256 of the call's arguments in canonical form. Nothing in it depends on ``hash()``
(salted per process), ``id()``, or the order a dict was filled in.

The components are encoded so that no two distinct ones can meet: ``%`` and ``:`` in the
namespace and the version are percent-escaped (``%25``, ``%3A``), so the prefix
``{namespace}:v{version}:`` ends at its second ``:`` and no namespace's prefix starts
another's keys (``clear()`` deletes exactly its own). The identity may hold ``:``, since
the digest after it has a fixed length; ``%`` and ``~`` in it are escaped, as ``~`` marks
an identity cut short. An entry a cache names itself (``cache.set(name, ...)``) has ``%``
and ``:`` of its name escaped, so it is never a function's entry nor a compute lock
(``{key}:lock``). Names made of letters, digits, ``.``, ``_``, ``-`` and the like are
written as they are; the version 1 and ``"1"`` are one version.

The canonical form is JSON in which every value's type can be told from its text, so
arguments a function could answer differently for never share a key:

* ``None``, ``True``/``False``, ``str``, ``int`` and ``float`` are JSON scalars, which keeps
  ``1``, ``1.0``, ``True`` and ``"1"`` apart. Floats are written with ``repr``, so they
  round-trip exactly and ``-0.0`` differs from ``0.0`` (``math.copysign`` and ``atan2``
  tell them apart). NaN, ``inf`` and ``-inf`` are ``["float", "nan"]`` and so on: every
  NaN gets the same key. Integers of over 1024 bits are written in hex, so the text does
  not depend on the interpreter's int-to-str digit limit.
* Everything else is an array whose first element names what it is: ``["tuple", ...]``,
  ``["list", ...]``, ``["bytes", base64]``, ``["bytearray", base64]``, ``["dict", [k, v],
  ...]`` with pairs sorted by the keys' canonical text (so keys need not be strings),
  ``["set", ...]`` and ``["frozenset", ...]`` sorted the same way, ``["enum", type,
  name]``, ``["dataclass", type, [field, value], ...]`` (fields that take part in
  ``==``, in definition order) and ``["pydantic", type, {"fields": ..., "extra": ...}]``
  (every field's value, those excluded from dumps too; a model with a field of a type
  without a canonical form is ``["pydantic-json", type, model_dump(mode="json"),
  excluded fields]``), where ``type`` is ``"module:qualname"``. Subclasses of these types
  are written as their base type (a namedtuple as a tuple, an OrderedDict as a dict), as
  ``==`` treats them.

Any other type raises ``TypeError``: there is no canonical text for an arbitrary object,
and falling back to ``repr`` or ``id`` would give keys that differ between runs, or a
shared key for objects that differ. Such calls need a custom ``key=`` function.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import enum
import functools
import hashlib
import inspect
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from perfkit._validation import check_count
from perfkit.cache._l1 import immutable

DEFAULT_MAX_KEY_LENGTH = 200
DIGEST_LENGTH = 32
"""Hex digits of the arguments' SHA-256 kept in a key (128 bits)."""

_IDENTITY_HASH_LENGTH = 16
TRANSPARENT = "__perfkit_transparent__"
"""An attribute of a wrapper that adds nothing to what it wraps (``@cached``'s own)."""
# Percent-escapes (with "%" itself escaped, so they are injective): ":" ends the namespace
# and the version, "~" marks an identity cut short.
_PREFIX_ESCAPES = str.maketrans({"%": "%25", ":": "%3A"})
_IDENTITY_ESCAPES = str.maketrans({"%": "%25", "~": "%7E"})
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_DECIMAL_INT_BITS = 1024
_SUPPORTED = (
    "None, bool, int, float, str, bytes, bytearray, tuple, list, dict, set, frozenset, "
    "enum members, dataclass instances and pydantic models"
)


def canonical(value: Any) -> str:
    """The canonical JSON text of ``value``: equal for equal arguments, in any process.

    >>> canonical({"b": [1, 1.0, True], "a": (None, b"hi")})
    '["dict",["a",["tuple",null,["bytes","aGk="]]],["b",["list",1,1.0,true]]]'
    """
    return _canonical_at(value, "value")


def function_identity(func: Callable[..., object]) -> str:
    """``module:qualname`` of a function, method, class or partial, the same in every run.

    A bound method is named by its function (the caller decides what ``self`` adds to
    the key). A ``functools.partial`` is its function's name plus a hash of the arguments
    it fixes. A name that may stand for more than one function, that of a lambda or of a
    function made inside another (``make.<locals>.triple``, a decorator's wrapper), also
    carries its line and a hash of its code and of the values it closes over, so two
    closures of one factory (``make(3)``, ``make(2)``) have different names. A closed-over
    value without a canonical form (a client, a lock) enters the hash by its type only:
    see :func:`identify`.

    >>> function_identity(canonical)
    'perfkit.cache._keys:canonical'
    >>> function_identity(functools.partial(canonical, 1))
    'perfkit.cache._keys:canonical<partial:...>'
    >>> def make(n):
    ...     return lambda x: x * n
    >>> function_identity(make(3)) != function_identity(make(2))
    True
    """
    return identify(func)[0]


def identify(func: Callable[..., object]) -> tuple[str, list[tuple[str, object]]]:
    """:func:`function_identity`, and the values ``func`` closes over whose contents are
    not in it, by variable name: mutable ones (a list, a dict) and those without a
    canonical form (a client, a lock).

    Only their type is in the name, just as a module-level function's globals are not in
    its name at all: two closures that differ only in them share a name, so ``@cached``
    refuses the second of two such functions on one cache.
    """
    identity, objects, _ = identify_watching(func)
    return identity, objects


Cells = list[tuple[Any, object]]
"""Closure cells whose contents a name was made from, each with what it held then."""


def identify_watching(func: Callable[..., object]) -> tuple[str, list[tuple[str, object]], Cells]:
    """:func:`identify`, and the closure cells (with what they held) the name was made
    from: a variable a closure rebinds after decoration (``n = k`` after the ``def``, a
    ``nonlocal`` assignment) changes what the function computes, so a caller re-names the
    function whenever :func:`cells_changed` says one of them was rebound."""
    objects: list[tuple[str, object]] = []
    cells: Cells = []
    return _identity(func, set(), objects, cells), objects, cells


def cells_changed(cells: Cells) -> bool:
    """Whether any of ``cells`` holds another object than it did (or was bound since)."""
    for cell, held in cells:
        try:
            now = cell.cell_contents
        except ValueError:
            now = _UNBOUND
        if now is not held:
            return True
    return False


_UNBOUND: Any = object()


def _identity(func: Any, active: set[int], objects: list[tuple[str, object]], cells: Cells) -> str:
    if isinstance(func, functools.partial):
        fixed = _tagged(
            "tuple",
            [
                _canonical_at(func.args, "partial.args"),
                _canonical_at(func.keywords, "partial.keywords"),
            ],
        )
        inner = _identity(func.func, active, objects, cells)
        return f"{inner}<partial:{_sha256(fixed)[:_IDENTITY_HASH_LENGTH]}>"
    if inspect.ismethod(func):
        owner = func.__self__
        # The instance, or a class made inside a function: an object, told by identity
        if not isinstance(owner, type) or "<locals>" in owner.__qualname__:
            objects.append(("self", owner))
        return _identity(func.__func__, active, objects, cells)
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(
            f"cannot name {func!r} the same way in every run: function_identity() takes a "
            "function, method, class or functools.partial, not a "
            f"{_type_name(func)}; cache a function that calls it instead"
        )
    name = f"{module}:{qualname}"
    if id(func) in active:  # a function that refers to itself: its name says enough
        return name
    active.add(id(func))
    try:
        local = _local_layers(func, active, objects, cells)
    finally:
        active.discard(id(func))
    if not local:
        return name
    code = getattr(inspect.unwrap(func), "__code__", None)
    line = f"@{code.co_firstlineno}" if code is not None else ""
    return f"{name}{line}#{_sha256(_tagged('list', local))[:_IDENTITY_HASH_LENGTH]}"


def _local_layers(
    func: Any, active: set[int], objects: list[tuple[str, object]], cells: Cells
) -> list[str]:
    """The code and closed-over values of every layer of ``func`` (it and what it wraps,
    through ``__wrapped__``) whose code is not that of the module-level function it is
    named as; a callable object (whose name ``update_wrapper`` may have copied from the
    function it wraps) by its type, and itself by identity."""
    layers: list[str] = []
    layer = func
    while layer is not None:
        if isinstance(layer, functools.partial) or inspect.ismethod(layer):
            layers.append(json.dumps(_identity(layer, active, objects, cells)))
            break
        if _is_callable_object(layer):
            objects.append(("self", layer))
            layers.append(_tagged("object", [json.dumps(_type_name(layer))]))
        code = getattr(layer, "__code__", None)
        if code is not None and _named_apart(layer, code) and not hasattr(layer, TRANSPARENT):
            texts = _cells(layer, code, active, objects, cells)
            layers.append(_tagged("code", [json.dumps(_code_digest(code)), *texts]))
        layer = getattr(layer, "__wrapped__", None)
    return layers


def _is_callable_object(value: Any) -> bool:
    """An instance of a class with ``__call__``: not a function, class or builtin."""
    return not (
        inspect.isfunction(value)
        or inspect.isbuiltin(value)
        or isinstance(value, type)
        or inspect.ismethoddescriptor(value)
    )


def _named_apart(func: Any, code: Any) -> bool:
    """Whether ``func``'s name may stand for more than one function: it is made inside a
    function, a lambda, or renamed (``functools.update_wrapper`` gives a module-level
    wrapper the name of what it wraps)."""
    qualname = code.co_qualname
    return "<locals>" in qualname or "<lambda>" in qualname or qualname != func.__qualname__


def _cells(
    func: Any, code: Any, active: set[int], objects: list[tuple[str, object]], cells: Cells
) -> list[str]:
    texts = []
    closure = getattr(func, "__closure__", None) or ()
    for variable, cell in zip(code.co_freevars, closure, strict=True):
        try:
            value = cell.cell_contents
        except ValueError:  # not bound yet
            if variable != code.co_name:  # what it will hold is unknown: told by identity
                objects.append((variable, cell))
                cells.append((cell, _UNBOUND))
            # (the function's own name will hold what this function is decorated into)
            text = '"<unbound>"'
        else:
            cells.append((cell, value))
            text = _closed_over(value, variable, active, objects, cells)
        texts.append(_pair(json.dumps(variable), text))
    return texts


def _closed_over(
    value: Any,
    variable: str,
    active: set[int],
    objects: list[tuple[str, object]],
    cells: Cells,
) -> str:
    if inspect.ismodule(value):
        return _tagged("module", [json.dumps(value.__name__)])
    if isinstance(value, type) and "<locals>" not in value.__qualname__:
        return _tagged("class", [json.dumps(f"{value.__module__}:{value.__qualname__}")])
    if isinstance(value, functools.partial) or (
        callable(value) and not isinstance(value, type) and hasattr(value, "__qualname__")
    ):
        with contextlib.suppress(TypeError):  # no name: an object like any other
            return _tagged("function", [json.dumps(_identity(value, active, objects, cells))])
    if immutable(value):
        return _encode(value, set())
    # A list, a dict, a client: what the function sees is the object as it is when
    # called, not as it was when decorated, so it is told apart by identity only.
    objects.append((variable, value))
    return _tagged("object", [json.dumps(_type_name(value))])


def _code_digest(code: Any) -> str:
    """A hash of what a code object does: its bytecode, names and constants."""
    consts = []
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            consts.append(_tagged("code", [json.dumps(_code_digest(const))]))
            continue
        try:
            consts.append(_encode(const, set()))
        except _Refused:  # Ellipsis, complex: literals whose repr is stable
            consts.append(_tagged("repr", [json.dumps(repr(const))]))
    text = _tagged(
        "code",
        [
            json.dumps(code.co_code.hex()),
            json.dumps(list(code.co_names)),
            json.dumps(list(code.co_varnames)),
            json.dumps(list(code.co_freevars)),
            *consts,
        ],
    )
    return _sha256(text)[:_IDENTITY_HASH_LENGTH]


def bind_arguments(
    func: Callable[..., object], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call's arguments as ``func`` receives them, defaults included, so that every way
    of spelling one call gives the same key.

    Parameters that can be passed by position are returned positionally, the rest by
    keyword. A call ``func`` cannot accept raises ``TypeError``, as calling it would. For a
    callable without a signature the arguments are returned as given.

    >>> def greet(name, greeting="hello", *, punctuation="!"):
    ...     return f"{greeting}, {name}{punctuation}"
    >>> bind_arguments(greet, (), {"name": "Ada"})
    (('Ada', 'hello'), {'punctuation': '!'})
    >>> bind_arguments(greet, ("Ada", "hello"), {"punctuation": "!"})
    (('Ada', 'hello'), {'punctuation': '!'})
    """
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins and C callables have none
        return tuple(args), dict(kwargs)
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.args, dict(bound.kwargs)


def key_prefix(namespace: str, version: int | str) -> str:
    """What every key of a namespace and version starts with, and no other key does.

    >>> key_prefix("app:llm", 2)
    'app%3Allm:v2:'
    """
    _check_namespace(namespace)
    _check_version(version)
    return f"{namespace.translate(_PREFIX_ESCAPES)}:v{str(version).translate(_PREFIX_ESCAPES)}:"


def entry_name(name: str) -> str:
    """A cache's own entry name as it appears after the prefix: ``%`` and ``:`` escaped.

    >>> entry_name("user:42")
    'user%3A42'
    """
    if not isinstance(name, str):
        raise TypeError(f"an entry name must be a str, got {name!r}")
    escaped = name.translate(_PREFIX_ESCAPES)
    if _encodable(escaped):
        return escaped
    # A lone surrogate (JSON can carry one): Redis keys are UTF-8, so it is escaped too,
    # as %uD800 ("%" is escaped above, so the escape is injective).
    return _SURROGATE.sub(lambda found: f"%u{ord(found.group()):04X}", escaped)


def make_key(
    namespace: str,
    version: int | str,
    identity: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    max_length: int = DEFAULT_MAX_KEY_LENGTH,
) -> str:
    """The cache key of a call: ``{namespace}:v{version}:{identity}:{digest}``.

    The digest is the first 32 hex digits of the SHA-256 of ``canonical((args, kwargs))``.
    A key longer than ``max_length`` characters has its identity cut short, ending in
    ``~`` and a hash of the whole identity, so long names still give distinct keys.
    Components are escaped as the module docstring says, so distinct ones never meet.

    >>> make_key("app", 2, "billing:total", (1, 2), {"currency": "EUR"})
    'app:v2:billing:total:1aa834166d97f0d5480f2c73548f5937'
    """
    head = key_prefix(namespace, version)
    _check_identity(identity)
    _check_max_length(max_length)
    arguments = _tagged(
        "tuple", [_canonical_at(tuple(args), "args"), _canonical_at(dict(kwargs), "kwargs")]
    )
    identity = identity.translate(_IDENTITY_ESCAPES)
    tail = f":{_sha256(arguments)[:DIGEST_LENGTH]}"
    room = max_length - len(head) - len(tail)
    if len(identity) <= room:
        return f"{head}{identity}{tail}"
    marker = f"~{_sha256(identity)[:_IDENTITY_HASH_LENGTH]}"
    if room < len(marker):
        raise ValueError(
            f"max_length must be at least {max_length - room + len(marker)} for namespace "
            f"{namespace!r} and version {version!r}, got {max_length!r}"
        )
    return f"{head}{identity[: room - len(marker)]}{marker}{tail}"


# --- the canonical encoding --------------------------------------------------------------


class _Refused(Exception):
    """A value that has no canonical text, and the steps (innermost first) to reach it."""

    def __init__(self, error: type[Exception], problem: str) -> None:
        super().__init__(problem)
        self.error = error
        self.problem = problem
        self.steps: list[str] = []


def _canonical_at(value: Any, root: str) -> str:
    try:
        return _encode(value, set())
    except _Refused as refused:
        where = root + "".join(reversed(refused.steps))
        raise refused.error(f"cannot make a cache key of {where}: {refused.problem}") from None
    except RecursionError:
        raise ValueError(
            f"cannot make a cache key of {root}: it is nested too deeply; pass key= (a "
            "function of the call's arguments that returns a str) instead"
        ) from None


def _encode(value: Any, active: set[int]) -> str:
    scalar = _scalar(value)
    if scalar is not None:
        return scalar
    # ids only detect a value that contains itself; they never reach the text.
    marker = id(value)
    if marker in active:
        raise _Refused(ValueError, "it contains itself")
    active.add(marker)
    try:
        return _composite(value, active)
    finally:
        active.discard(marker)


def _scalar(value: Any) -> str | None:
    kind = type(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return None
    if isinstance(value, str):
        return json.dumps(str.__str__(value))
    if isinstance(value, int):
        return _int(int.__int__(value))
    if isinstance(value, float):
        return _float(float.__float__(value))
    return None


def _int(value: int) -> str:
    if value.bit_length() <= _MAX_DECIMAL_INT_BITS:
        return int.__repr__(value)
    return _tagged("int", [json.dumps(hex(value))])


def _float(value: float) -> str:
    if math.isfinite(value):
        return float.__repr__(value)
    name = "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    return _tagged("float", [json.dumps(name)])


def _composite(value: Any, active: set[int]) -> str:
    if isinstance(value, enum.Enum):
        return _enum(value, active)
    if isinstance(value, (bytes, bytearray)):
        tag = "bytearray" if isinstance(value, bytearray) else "bytes"
        return _tagged(tag, [json.dumps(base64.b64encode(value).decode("ascii"))])
    if isinstance(value, (tuple, list)):
        tag = "tuple" if isinstance(value, tuple) else "list"
        return _tagged(tag, [_step(f"[{index}]", item, active) for index, item in enumerate(value)])
    if isinstance(value, dict):
        return _tagged("dict", _pairs(value, active))
    if isinstance(value, (set, frozenset)):
        tag = "frozenset" if isinstance(value, frozenset) else "set"
        return _tagged(tag, sorted(_step("[<set element>]", item, active) for item in value))
    if _is_pydantic_model(value):
        return _pydantic(value, active)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass(value, active)
    raise _Refused(
        TypeError,
        f"type {_type_name(value)} is not supported (supported: {_SUPPORTED}); "
        "pass key= (a function of the call's arguments that returns a str) instead",
    )


def _step(step: str, value: Any, active: set[int]) -> str:
    try:
        return _encode(value, active)
    except _Refused as refused:
        refused.steps.append(step)
        raise


def _pairs(mapping: dict[Any, Any], active: set[int]) -> list[str]:
    pairs = sorted(
        (_step("[<dict key>]", key, active), _step(f"[{_short_repr(key)}]", item, active))
        for key, item in mapping.items()
    )
    return [_pair(key, item) for key, item in pairs]


def _enum(member: enum.Enum, active: set[int]) -> str:
    # A name survives reordering and renumbering; only a Flag's zero or combined
    # members can lack one, and their int value is as stable.
    name = member.name
    text = json.dumps(name) if name is not None else _step(".value", member.value, active)
    return _tagged("enum", [json.dumps(_type_name(member)), text])


def _dataclass(instance: Any, active: set[int]) -> str:
    fields = [
        _pair(
            json.dumps(field.name), _step(f".{field.name}", getattr(instance, field.name), active)
        )
        for field in dataclasses.fields(instance)
        if field.compare
    ]
    return _tagged("dataclass", [json.dumps(_type_name(instance)), *fields])


def _is_pydantic_model(value: Any) -> bool:
    # A model can only exist if pydantic was imported, so there is no need to import it.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


def _pydantic(model: Any, active: set[int]) -> str:
    # Every field's value, as == compares them: a field excluded from dumps is data all
    # the same, and a set field keeps no order a JSON dump could be stable in.
    fields = {name: getattr(model, name) for name in type(model).model_fields}
    extra = getattr(model, "__pydantic_extra__", None) or {}
    try:
        text = _encode({"fields": fields, "extra": extra}, active)
    except _Refused:  # a field of a type without a canonical form (a datetime, a UUID)
        return _pydantic_json(model, active)
    return _tagged("pydantic", [json.dumps(_type_name(model)), text])


def _pydantic_json(model: Any, active: set[int]) -> str:
    try:
        dumped = model.model_dump(mode="json")
    except Exception as error:  # any failure is the reason there is no key
        raise _Refused(
            TypeError,
            f"{_type_name(model)}.model_dump(mode='json') failed ({error}); "
            "pass key= (a function of the call's arguments that returns a str) instead",
        ) from error
    excluded = {
        name: getattr(model, name)
        for name, field in type(model).model_fields.items()
        if field.exclude
    }
    parts = [json.dumps(_type_name(model)), _encode(dumped, active)]
    if excluded:  # not in the dump, but data all the same
        parts.append(_step(".<excluded fields>", excluded, active))
    return _tagged("pydantic-json", parts)


def _pair(first: str, second: str) -> str:
    return f"[{first},{second}]"


def _tagged(tag: str, parts: list[str]) -> str:
    return "".join([f'["{tag}"', *(f",{part}" for part in parts), "]"])


def _type_name(value: object) -> str:
    kind = type(value)
    return f"{kind.__module__}:{kind.__qualname__}"


def _short_repr(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --- validation --------------------------------------------------------------------------


def _check_namespace(namespace: str) -> None:
    # The same rule as MultiLayerCache's namespace, so a cache and its keys agree.
    if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
        raise ValueError(f"namespace must be a non-empty str without whitespace, got {namespace!r}")
    _check_encodable("namespace", namespace)


def _check_version(version: int | str) -> None:
    if isinstance(version, bool) or not isinstance(version, (int, str)) or version == "":
        raise ValueError(f"version must be an int or a non-empty str, got {version!r}")
    _check_encodable("version", str(version))


def _check_encodable(what: str, text: str) -> None:
    # Redis keys are UTF-8: a lone surrogate would make every call of the cache an L2
    # error, and each error counts against Redis for the breaker.
    if not _encodable(text):
        raise ValueError(f"{what} must be encodable as UTF-8 (no lone surrogates), got {text!r}")


def check_name(name: str) -> str:
    """``@cached``'s ``name=``: a non-empty str Redis can take as part of a key."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    _check_encodable("name", name)
    return name


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_identity(identity: str) -> None:
    if not isinstance(identity, str) or not identity:
        raise ValueError(f"identity must be a non-empty str, got {identity!r}")


def _check_max_length(max_length: int) -> None:
    check_count("max_length", max_length)
