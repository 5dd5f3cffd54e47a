"""Latency models: seeded distributions of modeled seconds, and the parts of an LLM call."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

DEFAULT_SEED = 0


@runtime_checkable
class LatencyModel(Protocol):
    """A source of latencies in seconds; ``sample()`` draws the next one."""

    def sample(self) -> float: ...


def _check_number(name: str, value: float, *, minimum: float = 0.0, strict: bool = False) -> float:
    """Return ``value`` as a float, or raise ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    ok = value > minimum if strict else value >= minimum
    if math.isnan(value) or math.isinf(value) or not ok:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return seed


class Fixed:
    """The same latency every time.

    >>> Fixed(0.3).sample()
    0.3
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = _check_number("seconds", seconds)

    def sample(self) -> float:
        return self.seconds

    def __repr__(self) -> str:
        return f"Fixed({self.seconds!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fixed) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash((Fixed, self.seconds))


class _Seeded:
    """Base of the random models: one private ``random.Random`` per model."""

    def __init__(self, seed: int) -> None:
        self.seed = _check_seed(seed)
        self._rng = random.Random(seed)

    def reset(self) -> None:
        """Start the sequence again from its random seed."""
        self._rng = random.Random(self.seed)

    def _parameters(self) -> dict[str, object]:
        return {name: value for name, value in vars(self).items() if not name.startswith("_")}

    def __eq__(self, other: object) -> bool:
        """Same distribution and random seed (where in its sequence each one is does not count)."""
        return type(other) is type(self) and other._parameters() == self._parameters()

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self._parameters().items()))))


class Uniform(_Seeded):
    """Uniformly distributed latency in ``[low, high]``.

    >>> a, b = Uniform(0.1, 0.2, seed=7), Uniform(0.1, 0.2, seed=7)
    >>> [a.sample() for _ in range(3)] == [b.sample() for _ in range(3)]
    True
    """

    def __init__(self, low: float, high: float, *, seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed)
        self.low = _check_number("low", low)
        self.high = _check_number("high", high)
        if self.high < self.low:
            raise ValueError(f"high must be >= low ({self.low!r}), got {self.high!r}")

    def sample(self) -> float:
        return self._rng.uniform(self.low, self.high)

    def __repr__(self) -> str:
        return f"Uniform({self.low!r}, {self.high!r}, seed={self.seed!r})"


class Normal(_Seeded):
    """Normally distributed latency, truncated at ``minimum`` (latency is never negative)."""

    def __init__(
        self, mean: float, stddev: float, *, minimum: float = 0.0, seed: int = DEFAULT_SEED
    ) -> None:
        super().__init__(seed)
        self.mean = _check_number("mean", mean)
        self.stddev = _check_number("stddev", stddev)
        self.minimum = _check_number("minimum", minimum)
        if self.minimum > self.mean:
            raise ValueError(f"minimum must be <= mean ({self.mean!r}), got {self.minimum!r}")

    def sample(self) -> float:
        return max(self.minimum, self._rng.gauss(self.mean, self.stddev))

    def __repr__(self) -> str:
        return (
            f"Normal({self.mean!r}, {self.stddev!r}, minimum={self.minimum!r}, seed={self.seed!r})"
        )


class LogNormal(_Seeded):
    """Log-normal latency, the usual shape of network and LLM latencies (a long right tail).

    Parameterised by its median and the standard deviation ``sigma`` of the
    underlying normal distribution; ``LogNormal(1.0, 0.5)`` has median 1 s and a p95
    of about 2.3 s.
    """

    def __init__(self, median: float, sigma: float, *, seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed)
        self.median = _check_number("median", median, strict=True)
        self.sigma = _check_number("sigma", sigma)

    def sample(self) -> float:
        return self._rng.lognormvariate(math.log(self.median), self.sigma)

    def __repr__(self) -> str:
        return f"LogNormal({self.median!r}, {self.sigma!r}, seed={self.seed!r})"


class Replay:
    """Replays recorded latencies in order; ``cycle=True`` starts over at the end.

    >>> model = Replay([0.1, 0.2])
    >>> [model.sample(), model.sample()]
    [0.1, 0.2]
    """

    def __init__(self, latencies: Iterable[float], *, cycle: bool = False) -> None:
        self.latencies = tuple(
            _check_number(f"latencies[{index}]", value) for index, value in enumerate(latencies)
        )
        if not self.latencies:
            raise ValueError("latencies must hold at least one value, got an empty sequence")
        self.cycle = cycle
        self._position = 0

    def sample(self) -> float:
        if self._position >= len(self.latencies):
            if not self.cycle:
                raise ValueError(
                    f"Replay ran out of recorded latencies after {len(self.latencies)} samples; "
                    "record more or pass cycle=True"
                )
            self._position = 0
        value = self.latencies[self._position]
        self._position += 1
        return value

    def reset(self) -> None:
        """Start the replay again from the first latency."""
        self._position = 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Replay) and (other.latencies, other.cycle) == (
            self.latencies,
            self.cycle,
        )

    def __hash__(self) -> int:
        return hash((Replay, self.latencies, self.cycle))

    def __iter__(self) -> Iterator[float]:
        return iter(self.latencies)

    def __repr__(self) -> str:
        return f"Replay({list(self.latencies)!r}, cycle={self.cycle!r})"


def as_model(value: LatencyModel | float, *, name: str) -> LatencyModel:
    """Accept a model, or a number of seconds meaning ``Fixed(seconds)``."""
    if isinstance(value, LatencyModel):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Fixed(_check_number(name, value))
    raise TypeError(f"{name} must be a LatencyModel or a number of seconds, got {value!r}")


class LLMLatency:
    """The parts of an LLM call's latency: connection set-up, time to first token, and
    time per output token after the first.

    A reply of ``n`` tokens completes ``connect + ttft + (n - 1) * per_token`` after
    it was sent; a streamed reply delivers its first token at ``connect + ttft``.

    >>> latency = LLMLatency(ttft=0.5, per_token=0.02)
    >>> latency.total(100)
    2.48
    """

    def __init__(
        self,
        *,
        ttft: LatencyModel | float = 0.0,
        per_token: LatencyModel | float = 0.0,
        connect: LatencyModel | float = 0.0,
    ) -> None:
        self.connect = as_model(connect, name="connect")
        self.ttft = as_model(ttft, name="ttft")
        self.per_token = as_model(per_token, name="per_token")

    def plan(self, tokens: int) -> LatencyPlan:
        """Draw the latencies of one call that outputs ``tokens`` tokens.

        Every draw is quantised to whole microseconds, the resolution of virtual time,
        so that sync and async paths, and the plan's total, agree to the microsecond."""
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ValueError(f"tokens must be an int >= 0, got {tokens!r}")
        gaps = tuple(to_microseconds(self.per_token.sample()) for _ in range(max(tokens - 1, 0)))
        return LatencyPlan(
            connect=to_microseconds(self.connect.sample()),
            ttft=to_microseconds(self.ttft.sample()),
            gaps=gaps,
        )

    def total(self, tokens: int) -> float:
        """The modeled end-to-end time of a call (draws from the models)."""
        return self.plan(tokens).total

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LLMLatency) and (
            (other.connect, other.ttft, other.per_token)
            == (self.connect, self.ttft, self.per_token)
        )

    __hash__ = None  # type: ignore[assignment]  # holds models that may be unhashable

    def __repr__(self) -> str:
        return (
            f"LLMLatency(connect={self.connect!r}, ttft={self.ttft!r}, "
            f"per_token={self.per_token!r})"
        )


class LatencyPlan:
    """The latencies drawn for one call, in seconds."""

    __slots__ = ("connect", "gaps", "ttft")

    def __init__(self, *, connect: float, ttft: float, gaps: tuple[float, ...]) -> None:
        self.connect = connect
        self.ttft = ttft
        self.gaps = gaps

    @property
    def first_token(self) -> float:
        """Seconds from sending to the first token."""
        return (round(self.connect * 1e6) + round(self.ttft * 1e6)) / 1e6

    @property
    def total(self) -> float:
        """Seconds from sending to the last token (exact to the microsecond)."""
        parts = (self.connect, self.ttft, *self.gaps)
        return sum(round(part * 1e6) for part in parts) / 1e6

    def __repr__(self) -> str:
        return f"LatencyPlan(connect={self.connect!r}, ttft={self.ttft!r}, gaps={len(self.gaps)})"


def to_microseconds(seconds: float) -> float:
    return round(seconds * 1e6) / 1e6


def as_llm_latency(value: LLMLatency | LatencyModel | float) -> LLMLatency:
    """Accept an LLMLatency, or a model/number for the whole call (as time to first token)."""
    if isinstance(value, LLMLatency):
        return value
    return LLMLatency(ttft=as_model(value, name="latency"))
