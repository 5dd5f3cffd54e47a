"""``@cached(cache, ttl=...)``: cache a function's results in a MultiLayerCache."""

from __future__ import annotations

import asyncio
import functools
import inspect
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from perfkit.cache._keys import (
    TRANSPARENT,
    Cells,
    bind_arguments,
    cells_changed,
    check_name,
    identify_watching,
    make_key,
)
from perfkit.cache._l1 import UNCOPYABLE, Frozen, immutable, shareable
from perfkit.cache._multilayer import Found, MultiLayerCache
from perfkit.cache._singleflight import TaskFlights, ThreadFlights
from perfkit.cache._stats import CacheStats

F = TypeVar("F", bound=Callable[..., Any])

_FLAT_TYPES = frozenset({str, bytes, int, bool, type(None)})
_flat = _FLAT_TYPES.issuperset

KEY_MEMO_SIZE = 4096
"""How many calls' full keys a decorated function remembers (the L1 fast path)."""


class _CachedError:
    """An exception kept in L1 because the decorator was asked to cache it."""

    __slots__ = ("args", "attributes", "error", "links", "notes", "traceback")

    def __init__(self, error: BaseException) -> None:
        self.error = error
        # Raising one exception object again appends to its traceback: every hit starts
        # from the original one, so the traceback (and the frames it holds) cannot grow.
        self.traceback = error.__traceback__
        # What a caller may change on the one object every hit raises (add_note, args,
        # attributes, the context of the except block it is raised in): restored per hit.
        self.args = error.args
        self.attributes = dict(vars(error))
        notes = self.attributes.pop("__notes__", None)
        self.notes = list(notes) if isinstance(notes, list) else None
        self.links = (error.__cause__, error.__context__, error.__suppress_context__)

    def again(self) -> BaseException:
        """The kept exception as it was kept, to raise."""
        error = self.error
        error.args = self.args
        state = vars(error)
        state.clear()
        state.update(self.attributes)
        if self.notes is not None:
            error.__notes__ = list(self.notes)
        error.__cause__, error.__context__, error.__suppress_context__ = self.links
        return error.with_traceback(self.traceback)


class _Keys:
    """A function's full cache keys, with a memo of recent calls so that an L1 hit does
    not pay for canonical JSON and SHA-256.

    Only calls whose arguments are all of flat types (str, bytes, int, bool, None) are
    memoised, keyed by the values and their exact types: for those, equal values of
    equal types always have the same canonical form (unlike ``0.0 == -0.0``,
    ``1 == 1.0 == True`` or ``(1,) == (1.0,)``, which must stay different calls)."""

    def __init__(
        self,
        cache: MultiLayerCache,
        function: Callable[..., Any],
        key: Callable[..., Any] | None,
        identity: str,
        cells: Cells,
        rename: Callable[[], tuple[str, Cells]] | None = None,
    ) -> None:
        self._cache = cache
        self._function = function
        self._custom = key
        self._identity = identity
        self._cells = cells
        self._rename = rename
        self._skip_self = _is_method(function)
        self.memoised: Callable[..., str] = self._memo()
        self.fast: Callable[..., str] = self._checked if cells and rename else self.memoised
        """The key of a call of flat positional arguments; for a closure whose name
        depends on what its cells hold, that checks them first."""

    def _checked(self, *args: Any) -> str:
        self._recheck()
        return self.memoised(*args)

    def _recheck(self) -> None:
        if self._rename is not None and cells_changed(self._cells):
            # A variable the name was made from was rebound: name the function anew (a
            # TypeError if that name is another function's), and memoise in a new memo (a
            # call racing this may still fill the old one).
            self._identity, self._cells = self._rename()
            self.memoised = self._memo()

    def _memo(self) -> Callable[..., str]:
        if self._custom is None:
            return functools.lru_cache(maxsize=KEY_MEMO_SIZE, typed=True)(
                lambda *args, **kwargs: self._full(args, kwargs)
            )
        # a key function may read state beyond its arguments: never memoise it
        return lambda *args, **kwargs: self._full(args, kwargs)

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if self._cells:
            self._recheck()
        if kwargs:
            if _flat(map(type, args)) and _flat(map(type, kwargs.values())):
                return self.memoised(*args, **kwargs)
        elif _flat(map(type, args)):
            return self.memoised(*args)
        return self._full(args, kwargs)

    def _full(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if self._custom is not None:
            custom = self._custom(*args, **kwargs)
            return make_key(
                self._cache.namespace, self._cache.version, self._identity, (custom,), {}
            )
        bound_args, bound_kwargs = bind_arguments(self._function, args, kwargs)
        if self._skip_self and bound_args:
            bound_args = bound_args[1:]
        return make_key(
            self._cache.namespace, self._cache.version, self._identity, bound_args, bound_kwargs
        )


def cached(
    cache: MultiLayerCache,
    ttl: float | None = None,
    *,
    key: Callable[..., Any] | None = None,
    name: str | None = None,
    cache_exceptions: tuple[type[BaseException], ...] = (),
) -> Callable[[F], F]:
    """Cache a function's results in ``cache`` for ``ttl`` seconds (default: the cache's).

    Works on sync functions, coroutine functions and methods (``self``/``cls`` is left
    out of the key: pass ``key=`` to include instance state). ``None`` is cached like any
    value; exceptions are not, unless their types are in ``cache_exceptions`` (then in
    L1 only). Concurrent misses for one key call the function once, across threads and
    across tasks. The wrapper has ``cache_stats()``, ``invalidate(*args, **kwargs)``
    (``ainvalidate`` for coroutine functions) and ``cache_key(*args, **kwargs)``.

    Keys name the function by :func:`~perfkit.cache._keys.function_identity`: a closure
    (a lambda, a function made by a factory, a decorator's wrapper) by its code and the
    immutable values it closes over, so two closures of one factory never share keys; a
    closed-over variable rebound later (``nonlocal``) renames the function on its next call.
    A callable object, or a function renamed by ``functools.update_wrapper``, is named
    apart from the function whose name it carries. Generator functions are refused.
    Where that cannot tell two functions apart, decorating is a ``TypeError`` that asks
    for ``name=``, the str the keys are made with instead. Every hit returns a copy of a
    mutable value (see ``perfkit.cache._l1``), so callers may change what they get.

    >>> import fakeredis
    >>> cache = MultiLayerCache(fakeredis.FakeRedis(), namespace="docs")
    >>> @cached(cache, ttl=300)
    ... def square(x: int) -> int:
    ...     return x * x
    >>> square(7), square(7)
    (49, 49)
    >>> square.cache_stats()["l1_hits"], square.cache_stats()["misses"]
    (1, 1)
    """
    if ttl is not None and not (
        isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 < ttl < float("inf")
    ):
        raise ValueError(f"ttl must be a finite number of seconds > 0, got {ttl!r}")
    if key is not None and not callable(key):
        raise TypeError(f"key must be a callable returning the call's key, got {key!r}")
    if not isinstance(cache_exceptions, tuple) or not all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in cache_exceptions
    ):
        raise TypeError(
            f"cache_exceptions must be a tuple of exception types, got {cache_exceptions!r}"
        )

    if name is not None:
        check_name(name)

    def decorate(function: F) -> F:
        _refuse_generators(function)
        if name:
            keys = _Keys(cache, function, key, name, [])
        else:
            keys = _Keys(
                cache, function, key, *_claim(cache, function), lambda: _claim(cache, function)
            )
        stats = CacheStats()
        wrapper = (
            _async_wrapper(cache, function, keys, stats, ttl, cache_exceptions)
            if inspect.iscoroutinefunction(function)
            else _sync_wrapper(cache, function, keys, stats, ttl, cache_exceptions)
        )
        wrapped = functools.wraps(function)(wrapper)
        setattr(wrapped, TRANSPARENT, True)  # a closure over ``function`` names it alone
        wrapped.cache = cache  # type: ignore[attr-defined]
        wrapped.cache_stats = lambda: stats.snapshot().as_dict()  # type: ignore[attr-defined]
        wrapped.cache_key = lambda *args, **kwargs: keys(args, kwargs)  # type: ignore[attr-defined]
        if inspect.iscoroutinefunction(function):

            async def ainvalidate(*args: Any, **kwargs: Any) -> bool:
                return await cache.ainvalidate_key(keys(args, kwargs))

            wrapped.ainvalidate = ainvalidate  # type: ignore[attr-defined]
        else:

            def invalidate(*args: Any, **kwargs: Any) -> bool:
                return cache.invalidate_key(keys(args, kwargs))

            wrapped.invalidate = invalidate  # type: ignore[attr-defined]
        return cast(F, wrapped)

    return decorate


_Claim = tuple[Callable[[], Any], list[tuple[str, Any]]]
_CLAIMS: weakref.WeakKeyDictionary[MultiLayerCache, dict[str, _Claim]] = weakref.WeakKeyDictionary()
"""Per cache, each function name's claimant and its closed-over objects that are not in
the name (mutable ones, and those without a canonical form), to refuse another function
of that name."""


def _refuse_generators(function: Callable[..., Any]) -> None:
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        raise TypeError(
            f"cannot cache {function!r}: it is a generator function, and a generator "
            "can be consumed once, by one caller; cache a function that returns a list "
            "of what it yields instead"
        )


def _claim(cache: MultiLayerCache, function: Callable[..., Any]) -> tuple[str, Cells]:
    """The name ``function``'s keys are made with, refusing a function that would share
    keys with another one: a class made inside a function, or a method of one (``self``
    is not in the key, and each such class may differ), or a function whose name and
    code are another's on this cache, but which closes over different objects."""
    identity, closed_over, cells = identify_watching(function)
    local = "<locals>" in getattr(function, "__qualname__", "")
    if local and (_is_method(function) or isinstance(function, type)):
        what = "a class" if isinstance(function, type) else "a method of a class"
        raise TypeError(
            f"cannot cache {identity} by its name: it is {what} made inside a function, "
            "and each such class may give other results for one call; pass name= (a str "
            "unique to this class, e.g. made of the values the class is made from)"
        )
    objects = [(variable, _reference(value)) for variable, value in closed_over]
    claims = _CLAIMS.setdefault(cache, {})
    claimant, held_objects = claims.get(identity, (_nobody, []))
    for (variable, held), (_, now) in zip(held_objects, objects, strict=False):
        if claimant() is not function and held() is not None and held() is not now():
            raise TypeError(
                f"cannot cache {identity} on this cache: a function of the same name and "
                f"code is cached on it already, closing over another {variable!r} "
                f"({type(now()).__name__}), and the two would share keys; pass name= (a "
                f"str unique to each function), or make {variable!r} an argument"
            )
    claims[identity] = (_reference(function), objects)
    return identity, cells


def _nobody() -> None:
    return None


def _reference(value: Any) -> Callable[[], Any]:
    """A weak reference where the type allows one: the claims must not keep a cache (or
    what a closure holds) alive."""
    try:
        return weakref.ref(value)
    except TypeError:
        return lambda: value


def _unwrap(value: Any) -> Any:
    if type(value) is _CachedError:
        raise value.again()
    return value


def _hot_path(cache: MultiLayerCache, keys: _Keys, stats: CacheStats) -> tuple[Any, ...]:
    """What a wrapper's L1 hit path reads, looked up once: it keeps them in closure
    variables, which are read faster than attributes, since this is every hit's cost."""
    return (
        cache.l1.get,
        keys.fast,
        cache.early_refresh > 0,
        cache.stats_counters.counter("l1_hits"),
        stats.counter("l1_hits"),
    )


def _keeper(
    cache: MultiLayerCache,
    key: str,
    ttl: float | None,
    cache_exceptions: tuple[type[BaseException], ...],
) -> Callable[[BaseException], bool] | None:
    """Keeps the origin's exceptions of the listed types in L1 (never in L2)."""
    if not cache_exceptions:
        return None

    def keep(error: BaseException) -> bool:
        if isinstance(error, cache_exceptions):
            cache.store_l1(key, _CachedError(error), ttl=ttl)
            return True
        return False

    return keep


def _shared(cache: MultiLayerCache, key: str, found: Found) -> Found:
    """``found`` as a flight's followers get it: its value as it is (immutable, or a kept
    exception), or what each follower thaws a copy from. It is taken before the leader
    returns, since the leader's caller may then change the value (and L1's bytes of it,
    when L1 has them, cost nothing to share)."""
    value = found.value
    if type(value) is _CachedError or immutable(value):
        return found
    entry = cache.l1.get(key)
    if entry is not None and type(entry.value) is Frozen:
        return found._replace(value=entry.value)
    return found._replace(value=shareable(value, cache.serializer))


def _count_follower(cache: MultiLayerCache, stats: CacheStats, found: Found) -> Any:
    """A follower's own copy of the leader's value, or :data:`UNCOPYABLE`: a value that
    cannot be copied is not shared (the follower calls the function itself)."""
    cache.count(f"{found.layer}_hits" if found.hit else "misses", stats)
    value = found.value
    return value.thaw() if type(value) is Frozen else _unwrap(value)


def _sync_wrapper(
    cache: MultiLayerCache,
    function: Callable[..., Any],
    keys: _Keys,
    stats: CacheStats,
    ttl: float | None,
    cache_exceptions: tuple[type[BaseException], ...],
) -> Callable[..., Any]:
    flights = ThreadFlights()
    l1_get, memoised, early, cache_hits, function_hits = _hot_path(cache, keys, stats)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # The L1 hit path, kept flat: it is the cost every cache hit pays.
        flat = not kwargs and _flat(map(type, args))
        full_key = memoised(*args) if flat else keys(args, kwargs)
        entry = l1_get(full_key)
        if entry is not None and not (early and cache.refresh_due(entry, stats)):
            next(cache_hits)
            next(function_hits)
            value = entry.value
            if type(value) is Frozen:  # a mutable value: every hit gets its own copy
                return value.thaw()
            if type(value) is _CachedError:
                raise value.again()
            return value
        refreshing = entry is not None  # an entry past here is one due for early refresh
        flight, leader = flights.join(full_key)
        if not leader:
            cache.count("coalesced", stats)
            try:
                found: Found = flight.result()
            except BaseException:
                cache.count("misses", stats)  # the leader's error: a miss for this call too
                raise
            copy = _count_follower(cache, stats, found)
            return function(*args, **kwargs) if copy is UNCOPYABLE else copy
        try:
            found = cache.fill(
                full_key,
                lambda: function(*args, **kwargs),
                ttl=ttl,
                stats=stats,
                recompute=refreshing,
                keep_error=_keeper(cache, full_key, ttl, cache_exceptions),
            )
            flight.set_result(_shared(cache, full_key, found))
            return _unwrap(found.value)
        except BaseException as error:
            flight.set_exception(error)
            raise
        finally:
            flights.land(full_key, flight)

    return wrapper


def _async_wrapper(
    cache: MultiLayerCache,
    function: Callable[..., Any],
    keys: _Keys,
    stats: CacheStats,
    ttl: float | None,
    cache_exceptions: tuple[type[BaseException], ...],
) -> Callable[..., Any]:
    flights = TaskFlights()
    l1_get, memoised, early, cache_hits, function_hits = _hot_path(cache, keys, stats)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        # The L1 hit path, kept flat: it is the cost every cache hit pays.
        flat = not kwargs and _flat(map(type, args))
        full_key = memoised(*args) if flat else keys(args, kwargs)
        entry = l1_get(full_key)
        if entry is not None and not (early and cache.refresh_due(entry, stats)):
            next(cache_hits)
            next(function_hits)
            value = entry.value
            if type(value) is Frozen:  # a mutable value: every hit gets its own copy
                return value.thaw()
            if type(value) is _CachedError:
                raise value.again()
            return value
        refreshing = entry is not None  # an entry past here is one due for early refresh
        flight, leader = flights.join(full_key)
        if not leader:
            cache.count("coalesced", stats)
            try:
                # shield: a follower's own cancellation must not cancel the shared flight
                found: Found = await asyncio.shield(flight)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                return await wrapper(*args, **kwargs)  # the leader was cancelled: retry
            except BaseException:
                cache.count("misses", stats)  # the leader's error: a miss for this call too
                raise
            copy = _count_follower(cache, stats, found)
            return await function(*args, **kwargs) if copy is UNCOPYABLE else copy
        try:
            found = await cache.afill(
                full_key,
                lambda: function(*args, **kwargs),
                ttl=ttl,
                stats=stats,
                recompute=refreshing,
                keep_error=_keeper(cache, full_key, ttl, cache_exceptions),
            )
            flight.set_result(_shared(cache, full_key, found))
            return _unwrap(found.value)
        except asyncio.CancelledError:
            flight.cancel()  # followers start over rather than share a cancellation
            raise
        except BaseException as error:
            if not flight.done():
                flight.set_exception(error)
                flight.exception()  # retrieved: no "never retrieved" log if nobody waited
            raise
        finally:
            flights.land(full_key, flight)

    return wrapper


def _is_method(function: Callable[..., Any]) -> bool:
    try:
        parameters = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return False
    # A function's qualname ends in "<locals>.name" when it is made inside a function,
    # "Class.name" when it is a method.
    scopes = getattr(function, "__qualname__", "").split(".")
    in_class = len(scopes) > 1 and scopes[-2] != "<locals>"
    return in_class and bool(parameters) and parameters[0] in ("self", "cls")
