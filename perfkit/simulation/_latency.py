"""Latency models: seeded distributions of modeled seconds, and the parts of an LLM call."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

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
    """The parts of an LLM call's latency, each a :class:`LatencyModel` or a number of
    seconds (:class:`Fixed`).

    ``connect`` is the time to the response headers. The first token follows after
    ``queue`` (waiting for a server), ``ttft`` (the base: what any request takes) and
    the prompt's processing: ``prefill_per_token`` seconds for each prefilled input token
    (uncached input and cache writes) and ``cache_read_per_token`` seconds for each token
    read from the prompt cache. Each further output token takes ``per_token``. The two
    per-token input rates are drawn once per request.

    A reply of ``n`` tokens to a prompt of ``i`` prefilled tokens completes
    ``connect + queue + ttft + i * prefill_per_token + (n - 1) * per_token`` after it was
    sent; a streamed reply delivers its first token at ``connect`` plus the rest but the
    decode.

    >>> latency = LLMLatency(ttft=0.5, per_token=0.02)
    >>> latency.total(100)
    2.48
    >>> LLMLatency(ttft=0.2, prefill_per_token=0.0001).plan(1, input_tokens=10_000).ttft
    1.2
    """

    def __init__(
        self,
        *,
        ttft: LatencyModel | float = 0.0,
        per_token: LatencyModel | float = 0.0,
        connect: LatencyModel | float = 0.0,
        queue: LatencyModel | float = 0.0,
        prefill_per_token: LatencyModel | float = 0.0,
        cache_read_per_token: LatencyModel | float = 0.0,
    ) -> None:
        self.connect = as_model(connect, name="connect")
        self.ttft = as_model(ttft, name="ttft")
        self.per_token = as_model(per_token, name="per_token")
        self.queue = as_model(queue, name="queue")
        self.prefill_per_token = as_model(prefill_per_token, name="prefill_per_token")
        self.cache_read_per_token = as_model(cache_read_per_token, name="cache_read_per_token")

    @classmethod
    def from_profile(
        cls, profile: object, *, model: str | None = None, seed: int = DEFAULT_SEED
    ) -> LLMLatency:
        """The latency a fitted profile (the file ``perfkit calibrate`` writes, or its
        parsed content) describes for ``model`` (the only one when None), its random
        parts seeded from ``seed``."""
        from perfkit.simulation._profile import latency_from_profile

        return latency_from_profile(profile, model=model, seed=seed)

    @classmethod
    def typical(cls, model: str = "claude-sonnet-4-5", *, seed: int = DEFAULT_SEED) -> LLMLatency:
        """The latency of ``model`` (a preset's name, or a dated id that starts with one) as
        public measurements describe it, each random part seeded from ``seed`` (the draws
        are independent of each other, and the same on every run). The presets, their
        numbers and their sources: :data:`TYPICAL_MODELS` and docs/latency-model.md.

        >>> latency = LLMLatency.typical("claude-sonnet-4-5-20250929")
        >>> latency.prefill_per_token, latency.queue
        (LogNormal(0.00011, 0.2, seed=...), Fixed(0.0))
        """
        if not isinstance(model, str):
            raise TypeError(f"model must be a str, got {model!r}")
        preset = max((name for name in TYPICAL_MODELS if model.startswith(name)), default=None)
        if preset is None:
            raise ValueError(
                f"model must be one of the presets {', '.join(TYPICAL_MODELS)} (or a dated id "
                f"starting with one), got {model!r}"
            )
        profile = {"perfkit_latency_profile": 1, "models": {preset: TYPICAL_MODELS[preset]}}
        return cls.from_profile(profile, model=preset, seed=seed)

    def plan(self, tokens: int, *, input_tokens: int = 0, cached_tokens: int = 0) -> LatencyPlan:
        """Draw the latencies of one call that outputs ``tokens`` tokens after prefilling
        ``input_tokens`` input tokens and reading ``cached_tokens`` from the prompt cache.

        Every draw is quantised to whole microseconds, the resolution of virtual time,
        so that sync and async paths, and the plan's total, agree to the microsecond.
        The models are drawn in the order connect, queue, ttft, prefill, cache read, then
        one ``per_token`` per gap."""
        tokens = _check_tokens("tokens", tokens, MAX_OUTPUT_TOKENS)
        input_tokens = _check_tokens("input_tokens", input_tokens, MAX_INPUT_TOKENS)
        cached_tokens = _check_tokens("cached_tokens", cached_tokens, MAX_INPUT_TOKENS)
        connect = _draw(self.connect, "connect")
        queue = _draw(self.queue, "queue")
        base = _draw(self.ttft, "ttft")
        prefill = _draw(self.prefill_per_token, "prefill_per_token", input_tokens)
        cache_read = _draw(self.cache_read_per_token, "cache_read_per_token", cached_tokens)
        gaps = _draw_gaps(self.per_token, max(tokens - 1, 0))
        return LatencyPlan(
            connect=connect,
            ttft=_sum_microseconds((queue, base, prefill, cache_read)),
            gaps=gaps,
            queue=queue,
            prefill=prefill,
            cache_read=cache_read,
        )

    def total(self, tokens: int, *, input_tokens: int = 0, cached_tokens: int = 0) -> float:
        """The modeled end-to-end time of a call (draws from the models)."""
        return self.plan(tokens, input_tokens=input_tokens, cached_tokens=cached_tokens).total

    def _parts(self) -> tuple[tuple[str, LatencyModel], ...]:
        return (
            ("connect", self.connect),
            ("ttft", self.ttft),
            ("per_token", self.per_token),
            ("queue", self.queue),
            ("prefill_per_token", self.prefill_per_token),
            ("cache_read_per_token", self.cache_read_per_token),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LLMLatency) and other._parts() == self._parts()

    __hash__ = None  # type: ignore[assignment]  # holds models that may be unhashable

    def __repr__(self) -> str:
        # The request-dependent parts are shown only when set: a plain call reads as before.
        shown = [
            f"{name}={model!r}"
            for index, (name, model) in enumerate(self._parts())
            if index < 3 or model != _ZERO
        ]
        return f"LLMLatency({', '.join(shown)})"


_ZERO = Fixed(0.0)

# --- typical latencies, from public measurements ----------------------------------------------
#
# Prefill and cache read, per token: Anthropic's prompt-caching announcement
# (anthropic.com/news/prompt-caching, August 2024, Claude 3.5 Sonnet) gives the time to first
# token of a 100,000-token prompt as 11.5 s uncached and 2.4 s cached, and of a 10,000-token
# prompt as 1.6 s and 1.1 s. The difference of the two sizes removes what does not grow with
# the prompt: prefill (11.5 - 1.6) / 90,000 = 0.00011 s per token (9,100 tokens/s), cache read
# (2.4 - 1.1) / 90,000 = 0.00001444 s per token (69,000 tokens/s). Assumed for every preset:
# no per-model figure is published.
_PREFILL_PER_TOKEN = 0.00011
_CACHE_READ_PER_TOKEN = 0.00001444
# Artificial Analysis measures the time to first token with a prompt of about 1,000 input
# tokens (artificialanalysis.ai/methodology/performance-benchmarking: "1k input token
# workload ... default benchmark on our website"; figures are medians), so a preset's base is
# that median less the prefill of 1,000 tokens.
_AA_PROMPT_TOKENS = 1_000
# Spreads (log-normal sigma): assumptions, no public source gives them. 0.35 for the base
# (the simulated assistant's default), 0.2 for the per-request prefill and cache-read rates
# and for each token's gap.
_BASE_SIGMA, _RATE_SIGMA, _GAP_SIGMA = 0.35, 0.2, 0.2


def _typical(ttft: float, tokens_per_second: float) -> dict[str, Any]:
    """A preset as a latency profile's model entry, from a measured median time to first
    token (at about 1,000 input tokens) and output speed. A log-normal gap has the mean
    ``median * exp(sigma**2 / 2)``: the median is set so that the mean gap is
    ``1 / tokens_per_second``, as the output speed is measured."""

    def lognormal(median: float, sigma: float) -> dict[str, Any]:
        return {"lognormal": {"median": round(median, 9), "sigma": sigma}}

    gap = 1 / tokens_per_second / math.exp(_GAP_SIGMA**2 / 2)
    return {
        "connect": {"fixed": 0.0},
        "queue": {"fixed": 0.0},
        "ttft": lognormal(ttft - _AA_PROMPT_TOKENS * _PREFILL_PER_TOKEN, _BASE_SIGMA),
        "prefill_per_token": lognormal(_PREFILL_PER_TOKEN, _RATE_SIGMA),
        "cache_read_per_token": lognormal(_CACHE_READ_PER_TOKEN, _RATE_SIGMA),
        "per_token": lognormal(gap, _GAP_SIGMA),
    }


TYPICAL_MODELS: dict[str, dict[str, Any]] = {
    # Artificial Analysis, quoted by lattice.uptownhr.com/claude-opus-4-5/speed-analysis
    # (November 2025): Sonnet 4.5 "Output Speed 63 tokens/second", "TTFT 1.80 seconds".
    "claude-sonnet-4-5": _typical(1.80, 63.0),
    # The same page: Opus 4.1 "Output Speed 45.0 tokens/second", "TTFT 2.67 seconds".
    "claude-opus-4-1": _typical(2.67, 45.0),
    # lmspeed.net/compare/model/claude-haiku-4-5-vs-claude-sonnet-4: Haiku 4.5 "Time to first
    # answer token 0.90 s" and "112 tok/s" (its providers' speed aggregate).
    "claude-haiku-4-5": _typical(0.90, 112.0),
    # artificialanalysis.ai/models/claude-35-sonnet/providers, Anthropic's endpoint: "(0.81s)"
    # latency and "(64 t/s)" (another snapshot of the page: 0.80 s, 95 t/s; the slower kept).
    # The model the prefill and cache-read figures were measured on.
    "claude-3-5-sonnet": _typical(0.81, 64.0),
}
"""The presets of :meth:`LLMLatency.typical`, each a latency profile's model entry."""

MAX_INPUT_TOKENS = 10**9
"""The most input tokens one call may count: far beyond any model's context window."""

MAX_SECONDS = 1e9
"""The longest part of a call a plan holds (32 years): a longer one is a mistake, and past
1e302 seconds it would not survive the rounding to microseconds."""

MAX_OUTPUT_TOKENS = 10**7
"""The most output tokens one call may plan (one gap each): far beyond any model's limit."""


def _check_tokens(name: str, value: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be an int from 0 to {maximum:,}, got {value!r}")
    return value


def _draw(model: LatencyModel, name: str, times: int = 1) -> float:
    """One draw of ``model`` (times ``times``), checked and quantised to microseconds: a
    model of the user's that returns a negative, infinite or non-number latency is named."""
    try:
        value = model.sample()
    except OverflowError:  # a log-normal of a huge sigma overflows in exp()
        raise ValueError(
            f"{name}: {model!r} drew a latency too large to represent, over the "
            f"{MAX_SECONDS:.0e} seconds a modeled wait may last"
        ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: {model!r} drew {value!r}, not a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: {model!r} drew {value!r}, not a finite number of seconds >= 0")
    seconds = value * times
    if seconds > MAX_SECONDS:
        per = f" x {times:,} tokens" if times != 1 else ""
        raise ValueError(
            f"{name}: {model!r} drew {value!r}{per}, over the {MAX_SECONDS:.0e} seconds "
            "a modeled wait may last"
        )
    return to_microseconds(seconds)


def _draw_gaps(model: LatencyModel, count: int) -> tuple[float, ...]:
    if type(model) is Fixed:  # one draw is every draw: no per-token loop
        return (_draw(model, "per_token"),) * count if count else ()
    return tuple(_draw(model, "per_token") for _ in range(count))


def _sum_microseconds(parts: Iterable[float]) -> float:
    return sum(round(part * 1e6) for part in parts) / 1e6


class LatencyPlan:
    """The latencies drawn for one call, in seconds.

    ``ttft`` is all the time from the response headers to the first token; its parts are
    ``queue``, ``prefill`` and ``cache_read`` and the rest, :attr:`base`."""

    __slots__ = ("cache_read", "connect", "gaps", "prefill", "queue", "ttft")

    def __init__(
        self,
        *,
        connect: float,
        ttft: float,
        gaps: tuple[float, ...],
        queue: float = 0.0,
        prefill: float = 0.0,
        cache_read: float = 0.0,
    ) -> None:
        self.connect = connect
        self.ttft = ttft
        self.gaps = gaps
        self.queue = queue
        self.prefill = prefill
        self.cache_read = cache_read
        if round(ttft * 1e6) < round((queue + prefill + cache_read) * 1e6):
            raise ValueError(
                f"ttft must be >= queue + prefill + cache_read "
                f"({queue!r} + {prefill!r} + {cache_read!r}), got {ttft!r}"
            )

    @property
    def base(self) -> float:
        """The time to first token that is neither queueing nor prompt processing."""
        parts = (self.queue, self.prefill, self.cache_read)
        return (round(self.ttft * 1e6) - sum(round(part * 1e6) for part in parts)) / 1e6

    @property
    def first_token(self) -> float:
        """Seconds from sending to the first token."""
        return _sum_microseconds((self.connect, self.ttft))

    @property
    def total(self) -> float:
        """Seconds from sending to the last token (exact to the microsecond)."""
        return _sum_microseconds((self.connect, self.ttft, *self.gaps))

    def __repr__(self) -> str:
        breakdown = "".join(
            f", {name}={value!r}"
            for name, value in (
                ("queue", self.queue),
                ("prefill", self.prefill),
                ("cache_read", self.cache_read),
            )
            if value
        )
        return (
            f"LatencyPlan(connect={self.connect!r}, ttft={self.ttft!r}{breakdown}, "
            f"gaps={len(self.gaps)})"
        )


def to_microseconds(seconds: float) -> float:
    return round(seconds * 1e6) / 1e6


def as_llm_latency(value: LLMLatency | LatencyModel | float) -> LLMLatency:
    """Accept an LLMLatency, or a model/number for the whole call (as time to first token)."""
    if isinstance(value, LLMLatency):
        return value
    return LLMLatency(ttft=as_model(value, name="latency"))
