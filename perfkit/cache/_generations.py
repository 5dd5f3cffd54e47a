"""Which keys were invalidated since a moment: a fill begun before an invalidation must
not write back what it computed."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

DEFAULT_REMEMBERED = 4096


class Generations:
    """An epoch that every invalidation advances, and the epoch of each key's latest
    invalidation, for the ``remembered`` most recent keys.

    A fill notes :meth:`now` before it reads anything; its write is applied by
    :meth:`apply_unless_advanced` only if no invalidation of its key came since. A key
    forgotten to stay within bounds counts as invalidated at the epoch it was forgotten,
    so forgetting can refuse a write, never allow a stale one.

    >>> generations = Generations()
    >>> since = generations.now()
    >>> generations.advance("k", lambda: None)
    >>> generations.apply_unless_advanced("k", since, lambda: None)
    False
    >>> generations.apply_unless_advanced("k", generations.now(), lambda: None)
    True
    """

    def __init__(self, remembered: int = DEFAULT_REMEMBERED) -> None:
        # The lock covers the bookkeeping and the L1 write or delete done with it, so that
        # a check and its write cannot straddle an invalidation. Nothing under it does I/O.
        self._lock = threading.Lock()
        self._epoch = 0
        self._latest: OrderedDict[str, int] = OrderedDict()
        self._forgotten = 0  # every invalidation up to this epoch is forgotten
        self._remembered = remembered

    def now(self) -> int:
        """The current epoch (one int read: no lock needed)."""
        return self._epoch

    def advance(self, key: str, action: Callable[[], object]) -> None:
        """Advance ``key``'s generation (an invalidation, or a caller's own write that
        supersedes fills in flight) and run ``action`` (its L1 delete or write) with it."""
        with self._lock:
            self._epoch += 1
            self._latest[key] = self._epoch
            self._latest.move_to_end(key)
            if len(self._latest) > self._remembered:
                _, self._forgotten = self._latest.popitem(last=False)
            action()

    def advance_all(self, action: Callable[[], object]) -> None:
        """Advance every key's generation (a clear) and run ``action`` with it."""
        with self._lock:
            self._epoch += 1
            self._latest.clear()
            self._forgotten = self._epoch
            action()

    def apply_unless_advanced(
        self, key: str, since: int, action: Callable[..., object], *args: Any, **kwargs: Any
    ) -> bool:
        """Run ``action(*args, **kwargs)`` if ``key``'s generation has not advanced after
        epoch ``since``; whether it ran. (Arguments, not a closure: an L2 hit calls this.)"""
        with self._lock:
            if self._latest.get(key, self._forgotten) > since:
                return False
            action(*args, **kwargs)
            return True
