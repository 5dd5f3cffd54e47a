"""Serializers that turn cached values into L2 bytes and back: JSON by default, pickle only signed.

PerfkitError
├── SerializationError          (also a ValueError: this value cannot be serialized)
└── CorruptPayloadError         (these bytes are not a payload of this serializer)
    └── RejectedPayloadError    (a pickle payload that is unsigned or badly signed)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import pickle
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, runtime_checkable

from perfkit._errors import PerfkitError

JSON_PREFIX: Final = b"j1"
PICKLE_MAGIC: Final = b"p1"
MIN_SECRET_BYTES: Final = 16

# Values JSON cannot carry travel as {"__perfkit__": tag, ...}. A user dict that happens to
# use the tag key is itself escaped, so no user data is ever mistaken for an envelope.
_TAG: Final = "__perfkit__"
_MAC_SIZE: Final = hashlib.sha256().digest_size
_PICKLE_HEADER_SIZE: Final = len(PICKLE_MAGIC) + _MAC_SIZE
# Types JSON writes and reads back exactly as they are (matched exactly: no subclasses).
_JSON_LEAVES: Final = frozenset({str, int, bool, type(None)})


class SerializationError(PerfkitError, ValueError):
    """A value could not be turned into bytes by the chosen serializer."""


class CorruptPayloadError(PerfkitError):
    """Bytes that are not a valid payload of the serializer asked to read them."""


class RejectedPayloadError(CorruptPayloadError):
    """A pickle payload that is unsigned or whose signature does not verify; never unpickled."""


@runtime_checkable
class Serializer(Protocol):
    """What the cache needs to store a value in L2: a name, and a lossless bytes round trip."""

    name: str

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise :class:`SerializationError` if it cannot be encoded."""

    def loads(self, data: bytes) -> Any:
        """Decode ``data``; raise :class:`CorruptPayloadError` if it is not a valid payload."""


class _Unencodable(Exception):
    """Internal: a value JSON cannot carry, with the path to it filled in while unwinding."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.path: list[str | int] = []


def _type_name(value: object) -> str:
    cls = type(value)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _render_path(path: list[str | int]) -> str:
    return "value" + "".join(f"[{part!r}]" for part in reversed(path))


class JsonSerializer:
    """The default serializer: compact, canonical UTF-8 JSON that keeps tuples and bytes exact.

    Supported: ``None``, ``bool``, ``int``, finite ``float``, ``str``, ``bytes``, ``list``,
    ``tuple`` and ``dict`` with ``str`` keys, nested freely. Types are matched exactly, so a
    subclass (an ``IntEnum``, a namedtuple, a ``defaultdict``) is never silently turned into its
    base. Dict keys are written sorted, so equal values give equal bytes; a dict read back
    therefore iterates in key order, not insertion order.

    ``default`` converts anything else, like :func:`json.dumps`'s hook: it receives the
    unsupported object and returns a supported one (or raises ``TypeError``). The conversion is
    one way: ``loads`` returns the converted data, not the original object. For pydantic models,
    such as the anthropic SDK's responses, pass
    ``default=lambda model: model.model_dump(mode="json")``.

    >>> serializer = JsonSerializer()
    >>> serializer.dumps({"ids": (1, 2), "raw": b"hi"})
    b'j1{"ids":{"__perfkit__":"tuple","items":[1,2]},"raw":{"__perfkit__":"bytes","b64":"aGk="}}'
    >>> serializer.loads(serializer.dumps({"ids": (1, 2), "raw": b"hi"}))
    {'ids': (1, 2), 'raw': b'hi'}
    """

    name = "json"

    def __init__(self, *, default: Callable[[Any], Any] | None = None) -> None:
        if default is not None and not callable(default):
            raise TypeError(f"default must be a callable or None, got {default!r}")
        self._default = default

    def __repr__(self) -> str:
        if self._default is None:
            return "JsonSerializer()"
        return f"JsonSerializer(default={self._default!r})"

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` as ``b"j1"`` followed by canonical compact JSON."""
        try:
            return JSON_PREFIX + _dump_json(self._encode(value), value)
        except _Unencodable as exc:
            raise self._error(exc) from None
        except RecursionError:
            raise SerializationError(
                f"JsonSerializer cannot serialize a value of type {_type_name(value)!r}: it is "
                "nested too deeply or contains a reference cycle; use SignedPickleSerializer"
            ) from None

    def loads(self, data: bytes) -> Any:
        """Decode a payload written by :meth:`dumps`."""
        if data[: len(JSON_PREFIX)] != JSON_PREFIX:
            raise CorruptPayloadError(
                f"not a JsonSerializer payload: expected prefix {JSON_PREFIX!r}, "
                f"got {bytes(data[: len(JSON_PREFIX)])!r}"
            )
        try:
            text = bytes(data[len(JSON_PREFIX) :]).decode("utf-8")
            return _DECODER.decode(text)
        except (ValueError, RecursionError) as exc:
            raise CorruptPayloadError(f"not a JsonSerializer payload: {exc}") from exc

    def _encode(self, value: Any) -> Any:
        """Turn ``value`` into a tree ``json.dumps`` writes losslessly, tagging tuples and bytes."""
        cls = type(value)
        if cls in _JSON_LEAVES:
            return value
        if cls is float:
            if math.isfinite(value):
                return value
            raise _Unencodable(value, f"JSON has no portable form for the float {value!r}")
        if cls is list:
            return self._encode_items(value)
        if cls is dict:
            return self._encode_dict(value)
        if cls is tuple:
            return {_TAG: "tuple", "items": self._encode_items(value)}
        if cls is bytes:
            return {_TAG: "bytes", "b64": base64.b64encode(value).decode("ascii")}
        return self._encode_other(value)

    def _encode_items(self, items: Iterable[Any]) -> list[Any]:
        encoded = []
        for index, item in enumerate(items):
            try:
                encoded.append(self._encode(item))
            except _Unencodable as exc:
                exc.path.append(index)
                raise
        return encoded

    def _encode_dict(self, mapping: dict[Any, Any]) -> dict[str, Any]:
        encoded: dict[str, Any] = {}
        for key, item in mapping.items():
            if type(key) is not str:
                raise _Unencodable(
                    mapping, f"its key {key!r} is a {_type_name(key)}, and JSON keys are str"
                )
            try:
                encoded[key] = self._encode(item)
            except _Unencodable as exc:
                exc.path.append(key)
                raise
        if _TAG in encoded:
            return {_TAG: "dict", "items": sorted(encoded.items())}
        return encoded

    def _encode_other(self, value: Any) -> Any:
        reason = f"JSON has no form for {_type_name(value)}"
        if self._default is None:
            raise _Unencodable(value, reason)
        try:
            converted = self._default(value)
        except TypeError as exc:
            raise _Unencodable(value, f"{reason}, and default= refused it: {exc}") from exc
        if converted is value:
            raise _Unencodable(value, f"{reason}, and default= returned it unchanged")
        return self._encode(converted)

    def _error(self, exc: _Unencodable) -> SerializationError:
        where = f" at {_render_path(exc.path)}" if exc.path else ""
        return SerializationError(
            f"JsonSerializer cannot serialize a value of type {_type_name(exc.value)!r}{where}: "
            f"{exc.reason}. Supported: None, bool, int, finite float, str, bytes, list, tuple and "
            "dict with str keys. Convert it first, pass JsonSerializer(default=...), "
            "or use SignedPickleSerializer"
        )


def _dump_json(tree: Any, value: Any) -> bytes:
    """Write ``tree`` as compact sorted JSON in UTF-8, escaping only what UTF-8 cannot hold."""
    try:
        return _UTF8_ENCODER.encode(tree).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form; ASCII-escaped JSON carries it losslessly.
        return _ASCII_ENCODER.encode(tree).encode("ascii")
    except ValueError as exc:  # e.g. an int longer than sys.get_int_max_str_digits()
        raise SerializationError(
            f"JsonSerializer cannot serialize a value of type {_type_name(value)!r}: {exc}; "
            "use SignedPickleSerializer"
        ) from exc


def _reject_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not valid JSON")


def _decode_envelope(obj: dict[str, Any]) -> Any:
    """Undo the tagging done by ``JsonSerializer._encode``; inner envelopes are already undone."""
    if _TAG not in obj:
        return obj
    tag = obj[_TAG]
    if tag == "tuple" and obj.keys() == {_TAG, "items"} and type(obj["items"]) is list:
        return tuple(obj["items"])
    if tag == "bytes" and obj.keys() == {_TAG, "b64"} and type(obj["b64"]) is str:
        try:
            return base64.b64decode(obj["b64"], validate=True)
        except binascii.Error as exc:
            raise CorruptPayloadError(f"not a JsonSerializer payload: bad base64: {exc}") from exc
    if tag == "dict" and obj.keys() == {_TAG, "items"} and type(obj["items"]) is list:
        pairs = obj["items"]
        if all(type(pair) is list and len(pair) == 2 and type(pair[0]) is str for pair in pairs):
            return dict(pairs)
    raise CorruptPayloadError(
        f"not a JsonSerializer payload: malformed {_TAG!r} envelope with tag {tag!r}; "
        "valid tags are 'bytes', 'dict' and 'tuple'"
    )


# Built once, as json.dumps and json.loads do for their defaults: building them costs ~1 µs a call.
_UTF8_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
)
_ASCII_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), sort_keys=True
)
_DECODER: Final = json.JSONDecoder(object_hook=_decode_envelope, parse_constant=_reject_constant)


def _secret_bytes(secret: bytes | str, what: str) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    elif not isinstance(secret, bytes):
        raise TypeError(f"{what} must be bytes or str, got {_type_name(secret)}")
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{what} must be at least {MIN_SECRET_BYTES} bytes long, got {len(secret)} bytes"
        )
    return secret


class SignedPickleSerializer:
    """Pickle for values JSON cannot carry, HMAC-SHA256 signed so foreign bytes are never unpickled.

    A payload is ``b"p1"``, a 32-byte MAC of the magic and the pickle, then the pickle. ``loads``
    checks the MAC before unpickling and raises :class:`RejectedPayloadError` otherwise; it is
    only as safe as ``secret`` is secret, since anyone holding it can sign code to run. To rotate,
    sign with the new secret and keep the old one in ``previous_secrets`` until old entries expire.

    >>> serializer = SignedPickleSerializer(b"0123456789abcdef0123456789abcdef")
    >>> serializer.loads(serializer.dumps({1, 2, 3}))
    {1, 2, 3}
    >>> serializer.loads(pickle.dumps({1, 2, 3}))
    Traceback (most recent call last):
    ...
    perfkit.cache._serialization.RejectedPayloadError: ...
    """

    name = "signed-pickle"

    def __init__(
        self,
        secret: bytes | str,
        *,
        previous_secrets: Iterable[bytes | str] = (),
        protocol: int = pickle.HIGHEST_PROTOCOL,
    ) -> None:
        self._secret = _secret_bytes(secret, "secret")
        previous = [
            _secret_bytes(old, f"previous_secrets[{index}]")
            for index, old in enumerate(previous_secrets)
        ]
        self._verifying_secrets = (self._secret, *previous)
        if type(protocol) is not int or not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
            raise ValueError(
                f"protocol must be an int from 0 to {pickle.HIGHEST_PROTOCOL}, got {protocol!r}"
            )
        self._protocol = protocol

    def __repr__(self) -> str:
        # Never show the secrets; how many there are is enough to debug a rotation.
        previous = len(self._verifying_secrets) - 1
        return f"SignedPickleSerializer(protocol={self._protocol}, previous_secrets={previous})"

    def dumps(self, value: Any) -> bytes:
        """Pickle ``value`` and sign it with the current secret."""
        try:
            body = pickle.dumps(value, protocol=self._protocol)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            raise SerializationError(
                f"SignedPickleSerializer cannot serialize a value of type {_type_name(value)!r}: "
                f"{exc}. Make it picklable (module-level class, __reduce__), or convert it to "
                "plain data and use JsonSerializer"
            ) from exc
        return PICKLE_MAGIC + _mac(self._secret, body) + body

    def loads(self, data: bytes) -> Any:
        """Verify the signature of ``data``, and only then unpickle it."""
        self._verify(data)
        try:
            return pickle.loads(data[_PICKLE_HEADER_SIZE:])
        except Exception as exc:  # signed by us, yet unloadable: e.g. a class since removed
            raise CorruptPayloadError(
                f"signed pickle payload verified but could not be unpickled: {exc!r}"
            ) from exc

    def _verify(self, data: bytes) -> None:
        if data[: len(PICKLE_MAGIC)] != PICKLE_MAGIC:
            raise RejectedPayloadError(
                f"rejected pickle payload: expected magic {PICKLE_MAGIC!r}, "
                f"got {bytes(data[: len(PICKLE_MAGIC)])!r}"
            )
        if len(data) <= _PICKLE_HEADER_SIZE:
            raise RejectedPayloadError(
                f"rejected pickle payload: {len(data)} bytes is too short for the "
                f"{_PICKLE_HEADER_SIZE}-byte signed header and a pickle"
            )
        signature = data[len(PICKLE_MAGIC) : _PICKLE_HEADER_SIZE]
        body = data[_PICKLE_HEADER_SIZE:]
        if not any(hmac.compare_digest(signature, _mac(s, body)) for s in self._verifying_secrets):
            raise RejectedPayloadError(
                "rejected pickle payload: its signature matches neither the current secret nor "
                f"any of the {len(self._verifying_secrets) - 1} previous secrets"
            )


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.digest(secret, PICKLE_MAGIC + body, hashlib.sha256)


def default_serializer() -> Serializer:
    """The serializer the cache uses when none is given: a plain :class:`JsonSerializer`."""
    return JsonSerializer()
