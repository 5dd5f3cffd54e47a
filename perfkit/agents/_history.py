"""Per-user conversation history with bounded memory: a token budget per user and in all,
and a cap on users."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from perfkit._validation import check_count

DEFAULT_MAX_TOKENS = 4_000
DEFAULT_MAX_USERS = 10_000
DEFAULT_TRIM_TO = 0.5
"""Trimmed history keeps up to this share of ``max_tokens``: trimmed in steps, the
conversation's beginning (the prefix the API's prompt cache reads) stays the same for
several questions. 1.0 trims the oldest exchange whenever the budget is exceeded."""
DEFAULT_MAX_TOTAL_TOKENS = 1_000_000
"""Tokens of history kept over all users (about 4 MB of text): what bounds the memory of
a long-running service whatever the number of users."""

Message = dict[str, Any]
Exchange = list[Message]
"""One ``chat`` call's messages: the user's question, any tool turns, the final answer."""


def estimate_tokens(messages: list[Message]) -> int:
    """A cheap token estimate (about 4 characters per token, as for English text)."""
    return max(1, len(json.dumps(messages, separators=(",", ":"), default=str)) // 4)


class ConversationStore:
    """Each user's recent exchanges, trimmed to ``max_tokens``, with at most ``max_users``
    users and ``max_total_tokens`` over all of them (the least recently active users are
    forgotten first).

    History is trimmed in whole exchanges, oldest first, so what is sent to the model
    always starts with a user question and never splits a ``tool_use`` from its
    ``tool_result``. Once over ``max_tokens``, exchanges go until at most ``trim_to``
    times ``max_tokens`` remain: history is trimmed in steps, and between two steps the
    conversation keeps its beginning, the prefix the API's prompt cache reads (trimming
    one exchange every question, ``trim_to=1.0``, changes the prefix, and so writes the
    whole conversation to the cache again, every question).

    >>> store = ConversationStore(max_tokens=1_000, max_users=2)
    >>> store.add("ann", [{"role": "user", "content": "Hi"},
    ...                   {"role": "assistant", "content": "Hello!"}])
    >>> [m["role"] for m in store.messages("ann")]
    ['user', 'assistant']
    """

    def __init__(
        self,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_users: int = DEFAULT_MAX_USERS,
        max_total_tokens: int = DEFAULT_MAX_TOTAL_TOKENS,
        trim_to: float = DEFAULT_TRIM_TO,
    ) -> None:
        self.max_tokens = check_count("max_tokens", max_tokens, minimum=1)
        if (
            isinstance(trim_to, bool)
            or not isinstance(trim_to, (int, float))
            or not 0 < trim_to <= 1
        ):
            raise ValueError(f"trim_to must be a number in (0, 1], got {trim_to!r}")
        self.trim_to = float(trim_to)
        self.max_users = check_count("max_users", max_users, minimum=1)
        self.max_total_tokens = check_count("max_total_tokens", max_total_tokens, minimum=1)
        self._users: OrderedDict[str, list[tuple[int, Exchange]]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def messages(self, user_id: str) -> list[Message]:
        """The user's history, oldest first (a new list: callers may extend it)."""
        with self._lock:
            exchanges = self._users.get(user_id, [])
            if exchanges:
                self._users.move_to_end(user_id)
            return [message for _, exchange in exchanges for message in exchange]

    def add(self, user_id: str, exchange: Exchange) -> None:
        """Append one finished exchange, then trim to the budgets."""
        cost = estimate_tokens(exchange)
        with self._lock:
            exchanges = self._users.setdefault(user_id, [])
            self._users.move_to_end(user_id)
            exchanges.append((cost, exchange))
            self._total += cost
            total = sum(tokens for tokens, _ in exchanges)
            keep = self.max_tokens * self.trim_to if total > self.max_tokens else total
            while total > keep and len(exchanges) > 1:
                dropped = exchanges.pop(0)[0]
                total -= dropped
                self._total -= dropped
            if total > self.max_tokens:  # one exchange alone is over budget: keep none
                self._forget(user_id)
            while len(self._users) > self.max_users or (
                self._total > self.max_total_tokens and len(self._users) > 1
            ):
                self._forget(next(iter(self._users)))

    def _forget(self, user_id: str) -> None:
        self._total -= sum(tokens for tokens, _ in self._users.pop(user_id))

    def tokens(self, user_id: str) -> int:
        with self._lock:
            return sum(tokens for tokens, _ in self._users.get(user_id, []))

    @property
    def total_tokens(self) -> int:
        """Tokens of history kept over all users."""
        with self._lock:
            return self._total

    def __len__(self) -> int:
        return len(self._users)
