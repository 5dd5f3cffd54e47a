"""Latency profiles: the fitted latency of each model, as ``perfkit calibrate`` writes it.

A profile is JSON (a file, or the dict it holds)::

    {"perfkit_latency_profile": 1,
     "models": {"<model>": {"connect": D, "queue": D, "ttft": D, "prefill_per_token": D,
                            "cache_read_per_token": D, "per_token": D, "fit": {...}}},
     "source": {...}}

where each ``D`` is a distribution of seconds: ``{"fixed": s}``, ``{"lognormal": {"median":
s, "sigma": x}}``, ``{"normal": {"mean": s, "stddev": s}}`` or ``{"uniform": {"low": s,
"high": s}}`` (a bare number is ``fixed``). A parameter left out is zero, as in
:class:`LLMLatency`; ``fit`` (how well the fit held) and ``source`` are not read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping
from typing import Any

from perfkit.simulation._latency import (
    Fixed,
    LatencyModel,
    LLMLatency,
    LogNormal,
    Normal,
    Uniform,
)

PROFILE_KEY = "perfkit_latency_profile"
PROFILE_VERSION = 1
PARAMETERS = ("connect", "queue", "ttft", "prefill_per_token", "cache_read_per_token", "per_token")
"""The parameters of a model's entry, in the order of :class:`LLMLatency`'s request."""
NOT_READ = ("fit",)
"""Keys of a model's entry that describe the fit and are not part of the latency."""
DISTRIBUTIONS = {
    "fixed": (),
    "lognormal": ("median", "sigma"),
    "normal": ("mean", "stddev"),
    "uniform": ("low", "high"),
}
"""Each distribution a profile may name, and the fields it takes."""
MAX_FLOAT = sys.float_info.max


def latency_from_profile(profile: object, *, model: str | None = None, seed: int = 0) -> LLMLatency:
    """The :class:`LLMLatency` of ``model`` in ``profile`` (a JSON file's path, or its
    parsed content); ``model`` may be left out when the profile holds one model.

    Each random parameter gets its own seed, derived from ``seed``, the model and the
    parameter's name: the draws are independent of each other and the same on every run.

    >>> profile = {"perfkit_latency_profile": 1, "models": {"m": {
    ...     "ttft": {"lognormal": {"median": 0.4, "sigma": 0.3}}, "per_token": 0.02}}}
    >>> latency_from_profile(profile).per_token
    Fixed(0.02)
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    document, source = _load(profile)
    name, entry = _choose_model(document, model, source)
    where = f"{source}: models.{name}"
    unknown = sorted(set(entry) - set(PARAMETERS) - set(NOT_READ))
    if unknown:
        raise ValueError(
            f"{where}: unknown parameter {unknown[0]!r}; allowed: {', '.join(PARAMETERS)} "
            "(and 'fit', which is not read)"
        )
    parts = {
        parameter: distribution(
            entry[parameter],
            seed=derived_seed(seed, name, parameter),
            where=f"{where}.{parameter}",
        )
        for parameter in PARAMETERS
        if parameter in entry
    }
    return LLMLatency(**parts)


def latency_to_profile(latency: LLMLatency) -> dict[str, Any]:
    """A model's entry in a profile (without ``fit``) describing ``latency``: the reverse
    of :func:`latency_from_profile` (seeds are not written; the reader derives them)."""
    return {
        parameter: distribution_entry(getattr(latency, parameter), where=parameter)
        for parameter in PARAMETERS
    }


def distribution(spec: object, *, seed: int, where: str) -> LatencyModel:
    """The latency model a profile's distribution ``spec`` describes."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"fixed": spec}
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ValueError(
            f"{where}: expected one distribution, {{kind: parameters}} with kind one of "
            f"{', '.join(DISTRIBUTIONS)}, or a number of seconds; got {spec!r}"
        )
    [(kind, fields)] = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(
            f"{where}: unknown distribution {kind!r}; allowed: {', '.join(DISTRIBUTIONS)}"
        )
    if kind == "fixed":
        return Fixed(_value(fields, f"{where}.fixed"))
    names = DISTRIBUTIONS[kind]
    if not isinstance(fields, Mapping) or set(fields) != set(names):
        raise ValueError(
            f"{where}.{kind}: expected exactly the fields {', '.join(names)}; got {fields!r}"
        )
    first, second = (_value(fields[name], f"{where}.{kind}.{name}") for name in names)
    try:
        if kind == "lognormal":
            return LogNormal(first, second, seed=seed)
        if kind == "normal":
            return Normal(first, second, seed=seed)
        return Uniform(first, second, seed=seed)
    except ValueError as error:  # median 0, high < low: the model's own check
        raise ValueError(f"{where}.{kind}: {error}") from None


def distribution_entry(model: LatencyModel, *, where: str = "model") -> dict[str, Any]:
    """A profile's distribution for ``model``; ValueError for a model a profile cannot
    describe (a Replay, a Normal truncated above zero, a model of the user's)."""
    if type(model) is Fixed:
        return {"fixed": model.seconds}
    if type(model) is LogNormal:
        return {"lognormal": {"median": model.median, "sigma": model.sigma}}
    if type(model) is Normal and model.minimum == 0:
        return {"normal": {"mean": model.mean, "stddev": model.stddev}}
    if type(model) is Uniform:
        return {"uniform": {"low": model.low, "high": model.high}}
    raise ValueError(
        f"{where}: {model!r} cannot be written to a profile; allowed: Fixed, LogNormal, "
        "Normal (minimum 0) and Uniform"
    )


def derived_seed(seed: int, model: str, parameter: str) -> int:
    """A parameter's own seed: stable across runs and Python processes (no ``hash()``)."""
    digest = hashlib.sha256(f"{seed}\0{model}\0{parameter}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _value(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number of seconds, got {value!r}")
    if isinstance(value, int) and abs(value) > MAX_FLOAT:  # not even its repr may be printable
        raise ValueError(
            f"{where}: expected a finite number >= 0, got an integer too large for a float "
            f"({value.bit_length():,} bits)"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _load(profile: object) -> tuple[Mapping[str, Any], str]:
    """The profile's content, and how errors name it (its path, or 'profile')."""
    if isinstance(profile, Mapping):
        return profile, "profile"
    if not isinstance(profile, (str, os.PathLike)):
        raise TypeError(
            f"profile must be a path to a profile file or its parsed content (a dict), "
            f"got {profile!r}"
        )
    source = os.fspath(profile)
    try:
        with open(source, encoding="utf-8") as file:
            document = json.load(file)
    except UnicodeDecodeError:
        raise ValueError(f"{source}: not a latency profile: not UTF-8 text") from None
    except RecursionError:
        raise ValueError(
            f"{source}: not a latency profile: invalid JSON (nested too deeply)"
        ) from None
    except ValueError as error:  # JSONDecodeError, or an integer of over 4,300 digits
        raise ValueError(f"{source}: not a latency profile: invalid JSON ({error})") from None
    if not isinstance(document, Mapping):
        raise ValueError(f"{source}: not a latency profile: expected a JSON object")
    return document, str(source)


def _choose_model(
    document: Mapping[str, Any], model: str | None, source: str
) -> tuple[str, Mapping[str, Any]]:
    if PROFILE_KEY not in document:
        raise ValueError(f"{source}: not a latency profile (no {PROFILE_KEY!r} key)")
    version = document[PROFILE_KEY]
    if version != PROFILE_VERSION or isinstance(version, bool):
        raise ValueError(
            f"{source}: {PROFILE_KEY} is {version!r}; this perfkit reads version {PROFILE_VERSION}"
        )
    models = document.get("models")
    if not isinstance(models, Mapping) or not models:
        raise ValueError(f"{source}: 'models' must map each model's name to its parameters")
    names = ", ".join(sorted(models))
    if model is None:
        if len(models) > 1:
            raise ValueError(
                f"{source}: the profile holds {len(models)} models ({names}); pass model= "
                "to choose one"
            )
        [model] = models
    elif model not in models:
        raise ValueError(f"{source}: no model {model!r} in the profile; it has: {names}")
    entry = models[model]
    if not isinstance(entry, Mapping):
        raise ValueError(f"{source}: models.{model}: expected an object of parameters")
    return model, entry
