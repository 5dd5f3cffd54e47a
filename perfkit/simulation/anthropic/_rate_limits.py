"""Rate limits as the Anthropic API enforces them: per-model token buckets on a clock.

What follows is the API's rate-limits page (https://docs.claude.com/en/api/rate-limits,
also served as docs.anthropic.com/{ja,es,fr,...}/api/rate-limits):

- "We use the token bucket algorithm to do rate limiting. This means that your capacity is
  continuously replenished up to your maximum limit, rather than being reset at fixed
  intervals." Each limit here is a bucket holding the per-minute limit, refilled at
  limit / 60 per second.
- Requests per minute, input tokens per minute (ITPM) and output tokens per minute (OTPM).
  "input_tokens and cache_creation_input_tokens count towards ITPM"; for current models
  "cache_read_input_tokens do not count towards ITPM rate limits (though they are still
  billed)" (only some older models, marked with a dagger there, count them).
- "OTPM rate limits are estimated based on max_tokens at the beginning of each request,
  and the estimate is adjusted at the end of the request to reflect the actual number of
  output tokens used."
- "Rate limits are applied separately for each model": an alias shares its model's limits.
- A request larger than a bucket is refused with the same 429 every time (a public bug
  report, github.com/PRQELT/Autonomix issue 8: a first request of 56k input tokens under a
  30k ITPM limit was refused on every retry); the message tells to reduce the prompt or
  ``max_tokens``.
- A refused request gets a 429 whose ``retry-after`` is "the number of seconds to wait
  until you can retry the request. Earlier retries will fail." The
  ``anthropic-ratelimit-*-remaining`` token figures are "rounded to the nearest thousand";
  ``*-reset`` is "the time when the rate limit will be fully replenished, provided in
  RFC 3339 format".
- "The Message Batches API has its own set of rate limits which are shared across all
  models": a batch's requests do not draw on these buckets (the simulator does not model
  the batch limits).
- Token counting has "separate and independent rate limits" (the token-counting page,
  docs.anthropic.com/en/docs/build-with-claude/token-counting: 100 requests per minute at
  Tier 1): it draws on none of these buckets (its own limit is not modeled).

Not modeled: the docs' note that a limit "may be enforced over shorter intervals" (60 RPM as
one request per second); here a full bucket admits a burst of the whole per-minute limit.
A refused request takes nothing from any bucket.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, Final

from perfkit.simulation.anthropic._models import model_id
from perfkit.simulation.anthropic._wire import RateLimit

DOCS_URL: Final = "https://docs.claude.com/en/api/rate-limits"
SIMULATED_ORG: Final = "00000000-0000-4000-8000-000000000000"
"""The organization id 429 messages name (the API names the caller's)."""

REQUESTS, INPUT, OUTPUT = "requests", "input-tokens", "output-tokens"
_WHAT = {REQUESTS: "requests", INPUT: "input tokens", OUTPUT: "output tokens"}
_SLACK = 1e-9
"""Relative slack when comparing a bucket's level with a cost: the level is refilled in
floating point, and at the second ``retry-after`` names the cost must fit."""


class RateLimits:
    """An organization's rate limits for the simulated Anthropic API: requests, input
    tokens and output tokens per minute (None: that one is unlimited), with per-model
    overrides (``models={"claude-haiku-4-5": RateLimits(...)}``; an alias names its model).

    >>> limits = RateLimits(requests_per_minute=50, input_tokens_per_minute=30_000,
    ...                     output_tokens_per_minute=8_000)
    >>> limits == RateLimits.TIER_1
    True
    """

    TIER_1: ClassVar[RateLimits]
    """Tier 1 for Claude Sonnet 4 and Opus 4.x: 50 RPM, 30,000 ITPM, 8,000 OTPM (the
    rate-limits page's table; the recorded response sdk_runner_ratelimit_exchange.json
    reports the same 50 / 30000 / 8000 for claude-opus-4-5)."""

    __slots__ = (
        "input_tokens_per_minute",
        "models",
        "output_tokens_per_minute",
        "requests_per_minute",
    )

    def __init__(
        self,
        *,
        requests_per_minute: int | None = None,
        input_tokens_per_minute: int | None = None,
        output_tokens_per_minute: int | None = None,
        models: Mapping[str, RateLimits] | None = None,
    ) -> None:
        self.requests_per_minute = _check_limit("requests_per_minute", requests_per_minute)
        self.input_tokens_per_minute = _check_limit(
            "input_tokens_per_minute", input_tokens_per_minute
        )
        self.output_tokens_per_minute = _check_limit(
            "output_tokens_per_minute", output_tokens_per_minute
        )
        self.models: dict[str, RateLimits] = _check_models(models or {})

    def per_minute(self) -> dict[str, int]:
        """The limited kinds and their per-minute limits (unlimited ones left out)."""
        found = {
            REQUESTS: self.requests_per_minute,
            INPUT: self.input_tokens_per_minute,
            OUTPUT: self.output_tokens_per_minute,
        }
        return {kind: limit for kind, limit in found.items() if limit is not None}

    def for_model(self, model: str) -> RateLimits:
        """The limits of ``model`` (its override, else these)."""
        return self.models.get(model_id(model), self)

    def _key(self) -> tuple[object, ...]:
        return (
            self.requests_per_minute,
            self.input_tokens_per_minute,
            self.output_tokens_per_minute,
            tuple(sorted((name, limits._key()) for name, limits in self.models.items())),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RateLimits) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        parts = [
            f"{name}={getattr(self, name)!r}"
            for name in (
                "requests_per_minute",
                "input_tokens_per_minute",
                "output_tokens_per_minute",
            )
            if getattr(self, name) is not None
        ]
        if self.models:
            parts.append(f"models={self.models!r}")
        return f"RateLimits({', '.join(parts)})"


def _check_limit(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name} must be an int >= 1 (per minute) or None (unlimited), got {value!r}"
        )
    return value


def _check_models(models: Mapping[str, RateLimits]) -> dict[str, RateLimits]:
    if not isinstance(models, Mapping):
        raise TypeError(f"models must map model names to RateLimits, got {models!r}")
    checked: dict[str, RateLimits] = {}
    for name, limits in models.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"models must map model names (str) to RateLimits, got key {name!r}")
        if not isinstance(limits, RateLimits) or limits.models:
            raise TypeError(
                f"models[{name!r}] must be a RateLimits without models of its own, got {limits!r}"
            )
        key = model_id(name)
        if key in checked:
            raise ValueError(f"models names {key!r} twice (an alias names its model)")
        checked[key] = limits
    return checked


RateLimits.TIER_1 = RateLimits(
    requests_per_minute=50, input_tokens_per_minute=30_000, output_tokens_per_minute=8_000
)


def check_rate_limits(value: object) -> RateLimits | None:
    """``value`` if it is a :class:`RateLimits` or None, else TypeError."""
    if value is not None and not isinstance(value, RateLimits):
        raise TypeError(f"rate_limits must be a RateLimits or None (unlimited), got {value!r}")
    return value


@dataclass(slots=True)
class _Bucket:
    """One token bucket: ``level`` at time ``at``, refilled at ``capacity / 60`` a second."""

    capacity: int
    level: float
    at: float

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def advance(self, now: float) -> None:
        if now > self.at:  # a clock never runs back; if it did, nothing refills
            self.level = min(self.capacity, self.level + self.rate * (now - self.at))
            self.at = now

    def fits(self, amount: float) -> bool:
        return self.level >= amount - _SLACK * max(1.0, amount)

    def wait(self, amount: float) -> float:
        """Seconds until ``amount`` fits (until full when it never can)."""
        return max(0.0, min(amount, self.capacity) - self.level) / self.rate

    def until_full(self) -> float:
        return max(0.0, self.capacity - self.level) / self.rate


@dataclass(frozen=True)
class Exceeded:
    """A request the limits refuse: the limit it would exceed and when to retry."""

    kind: str
    limit: int
    retry_after: int
    model: str

    @property
    def message(self) -> str:
        """The API's message, worded as a real 429 of 2026 quoted in a public bug report
        (github.com/anthropics/claude-code issue 55132: "This request would exceed your
        organization's rate limit of 30,000 input tokens per minute (org: ..., model:
        claude-sonnet-4-6). For details, refer to: https://docs.claude.com/...")."""
        return (
            f"This request would exceed your organization's rate limit of {self.limit:,} "
            f"{_WHAT[self.kind]} per minute (org: {SIMULATED_ORG}, model: {self.model}). "
            f"For details, refer to: {DOCS_URL}. You can see the response headers for "
            "current usage. Please reduce the prompt length or the maximum tokens requested, "
            "or try again later. You may also contact sales at https://claude.com/contact-sales "
            "to discuss your options for a rate limit increase."
        )


@dataclass
class _Model:
    buckets: dict[str, _Bucket]
    refunds: list[tuple[float, int, float]] = field(default_factory=list)

    def advance(self, now: float) -> None:
        """Every bucket at ``now``, output refunds due by then given back in their order."""
        output = self.buckets.get(OUTPUT)
        # Due "now" within the slack: the request's end, computed as arrival + duration in
        # floating point, may land a hair after the clock's reading of that same moment.
        while self.refunds and self.refunds[0][0] <= now + _SLACK:
            due, _, amount = heapq.heappop(self.refunds)
            if output is not None:
                output.advance(due)
                output.level = min(output.capacity, output.level + amount)
        for bucket in self.buckets.values():
            bucket.advance(now)


class RateLimitState:
    """The buckets of every model one simulator has answered, under a lock (requests may
    arrive from several threads)."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._models: dict[str, _Model] = {}
        self._lock = threading.Lock()
        self._sequence = 0

    def _model(self, model: str, now: float) -> _Model:
        found = self._models.get(model)
        if found is None:
            per_minute = self.limits.for_model(model).per_minute()
            buckets = {
                kind: _Bucket(limit, float(limit), now) for kind, limit in per_minute.items()
            }
            found = self._models[model] = _Model(buckets)
        found.advance(now)
        return found

    def admit(
        self, model: str, *, input_tokens: int, output_tokens: int, now: float
    ) -> Exceeded | None:
        """Take one request, ``input_tokens`` and ``output_tokens`` (the estimate: max_tokens)
        from ``model``'s buckets at ``now``; or, if any cannot give it, take nothing and
        say which limit (the first of requests, input, output) and when to retry."""
        model = model_id(model)
        cost = {REQUESTS: 1, INPUT: input_tokens, OUTPUT: output_tokens}
        with self._lock:
            state = self._model(model, now)
            short = [kind for kind, bucket in state.buckets.items() if not bucket.fits(cost[kind])]
            if short:
                wait = max(state.buckets[kind].wait(cost[kind]) for kind in short)
                limit = state.buckets[short[0]].capacity
                return Exceeded(short[0], limit, max(1, math.ceil(wait - _SLACK)), model)
            for kind, bucket in state.buckets.items():
                bucket.level -= cost[kind]
        return None

    def settle(self, model: str, *, estimated: int, used: int, at: float) -> int | None:
        """At time ``at`` (the end of the request), give back the output tokens estimated
        but not used (or take the excess). Returns the give-back's key for
        :meth:`end_early` (None: no output limit, nothing to give back)."""
        with self._lock:
            self._sequence += 1
            state = self._models.get(model_id(model))
            if state is None or OUTPUT not in state.buckets:
                return None
            heapq.heappush(state.refunds, (at, self._sequence, float(estimated - used)))
            return self._sequence

    def end_early(self, model: str, key: int, *, estimated: int, used: int, at: float) -> None:
        """The request whose give-back is pending under ``key`` ended at ``at``, before its
        planned end (a stream the client closed), having used ``used`` output tokens: the
        API adjusts the estimate "at the end of the request", so it is given back now."""
        with self._lock:
            state = self._models.get(model_id(model))
            refunds = state.refunds if state is not None else []
            for position, (due, sequence, _) in enumerate(refunds):
                if sequence == key and at < due:
                    refunds[position] = (at, sequence, float(estimated - used))
                    heapq.heapify(refunds)
                    return

    def report(self, model: str, now: float, origin: datetime) -> dict[str, RateLimit]:
        """What ``model``'s limited kinds have left at ``now``, as the headers report it:
        requests whole, tokens rounded to the nearest thousand (never above the limit),
        reset when the bucket is full again (to the next whole second); ``tokens`` is
        input and output together, as recorded (its reset the earlier one)."""
        with self._lock:
            state = self._model(model_id(model), now)
            found = {}
            for kind, bucket in state.buckets.items():
                remaining = max(0, math.floor(bucket.level + _SLACK))
                if kind != REQUESTS:
                    remaining = min(bucket.capacity, _nearest_thousand(remaining))
                full = math.ceil(now + bucket.until_full() - _SLACK)
                found[kind] = RateLimit(
                    bucket.capacity, remaining, origin + timedelta(seconds=full)
                )
        if INPUT in found and OUTPUT in found:
            found["tokens"] = RateLimit(
                found[INPUT].limit + found[OUTPUT].limit,
                found[INPUT].remaining + found[OUTPUT].remaining,
                min(found[INPUT].reset, found[OUTPUT].reset),
            )
        return found

    def clear(self) -> None:
        """Every bucket full again, nothing pending."""
        with self._lock:
            self._models.clear()


def _nearest_thousand(value: int) -> int:
    return (value + 500) // 1000 * 1000
