"""Cache statistics: counters per cache and per decorated function."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class CacheStatsSnapshot:
    """The counters of a cache at one moment.

    >>> snapshot = CacheStatsSnapshot(l1_hits=1, l2_hits=1, misses=1)
    >>> snapshot.total_requests, round(snapshot.hit_rate, 4)
    (3, 0.6667)
    """

    l1_hits: int = 0
    l2_hits: int = 0
    misses: int = 0
    l2_errors: int = 0
    l2_skipped: int = 0
    corrupt: int = 0
    rejected: int = 0
    writes: int = 0
    coalesced: int = 0
    early_refreshes: int = 0
    invalidations: int = 0
    l1_evictions: int = 0
    """Entries L1 dropped, least recently used first, to stay within its bounds."""
    l1_refused: int = 0
    """Values L1 did not keep: larger than ``l1_max_bytes``, or impossible to copy."""
    l2_refused: int = 0
    """Values not written to L2: their payload is larger than ``l2_max_bytes``."""

    @property
    def hits(self) -> int:
        return self.l1_hits + self.l2_hits

    @property
    def total_requests(self) -> int:
        return self.l1_hits + self.l2_hits + self.misses

    @property
    def hit_rate(self) -> float:
        """Hits over requests; 0.0 before the first request."""
        total = self.total_requests
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict[str, int | float]:
        """Every counter, plus ``total_requests`` and ``hit_rate``, the chapter's stats shape."""
        counters: dict[str, int | float] = {f.name: getattr(self, f.name) for f in fields(self)}
        counters["total_requests"] = self.total_requests
        counters["hit_rate"] = round(self.hit_rate, 4)
        return counters


COUNTERS = tuple(f.name for f in fields(CacheStatsSnapshot))


class CacheStats:
    """Exact counters that cost no lock: ``next()`` on an ``itertools.count`` is one
    atomic step in CPython, so concurrent threads never lose an increment."""

    __slots__ = ("_baseline", "_counters")

    def __init__(self) -> None:
        self._counters = {name: itertools.count() for name in COUNTERS}
        self._baseline = dict.fromkeys(COUNTERS, 0)

    def counter(self, name: str) -> itertools.count[int]:
        """The counter itself, for hot paths that call ``next()`` on it directly."""
        return self._counters[name]

    def add(self, name: str) -> None:
        next(self._counters[name])

    def snapshot(self) -> CacheStatsSnapshot:
        return CacheStatsSnapshot(
            **{name: _read(c) - self._baseline[name] for name, c in self._counters.items()}
        )

    def reset(self) -> None:
        """Start counting from zero. The counters themselves stay (hot paths hold them):
        what is read now becomes the baseline."""
        self._baseline = {name: _read(c) for name, c in self._counters.items()}


def _read(counter: itertools.count[int]) -> int:
    # repr is "count(N)": reading it does not advance the counter.
    return int(repr(counter)[6:-1])
