"""A circuit breaker that stops calling Redis (L2) while it is failing, then probes it."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Literal

from perfkit._clock import Clock, RealClock
from perfkit._validation import check_count

BreakerState = Literal["closed", "open", "half_open"]

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOL_DOWN = 30.0
DEFAULT_HALF_OPEN_PROBES = 1


@dataclass(frozen=True)
class BreakerStats:
    """A snapshot of a breaker: its state and what it has done since made (or reset).

    >>> BreakerStats("closed", opened=0, rejected=0, consecutive_failures=0).state
    'closed'
    """

    state: BreakerState
    opened: int
    """Times the breaker opened (from closed, or re-opened by a failed probe)."""
    rejected: int
    """Calls :meth:`CircuitBreaker.allow` refused (while open, or with all probes out)."""
    consecutive_failures: int
    """Failures recorded since the last success (what the threshold is compared to)."""


class CircuitBreaker:
    """Refuses calls after ``failure_threshold`` consecutive failures, for ``cool_down``
    seconds, then lets ``half_open_probes`` calls through to see if the service is back.

    Ask :meth:`allow` before each call and report how it went with :meth:`record_success`
    or :meth:`record_failure`. Results reported while the breaker is open come from calls
    allowed before it opened and are ignored. A probe whose result is never reported
    (its caller was cancelled, say) frees its slot once more than ``cool_down`` has passed,
    so a lost probe cannot keep the breaker half-open for ever.

    >>> from perfkit._clock import VirtualClock
    >>> clock = VirtualClock()
    >>> breaker = CircuitBreaker(failure_threshold=2, cool_down=10, clock=clock)
    >>> breaker.record_failure(); breaker.record_failure()
    >>> breaker.state, breaker.allow()
    ('open', False)
    >>> clock.advance(10)
    >>> breaker.allow(), breaker.allow()
    (True, False)
    >>> breaker.record_success()
    >>> breaker.state
    'closed'
    """

    def __init__(
        self,
        *,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cool_down: float = DEFAULT_COOL_DOWN,
        clock: Clock | None = None,
        half_open_probes: int = DEFAULT_HALF_OPEN_PROBES,
    ) -> None:
        self.failure_threshold = check_count("failure_threshold", failure_threshold)
        self.cool_down = _check_cool_down(cool_down)
        self.half_open_probes = check_count("half_open_probes", half_open_probes)
        self.clock: Clock = clock if clock is not None else RealClock()
        # The lock guards the fields below and is never held across a call to Redis;
        # it is held across clock reads, which are neither I/O nor user code.
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._since = 0.0  # when the breaker opened, or when the current probes went out
        self._probes_out = 0
        self._failures = 0
        self._opened = 0
        self._rejected = 0

    @property
    def state(self) -> BreakerState:
        """``"closed"``, ``"open"`` or ``"half_open"`` (open with its cool-down over)."""
        with self._lock:
            self._end_cool_down()
            return self._state

    def allow(self) -> bool:
        """Whether a call may go ahead now; every True must be followed by a record_*."""
        if self._is_closed():  # the common case, read without the lock
            return True
        with self._lock:
            self._end_cool_down()
            if self._state == "closed":
                return True
            if self._state == "half_open" and self._probe_slot_free():
                self._probes_out += 1
                return True
            self._rejected += 1
            return False

    def record_success(self) -> None:
        """A call succeeded: a probe's success closes the breaker."""
        if self._is_closed() and not self._failures:  # nothing to change
            return
        with self._lock:
            if self._state == "open":
                return
            self._state = "closed"
            self._failures = 0
            self._probes_out = 0

    def record_failure(self) -> None:
        """A call failed: opens the breaker at the threshold, or at once when probing."""
        with self._lock:
            if self._state == "open":
                return
            self._failures += 1
            if self._state == "half_open" or self._failures >= self.failure_threshold:
                self._open()

    def stats(self) -> BreakerStats:
        """The current state and counters, read together."""
        with self._lock:
            self._end_cool_down()
            return BreakerStats(
                state=self._state,
                opened=self._opened,
                rejected=self._rejected,
                consecutive_failures=self._failures,
            )

    def reset(self) -> None:
        """Back to closed, with every counter at zero, as if just made."""
        with self._lock:
            self._state = "closed"
            self._since = 0.0
            self._probes_out = 0
            self._failures = 0
            self._opened = 0
            self._rejected = 0

    def _is_closed(self) -> bool:
        return self._state == "closed"

    def _open(self) -> None:
        self._state = "open"
        self._since = self.clock.now()
        self._probes_out = 0
        self._opened += 1

    def _end_cool_down(self) -> None:
        if self._state == "open" and self.clock.elapsed(self._since) >= self.cool_down:
            self._state = "half_open"
            self._since = self.clock.now()
            self._probes_out = 0

    def _probe_slot_free(self) -> bool:
        if self._probes_out < self.half_open_probes:
            return True
        if self.clock.elapsed(self._since) > self.cool_down:
            # The probes out have gone unreported for over a cool-down: count them lost.
            self._since = self.clock.now()
            self._probes_out = 0
            return True
        return False

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state!r}, failure_threshold={self.failure_threshold!r}, "
            f"cool_down={self.cool_down!r}, half_open_probes={self.half_open_probes!r})"
        )


def _check_cool_down(seconds: float) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 <= seconds < math.inf
    ):
        raise ValueError(f"cool_down must be a finite number of seconds >= 0, got {seconds!r}")
    return float(seconds)
