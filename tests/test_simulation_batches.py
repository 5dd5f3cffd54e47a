"""Message batches: the store's processing model, and the endpoints through the anthropic SDK."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anthropic
import pytest

from perfkit import VirtualClock
from perfkit.simulation import AnthropicSimulator, Fault, LLMLatency, Reply
from perfkit.simulation.anthropic._batches import (
    EXPIRY_SECONDS,
    Answer,
    BatchStore,
    Refused,
    check_requests,
)

OK: dict[str, Any] = {"type": "succeeded", "message": {"id": "msg"}}
FAILED: dict[str, Any] = {
    "type": "errored",
    "error": {"type": "error", "error": {"type": "api_error", "message": "boom"}},
}


def answers(*durations: float, result: dict[str, Any] = OK) -> list[Answer]:
    return [Answer(f"r{index}", result, duration) for index, duration in enumerate(durations)]


def results(store: BatchStore, batch_id: str) -> dict[str, str]:
    lines = store.results(batch_id).decode().splitlines()
    return {line["custom_id"]: line["result"]["type"] for line in map(json.loads, lines)}


# -- the store ---------------------------------------------------------------------------


def test_a_batch_ends_when_its_last_request_finishes_on_the_workers() -> None:
    clock = VirtualClock()
    store = BatchStore(clock, concurrency=2)
    batch = store.create(answers(3.0, 1.0, 1.0, 2.0))
    # r0 on worker A (0-3); r1 on B (0-1), r2 on B (1-2), r3 on B (2-4).
    assert batch.ends_at == 4.0
    clock.advance(3.999)
    view = store.view(batch.id)
    assert view["processing_status"] == "in_progress"
    assert view["request_counts"]["processing"] == 4
    assert view["results_url"] is None
    assert view["ended_at"] is None
    clock.advance(0.001)
    view = store.view(batch.id)
    assert view["processing_status"] == "ended"
    assert view["request_counts"] == {
        "processing": 0,
        "succeeded": 4,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert view["results_url"].endswith(f"/v1/messages/batches/{batch.id}/results")
    assert view["ended_at"] == store.timestamp(4.0)


def test_results_come_in_the_order_requests_finished() -> None:
    clock = VirtualClock()
    store = BatchStore(clock, concurrency=2)
    batch = store.create(answers(3.0, 1.0))
    clock.advance(3.0)
    lines = store.results(batch.id).decode().splitlines()
    assert [json.loads(line)["custom_id"] for line in lines] == ["r1", "r0"]


def test_cancel_lets_requests_in_progress_finish_and_cancels_the_rest() -> None:
    clock = VirtualClock()
    store = BatchStore(clock, concurrency=1)
    batch = store.create(answers(2.0, 2.0, 2.0))
    clock.advance(3.0)  # r0 done, r1 in progress (2-4), r2 not started
    view = store.cancel(batch.id)
    assert view["processing_status"] == "canceling"
    assert view["cancel_initiated_at"] == store.timestamp(3.0)
    clock.advance(1.0)
    assert store.view(batch.id)["processing_status"] == "ended"
    assert results(store, batch.id) == {"r0": "succeeded", "r1": "succeeded", "r2": "canceled"}
    assert store.view(batch.id)["request_counts"]["canceled"] == 1


def test_a_canceled_batch_with_nothing_in_progress_ends_at_once() -> None:
    clock = VirtualClock()
    store = BatchStore(clock, concurrency=1)
    batch = store.create(answers(2.0, 2.0))
    clock.advance(2.0)
    assert store.cancel(batch.id)["processing_status"] == "ended"
    assert results(store, batch.id) == {"r0": "succeeded", "r1": "canceled"}


def test_requests_not_finished_within_24_hours_expire() -> None:
    clock = VirtualClock()
    store = BatchStore(clock, concurrency=1)
    batch = store.create(answers(EXPIRY_SECONDS - 1, 2.0))
    clock.advance(EXPIRY_SECONDS)
    view = store.view(batch.id)
    assert view["processing_status"] == "ended"
    assert view["ended_at"] == view["expires_at"]
    assert results(store, batch.id) == {"r0": "succeeded", "r1": "expired"}


def test_errored_answers_are_counted_as_errored() -> None:
    clock = VirtualClock()
    store = BatchStore(clock)
    batch = store.create([*answers(1.0), Answer("bad", FAILED, 1.0)])
    clock.advance(1.0)
    assert store.view(batch.id)["request_counts"]["errored"] == 1
    assert results(store, batch.id)["bad"] == "errored"


def test_an_ended_batch_cannot_be_canceled_and_one_in_progress_cannot_be_deleted() -> None:
    clock = VirtualClock()
    store = BatchStore(clock)
    batch = store.create(answers(1.0))
    with pytest.raises(Refused, match="still in_progress") as deleting:
        store.delete(batch.id)
    assert (deleting.value.status, deleting.value.error_type) == (400, "invalid_request_error")
    with pytest.raises(Refused, match="not ended yet"):
        store.results(batch.id)
    clock.advance(1.0)
    with pytest.raises(Refused, match="already ended"):
        store.cancel(batch.id)
    assert store.delete(batch.id) == {"id": batch.id, "type": "message_batch_deleted"}
    with pytest.raises(Refused, match="not found") as missing:
        store.view(batch.id)
    assert (missing.value.status, missing.value.error_type) == (404, "not_found_error")


def test_the_list_is_newest_first_and_pages_both_ways() -> None:
    store = BatchStore(VirtualClock())
    ids = [store.create(answers(1.0)).id for _ in range(5)]
    newest_first = ids[::-1]
    first = store.page(limit=2)
    assert [b["id"] for b in first["data"]] == newest_first[:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (
        newest_first[0],
        newest_first[1],
        True,
    )
    last = store.page(limit=2, after_id=newest_first[3])
    assert [b["id"] for b in last["data"]] == newest_first[4:]
    assert last["has_more"] is False
    back = store.page(limit=2, before_id=newest_first[4])
    assert [b["id"] for b in back["data"]] == newest_first[2:4]
    assert back["has_more"] is True
    assert store.page(limit=2, before_id=newest_first[2])["has_more"] is False


@pytest.mark.parametrize("limit", [0, 1001, "5", True])
def test_a_limit_outside_1_to_1000_is_refused(limit: Any) -> None:
    with pytest.raises(Refused, match=r"limit: must be an integer from 1 to 1000"):
        BatchStore(VirtualClock()).page(limit=limit)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"requests": []}, "requests: must be a non-empty list"),
        ({"requests": [{"custom_id": "a"}]}, r"requests.0.params: Field required"),
        ({"requests": [{"custom_id": "a b", "params": {}}]}, "requests.0.custom_id: must be"),
        ({"requests": [{"custom_id": "x" * 65, "params": {}}]}, "requests.0.custom_id"),
        (
            {"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]},
            "requests.1.custom_id: 'a' is not unique",
        ),
        ({"requests": [{"custom_id": "a", "params": {}}], "extra": 1}, "extra: Extra inputs"),
    ],
)
def test_a_malformed_batch_is_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(Refused, match=message) as refused:
        check_requests(body)
    assert (refused.value.status, refused.value.error_type) == (400, "invalid_request_error")


# -- through the SDK -----------------------------------------------------------------------

MODEL = "claude-simulated"
TLS = ssl.create_default_context()
LATENCY = LLMLatency(ttft=0.5, per_token=0.1)


def sdk() -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test", http_client=anthropic.DefaultHttpxClient(verify=TLS))


def async_sdk() -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="test", http_client=anthropic.DefaultAsyncHttpxClient(verify=TLS)
    )


def request(custom_id: str, question: str = "Hi", **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": question}],
            **params,
        },
    }


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator(clock=clock, latency=LATENCY) as sim:
        yield sim


def test_a_batch_end_to_end(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    sim.batches.concurrency = 1
    sim.enqueue(Reply.of_tokens(3), Fault.rate_limit(), Reply.text("second"))
    with sdk() as client:
        created = client.messages.batches.create(
            requests=[request("first"), request("failed"), request("second")]
        )
        assert created.id.startswith("msgbatch_")
        assert created.processing_status == "in_progress"
        assert created.request_counts.processing == 3
        assert created.results_url is None
        with pytest.raises(anthropic.AnthropicError, match="finished processing"):
            client.messages.batches.results(created.id)
        # One worker: 3 tokens (0.5 + 2 x 0.1), then the fault, then 1 token (0.5).
        clock.advance(1.0)
        assert client.messages.batches.retrieve(created.id).processing_status == "in_progress"
        while client.messages.batches.retrieve(created.id).processing_status != "ended":
            clock.advance(0.1)
        ended = client.messages.batches.retrieve(created.id)
        results = {
            line.custom_id: line.result for line in client.messages.batches.results(ended.id)
        }
    assert ended.ended_at is not None
    assert ended.ended_at > ended.created_at
    # 0.7 s for the first, no time for the fault (no connect latency), 0.5 s for the last
    assert ended.ended_at - ended.created_at == timedelta(seconds=0.7 + 0.5)
    assert ended.request_counts.succeeded == 2
    assert ended.request_counts.errored == 1
    assert ended.results_url is not None
    first, failed, second = results["first"], results["failed"], results["second"]
    assert first.type == "succeeded"
    assert first.message.content[0].text == "token token token"  # type: ignore[union-attr]
    assert first.message.usage.output_tokens == 3  # type: ignore[union-attr]
    assert second.type == "succeeded"
    assert second.message.content[0].text == "second"  # type: ignore[union-attr]
    assert failed.type == "errored"
    assert failed.error.error.type == "rate_limit_error"  # type: ignore[union-attr]


def test_a_batch_result_is_what_messages_would_answer(sim: AnthropicSimulator) -> None:
    question = "Name three rivers"
    with sdk() as client:
        direct = client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": question}]
        )
        batch = client.messages.batches.create(requests=[request("q", question)])
        sim.clock.advance(60.0)
        (line,) = list(client.messages.batches.results(batch.id))
    assert line.result.type == "succeeded"
    message = line.result.message
    assert message.content == direct.content
    assert message.usage.input_tokens == direct.usage.input_tokens
    assert message.model == direct.model


def test_an_invalid_request_in_a_batch_is_errored_not_the_batch(sim: AnthropicSimulator) -> None:
    with sdk() as client:
        batch = client.messages.batches.create(
            requests=[request("ok"), request("bad", messages=[])]
        )
        sim.clock.advance(60.0)
        results = {
            line.custom_id: line.result for line in client.messages.batches.results(batch.id)
        }
    assert results["ok"].type == "succeeded"
    assert results["bad"].type == "errored"
    assert results["bad"].error.error.type == "invalid_request_error"  # type: ignore[union-attr]


def test_cancel_a_batch_through_the_sdk(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    sim.batches.concurrency = 1
    with sdk() as client:
        batch = client.messages.batches.create(requests=[request(f"r{i}") for i in range(4)])
        clock.advance(0.1)  # r0 in progress
        canceling = client.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling"
        assert canceling.cancel_initiated_at is not None
        clock.advance(60.0)
        ended = client.messages.batches.retrieve(batch.id)
        results = {
            line.custom_id: line.result.type for line in client.messages.batches.results(batch.id)
        }
        deleted = client.messages.batches.delete(batch.id)
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (1, 3)
    assert results == {"r0": "succeeded", "r1": "canceled", "r2": "canceled", "r3": "canceled"}
    assert deleted.type == "message_batch_deleted"


def test_batches_async_and_list_pagination(sim: AnthropicSimulator, clock: VirtualClock) -> None:
    async def main() -> tuple[list[str], list[str], list[str]]:
        async with async_sdk() as client:
            created = [
                (await client.messages.batches.create(requests=[request(f"b{i}")])).id
                for i in range(5)
            ]
            listed = [batch.id async for batch in client.messages.batches.list(limit=2)]
            await clock.asleep(60.0)
            results = [
                line.result.type async for line in await client.messages.batches.results(created[0])
            ]
        return created, listed, results

    created, listed, results = clock.run(main())
    assert listed == created[::-1]  # newest first, through three pages
    assert results == ["succeeded"]


@pytest.mark.parametrize(
    "call",
    [
        lambda client: client.messages.batches.retrieve("msgbatch_nope"),
        lambda client: client.messages.batches.cancel("msgbatch_nope"),
        lambda client: client.messages.batches.delete("msgbatch_nope"),
    ],
)
def test_an_unknown_batch_is_404_not_found(sim: AnthropicSimulator, call: Any) -> None:
    with sdk() as client, pytest.raises(anthropic.NotFoundError) as missing:
        call(client)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "msgbatch_nope" in missing.value.message


def test_a_malformed_batch_is_400(sim: AnthropicSimulator) -> None:
    with sdk() as client, pytest.raises(anthropic.BadRequestError, match="custom_id"):
        client.messages.batches.create(requests=[request("a"), request("a")])
    assert sim.batches.page()["data"] == []


def test_reset_forgets_the_batches(sim: AnthropicSimulator) -> None:
    with sdk() as client:
        batch = client.messages.batches.create(requests=[request("a")])
        sim.reset()
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve(batch.id)
        assert client.messages.batches.list().data == []


def test_stream_false_is_accepted_in_a_batch_and_stream_true_is_errored(
    sim: AnthropicSimulator,
) -> None:
    with sdk() as client:
        batch = client.messages.batches.create(
            requests=[request("plain", stream=False), request("streamed", stream=True)]
        )
        sim.clock.advance(60.0)
        results = {
            line.custom_id: line.result for line in client.messages.batches.results(batch.id)
        }
    assert results["plain"].type == "succeeded"
    assert results["streamed"].type == "errored"
    assert "stream" in results["streamed"].error.error.message  # type: ignore[union-attr]


def test_the_log_holds_the_batch_call_and_output_tokens_count_its_requests(
    sim: AnthropicSimulator,
) -> None:
    sim.enqueue(Reply.of_tokens(4), Reply.of_tokens(2))
    with sdk() as client:
        client.messages.batches.create(requests=[request("a"), request("b")])
    assert [logged.url for logged in sim.requests] == [
        "https://api.anthropic.com/v1/messages/batches"
    ]
    assert sim.output_tokens == 4 + 2
