"""Tests of perfkit.simulation._latency: seeded latency models and the parts of an LLM call."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable
from typing import Any

import pytest

from perfkit.simulation._latency import (
    Fixed,
    LatencyModel,
    LatencyPlan,
    LLMLatency,
    LogNormal,
    Normal,
    Replay,
    Uniform,
    as_llm_latency,
    as_model,
)

NAN = float("nan")
INF = float("inf")


def draw(model: LatencyModel, count: int) -> list[float]:
    return [model.sample() for _ in range(count)]


# --- validation --------------------------------------------------------------------------

INVALID_VALUES: list[tuple[Callable[[], object], type[Exception], str, str]] = [
    (lambda: Fixed(-0.1), ValueError, "seconds", "-0.1"),
    (lambda: Fixed(NAN), ValueError, "seconds", "nan"),
    (lambda: Fixed(INF), ValueError, "seconds", "inf"),
    (lambda: Fixed(True), TypeError, "seconds", "True"),
    (lambda: Fixed("0.3"), TypeError, "seconds", "'0.3'"),  # type: ignore[arg-type]
    (lambda: Uniform(-1, 1), ValueError, "low", "-1"),
    (lambda: Uniform(0, NAN), ValueError, "high", "nan"),
    (lambda: Uniform(0, INF), ValueError, "high", "inf"),
    (lambda: Uniform(0.2, 0.1), ValueError, "high", "0.1"),
    (lambda: Uniform(False, 1), TypeError, "low", "False"),
    (lambda: Normal(-0.5, 0.1), ValueError, "mean", "-0.5"),
    (lambda: Normal(0.5, -0.1), ValueError, "stddev", "-0.1"),
    (lambda: Normal(0.5, NAN), ValueError, "stddev", "nan"),
    (lambda: Normal(0.5, 0.1, minimum=0.6), ValueError, "minimum", "0.6"),
    (lambda: Normal(0.5, 0.1, minimum=-INF), ValueError, "minimum", "-inf"),
    (lambda: Normal("0.5", 0.1), TypeError, "mean", "'0.5'"),  # type: ignore[arg-type]
    (lambda: LogNormal(0, 0.5), ValueError, "median", "0"),
    (lambda: LogNormal(-1, 0.5), ValueError, "median", "-1"),
    (lambda: LogNormal(INF, 0.5), ValueError, "median", "inf"),
    (lambda: LogNormal(1.0, -0.5), ValueError, "sigma", "-0.5"),
    (lambda: LogNormal(1.0, True), TypeError, "sigma", "True"),
    (lambda: Replay([0.1, -0.2]), ValueError, "latencies[1]", "-0.2"),
    (lambda: Replay([0.1, NAN]), ValueError, "latencies[1]", "nan"),
    (lambda: Replay(["0.1"]), TypeError, "latencies[0]", "'0.1'"),  # type: ignore[list-item]
    (lambda: LLMLatency(ttft=-0.5), ValueError, "ttft", "-0.5"),
    (lambda: LLMLatency(per_token=NAN), ValueError, "per_token", "nan"),
    (lambda: LLMLatency(connect=INF), ValueError, "connect", "inf"),
    (lambda: LLMLatency(ttft="fast"), TypeError, "ttft", "'fast'"),  # type: ignore[arg-type]
    (lambda: LLMLatency(per_token=True), TypeError, "per_token", "True"),
    (lambda: LLMLatency(queue=-1), ValueError, "queue", "-1"),
    (lambda: LLMLatency(queue=None), TypeError, "queue", "None"),  # type: ignore[arg-type]
    (lambda: LLMLatency(prefill_per_token=NAN), ValueError, "prefill_per_token", "nan"),
    (lambda: LLMLatency(prefill_per_token=False), TypeError, "prefill_per_token", "False"),
    (lambda: LLMLatency(cache_read_per_token=-1e-6), ValueError, "cache_read_per_token", "-1e-06"),
    (lambda: LLMLatency(cache_read_per_token=INF), ValueError, "cache_read_per_token", "inf"),
    (lambda: LLMLatency(cache_read_per_token="0"), TypeError, "cache_read_per_token", "'0'"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("make", "error", "name", "shown"),
    INVALID_VALUES,
    ids=[f"{index}-{case[2]}-{case[3]}" for index, case in enumerate(INVALID_VALUES)],
)
def test_invalid_parameters_are_rejected_naming_parameter_and_value(
    make: Callable[[], object], error: type[Exception], name: str, shown: str
) -> None:
    with pytest.raises(error) as caught:
        make()
    message = str(caught.value)
    assert message.startswith(f"{name} must be"), message
    assert message.endswith(f"got {shown}"), message


def test_the_inverted_range_message_shows_the_bound() -> None:
    with pytest.raises(ValueError, match=r"^high must be >= low \(0\.2\), got 0\.1$"):
        Uniform(0.2, 0.1)


@pytest.mark.parametrize("seed", [1.5, "1", True, None])
def test_the_seed_must_be_an_int(seed: Any) -> None:
    with pytest.raises(TypeError, match=rf"^seed must be an int, got {seed!r}$"):
        Uniform(0.0, 1.0, seed=seed)


def test_replay_needs_at_least_one_latency() -> None:
    with pytest.raises(ValueError, match="latencies must hold at least one value"):
        Replay([])


@pytest.mark.parametrize("name", ["tokens", "input_tokens", "cached_tokens"])
@pytest.mark.parametrize(
    ("value", "error", "allowed"),
    [
        (-1, ValueError, "an int from 0 to"),
        (10**10, ValueError, "an int from 0 to"),
        (True, TypeError, "an int"),
        (1.5, TypeError, "an int"),
        (NAN, TypeError, "an int"),
        ("10", TypeError, "an int"),
    ],
)
def test_plan_rejects_a_token_count_that_is_not_a_count(
    name: str, value: Any, error: type[Exception], allowed: str
) -> None:
    counts = {"tokens": 1, "input_tokens": 0, "cached_tokens": 0, name: value}
    tokens = counts.pop("tokens")
    with pytest.raises(error, match=rf"^{name} must be {allowed}.*, got {re.escape(repr(value))}$"):
        LLMLatency().plan(tokens, **counts)


def test_the_output_limit_is_far_below_the_input_limit() -> None:
    """An output token is one planned gap each; an input token only multiplies a rate."""
    assert LLMLatency(prefill_per_token=1e-9).plan(1, input_tokens=10**9).ttft == 1.0
    with pytest.raises(ValueError, match=r"^tokens must be an int from 0 to 10,000,000"):
        LLMLatency().plan(10**7 + 1)


def test_boundary_values_are_accepted() -> None:
    assert Fixed(0).sample() == 0.0
    assert Uniform(0.2, 0.2).sample() == 0.2
    assert Normal(0.3, 0.0).sample() == 0.3
    assert Normal(0.3, 0.1, minimum=0.3).sample() >= 0.3
    assert LogNormal(0.25, 0.0).sample() == pytest.approx(0.25)
    assert Replay([0]).sample() == 0.0


# --- Fixed ---------------------------------------------------------------------------------


def test_fixed_is_the_same_every_time_and_a_float() -> None:
    model = Fixed(3)
    assert draw(model, 3) == [3.0, 3.0, 3.0]
    assert type(model.sample()) is float


def test_fixed_compares_hashes_and_prints_by_value() -> None:
    assert Fixed(0.3) == Fixed(0.3)
    assert Fixed(0.3) != Fixed(0.4)
    assert Fixed(0.3) != 0.3
    assert len({Fixed(0.3), Fixed(0.3), Fixed(0.4)}) == 2
    assert repr(Fixed(0.3)) == "Fixed(0.3)"


# --- seeded models -------------------------------------------------------------------------

SEEDED: list[Callable[[int], Uniform | Normal | LogNormal]] = [
    lambda seed: Uniform(0.1, 0.9, seed=seed),
    lambda seed: Normal(0.5, 0.1, seed=seed),
    lambda seed: LogNormal(0.5, 0.6, seed=seed),
]
SEEDED_IDS = ["uniform", "normal", "lognormal"]


@pytest.mark.parametrize("make", SEEDED, ids=SEEDED_IDS)
def test_the_same_seed_gives_the_same_sequence(
    make: Callable[[int], Uniform | Normal | LogNormal],
) -> None:
    assert draw(make(42), 20) == draw(make(42), 20)


@pytest.mark.parametrize("make", SEEDED, ids=SEEDED_IDS)
def test_different_seeds_give_different_sequences(
    make: Callable[[int], Uniform | Normal | LogNormal],
) -> None:
    assert draw(make(1), 20) != draw(make(2), 20)


def test_the_default_seed_is_deterministic() -> None:
    assert draw(Uniform(0.1, 0.9), 10) == draw(Uniform(0.1, 0.9, seed=0), 10)
    assert draw(Normal(0.5, 0.1), 10) == draw(Normal(0.5, 0.1, seed=0), 10)
    assert draw(LogNormal(0.5, 0.6), 10) == draw(LogNormal(0.5, 0.6, seed=0), 10)


@pytest.mark.parametrize("make", SEEDED, ids=SEEDED_IDS)
def test_reset_starts_the_sequence_again(
    make: Callable[[int], Uniform | Normal | LogNormal],
) -> None:
    model = make(7)
    first = draw(model, 10)
    assert draw(model, 10) != first
    model.reset()
    assert draw(model, 10) == first


def test_models_do_not_share_random_state() -> None:
    alone = draw(Uniform(0.0, 1.0, seed=5), 10)
    a, b = Uniform(0.0, 1.0, seed=5), Uniform(0.0, 1.0, seed=6)
    interleaved = []
    for _ in range(10):
        interleaved.append(a.sample())
        b.sample()
    assert interleaved == alone


def test_uniform_stays_within_its_range_and_spreads_over_it() -> None:
    samples = draw(Uniform(0.1, 0.2, seed=3), 2000)
    assert all(0.1 <= value <= 0.2 for value in samples)
    assert min(samples) < 0.101
    assert max(samples) > 0.199
    assert statistics.fmean(samples) == pytest.approx(0.15, abs=0.005)


def test_normal_is_truncated_at_its_minimum() -> None:
    samples = draw(Normal(0.1, 0.2, minimum=0.05, seed=11), 2000)
    assert min(samples) == 0.05  # truncated, not redrawn
    assert samples.count(0.05) > 100  # about 40% of draws fall below the minimum
    assert max(samples) > 0.4


def test_normal_defaults_to_never_negative() -> None:
    samples = draw(Normal(0.0, 1.0, seed=1), 500)
    assert min(samples) == 0.0
    assert any(value > 0 for value in samples)


def test_normal_mean_and_spread_are_roughly_right() -> None:
    samples = draw(Normal(1.0, 0.1, seed=2), 5000)
    assert statistics.fmean(samples) == pytest.approx(1.0, abs=0.01)
    assert statistics.stdev(samples) == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize("median", [0.25, 1.0, 4.0])
def test_lognormal_median_is_roughly_right(median: float) -> None:
    samples = draw(LogNormal(median, 0.5, seed=9), 20001)
    assert statistics.median(samples) == pytest.approx(median, rel=0.03)
    assert min(samples) > 0


def test_lognormal_has_a_long_right_tail() -> None:
    samples = sorted(draw(LogNormal(1.0, 0.5, seed=4), 20000))
    p95 = samples[int(0.95 * len(samples))]
    assert p95 == pytest.approx(math.exp(1.6449 * 0.5), rel=0.05)  # about 2.28 s
    assert statistics.fmean(samples) > statistics.median(samples)


def test_reprs_show_parameters_and_seed() -> None:
    assert repr(Uniform(0.1, 0.2, seed=3)) == "Uniform(0.1, 0.2, seed=3)"
    assert repr(Normal(0.5, 0.1)) == "Normal(0.5, 0.1, minimum=0.0, seed=0)"
    assert repr(LogNormal(1.0, 0.5, seed=2)) == "LogNormal(1.0, 0.5, seed=2)"
    assert repr(Replay([0.1, 0.2], cycle=True)) == "Replay([0.1, 0.2], cycle=True)"


def test_every_model_satisfies_the_protocol() -> None:
    models = [Fixed(0.1), Uniform(0, 1), Normal(1, 0.1), LogNormal(1, 0.1), Replay([0.1])]
    assert all(isinstance(model, LatencyModel) for model in models)
    assert not isinstance(0.1, LatencyModel)


# --- Replay --------------------------------------------------------------------------------


def test_replay_returns_the_recorded_latencies_in_order() -> None:
    model = Replay([0.3, 0.1, 0.2])
    assert draw(model, 3) == [0.3, 0.1, 0.2]
    assert list(model) == [0.3, 0.1, 0.2]


def test_replay_raises_when_exhausted() -> None:
    model = Replay([0.1, 0.2])
    draw(model, 2)
    with pytest.raises(ValueError, match=r"ran out of recorded latencies after 2 samples"):
        model.sample()


def test_replay_cycles_when_asked() -> None:
    assert draw(Replay([0.1, 0.2], cycle=True), 5) == [0.1, 0.2, 0.1, 0.2, 0.1]


def test_replay_reset_starts_over() -> None:
    model = Replay([0.1, 0.2, 0.3])
    draw(model, 2)
    model.reset()
    assert draw(model, 3) == [0.1, 0.2, 0.3]


def test_replay_accepts_any_iterable_once() -> None:
    model = Replay(value / 10 for value in range(1, 4))
    assert draw(model, 3) == [0.1, 0.2, 0.3]


# --- LLMLatency and LatencyPlan ------------------------------------------------------------


def test_a_hundred_tokens_take_exactly_two_point_four_eight_seconds() -> None:
    latency = LLMLatency(ttft=0.5, per_token=0.02)
    assert latency.total(100) == 2.48
    plan = latency.plan(100)
    assert plan.first_token == 0.5
    assert plan.gaps == (0.02,) * 99
    assert plan.total == 2.48


def test_connect_time_comes_before_the_first_token() -> None:
    plan = LLMLatency(connect=0.1, ttft=0.5, per_token=0.02).plan(100)
    assert (plan.connect, plan.ttft) == (0.1, 0.5)
    assert plan.first_token == 0.6
    assert plan.total == 2.58


@pytest.mark.parametrize("tokens", [0, 1])
def test_one_token_or_none_costs_only_the_first_token(tokens: int) -> None:
    plan = LLMLatency(connect=0.05, ttft=0.3, per_token=0.02).plan(tokens)
    assert plan.gaps == ()
    assert plan.total == 0.35


def test_plan_draws_from_each_model_in_order() -> None:
    latency = LLMLatency(
        connect=Replay([0.01, 0.02]),
        ttft=Replay([0.5, 0.6]),
        per_token=Replay([0.1, 0.2, 0.3, 0.4]),
    )
    first, second = latency.plan(3), latency.plan(3)
    assert (first.connect, first.ttft, first.gaps) == (0.01, 0.5, (0.1, 0.2))
    assert (second.connect, second.ttft, second.gaps) == (0.02, 0.6, (0.3, 0.4))


def test_plan_total_is_exact_to_the_microsecond() -> None:
    plan = LatencyPlan(connect=0.1, ttft=0.2, gaps=(0.1, 0.1, 0.1))
    assert plan.first_token == pytest.approx(0.3)
    assert plan.total == 0.6  # 0.1 + 0.2 alone is 0.30000000000000004


def test_seeded_llm_latency_is_reproducible() -> None:
    def make() -> LLMLatency:
        return LLMLatency(ttft=LogNormal(0.5, 0.3, seed=1), per_token=Uniform(0.01, 0.03, seed=2))

    assert [make().total(50) for _ in range(3)] == [make().total(50)] * 3
    latency = make()
    assert latency.total(50) != latency.total(50)


def test_llm_latency_defaults_to_zero_and_prints_its_parts() -> None:
    assert LLMLatency().total(1000) == 0.0
    assert repr(LLMLatency(ttft=0.5, per_token=0.02)) == (
        "LLMLatency(connect=Fixed(0.0), ttft=Fixed(0.5), per_token=Fixed(0.02))"
    )
    assert repr(LatencyPlan(connect=0.0, ttft=0.5, gaps=(0.02, 0.02))) == (
        "LatencyPlan(connect=0.0, ttft=0.5, gaps=2)"
    )


# --- coercion ------------------------------------------------------------------------------


def test_as_model_turns_a_number_into_fixed_and_keeps_a_model() -> None:
    assert as_model(0.3, name="x") == Fixed(0.3)
    assert as_model(2, name="x") == Fixed(2.0)
    model = Uniform(0.1, 0.2)
    assert as_model(model, name="x") is model


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, TypeError), ("0.3", TypeError), (None, TypeError), (-1, ValueError), (NAN, ValueError)],
)
def test_as_model_rejects_non_models_naming_the_parameter(
    value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"^delay must be .*, got {re.escape(repr(value))}$"):
        as_model(value, name="delay")


def test_as_llm_latency_keeps_an_llm_latency() -> None:
    latency = LLMLatency(ttft=0.5)
    assert as_llm_latency(latency) is latency


def test_as_llm_latency_treats_a_number_or_model_as_the_whole_call() -> None:
    from_number = as_llm_latency(0.3)
    assert (from_number.connect, from_number.ttft, from_number.per_token) == (
        Fixed(0.0),
        Fixed(0.3),
        Fixed(0.0),
    )
    assert from_number.total(100) == 0.3
    model = Replay([0.1, 0.2])
    from_model = as_llm_latency(model)
    assert from_model.ttft is model
    assert [from_model.total(10), from_model.total(10)] == [0.1, 0.2]


@pytest.mark.parametrize("value", ["fast", True, None])
def test_as_llm_latency_rejects_other_types(value: Any) -> None:
    with pytest.raises(TypeError, match=r"^latency must be a LatencyModel or a number"):
        as_llm_latency(value)


# --- equality: models are config objects --------------------------------------------------


def test_models_compare_by_distribution_and_seed_not_by_position() -> None:
    drawn = Uniform(0.1, 0.2, seed=3)
    drawn.sample()
    assert drawn == Uniform(0.1, 0.2, seed=3)
    assert Uniform(0.1, 0.2, seed=3) != Uniform(0.1, 0.2, seed=4)
    assert Normal(1.0, 0.1) == Normal(1.0, 0.1)
    assert Normal(1.0, 0.1) != Normal(1.0, 0.1, minimum=0.5)
    assert LogNormal(1.0, 0.5) != Uniform(1.0, 1.5)
    assert len({Uniform(0.1, 0.2), Uniform(0.1, 0.2), Fixed(0.1), Fixed(0.1)}) == 2
    assert Replay([0.1, 0.2]) == Replay([0.1, 0.2])
    assert Replay([0.1, 0.2]) != Replay([0.1, 0.2], cycle=True)


def test_llm_latency_compares_by_its_parts() -> None:
    assert LLMLatency(ttft=0.5, per_token=0.02) == LLMLatency(ttft=Fixed(0.5), per_token=0.02)
    assert LLMLatency(ttft=0.5) != LLMLatency(ttft=0.5, connect=0.1)
    assert LLMLatency(ttft=0.5) != 0.5


# --- the request's part: queue, prefill and cache reads -------------------------------------


def test_ttft_grows_with_prefilled_input_exactly_as_configured() -> None:
    latency = LLMLatency(ttft=0.2, prefill_per_token=0.0001)
    small, large = latency.plan(1, input_tokens=1_000), latency.plan(1, input_tokens=11_000)
    assert (small.ttft, large.ttft) == (0.3, 1.3)
    assert large.ttft - small.ttft == pytest.approx(1.0, abs=1e-12)
    assert (large.base, large.prefill, large.cache_read, large.queue) == (0.2, 1.1, 0.0, 0.0)


def test_a_cache_read_is_charged_at_its_own_rate() -> None:
    latency = LLMLatency(ttft=0.2, prefill_per_token=0.0001, cache_read_per_token=0.00001)
    plan = latency.plan(1, input_tokens=50, cached_tokens=10_000)
    assert (plan.prefill, plan.cache_read, plan.ttft) == (0.005, 0.1, 0.305)


def test_queue_base_prefill_and_cache_read_sum_to_the_ttft_to_the_microsecond() -> None:
    latency = LLMLatency(
        connect=0.1,
        queue=0.0333333,
        ttft=0.1000004,
        prefill_per_token=0.0000123,
        cache_read_per_token=0.0000011,
        per_token=0.02,
    )
    plan = latency.plan(3, input_tokens=777, cached_tokens=12_345)
    assert (plan.queue, plan.base, plan.prefill, plan.cache_read) == (
        0.033333,
        0.1,
        0.009557,
        0.01358,
    )
    assert plan.ttft == 0.15647
    assert plan.first_token == 0.25647
    assert plan.total == 0.29647


def test_each_part_is_drawn_once_per_request_in_order() -> None:
    latency = LLMLatency(
        connect=Replay([0.01, 0.02]),
        queue=Replay([0.1, 0.2]),
        ttft=Replay([0.5, 0.6]),
        prefill_per_token=Replay([0.001, 0.002]),
        cache_read_per_token=Replay([0.0001, 0.0002]),
        per_token=Replay([0.03, 0.04, 0.05, 0.06]),
    )
    first = latency.plan(3, input_tokens=100, cached_tokens=1000)
    second = latency.plan(3)  # nothing to prefill: the rates are drawn all the same
    assert (first.connect, first.queue, first.base, first.prefill, first.cache_read) == (
        0.01,
        0.1,
        0.5,
        0.1,
        0.1,
    )
    assert first.gaps == (0.03, 0.04)
    assert (second.connect, second.queue, second.base, second.prefill, second.cache_read) == (
        0.02,
        0.2,
        0.6,
        0.0,
        0.0,
    )
    assert second.gaps == (0.05, 0.06)


def test_an_old_three_part_latency_plans_as_before_whatever_the_input() -> None:
    old = LLMLatency(
        connect=LogNormal(0.1, 0.3, seed=1),
        ttft=LogNormal(0.5, 0.3, seed=2),
        per_token=Uniform(0.01, 0.03, seed=3),
    )
    connect = LogNormal(0.1, 0.3, seed=1)
    ttft, per_token = LogNormal(0.5, 0.3, seed=2), Uniform(0.01, 0.03, seed=3)
    for _ in range(3):
        plan = old.plan(5, input_tokens=100_000, cached_tokens=50_000)
        assert plan.connect == round(connect.sample(), 6)
        assert plan.ttft == plan.base == round(ttft.sample(), 6)
        assert plan.gaps == tuple(round(per_token.sample(), 6) for _ in range(4))


def test_a_model_drawing_a_bad_latency_is_named() -> None:
    class Broken:
        def __init__(self, value: object) -> None:
            self.value = value

        def sample(self) -> Any:
            return self.value

        def __repr__(self) -> str:
            return f"Broken({self.value!r})"

    with pytest.raises(ValueError, match=r"^queue: Broken\(-1\) drew -1, not a finite"):
        LLMLatency(queue=Broken(-1)).plan(1)
    with pytest.raises(ValueError, match=r"^prefill_per_token: Broken\(nan\) drew nan"):
        LLMLatency(prefill_per_token=Broken(NAN)).plan(1, input_tokens=1)
    with pytest.raises(TypeError, match=r"^per_token: Broken\('x'\) drew 'x', not a number"):
        LLMLatency(per_token=Broken("x")).plan(2)


def test_a_model_raising_or_a_replay_running_out_propagates() -> None:
    latency = LLMLatency(prefill_per_token=Replay([0.001]))
    latency.plan(1, input_tokens=10)
    with pytest.raises(ValueError, match="Replay ran out of recorded latencies after 1 samples"):
        latency.plan(1, input_tokens=10)


def test_a_huge_prefill_is_exact_and_a_huge_reply_of_fixed_gaps_is_cheap() -> None:
    plan = LLMLatency(prefill_per_token=0.000123).plan(10**7, input_tokens=10**9)
    assert plan.prefill == 123_000.0
    assert len(plan.gaps) == 10**7 - 1


def test_the_breakdown_is_checked_against_the_ttft() -> None:
    with pytest.raises(ValueError, match=r"^ttft must be >= queue \+ prefill \+ cache_read"):
        LatencyPlan(connect=0.0, ttft=0.1, gaps=(), queue=0.05, prefill=0.06)
    plan = LatencyPlan(connect=0.0, ttft=0.3, gaps=(), queue=0.1, prefill=0.1, cache_read=0.1)
    assert plan.base == 0.0


def test_the_new_parts_compare_and_print_only_when_set() -> None:
    assert LLMLatency(prefill_per_token=0.001) != LLMLatency()
    assert LLMLatency(queue=0.1) == LLMLatency(queue=Fixed(0.1))
    assert LLMLatency(cache_read_per_token=1e-6) != LLMLatency(prefill_per_token=1e-6)
    assert repr(LLMLatency(ttft=0.5, queue=0.1, cache_read_per_token=1e-5)) == (
        "LLMLatency(connect=Fixed(0.0), ttft=Fixed(0.5), per_token=Fixed(0.0), "
        "queue=Fixed(0.1), cache_read_per_token=Fixed(1e-05))"
    )
    plan = LLMLatency(ttft=0.5, prefill_per_token=0.001).plan(3, input_tokens=100)
    assert repr(plan) == "LatencyPlan(connect=0.0, ttft=0.6, prefill=0.1, gaps=2)"


# --- typical latencies from public measurements ---------------------------------------------

# The published figures each preset is built from (see TYPICAL_MODELS and
# docs/latency-model.md): a median time to first token at about 1,000 input tokens, and an
# output speed in tokens per second.
PUBLISHED = {
    "claude-sonnet-4-5": (1.80, 63.0),
    "claude-opus-4-1": (2.67, 45.0),
    "claude-haiku-4-5": (0.90, 112.0),
    "claude-3-5-sonnet": (0.81, 64.0),
}


def medians(latency: LLMLatency) -> dict[str, float]:
    parts = ("ttft", "prefill_per_token", "cache_read_per_token", "per_token")
    models = [getattr(latency, part) for part in parts]
    assert all(isinstance(model, LogNormal) for model in models)
    return {part: model.median for part, model in zip(parts, models, strict=True)}


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_a_preset_reproduces_its_published_ttft_and_output_speed(model: str) -> None:
    ttft, speed = PUBLISHED[model]
    latency = LLMLatency.typical(model)
    found = medians(latency)
    assert found["ttft"] + 1_000 * found["prefill_per_token"] == pytest.approx(ttft)
    mean_gap = found["per_token"] * math.exp(latency.per_token.sigma**2 / 2)  # type: ignore[attr-defined]
    assert 1 / mean_gap == pytest.approx(speed, rel=1e-6)
    assert (latency.connect, latency.queue) == (Fixed(0.0), Fixed(0.0))


def test_the_prefill_and_cache_read_rates_reproduce_the_caching_announcement() -> None:
    """Claude 3.5 Sonnet's time to first token: 100,000 tokens 11.5 s uncached and 2.4 s
    cached, 10,000 tokens 1.6 s and 1.1 s: the rates are the slopes between the sizes."""
    found = medians(LLMLatency.typical("claude-3-5-sonnet"))
    assert 90_000 * found["prefill_per_token"] == pytest.approx(11.5 - 1.6)
    assert 90_000 * found["cache_read_per_token"] == pytest.approx(2.4 - 1.1, rel=1e-3)


def test_a_preset_is_seeded_per_parameter_and_reproducible() -> None:
    def run(seed: int) -> list[tuple[float, float, tuple[float, ...]]]:
        latency = LLMLatency.typical(seed=seed)
        plans = [latency.plan(20, input_tokens=5_000, cached_tokens=20_000) for _ in range(5)]
        return [(plan.ttft, plan.prefill, plan.gaps) for plan in plans]

    assert run(1) == run(1)
    assert run(1) != run(2)
    latency = LLMLatency.typical()
    seeds = [
        model.seed  # type: ignore[attr-defined]
        for model in (
            latency.ttft,
            latency.per_token,
            latency.prefill_per_token,
            latency.cache_read_per_token,
        )
    ]
    assert len(set(seeds)) == 4
    assert LLMLatency.typical("claude-sonnet-4-5-20250929") == LLMLatency.typical()


def test_a_preset_spreads_its_draws_and_a_long_prompt_waits_longer() -> None:
    latency = LLMLatency.typical("claude-haiku-4-5", seed=3)
    short = [latency.plan(1, input_tokens=100).ttft for _ in range(200)]
    long = [latency.plan(1, input_tokens=100_000).ttft for _ in range(200)]
    assert len(set(short)) == 200
    assert statistics.median(long) - statistics.median(short) > 5.0


@pytest.mark.parametrize(
    ("model", "error", "message"),
    [
        ("gpt-4o", ValueError, r"^model must be one of the presets claude-sonnet-4-5, .*'gpt-4o'$"),
        ("claude-sonnet", ValueError, r"^model must be one of the presets .*'claude-sonnet'$"),
        (None, TypeError, r"^model must be a str, got None$"),
    ],
)
def test_an_unknown_preset_is_refused_naming_the_presets(
    model: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        LLMLatency.typical(model)


@pytest.mark.parametrize("seed", [True, 1.5, "0"])
def test_a_preset_seed_must_be_an_int(seed: Any) -> None:
    with pytest.raises(TypeError, match=rf"^seed must be an int, got {re.escape(repr(seed))}$"):
        LLMLatency.typical(seed=seed)


@pytest.mark.parametrize(
    ("latency", "counts", "message"),
    [
        (
            LLMLatency(prefill_per_token=1e305),
            {"input_tokens": 10**9},
            r"^prefill_per_token: Fixed\(1e\+305\) drew 1e\+305 x 1,000,000,000 tokens, over",
        ),
        (LLMLatency(ttft=1e308), {}, r"^ttft: Fixed\(1e\+308\) drew 1e\+308, over the 1e\+09"),
        (LLMLatency(per_token=2e9), {"tokens": 3}, r"^per_token: Fixed\(2000000000.0\) drew"),
        # a spread so wide that the draw itself overflows (math range error in exp)
        (
            LLMLatency(ttft=LogNormal(1.0, 1e308, seed=1)),
            {},
            r"^ttft: LogNormal\(1.0, 1e\+308, seed=1\) drew a latency too large to represent",
        ),
        (
            LLMLatency(per_token=LogNormal(1.0, 1000.0, seed=2)),
            {"tokens": 3},
            r"^per_token: LogNormal\(1.0, 1000.0, seed=2\) drew a latency too large",
        ),
    ],
)
def test_a_part_too_long_to_model_is_named_not_overflowed(
    latency: LLMLatency, counts: dict[str, int], message: str
) -> None:
    tokens = counts.pop("tokens", 1)
    with pytest.raises(ValueError, match=message):
        latency.plan(tokens, **counts)
    assert LLMLatency(ttft=1e9, prefill_per_token=1.0).plan(1, input_tokens=10**9).ttft == 2e9


def test_from_profile_reads_a_profile_as_the_profile_reader_does(tmp_path: Any) -> None:
    from perfkit.simulation import latency_from_profile

    profile = {
        "perfkit_latency_profile": 1,
        "models": {
            "m": {
                "ttft": {"lognormal": {"median": 0.4, "sigma": 0.3}},
                "prefill_per_token": 0.0001,
                "per_token": 0.02,
            }
        },
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    latency = LLMLatency.from_profile(str(path), model="m", seed=5)
    assert latency == latency_from_profile(profile, model="m", seed=5)
    assert latency.prefill_per_token == Fixed(0.0001)
    assert latency.plan(1, input_tokens=1_000).prefill == 0.1
