"""Fitting the latency model to traces: known parameters are recovered from synthetic
traces, degenerate traces are named, and the goodness of fit tells a good fit from a bad one.

Recovery tolerances, 400 traces a fit (seeds 0-199 were checked when they were chosen;
the slow test checks 0-19, the default run three): prefill and cache read per token within
5%, the base's median (queue included) within 10% and its sigma within 20%, connect's
median within 10%, per_token's median within 3% and its sigma within 15%.
"""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from perfkit.simulation import Fixed, LLMLatency, LogNormal
from perfkit.traces import FitError, Trace, fit_traces, ks_statistic
from tests.synthetic_traces import Truth, reference_base, synthetic

TOLERANCES = {
    "prefill": 0.05,
    "cache_read": 0.05,
    "base_median": 0.10,
    "base_sigma": 0.20,
    "connect_median": 0.10,
    "per_token_median": 0.03,
    "per_token_sigma": 0.15,
}


def recovery_errors(latency: LLMLatency, truth: Truth) -> dict[str, float]:
    def error(fitted: float, true: float) -> float:
        return abs(fitted / true - 1)

    base_median, base_sigma = reference_base(truth)

    assert isinstance(latency.ttft, LogNormal)
    assert isinstance(latency.connect, LogNormal)
    assert isinstance(latency.per_token, LogNormal)
    assert isinstance(latency.prefill_per_token, Fixed)
    assert isinstance(latency.cache_read_per_token, Fixed)
    return {
        "prefill": error(latency.prefill_per_token.seconds, truth.prefill),
        "cache_read": error(latency.cache_read_per_token.seconds, truth.cache_read),
        "base_median": error(latency.ttft.median, base_median),
        "base_sigma": error(latency.ttft.sigma, base_sigma),
        "connect_median": error(latency.connect.median, truth.connect_median),
        "per_token_median": error(latency.per_token.median, truth.per_token_median),
        "per_token_sigma": error(latency.per_token.sigma, truth.per_token_sigma),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_known_parameters_are_recovered_within_the_stated_tolerances(seed: int) -> None:
    truth = Truth()
    [fit] = fit_traces(synthetic(400, seed, truth), seed=seed).fits
    errors = recovery_errors(fit.latency, truth)
    assert {name: e for name, e in errors.items() if e > TOLERANCES[name]} == {}
    assert fit.latency.queue == Fixed(0.0)
    assert fit.not_fitted == {}
    assert fit.holds, fit.verdict()


def test_deltas_of_several_tokens_give_the_per_token_time_of_one() -> None:
    truth = Truth(tokens_per_delta=4)
    [fit] = fit_traces(synthetic(400, 3, truth)).fits
    errors = recovery_errors(fit.latency, truth)
    assert errors["per_token_median"] <= TOLERANCES["per_token_median"]
    assert errors["per_token_sigma"] <= TOLERANCES["per_token_sigma"]


def coalesced(gaps: tuple[float, ...]) -> tuple[float, ...]:
    """The gaps as a busy client reads them: three deliveries back to back, the wait
    for all three on the first."""
    out: list[float] = []
    for start in range(0, len(gaps), 3):
        group = gaps[start : start + 3]
        out.extend((sum(group), *(0.0,) * (len(group) - 1)))
    return tuple(out)


def test_deliveries_read_back_to_back_do_not_change_per_token() -> None:
    traces = synthetic(200, 20)
    [fit] = fit_traces(traces).fits
    [busy] = fit_traces([replace(t, gaps_s=coalesced(t.gaps_s)) for t in traces]).fits
    assert busy.entry["per_token"]["lognormal"] == pytest.approx(
        fit.entry["per_token"]["lognormal"]
    )
    assert busy.holds, busy.verdict()


def test_the_fit_replays_deterministically_from_its_seed() -> None:
    traces = synthetic(100, 4)
    first = fit_traces(traces, seed=9).fits[0]
    again = fit_traces(traces, seed=9).fits[0]
    other = fit_traces(traces, seed=10).fits[0]
    assert first.quantities == again.quantities
    assert first.entry == other.entry  # the parameters do not depend on the seed
    assert first.quantities != other.quantities


def test_a_fit_that_does_not_hold_is_named() -> None:
    # Half the requests stall for 10 s more: no lognormal base fits both halves.
    rng = random.Random(5)
    traces = [
        replace(t, ttft_s=t.ttft_s + 10, complete_s=t.complete_s + 10)
        if rng.random() < 0.5 and t.ttft_s is not None
        else t
        for t in synthetic(400, 5)
    ]
    [fit] = fit_traces(traces).fits
    assert not fit.holds
    assert fit.verdict().startswith("the fit does not hold: ")
    assert "ttft KS" in fit.verdict()


def test_failed_errored_and_retried_requests_are_left_out_and_counted() -> None:
    good = synthetic(40, 6)
    bad = [
        replace(good[0], status=429),
        replace(good[1], status=529),
        replace(good[2], retries=1),
        replace(good[3], error="ReadTimeout"),
        replace(good[4], ttft_s=math.nan),
        replace(good[5], complete_s=good[5].headers_s / 2),
    ]
    [fit] = fit_traces(good + bad).fits
    assert fit.requests == 40
    assert fit.excluded == {
        "error": 1,
        "retried attempt": 1,
        "status 429": 1,
        "status 529": 1,
        "times not finite numbers >= 0": 1,
        "times out of order (headers, first token, complete)": 1,
    }
    assert "excluded: error: 1, retried attempt: 1" in "\n".join(fit.lines())


def test_every_request_of_one_input_size_says_prefill_cannot_be_fitted() -> None:
    traces = synthetic(100, 7, input_tokens=(5_000, 5_000))
    traces = [replace(t, cache_creation_input_tokens=0) for t in traces]
    [fit] = fit_traces(traces).fits
    assert fit.not_fitted == {
        "prefill_per_token": "every request had 5,000 prefilled input tokens, so its rate "
        "cannot be told from the base: ttft includes it"
    }
    assert "prefill_per_token" not in fit.entry
    assert fit.latency.prefill_per_token == Fixed(0.0)
    assert isinstance(fit.latency.ttft, LogNormal)
    assert fit.latency.ttft.median > 1.0  # the 5,000 tokens' prefill is in the base
    assert fit.holds, fit.verdict()


def test_no_cache_reads_say_the_cache_read_rate_cannot_be_fitted() -> None:
    traces = [replace(t, cache_read_input_tokens=0) for t in synthetic(60, 8)]
    [fit] = fit_traces(traces).fits
    assert list(fit.not_fitted) == ["cache_read_per_token"]
    assert "every request had 0 cache-read tokens" in fit.not_fitted["cache_read_per_token"]


def test_reads_that_move_with_the_input_cannot_be_told_apart() -> None:
    traces = [replace(t, cache_read_input_tokens=2 * t.input_tokens) for t in synthetic(60, 8)]
    traces = [replace(t, cache_creation_input_tokens=0) for t in traces]
    [fit] = fit_traces(traces).fits
    assert fit.not_fitted == {
        "cache_read_per_token": "its tokens move with prefill_per_token's, so the two cannot "
        "be told apart"
    }


def test_a_rate_fitted_negative_is_dropped_and_the_others_refitted() -> None:
    # Reads that nearly move with the input (twice as many, give or take 3 tokens): the
    # two slopes come out large and of opposite signs; zeroing only the negative one left
    # the other to answer for both (a fitted ttft p50 many times the observed).
    truth, rng = Truth(), random.Random(3)
    traces = []
    for trace in synthetic(100, 8, truth):
        assert trace.ttft_s is not None
        reads = 2 * trace.input_tokens + rng.randint(-3, 3)
        shift = truth.cache_read * (reads - trace.cache_read_input_tokens) - (
            truth.prefill * trace.cache_creation_input_tokens
        )
        traces.append(
            replace(
                trace,
                cache_creation_input_tokens=0,
                cache_read_input_tokens=reads,
                ttft_s=trace.ttft_s + shift,
                complete_s=trace.complete_s + shift,
            )
        )
    [fit] = fit_traces(traces).fits
    [note] = [note for note in fit.notes if " fitted negative " in note]
    assert note.endswith("set to 0, and the other rates fitted without it")
    rates = {
        name: fit.entry[name]["fixed"] for name in ("prefill_per_token", "cache_read_per_token")
    }
    assert rates[note.split()[0]] == 0.0
    # what one input token brings (its prefill and two reads) is in the rate kept
    assert rates["prefill_per_token"] + 2 * rates["cache_read_per_token"] == pytest.approx(
        truth.prefill + 2 * truth.cache_read, rel=0.05
    )
    assert fit.holds, fit.verdict()


def test_zero_output_tokens_leave_per_token_unfitted() -> None:
    traces = [
        replace(t, output_tokens=1, gaps_s=(), complete_s=t.ttft_s)
        for t in synthetic(40, 9)
        if t.ttft_s is not None
    ]
    # and requests that streamed no token at all only count toward connect
    traces += [replace(t, output_tokens=0, ttft_s=None, gaps_s=()) for t in synthetic(5, 10)]
    [fit] = fit_traces(traces).fits
    assert fit.not_fitted == {"per_token": "no request had two output tokens or more"}
    assert fit.requests == 40
    assert fit.latency.per_token == Fixed(0.0)


def test_without_gaps_per_token_comes_from_the_complete_time() -> None:
    truth = Truth()
    traces = [replace(t, gaps_s=()) for t in synthetic(200, 11, truth)]
    [fit] = fit_traces(traces).fits
    assert (
        "per_token from (complete - ttft) / (output - 1) for 200 request(s) without recorded "
        "gaps" in fit.notes
    )
    errors = recovery_errors(fit.latency, truth)
    assert errors["per_token_median"] <= TOLERANCES["per_token_median"]


def test_non_streamed_traces_fit_what_the_complete_time_tells() -> None:
    truth = Truth()
    [fit] = fit_traces(synthetic(400, 12, truth, stream=False)).fits
    assert list(fit.not_fitted) == ["connect"]
    assert "folded into ttft" in fit.not_fitted["connect"]
    assert [q.name for q in fit.quantities] == ["complete"]
    assert isinstance(fit.latency.per_token, Fixed)
    true_mean = truth.per_token_median * math.exp(truth.per_token_sigma**2 / 2)
    assert fit.latency.per_token.seconds == pytest.approx(true_mean, rel=0.03)
    assert isinstance(fit.latency.prefill_per_token, Fixed)
    assert fit.latency.prefill_per_token.seconds == pytest.approx(truth.prefill, rel=0.05)


@pytest.mark.parametrize("count", [0, 1, 19])
def test_too_few_traces_are_refused_with_the_count(count: int) -> None:
    traces = synthetic(count, 13)
    with pytest.raises(FitError) as raised:
        fit_traces(traces)
    message = str(raised.value)
    if count == 0:
        assert message == "no traces to fit"
    else:
        assert message == (
            f"model 'm': only {count} usable request(s) of {count} (at least 20 are needed)"
        )


def test_a_model_with_too_few_traces_is_skipped_beside_one_that_is_fitted() -> None:
    traces = synthetic(40, 14, model="big") + synthetic(3, 15, model="small")
    calibration = fit_traces(traces)
    assert [fit.model for fit in calibration.fits] == ["big"]
    assert calibration.skipped == {
        "small": "model 'small': only 3 usable request(s) of 3 (at least 20 are needed)"
    }
    with pytest.raises(FitError, match="only 3 usable"):
        fit_traces(traces, model="small")
    with pytest.raises(FitError, match=r"no traces of model 'x'; the traces have: big, small"):
        fit_traces(traces, model="x")


def test_token_counts_no_request_has_are_left_out() -> None:
    traces = synthetic(30, 22)
    traces[0] = replace(traces[0], output_tokens=10**8)
    traces[1] = replace(traces[1], input_tokens=10**10)
    [fit] = fit_traces(traces).fits
    assert fit.excluded == {"token counts above 10,000,000": 2}


def test_long_replies_are_checked_on_a_share_of_the_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from perfkit.traces import _fit

    monkeypatch.setattr(_fit, "SIMULATED_GAPS", 20_000)  # 2,000,000 in earnest
    traces = [replace(t, output_tokens=2_000) for t in synthetic(40, 23)]
    [fit] = fit_traces(traces).fits
    assert (
        "the fit was checked on every 4th request (10): their replies hold 79,960 output "
        "tokens, more than 20,000 to simulate" in fit.notes
    )
    assert [len(quantity.observed) for quantity in fit.quantities] == [3, 3]


def test_a_first_token_before_the_headers_is_out_of_order() -> None:
    traces = synthetic(25, 24)
    traces[0] = replace(traces[0], ttft_s=0.0)
    [fit] = fit_traces(traces).fits
    assert fit.excluded == {"times out of order (headers, first token, complete)": 1}
    with pytest.raises(ValueError, match="min_traces must be an int >= 2, got 0"):
        fit_traces(traces, min_traces=0)


def absolute(trace: Trace, at: float = 1.7e9) -> Trace:
    """The trace with unix times where seconds from sending belong (a hand-made file)."""
    assert trace.ttft_s is not None
    return replace(
        trace,
        headers_s=trace.headers_s + at,
        ttft_s=trace.ttft_s + at,
        complete_s=trace.complete_s + at,
    )


def test_times_no_request_takes_are_left_out() -> None:
    traces = synthetic(25, 25)
    traces[:2] = [absolute(t) for t in traces[:2]]
    [fit] = fit_traces(traces).fits
    assert fit.excluded == {"times above 86,400 s (a day)": 2}
    # all of them: named as the reason, not a draw of the fitted model too long to plan
    with pytest.raises(FitError, match=r"only 0 usable .*times above 86,400 s \(a day\): 25"):
        fit_traces([absolute(t) for t in traces])


def test_only_failed_requests_are_refused_naming_why() -> None:
    traces = [replace(t, status=429) for t in synthetic(30, 16)]
    with pytest.raises(FitError, match=r"only 0 usable request\(s\) of 30 .*status 429: 30"):
        fit_traces(traces)


def test_a_few_stalled_requests_do_not_tilt_the_prefill_rate() -> None:
    traces = synthetic(400, 17)
    stalled = [
        replace(t, ttft_s=t.ttft_s + 20, complete_s=t.complete_s + 20)
        if index % 50 == 0 and t.ttft_s is not None and t.input_tokens > 30_000
        else t
        for index, t in enumerate(traces)
    ]
    [fit] = fit_traces(stalled).fits
    assert isinstance(fit.latency.prefill_per_token, Fixed)
    assert fit.latency.prefill_per_token.seconds == pytest.approx(Truth().prefill, rel=0.05)


def test_the_profile_loads_back_into_the_simulator() -> None:
    calibration = fit_traces(synthetic(100, 18), seed=3)
    profile = calibration.profile(source="t.jsonl", fitted_at="2026-01-01T00:00:00+00:00")
    assert profile["source"] == {
        "traces": "t.jsonl",
        "requests": 100,
        "fitted_at": "2026-01-01T00:00:00+00:00",
    }
    entry = profile["models"]["m"]
    assert entry["fit"]["holds"] is True
    assert set(entry["fit"]["ttft"]) == {"observed", "fitted", "ks", "ks_critical_5pct"}
    assert LLMLatency.from_profile(profile, seed=3) == calibration.fits[0].latency


def test_the_fitted_latency_draws_what_the_profile_draws_from_its_seed() -> None:
    calibration = fit_traces(synthetic(100, 18), seed=3)
    profile = calibration.profile(source="t.jsonl", fitted_at="2026-01-01T00:00:00+00:00")
    loaded, [fit] = LLMLatency.from_profile(profile, seed=3), calibration.fits

    def plans(latency: LLMLatency) -> list[tuple[float, float, tuple[float, ...]]]:
        drawn = (latency.plan(20, input_tokens=3_000, cached_tokens=2_000) for _ in range(5))
        return [(plan.connect, plan.ttft, plan.gaps) for plan in drawn]

    assert plans(fit.latency) == plans(loaded)  # not left where the goodness check drew to


def test_recording_traces_does_not_import_the_simulator() -> None:
    # The recorder runs in production: the fit, and the simulator it checks with, load on
    # first use of a fit name.
    code = (
        "import sys\n"
        "from perfkit.traces import TraceRecorder, read_traces\n"
        "assert 'perfkit.simulation' not in sys.modules, 'simulator imported'\n"
        "from perfkit.traces import fit_traces\n"
        "assert 'perfkit.simulation' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_ks_statistic() -> None:
    assert ks_statistic([1, 2, 3], [1, 2, 3]) == 0
    assert ks_statistic([1, 2], [3, 4]) == 1
    assert ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
    assert ks_statistic([1, 1, 1], [1]) == 0  # ties are stepped over together
    with pytest.raises(ValueError, match="two non-empty samples"):
        ks_statistic([], [1])


@pytest.mark.slow
def test_thousands_of_traces_fit_quickly() -> None:
    traces = synthetic(3000, 19)
    start = time.process_time()
    fit_traces(traces)
    seconds = time.process_time() - start
    print(f"fit of 3,000 traces: {seconds:.3f} s CPU")
    assert seconds < 5  # generous: 2 shared cores beside other suites


def my_sections_blocks(language: str) -> list[str]:
    """The ``language`` blocks of docs/calibration.md's sections on fitting and using a
    profile."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "calibration.md").read_text()
    section = text[text.index("## Fitting a profile") : text.index("## The loopback proof")]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def test_the_docs_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "traces.jsonl").write_text(
        "".join(trace.to_json() + "\n" for trace in synthetic(60, 21, model="claude-sonnet-4-5"))
    )
    [profile_json] = my_sections_blocks("json")
    (tmp_path / "profile.json").write_text(profile_json)
    fitting, using = my_sections_blocks("python")
    namespace: dict[str, object] = {}
    exec(compile(fitting, "calibration.md", "exec"), namespace)
    assert isinstance(namespace["profile"], dict)
    exec(compile(using, "calibration.md", "exec"), namespace)
    latency = namespace["latency"]
    assert isinstance(latency, LLMLatency)
    assert isinstance(latency.ttft, LogNormal)
    assert latency.ttft.median == 0.106915


@pytest.mark.slow
def test_the_tolerances_hold_on_twenty_seeds() -> None:
    truth = Truth()
    worst = dict.fromkeys(TOLERANCES, 0.0)
    for seed in range(20):
        [fit] = fit_traces(synthetic(400, seed, truth), seed=seed).fits
        for name, error in recovery_errors(fit.latency, truth).items():
            worst[name] = max(worst[name], error)
    print("worst relative errors over seeds 0-19:", {n: f"{e:.2%}" for n, e in worst.items()})
    assert {name: e for name, e in worst.items() if e > TOLERANCES[name]} == {}
