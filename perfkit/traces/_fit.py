"""Fitting the simulator's latency model to recorded traces, and how well the fit holds.

Per model, from the requests that succeeded on their first attempt (status 200, no
error, no retry: a retried attempt's time says more about the retry than the model):

- ``connect`` is the time to the response headers of the streamed requests.
- The first token's time after the headers (``ttft_s - headers_s``) is a robust linear
  fit (least squares, then Huber-weighted) on the prefilled tokens (uncached input and
  cache writes) and the cache-read tokens: the slopes are ``prefill_per_token`` and
  ``cache_read_per_token``; what is left of each request (its base) is ``ttft``,
  log-normal when nearly all of it is positive, else normal. ``queue`` cannot be told
  from the base by a client: the fitted ``ttft`` includes it and ``queue`` is zero.
- ``per_token`` comes from each request's decode time, the sum of its gaps between
  content deltas (or ``complete - ttft`` without gaps), over its ``output - 1`` tokens:
  a log-normal with the observed mean per token and the spread between requests.
- Without streamed requests, only the complete time is known: it is fitted on the
  prefilled, cache-read and output tokens, and ``connect`` is folded into ``ttft``.

The fit is then checked by simulating the fitted model on the same requests (same token
counts, seeded) and comparing p50/p95/p99 and a two-sample Kolmogorov-Smirnov statistic
of the time to first token and to the complete reply with what was observed.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from perfkit.simulation import (
    Fixed,
    LatencyModel,
    LLMLatency,
    LogNormal,
    Normal,
    latency_from_profile,
    latency_to_profile,
)

MIN_TRACES = 20
"""The fewest usable requests a model is fitted from: below it, percentiles and a
regression on two token counts mean little."""
QUANTILES = (0.5, 0.95, 0.99)
TOLERANCE = 0.10
"""How far a fitted p50 or p95 may be from the observed one for the fit to hold."""
KS_COEFFICIENT = 1.358
"""c(0.05) of the two-sample Kolmogorov-Smirnov test: the statistic's critical value at
the 5% level is c * sqrt((n + m) / (n * m)) (Smirnov's asymptotic distribution)."""
HUBER_K = 1.345
"""Huber's tuning constant, in robust standard deviations (95% efficiency on normal noise)."""
SPREAD_OF_NORMAL = 2 * 1.2815515655446004
"""The distance from the 10th to the 90th percentile of a standard normal distribution:
a log-normal's sigma from those percentiles of the logarithms, robust to the 10% of
outliers at either end (a stalled request, a retried connection)."""
SIMULATED_REQUESTS = 2_000
MAX_REPLICAS = 10
SIMULATED_GAPS = 2_000_000
"""The goodness check simulates each request up to MAX_REPLICAS times, until about
SIMULATED_REQUESTS are simulated, and at most about SIMULATED_GAPS output tokens (about a
second of the simulator's time)."""
MAX_TOKENS = 10_000_000
"""Token counts above it are not a real request's (the largest context windows hold a
million tokens): such a line is left out of the fit."""
MAX_SECONDS = 86_400
"""Times above it (a day) are not a request's (128,000 output tokens at 60 tokens/s take
about 35 minutes): such a line, often unix times written where seconds from sending belong,
is left out of the fit, where its fitted model drew waits too long to simulate."""
PROFILE_KEY = "perfkit_latency_profile"
PROFILE_VERSION = 1


class TraceLike(Protocol):
    """What the fit reads of a trace (:class:`perfkit.traces.Trace` has it)."""

    @property
    def model(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def stream(self) -> bool: ...
    @property
    def retries(self) -> int: ...
    @property
    def error(self) -> str | None: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def cache_creation_input_tokens(self) -> int: ...
    @property
    def cache_read_input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def headers_s(self) -> float: ...
    @property
    def ttft_s(self) -> float | None: ...
    @property
    def complete_s(self) -> float: ...
    @property
    def gaps_s(self) -> Sequence[float]: ...


class FitError(ValueError):
    """The traces cannot be fitted (none usable, too few, no such model)."""


@dataclass(frozen=True)
class QuantityFit:
    """One quantity (time to first token or to the complete reply): observed and fitted."""

    name: str
    observed: tuple[float, ...]
    fitted: tuple[float, ...]
    ks: float
    ks_critical: float

    @property
    def errors(self) -> tuple[float, ...]:
        """Each fitted quantile's relative error against the observed one."""
        return tuple(_relative(f, o) for f, o in zip(self.fitted, self.observed, strict=True))

    def problems(self) -> list[str]:
        """Why this quantity's fit does not hold (empty when it does)."""
        found = [
            f"{self.name} p{_label(q)} {error:+.1%}"
            for q, error in zip(QUANTILES[:2], self.errors, strict=False)
            if not abs(error) <= TOLERANCE
        ]
        if not self.ks <= self.ks_critical:
            found.append(f"{self.name} KS {self.ks:.3f} > {self.ks_critical:.3f}")
        return found

    def as_dict(self) -> dict[str, Any]:
        """As a profile's ``fit`` section holds it."""
        return {
            "observed": _by_quantile(self.observed),
            "fitted": _by_quantile(self.fitted),
            "ks": self.ks,
            "ks_critical_5pct": self.ks_critical,
        }


@dataclass(frozen=True)
class ModelFit:
    """The fitted latency of one model, and how well it holds."""

    model: str
    latency: LLMLatency
    requests: int
    """Requests the parameters were fitted from."""
    excluded: Mapping[str, int]
    """Requests left out, by reason."""
    not_fitted: Mapping[str, str]
    """Parameters the traces could not fit (left out of the profile, so zero), and why."""
    notes: tuple[str, ...]
    quantities: tuple[QuantityFit, ...]
    entry: Mapping[str, Any] = field(repr=False)
    """The parameters as a profile writes them."""

    @property
    def holds(self) -> bool:
        """Whether every p50 and p95 is within TOLERANCE and every KS below its critical value."""
        return not self.problems()

    def problems(self) -> list[str]:
        """What does not hold, one short phrase each (``ttft p95 +14.2%``)."""
        return [problem for quantity in self.quantities for problem in quantity.problems()]

    def verdict(self) -> str:
        """One sentence: whether the fit holds, and if not, what is off."""
        if self.holds:
            return (
                f"the fit holds: p50 and p95 within {TOLERANCE:.0%} of the observed, KS below "
                "its 5% critical value"
            )
        return "the fit does not hold: " + "; ".join(self.problems())

    def profile_entry(self) -> dict[str, Any]:
        """The model's entry in a profile: its parameters and, under ``fit``, the quality."""
        return {
            **self.entry,
            "fit": {
                "requests": self.requests,
                "excluded": dict(self.excluded),
                "not_fitted": dict(self.not_fitted),
                "notes": list(self.notes),
                **{quantity.name: quantity.as_dict() for quantity in self.quantities},
                "holds": self.holds,
                "verdict": self.verdict(),
            },
        }

    def lines(self) -> list[str]:
        """The fit as a terminal shows it: parameters, fit table, verdict."""
        lines = [f"model {self.model}: fitted from {self.requests:,} requests"]
        if self.excluded:
            reasons = ", ".join(f"{reason}: {count:,}" for reason, count in self.excluded.items())
            lines.append(f"  excluded: {reasons}")
        for parameter, spec in self.entry.items():
            lines.append(f"  {parameter:<21} {_describe(spec)}")
        for parameter, reason in self.not_fitted.items():
            lines.append(f"  {parameter:<21} not fitted: {reason}")
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.append(
            f"  {'':<9}{'p50 obs':>10}{'p50 fit':>10}{'p95 obs':>10}{'p95 fit':>10}"
            f"{'p99 obs':>10}{'p99 fit':>10}{'KS':>8}{'KS 5%':>8}"
        )
        for quantity in self.quantities:
            pairs = "".join(
                f"{_seconds(observed):>10}{_seconds(fitted):>10}"
                for observed, fitted in zip(quantity.observed, quantity.fitted, strict=True)
            )
            lines.append(
                f"  {quantity.name:<9}{pairs}{quantity.ks:>8.3f}{quantity.ks_critical:>8.3f}"
            )
        lines.append(f"  verdict: {self.verdict()}")
        return lines


@dataclass(frozen=True)
class LatencyFit:
    """Every model's fit, and the models the traces had too little of."""

    fits: tuple[ModelFit, ...]
    skipped: Mapping[str, str]
    traces: int

    def profile(self, *, source: str, fitted_at: str) -> dict[str, Any]:
        """The latency profile (JSON-ready) that ``LLMLatency.from_profile`` reads."""
        return {
            PROFILE_KEY: PROFILE_VERSION,
            "models": {fit.model: fit.profile_entry() for fit in self.fits},
            "source": {"traces": source, "requests": self.traces, "fitted_at": fitted_at},
        }


def fit_traces(
    traces: Iterable[TraceLike],
    *,
    model: str | None = None,
    seed: int = 0,
    min_traces: int = MIN_TRACES,
) -> LatencyFit:
    """Fit every model in ``traces`` (or only ``model``); a model with fewer than
    ``min_traces`` usable requests is skipped, and FitError says when none is fitted."""
    if isinstance(min_traces, bool) or not isinstance(min_traces, int) or min_traces < 2:
        raise ValueError(f"min_traces must be an int >= 2, got {min_traces!r}")
    by_model: dict[str, list[TraceLike]] = {}
    count = 0
    for trace in traces:
        count += 1
        by_model.setdefault(trace.model, []).append(trace)
    if not by_model:
        raise FitError("no traces to fit")
    if model is not None:
        if model not in by_model:
            raise FitError(f"no traces of model {model!r}; the traces have: {_names(by_model)}")
        by_model = {model: by_model[model]}
    fits, skipped = [], {}
    for name in sorted(by_model):
        try:
            fits.append(fit_model(by_model[name], model=name, seed=seed, min_traces=min_traces))
        except FitError as error:
            if model is not None or len(by_model) == 1:
                raise
            skipped[name] = str(error)
    if not fits:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
        raise FitError(f"no model could be fitted ({reasons})")
    return LatencyFit(tuple(fits), skipped, count)


def fit_model(
    traces: Sequence[TraceLike], *, model: str, seed: int = 0, min_traces: int = MIN_TRACES
) -> ModelFit:
    """Fit one model's latency from its traces (see the module's docstring)."""
    usable, excluded = _usable(traces)
    streamed = [trace for trace in usable if trace.stream and trace.ttft_s is not None]
    if len(streamed) >= min_traces:
        return _fit_streamed(model, usable, streamed, excluded, seed)
    if len(usable) >= min_traces:
        return _fit_complete_only(model, usable, excluded, seed, streamed=len(streamed))
    raise FitError(
        f"model {model!r}: only {len(usable)} usable request(s) of {len(traces)} "
        f"(at least {min_traces} are needed){_excluded_text(excluded)}"
    )


def _usable(traces: Sequence[TraceLike]) -> tuple[list[TraceLike], dict[str, int]]:
    excluded: Counter[str] = Counter()
    usable = []
    for trace in traces:
        reason = _exclusion(trace)
        if reason:
            excluded[reason] += 1
        else:
            usable.append(trace)
    return usable, dict(sorted(excluded.items()))


def _exclusion(trace: TraceLike) -> str:
    """Why a trace is left out of the fit ("" when it is not)."""
    if trace.status != 200:
        return f"status {trace.status}"
    if trace.error is not None:
        return "error"
    if trace.retries:
        return "retried attempt"
    counts = (
        trace.input_tokens,
        trace.cache_creation_input_tokens,
        trace.cache_read_input_tokens,
        trace.output_tokens,
    )
    if max(counts) > MAX_TOKENS:
        return f"token counts above {MAX_TOKENS:,}"
    times = [trace.headers_s, trace.complete_s, *(() if trace.ttft_s is None else (trace.ttft_s,))]
    if not all(math.isfinite(time) and time >= 0 for time in times):
        return "times not finite numbers >= 0"
    if not all(math.isfinite(gap) and gap >= 0 for gap in trace.gaps_s):
        return "gaps not finite numbers >= 0"
    if max(times) > MAX_SECONDS:
        return f"times above {MAX_SECONDS:,} s (a day)"
    first = trace.headers_s if trace.ttft_s is None else trace.ttft_s
    if not trace.headers_s <= first <= trace.complete_s:
        return "times out of order (headers, first token, complete)"
    return ""


def _fit_streamed(
    model: str,
    usable: list[TraceLike],
    streamed: list[TraceLike],
    excluded: dict[str, int],
    seed: int,
) -> ModelFit:
    notes = [
        "queue cannot be told from the base on the client's side: ttft includes it",
    ]
    not_fitted: dict[str, str] = {}
    if len(streamed) < len(usable):
        notes.append(
            f"{len(usable) - len(streamed)} request(s) not streamed or without a token: "
            "used for connect only where streamed"
        )
    connect = _distribution([trace.headers_s for trace in usable if trace.stream])
    first = [trace.ttft_s - trace.headers_s for trace in streamed if trace.ttft_s is not None]
    columns = {
        "prefill_per_token": [_prefilled(trace) for trace in streamed],
        "cache_read_per_token": [float(trace.cache_read_input_tokens) for trace in streamed],
    }
    slopes = _regression(first, columns, not_fitted, notes)
    base = _residuals(first, columns, slopes)
    parameters: dict[str, LatencyModel] = {
        "connect": connect,
        "queue": Fixed(0.0),
        "ttft": _distribution(base),
        **{name: Fixed(slope) for name, slope in slopes.items()},
    }
    per_token = _per_token(streamed, notes)
    if per_token is None:
        not_fitted["per_token"] = "no request had two output tokens or more"
    else:
        parameters["per_token"] = per_token
    return _finish(model, parameters, streamed, excluded, not_fitted, notes, seed, ttft=True)


def _fit_complete_only(
    model: str, usable: list[TraceLike], excluded: dict[str, int], seed: int, *, streamed: int
) -> ModelFit:
    notes = [
        f"only {streamed} streamed request(s) with a first token: fitted from the complete "
        "time alone, so the spread of per_token is unknown (fixed) and ttft holds the rest",
        "queue cannot be told from the base on the client's side: ttft includes it",
    ]
    not_fitted = {
        "connect": "not streamed: a reply's headers come with the whole reply, so connect "
        "is folded into ttft"
    }
    total = [trace.complete_s for trace in usable]
    columns = {
        "prefill_per_token": [_prefilled(trace) for trace in usable],
        "cache_read_per_token": [float(trace.cache_read_input_tokens) for trace in usable],
        "per_token": [float(max(trace.output_tokens - 1, 0)) for trace in usable],
    }
    slopes = _regression(total, columns, not_fitted, notes)
    base = _residuals(total, columns, slopes)
    parameters: dict[str, LatencyModel] = {
        "queue": Fixed(0.0),
        "ttft": _distribution(base),
        **{name: Fixed(slope) for name, slope in slopes.items()},
    }
    return _finish(model, parameters, usable, excluded, not_fitted, notes, seed, ttft=False)


def _finish(
    model: str,
    parameters: dict[str, LatencyModel],
    fitted_on: list[TraceLike],
    excluded: dict[str, int],
    not_fitted: dict[str, str],
    notes: list[str],
    seed: int,
    *,
    ttft: bool,
) -> ModelFit:
    full = latency_to_profile(LLMLatency(**parameters))
    entry = {name: spec for name, spec in full.items() if name in parameters}
    # The latency as a profile gives it back, seeds and all: what the simulator will run.
    # The check draws from one copy; the fit hands out another, at the start of its draws.
    profile = {PROFILE_KEY: PROFILE_VERSION, "models": {model: entry}}
    quantities = _goodness(
        latency_from_profile(profile, model=model, seed=seed), fitted_on, notes, ttft=ttft
    )
    return ModelFit(
        model=model,
        latency=latency_from_profile(profile, model=model, seed=seed),
        requests=len(fitted_on),
        excluded=excluded,
        not_fitted=not_fitted,
        notes=tuple(notes),
        quantities=quantities,
        entry=entry,
    )


def _prefilled(trace: TraceLike) -> float:
    return float(trace.input_tokens + trace.cache_creation_input_tokens)


def _per_token(streamed: list[TraceLike], notes: list[str]) -> LatencyModel | None:
    """``per_token`` from each request's decode time (the sum of its gaps, or ``complete -
    ttft`` without them) over its ``output - 1`` tokens.

    Single gaps are not used as draws: a client reads deliveries that arrived while it was
    busy back to back, so a long gap is followed by near-zero ones (their sum is right,
    their spread is not). The mean is the total decode time over the total tokens; the
    spread is what makes each request's sum of independent draws vary as observed (a
    request of ``t`` tokens deviates from ``mean * t`` by ``sqrt(t)`` times one draw's
    deviation; their spread from their 10th to 90th percentiles, so that a stalled request
    does not widen it). The
    distribution is the log-normal of that mean and spread."""
    pairs: list[tuple[float, float]] = []  # (decode seconds, tokens after the first)
    without_gaps = 0
    for trace in streamed:
        if trace.output_tokens < 2 or trace.ttft_s is None:
            continue
        if trace.gaps_s:
            pairs.append((math.fsum(trace.gaps_s), trace.output_tokens - 1.0))
        else:
            without_gaps += 1
            pairs.append((trace.complete_s - trace.ttft_s, trace.output_tokens - 1.0))
    if not pairs:
        return None
    if without_gaps:
        notes.append(
            f"per_token from (complete - ttft) / (output - 1) for {without_gaps} request(s) "
            "without recorded gaps"
        )
    mean = math.fsum(seconds for seconds, _ in pairs) / math.fsum(tokens for _, tokens in pairs)
    deviations = [(seconds - mean * tokens) / math.sqrt(tokens) for seconds, tokens in pairs]
    ordered = sorted(deviations)
    spread = (_quantile(ordered, 0.9) - _quantile(ordered, 0.1)) / SPREAD_OF_NORMAL
    if mean <= 0:
        return Fixed(0.0)
    if spread <= 0:
        return Fixed(mean)
    sigma = math.sqrt(math.log1p((spread / mean) ** 2))
    return LogNormal(mean * math.exp(-(sigma**2) / 2), sigma)


def _regression(
    y: list[float], columns: dict[str, list[float]], not_fitted: dict[str, str], notes: list[str]
) -> dict[str, float]:
    """The slopes of ``y`` on ``columns`` (a robust linear fit with an intercept).

    A column that does not vary cannot be told from the intercept, and one that moves
    with another cannot be told from it: both are left out (named in ``not_fitted``). A
    negative slope is physically meaningless: it is set to zero (noted) and the others are
    fitted again without it."""
    kept: dict[str, list[float]] = {}
    for name, values in columns.items():
        low, high = min(values), max(values)
        if high == low:
            not_fitted[name] = (
                f"every request had {low:,.0f} {TOKENS[name]}, so its rate cannot be told "
                "from the base: ttft includes it"
            )
            continue
        twin = next((other for other in kept if _collinear(values, kept[other])), None)
        if twin is not None:
            not_fitted[name] = f"its tokens move with {twin}'s, so the two cannot be told apart"
            continue
        kept[name] = values
    zeroed: dict[str, float] = {}
    while True:
        fitted = dict(zip(kept, _huber(y, list(kept.values())), strict=True))
        negative = min(fitted, key=fitted.__getitem__, default=None)
        if negative is None or fitted[negative] >= 0:
            break
        # Zeroing it alone would leave the others' slopes fitted beside it (with tokens
        # that move together, as wrong the other way): they are fitted again without it.
        notes.append(
            f"{negative} fitted negative ({fitted[negative]:.3g} s/token): set to 0, and "
            "the other rates fitted without it"
        )
        zeroed[negative] = 0.0
        del kept[negative]
    slopes = {**fitted, **zeroed}
    return {name: slopes[name] for name in columns if name in slopes}


TOKENS = {
    "prefill_per_token": "prefilled input tokens",
    "cache_read_per_token": "cache-read tokens",
    "per_token": "output tokens after the first",
}


def _collinear(a: list[float], b: list[float]) -> bool:
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    saa = sum((x - mean_a) ** 2 for x in a)
    sbb = sum((x - mean_b) ** 2 for x in b)
    sab = sum((x - mean_a) * (z - mean_b) for x, z in zip(a, b, strict=True))
    return sab * sab >= (1 - 1e-9) * saa * sbb


def _huber(y: list[float], columns: list[list[float]]) -> list[float]:
    """Slopes of a linear fit with an intercept: least squares, then iteratively
    reweighted with Huber's weights so that a few stalled requests do not tilt it."""
    if not columns:
        return []
    weights = [1.0] * len(y)
    slopes = _weighted_least_squares(y, columns, weights)
    for _ in range(50):
        residuals = _centered_residuals(y, columns, slopes)
        scale = 1.4826 * statistics.median(abs(r) for r in residuals)
        if scale <= 0:
            break
        limit = HUBER_K * scale
        weights = [1.0 if abs(r) <= limit else limit / abs(r) for r in residuals]
        updated = _weighted_least_squares(y, columns, weights)
        converged = all(
            abs(new - old) <= 1e-9 * max(abs(old), 1e-12)
            for new, old in zip(updated, slopes, strict=True)
        )
        slopes = updated
        if converged:
            break
    return slopes


def _weighted_least_squares(
    y: list[float], columns: list[list[float]], weights: list[float]
) -> list[float]:
    """Slopes of weighted least squares with an intercept (the columns centered on their
    weighted means, which keeps token counts and seconds well conditioned)."""
    total = sum(weights)
    mean_y = sum(w * v for w, v in zip(weights, y, strict=True)) / total
    means = [sum(w * v for w, v in zip(weights, c, strict=True)) / total for c in columns]
    centered = [[v - m for v in c] for c, m in zip(columns, means, strict=True)]
    dy = [v - mean_y for v in y]
    size = len(columns)
    gram = [
        [sum(w * a * b for w, a, b in zip(weights, centered[i], centered[j], strict=True))
         for j in range(size)]
        for i in range(size)
    ]  # fmt: skip
    right = [sum(w * a * b for w, a, b in zip(weights, centered[i], dy, strict=True))
             for i in range(size)]  # fmt: skip
    return _solve(gram, right)


def _solve(matrix: list[list[float]], right: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the systems here are 3 x 3 at most)."""
    size = len(right)
    rows = [[*row, value] for row, value in zip(matrix, right, strict=True)]
    for column in range(size):
        pivot = max(range(column, size), key=lambda row: abs(rows[row][column]))
        rows[column], rows[pivot] = rows[pivot], rows[column]
        if rows[column][column] == 0:
            return [0.0] * size
        for row in range(column + 1, size):
            factor = rows[row][column] / rows[column][column]
            for index in range(column, size + 1):
                rows[row][index] -= factor * rows[column][index]
    solution = [0.0] * size
    for row in reversed(range(size)):
        known = sum(rows[row][index] * solution[index] for index in range(row + 1, size))
        solution[row] = (rows[row][size] - known) / rows[row][row]
    return solution


def _centered_residuals(
    y: list[float], columns: list[list[float]], slopes: list[float]
) -> list[float]:
    raw = _residuals(y, dict(enumerate(columns)), dict(enumerate(slopes)))
    center = statistics.median(raw)
    return [r - center for r in raw]


def _residuals(
    y: list[float], columns: Mapping[Any, list[float]], slopes: Mapping[Any, float]
) -> list[float]:
    """What is left of each ``y`` once the fitted slopes' share is taken away."""
    left = list(y)
    for name, slope in slopes.items():
        left = [value - slope * x for value, x in zip(left, columns[name], strict=True)]
    return left


def _distribution(samples: list[float]) -> LatencyModel:
    """A distribution of seconds like ``samples``: Fixed when they do not vary; log-normal
    (median, and sigma from the 10th and 90th percentiles of the logarithms: robust to a
    few outliers) when nearly all are positive; else normal (mean and standard deviation)."""
    ordered = sorted(samples)
    if ordered[0] == ordered[-1]:
        return Fixed(max(ordered[0], 0.0))
    low, median, high = (_quantile(ordered, q) for q in (0.1, 0.5, 0.9))
    if _quantile(ordered, 0.01) > 0:
        sigma = (math.log(high) - math.log(low)) / SPREAD_OF_NORMAL
        return LogNormal(median, sigma)
    mean = max(statistics.fmean(ordered), 0.0)
    return Normal(mean, statistics.pstdev(ordered)) if len(ordered) > 1 else Fixed(mean)


def _goodness(
    latency: LLMLatency, traces: list[TraceLike], notes: list[str], *, ttft: bool
) -> tuple[QuantityFit, ...]:
    """Simulate ``latency`` on each request (its token counts; each request several times
    when there are few, so that the fitted percentiles carry little noise of their own)
    and compare with what was observed. Where the replies are so long that simulating
    them all would take seconds, every k-th request is checked (noted)."""
    gaps = sum(max(trace.output_tokens - 1, 0) for trace in traces)
    if gaps > SIMULATED_GAPS:
        stride = math.ceil(gaps / SIMULATED_GAPS)
        traces = traces[::stride]
        notes.append(
            f"the fit was checked on every {stride}th request ({len(traces):,}): their "
            f"replies hold {gaps:,} output tokens, more than {SIMULATED_GAPS:,} to simulate"
        )
        gaps = sum(max(trace.output_tokens - 1, 0) for trace in traces)
    replicas = min(MAX_REPLICAS, math.ceil(SIMULATED_REQUESTS / len(traces)))
    replicas = max(1, min(replicas, SIMULATED_GAPS // max(gaps, 1)))
    plans = [
        latency.plan(
            trace.output_tokens,
            input_tokens=int(_prefilled(trace)),
            cached_tokens=trace.cache_read_input_tokens,
        )
        for _ in range(replicas)
        for trace in traces
    ]
    quantities = []
    if ttft:
        observed = [trace.ttft_s for trace in traces if trace.ttft_s is not None]
        quantities.append(_compare("ttft", observed, [plan.first_token for plan in plans]))
    quantities.append(
        _compare("complete", [trace.complete_s for trace in traces], [p.total for p in plans])
    )
    return tuple(quantities)


def _compare(name: str, observed: list[float], fitted: list[float]) -> QuantityFit:
    observed, fitted = sorted(observed), sorted(fitted)
    n, m = len(observed), len(fitted)
    return QuantityFit(
        name=name,
        observed=tuple(_quantile(observed, q) for q in QUANTILES),
        fitted=tuple(_quantile(fitted, q) for q in QUANTILES),
        ks=ks_statistic(observed, fitted),
        ks_critical=KS_COEFFICIENT * math.sqrt((n + m) / (n * m)),
    )


def ks_statistic(a: Iterable[float], b: Iterable[float]) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest distance between the two
    samples' empirical distribution functions (0: alike, 1: apart)."""
    first, second = sorted(a), sorted(b)
    if not first or not second:
        raise ValueError("the Kolmogorov-Smirnov statistic needs two non-empty samples")
    i = j = 0
    distance = 0.0
    n, m = len(first), len(second)
    while i < n and j < m:
        value = min(first[i], second[j])
        while i < n and first[i] == value:
            i += 1
        while j < m and second[j] == value:
            j += 1
        distance = max(distance, abs(i / n - j / m))
    return distance


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly between ranks."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _relative(fitted: float, observed: float) -> float:
    if observed == 0:
        return 0.0 if fitted == 0 else math.inf
    return fitted / observed - 1


def _by_quantile(values: Sequence[float]) -> dict[str, float]:
    return {f"p{_label(q)}": value for q, value in zip(QUANTILES, values, strict=True)}


def _label(q: float) -> str:
    return f"{q * 100:g}"


def _seconds(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _describe(spec: Mapping[str, Any]) -> str:
    [(kind, fields)] = spec.items()
    if kind == "fixed":
        return f"fixed {float(fields):.6g} s"
    return str(kind) + " " + ", ".join(f"{name} {value:.6g}" for name, value in fields.items())


def _names(by_model: Mapping[str, object]) -> str:
    return ", ".join(sorted(by_model))


def _excluded_text(excluded: Mapping[str, int]) -> str:
    if not excluded:
        return ""
    return "; excluded: " + ", ".join(f"{reason}: {count}" for reason, count in excluded.items())
