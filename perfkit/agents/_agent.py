"""Two agents with one interface: the naive "before" picture and the fully optimized one.

Both run the full Anthropic tool-use loop (``tool_use`` -> ``tool_result`` -> next turn,
until the model stops asking for tools) and offer ``chat(user_id, message)`` and its
streaming twin ``chat_stream``. They differ only where the chapter's techniques apply:

============================  =========================  ===============================
                              NaiveAgent                 OptimizedAgent
============================  =========================  ===============================
HTTP client                   a new one per request      one shared pooled client per
                                                         event loop
responses                     always from the API        multi-layer cache, LLM-aware
                                                         keys
tools of one turn             one after another          concurrently
reply                         whole, when finished       streamed token by token
history                       every message of a user,   trimmed to a token budget
                              bounded number of users    per user and in all, bounded
                                                         number of users
prompt                        sent whole every time      ``cache_control`` breakpoints:
                                                         tools, system and conversation
                                                         read from the API's prompt cache
============================  =========================  ===============================
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2

from perfkit._errors import PerfkitError
from perfkit._pricing import Usage, price_table, usd
from perfkit._secrets import hide_secrets
from perfkit._validation import check_count
from perfkit.agents._history import DEFAULT_MAX_USERS, ConversationStore, Message
from perfkit.agents._prompt_caching import check_ttl, with_breakpoints
from perfkit.agents._tools import ToolRegistry
from perfkit.cache import CachedMessages, MessageAssembler, MultiLayerCache
from perfkit.pooling import ConnectionStats, SharedAsyncClient, register_stats, track_connections

DEFAULT_MODEL = "claude-sonnet-5"
DEFAULT_MAX_TOKENS = 1024
DEFAULT_MAX_TURNS = 8
MAX_MESSAGE_CHARS = 32_000


class AgentError(PerfkitError):
    """The conversation could not be completed (e.g. the model kept asking for tools)."""


@dataclass(frozen=True)
class AgentReply:
    """What one ``chat`` call produced: the final text and what it took. The token
    counts are every turn's ``usage`` summed (``input_tokens`` is the uncached rest of
    each prompt); ``usd`` is what they cost at ``perfkit.price_table()``'s prices for the
    model each turn was answered by (rounded to 6 decimals); ``model`` is the model that
    answered the last turn."""

    text: str
    turns: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    stop_reason: str | None
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    usd: float = 0.0
    model: str = ""


class Agent:
    """What both agents share: ``chat``, ``chat_stream``, ``chat_events`` and the
    tool-use loop; subclasses say how a turn is sent and history kept."""

    parallel_tools: bool

    def __init__(
        self,
        *,
        tools: ToolRegistry | None = None,
        model: str = DEFAULT_MODEL,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        system: str | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.tools = tools if tools is not None else ToolRegistry()
        self.model = model
        self.max_tokens = check_count("max_tokens", max_tokens, minimum=1)
        self.system = system
        self.max_turns = check_count("max_turns", max_turns, minimum=1)
        self.client_options = hide_secrets(client_options or {})
        """What the agent's SDK clients are made with (``api_key``, ``base_url``, ...);
        shown with credentials hidden."""
        self.retries = 0
        self.connections = register_stats(ConnectionStats())
        """The connections and requests of every client this agent made."""

    async def chat(self, user_id: str, message: str) -> AgentReply:
        """Answer ``message`` in ``user_id``'s conversation."""
        async with contextlib.aclosing(self.chat_events(user_id, message)) as steps:
            async for step in steps:
                if isinstance(step, AgentReply):
                    return step
        raise AssertionError("unreachable: a conversation always ends in a reply")

    async def chat_stream(self, user_id: str, message: str) -> AsyncIterator[str]:
        """The reply's text as it arrives. Closing the iterator early (a client that
        went away) stops the upstream request."""
        async with contextlib.aclosing(self.chat_events(user_id, message)) as steps:
            async for step in steps:
                if isinstance(step, str):
                    yield step

    async def chat_events(
        self, user_id: str, message: str
    ) -> AsyncGenerator[str | AgentReply, None]:
        """The reply's text as it arrives, then the :class:`AgentReply` (for servers that
        stream the text and report the totals). Close it early to stop upstream."""
        _check_message(user_id, message)
        history = self._history(user_id)
        exchange: list[Message] = [{"role": "user", "content": message}]
        turns = tool_calls = input_tokens = output_tokens = 0
        cache_creation = cache_read = femto = 0
        async with self._session() as session:
            while True:
                final: dict[str, Any] = {}
                async for piece in self._turn(session, self._request(history + exchange)):
                    if isinstance(piece, str):
                        yield piece
                    else:
                        final = piece
                turns += 1
                usage = final.get("usage") or {}
                input_tokens += usage.get("input_tokens") or 0
                output_tokens += usage.get("output_tokens") or 0
                cache_creation += usage.get("cache_creation_input_tokens") or 0
                cache_read += usage.get("cache_read_input_tokens") or 0
                femto += _cost(final.get("model") or self.model, usage)
                exchange.append({"role": "assistant", "content": final["content"]})
                if final.get("stop_reason") != "tool_use":
                    break
                if turns >= self.max_turns:
                    raise AgentError(
                        f"the model still asked for tools after {turns} turns "
                        f"(max_turns={self.max_turns})"
                    )
                results = await self.tools.run(final["content"], parallel=self.parallel_tools)
                tool_calls += len(results)
                exchange.append({"role": "user", "content": results})
        self._remember(user_id, _replayable(exchange))
        yield AgentReply(
            text=_text_of(final["content"]),
            turns=turns,
            tool_calls=tool_calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            stop_reason=final.get("stop_reason"),
            cache_creation_input_tokens=cache_creation,
            cache_read_input_tokens=cache_read,
            usd=usd(femto),
            model=str(final.get("model") or self.model),
        )

    def _request(self, messages: list[Message]) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": messages,
        }
        if self.system is not None:
            request["system"] = self.system
        if len(self.tools):
            request["tools"] = self.tools.definitions()
        return request

    def _new_client(self) -> anthropic.AsyncAnthropic:
        """An SDK client on the SDK's default HTTP client, counting the SDK's retries."""
        options = dict(self.client_options)
        base_url, auth = _credentials_apart(options.get("base_url"))
        if auth is not None:
            options["base_url"] = base_url
        http_client = anthropic.DefaultAsyncHttpxClient(
            event_hooks={"request": [self._count_retry]}, auth=auth
        )
        client = anthropic.AsyncAnthropic(http_client=http_client, **options)
        track_connections(client, self.connections)
        return client

    async def _count_retry(self, request: httpx2.Request) -> None:
        if request.headers.get("x-stainless-retry-count", "0") != "0":
            self.retries += 1

    async def aclose(self) -> None:
        """Close what the agent keeps open between chats (the naive agent keeps nothing:
        every request closed its own client)."""

    # What the two agents do differently.

    def _session(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """What one ``chat`` call sends its turns through (handed to :meth:`_turn`)."""
        raise NotImplementedError

    def _turn(self, session: Any, request: dict[str, Any]) -> AsyncIterator[str | dict[str, Any]]:
        """One turn: the text as it arrives, then the whole message as a dict."""
        raise NotImplementedError

    def _history(self, user_id: str) -> list[Message]:
        raise NotImplementedError

    def _remember(self, user_id: str, exchange: list[Message]) -> None:
        raise NotImplementedError


class NaiveAgent(Agent):
    """The agent as it is often first written: correct, and slow.

    A new client (and so new connections) for every request, every turn from the API,
    tools one after another, the reply only when it is complete, and every message of a
    user kept and sent again with each question. Only the number of users is bounded
    (``max_users``, the least recently active forgotten first), so that a service
    running it does not keep every user it ever saw.
    """

    parallel_tools = False

    def __init__(self, *, max_users: int = DEFAULT_MAX_USERS, **options: Any) -> None:
        super().__init__(**options)
        self.max_users = check_count("max_users", max_users, minimum=1)
        self.conversations: OrderedDict[str, list[Message]] = OrderedDict()

    def _session(self) -> contextlib.AbstractAsyncContextManager[anthropic.AsyncAnthropic]:
        return self._new_client()

    async def _turn(
        self, client: anthropic.AsyncAnthropic, request: dict[str, Any]
    ) -> AsyncIterator[str | dict[str, Any]]:
        response = await client.messages.create(**request)
        message = response.model_dump(mode="json")
        text = _text_of(message["content"])
        if text:
            yield text
        yield message

    def _history(self, user_id: str) -> list[Message]:
        return list(self.conversations.get(user_id, []))

    def _remember(self, user_id: str, exchange: list[Message]) -> None:
        self.conversations.setdefault(user_id, []).extend(exchange)
        self.conversations.move_to_end(user_id)
        while len(self.conversations) > self.max_users:
            self.conversations.popitem(last=False)


class OptimizedAgent(Agent):
    """Every technique of the chapter at once.

    One shared, pooled client per event loop (built on the SDK's default client); every
    turn through the multi-layer cache with LLM-aware keys (a repeated question costs no
    API call, and a streamed reply is replayed from the cache); all tool calls of a turn
    concurrently; the reply streamed as it is generated; per-user history trimmed to
    a token budget with a bounded number of users; and prompt caching: ``cache_control``
    breakpoints on the tools, the system prompt and the conversation, so each turn reads
    the prefix the previous one wrote (``prompt_caching=False`` sends the same blocks
    unmarked; ``prompt_cache_ttl="1h"`` keeps the tools and system prompt an hour).
    Retries are left to the SDK and counted (``retries``). Close it with
    ``await agent.aclose()`` from the loop that used it, or use ``async with agent:``.
    """

    parallel_tools = True

    def __init__(
        self,
        *,
        cache: MultiLayerCache | None = None,
        history: ConversationStore | None = None,
        cache_ttl: float | None = None,
        prompt_caching: bool = True,
        prompt_cache_ttl: str = "5m",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.cache = cache if cache is not None else MultiLayerCache(namespace="agent")
        self.history = history if history is not None else ConversationStore()
        self.cache_ttl = cache_ttl
        if not isinstance(prompt_caching, bool):
            raise TypeError(f"prompt_caching must be True or False, got {prompt_caching!r}")
        self.prompt_caching = prompt_caching
        """Whether requests carry ``cache_control`` breakpoints (see :func:`with_breakpoints`)."""
        self.prompt_cache_ttl = check_ttl(prompt_cache_ttl)
        """How long the tools' and system prompt's cache entries live (``"5m"`` or ``"1h"``)."""
        self._shared = SharedAsyncClient(self._new_session)

    def _new_session(self) -> _Session:
        client = self._new_client()
        return _Session(client, CachedMessages(client, self.cache, ttl=self.cache_ttl))

    def _session(self) -> contextlib.AbstractAsyncContextManager[_Session]:
        return contextlib.nullcontext(self._shared.get())

    async def _turn(
        self, session: _Session, request: dict[str, Any]
    ) -> AsyncIterator[str | dict[str, Any]]:
        assembler = MessageAssembler()
        stream = await session.messages.create(**request, stream=True)
        async with stream:
            async for event in stream:
                assembler.feed(event)
                text = _text_delta(event)
                if text:
                    yield text
        yield assembler.message

    def _request(self, messages: list[Message]) -> dict[str, Any]:
        ttl = self.prompt_cache_ttl if self.prompt_caching else None
        return with_breakpoints(super()._request(messages), ttl=ttl)

    def _history(self, user_id: str) -> list[Message]:
        return self.history.messages(user_id)

    def _remember(self, user_id: str, exchange: list[Message]) -> None:
        self.history.add(user_id, exchange)

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The running event loop's shared client."""
        return self._shared.get().client

    async def aclose(self) -> None:
        """Close this event loop's shared client."""
        await self._shared.aclose()

    async def __aenter__(self) -> OptimizedAgent:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _Session:
    """An event loop's shared client and the cached ``messages.create`` over it."""

    def __init__(self, client: anthropic.AsyncAnthropic, messages: CachedMessages) -> None:
        self.client = client
        self.messages = messages

    async def aclose(self) -> None:
        await self.client.close()


def _credentials_apart(url: object) -> tuple[object, httpx2.BasicAuth | None]:
    """``url`` without its credentials (``https://user:password@host``), and them as basic
    auth: what httpx2 sends for them anyway, but the SDK and httpx2 log every request's
    URL, which then held the password."""
    if not isinstance(url, (str, httpx2.URL)):
        return url, None
    parsed = httpx2.URL(url)
    if not (parsed.username or parsed.password):
        return url, None
    return str(parsed.copy_with(userinfo=b"")), httpx2.BasicAuth(parsed.username, parsed.password)


def _replayable(exchange: list[Message]) -> list[Message]:
    """The exchange as later requests can send it again. A final reply cut off (by
    ``max_tokens``) in a tool call keeps that ``tool_use``, which was never run: with no
    ``tool_result`` after it the API refuses the request, as it refuses an empty text
    block; both go, and a reply left with no content goes too."""
    *earlier, reply = exchange
    content = [
        block
        for block in reply["content"]
        if block.get("type") != "tool_use"
        and not (block.get("type") == "text" and not block.get("text", "").strip())
    ]
    return [*earlier, {**reply, "content": content}] if content else earlier


def _text_of(content: list[dict[str, Any]]) -> str:
    """The text blocks of a message's content, joined."""
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


def _text_delta(event: Any) -> str | None:
    if getattr(event, "type", None) != "content_block_delta":
        return None
    delta = event.delta
    return delta.text if getattr(delta, "type", None) == "text_delta" else None


def _cost(model: str, usage: Mapping[str, Any]) -> int:
    """What one turn's ``usage`` cost on ``model``, in femto-dollars: its cache writes
    split by TTL as ``cache_creation`` reports them (all 5-minute writes without it)."""
    written = usage.get("cache_creation_input_tokens") or 0
    split = usage.get("cache_creation") or {}
    hour = (split.get("ephemeral_1h_input_tokens") or 0) if isinstance(split, dict) else 0
    turn = Usage(
        input_tokens=usage.get("input_tokens") or 0,
        cache_write_5m_tokens=max(written - hour, 0),
        cache_write_1h_tokens=hour,
        cache_read_tokens=usage.get("cache_read_input_tokens") or 0,
        output_tokens=usage.get("output_tokens") or 0,
    )
    return price_table().femto(model, turn)


def _check_message(user_id: object, message: object) -> None:
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    if not isinstance(message, str) or not message.strip():
        raise ValueError(f"message must be a non-empty string, got {message!r}")
    if len(message) > MAX_MESSAGE_CHARS:
        raise ValueError(
            f"message is {len(message)} characters; at most {MAX_MESSAGE_CHARS} are allowed"
        )
