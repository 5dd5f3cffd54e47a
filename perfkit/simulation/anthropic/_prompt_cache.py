"""Prompt caching as the Messages API accounts for it: breakpoints, prefixes and TTLs.

The rules follow Anthropic's prompt-caching documentation
(platform.claude.com/docs/en/build-with-claude/prompt-caching) and the installed SDK's
types (``cache_control_ephemeral_param.py``, ``usage.py``, ``cache_creation.py``,
``message_create_params.py``):

- The prompt is one sequence of blocks in the order tools, system, messages. A block
  marked ``cache_control: {"type": "ephemeral", "ttl": "5m" | "1h"}`` (``ttl`` defaults
  to ``"5m"``) is a breakpoint: the prefix up to and including it is cached. A top-level
  ``cache_control`` marks the last cacheable block of the request.
- A hit needs the identical prefix, on the same model. For each breakpoint the server
  looks for an entry at the breakpoint and the block boundaries before it, 20 positions
  in all; the longest prefix found is read.
- Blocks past the read are written at every breakpoint whose prefix reaches the model's
  minimum cacheable length; shorter prefixes are not cached, without an error.
- An entry is read only once the response that wrote it has begun (the guide: "a cache
  entry is only available after the first response begins"; parallel requests sent
  before then all write it). The simulator takes that moment as the writer's first token.
- A hit refreshes the entry's TTL. With mixed TTLs the write is split as the docs bill
  it: 1-hour tokens up to the last 1-hour breakpoint, 5-minute tokens after it.
- ``input_tokens`` is the uncached rest: input + cache creation + cache read is the
  whole prompt.
- ``tool_choice`` and the thinking settings are part of the message blocks' prefix
  (the docs' "what invalidates the cache": changing them invalidates message blocks
  only).

The request's validity (at most 4 breakpoints, 1-hour breakpoints before 5-minute ones,
the ``ttl`` values) is checked before a request gets here; accounting only keeps going
on a request it would refuse.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal, NamedTuple

from perfkit._validation import check_count
from perfkit.simulation.anthropic._models import model_id, resolve

Section = Literal["tools", "system", "messages"]

TTL_SECONDS: Mapping[str, float] = {"5m": 300.0, "1h": 3600.0}
"""The cache lifetimes ``cache_control.ttl`` may ask for (cache_control_ephemeral_param.py)."""

MAX_BREAKPOINTS = 4
"""At most this many blocks may carry ``cache_control`` (the API refuses a fifth)."""

LOOKBACK_BLOCKS = 20
"""Block positions checked for a hit at each breakpoint: the breakpoint and 19 before it."""

DEFAULT_MAX_ENTRIES = 10_000
"""Cache entries a simulator keeps before it forgets the least recently used."""

DEFAULT_MINIMUM_TOKENS = 1024
"""The minimum cacheable prompt length of a model neither table knows."""

# Models the catalog does not list (older ones), by id prefix, most specific first, and
# their minimum cacheable prompt length: the prompt-caching guide's table as quoted in
# anthropic-sdk-python issue #1194 (1024: Sonnet 4.5, Opus 4.1, Opus 4, Sonnet 4, Sonnet
# 3.7; 2048: Haiku 3.5, Haiku 3) and its earlier editions (1024: Sonnet 3.5, Opus 3).
_OLDER_MODELS: tuple[tuple[str, int], ...] = (
    ("claude-opus-4", 1024),
    ("claude-sonnet-4", 1024),
    ("claude-3-7-sonnet", 1024),
    ("claude-3-5-sonnet", 1024),
    ("claude-3-opus", 1024),
    ("claude-3-5-haiku", 2048),
    ("claude-3-haiku", 2048),
)


def minimum_cacheable_tokens(model: str) -> int:
    """The shortest prefix, in tokens, that ``model`` caches: the model catalog's figure,
    else the guide's for an older model, else :data:`DEFAULT_MINIMUM_TOKENS`.

    >>> minimum_cacheable_tokens("claude-haiku-4-5"), minimum_cacheable_tokens("claude-3-haiku")
    (4096, 2048)
    """
    info = resolve(model)
    if info is not None:
        return info.min_cacheable_tokens
    return next(
        (n for prefix, n in _OLDER_MODELS if model.startswith(prefix)), DEFAULT_MINIMUM_TOKENS
    )


class PromptBlock(NamedTuple):
    """One block of the prompt in cache order, as sent, with its breakpoint TTL if marked
    and, on the first block of a message, the message's role."""

    section: Section
    content: Any
    ttl: str | None = None
    starts_message: str | None = None


def prompt_blocks(body: Mapping[str, Any]) -> list[PromptBlock]:
    """The request's prompt as the cache sees it: tools, then system, then messages.

    A string system prompt or message content is one block; anything that is not a
    list is one block as it is, so every part of the request is counted once."""
    blocks: list[PromptBlock] = []
    for section in ("tools", "system"):
        value = body.get(section)
        if value:
            items = value if isinstance(value, list) else [value]
            blocks.extend(PromptBlock(section, item, _ttl_of(item)) for item in items)
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else [messages] if messages else []:
        content = message.get("content") if isinstance(message, dict) else message
        role = str(message.get("role")) if isinstance(message, dict) else ""
        items = content if isinstance(content, list) else [content]
        for position, item in enumerate(items):
            opens = role if position == 0 else None
            blocks.append(PromptBlock("messages", item, _ttl_of(item), opens))
    automatic = _automatic_ttl(body.get("cache_control"))
    if automatic is not None:
        last = next((i for i in reversed(range(len(blocks))) if _cacheable(blocks[i])), None)
        if last is not None and blocks[last].ttl is None:
            block = blocks[last]
            blocks[last] = PromptBlock(
                block.section, block.content, automatic, block.starts_message
            )
    return blocks


def _ttl_of(item: object) -> str | None:
    """The TTL of the breakpoint ``item`` marks, or ``None``.

    A ``cache_control`` inside a ``tool_result``'s content marks the tool result."""
    if not isinstance(item, dict):
        return None
    ttl = _automatic_ttl(item.get("cache_control"))
    if ttl is None and isinstance(item.get("content"), list):
        ttls = [_ttl_of(inner) for inner in item["content"]]
        return max((t for t in ttls if t), key=TTL_SECONDS.__getitem__, default=None)
    return ttl


def _automatic_ttl(control: object) -> str | None:
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        return None
    ttl = control.get("ttl", "5m")
    return ttl if isinstance(ttl, str) and ttl in TTL_SECONDS else None


def _cacheable(block: PromptBlock) -> bool:
    # Thinking blocks cannot carry cache_control (the docs' "what can be cached").
    content = block.content
    return not (
        isinstance(content, dict) and content.get("type") in ("thinking", "redacted_thinking")
    )


@dataclass(frozen=True)
class CacheUsage:
    """The input token accounting of one request: what was read, written, and the rest."""

    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        """The whole prompt: the uncached rest, the cache write and the cache read."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def usage_fields(self) -> dict[str, Any]:
        """The input fields of the API's ``usage`` object (usage.py, cache_creation.py)."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.ephemeral_5m_input_tokens,
                "ephemeral_1h_input_tokens": self.ephemeral_1h_input_tokens,
            },
        }


@dataclass(slots=True)
class _Entry:
    expires: float
    ttl: float
    ready: float
    writers: int = 0
    """Requests writing the entry whose first token's time is not known yet."""


_PENDING = math.inf
"""The ready time of an entry while its writer's time to first token is being drawn."""


class _Write(NamedTuple):
    key: bytes
    entry: _Entry


def _usage(total: int, read: int, writes: list[tuple[int, str | None]]) -> CacheUsage:
    """The usage of a request of ``total`` input tokens that read the first ``read`` and
    wrote up to each ``(end, ttl)`` breakpoint: 1-hour tokens up to the last 1-hour
    breakpoint, 5-minute tokens after it, as the docs bill a mixed write."""
    if not writes:
        return CacheUsage(total - read, 0, read)
    last_1h = max((end for end, ttl in writes if ttl == "1h"), default=None)
    written_1h = last_1h - read if last_1h is not None else 0
    written_5m = writes[-1][0] - read - written_1h
    created = written_1h + written_5m
    return CacheUsage(total - read - created, created, read, written_5m, written_1h)


class PromptCache:
    """The prompt cache of one simulated server: entries keyed by model and exact prefix.

    >>> cache = PromptCache()
    >>> body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": [
    ...     {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}]}
    >>> count = lambda block: 2000
    >>> cache.account(body, count=count, now=0.0).cache_creation_input_tokens
    2000
    >>> cache.account(body, count=count, now=60.0).cache_read_input_tokens
    2000
    """

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = check_count("max_entries", max_entries, minimum=1)
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def account(
        self,
        body: Mapping[str, Any],
        *,
        count: Callable[[PromptBlock], int],
        now: float,
        ready_after: float | Callable[[CacheUsage], float] = 0.0,
    ) -> CacheUsage:
        """Account request ``body`` at time ``now``, reading and writing entries as the
        API does; ``count`` gives a block's tokens. What it writes can be read from
        ``ready_after`` seconds later on (when its response begins): a number, or a
        function of the request's usage (its response's time to first token depends on
        what it read and wrote), called once, outside the cache's lock. Until it returns,
        what the request writes is not readable; if it raises, the writes are undone.
        Entries are kept under the model's id (an alias shares its dated model's cache)."""
        usage, writes = self._read_and_write(body, count=count, now=now)
        try:
            delay = ready_after(usage) if callable(ready_after) else ready_after
        except BaseException:
            self._settle(writes, None)
            raise
        self._settle(writes, now + delay)
        return usage

    def _read_and_write(
        self, body: Mapping[str, Any], *, count: Callable[[PromptBlock], int], now: float
    ) -> tuple[CacheUsage, list[_Write]]:
        """The request's usage, and the entries it writes, not readable yet."""
        prompt = _Prompt.of(body, count)
        if not prompt.marks:
            return CacheUsage(prompt.total), []
        with self._lock:
            hit = self._longest_hit(prompt.keys, prompt.marks, now)
            ends = prompt.written_after(hit)
            writes = [
                self._store(prompt.keys[q], TTL_SECONDS[str(prompt.blocks[q].ttl)], now)
                for q in ends
            ]
        return prompt.usage(hit, ends), writes

    def peek(
        self, body: Mapping[str, Any], *, count: Callable[[PromptBlock], int], now: float
    ) -> CacheUsage:
        """What :meth:`account` would report for ``body`` at ``now``, changing nothing: a
        rate limit counts a request's uncached input before the request is answered."""
        prompt = _Prompt.of(body, count)
        if not prompt.marks:
            return CacheUsage(prompt.total)
        with self._lock:
            hit = self._longest_hit(prompt.keys, prompt.marks, now, commit=False)
        return prompt.usage(hit, prompt.written_after(hit))

    def _longest_hit(
        self, keys: list[bytes], marks: list[int], now: float, *, commit: bool = True
    ) -> int:
        """The last block of the longest live cached prefix (-1: none); its TTL restarts
        and expired entries go, unless only peeking (``commit=False``)."""
        hit = -1
        for mark in marks:
            for position in range(mark, max(mark - LOOKBACK_BLOCKS, hit), -1):
                entry = self._entries.get(keys[position])
                if entry is None:
                    continue
                if entry.expires <= now:
                    if commit:
                        del self._entries[keys[position]]
                    continue
                if entry.ready > now:  # still being written by a response not yet begun
                    continue
                hit = position
                break
        if hit >= 0 and commit:
            entry = self._entries[keys[hit]]
            entry.expires = now + entry.ttl
            self._entries.move_to_end(keys[hit])
        return hit

    def _store(self, key: bytes, ttl: float, now: float) -> _Write:
        """Write ``key``, readable once :meth:`_settle` says when (a parallel write that
        started before this one keeps its time)."""
        entry = self._entries.get(key)
        if entry is None or entry.expires <= now:
            entry = self._entries[key] = _Entry(now + ttl, ttl, _PENDING)
        else:
            entry.expires, entry.ttl = now + ttl, ttl
        entry.writers += 1
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return _Write(key, entry)

    def _settle(self, writes: list[_Write], ready: float | None) -> None:
        """Record when ``writes`` become readable; ``None``: their request failed, and an
        entry no other request is writing is dropped."""
        if not writes:
            return
        with self._lock:
            for key, entry in writes:
                entry.writers -= 1
                if ready is not None:
                    entry.ready = min(entry.ready, ready)
                    continue
                abandoned = entry.writers == 0 and entry.ready == _PENDING
                if abandoned and self._entries.get(key) is entry:
                    del self._entries[key]

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"PromptCache(entries={len(self)}, max_entries={self.max_entries})"


class _Prompt(NamedTuple):
    """A request's prompt as the cache accounts it: its blocks, their running token
    totals, the breakpoints, one key per block up to the last breakpoint, and the
    model's minimum cacheable length (what :meth:`PromptCache.account` and
    :meth:`PromptCache.peek` both start from)."""

    blocks: list[PromptBlock]
    upto: list[int]
    marks: list[int]
    keys: list[bytes]
    minimum: int

    @classmethod
    def of(cls, body: Mapping[str, Any], count: Callable[[PromptBlock], int]) -> _Prompt:
        blocks = prompt_blocks(body)
        upto = list(accumulate(count(block) for block in blocks))
        marks = [i for i, block in enumerate(blocks) if block.ttl is not None]
        if not marks:
            return cls(blocks, upto, marks, [], 0)
        model = model_id(str(body.get("model", "")))
        keys = _prefix_keys(model, body, blocks[: marks[-1] + 1])
        return cls(blocks, upto, marks, keys, minimum_cacheable_tokens(model))

    @property
    def total(self) -> int:
        return self.upto[-1] if self.upto else 0

    def written_after(self, hit: int) -> list[int]:
        """The breakpoints past the prefix read (``hit``) long enough to be cached."""
        return [q for q in self.marks if q > hit and self.upto[q] >= self.minimum]

    def usage(self, hit: int, ends: list[int]) -> CacheUsage:
        read = self.upto[hit] if hit >= 0 else 0
        return _usage(self.total, read, [(self.upto[q], self.blocks[q].ttl) for q in ends])


def _prefix_keys(model: str, body: Mapping[str, Any], blocks: list[PromptBlock]) -> list[bytes]:
    """One key per block: a hash of the model and every block up to and including it,
    with the ``cache_control`` markers left out (moving a breakpoint keeps the prefix)."""
    digest = hashlib.sha256(_canonical(["model", model]))
    keys: list[bytes] = []
    section: Section | None = None
    for block in blocks:
        if block.section != section:
            section = block.section
            settings = (
                [body.get("tool_choice"), body.get("thinking")] if section == "messages" else []
            )
            digest.update(_canonical(["section", section, settings]))
        if block.starts_message is not None:
            digest.update(_canonical(["message", block.starts_message]))
        digest.update(_canonical(_unmarked(_as_block(block.content))))
        keys.append(digest.copy().digest())
    return keys


def _as_block(content: object) -> object:
    # A string is shorthand for one text block (message_create_params.py).
    return {"type": "text", "text": content} if isinstance(content, str) else content


def _unmarked(value: object) -> object:
    if isinstance(value, dict):
        return {k: _unmarked(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_unmarked(item) for item in value]
    return value


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr).encode()
