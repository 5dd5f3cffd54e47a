"""The simulated API's model catalog and its endpoints besides messages and batches."""

from __future__ import annotations

import re
import typing

from anthropic.types import Model
from anthropic.types import ModelInfo as SDKModelInfo

from perfkit.simulation.anthropic._models import MODELS, model_id, resolve

SDK_MODEL_NAMES: tuple[str, ...] = typing.get_args(typing.get_args(Model)[0])
DATED = re.compile(r"-\d{8}$")


def test_the_catalog_knows_every_model_the_sdk_names() -> None:
    assert all(resolve(name) is not None for name in SDK_MODEL_NAMES)
    assert {model.id for model in MODELS} <= set(SDK_MODEL_NAMES)


def test_an_alias_resolves_to_the_dated_id_the_sdk_lists_beside_it() -> None:
    for name in SDK_MODEL_NAMES:
        dated = [other for other in SDK_MODEL_NAMES if DATED.sub("", other) == name != other]
        assert model_id(name) == (dated[0] if dated else name)
    assert model_id("claude-opus-4-5") == "claude-opus-4-5-20251101"


def test_an_unknown_model_name_is_echoed() -> None:
    assert resolve("claude-simulated") is None
    assert model_id("claude-simulated") == "claude-simulated"


def test_each_model_is_a_valid_sdk_model_info() -> None:
    for model in MODELS:
        parsed = SDKModelInfo.model_validate(model.to_json())
        assert parsed.id == model.id
        assert parsed.max_tokens == model.max_output_tokens
        assert parsed.max_input_tokens == model.context_window
        assert 0 < model.min_cacheable_tokens < model.context_window
