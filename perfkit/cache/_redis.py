"""Redis clients for the cache's L2: short timeouts and no retries, within a latency budget."""

from __future__ import annotations

import math
from typing import Any

DEFAULT_L2_TIMEOUT = 0.05
"""Seconds one L2 operation may take before it counts as failed (50 ms: a cache that waits
longer than that on Redis is slower than many origins it stands in front of)."""


def connect_redis(
    url: str, *, asynchronous: bool = False, timeout: float = DEFAULT_L2_TIMEOUT
) -> Any:
    """A Redis client for a cache's L2: ``redis.Redis`` (or ``redis.asyncio.Redis`` with
    ``asynchronous=True``) for ``url``, whose connect and socket timeouts are ``timeout``
    seconds and which never retries, so a dead, silent or slow Redis costs a call at
    most about ``timeout``, and the circuit breaker takes it from there.

    >>> client = connect_redis("redis://127.0.0.1:6379/0", timeout=0.05)
    >>> client.connection_pool.connection_kwargs["socket_timeout"]
    0.05
    >>> client.close()
    """
    check_timeout("timeout", timeout)
    if not isinstance(url, str) or not url:
        raise ValueError(f"url must be a redis:// or rediss:// URL, got {url!r}")
    options: dict[str, Any] = {
        "socket_timeout": float(timeout),
        "socket_connect_timeout": float(timeout),
        "decode_responses": False,
    }
    if asynchronous:
        import redis.asyncio
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import NoBackoff

        return redis.asyncio.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 0), **options)
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)


def check_timeout(name: str, seconds: float) -> float:
    """``seconds`` if it is a finite number of seconds > 0, else a ValueError naming it."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 < seconds < math.inf
    ):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {seconds!r}")
    return float(seconds)


_POOL_OWN = frozenset(
    {
        # A pool's own machinery and what the budget replaces: not copied to the cache's.
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
        "retry",
        "socket_timeout",
        "socket_connect_timeout",
    }
)


def budgeted_sync_client(client: Any, timeout: float) -> Any:
    """``client`` itself if its connections already keep to ``timeout`` (socket and
    connect timeouts within it, no retries), else a client of the same server on a pool
    of the cache's own that does. A blocking socket read cannot be interrupted, so the
    budget must be the socket's; the user's client is left as it is, since it may serve
    other work, like blocking commands, that needs its own timeouts.

    Only plain pools are copied; a cluster or sentinel client, or fakeredis (no sockets),
    is returned as it is (see :func:`unbounded_sync_client`).
    """
    pool: Any = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict) or _is_fake(pool) or _within_budget(client, timeout):
        return client
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        return client
    options = {name: value for name, value in kwargs.items() if name not in _POOL_OWN}
    own_pool = type(pool)(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        **options,
    )
    return redis.Redis(connection_pool=own_pool)


def unbounded_sync_client(client: Any) -> bool:
    """Whether a sync client's connections may wait on a socket for ever (no socket
    timeout), and the cache could not give itself a pool of its own."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict) or _is_fake(pool):
        return False
    return kwargs.get("socket_timeout") is None


def _within_budget(client: Any, timeout: float) -> bool:
    kwargs = client.connection_pool.connection_kwargs
    socket_timeout = kwargs.get("socket_timeout")
    connect_timeout = kwargs.get("socket_connect_timeout") or socket_timeout
    retry = kwargs.get("retry")
    retries = getattr(retry, "_retries", 0) if retry is not None else 0
    return (
        socket_timeout is not None
        and socket_timeout <= timeout
        and connect_timeout is not None
        and connect_timeout <= timeout
        and retries == 0
    )


def _is_fake(pool: Any) -> bool:
    # fakeredis (and perfkit's simulated Redis, built on it) opens no socket.
    connection_class = getattr(pool, "connection_class", object)
    return any(cls.__module__.startswith("fakeredis") for cls in connection_class.__mro__)
