"""Request validation as the real Messages API does it: the same status, error type and message.

Sources, cited per rule below:

- [SDK] the installed anthropic SDK's request types and their docstrings
  (``anthropic/types/message_create_params.py``, ``message_count_tokens_params.py``,
  ``*_block_param.py``, ``tool_param.py``, ``thinking_config_*_param.py``,
  ``tool_choice_*_param.py``, ``metadata_param.py``, ``cache_control_ephemeral_param.py``).
- [REC] answers the real API gave, as quoted verbatim in public bug reports (GitHub issues of
  anthropics/claude-code, anthropics/anthropic-sdk-typescript and projects calling the API).
- [PYD] no recorded wording found: the message follows the API's pydantic style
  (``"<path>: Field required"``, ``"Input should be a valid string"``,
  ``"Extra inputs are not permitted"``), with a tagged union's tag in the path as the recorded
  answers show it (``thinking.enabled.budget_tokens``, ``tools.0.custom.name``,
  ``messages.65.content.1.tool_use.text``).

The first problem found is reported, as the real API reports one. Paths are dotted:
``messages.0.content.1.tool_use_id``. Error bodies get their ``request_id`` from the simulator.

Deliberate choices where the sources disagree or are silent:

- Role ``"system"`` inside ``messages`` is refused as the API answered [REC: 'messages: Unexpected
  role "system". ...'], although SDK 2.x declares a ``SystemMessageParam``.
- The first message may be an ``assistant`` one and consecutive turns of one role are allowed:
  the SDK docstring says they are combined into one turn [SDK], and the first-party API answers an
  assistant-first conversation (anthropics/anthropic-sdk-typescript#622). Tool pairing is checked
  on the combined turns.
- ``max_tokens`` may be 0 ("Set to `0` to populate the prompt cache" [SDK]).
- ``temperature``, ``top_k`` and ``top_p`` are no longer in SDK 2.x's parameters but the API has
  long accepted them; they are accepted with their documented ranges.
- Server-side content blocks (``server_tool_use``, ``web_search_tool_result``, ...), a
  ``tool_result``'s ``browser_state`` content, and beta requests' extra block and tool types
  (``compaction``, ``mcp_tool_use``, ...) are accepted without looking inside them.
- Numbers are checked strictly: ``1024.0`` or ``"1024"`` for an integer, ``true`` for a number
  are refused ("max_tokens: Input should be a valid integer" for a string, as quoted in
  strands-agents/harness-sdk#588), although pydantic's lax mode would take them.
- Every check tolerates any JSON value anywhere (a refusal, never an exception), in time linear
  in the body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Refusal",
    "check_count_tokens_request",
    "check_headers",
    "check_messages_request",
]

INVALID = "invalid_request_error"

# [REC] e.g. anthropics/claude-code#8756 (Bedrock passes the API's message through).
THINKING_BUDGET_MESSAGE = (
    "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation"
    " at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
)
# [REC] n8n-io/n8n#22550, OpenRouterTeam/ai-sdk-provider#162.
THINKING_PREFIX_MESSAGE = (
    "Expected `thinking` or `redacted_thinking`, but found `{found}`. When `thinking` is enabled,"
    " a final `assistant` message must start with a thinking block (preceeding the lastmost set of"
    " `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous"
    " turns. To avoid this requirement, disable `thinking`. Please consult our documentation at "
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)


@dataclass(frozen=True)
class Refusal:
    """An error answer: HTTP status, the body's ``error.type`` and ``error.message``."""

    status: int
    error_type: str
    message: str


class _Refused(Exception):
    def __init__(self, message: str, *, status: int = 400, error_type: str = INVALID) -> None:
        super().__init__(message)
        self.refusal = Refusal(status, error_type, message)


def _refuse(path: str, message: str) -> _Refused:
    return _Refused(f"{path}: {message}" if path else message)


def _join(*parts: object) -> str:
    return ".".join(str(part) for part in parts if part != "")


# -- body and headers -------------------------------------------------------------------------


def check_headers(headers: Mapping[str, str]) -> Refusal | None:
    """The header checks every endpoint makes first: a credential, then ``anthropic-version``.

    - No ``x-api-key`` and no ``authorization: Bearer`` -> 401 ``authentication_error``
      "x-api-key header is required" (no recording of this answer was found: the wording is
      ours, after the anthropic-version one). SDK 2.x sends its ``api_key`` and
      ``auth_token`` both as ``Authorization: Bearer`` (``anthropic/_client.py``).
    - No ``anthropic-version`` -> 400 "anthropic-version: header is required"
      [REC: envoyproxy/ai-gateway#1909, PipedreamHQ/pipedream#9697].
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    bearer = lowered.get("authorization", "")
    has_bearer = bearer.lower().startswith("bearer ") and bool(bearer[7:].strip())
    if not lowered.get("x-api-key", "").strip() and not has_bearer:
        return Refusal(401, "authentication_error", "x-api-key header is required")
    if not lowered.get("anthropic-version", "").strip():
        return Refusal(400, INVALID, "anthropic-version: header is required")
    return None


# -- field sets [SDK] -------------------------------------------------------------------------

_COMMON_FIELDS = frozenset(
    {
        "messages",
        "model",
        "cache_control",
        "output_config",
        "speed",
        "system",
        "thinking",
        "tool_choice",
        "tools",
        "user_profile_id",
        "workspace_id",
    }
)
# message_create_params.py, plus the long-standing sampling parameters (see the module docstring).
_CREATE_FIELDS = _COMMON_FIELDS | {
    "max_tokens",
    "container",
    "diagnostics",
    "inference_geo",
    "metadata",
    "service_tier",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
}
# message_count_tokens_params.py
_COUNT_FIELDS = _COMMON_FIELDS
# beta/message_create_params.py and beta/message_count_tokens_params.py add these.
_BETA_FIELDS = frozenset(
    {
        "billing_policy",
        "compaction",
        "context_management",
        "fallback_credit_token",
        "fallbacks",
        "mcp_servers",
        "thread",
    }
)

_ROLES = ("user", "assistant")
_OPTIONAL = frozenset({"cache_control"})


@dataclass(frozen=True)
class _Shape:
    required: Mapping[str, type | tuple[type, ...]]
    optional: frozenset[str]


# Client content blocks, from each *_block_param.py and the matching response block (a reply's
# ``content`` passed back as it came is valid: MessageContentParam includes ContentBlock).
_BLOCKS: dict[str, _Shape] = {
    "text": _Shape({"text": str}, _OPTIONAL | {"citations"}),
    "image": _Shape({"source": dict}, _OPTIONAL | {"transformations"}),
    "document": _Shape({"source": dict}, _OPTIONAL | {"citations", "context", "title"}),
    "search_result": _Shape(
        {"content": list, "source": str, "title": str}, _OPTIONAL | {"citations"}
    ),
    "thinking": _Shape({"signature": str, "thinking": str}, frozenset()),
    "redacted_thinking": _Shape({"data": str}, frozenset()),
    "tool_use": _Shape(
        {"id": str, "input": dict, "name": str}, _OPTIONAL | {"caller", "toolset_name"}
    ),
    "tool_result": _Shape(
        {"tool_use_id": str}, _OPTIONAL | {"content", "is_error", "toolset_name"}
    ),
}
# Server-tool blocks: accepted as they are (the simulator runs no server tools).
_SERVER_BLOCKS = frozenset(
    {
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
    }
)
# Blocks only beta requests take (beta/beta_content_block_param.py): accepted as they are.
_BETA_BLOCKS = frozenset(
    {
        "advisor_tool_result",
        "compaction",
        "fallback",
        "mcp_tool_listing",
        "mcp_tool_result",
        "mcp_tool_use",
        "tool_addition",
        "tool_removal",
    }
)
_BLOCK_TAGS = (*_BLOCKS, *sorted(_SERVER_BLOCKS))
# tool_result_block_param.py's Content
_TOOL_RESULT_CONTENT = frozenset(
    {"text", "image", "document", "search_result", "tool_reference", "browser_state"}
)

# tool_param.py (the custom tool) and the server tools of tool_union_param.py.
_CUSTOM_TOOL_FIELDS = frozenset(
    {
        "input_schema",
        "name",
        "allowed_callers",
        "cache_control",
        "defer_loading",
        "description",
        "eager_input_streaming",
        "input_examples",
        "strict",
        "type",
    }
)
_SERVER_TOOLS = frozenset(
    {
        "bash_20250124",
        "code_execution_20250522",
        "code_execution_20250825",
        "code_execution_20260120",
        "code_execution_20260521",
        "browser_toolset_20260801",
        "memory_20250818",
        "computer_toolset_20260801",
        "text_editor_20250124",
        "text_editor_20250429",
        "text_editor_20250728",
        "web_search_20250305",
        "web_fetch_20250910",
        "web_search_20260209",
        "web_fetch_20260209",
        "web_fetch_20260309",
        "web_search_20260318",
        "web_fetch_20260318",
        "tool_search_tool_bm25_20251119",
        "tool_search_tool_bm25",
        "tool_search_tool_regex_20251119",
        "tool_search_tool_regex",
    }
)
# [REC] home-assistant/core#147760 (pattern), anthropics/claude-code#96152 (length).
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")

_THINKING_TYPES = ("enabled", "disabled", "between_tools", "adaptive")
_TOOL_CHOICE_TYPES = ("auto", "any", "tool", "none")

_TYPE_NAMES: dict[type, str] = {
    str: "a valid string",
    dict: "a valid dictionary",
    list: "a valid list",
    bool: "a valid boolean",
    int: "a valid integer",
}


# -- public checks ----------------------------------------------------------------------------


def check_messages_request(
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    beta: bool = False,
    max_output_tokens: int | None = None,
) -> Refusal | None:
    """The refusal the real API gives a ``POST /v1/messages``, or ``None`` for a valid request.

    The beta fields (``context_management``, ``mcp_servers``, ...) are admitted with an
    ``anthropic-beta`` header or ``beta=True`` (a ``?beta=true`` URL); without, the API answers
    "context_management: Extra inputs are not permitted" [REC: anthropics/claude-code#14135].
    ``max_output_tokens`` is the model's output limit when the caller knows it.

    >>> ok = {"model": "claude-sonnet-4-5", "max_tokens": 64,
    ...       "messages": [{"role": "user", "content": "Hi"}]}
    >>> check_messages_request(ok, {"x-api-key": "k", "anthropic-version": "2023-06-01"}) is None
    True
    """
    refusal = check_headers(headers)
    if refusal is not None:
        return refusal
    beta = beta or bool(_header(headers, "anthropic-beta"))
    try:
        _check_request(body, _CREATE_FIELDS | (_BETA_FIELDS if beta else frozenset()), beta=beta)
        _check_create_only(body, headers, max_output_tokens)
    except _Refused as refused:
        return refused.refusal
    return None


def check_count_tokens_request(
    body: Mapping[str, Any], headers: Mapping[str, str], *, beta: bool = False
) -> Refusal | None:
    """The refusal for ``POST /v1/messages/count_tokens``: the create fields without
    ``max_tokens``, ``stream``, ``metadata``, ``stop_sequences`` and the like [SDK]."""
    refusal = check_headers(headers)
    if refusal is not None:
        return refusal
    beta = beta or bool(_header(headers, "anthropic-beta"))
    try:
        _check_request(body, _COUNT_FIELDS | (_BETA_FIELDS if beta else frozenset()), beta=beta)
    except _Refused as refused:
        return refused.refusal
    return None


# -- the request ------------------------------------------------------------------------------


def _check_request(body: Mapping[str, Any], allowed: frozenset[str], *, beta: bool) -> None:
    for name in body:
        if name not in allowed:
            raise _refuse(name, "Extra inputs are not permitted")  # [REC] context_management, ...
    required = (
        ("max_tokens", "messages", "model") if "max_tokens" in allowed else ("messages", "model")
    )
    for name in required:
        if name not in body:
            raise _refuse(name, "Field required")  # [SDK] Required[...]
    _expect(body["model"], str, "model")
    _check_tool_choice(body.get("tool_choice"), _check_tools(body.get("tools"), beta=beta))
    _check_system(body.get("system"))
    _check_cache_control(body.get("cache_control"), "cache_control")
    _check_thinking(body.get("thinking"), beta=beta)
    _check_output_config(body.get("output_config"), beta=beta)
    _check_literal(body.get("speed"), "speed", ("standard", "fast"))
    _check_messages(body["messages"], thinking=_thinking_type(body), beta=beta)
    _check_breakpoint_count(body)


def _check_create_only(
    body: Mapping[str, Any], headers: Mapping[str, str], max_output_tokens: int | None
) -> None:
    max_tokens = _integer(body["max_tokens"], "max_tokens")
    if max_tokens < 0:
        # [SDK] "Set to `0` to populate the prompt cache"
        raise _refuse("max_tokens", "Input should be greater than or equal to 0")
    if max_output_tokens is not None and max_tokens > max_output_tokens:
        # [REC] quoted in tensorzero/tensorzero (tensorzero-core/src/providers/
        # gcp_vertex_anthropic.rs): "max_tokens: XXX > 64000, which is the maximum allowed
        # number of output tokens for claude-3-7-sonnet-20250219".
        raise _refuse(
            "max_tokens",
            f"{max_tokens} > {max_output_tokens}, which is the maximum allowed number of output "
            f"tokens for {body['model']}",
        )
    if "stream" in body:
        _expect(body["stream"], bool, "stream")
    _check_literal(body.get("service_tier"), "service_tier", ("auto", "standard_only"))
    _check_stop_sequences(body.get("stop_sequences"))
    _check_metadata(body.get("metadata"))
    _check_sampling(body)
    thinking = body.get("thinking")
    if _thinking_type(body) == "enabled" and isinstance(thinking, Mapping):
        interleaved = "interleaved-thinking" in _header(headers, "anthropic-beta")
        if thinking["budget_tokens"] >= max_tokens and not interleaved:
            raise _Refused(THINKING_BUDGET_MESSAGE)


# -- top-level fields -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tools:
    """The tools a request offers: their names, and whether a toolset (browser, computer, MCP:
    no ``name`` of its own) brings tools whose names only its server knows."""

    names: Sequence[str]
    toolsets: bool

    def __bool__(self) -> bool:
        return bool(self.names) or self.toolsets

    def offers(self, name: str) -> bool:
        return self.toolsets or name in self.names


def _check_tools(tools: object, *, beta: bool) -> _Tools:
    if tools is None:
        return _Tools((), toolsets=False)
    _expect(tools, list, "tools")
    assert isinstance(tools, list)
    names: list[str] = []
    toolsets = False
    for index, tool in enumerate(tools):
        _expect(tool, dict, _join("tools", index))
        kind = tool.get("type")
        if kind in (None, "custom"):
            names.append(_check_custom_tool(tool, _join("tools", index, "custom")))
        elif isinstance(kind, str) and (kind in _SERVER_TOOLS or beta):
            if isinstance(tool.get("name"), str):
                names.append(tool["name"])
            else:  # a toolset (browser_toolset_*, computer_toolset_*, mcp_toolset)
                toolsets = True
        else:
            raise _refuse(
                _join("tools", index),
                f"Input tag {kind!r} found using 'type' does not match any of the expected tags: "
                + ", ".join(repr(tag) for tag in ("custom", *sorted(_SERVER_TOOLS))),
            )
    if len(set(names)) != len(names):
        raise _Refused("tools: Tool names must be unique.")  # [REC] danny-avila/LibreChat#13162
    return _Tools(names, toolsets=toolsets)


def _check_custom_tool(tool: Mapping[str, Any], path: str) -> str:
    for field in tool:
        if field not in _CUSTOM_TOOL_FIELDS:
            # [REC] "tools.0.custom.defer_loading: Extra inputs are not permitted"
            raise _refuse(_join(path, field), "Extra inputs are not permitted")
    for field in ("input_schema", "name"):
        if field not in tool:
            raise _refuse(_join(path, field), "Field required")
    name: str = tool["name"]
    _expect(name, str, _join(path, "name"))
    if len(name) > 128:
        raise _refuse(_join(path, "name"), "String should have at most 128 characters")
    if not _TOOL_NAME.match(name):
        raise _refuse(_join(path, "name"), f"String should match pattern '{_TOOL_NAME.pattern}'")
    schema = tool["input_schema"]
    _expect(schema, dict, _join(path, "input_schema"))
    if "type" not in schema:
        # [REC] "tools.17.custom.input_schema.type: Field required", quoted in many projects'
        # changelogs (a root anyOf schema has no type)
        raise _refuse(_join(path, "input_schema", "type"), "Field required")
    if schema["type"] != "object":
        # [SDK] InputSchemaTyped.type: Required[Literal["object"]]
        raise _refuse(_join(path, "input_schema", "type"), "Input should be 'object'")
    if "description" in tool:
        _expect(tool["description"], str, _join(path, "description"))
    _check_cache_control(tool.get("cache_control"), _join(path, "cache_control"))
    return name


def _check_tool_choice(choice: object, tools: _Tools) -> None:
    if choice is None:
        return
    choice, kind = _tagged(choice, "tool_choice", _TOOL_CHOICE_TYPES)
    allowed = {"type", "disable_parallel_tool_use"} | ({"name"} if kind == "tool" else set())
    if kind == "none":
        allowed = {"type"}
    for name in choice:
        if name not in allowed:
            raise _refuse(_join("tool_choice", kind, name), "Extra inputs are not permitted")
    if "disable_parallel_tool_use" in choice:
        _expect(
            choice["disable_parallel_tool_use"],
            bool,
            _join("tool_choice", kind, "disable_parallel_tool_use"),
        )
    if kind in ("any", "tool") and not tools:
        # [REC] "tool_choice.any may only be specified while providing tools", as adapters of
        # the API quote it (code search); no quote found for "auto" or "none" without tools,
        # so those pass.
        raise _Refused(f"tool_choice.{kind} may only be specified while providing tools")
    if kind == "tool":
        if "name" not in choice:
            raise _refuse("tool_choice.tool.name", "Field required")
        _expect(choice["name"], str, "tool_choice.tool.name")
        if not tools.offers(choice["name"]):
            # [REC] "Tool 'web_search' not found in provided tools", as API adapters quote it.
            raise _Refused(f"Tool '{choice['name']}' not found in provided tools")


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _refuse("system", "Input should be a valid string or a valid list")  # [PYD]
    for index, block in enumerate(system):
        path = _join("system", index)
        _expect(block, dict, path)
        if block.get("type") != "text":
            raise _refuse(
                _join(path, "type"), "Input should be 'text'"
            )  # [SDK] Iterable[TextBlockParam]
        _check_block_fields(block, _BLOCKS["text"], _join(path, "text"))
        if not block["text"]:
            raise _Refused("system: text content blocks must be non-empty")  # [REC] as for messages


def _check_cache_control(value: object, path: str) -> None:
    if value is None:
        return
    _expect(value, dict, path)
    assert isinstance(value, dict)
    if value.get("type") != "ephemeral":
        raise _refuse(_join(path, "type"), "Input should be 'ephemeral'")  # [SDK]
    for name in value:
        if name not in ("type", "ttl"):
            raise _refuse(_join(path, "ephemeral", name), "Extra inputs are not permitted")  # [REC]
    _check_literal(value.get("ttl"), _join(path, "ttl"), ("5m", "1h"))


MAX_BREAKPOINTS = 4
"""Blocks a request may mark with ``cache_control`` (the prompt-caching guide)."""


def _check_breakpoint_count(body: Mapping[str, Any]) -> None:
    """At most four blocks with ``cache_control`` in tools, system and messages. The wording
    is the API's [REC: tghamm/Anthropic.SDK#50]. A top-level ``cache_control`` is not
    counted: no source says whether the API counts it."""
    marked = [body.get("tools"), body.get("system")]
    for message in body.get("messages") or []:
        if isinstance(message, Mapping):
            marked.append(message.get("content"))
    found = sum(
        isinstance(block, Mapping) and block.get("cache_control") is not None
        for blocks in marked
        if isinstance(blocks, list)
        for block in blocks
    )
    if found > MAX_BREAKPOINTS:
        raise _Refused(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided."
            f" Found {found}."
        )


def _thinking_type(body: Mapping[str, Any]) -> object:
    thinking = body.get("thinking")
    return thinking.get("type") if isinstance(thinking, Mapping) else None


def _check_thinking(thinking: object, *, beta: bool) -> None:
    if thinking is None:
        return
    thinking, kind = _tagged(thinking, "thinking", _THINKING_TYPES)
    allowed = {"type"} | ({"budget_tokens", "display"} if kind == "enabled" else set())
    if kind == "adaptive":
        allowed.add("display")
    if beta and kind in ("enabled", "adaptive"):
        allowed.add("block_binding")  # beta/beta_thinking_config_{enabled,adaptive}_param.py
    for name in thinking:
        if name not in allowed:
            raise _refuse(_join("thinking", kind, name), "Extra inputs are not permitted")
    if "display" in thinking:
        displays = ("summarized", "omitted", "updates") if beta else ("summarized", "omitted")
        _check_literal(thinking["display"], _join("thinking", kind, "display"), displays)
    if kind == "enabled":
        if "budget_tokens" not in thinking:
            raise _refuse("thinking.enabled.budget_tokens", "Field required")
        budget = _integer(thinking["budget_tokens"], "thinking.enabled.budget_tokens")
        if budget < 1024:
            # [SDK] "budget_tokens of at least 1,024"; [REC] themaximalist/llm.js#30
            raise _refuse(
                "thinking.enabled.budget_tokens", "Input should be greater than or equal to 1024"
            )


def _check_output_config(config: object, *, beta: bool) -> None:
    if config is None:
        return
    _expect(config, dict, "output_config")
    assert isinstance(config, dict)
    # beta/beta_output_config_param.py adds task_budget
    fields = ("effort", "format", "task_budget") if beta else ("effort", "format")
    for name in config:
        if name not in fields:
            raise _refuse(_join("output_config", name), "Extra inputs are not permitted")
    _check_literal(
        config.get("effort"), "output_config.effort", ("low", "medium", "high", "xhigh", "max")
    )
    output_format = config.get("format")
    if output_format is not None:
        _expect(output_format, dict, "output_config.format")
        if output_format.get("type") != "json_schema":
            raise _refuse("output_config.format.type", "Input should be 'json_schema'")  # [SDK]
        if "schema" not in output_format:
            raise _refuse("output_config.format.schema", "Field required")


def _check_stop_sequences(value: object) -> None:
    if value is None:
        return
    _expect(value, list, "stop_sequences")
    assert isinstance(value, list)
    for index, item in enumerate(value):
        _expect(item, str, _join("stop_sequences", index))


def _check_metadata(value: object) -> None:
    if value is None:
        return
    _expect(value, dict, "metadata")
    assert isinstance(value, dict)
    for name in value:
        if name != "user_id":
            raise _refuse(_join("metadata", name), "Extra inputs are not permitted")
    if value.get("user_id") is not None:
        _expect(value["user_id"], str, "metadata.user_id")


def _check_sampling(body: Mapping[str, Any]) -> None:
    # The ranges earlier SDKs documented: temperature "Ranges from 0.0 to 1.0", top_p a probability.
    for name in ("temperature", "top_p"):
        if name in body:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _refuse(name, "Input should be a valid number")
            if value < 0:
                raise _refuse(name, "Input should be greater than or equal to 0")
            if value > 1:
                raise _refuse(name, "Input should be less than or equal to 1")
    if "top_k" in body and _integer(body["top_k"], "top_k") < 0:
        raise _refuse("top_k", "Input should be greater than or equal to 0")


# -- messages and the conversation ------------------------------------------------------------


@dataclass
class _Turn:
    """Consecutive messages of one role, combined as the API combines them [SDK]."""

    role: str
    blocks: list[tuple[int, int, Mapping[str, Any]]]  # (message index, block index, block)
    first: int
    last: int


MAX_MESSAGES = 100_000
"""Messages a request may hold (``message_create_params.py``)."""


def _check_messages(messages: object, *, thinking: object, beta: bool) -> None:
    _expect(messages, list, "messages")
    assert isinstance(messages, list)
    if not messages:
        raise _Refused(
            "messages: at least one message is required"
        )  # [REC] hinthornw/promptimizer#19
    if len(messages) > MAX_MESSAGES:
        # [SDK] "There is a limit of 100,000 messages in a single request."; [PYD] wording
        raise _refuse(
            "messages",
            f"List should have at most {MAX_MESSAGES} items after validation, not {len(messages)}",
        )
    turns: list[_Turn] = []
    for index, message in enumerate(messages):
        role, blocks = _check_message(message, index, final=index == len(messages) - 1, beta=beta)
        if turns and turns[-1].role == role:
            turns[-1].blocks.extend(blocks)
            turns[-1].last = index
        else:
            turns.append(_Turn(role, list(blocks), index, index))
    _check_text_blocks(turns)
    _check_tool_pairing(turns)
    _check_final_assistant(turns, thinking=thinking)


def _check_message(
    message: object, index: int, *, final: bool, beta: bool
) -> tuple[str, list[tuple[int, int, Mapping[str, Any]]]]:
    path = _join("messages", index)
    _expect(message, dict, path)
    assert isinstance(message, dict)
    for name in ("content", "role"):
        if name not in message:
            raise _refuse(_join(path, name), "Field required")
    for name in message:
        if name not in ("content", "role"):
            raise _refuse(_join(path, name), "Extra inputs are not permitted")
    role = message["role"]
    if role == "system":
        # [REC] aaronrussell/anthropix#2 (the API's own message)
        raise _Refused(
            'messages: Unexpected role "system". The Messages API accepts a top-level `system`'
            ' parameter, not "system" as an input message role.'
        )
    if role not in _ROLES:
        raise _refuse(_join(path, "role"), "Input should be 'user' or 'assistant'")  # [SDK] Literal
    content = message["content"]
    if isinstance(content, str):
        blocks: list[tuple[int, int, Mapping[str, Any]]] = [
            (index, 0, {"type": "text", "text": content})
        ]
    elif isinstance(content, list):
        blocks = [
            (index, position, _check_block(block, _join(path, "content", position), beta=beta))
            for position, block in enumerate(content)
        ]
    else:
        raise _refuse(
            _join(path, "content"), "Input should be a valid string or a valid list"
        )  # [PYD]
    if not content and not (final and role == "assistant"):
        # [REC] anthropics/claude-code#4416
        raise _refuse(
            path,
            "all messages must have non-empty content except for the optional final assistant"
            " message",
        )
    return role, blocks if content else []


def _check_block(block: object, path: str, *, beta: bool) -> Mapping[str, Any]:
    _expect(block, dict, path)
    assert isinstance(block, dict)
    kind = block.get("type")
    if "type" not in block:
        raise _refuse(_join(path, "type"), "Field required")
    if isinstance(kind, str) and (kind in _SERVER_BLOCKS or (beta and kind in _BETA_BLOCKS)):
        return block
    if not isinstance(kind, str) or kind not in _BLOCKS:
        raise _refuse(path, _tag_message(kind, _BLOCK_TAGS))
    _check_block_fields(block, _BLOCKS[kind], _join(path, kind))
    if kind == "tool_use" and not _TOOL_ID.match(block["id"]):
        # [REC] anomalyco/opencode#1279
        raise _refuse(
            _join(path, "tool_use", "id"), f"String should match pattern '{_TOOL_ID.pattern}'"
        )
    if kind == "tool_result":
        _check_tool_result_content(block, path)
    _check_cache_control(block.get("cache_control"), _join(path, kind, "cache_control"))
    return block


def _check_block_fields(block: Mapping[str, Any], shape: _Shape, path: str) -> None:
    for name in block:
        if name != "type" and name not in shape.required and name not in shape.optional:
            # [REC] "messages.65.content.1.tool_use.text: Extra inputs are not permitted"
            raise _refuse(_join(path, name), "Extra inputs are not permitted")
    for name, kind in shape.required.items():
        if name not in block:
            raise _refuse(_join(path, name), "Field required")
        _expect(block[name], kind, _join(path, name))


def _check_tool_result_content(block: Mapping[str, Any], path: str) -> None:
    content = block.get("content")
    if "is_error" in block:
        _expect(block["is_error"], bool, _join(path, "tool_result", "is_error"))
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _refuse(
            _join(path, "tool_result", "content"), "Input should be a valid string or a valid list"
        )
    for index, item in enumerate(content):
        item_path = _join(path, "tool_result", "content", index)
        _expect(item, dict, item_path)
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in _TOOL_RESULT_CONTENT:
            raise _refuse(item_path, _tag_message(kind, tuple(sorted(_TOOL_RESULT_CONTENT))))
        if kind in _BLOCKS:
            _check_block_fields(item, _BLOCKS[kind], _join(item_path, kind))


def _check_text_blocks(turns: Sequence[_Turn]) -> None:
    for turn in turns:
        for _, _, block in turn.blocks:
            for text in _texts(block):
                if not text:
                    raise _Refused(
                        "messages: text content blocks must be non-empty"
                    )  # [REC] claude-code#59812
                if not text.strip():
                    # [REC] anthropics/claude-code#23369
                    raise _Refused("messages: text content blocks must contain non-whitespace text")


def _texts(block: Mapping[str, Any]) -> list[str]:
    if block.get("type") == "text":
        return [block["text"]]
    content = block.get("content") if block.get("type") == "tool_result" else None
    if isinstance(content, list):
        return [
            item["text"]
            for item in content
            if isinstance(item, Mapping) and item.get("type") == "text"
        ]
    return []


def _check_tool_pairing(turns: Sequence[_Turn]) -> None:
    """Each turn's tool results answer the assistant turn just before it, and each tool call
    is answered in the next turn: a stray result is reported before a missing one."""
    seen: set[str] = set()
    calling: _Turn | None = None
    ids: list[str] = []
    for turn in turns:
        if turn.role == "assistant":
            ids = _tool_use_ids(turn, seen)
            calling = turn
            if turn is turns[-1]:
                _check_answered(turn, None, ids)
            continue
        _check_results(turn, len(ids), set(ids))
        if calling is not None:
            _check_answered(calling, turn, ids)
        calling, ids = None, []


def _tool_use_ids(turn: _Turn, seen: set[str]) -> list[str]:
    ids: list[str] = []
    for message, position, block in turn.blocks:
        if block.get("type") == "tool_use":
            if block["id"] in seen:
                # [REC] anomalyco/opencode#1279
                raise _refuse(
                    _join("messages", message, "content", position),
                    "`tool_use` ids must be unique",
                )
            seen.add(block["id"])
            ids.append(block["id"])
    return ids


def _check_answered(turn: _Turn, following: _Turn | None, ids: Sequence[str]) -> None:
    if not ids:
        return
    answered = {
        block["tool_use_id"]
        for _, _, block in (following.blocks if following else [])
        if block.get("type") == "tool_result"
    }
    missing = [tool_id for tool_id in ids if tool_id not in answered]
    if missing:
        unanswered = set(missing)
        message = next(
            index
            for index, _, block in turn.blocks
            if block.get("type") == "tool_use" and block["id"] in unanswered
        )
        # [REC] anthropics/claude-code#5989, Kilo-Org/kilocode#5163
        raise _refuse(
            _join("messages", message),
            "`tool_use` ids were found without `tool_result` blocks immediately after: "
            + ", ".join(missing)
            + ". Each `tool_use` block must have a corresponding `tool_result` block in the next"
            " message.",
        )


def _check_results(turn: _Turn, calls: int, tool_use_ids: set[str]) -> None:
    leading = True
    for message, position, block in turn.blocks:
        if block.get("type") != "tool_result":
            leading = False
            continue
        if block["tool_use_id"] not in tool_use_ids:
            # [REC] the recording; anthropics/claude-code#13460, continuedev/continue#4751
            raise _refuse(
                _join("messages", message, "content", position),
                f"unexpected `tool_use_id` found in `tool_result` blocks: {block['tool_use_id']}. "
                "Each `tool_result` block must have a corresponding `tool_use` block in the"
                " previous message.",
            )
        if not leading:
            # [REC] anthropics/anthropic-sdk-typescript#653 (the wording for results not first)
            raise _refuse(
                _join("messages", turn.first),
                f"Did not find {calls} `tool_result` block(s) at the beginning of this"
                " message. Messages following `tool_use` blocks must begin with a matching number"
                " of `tool_result` blocks.",
            )


def _check_final_assistant(turns: Sequence[_Turn], *, thinking: object) -> None:
    """A final assistant turn may hold thinking blocks only with thinking on (enabled,
    adaptive or between tools); with ``enabled`` the turn a final answer continues must open
    with one (the recordings show it for ``enabled``; none for the other kinds)."""
    final = turns[-1]
    if final.role == "assistant" and final.blocks:
        message, position, block = final.blocks[-1]
        if block.get("type") == "text" and block["text"] != block["text"].rstrip():
            # [REC] tailcallhq/forgecode#1872
            raise _Refused("messages: final assistant content cannot end with trailing whitespace")
        if thinking in (None, "disabled"):
            for message, position, block in final.blocks:
                if block.get("type") in ("thinking", "redacted_thinking"):
                    # [REC] tailcallhq/forgecode#1853
                    raise _refuse(
                        _join("messages", message, "content", position),
                        "When thinking is disabled, an `assistant` message in the final position"
                        " cannot contain `thinking`. To use thinking blocks, enable `thinking` in"
                        " your request.",
                    )
    if thinking != "enabled":
        return
    assistant = _thinking_turn(turns)
    if assistant is not None and assistant.blocks:
        message, position, block = assistant.blocks[0]
        if block.get("type") not in ("thinking", "redacted_thinking"):
            raise _refuse(
                _join("messages", message, "content", position, "type"),
                THINKING_PREFIX_MESSAGE.format(found=block.get("type")),
            )


def _thinking_turn(turns: Sequence[_Turn]) -> _Turn | None:
    """The assistant turn that must open with thinking: the one the request continues (a final
    prefill, or the one whose tool calls the final user turn answers), traced back through the
    tool loop it continues. Without interleaved thinking the model thinks once, before its
    first call, and the messages after each tool result continue that turn with no thinking of
    their own (the extended-thinking guide); every recorded refusal names ``messages.1``."""
    if turns[-1].role == "assistant":
        index = len(turns) - 1
    elif len(turns) > 1 and _answers_tools(turns[-1]):
        index = len(turns) - 2
    else:
        return None
    while index >= 2 and _answers_tools(turns[index - 1]):
        index -= 2  # roles alternate: turns[index - 2] is the assistant that called those tools
    return turns[index]


def _answers_tools(turn: _Turn) -> bool:
    return any(block.get("type") == "tool_result" for _, _, block in turn.blocks)


# -- small helpers ----------------------------------------------------------------------------


def _expect(value: object, kind: type | tuple[type, ...], path: str) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    bool_for_number = isinstance(value, bool) and bool not in kinds
    if bool_for_number or not isinstance(value, kinds):
        raise _refuse(
            path, "Input should be " + " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        )


def _integer(value: object, path: str) -> int:
    _expect(value, int, path)
    assert isinstance(value, int)
    return value


def _check_literal(value: object, path: str, allowed: Sequence[str]) -> None:
    if value is None:  # absent (or null for the Optional ones)
        return
    if value not in allowed:
        choices = ", ".join(repr(choice) for choice in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise _refuse(path, f"Input should be {choices}")


def _tagged(value: object, path: str, tags: Sequence[str]) -> tuple[Mapping[str, Any], str]:
    """``value`` as an object whose ``type`` is one of ``tags``, and that type; else the
    API's refusal (not an object, or a tag it does not know)."""
    _expect(value, dict, path)
    assert isinstance(value, dict)
    kind = value.get("type")
    if kind not in tags:
        raise _refuse(path, _tag_message(kind, tags))
    return value, str(kind)


def _tag_message(tag: object, tags: Sequence[str]) -> str:
    if tag is None:
        return "Unable to extract tag using discriminator 'type'"
    return (
        f"Input tag {tag!r} found using 'type' does not match any of the expected tags: "
        + ", ".join(repr(t) for t in tags)
    )


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name), "")
