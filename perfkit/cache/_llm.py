"""Caching Anthropic Messages responses: LLM-aware keys and a caching ``messages.create``.

The key of a request is its canonical content, everything that shapes the reply
(model, system, messages, tools, tool_choice, max_tokens, temperature, top_p, top_k,
stop_sequences, thinking, ...), with ``cache_control`` markers removed (they change
billing, not the reply) and without what never shapes it: ``stream``, ``metadata``,
and transport options (headers, the API key, timeouts), which are not in the body.
Requests that ask for sampling, a ``temperature`` above 0 (the anthropic SDK 2.x has no
sampling parameters of its own; a temperature sent through ``extra_body`` counts), are
not cached unless the caller opts in, since each such call should give a new sample.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from perfkit.cache._decorator import cached
from perfkit.cache._keys import canonical, make_key
from perfkit.cache._multilayer import MultiLayerCache
from perfkit.cache._streams import RecordingStream, ReplayedStream, replay_events

IGNORED_FIELDS = frozenset({"stream", "metadata"})
"""Request fields that never change the reply."""

TRANSPORT_OPTIONS = frozenset({"extra_headers", "extra_query", "timeout", "extra_body"})
"""SDK call options that are not part of the request's content (``extra_body`` is merged)."""


def request_content(request: Mapping[str, Any]) -> dict[str, Any]:
    """What of a Messages request shapes its reply: the fields a key is made of.

    ``cache_control`` is dropped where the API reads it (the request itself, blocks of
    ``system`` and of messages' content, tool results' blocks, tool definitions), and
    nowhere else: inside a tool's input or schema it is data."""
    content = {
        name: value
        for name, value in request.items()
        if name not in IGNORED_FIELDS and name not in TRANSPORT_OPTIONS and name != "cache_control"
    }
    extra = request.get("extra_body")
    if isinstance(extra, Mapping):
        content.update(extra)
    if "system" in content:
        content["system"] = _blocks(content["system"])
    if isinstance(content.get("tools"), list):
        content["tools"] = [_without_cache_control(tool) for tool in content["tools"]]
    if isinstance(content.get("messages"), list):
        content["messages"] = [
            {**message, "content": _blocks(message.get("content"))}
            if isinstance(message, Mapping) and "content" in message
            else message
            for message in content["messages"]
        ]
    return content


def anthropic_request_key(request: Mapping[str, Any], *, namespace: str = "anthropic") -> str:
    """A stable key for a Messages request (see the module docstring for what counts).

    >>> a = anthropic_request_key({"model": "m", "max_tokens": 9, "stream": False,
    ...     "messages": [{"role": "user", "content": [
    ...         {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]}]})
    >>> b = anthropic_request_key({"max_tokens": 9, "model": "m",
    ...     "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})
    >>> a == b
    True
    """
    for required in ("model", "messages"):
        if required not in request:
            raise ValueError(f"a Messages request needs {required!r}; got fields {sorted(request)}")
    return make_key(namespace, 1, "messages.create", (request_content(request),), {})


def samples(request: Mapping[str, Any]) -> bool:
    """Whether a request asks for sampling: a temperature above 0, in the request or in
    its ``extra_body``."""
    temperature = request_content(request).get("temperature")
    if temperature is None:
        return False
    return not isinstance(temperature, (int, float)) or temperature > 0


def _blocks(value: Any) -> Any:
    """Content blocks without their ``cache_control`` (a plain string is left as it is)."""
    if not isinstance(value, list):
        return value
    return [_block(block) for block in value]


def _block(block: Any) -> Any:
    if not isinstance(block, Mapping):
        return block
    cleaned = _without_cache_control(block)
    if cleaned.get("type") == "tool_result" and isinstance(cleaned.get("content"), list):
        cleaned["content"] = _blocks(cleaned["content"])
    return cleaned


def _without_cache_control(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if key != "cache_control"}


class CachedMessages:
    """``messages.create`` of an ``Anthropic`` or ``AsyncAnthropic`` client, through a cache.

    Requests that do not sample (or any, with ``cache_sampled=True``) are answered from
    ``cache``; concurrent identical requests reach the API once. The reply is the SDK's
    own ``Message`` type; a streamed reply is recorded and replayed (see :meth:`create`).

    >>> import anthropic, fakeredis
    >>> from perfkit.simulation import AnthropicSimulator
    >>> with AnthropicSimulator(), anthropic.Anthropic(api_key="test") as client:
    ...     messages = CachedMessages(client, MultiLayerCache(fakeredis.FakeRedis()))
    ...     ask = dict(model="claude-sonnet-5", max_tokens=64,
    ...                messages=[{"role": "user", "content": "Hi"}])
    ...     first, second = messages.create(**ask), messages.create(**ask)
    >>> first == second, messages.cache.stats()["l1_hits"]
    (True, 1)
    """

    def __init__(
        self,
        client: Any,
        cache: MultiLayerCache,
        *,
        ttl: float | None = None,
        cache_sampled: bool = False,
    ) -> None:
        create = getattr(getattr(client, "messages", None), "create", None)
        if create is None:
            raise TypeError(
                f"client must be an anthropic.Anthropic or AsyncAnthropic, got {client!r}"
            )
        self.client = client
        self.cache = cache
        self.cache_sampled = cache_sampled
        self.ttl = ttl
        self._message_type = _message_type()
        self.is_async = _is_async_client(client, create)
        self._fetch: Any = cached(cache, ttl, key=_content_key, name="anthropic:messages.create")(
            self._async_fetch if self.is_async else self._sync_fetch
        )

    def create(self, **request: Any) -> Any:
        """Like ``client.messages.create(**request)``; awaitable for an async client.

        With ``stream=True`` a cached reply is replayed as the stream of events it came
        from, and a live stream is recorded: once it has fully arrived, the message it
        reassembles to is cached (under the same key as the non-streamed request)."""
        if samples(request) and not self.cache_sampled:
            return self.client.messages.create(**request)
        if self.is_async:
            return self._acreate(request)
        if request.get("stream"):
            return self._stream(request)
        message = self._message(self._fetch(request))
        if message is None:  # a corrupt entry, now evicted: this fetch reaches the API
            self._fetch.invalidate(request)
            message = self._message_type.model_validate(self._fetch(request))
        return message

    async def _acreate(self, request: dict[str, Any]) -> Any:
        if request.get("stream"):
            return await self._astream(request)
        message = self._message(await self._fetch(request))
        if message is None:  # a corrupt entry, now evicted: this fetch reaches the API
            await self._fetch.ainvalidate(request)
            message = self._message_type.model_validate(await self._fetch(request))
        return message

    def _stream(self, request: dict[str, Any]) -> Any:
        key = self._fetch.cache_key(request)
        found, ticket = self.cache.lookup_for_fill(key)
        message = self._message(found.value) if found.hit else None
        if message is not None:
            return ReplayedStream(_events(message))
        if found.hit:  # a corrupt entry: evicted, and the ticket taken after that
            self.cache.invalidate_key(key)
            _, ticket = self.cache.lookup_for_fill(key)
        # The ticket: a stream that began before an invalidation is not kept after it.
        return RecordingStream(
            self.client.messages.create(**request),
            lambda message: self.cache.store(key, message, ttl=self.ttl, ticket=ticket),
        )

    async def _astream(self, request: dict[str, Any]) -> Any:
        key = self._fetch.cache_key(request)
        found, ticket = await self.cache.alookup_for_fill(key)
        message = self._message(found.value) if found.hit else None
        if message is not None:
            return ReplayedStream(_events(message), is_async=True)
        if found.hit:  # a corrupt entry: evicted, and the ticket taken after that
            await self.cache.ainvalidate_key(key)
            _, ticket = await self.cache.alookup_for_fill(key)

        async def store(message: dict[str, Any]) -> None:
            await self.cache.astore(key, message, ttl=self.ttl, ticket=ticket)

        return RecordingStream(await self.client.messages.create(**request), store)

    def _message(self, value: Any) -> Any:
        """The SDK's ``Message`` of a cached value, or None for an entry of the wrong shape
        (counted as corrupt: the caller evicts it and asks the API)."""
        try:
            return self._message_type.model_validate(value)
        except ValueError:  # pydantic's ValidationError, whatever the value's shape
            self.cache.count("corrupt")
            return None

    def _sync_fetch(self, request: dict[str, Any]) -> dict[str, Any]:
        message = self.client.messages.create(**request)
        return dict(message.model_dump(mode="json"))

    async def _async_fetch(self, request: dict[str, Any]) -> dict[str, Any]:
        message = await self.client.messages.create(**request)
        return dict(message.model_dump(mode="json"))

    def cache_stats(self) -> dict[str, int | float]:
        """The statistics of the cached ``create`` alone."""
        stats: dict[str, int | float] = self._fetch.cache_stats()
        return stats


def _content_key(request: dict[str, Any]) -> str:
    return canonical(request_content(request))


def _is_async_client(client: Any, create: Any) -> bool:
    # The SDK wraps create() in plain functions that return coroutines, so its type tells.
    import anthropic

    return isinstance(client, anthropic.AsyncAnthropic) or inspect.iscoroutinefunction(create)


def _events(message: Any) -> list[Any]:
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    events = replay_events(message.model_dump(mode="json"))
    return [adapter.validate_python(event) for event in events]


def _message_type() -> Any:
    from anthropic.types import Message

    return Message
