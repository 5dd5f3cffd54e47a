"""MultiLayerCache: L1 in process, L2 in Redis, read through L1 -> L2 -> origin.

The read and write paths are written once, as generators that yield the Redis
operations they need (:class:`Op`) and receive the results; a synchronous and an
asynchronous driver execute those operations on a sync or an asyncio Redis client. So
the logic (TTL bookkeeping, stats, the circuit breaker, corrupt payloads) cannot drift
between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import random
import re
import struct
import threading
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Literal, NamedTuple

import redis.exceptions

from perfkit._clock import Clock, RealClock
from perfkit._validation import check_count
from perfkit.cache._breaker import CircuitBreaker
from perfkit.cache._generations import Generations
from perfkit.cache._keys import entry_name, key_prefix
from perfkit.cache._l1 import DEFAULT_L1_MAX_BYTES, Entry, LocalCache
from perfkit.cache._redis import (
    DEFAULT_L2_TIMEOUT,
    budgeted_sync_client,
    check_timeout,
    unbounded_sync_client,
)
from perfkit.cache._serialization import (
    CorruptPayloadError,
    RejectedPayloadError,
    SerializationError,
    Serializer,
    default_serializer,
)
from perfkit.cache._stats import CacheStats, CacheStatsSnapshot

DEFAULT_NAMESPACE = "perfkit"
DEFAULT_TTL = 300.0
DEFAULT_L1_MAXSIZE = 1024
MIN_MARKER_TTL = 600.0
"""Seconds at least (the cache's ``ttl`` if longer) that an invalidation's marker outlives
every entry a fill wrote without one (see ``_store``)."""

# An L2 payload: magic, the expiry time (on the cache's stamp clock), the time the value
# took to compute (for early refresh) and the length of the invalidation marker the value
# was computed under, then that marker and the serialized value.
_HEADER = struct.Struct(">2sddB")
_MAGIC = b"M2"
_ANY_MARKER = 0xFF
"""The marker length of a caller's own write, valid whatever the marker (see ``_store``)."""


CLEAR_ALL = b"*"
"""The invalidation message that means: drop every L1 entry of the namespace."""


class CacheWarning(UserWarning):
    """Something the cache could not do, that the caller need not fail for."""


_FAILED: Any = object()
"""What a driver sends back into a path when a Redis operation failed."""

_BAD_KEY: Any = object()
"""What a driver sends back when Redis refused an operation on the key (WRONGTYPE...)."""

_UNASKED: Any = object()
"""A fill's invalidation marker when L2 was not asked (the breaker is not closed)."""


class Op(NamedTuple):
    """One Redis operation a cache path needs (a tuple: cheap to make on a hot path)."""

    kind: Literal[
        "get",
        "get_entry",
        "set",
        "set_nx",
        "invalidate",
        "delete",
        "scan_delete",
        "publish",
        "sleep",
        "call",
    ]
    key: str
    payload: bytes = b""
    ms: int = 0
    """Milliseconds: an entry's, a lock's or a marker's time to live, or how long to sleep."""
    marker: str = ""
    """The key of ``key``'s invalidation marker (``get_entry`` and ``invalidate``)."""


class Found(NamedTuple):
    """A cache lookup's answer: whether a value was found, the value, and where."""

    hit: bool
    value: Any = None
    layer: Literal["l1", "l2", ""] = ""


MISS = Found(False)


DEFAULT_L2_MAX_BYTES = 16 * 1024 * 1024
"""The largest payload a cache writes to Redis by default (16 MiB; Redis takes up to
512 MB, but a value that large holds its single thread, and every client, for seconds)."""


class FillTicket(NamedTuple):
    """What a lookup for a fill saw before the value was computed: the invalidation epoch
    and ``key``'s L2 invalidation marker. A store given the ticket writes nothing if the
    key was invalidated since (see :meth:`MultiLayerCache.lookup_for_fill`)."""

    since: int
    marker: Any


class MultiLayerCache:
    """A two-layer cache: a bounded in-process L1 in front of a shared Redis L2.

    >>> import fakeredis
    >>> cache = MultiLayerCache(fakeredis.FakeRedis(), namespace="docs")
    >>> cache.set("answer", 42, ttl=60)
    >>> cache.get("answer")
    42
    >>> cache.stats()["l1_hits"]
    1
    """

    def __init__(
        self,
        redis_client: Any = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        version: int | str = 1,
        ttl: float = DEFAULT_TTL,
        l1_maxsize: int = DEFAULT_L1_MAXSIZE,
        l1_max_bytes: int = DEFAULT_L1_MAX_BYTES,
        l1_ttl: float | None = None,
        serializer: Serializer | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock | None = None,
        ttl_jitter: float = 0.0,
        early_refresh: float = 0.0,
        lock_timeout: float | None = None,
        lock_poll: float = 0.05,
        seed: int | None = None,
        l2_timeout: float = DEFAULT_L2_TIMEOUT,
        l2_max_bytes: int = DEFAULT_L2_MAX_BYTES,
    ) -> None:
        self.clock: Clock = clock if clock is not None else RealClock()
        self.namespace = _check_namespace(namespace)
        self.version = _check_version(version)
        self.prefix = key_prefix(self.namespace, self.version)
        self.l2_max_bytes = check_count("l2_max_bytes", l2_max_bytes)
        self.invalidation_channel = f"{self.prefix}invalidations"
        self.ttl = check_timeout("ttl", ttl)
        self.l1_ttl = None if l1_ttl is None else check_timeout("l1_ttl", l1_ttl)
        self.ttl_jitter = _check_fraction("ttl_jitter", ttl_jitter)
        if not 0 <= early_refresh < math.inf:
            raise ValueError(f"early_refresh must be a finite number >= 0, got {early_refresh!r}")
        self.early_refresh = float(early_refresh)
        self.lock_timeout = (
            None if lock_timeout is None else check_timeout("lock_timeout", lock_timeout)
        )
        self.lock_poll = check_timeout("lock_poll", lock_poll)
        self.serializer: Serializer = serializer if serializer is not None else default_serializer()
        self.breaker = breaker if breaker is not None else CircuitBreaker(clock=self.clock)
        if _decodes_responses(redis_client):
            raise ValueError(
                "the Redis client decodes responses (decode_responses=True); the cache stores "
                "bytes, so give it a client made with decode_responses=False"
            )
        self._async_redis = _is_async_client(redis_client)
        self.l2_timeout = check_timeout("l2_timeout", l2_timeout)
        if not self._async_redis:
            # Its sockets must keep to the budget: a pool of the cache's own if they
            # do not (redis-py's defaults are a 5 s timeout and 10 retries).
            redis_client = budgeted_sync_client(redis_client, self.l2_timeout)
        self.redis = redis_client
        if not self._async_redis and unbounded_sync_client(redis_client):
            warnings.warn(
                CacheWarning(
                    "the Redis client has no socket timeout, so a silent Redis can hold a "
                    "call for ever (a sync client cannot be interrupted); make it with "
                    "perfkit.cache.connect_redis(url), or with socket_timeout and "
                    f"socket_connect_timeout of at most l2_timeout ({self.l2_timeout} s)"
                ),
                stacklevel=2,
            )
        # What times L1's entries and each L2 operation (for _settle): the clock's, on the
        # real clock time.perf_counter itself, a call less on the hot path.
        self._op_timer: Callable[[], float] = (
            time.perf_counter if self.clock.mode == "real" else self.clock.now
        )
        self._l1 = LocalCache(
            l1_maxsize,
            self._op_timer,
            max_bytes=l1_max_bytes,
            serializer=self.serializer,
            count=lambda counter: self._count(counter, None),
        )
        # Expiry stamps in L2 are read by other processes, so they need the wall clock;
        # virtual time lives in one process and stamps with the virtual clock.
        self._stamp: Callable[[], float] = (
            time.time if self.clock.mode == "real" else self.clock.now
        )
        self._random = random.Random(seed)
        self.stats_counters = CacheStats()
        self._generations = Generations()

    # -- public, non-decorator API -------------------------------------------------------

    def key(self, name: str) -> str:
        """The full Redis key of an entry called ``name`` in this cache's namespace
        (``%`` and ``:`` in it escaped, so it never meets a function's key or a lock)."""
        if name.__class__ is str:  # the common case, its escaping remembered
            return self.prefix + _escaped_name(name)
        return self.prefix + entry_name(name)  # a TypeError naming what a name must be

    def get(self, name: str, default: Any = None) -> Any:
        found = self.lookup(self.key(name))
        return found.value if found.hit else default

    def set(self, name: str, value: Any, *, ttl: float | None = None) -> None:
        self.store(self.key(name), value, ttl=ttl)

    def delete(self, name: str) -> bool:
        return self.invalidate_key(self.key(name))

    async def aget(self, name: str, default: Any = None) -> Any:
        found = await self.alookup(self.key(name))
        return found.value if found.hit else default

    async def aset(self, name: str, value: Any, *, ttl: float | None = None) -> None:
        await self.astore(self.key(name), value, ttl=ttl)

    async def adelete(self, name: str) -> bool:
        return await self.ainvalidate_key(self.key(name))

    def stats(self) -> dict[str, int | float]:
        """``l1_hits``, ``l2_hits``, ``misses``, ``total_requests``, ``hit_rate`` and the
        other counters (L2 errors, skipped while the breaker is open, corrupt and rejected
        payloads, writes, coalesced misses, early refreshes, invalidations)."""
        return self.stats_counters.snapshot().as_dict()

    def stats_snapshot(self) -> CacheStatsSnapshot:
        return self.stats_counters.snapshot()

    # -- lookups and stores by full key (what the decorator uses) -----------------------

    def lookup(
        self,
        key: str,
        *,
        stats: CacheStats | None = None,
        check_l1: bool = True,
        refresh_early: bool = False,
    ) -> Found:
        """Look ``key`` (a full key) up in L1, then L2; counts a hit by layer, or a miss.

        With ``refresh_early`` (for callers that recompute on a miss, like ``@cached``),
        an L2 entry near its expiry may be reported missing, per ``early_refresh``."""
        path = self._lookup(
            key, stats, check_l1=check_l1, refresh_early=refresh_early, for_fill=False
        )
        found: Found = self._sync(path, stats)[0]
        return found

    async def alookup(
        self,
        key: str,
        *,
        stats: CacheStats | None = None,
        check_l1: bool = True,
        refresh_early: bool = False,
    ) -> Found:
        path = self._lookup(
            key, stats, check_l1=check_l1, refresh_early=refresh_early, for_fill=False
        )
        found: Found = (await self._async(path, stats))[0]
        return found

    def lookup_for_fill(
        self, key: str, *, stats: CacheStats | None = None
    ) -> tuple[Found, FillTicket]:
        """Like :meth:`lookup`, for a caller that computes the value itself on a miss (a
        recorded stream): also a ticket to pass to :meth:`store`, which then writes
        nothing if ``key`` was invalidated meanwhile, here or in any process, so a value
        computed before an invalidation is never written back after it."""
        since = self._generations.now()  # before anything is read
        path = self._lookup(key, stats, check_l1=True, refresh_early=False, for_fill=True)
        found, marker = self._sync(path, stats)
        return found, FillTicket(since, marker)

    async def alookup_for_fill(
        self, key: str, *, stats: CacheStats | None = None
    ) -> tuple[Found, FillTicket]:
        since = self._generations.now()
        path = self._lookup(key, stats, check_l1=True, refresh_early=False, for_fill=True)
        found, marker = await self._async(path, stats)
        return found, FillTicket(since, marker)

    def store(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        compute_seconds: float = 0.0,
        stats: CacheStats | None = None,
        ticket: FillTicket | None = None,
    ) -> None:
        """Write ``value`` to both layers under ``key`` (a full key). Without a ticket the
        write supersedes any fill in flight; with one (from :meth:`lookup_for_fill`) it
        is a fill's, and is dropped if ``key`` was invalidated since that lookup."""
        self._sync(self._store(key, value, ttl, compute_seconds, stats, ticket=ticket), stats)

    async def astore(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        compute_seconds: float = 0.0,
        stats: CacheStats | None = None,
        ticket: FillTicket | None = None,
    ) -> None:
        path = self._store(key, value, ttl, compute_seconds, stats, ticket=ticket)
        await self._async(path, stats)

    @property
    def l1(self) -> LocalCache:
        """The in-process layer (the decorator reads it directly on its fast path)."""
        return self._l1

    def count(self, counter: str, stats: CacheStats | None = None) -> None:
        """Add one to ``counter`` of this cache (and of ``stats``, a function's counters)."""
        self._count(counter, stats)

    def store_l1(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Keep ``value`` itself in L1 only, not a copy (for values L2 must not hold and no
        caller changes, like exceptions)."""
        self._l1.set(key, value, ttl=self._l1_ttl(self.ttl if ttl is None else ttl), as_is=True)

    def invalidate_key(self, key: str) -> bool:
        """Drop one entry (by full key) from both layers; False if Redis could not be
        told (the entry may then still be served from L2 elsewhere)."""
        done: bool = self._sync(self._invalidate(key))
        return done

    async def ainvalidate_key(self, key: str) -> bool:
        done: bool = await self._async(self._invalidate(key))
        return done

    # -- filling a missing entry from its origin (what @cached does on a miss) ----------

    def fill(
        self,
        key: str,
        origin: Callable[[], Any],
        *,
        ttl: float | None = None,
        stats: CacheStats | None = None,
        recompute: bool = False,
        keep_error: Callable[[BaseException], bool] | None = None,
    ) -> Found:
        """Find ``key`` in L1 or L2, or compute it with ``origin()`` and store it.

        With ``lock_timeout`` set, only one process computes while the others wait for
        its value. ``recompute`` skips the lookup (an early refresh); ``keep_error(e)``
        may keep an exception of the origin in L1 and says whether it did."""
        path = self._fill(key, ttl, stats, recompute, keep_error)
        found: Found = self._sync(path, stats, call=origin)
        return found

    async def afill(
        self,
        key: str,
        origin: Callable[[], Awaitable[Any]],
        *,
        ttl: float | None = None,
        stats: CacheStats | None = None,
        recompute: bool = False,
        keep_error: Callable[[BaseException], bool] | None = None,
    ) -> Found:
        path = self._fill(key, ttl, stats, recompute, keep_error)
        found: Found = await self._async(path, stats, call=origin)
        return found

    def _fill(
        self,
        key: str,
        ttl: float | None,
        stats: CacheStats | None,
        recompute: bool,
        keep_error: Callable[[BaseException], bool] | None,
    ) -> Generator[Op, Any, Found]:
        since = self._generations.now()  # before anything is read: see _store
        if recompute:  # refresh now, before the entry expires (XFetch)
            self._count("misses", stats)
            found = MISS
            marker = yield from self._read_marker(key)
        else:
            # Another thread may have stored the value since the caller's L1 miss.
            found, marker = yield from self._lookup(
                key, stats, check_l1=True, refresh_early=True, for_fill=True
            )
            if found.hit:
                return found
        lock, token = None, uuid.uuid4().bytes
        if self.lock_timeout is not None and self.redis is not None:
            lock = yield from self._acquire_lock(key, token)  # another process may be at it
            if lock is False:
                found = yield from self._wait_for_value(key, stats)
                if found.hit:
                    return found
        start = self.clock.now()
        try:
            try:
                value = yield Op("call", key)
            except BaseException as error:
                if keep_error is not None:
                    keep_error(error)
                raise
            elapsed = self.clock.elapsed(start)
            ticket = FillTicket(since, marker)
            yield from self._store(key, value, ttl, elapsed, stats, ticket=ticket)
        finally:  # after the store: waiting processes then find the value
            if lock:
                yield from self._release_lock(key, token)
        return Found(False, value)

    # -- stampede protection across processes (used by @cached when lock_timeout is set) --

    def acquire_lock(self, key: str, token: bytes) -> bool | None:
        """Try to take ``key``'s compute lock (it expires after ``lock_timeout``): True if
        taken, False if another process holds it, None if Redis could not be asked."""
        taken: bool | None = self._sync(self._acquire_lock(key, token))
        return taken

    async def aacquire_lock(self, key: str, token: bytes) -> bool | None:
        taken: bool | None = await self._async(self._acquire_lock(key, token))
        return taken

    def wait_for_value(self, key: str, *, stats: CacheStats | None = None) -> Found:
        """Poll L2 for the value another process is computing, until its lock expires."""
        found: Found = self._sync(self._wait_for_value(key, stats), stats)
        return found

    async def await_value(self, key: str, *, stats: CacheStats | None = None) -> Found:
        found: Found = await self._async(self._wait_for_value(key, stats), stats)
        return found

    def release_lock(self, key: str, token: bytes) -> None:
        """Give ``key``'s compute lock back, if this token still holds it."""
        self._sync(self._release_lock(key, token))

    async def arelease_lock(self, key: str, token: bytes) -> None:
        await self._async(self._release_lock(key, token))

    def _lock_key(self, key: str) -> str:
        return f"{key}:lock"

    def _acquire_lock(self, key: str, token: bytes) -> Generator[Op, Any, bool | None]:
        assert self.lock_timeout is not None
        ms = max(1, math.ceil(self.lock_timeout * 1000))
        result = yield Op("set_nx", self._lock_key(key), token, ms=ms)
        if result is _FAILED or result is _BAD_KEY:
            return None
        return bool(result)

    def _wait_for_value(self, key: str, stats: CacheStats | None) -> Generator[Op, Any, Found]:
        assert self.lock_timeout is not None
        waited, poll_ms = 0.0, max(1, round(self.lock_poll * 1000))
        since = self._generations.now()
        while waited < self.lock_timeout:
            yield Op("sleep", key, ms=poll_ms)
            waited += poll_ms / 1000
            reply = yield Op("get_entry", key, marker=_marker_key(key))
            if reply is _FAILED:
                return MISS
            if reply is not _BAD_KEY and reply[0] is not None:
                found = self._decode(reply[0], key, stats, False, since, reply[1])
                if found.hit:
                    return found
        return MISS

    def _release_lock(self, key: str, token: bytes) -> Generator[Op, Any, None]:
        # Without Lua (fakeredis has none) this is compare-then-delete: a lock that
        # expired and was re-taken in between could be deleted, costing one extra
        # computation elsewhere, never a wrong value.
        held = yield Op("get", self._lock_key(key))
        if held == token:
            yield Op("delete", self._lock_key(key))

    # -- the invalidation race: a value computed before an invalidation is never served --
    #
    # In L1, a per-key generation (Generations) advanced by every invalidation, local or
    # heard from another process: a fill's or an L2 hit's write to L1 is dropped if the
    # generation moved after it started reading. In L2, a marker key that every
    # invalidation sets to a new token, in the round trip of its DEL. A lookup reads the
    # marker with the entry (one round trip); a fill embeds the marker it found before
    # computing in the payload it writes, and a payload whose marker is not the current
    # one was computed before an invalidation: it is a miss, and the next fill replaces it.

    def _read_marker(self, key: str) -> Generator[Op, Any, Any]:
        """``key``'s invalidation marker, for a fill that did not look the key up."""
        if self.redis is None or self.breaker.state != "closed":
            return _UNASKED
        marker = yield Op("get", _marker_key(key))
        return _FAILED if marker is _BAD_KEY else marker

    def _marker_seconds(self) -> float:
        return max(self.ttl, MIN_MARKER_TTL)

    def listen_for_invalidations(self, *, poll_interval: float = 0.05) -> InvalidationListener:
        """Drop L1 entries that other processes invalidate, from a background thread,
        until the returned listener is stopped (``with cache.listen_for_invalidations():``).

        Every invalidation and clear is published on :attr:`invalidation_channel`; without
        a listener, another process's L1 keeps serving an entry until its own TTL ends."""
        if self.redis is None or self._async_redis:
            raise TypeError(
                "listen_for_invalidations needs a sync Redis client; with redis.asyncio "
                "use alisten_for_invalidations()"
            )
        return InvalidationListener.start(self, poll_interval)

    async def alisten_for_invalidations(
        self, *, poll_interval: float = 0.05
    ) -> AsyncInvalidationListener:
        """The asyncio twin of :meth:`listen_for_invalidations`: a task of this loop."""
        if self.redis is None or not self._async_redis:
            raise TypeError(
                "alisten_for_invalidations needs a redis.asyncio client; with a sync client "
                "use listen_for_invalidations()"
            )
        return await AsyncInvalidationListener.start(self, poll_interval)

    def drop_from_l1(self, message: bytes) -> None:
        """Apply one invalidation message (a key, or :data:`CLEAR_ALL`) to L1."""
        if message == CLEAR_ALL:
            self._generations.advance_all(self._l1.clear)
        else:
            key = message.decode()
            self._generations.advance(key, lambda: self._l1.delete(key))

    def clear(self) -> None:
        """Drop every entry of this namespace and version, in L1 and in L2."""
        self._sync(self._clear())

    async def aclear(self) -> None:
        await self._async(self._clear())

    # -- the paths, written once ---------------------------------------------------------

    def _count(self, counter: str, stats: CacheStats | None) -> None:
        self.stats_counters.add(counter)
        if stats is not None:
            stats.add(counter)

    def _lookup(
        self,
        key: str,
        stats: CacheStats | None,
        *,
        check_l1: bool,
        refresh_early: bool,
        for_fill: bool,
    ) -> Generator[Op, Any, tuple[Found, Any]]:
        """Look ``key`` up in L1, then L2, counting a hit by layer or a miss; also returns
        ``key``'s invalidation marker as L2 had it (``_UNASKED`` or ``_FAILED`` if L2 was
        not asked or did not answer). A fill reads the marker with the entry (one MGET);
        other lookups read it only when the entry names one (a caller's own write fits
        any), which keeps them one GET."""
        since = self._generations.now()
        if check_l1:
            entry = self._l1.get(key)
            if entry is not None:
                self._count("l1_hits", stats)
                return Found(True, entry.read(), "l1"), _UNASKED
        found, marker = MISS, _UNASKED
        if self._l2_allowed(stats):
            if for_fill:
                reply = yield Op("get_entry", key, marker=_marker_key(key))
                raw, marker = (reply, _FAILED) if reply is _FAILED or reply is _BAD_KEY else reply
            else:
                raw, marker = (yield Op("get", key)), None
                if raw.__class__ is bytes and _names_a_marker(raw):
                    marker = yield Op("get", _marker_key(key))
                    if marker is _FAILED or marker is _BAD_KEY:
                        raw = marker = _FAILED
            if raw is _BAD_KEY:
                self._count("corrupt", stats)
                found = _CORRUPT
            elif raw is not None and raw is not _FAILED:
                found = self._decode(raw, key, stats, refresh_early, since, marker)
            if found is _CORRUPT:
                yield Op("delete", key)
                found = MISS
        self._count("l2_hits" if found.hit else "misses", stats)
        return found, marker

    def _decode(
        self,
        raw: Any,
        key: str,
        stats: CacheStats | None,
        refresh_early: bool,
        since: int,
        marker: bytes | None,
    ) -> Found:
        """The value of an L2 payload, a miss if it was computed under another marker
        than ``marker`` (the current one); kept in L1 unless ``key`` was invalidated after
        epoch ``since`` (when the payload was asked for)."""
        try:
            magic, expires, compute_seconds, marker_length = _HEADER.unpack_from(raw)
            if magic != _MAGIC:
                raise CorruptPayloadError(f"not a perfkit cache payload: {bytes(raw[:8])!r}")
            start = _HEADER.size if marker_length == _ANY_MARKER else _HEADER.size + marker_length
            if marker_length != _ANY_MARKER and bytes(raw[_HEADER.size : start]) != (marker or b""):
                return MISS  # computed before an invalidation
            payload = bytes(raw[start:])
            value = self.serializer.loads(payload)
        except RejectedPayloadError:
            self._count("rejected", stats)
            return _CORRUPT
        except (CorruptPayloadError, struct.error, TypeError, ValueError):
            self._count("corrupt", stats)
            return _CORRUPT
        remaining = expires - self._stamp()
        if remaining <= 0:
            return MISS
        if refresh_early and self.early_refresh and self._refresh_early(remaining, compute_seconds):
            self._count("early_refreshes", stats)
            return MISS
        self._generations.apply_unless_advanced(
            key,
            since,
            self._l1.set,
            key,
            value,
            ttl=self._l1_ttl(remaining),
            cost=compute_seconds,
            payload=payload,
        )
        return Found(True, value, "l2")

    def refresh_due(self, entry: Entry, stats: CacheStats | None = None) -> bool:
        """Whether an L1 entry should be recomputed now, before it expires (XFetch);
        always False unless ``early_refresh`` is set. Counts ``early_refreshes``."""
        if not self.early_refresh:
            return False
        if self._refresh_early(self._l1.remaining(entry), entry.cost):
            self._count("early_refreshes", stats)
            return True
        return False

    def _refresh_early(self, remaining: float, compute_seconds: float) -> bool:
        # XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): recompute before expiry
        # with a probability that grows as expiry nears and with the recompute cost.
        draw = 1.0 - self._random.random()  # in (0, 1]
        return -compute_seconds * self.early_refresh * math.log(draw) >= remaining

    def _store(
        self,
        key: str,
        value: Any,
        ttl: float | None,
        compute_seconds: float,
        stats: CacheStats | None,
        *,
        ticket: FillTicket | None = None,
    ) -> Generator[Op, Any, None]:
        """Write ``value`` to both layers. A fill passes its ticket, the epoch and the L2
        marker it read before computing: if ``key`` was invalidated since in this process,
        nothing is written; in L2 the payload carries the marker, so that it is a miss if
        an invalidation anywhere moved the marker meanwhile. A caller's own write (no
        ticket) supersedes the fills in flight, and its payload fits any marker."""
        since, marker = (None, _UNASKED) if ticket is None else ticket
        seconds = self._jittered(self.ttl if ttl is None else check_timeout("ttl", ttl))

        def write_l1() -> None:
            self._l1.set(key, value, ttl=self._l1_ttl(seconds), cost=compute_seconds)

        if since is None:
            self._generations.advance(key, write_l1)
        elif not self._generations.apply_unless_advanced(key, since, write_l1):
            return
        self._count("writes", stats)
        if self.redis is None:
            return
        try:
            payload = self.serializer.dumps(value)
        except SerializationError as error:
            # The caller still gets its value (and L1 keeps it); L2 cannot, and saying so
            # loudly beats a cache that silently never shares.
            warnings.warn(CacheWarning(f"{key}: not stored in L2: {error}"), stacklevel=4)
            return
        if len(payload) > self.l2_max_bytes:
            # Redis would refuse it or stall on it, and the error would count against Redis
            # for every key's breaker; the entry of an older value goes, L1 keeps the new.
            self._count("l2_refused", stats)
            if self._l2_allowed(stats):
                yield Op("delete", key)
            return
        if since is None:
            stamp = _HEADER.pack(_MAGIC, self._stamp() + seconds, compute_seconds, _ANY_MARKER)
        elif marker is _UNASKED or marker is _FAILED:
            # The fill cannot tell which marker its value was computed under: L1 only.
            if marker is _UNASKED:
                self._count("l2_skipped", stats)
            return
        else:
            marker = marker or b""
            if not marker:
                # An invalidation's marker must outlive an entry computed before it.
                seconds = min(seconds, self._marker_seconds())
            header = _HEADER.pack(_MAGIC, self._stamp() + seconds, compute_seconds, len(marker))
            stamp = header + marker
        if self._l2_allowed(stats):
            ms = max(1, math.ceil(seconds * 1000))
            yield Op("set", key, stamp + payload, ms=ms)

    # Invalidations go to Redis even while the breaker is open: skipping one would leave
    # a stale entry for every other process to read once Redis is back.

    def _invalidate(self, key: str) -> Generator[Op, Any, bool]:
        self._generations.advance(key, lambda: self._l1.delete(key))
        self._count("invalidations", None)
        if self.redis is None:
            return True
        marker_ms = math.ceil(2 * self._marker_seconds() * 1000)
        token = uuid.uuid4().bytes
        result = yield Op("invalidate", key, token, ms=marker_ms, marker=_marker_key(key))
        # Other processes' L1 may hold the entry too: tell their listeners.
        yield Op("publish", self.invalidation_channel, key.encode())
        return result is not _FAILED

    def _clear(self) -> Generator[Op, Any, None]:
        self._generations.advance_all(self._l1.clear)
        self._count("invalidations", None)
        if self.redis is not None:
            yield Op("scan_delete", f"{_glob_escape(self.prefix)}*")
            yield Op("publish", self.invalidation_channel, CLEAR_ALL)

    def _jittered(self, seconds: float) -> float:
        if not self.ttl_jitter:
            return seconds
        return seconds * (1.0 - self.ttl_jitter * self._random.random())

    def _l1_ttl(self, seconds: float) -> float:
        return seconds if self.l1_ttl is None else min(seconds, self.l1_ttl)

    def _l2_allowed(self, stats: CacheStats | None) -> bool:
        if self.redis is None:
            return False
        if self.breaker.allow():
            return True
        self._count("l2_skipped", stats)
        return False

    # -- drivers: run a path's Redis operations ------------------------------------------

    def _sync(
        self,
        path: Generator[Op, Any, Any],
        stats: CacheStats | None = None,
        call: Callable[[], Any] | None = None,
    ) -> Any:
        if self._async_redis:
            raise TypeError(
                "this cache's Redis client is a redis.asyncio client; use the async methods "
                "(alookup, astore, aget, ...) or decorate coroutine functions"
            )
        failed, now = False, self._op_timer  # failed: see _settle
        try:
            op = next(path)
            while True:
                if op.kind == "call":
                    assert call is not None
                    try:
                        value = call()
                    except BaseException as error:  # the path decides what to do with it
                        op = path.throw(error)
                        continue
                    op = path.send(value)
                elif op.kind == "sleep":
                    self.clock.sleep(op.ms / 1000)
                    op = path.send(None)
                elif failed:
                    self._count("l2_skipped", stats)
                    op = path.send(_FAILED)
                else:
                    start = now()
                    result = self._run_sync(op, stats)
                    failed = self._settle(result, now() - start)
                    op = path.send(result)
        except StopIteration as stop:
            return stop.value

    async def _async(
        self,
        path: Generator[Op, Any, Any],
        stats: CacheStats | None = None,
        call: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        failed, now = False, self._op_timer  # failed: see _settle
        try:
            op = next(path)
            while True:
                if op.kind == "call":
                    assert call is not None
                    try:
                        result = await call()
                    except BaseException as error:  # the path decides what to do with it
                        op = path.throw(error)
                        continue
                elif op.kind == "sleep":
                    await self.clock.asleep(op.ms / 1000)
                    result = None
                elif failed:
                    self._count("l2_skipped", stats)
                    result = _FAILED
                else:
                    start = now()
                    if self._async_redis:
                        result = await self._run_async(op, stats)
                    else:
                        result = self._run_sync(op, stats)
                    failed = self._settle(result, now() - start)
                op = path.send(result)
        except StopIteration as stop:
            return stop.value

    def _run_sync(self, op: Op, stats: CacheStats | None) -> Any:
        # The client's own timeouts bound the wait (connect_redis sets them to the budget).
        try:
            return _execute_sync(self.redis, op)
        except Exception as error:  # L2 must never fail the caller
            return self._l2_failed(error, stats)

    async def _run_async(self, op: Op, stats: CacheStats | None) -> Any:
        # Cancelling a command in flight is safe: redis-py disconnects a connection whose
        # reply was not read, so no half-read reply goes back to the pool. Invalidations
        # are not cut short: one cut short could leave a stale entry for every process.
        try:
            if op.kind in _UNBUDGETED:
                return await _execute_async(self.redis, op)
            async with asyncio.timeout(self.l2_timeout):
                return await _execute_async(self.redis, op)
        except Exception as error:  # L2 must never fail the caller
            return self._l2_failed(error, stats)

    def _settle(self, result: Any, seconds: float) -> bool:
        """Account for an L2 operation that took ``seconds`` and answered ``result``, and
        say whether it failed. After a failure (an error, or a timeout of the client's
        sockets or of ``l2_timeout`` for asyncio clients) a call asks Redis nothing more,
        so a dead or silent Redis costs it one timeout at most. A reply slower than
        ``l2_timeout`` is used, but counts against Redis for the breaker: a slow Redis
        opens it as a dead one does."""
        if result is _FAILED:
            return True
        if seconds > self.l2_timeout:
            self.breaker.record_failure()
        elif result is not _BAD_KEY:
            self.breaker.record_success()
        return False

    def _l2_failed(self, error: Exception, stats: CacheStats | None) -> Any:
        self._count("l2_errors", stats)
        if isinstance(error, redis.exceptions.ResponseError):
            # Redis answered: it is up, the key is bad (a WRONGTYPE value, say). One bad
            # key must not open the breaker for every other key.
            self.breaker.record_success()
            return _BAD_KEY
        self.breaker.record_failure()
        return _FAILED

    def __repr__(self) -> str:
        return (
            f"MultiLayerCache(namespace={self.namespace!r}, version={self.version!r}, "
            f"ttl={self.ttl!r}, l1={len(self._l1)}/{self._l1.maxsize}, "
            f"breaker={self.breaker.state})"
        )


_CORRUPT = Found(False, layer="")

_UNBUDGETED = frozenset({"invalidate", "scan_delete", "publish"})
"""Operations that only the client's own timeouts bound: invalidations and clears."""


def _execute_sync(client: Any, op: Op) -> Any:
    if op.kind == "get":
        return client.get(op.key)
    if op.kind == "set":
        return client.set(op.key, op.payload, px=op.ms)
    if op.kind == "set_nx":
        return client.set(op.key, op.payload, px=op.ms, nx=True)
    if op.kind == "delete":
        return client.delete(op.key)
    if op.kind == "publish":
        return client.publish(op.key, op.payload)
    if op.kind == "invalidate":
        with client.pipeline(transaction=False) as pipe:
            pipe.set(op.marker, op.payload, px=op.ms)
            pipe.delete(op.key)
            return pipe.execute()[-1]
    if op.kind == "get_entry":  # one MGET: the marker shares the entry's cluster slot
        return client.mget(op.key, op.marker)
    keys = list(client.scan_iter(match=op.key, count=500))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    return len(keys)


async def _execute_async(client: Any, op: Op) -> Any:
    if op.kind == "get":
        return await client.get(op.key)
    if op.kind == "set":
        return await client.set(op.key, op.payload, px=op.ms)
    if op.kind == "set_nx":
        return await client.set(op.key, op.payload, px=op.ms, nx=True)
    if op.kind == "delete":
        return await client.delete(op.key)
    if op.kind == "publish":
        return await client.publish(op.key, op.payload)
    if op.kind == "invalidate":
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(op.marker, op.payload, px=op.ms)
            pipe.delete(op.key)
            return (await pipe.execute())[-1]
    if op.kind == "get_entry":  # one MGET: the marker shares the entry's cluster slot
        return await client.mget(op.key, op.marker)
    keys = [key async for key in client.scan_iter(match=op.key, count=500)]
    for start in range(0, len(keys), 500):
        await client.delete(*keys[start : start + 500])
    return len(keys)


_escaped_name = functools.lru_cache(maxsize=4096)(entry_name)
"""entry_name, remembered for the names a cache sees most (a hit calls it every time)."""


def _names_a_marker(raw: bytes) -> bool:
    """Whether an L2 payload names the invalidation marker it was computed under (a
    fill's does; a caller's own write fits any). Its magic is for _decode to check."""
    return len(raw) >= _HEADER.size and raw[_HEADER.size - 1] != _ANY_MARKER


def _marker_key(key: str) -> str:
    """The key of ``key``'s invalidation marker. It starts with a word and a space, which
    no entry key does (namespaces hold no whitespace), and carries ``key``'s cluster hash
    tag, so that one pipeline reads both from one node of a Redis Cluster."""
    start = key.find("{")
    end = key.find("}", start + 1) if start != -1 else -1
    if end > start + 1:  # key has a hash tag: only its content is hashed
        return f"perfkit-invalidated {{{key[start + 1 : end]}}} {key}"
    if "}" not in key:  # the whole key is hashed: make it the marker's tag
        return f"perfkit-invalidated {{{key}}}"
    return f"perfkit-invalidated {key}"  # no tag can hold it; fine off a cluster


def _glob_escape(text: str) -> str:
    """``text`` as a Redis glob pattern (SCAN MATCH) that matches only itself."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def _decodes_responses(client: Any) -> bool:
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    return isinstance(kwargs, dict) and bool(kwargs.get("decode_responses"))


def _is_async_client(client: Any) -> bool:
    # redis.asyncio's command methods are plain functions returning coroutines;
    # execute_command is the coroutine function they all go through.
    return client is not None and inspect.iscoroutinefunction(
        getattr(client, "execute_command", None)
    )


def _check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
        raise ValueError(f"namespace must be a non-empty str without whitespace, got {namespace!r}")
    return namespace


def _check_version(version: int | str) -> int | str:
    if isinstance(version, bool) or not isinstance(version, (int, str)) or version == "":
        raise ValueError(f"version must be an int or a non-empty str, got {version!r}")
    return version


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


class InvalidationListener:
    """A thread applying a channel's invalidation messages to one cache's L1."""

    def __init__(self, cache: MultiLayerCache, pubsub: Any, poll_interval: float) -> None:
        self._cache = cache
        self._pubsub = pubsub
        self._poll_interval = poll_interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="perfkit-cache-invalidations", daemon=True
        )

    @classmethod
    def start(cls, cache: MultiLayerCache, poll_interval: float) -> InvalidationListener:
        pubsub = cache.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(cache.invalidation_channel)
        listener = cls(cache, pubsub, poll_interval)
        listener._thread.start()
        return listener

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                message = self._pubsub.get_message(timeout=self._poll_interval)
            except Exception:  # Redis went away: keep trying until stopped
                self._stopping.wait(self._poll_interval)
                continue
            if message is not None and message.get("type") == "message":
                self._cache.drop_from_l1(message["data"])

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._pubsub.close()

    def __enter__(self) -> InvalidationListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class AsyncInvalidationListener:
    """An asyncio task applying a channel's invalidation messages to one cache's L1."""

    def __init__(self, cache: MultiLayerCache, pubsub: Any, poll_interval: float) -> None:
        self._cache = cache
        self._pubsub = pubsub
        self._poll_interval = poll_interval
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, cache: MultiLayerCache, poll_interval: float) -> AsyncInvalidationListener:
        pubsub = cache.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(cache.invalidation_channel)
        listener = cls(cache, pubsub, poll_interval)
        listener._task = asyncio.get_running_loop().create_task(listener._run())
        return listener

    async def _run(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=self._poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis went away: keep trying until stopped
                await asyncio.sleep(self._poll_interval)
                continue
            if message is not None and message.get("type") == "message":
                self._cache.drop_from_l1(message["data"])

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()

    async def __aenter__(self) -> AsyncInvalidationListener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
