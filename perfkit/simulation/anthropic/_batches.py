"""Message batches on the simulator's clock: creation, status, cancellation and results.

Pure logic, independent of HTTP: the simulator answers each request of a batch when the
batch is created (with its scripts, responder or default reply, as ``POST /v1/messages``
would) and hands this store each answer with its modeled duration. The store schedules
them and tells, at any time of its clock, what the API would show.

The processing model: a batch's requests start in order on ``concurrency`` workers, each
as soon as one is free, and each takes its modeled duration (the simulator uses the
reply's total modeled latency). The batch ends when its last request finishes, or at
``expires_at`` (24 hours after creation), when the requests not finished yet expire.
Cancelling lets the requests in progress finish (the API's "in-progress,
non-interruptible requests") and cancels those not started; the batch is ``canceling``
until the last of them finishes. The output tokens a batch generates are those of the
requests it processes: a request canceled before it started, or expired, generated none.

Shapes follow the installed SDK (``anthropic/types/messages/message_batch*.py``,
``deleted_message_batch.py``, ``resources/messages/batches.py``): request counts stay
all ``processing`` until processing ends; results are JSON Lines of
``{"custom_id", "result": {"type": "succeeded", "message"} | {"type": "errored", "error"}
| {"type": "canceled"} | {"type": "expired"}}``, available once the batch has ended, in
the order the requests finished (the API promises no order); a batch can be deleted only
once it has ended. The list is newest first, paged with ``limit`` (1 to 1,000, 20 by
default), ``after_id`` and ``before_id``, as ``anthropic/pagination.py`` reads it.

No recording shows the API's answer to cancelling an ended batch, deleting one in
progress or asking for results too early: the store answers each with a 400
``invalid_request_error`` naming the batch and its status (the SDK itself refuses the
last, seeing no ``results_url``).
"""

from __future__ import annotations

import heapq
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from perfkit._clock import Clock
from perfkit._pricing import Usage

DEFAULT_CONCURRENCY = 8
"""Requests of one batch processed at once by default (a modeling choice: the API does
not publish its batch throughput)."""

EXPIRY_SECONDS = 24 * 60 * 60
"""A batch expires 24 hours after creation (``MessageBatch.expires_at``)."""

DEFAULT_ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
"""The date and time shown for the clock's time 0, by default."""

MAX_REQUESTS = 100_000
"""The most requests one batch may hold (the batch processing guide's limit)."""

MAX_BATCH_BYTES = 256 * 1024 * 1024
"""The largest batch creation body, in bytes (the batch processing guide: "100,000
Message requests or 256 MB in size, whichever is reached first"). Above it the API
answers 413 ``request_too_large`` (the SDK's ``ContentTooLargeError``, status 413 in
``anthropic/_exceptions.py``)."""

DEFAULT_LIMIT, MAX_LIMIT = 20, 1_000
"""``limit`` of a list call: 20 by default, from 1 to 1,000 (``BatchListParams``)."""

_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


class Refused(Exception):
    """A request the API refuses: its status, error type and message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class Answer:
    """How one request of a batch is answered, and how long it takes to process.

    ``result`` is the result object of a finished request: ``{"type": "succeeded",
    "message": {...}}`` or ``{"type": "errored", "error": {...}}``."""

    custom_id: str
    result: Mapping[str, Any]
    duration: float
    output_tokens: int = 0
    """The tokens the request generates, if it is processed."""
    model: str = ""
    usage: Usage | None = None
    """What the request costs, if it is processed (charged at the batch discount)."""


@dataclass
class _Scheduled:
    answer: Answer
    start: float
    finish: float


@dataclass
class Batch:
    """One batch: its answers scheduled on the clock, and when it was canceled."""

    id: str
    created: float
    scheduled: list[_Scheduled]
    cancel_at: float | None = None
    results_url: str = ""
    ends_at: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.ends_at = self._end_time()

    @property
    def expires(self) -> float:
        return self.created + EXPIRY_SECONDS

    def _end_time(self) -> float:
        finishes = [s.finish for s in self.scheduled if self._processed(s)]
        if self.cancel_at is not None:
            return max([self.cancel_at, *finishes])
        if len(finishes) < len(self.scheduled):  # the rest expire
            return self.expires
        return max(finishes, default=self.created)

    def _processed(self, item: _Scheduled) -> bool:
        """Whether ``item`` runs to its end: it starts before any cancellation, and
        finishes before the batch expires."""
        if self.cancel_at is not None and item.start >= self.cancel_at:
            return False
        return item.finish <= self.expires

    def cancel(self, now: float) -> None:
        self.cancel_at = now
        self.ends_at = self._end_time()

    def ended(self, now: float) -> bool:
        return now >= self.ends_at

    def status(self, now: float) -> str:
        if self.ended(now):
            return "ended"
        return "canceling" if self.cancel_at is not None else "in_progress"

    def result_of(self, item: _Scheduled) -> Mapping[str, Any]:
        if self._processed(item):
            return item.answer.result
        return {"type": "canceled" if self.cancel_at is not None else "expired"}

    def output_tokens(self) -> int:
        """The output tokens of the requests processed (not canceled or expired)."""
        return sum(item.answer.output_tokens for item in self.scheduled if self._processed(item))

    def charged(self) -> list[Answer]:
        """The answers of the requests processed that cost something."""
        return [
            s.answer for s in self.scheduled if s.answer.usage is not None and self._processed(s)
        ]

    def request_counts(self, now: float) -> dict[str, int]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if not self.ended(now):
            counts["processing"] = len(self.scheduled)
            return counts
        for item in self.scheduled:
            counts[str(self.result_of(item)["type"])] += 1
        return counts

    def results(self) -> list[dict[str, Any]]:
        """Each request's result line, in the order the requests finished."""
        ordered = sorted(
            self.scheduled,
            key=lambda s: s.finish if self._processed(s) else self.ends_at,
        )
        return [{"custom_id": s.answer.custom_id, "result": self.result_of(s)} for s in ordered]


class BatchStore:
    """The batches created so far, on ``clock``.

    >>> from perfkit import VirtualClock
    >>> clock = VirtualClock()
    >>> store = BatchStore(clock, concurrency=1)
    >>> ok = {"type": "succeeded", "message": {}}
    >>> batch = store.create([Answer("a", ok, 2.0), Answer("b", ok, 3.0)])
    >>> store.view(batch.id)["processing_status"]
    'in_progress'
    >>> clock.advance(5.0)
    >>> store.view(batch.id)["processing_status"]
    'ended'
    """

    def __init__(
        self,
        clock: Clock,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        origin: datetime = DEFAULT_ORIGIN,
        base_url: str = "https://api.anthropic.com",
        on_output: Callable[[int], None] | None = None,
        on_charge: Callable[[str, Usage], None] | None = None,
    ) -> None:
        """``on_output(tokens)`` is told the output tokens generated: those of the requests
        a new batch will process, and (negative) those a cancellation leaves unprocessed;
        ``on_charge(model, usage)`` is told the same requests' usage (negated when
        refunded)."""
        self.clock = clock
        self.on_output = on_output
        self.on_charge = on_charge
        self.concurrency = concurrency
        self.origin = origin
        self.base_url = base_url
        self._batches: dict[str, Batch] = {}
        self._created = 0
        self._lock = threading.Lock()

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {value!r}")
        self._concurrency = value

    def clear(self) -> None:
        """Forget every batch."""
        with self._lock:
            self._batches.clear()

    def create(self, answers: Sequence[Answer]) -> Batch:
        """A new batch of ``answers``, processing from now."""
        now = self.clock.now()
        scheduled = _schedule(answers, now, self._concurrency)
        with self._lock:
            self._created += 1
            batch_id = f"msgbatch_sim_{self._created:06d}"
            batch = Batch(
                batch_id,
                now,
                scheduled,
                results_url=f"{self.base_url}/v1/messages/batches/{batch_id}/results",
            )
            self._batches[batch_id] = batch
            self._output(batch.output_tokens())
            self._charge(batch.charged(), 1)
        return batch

    def view(self, batch_id: str) -> dict[str, Any]:
        """The batch as ``GET /v1/messages/batches/{id}`` shows it now."""
        return self._view(self._get(batch_id), self.clock.now())

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Cancel the batch (``POST .../cancel``): refused once it has ended."""
        now = self.clock.now()
        with self._lock:
            batch = self._get(batch_id)
            if batch.ended(now):
                raise Refused(
                    400,
                    "invalid_request_error",
                    f"Message Batch {batch_id} has already ended and cannot be canceled.",
                )
            if batch.cancel_at is None:
                before, charged = batch.output_tokens(), batch.charged()
                batch.cancel(now)
                self._output(batch.output_tokens() - before)
                kept = {id(answer) for answer in batch.charged()}
                self._charge([a for a in charged if id(a) not in kept], -1)
        return self._view(batch, now)

    def _output(self, tokens: int) -> None:
        if tokens and self.on_output is not None:
            self.on_output(tokens)

    def _charge(self, answers: Sequence[Answer], sign: int) -> None:
        if self.on_charge is None:
            return
        for answer in answers:
            assert answer.usage is not None
            self.on_charge(answer.model, answer.usage if sign > 0 else -answer.usage)

    def delete(self, batch_id: str) -> dict[str, Any]:
        """Delete an ended batch (``DELETE .../{id}``); one still processing is refused."""
        now = self.clock.now()
        with self._lock:
            batch = self._get(batch_id)
            if not batch.ended(now):
                raise Refused(
                    400,
                    "invalid_request_error",
                    f"Message Batch {batch_id} is still {batch.status(now)}: only a batch "
                    "that has ended can be deleted; cancel it first.",
                )
            del self._batches[batch_id]
        return {"id": batch_id, "type": "message_batch_deleted"}

    def results(self, batch_id: str) -> bytes:
        """The batch's results as JSON Lines, once it has ended."""
        now = self.clock.now()
        batch = self._get(batch_id)
        if not batch.ended(now):
            raise Refused(
                400,
                "invalid_request_error",
                f"Message Batch {batch_id} has not ended yet ({batch.status(now)}): "
                "its results are available once processing ends.",
            )
        return b"".join(
            json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in batch.results()
        )

    def page(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        after_id: str | None = None,
        before_id: str | None = None,
    ) -> dict[str, Any]:
        """A page of the list, newest first: the ``limit`` batches after ``after_id``, or
        the ``limit`` batches just before ``before_id``, or the first ``limit``."""
        now = self.clock.now()
        with self._lock:
            newest_first = list(reversed(self._batches.values()))
        items, has_more = paginate(
            newest_first, limit=limit, after_id=after_id, before_id=before_id, key=_batch_id
        )
        return page_body([self._view(batch, now) for batch in items], has_more)

    def _get(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise Refused(404, "not_found_error", f"Message Batch {batch_id!r} not found.")
        return batch

    def _view(self, batch: Batch, now: float) -> dict[str, Any]:
        ended = batch.ended(now)
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.status(now),
            "request_counts": batch.request_counts(now),
            "ended_at": self.timestamp(batch.ends_at) if ended else None,
            "created_at": self.timestamp(batch.created),
            "expires_at": self.timestamp(batch.expires),
            "archived_at": None,
            "cancel_initiated_at": (
                self.timestamp(batch.cancel_at) if batch.cancel_at is not None else None
            ),
            "results_url": batch.results_url if ended else None,
        }

    def timestamp(self, at: float) -> str:
        """The RFC 3339 date and time of clock time ``at``, as the API writes them."""
        moment = self.origin + timedelta(seconds=at)
        return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _batch_id(batch: Batch) -> str:
    return batch.id


def _schedule(answers: Sequence[Answer], now: float, concurrency: int) -> list[_Scheduled]:
    """Each answer's start and finish: in order, on ``concurrency`` workers."""
    free_at = [now] * min(concurrency, max(len(answers), 1))
    heapq.heapify(free_at)
    scheduled = []
    for answer in answers:
        start = heapq.heappop(free_at)
        finish = round(start + answer.duration, 6)
        heapq.heappush(free_at, finish)
        scheduled.append(_Scheduled(answer, start, finish))
    return scheduled


def paginate(
    items: Sequence[Any],
    *,
    limit: int,
    after_id: str | None,
    before_id: str | None,
    key: Any,
) -> tuple[list[Any], bool]:
    """One page of ``items`` (in list order) and whether more lie beyond it in the
    direction of travel, as the API's ``limit``/``after_id``/``before_id`` paging does.
    An unknown cursor id gives an empty page."""
    check_limit(limit)
    if after_id is not None and before_id is not None:
        raise Refused(
            400, "invalid_request_error", "Only one of after_id and before_id may be given."
        )
    ids = [key(item) for item in items]
    if before_id is not None:
        end = ids.index(before_id) if before_id in ids else 0
        start = max(0, end - limit)
        return list(items[start:end]), start > 0
    start = 0
    if after_id is not None:
        start = ids.index(after_id) + 1 if after_id in ids else len(ids)
    return list(items[start : start + limit]), start + limit < len(items)


def page_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A list endpoint's page, as ``anthropic/pagination.py``'s ``SyncPage`` reads it."""
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def check_limit(limit: object) -> int:
    """``limit`` if it is an int from 1 to 1,000; a 400 ``invalid_request_error`` if not."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise Refused(
            400,
            "invalid_request_error",
            f"limit: must be an integer from 1 to {MAX_LIMIT}, got {limit!r}",
        )
    return limit


def check_size(content: bytes) -> None:
    """A 413 ``request_too_large`` if a batch creation body exceeds :data:`MAX_BATCH_BYTES`."""
    if len(content) > MAX_BATCH_BYTES:
        raise Refused(
            413,
            "request_too_large",
            f"Request exceeds the maximum allowed number of bytes: a message batch takes at "
            f"most {MAX_BATCH_BYTES} bytes, got {len(content)}.",
        )


def check_requests(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The ``requests`` of a batch creation body, checked: a non-empty list (at most
    100,000) of ``{"custom_id", "params"}`` objects with unique custom ids of 1 to 64
    letters, digits, ``_`` or ``-`` (the batch processing guide's rules)."""
    unknown = sorted(set(body) - {"requests"})
    if unknown:
        raise Refused(400, "invalid_request_error", f"{unknown[0]}: Extra inputs are not permitted")
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise Refused(
            400, "invalid_request_error", "requests: must be a non-empty list of requests"
        )
    if len(requests) > MAX_REQUESTS:
        raise Refused(
            400,
            "invalid_request_error",
            f"requests: a batch holds at most {MAX_REQUESTS} requests, got {len(requests)}",
        )
    seen: set[str] = set()
    for index, request in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(request, dict):
            raise Refused(400, "invalid_request_error", f"{where}: must be an object")
        custom_id = request.get("custom_id")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            raise Refused(
                400,
                "invalid_request_error",
                f"{where}.custom_id: must be 1 to 64 letters, digits, '_' or '-', "
                f"got {custom_id!r}",
            )
        if custom_id in seen:
            raise Refused(
                400,
                "invalid_request_error",
                f"{where}.custom_id: {custom_id!r} is not unique in this batch",
            )
        seen.add(custom_id)
        if not isinstance(request.get("params"), dict):
            raise Refused(
                400, "invalid_request_error", f"{where}.params: Field required (an object)"
            )
        extra = sorted(set(request) - {"custom_id", "params"})
        if extra:
            raise Refused(
                400, "invalid_request_error", f"{where}.{extra[0]}: Extra inputs are not permitted"
            )
    return requests
