"""L1: a bounded, thread-safe, in-process LRU cache of copies whose entries expire individually.

L1 never hands out the object it stores, so a caller that changes a value it got can never
change what the cache serves next, nor make L1 disagree with L2. An immutable value (None,
bool, int, float, str, bytes, an enum member, and tuples and frozensets of these) is kept
and returned as it is. Any other value is kept as the serializer's bytes, the very bytes L2
holds, and every read decodes a fresh copy: an L1 hit returns what an L2 hit would. A value
the serializer cannot encode (L2 then holds nothing) is kept as a pickle, read the same way;
one pickle cannot encode either is not kept.

L1 is bounded in entries (``maxsize``) and in bytes (``max_bytes``, counting a kept value's
bytes, or ``sys.getsizeof`` of an immutable one): the least recently used entries are
evicted (counted as ``l1_evictions``) to stay within both, and a value larger than
``max_bytes`` is not kept at all (counted as ``l1_refused``), as cachetools does.
"""

from __future__ import annotations

import enum
import pickle
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from perfkit._validation import check_count
from perfkit.cache._serialization import SerializationError, Serializer, default_serializer

DEFAULT_L1_MAX_BYTES = 64 * 1024 * 1024
"""L1's default bound on the bytes of the values it keeps (64 MiB)."""

_IMMUTABLE = frozenset({type(None), bool, int, float, str, bytes})


def immutable(value: Any) -> bool:
    """Whether nothing a caller does can change ``value`` (types matched exactly)."""
    try:
        return _immutable(value)
    except RecursionError:  # nested too deeply to tell: kept as a copy, if at all
        return False


def _immutable(value: Any) -> bool:
    if type(value) in _IMMUTABLE or isinstance(value, enum.Enum):
        return True
    return type(value) in (tuple, frozenset) and all(_immutable(item) for item in value)


class Frozen:
    """A value kept as bytes; :meth:`thaw` decodes a fresh copy of it."""

    __slots__ = ("data", "loads")

    def __init__(self, data: bytes, loads: Callable[[bytes], Any]) -> None:
        self.data = data
        self.loads = loads

    def thaw(self) -> Any:
        return self.loads(self.data)


class Entry:
    """A kept value (itself, or :class:`Frozen`), the time (on the cache's clock) it
    expires at, how many seconds it took to compute (for probabilistic early refresh),
    and its size in bytes."""

    __slots__ = ("cost", "expires", "size", "value")

    def __init__(self, value: Any, expires: float, cost: float = 0.0, size: int = 0) -> None:
        self.value = value
        self.expires = expires
        self.cost = cost
        self.size = size

    def read(self) -> Any:
        """The value: a fresh copy of a frozen one."""
        value = self.value
        return value.thaw() if type(value) is Frozen else value


class LocalCache:
    """Least-recently-used copies up to ``maxsize`` entries and ``max_bytes`` bytes, each
    with its own expiry time.

    Reads take no lock: each ``OrderedDict`` operation is one atomic step in CPython,
    and a read that races a delete simply misses. Writes and evictions hold a lock.
    (cachetools' ``LRUCache``/``TLRUCache`` cost more per hit than this whole read.)

    >>> now = [0.0]
    >>> l1 = LocalCache(maxsize=2, timer=lambda: now[0])
    >>> l1.set("a", {"n": 1}, ttl=10)
    >>> l1.get("a").read()["n"] = 2  # a copy: the kept value is unchanged
    >>> l1.get("a").read()
    {'n': 1}
    >>> now[0] = 11.0
    >>> l1.get("a") is None
    True
    """

    def __init__(
        self,
        maxsize: int,
        timer: Callable[[], float],
        *,
        max_bytes: int = DEFAULT_L1_MAX_BYTES,
        serializer: Serializer | None = None,
        count: Callable[[str], None] | None = None,
    ) -> None:
        check_count("l1_maxsize", maxsize)
        check_count("l1_max_bytes", max_bytes)
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._timer = timer
        self._serializer = serializer if serializer is not None else default_serializer()
        self._count = count if count is not None else _ignore
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.bytes = 0
        """The bytes of the values kept now."""

    def remaining(self, entry: Entry) -> float:
        """Seconds until ``entry`` expires."""
        return entry.expires - self._timer()

    def get(self, key: Hashable) -> Entry | None:
        """The live entry for ``key``, or None (an expired entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires > self._timer():
            try:  # noqa: SIM105 - contextlib.suppress costs more than the rest of a hit
                self._entries.move_to_end(key)
            except KeyError:  # deleted by another thread just now
                pass
            return entry
        with self._lock:
            if self._entries.get(key) is entry:
                self._remove(key)
        return None

    def set(
        self,
        key: Hashable,
        value: Any,
        *,
        ttl: float,
        cost: float = 0.0,
        payload: bytes | None = None,
        as_is: bool = False,
    ) -> None:
        """Keep a copy of ``value`` (``payload``: its serializer's bytes, if at hand), or,
        with ``as_is``, the object itself (for values no caller can change, like a kept
        exception). A value that cannot be kept drops the key's older entry."""
        if as_is:
            kept, size = value, sys.getsizeof(value)
        else:
            kept, size = freeze(value, self._serializer, payload)
        entry = Entry(kept, self._timer() + ttl, cost, size)
        with self._lock:
            older = self._entries.pop(key, None)
            if older is not None:
                self.bytes -= older.size
            if kept is _UNKEPT or size > self.max_bytes:
                self._count("l1_refused")
                return
            # Room first, then the entry: the bounds hold at every moment, as a reader in
            # another thread (or the stats) sees them.
            while self._entries and (
                len(self._entries) >= self.maxsize or self.bytes + size > self.max_bytes
            ):
                self._remove(next(iter(self._entries)))
                self._count("l1_evictions")
            self._entries[key] = entry
            self.bytes += size

    def delete(self, key: Hashable) -> bool:
        with self._lock:
            if key not in self._entries:
                return False
            self._remove(key)
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _remove(self, key: Hashable) -> None:
        self.bytes -= self._entries.pop(key).size


_UNKEPT: Any = object()


def freeze(value: Any, serializer: Serializer, payload: bytes | None = None) -> tuple[Any, int]:
    """What L1 keeps of ``value`` (itself if immutable, else :class:`Frozen` bytes: the
    serializer's, or a pickle), and its size in bytes."""
    if immutable(value):
        return value, _size_of(value)
    if payload is None:
        try:
            payload = serializer.dumps(value)
        except SerializationError:
            return _pickled(value)
    return Frozen(payload, serializer.loads), len(payload)


UNCOPYABLE: Any = object()
"""What :func:`shareable` answers for a value that is neither immutable nor copyable."""


def shareable(value: Any, serializer: Serializer) -> Any:
    """What other callers may be given copies of: ``value`` if it is immutable, else
    :class:`Frozen` bytes to thaw one copy each from, or :data:`UNCOPYABLE` (a generator,
    a lock: what one caller does to it, another would see)."""
    kept, _ = freeze(value, serializer)
    return UNCOPYABLE if kept is _UNKEPT else kept


def _pickled(value: Any) -> tuple[Any, int]:
    # Bytes this process made and only it reads: no signature needed.
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # a lock, a lambda...: L1 cannot keep a copy of it
        return _UNKEPT, 0
    return Frozen(data, pickle.loads), len(data)


def _size_of(value: Any) -> int:
    if type(value) in (tuple, frozenset):
        return sys.getsizeof(value) + sum(_size_of(item) for item in value)
    return sys.getsizeof(value)


def _ignore(counter: str) -> None:
    return None
