"""Message batches: the store's processing model, and the endpoints through the anthropic SDK."""

from __future__ import annotations

import json
from typing import Any

import pytest

from perfkit import VirtualClock
from perfkit.simulation.anthropic._batches import (
    EXPIRY_SECONDS,
    Answer,
    BatchError,
    BatchStore,
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
    with pytest.raises(BatchError, match="still in_progress") as deleting:
        store.delete(batch.id)
    assert (deleting.value.status, deleting.value.error_type) == (400, "invalid_request_error")
    with pytest.raises(BatchError, match="not ended yet"):
        store.results(batch.id)
    clock.advance(1.0)
    with pytest.raises(BatchError, match="already ended"):
        store.cancel(batch.id)
    assert store.delete(batch.id) == {"id": batch.id, "type": "message_batch_deleted"}
    with pytest.raises(BatchError, match="not found") as missing:
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
    with pytest.raises(BatchError, match=r"limit: must be an integer from 1 to 1000"):
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
    with pytest.raises(BatchError, match=message) as refused:
        check_requests(body)
    assert (refused.value.status, refused.value.error_type) == (400, "invalid_request_error")
