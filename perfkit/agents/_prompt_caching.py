"""Prompt caching: ``cache_control`` breakpoints on the tools, the system prompt and the
conversation, so that each request reads the prefix the previous one wrote.

Where the breakpoints go, and why (Anthropic's prompt-caching guide,
platform.claude.com/docs/en/build-with-claude/prompt-caching: "the prompt is cached up
to and including the block marked with ``cache_control``", at most 4 breakpoints, the
system checks for a hit "at most 20 blocks before" each breakpoint, and a longer-lived
(``"1h"``) breakpoint must come before shorter ones):

1. the last tool definition: the tools every user shares;
2. the system prompt, sent as one text block (given as blocks, the last of them, whose
   own markers the agent's replace): tools and system, every user shares them;
3. the last block of the newest message: the whole conversation so far, which the next
   turn of the tool loop, or the user's next question, reads back;
4. the last block of the message before the previous one: exactly where the previous
   request of this conversation ended, so that it is read even when a turn added more
   blocks than the lookback reaches (a turn with many tool calls).

A request with prompt caching off has the very same blocks without the markers, so
both ask the same question (the response cache's keys and a simulated model's answers
do not see the markers).
"""

from __future__ import annotations

from typing import Any

from perfkit.agents._history import Message

PROMPT_CACHE_TTLS = ("5m", "1h")
"""The lifetimes ``cache_control.ttl`` accepts (the SDK's cache_control_ephemeral_param.py)."""


def check_ttl(ttl: object) -> str:
    """``ttl`` if it is a lifetime the API accepts, else a ValueError naming them."""
    if ttl not in PROMPT_CACHE_TTLS:
        raise ValueError(f"prompt_cache_ttl must be one of {PROMPT_CACHE_TTLS}, got {ttl!r}")
    return str(ttl)


def with_breakpoints(request: dict[str, Any], *, ttl: str | None) -> dict[str, Any]:
    """``request`` with its system prompt and messages' content as blocks and, unless
    ``ttl`` is None, the breakpoints above: tools and system live ``ttl``, the
    conversation's the default 5 minutes. Nothing of ``request`` is changed in place.

    >>> request = with_breakpoints({"model": "m", "max_tokens": 9, "system": "Be brief.",
    ...     "messages": [{"role": "user", "content": "Hi"}]}, ttl="5m")
    >>> request["system"], request["messages"][0]["content"]
    ([{'type': 'text', 'text': 'Be brief.', 'cache_control': {'type': 'ephemeral'}}], \
[{'type': 'text', 'text': 'Hi', 'cache_control': {'type': 'ephemeral'}}])
    """
    shared = _control(ttl) if ttl is not None else None
    conversation = _control("5m") if ttl is not None else None
    built = dict(request)
    if request.get("tools"):
        *others, last = request["tools"]
        built["tools"] = [*others, _marked(last, shared)]
    system = request.get("system")
    if isinstance(system, str) and system.strip():  # the API refuses a blank text block
        built["system"] = [_marked({"type": "text", "text": system}, shared)]
    elif isinstance(system, list) and _is_blocks(system) and shared is not None:
        # Given as blocks, maybe marked: the agent's one breakpoint replaces their markers
        # (else up to five, and a 1-hour one after the tools' 5-minute one).
        *earlier, last = [_unmarked(block) for block in system]
        built["system"] = [*earlier, _marked(last, shared)]
    messages = [_as_blocks(message) for message in request["messages"]]
    for position in (len(messages) - 1, len(messages) - 3):
        if position >= 0 and _markable(messages[position]["content"]):
            *earlier, last = messages[position]["content"]
            messages[position] = {
                **messages[position],
                "content": [*earlier, _marked(last, conversation)],
            }
    built["messages"] = messages
    return built


def _control(ttl: str) -> dict[str, str]:
    # "5m" is the API's default: sent as the plain marker every API version accepts.
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def _marked(block: dict[str, Any], control: dict[str, str] | None) -> dict[str, Any]:
    return block if control is None else {**block, "cache_control": control}


def _is_blocks(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(b, dict) for b in value)


def _unmarked(block: dict[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in block.items() if key != "cache_control"}


def _markable(content: object) -> bool:
    """Whether the content's last block may carry ``cache_control`` (thinking blocks may
    not: the guide's "what cannot be cached")."""
    return (
        isinstance(content, list)
        and bool(content)
        and isinstance(content[-1], dict)
        and content[-1].get("type") not in ("thinking", "redacted_thinking")
    )


def _as_blocks(message: Message) -> Message:
    """The message with string content as the one text block it is shorthand for."""
    content = message["content"]
    if isinstance(content, str):
        return {**message, "content": [{"type": "text", "text": content}]}
    return message
