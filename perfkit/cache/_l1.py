"""L1: a bounded, thread-safe, in-process LRU cache whose entries expire individually."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from perfkit._validation import check_count


class Entry:
    """A cached value, the time (on the cache's clock) it expires at, and how many
    seconds it took to compute (for probabilistic early refresh)."""

    __slots__ = ("cost", "expires", "value")

    def __init__(self, value: Any, expires: float, cost: float = 0.0) -> None:
        self.value = value
        self.expires = expires
        self.cost = cost


class LocalCache:
    """Least-recently-used entries up to ``maxsize``, each with its own expiry time.

    Reads take no lock: each ``OrderedDict`` operation is one atomic step in CPython,
    and a read that races a delete simply misses. Writes and evictions hold a lock.
    (cachetools' ``LRUCache``/``TLRUCache`` cost more per hit than this whole read.)

    >>> now = [0.0]
    >>> l1 = LocalCache(maxsize=2, timer=lambda: now[0])
    >>> l1.set("a", 1, ttl=10)
    >>> l1.get("a").value
    1
    >>> now[0] = 11.0
    >>> l1.get("a") is None
    True
    """

    def __init__(self, maxsize: int, timer: Callable[[], float]) -> None:
        check_count("l1_maxsize", maxsize)
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._timer = timer
        self.maxsize = maxsize

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
                del self._entries[key]
        return None

    def set(self, key: Hashable, value: Any, *, ttl: float, cost: float = 0.0) -> None:
        entry = Entry(value, self._timer() + ttl, cost)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def delete(self, key: Hashable) -> bool:
        with self._lock:
            return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
