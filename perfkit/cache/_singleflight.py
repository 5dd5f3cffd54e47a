"""Single flight: concurrent misses for one key compute once, in threads and in tasks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable
from concurrent.futures import Future
from typing import Any


class ThreadFlights:
    """Per-key in-flight computations shared by threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Future[Any]] = {}

    def join(self, key: Hashable) -> tuple[Future[Any], bool]:
        """The flight for ``key`` and whether the caller leads it (and must finish it)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = Future()
            return flight, True

    def land(self, key: Hashable, flight: Future[Any]) -> None:
        """Forget ``flight`` once it has its result, so later misses start a new one."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]


class TaskFlights:
    """Per-key in-flight computations shared by asyncio tasks (of any event loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[tuple[int, Hashable], asyncio.Future[Any]] = {}

    def join(self, key: Hashable) -> tuple[asyncio.Future[Any], bool]:
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        with self._lock:
            flight = self._flights.get(slot)
            if flight is not None and not flight.done():
                return flight, False
            flight = self._flights[slot] = loop.create_future()
            return flight, True

    def land(self, key: Hashable, flight: asyncio.Future[Any]) -> None:
        slot = (id(asyncio.get_running_loop()), key)
        with self._lock:
            if self._flights.get(slot) is flight:
                del self._flights[slot]
