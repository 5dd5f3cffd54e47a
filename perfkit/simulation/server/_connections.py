"""Keep-alive connections between clients and the simulated server, modeled."""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Callable
from typing import Any

import httpx

from perfkit._clock import Clock
from perfkit._connections import keepalive_limits
from perfkit.simulation._latency import LatencyModel, to_microseconds
from perfkit.simulation.server._intercept import (
    CLOSED_POOLS,
    DELIVERY_KEY,
    ScheduledStream,
)


class ModeledConnections:
    """Keep-alive connections per client pool, modeled: a request that finds no idle
    connection in its pool opens one (paying ``handshake``); a response delivered in full
    leaves its connection idle for the next request, and a failed or abandoned one
    closes it, as httpcore's pool does. Like the pool, it keeps at most its limits'
    ``max_keepalive_connections`` idle (closing the surplus) and closes one idle for
    longer than ``keepalive_expiry`` (on ``clock``); the most recently idle is reused
    first. A new client is a new pool, with no connection, and a pool's idle
    connections close with it (when it is closed, or collected)."""

    def __init__(self, handshake: LatencyModel, clock: Clock) -> None:
        self.handshake = handshake
        self.clock = clock
        self.opened = 0
        self._in_use = 0
        # When each idle connection of a pool went idle, oldest first.
        self._idle: weakref.WeakKeyDictionary[Any, list[float]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        now = self.clock.now()
        with self._lock:
            return self._in_use + sum(len(self._alive(pool, now)) for pool in list(self._idle))

    def checkout(self, pool_ref: weakref.ref[Any] | None) -> tuple[float, Callable[[bool], None]]:
        """The modeled handshake this request pays, and ``done(reusable)`` to call when
        its response was delivered (or failed). The pool is held weakly throughout."""
        pool = pool_ref() if pool_ref is not None else None
        now = self.clock.now()
        with self._lock:
            self._in_use += 1
            idle = self._alive(pool, now) if pool is not None else []
            if idle:
                idle.pop()
                cost = 0.0
            else:
                self.opened += 1
                cost = to_microseconds(self.handshake.sample())
        return cost, lambda reusable: self._done(pool_ref, reusable)

    def _done(self, pool_ref: weakref.ref[Any] | None, reusable: bool) -> None:
        pool = pool_ref() if pool_ref is not None else None
        now = self.clock.now()
        with self._lock:
            self._in_use -= 1
            if reusable and pool is not None:
                idle = self._alive(pool, now)
                if len(idle) < keepalive_limits(pool)[0]:
                    idle.append(now)

    def _alive(self, pool: Any, now: float) -> list[float]:
        """``pool``'s idle connections, once those past their keep-alive are closed (all of
        them once the pool is closed: a new list, kept nowhere)."""
        if pool in CLOSED_POOLS:
            self._idle.pop(pool, None)
            return []
        idle = self._idle.setdefault(pool, [])
        expiry = keepalive_limits(pool)[1]
        if expiry is not None:
            idle[:] = [since for since in idle if now <= since + expiry]
        return idle


def after_handshake(
    response: httpx.Response, handshake: float, done: Callable[[bool], None]
) -> httpx.Response:
    """``response`` delivered ``handshake`` later; its connection is given back once the
    response is delivered in full, or closed if it fails or is abandoned."""
    delivery = response.extensions[DELIVERY_KEY]
    on_sent, on_abandoned = delivery.on_sent, delivery.on_abandoned
    if isinstance(response.stream, ScheduledStream):
        response.stream.add_close_callback(done)  # also when abandoned: it is closed
    elif delivery.error is not None:
        done(False)
    else:
        on_sent = _chain(on_sent, lambda: done(True))
        on_abandoned = _chain(on_abandoned, lambda: done(False))
    response.extensions[DELIVERY_KEY] = dataclasses.replace(
        delivery,
        delay=to_microseconds(delivery.delay + handshake),
        on_sent=on_sent,
        on_abandoned=on_abandoned,
    )
    return response


def _chain(first: Callable[[], None] | None, then: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        if first is not None:
            first()
        then()

    return both
