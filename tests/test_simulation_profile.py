"""Latency profiles: LLMLatency.from_profile reads what `perfkit calibrate` writes."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perfkit.simulation import (
    Fixed,
    LLMLatency,
    LogNormal,
    Normal,
    Uniform,
    latency_from_profile,
    latency_to_profile,
)

EVERY_KIND = {
    "connect": {"fixed": 0.05},
    "queue": {"uniform": {"low": 0.0, "high": 0.1}},
    "ttft": {"lognormal": {"median": 0.4, "sigma": 0.3}},
    "prefill_per_token": {"fixed": 0.0002},
    "cache_read_per_token": 0.00002,
    "per_token": {"normal": {"mean": 0.02, "stddev": 0.004}},
    "fit": {"anything": "is not read"},
}


def profile(**models: dict[str, Any]) -> dict[str, Any]:
    return {"perfkit_latency_profile": 1, "models": models, "source": {"traces": "t.jsonl"}}


def test_every_distribution_kind_is_read() -> None:
    latency = LLMLatency.from_profile(profile(m=EVERY_KIND), seed=3)
    assert latency.connect == Fixed(0.05)
    assert latency.prefill_per_token == Fixed(0.0002)
    assert latency.cache_read_per_token == Fixed(0.00002)
    assert isinstance(latency.queue, Uniform)
    assert (latency.queue.low, latency.queue.high) == (0.0, 0.1)
    assert isinstance(latency.ttft, LogNormal)
    assert (latency.ttft.median, latency.ttft.sigma) == (0.4, 0.3)
    assert isinstance(latency.per_token, Normal)
    assert (latency.per_token.mean, latency.per_token.stddev) == (0.02, 0.004)
    plan = latency.plan(3, input_tokens=1000, cached_tokens=5000)
    assert plan.prefill == pytest.approx(0.2)
    assert plan.cache_read == pytest.approx(0.1)


def test_a_parameter_left_out_is_zero() -> None:
    latency = LLMLatency.from_profile(profile(m={"ttft": 0.5}))
    assert latency == LLMLatency(ttft=0.5)


def test_a_file_and_its_content_give_the_same_latency(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile(m=EVERY_KIND)))
    for source in (path, str(path)):
        assert LLMLatency.from_profile(source, seed=1) == LLMLatency.from_profile(
            profile(m=EVERY_KIND), seed=1
        )


def draws(latency: LLMLatency, count: int = 20) -> list[tuple[float, ...]]:
    plans = [latency.plan(5, input_tokens=100, cached_tokens=10) for _ in range(count)]
    return [(plan.connect, plan.queue, plan.ttft, *plan.gaps) for plan in plans]


def test_the_same_seed_replays_the_same_draws_and_another_seed_does_not() -> None:
    first = draws(LLMLatency.from_profile(profile(m=EVERY_KIND), seed=7))
    assert draws(LLMLatency.from_profile(profile(m=EVERY_KIND), seed=7)) == first
    assert draws(LLMLatency.from_profile(profile(m=EVERY_KIND), seed=8)) != first


def test_each_parameter_draws_from_its_own_seed() -> None:
    same = {"lognormal": {"median": 0.1, "sigma": 0.5}}
    latency = LLMLatency.from_profile(profile(m={"connect": same, "queue": same, "ttft": same}))
    sequences = [
        [model.sample() for _ in range(5)]
        for model in (latency.connect, latency.queue, latency.ttft)
    ]
    assert len({tuple(sequence) for sequence in sequences}) == 3
    two = LLMLatency.from_profile(profile(a={"ttft": same}, b={"ttft": same}), model="a")
    other = LLMLatency.from_profile(profile(a={"ttft": same}, b={"ttft": same}), model="b")
    assert two.ttft.sample() != other.ttft.sample()  # two models are not in lockstep


def test_the_seeds_are_the_same_in_another_process() -> None:
    code = (
        "from perfkit.simulation import latency_from_profile\n"
        f"latency = latency_from_profile({profile(m=EVERY_KIND)!r}, seed=5)\n"
        "print(repr(latency.ttft.sample()))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    here = latency_from_profile(profile(m=EVERY_KIND), seed=5).ttft.sample()
    assert float(completed.stdout) == here


def test_the_reverse_writes_an_entry_that_reads_back() -> None:
    latency = LLMLatency(
        connect=Uniform(0.01, 0.02),
        queue=0.0,
        ttft=LogNormal(0.4, 0.3),
        prefill_per_token=0.0001,
        cache_read_per_token=Fixed(0.00001),
        per_token=Normal(0.02, 0.001),
    )
    entry = latency_to_profile(latency)
    assert entry["ttft"] == {"lognormal": {"median": 0.4, "sigma": 0.3}}
    json.dumps(entry)  # plain JSON
    assert LLMLatency.from_profile(profile(m=entry), seed=0) == LLMLatency(
        connect=Uniform(0.01, 0.02, seed=_seed("connect")),
        ttft=LogNormal(0.4, 0.3, seed=_seed("ttft")),
        prefill_per_token=0.0001,
        cache_read_per_token=0.00001,
        per_token=Normal(0.02, 0.001, seed=_seed("per_token")),
    )


def _seed(parameter: str) -> int:
    from perfkit.simulation._profile import derived_seed

    return derived_seed(0, "m", parameter)


def test_the_reverse_refuses_what_a_profile_cannot_describe() -> None:
    from perfkit.simulation import Replay

    with pytest.raises(ValueError, match=r"per_token: Replay\(.*cannot be written to a profile"):
        latency_to_profile(LLMLatency(per_token=Replay([0.1])))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"models": {}}, "{src}: not a latency profile (no 'perfkit_latency_profile' key)"),
        (
            {"perfkit_latency_profile": 2, "models": {"m": {}}},
            "{src}: perfkit_latency_profile is 2; this perfkit reads version 1",
        ),
        (
            {"perfkit_latency_profile": True, "models": {"m": {}}},
            "{src}: perfkit_latency_profile is True; this perfkit reads version 1",
        ),
        (
            profile(m={"ttft": {"gamma": {"k": 2}}}),
            "{src}: models.m.ttft: unknown distribution 'gamma'; allowed: fixed, lognormal, "
            "normal, uniform",
        ),
        (
            profile(m={"ttft": {"fixed": -0.1}}),
            "{src}: models.m.ttft.fixed: expected a finite number >= 0, got -0.1",
        ),
        (
            profile(m={"per_token": {"lognormal": {"median": math.nan, "sigma": 0.1}}}),
            "{src}: models.m.per_token.lognormal.median: expected a finite number >= 0, got nan",
        ),
        (
            profile(m={"per_token": {"lognormal": {"median": 0, "sigma": 0.1}}}),
            "{src}: models.m.per_token.lognormal: median must be a finite number > 0.0, got 0.0",
        ),
        (
            profile(m={"queue": {"uniform": {"low": 0.2, "high": 0.1}}}),
            "{src}: models.m.queue.uniform: high must be >= low (0.2), got 0.1",
        ),
        (
            profile(m={"queue": {"normal": {"mean": 0.2}}}),
            "{src}: models.m.queue.normal: expected exactly the fields mean, stddev; "
            "got {{'mean': 0.2}}",
        ),
        (
            profile(m={"queue": {"fixed": 1, "normal": 2}}),
            "{src}: models.m.queue: expected one distribution",
        ),
        (
            profile(m={"per_tokens": 0.1}),
            "{src}: models.m: unknown parameter 'per_tokens'; allowed: connect, queue, ttft, "
            "prefill_per_token, cache_read_per_token, per_token",
        ),
        (profile(), "{src}: 'models' must map each model's name to its parameters"),
        (
            profile(b={}, a={}),
            "{src}: the profile holds 2 models (a, b); pass model= to choose one",
        ),
        ({"perfkit_latency_profile": 1, "models": {"m": []}}, "{src}: models.m: expected"),
        (
            profile(m={"ttft": {"fixed": 10**400}}),
            "{src}: models.m.ttft.fixed: expected a finite number >= 0, got an integer too "
            "large for a float (1,329 bits)",
        ),
        (
            profile(m={"ttft": {"lognormal": {"median": 1, "sigma": 10**1000}}}),
            "{src}: models.m.ttft.lognormal.sigma: expected a finite number >= 0, got an integer "
            "too large for a float (3,322 bits)",
        ),
    ],
)
@pytest.mark.parametrize("as_file", [False, True], ids=["dict", "file"])
def test_a_bad_profile_is_named_with_its_key_and_what_is_allowed(
    tmp_path: Path, document: dict[str, Any], message: str, as_file: bool
) -> None:
    source: object = document
    src = "profile"
    if as_file:
        path = tmp_path / "profile.json"
        path.write_text(json.dumps(document))
        source, src = path, str(path)
    with pytest.raises(ValueError, match=f"^{re.escape(message.format(src=src))}"):
        LLMLatency.from_profile(source)


def test_a_model_not_in_the_profile_names_the_models_it_has() -> None:
    with pytest.raises(ValueError, match=r"^profile: no model 'c' in the profile; it has: a, b$"):
        LLMLatency.from_profile(profile(a={}, b={}), model="c")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not a latency profile: invalid JSON"),
        ("[1]", "not a latency profile: expected a JSON object"),
        ("[" * 100_000, "not a latency profile: invalid JSON (nested too deeply)"),
        ('{"perfkit_latency_profile": 1' + "0" * 5000 + "}", "not a latency profile: invalid JSON"),
    ],
)
def test_a_file_that_is_not_a_profile_is_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}: {message}')}"):
        LLMLatency.from_profile(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        LLMLatency.from_profile(tmp_path / "nope.json")
    assert raised.value.filename == str(tmp_path / "nope.json")


def test_a_seed_and_a_profile_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(TypeError, match="seed must be an int, got '1'"):
        LLMLatency.from_profile(profile(m={}), seed="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="profile must be a path to a profile file"):
        LLMLatency.from_profile(42)
