"""Hostile review of count_tokens, models and message batches through the anthropic SDK."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from test_simulation_validation import _sdk_cases

from perfkit import VirtualClock
from perfkit.simulation import AnthropicSimulator, LLMLatency

MODEL = "claude-haiku-4-5"


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator(clock=clock, latency=LLMLatency(ttft=0.4, per_token=0.01)) as sim:
        yield sim


def _count_fields(beta: bool) -> set[str]:
    if beta:
        from anthropic.types.beta.message_count_tokens_params import MessageCountTokensParams
    else:
        from anthropic.types.message_count_tokens_params import MessageCountTokensParams
    return set(typing.get_type_hints(MessageCountTokensParams)) - {"betas"}


def _shapes() -> Iterator[Any]:
    for case in _sdk_cases():
        bodies, beta = case.values[0], case.values[1]
        yield pytest.param(bodies, beta, id=case.id)


@pytest.mark.slow
@pytest.mark.parametrize(("bodies", "beta"), list(_shapes()))
def test_count_tokens_equals_the_prompt_create_reports_for_every_sdk_shape(
    sim: AnthropicSimulator, client: anthropic.Anthropic, bodies: list[dict[str, Any]], beta: bool
) -> None:
    """Every shape the SDK declares (block types, tools, top-level fields), with every
    field ``count_tokens`` takes: its count is the whole prompt ``create`` reports
    (input, cache creation and cache read tokens)."""
    resource: Any = client.beta.messages if beta else client.messages
    betas = {"betas": ["a-beta-2025-01-01"]} if beta else {}
    fields = _count_fields(beta)
    for body in bodies:
        counted = resource.count_tokens(
            **{name: value for name, value in body.items() if name in fields}, **betas
        )
        usage = resource.create(**body, **betas).usage
        prompt = (
            usage.input_tokens
            + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0)
        )
        assert counted.input_tokens == prompt, body


def _request(custom_id: str, text: str = "Hi") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": text}],
        },
    }


def test_a_batch_body_over_the_size_limit_is_413_request_too_large(
    sim: AnthropicSimulator, client: anthropic.Anthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch API takes at most 256 MB per creation request; above it the API answers
    413 ``request_too_large`` (the SDK's ``ContentTooLargeError``). The limit is lowered
    here so that the test sends kilobytes, not 256 MB."""
    from perfkit.simulation.anthropic import _batches

    assert _batches.MAX_BATCH_BYTES == 256 * 1024 * 1024
    monkeypatch.setattr(_batches, "MAX_BATCH_BYTES", 2_000)
    small = client.messages.batches.create(requests=[_request("a")])
    assert small.request_counts.processing == 1
    with pytest.raises(anthropic.ContentTooLargeError) as raised:
        client.messages.batches.create(requests=[_request("a", "x" * 3_000)])
    assert raised.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    assert "2000 bytes" in raised.value.message
    assert len(sim.batches.page()["data"]) == 1


def test_output_tokens_count_only_the_batch_requests_that_are_processed(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    """``sim.output_tokens`` counts what was generated: a batch request canceled before it
    started, or expired, produced nothing."""
    from perfkit.simulation import Reply

    sim.batches.concurrency = 1
    sim.respond_with(Reply.of_tokens(10))
    # One worker, 0.4 s + 10 x 0.01 s each: r0 runs 0-0.5 s, r1 0.5-1.0 s, the rest later.
    batch = client.messages.batches.create(requests=[_request(f"r{n}") for n in range(6)])
    assert sim.output_tokens == 60
    clock.advance(0.75)  # r0 done, r1 in progress: both finish; r2-r5 are canceled
    client.messages.batches.cancel(batch.id)
    clock.advance(10.0)
    ended = client.messages.batches.retrieve(batch.id)
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (2, 4)
    assert sim.output_tokens == 20
    # A second cancel, of an ended batch, is refused and changes nothing.
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.cancel(batch.id)
    assert sim.output_tokens == 20


def test_output_tokens_leave_out_batch_requests_that_expire(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    from perfkit.simulation import Reply

    sim.batches.concurrency = 1
    sim.enqueue(Reply.of_tokens(5), Reply.of_tokens(7, latency=LLMLatency(ttft=86_400.0)))
    client.messages.batches.create(requests=[_request("quick"), _request("too-slow")])
    assert sim.output_tokens == 5


def test_a_batch_seen_at_every_moment_is_consistent(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    """Stepping the clock through a batch that is canceled midway: the counts always add up
    to the requests, stay all ``processing`` until it ends, and the timestamps follow the
    simulator's clock (RFC 3339, parsed by the SDK)."""
    from datetime import timedelta

    sim.batches.concurrency = 2
    batch = client.messages.batches.create(requests=[_request(f"r{n}") for n in range(7)])
    seen = []
    for step in range(40):
        if step == 12:
            client.messages.batches.cancel(batch.id)
        view = client.messages.batches.retrieve(batch.id)
        counts = view.request_counts
        total = counts.processing + counts.succeeded + counts.errored + counts.canceled
        assert total + counts.expired == 7
        assert counts.processing in (0, 7)
        assert (view.processing_status == "ended") == (counts.processing == 0)
        assert view.created_at == batch.created_at
        assert view.expires_at - view.created_at == timedelta(hours=24)
        seen.append(view.processing_status)
        clock.advance(0.1)
    assert seen[0] == "in_progress"
    assert "canceling" in seen
    assert seen[-1] == "ended"
    lines = list(client.messages.batches.results(batch.id))
    assert sorted(line.custom_id for line in lines) == [f"r{n}" for n in range(7)]
    kinds = [line.result.type for line in lines]
    assert kinds.count("canceled") == view.request_counts.canceled > 0
    assert all(line.model_extra in (None, {}) for line in lines)


def test_list_paging_edges_through_the_sdk(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    for _ in range(3):
        client.messages.batches.create(requests=[_request("a")])
    for limit in (0, 1001):
        with pytest.raises(anthropic.BadRequestError, match=f"got {limit}"):
            client.messages.batches.list(limit=limit)
    unknown = client.messages.batches.list(after_id="msgbatch_unknown")
    assert (unknown.data, unknown.has_more) == ([], False)
    assert len(list(client.messages.batches.list(limit=1))) == 3  # auto-paging, one by one
    models = list(client.models.list(limit=1))
    assert len({model.id for model in models}) == len(models) > 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": MODEL, "messages": "Hi"}, "messages: must be a list"),
        ({"messages": [{"role": "user", "content": "Hi"}]}, "model: Field required"),
        ({"model": MODEL}, "messages: Field required"),
    ],
    ids=["messages-not-a-list", "no-model", "no-messages"],
)
def test_a_lenient_count_tokens_refuses_what_a_lenient_create_refuses(
    clock: VirtualClock, client: anthropic.Anthropic, body: dict[str, Any], message: str
) -> None:
    """With ``strict=False``, count_tokens keeps the checks ``messages.create`` keeps
    (less ``max_tokens``, which it does not take): a count for a request create refuses
    would equal no ``usage.input_tokens``."""
    with AnthropicSimulator(clock=clock, strict=False):  # raw posts: the SDK checks too
        with pytest.raises(anthropic.BadRequestError, match=message):
            client.post("/v1/messages", body={**body, "max_tokens": 16}, cast_to=object)
        with pytest.raises(anthropic.BadRequestError, match=message):
            client.post("/v1/messages/count_tokens", body=body, cast_to=object)
