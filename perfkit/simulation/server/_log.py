"""The simulated server's request log: each request, when it was answered, and totals."""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from perfkit._pricing import METER, Usage
from perfkit._secrets import hide_secrets
from perfkit._url import redact_url
from perfkit.simulation.server._replies import Fault, Reply

Script = Reply | Fault


@dataclass(repr=False)
class SimRequest:
    """One request the simulator received, and when (on its clock) it was answered.

    ``sent_at`` is when the request reached the server: after ``handshake``, the modeled
    seconds its client spent opening a new connection (0 when it reused an idle one).
    Its repr shows credentials (``x-api-key``, ``authorization``, cookies, a password in
    the URL) as ``***``; ``headers["x-api-key"]`` reads the real value.
    """

    index: int
    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    sent_at: float
    handshake: float = 0.0
    answer: Script | None = None
    status: int | None = None
    first_token_at: float | None = None
    completed_at: float | None = None
    completed: bool = False
    output_tokens: int = 0
    body_error: str | None = None
    """Why the body is not a JSON object (then :attr:`body` is empty), or None."""
    first_text_at: float | None = None
    """When the first text token was sent, for streamed replies (after any thinking)."""

    def __post_init__(self) -> None:
        self.headers = hide_secrets(self.headers)

    def __repr__(self) -> str:
        shown = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        shown["url"] = redact_url(self.url)
        return f"SimRequest({', '.join(f'{name}={value!r}' for name, value in shown.items())})"

    __str__ = __repr__

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def retry_count(self) -> int:
        """The SDK's retry number for this attempt (``x-stainless-retry-count``)."""
        try:
            return int(self.headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            return 0

    @property
    def duration(self) -> float | None:
        """Modeled seconds from arrival to the last byte, once delivered."""
        if self.completed_at is None:
            return None
        return round(self.completed_at - self.sent_at, 6)

    @property
    def ttft(self) -> float | None:
        """Modeled seconds from arrival to the first content token, for streamed replies:
        of any block, so a thinking token when the reply thinks first (the first text token
        is at :attr:`first_text_at`)."""
        if self.first_token_at is None:
            return None
        return round(self.first_token_at - self.sent_at, 6)


class RequestLog:
    """The newest ``keep`` requests (every one with None), and totals over all of them:
    requests, output tokens, and the usage and cost the server charged."""

    def __init__(self, keep: int | None) -> None:
        self.requests: deque[SimRequest] = deque(maxlen=keep)
        self.count = 0
        self.output_tokens = 0
        self.usage = Usage()
        self.femto = 0
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.count = self.output_tokens = self.femto = 0
            self.usage = Usage()

    def charge(self, model: str, usage: Usage, *, batch: bool = False) -> int:
        """Add ``usage`` on ``model`` to the totals and its cost (the active price table's)
        to the process-wide meter; returns the cost in femto-dollars."""
        cost = METER.charge(model, usage, batch=batch)
        with self.lock:
            self.usage += usage
            self.femto += cost
        return cost

    def add_output(self, tokens: int) -> None:
        with self.lock:
            self.output_tokens += tokens
