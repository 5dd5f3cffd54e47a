"""Request validation for the simulated Chat Completions API: what the real API refuses
with 400 ``invalid_request_error``, with its messages, ``param`` and ``code``.

Sources, rule by rule: the parameters the installed SDK sends
(``openai/types/chat/completion_create_params.py``), the fields its param types require
(a message's ``role`` and ``content``, a tool's ``type`` and its function's ``name``) and
their docstrings ("Up to 4 sequences" for ``stop``, "Only set this when you set
``stream: true``" for ``stream_options``); the wording of the API's answers as users
recorded them in issue threads: "Invalid 'messages': empty array. Expected an array with
minimum length 1, but got an empty array instead." (code ``empty_array``), "Missing
required parameter: 'messages'." (``missing_required_parameter``), "Invalid parameter:
messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."
(param ``messages.[N].role``), "Invalid parameter: 'tool_call_id' of '...' not found in
'tool_calls' of previous message.", and "An assistant message with 'tool_calls' must be
followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids
did not have response messages: ...".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
"""The roles the API accepts, in the order its ``invalid_value`` message lists them
(``function`` is the deprecated one; the SDK still has its message type)."""

PARAMETERS = frozenset(
    {
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "messages",
        "metadata",
        "modalities",
        "model",
        "moderation",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
"""Every top-level parameter of ``chat.completions.create`` in the installed SDK."""

MAX_STOP_SEQUENCES = 4


@dataclass(frozen=True)
class RequestError:
    """A request the API refuses: the fields of its error body, and the status."""

    message: str
    param: str | None = None
    code: str | None = None
    status: int = 400
    type: str = "invalid_request_error"


def validate(body: Mapping[str, Any], *, strict: bool = True) -> RequestError | None:
    """The first rule ``body`` breaks, or None if the API would accept it. Not ``strict``,
    only what the simulator cannot answer is refused (more than one choice)."""
    return next(_problems(body) if strict else _unsupported(body), None)


def _problems(body: Mapping[str, Any]) -> Iterator[RequestError]:
    for name in body:
        if name not in PARAMETERS:
            yield RequestError(f"Unrecognized request argument supplied: {name}")
    if not body.get("model"):
        yield RequestError("you must provide a model parameter")
    yield from _check_messages(body.get("messages"))
    yield from _check_tools(body.get("tools"))
    yield from _check_options(body)
    yield from _check_sampling(body)
    yield from _check_tool_options(body)
    yield from _check_response_format(body)
    yield from _unsupported(body)


def _check_messages(messages: Any) -> Iterator[RequestError]:
    if messages is None:
        yield _missing("messages")
        return
    if not isinstance(messages, list):
        yield _wrong_type("messages", "an array", messages)
        return
    if not messages:
        yield RequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
        return
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            yield _wrong_type(where, "an object", message)
            return
        role = message.get("role")
        if role is None:
            yield _missing(f"{where}.role")
            return
        if role not in ROLES:
            supported = ", ".join(f"'{name}'" for name in ROLES[:-1])
            yield RequestError(
                f"Invalid value: {_quote(role)}. Supported values are: {supported}, "
                f"and '{ROLES[-1]}'.",
                param=f"{where}.role",
                code="invalid_value",
            )
            return
        content = message.get("content")
        if content is None and role != "assistant":  # an assistant may only call tools
            yield _missing(f"{where}.content")
            return
        if content is None and not (message.get("tool_calls") or message.get("function_call")):
            # The SDK: an assistant's content is "Required unless `tool_calls` or
            # `function_call` is specified"; the API's body as recorded in users' code.
            yield RequestError(
                "Invalid value for 'content': expected a string, got null.",
                param=f"messages.[{index}].content",
            )
            return
        if content is not None and not isinstance(content, (str, list)):
            yield _wrong_type(f"{where}.content", "one of a string or array of objects", content)
            return
        if role == "tool" and "tool_call_id" not in message:
            yield _missing(f"{where}.tool_call_id")
            return
        for number, call in enumerate(message.get("tool_calls") or ()):
            if not isinstance(call, dict) or not call.get("id"):
                yield _missing(f"{where}.tool_calls[{number}].id")
                return
    yield from _check_tool_pairing(messages)


def _check_tool_pairing(messages: list[dict[str, Any]]) -> Iterator[RequestError]:
    """Each tool message answers a call of the assistant message before the run of tool
    messages it is in, and every call of that assistant message is answered there."""
    pending: dict[str, None] = {}  # the calls of the open assistant turn, in order
    called: set[str] = set()
    opened_at: int | None = None  # the index of the assistant message with tool_calls
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            if opened_at is None:
                yield RequestError(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
                return
            call_id = message["tool_call_id"]
            if call_id not in called:
                yield RequestError(
                    f"Invalid parameter: 'tool_call_id' of {_quote(call_id)} not found in "
                    "'tool_calls' of previous message.",
                    param=f"messages.[{index}].tool_call_id",
                )
                return
            pending.pop(call_id, None)
            continue
        if opened_at is not None and pending:
            yield _unanswered(opened_at, pending)
            return
        ids = [call["id"] for call in message.get("tool_calls") or ()]
        opened_at = index if role == "assistant" and ids else None
        pending, called = dict.fromkeys(ids), set(ids)
    if opened_at is not None and pending:
        yield _unanswered(opened_at, pending)


def _unanswered(index: int, pending: dict[str, None]) -> RequestError:
    return RequestError(
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(pending),
        param=f"messages.[{index}].role",
    )


def _check_tools(tools: Any) -> Iterator[RequestError]:
    if tools is None:
        return
    if not isinstance(tools, list):
        yield _wrong_type("tools", "an array", tools)
        return
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            yield _wrong_type(where, "an object", tool)
        elif "type" not in tool:
            yield _missing(f"{where}.type")
        elif tool["type"] == "function" and not isinstance(tool.get("function"), dict):
            yield _missing(f"{where}.function")
        elif tool["type"] == "function" and not tool["function"].get("name"):
            yield _missing(f"{where}.function.name")
        elif tool["type"] == "function" and (problem := _check_function_name(where, tool)):
            yield problem
        else:
            continue
        return


FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]+")
MAX_FUNCTION_NAME = 64


def _check_function_name(where: str, tool: dict[str, Any]) -> RequestError | None:
    """A function's name: "Must be a-z, A-Z, 0-9, or contain underscores and dashes, with
    a maximum length of 64" (the SDK's ``FunctionDefinition.name``); the pattern's
    message as recorded from the API in users' code, the length's in its family's
    wording (``array_above_max_length``)."""
    name = tool["function"]["name"]
    param = f"{where}.function.name"
    if not isinstance(name, str):
        return _wrong_type(param, "a string", name)
    if len(name) > MAX_FUNCTION_NAME:
        return RequestError(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{MAX_FUNCTION_NAME}, but got a string with length {len(name)} instead.",
            param=param,
            code="string_above_max_length",
        )
    if not FUNCTION_NAME.fullmatch(name):
        return RequestError(
            f"Invalid '{param}': string does not match pattern. Expected a string that "
            f"matches the pattern '^{FUNCTION_NAME.pattern}$'.",
            param=param,
            code="invalid_value",
        )
    return None


def _check_options(body: Mapping[str, Any]) -> Iterator[RequestError]:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        yield _wrong_type("stream", "a boolean", stream)
    if body.get("stream_options") is not None and not stream:
        yield RequestError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            yield _wrong_type(name, "an integer", value)
        elif value < 1:
            yield RequestError(
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
                f"but got {value} instead.",
                param=name,
                code="integer_below_min_value",
            )
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
        yield RequestError(
            f"Invalid 'stop': array too long. Expected an array with maximum length "
            f"{MAX_STOP_SEQUENCES}, but got an array with length {len(stop)} instead.",
            param="stop",
            code="array_above_max_length",
        )


SAMPLING_RANGES = {"temperature": (0, 2), "top_p": (0, 1)}
"""The SDK's docstrings: temperature "between 0 and 2", top_p a probability mass."""


def _check_sampling(body: Mapping[str, Any]) -> Iterator[RequestError]:
    """Out-of-range sampling parameters, worded as the API words its integer limits
    (``integer_below_min_value``) with ``decimal`` for a number parameter."""
    for name, (lowest, highest) in SAMPLING_RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            yield _wrong_type(name, "a number", value)
        elif value > highest:
            yield RequestError(
                f"Invalid '{name}': decimal above maximum value. Expected a value <= "
                f"{highest}, but got {value} instead.",
                param=name,
                code="decimal_above_max_value",
            )
        elif value < lowest:
            yield RequestError(
                f"Invalid '{name}': decimal below minimum value. Expected a value >= "
                f"{lowest}, but got {value} instead.",
                param=name,
                code="decimal_below_min_value",
            )


def _check_tool_options(body: Mapping[str, Any]) -> Iterator[RequestError]:
    """``tool_choice`` forcing a call (``required`` or a named function) and
    ``parallel_tool_calls`` need ``tools``: "Invalid value for 'tool_choice': 'tool_choice'
    is only allowed when 'tools' are specified." and the same for ``parallel_tool_calls``,
    as users recorded the API's answers (writer/writer-framework#1013, Upsonic/Upsonic#323).
    ``none`` and ``auto`` ask for no call, so they are let through."""
    if body.get("tools"):
        return
    choice = body.get("tool_choice")
    forced = {"tool_choice": choice is not None and choice not in ("none", "auto")}
    forced["parallel_tool_calls"] = body.get("parallel_tool_calls") is not None
    for name, refused in forced.items():
        if refused:
            yield RequestError(
                f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are specified.",
                param=name,
            )


def _check_response_format(body: Mapping[str, Any]) -> Iterator[RequestError]:
    """JSON mode needs the word in the conversation: the SDK's ``ResponseFormatJSONObject``
    ("the model will not generate JSON without a system or user message instructing it
    to do so"), and the API's answer as users quote it: "'messages' must contain the word
    'json' in some form, to use 'response_format' of type 'json_object'."; ``param`` as the
    Responses API's recorded body names its format parameter (``text.format``)."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_object":
        return
    messages = body.get("messages")
    texts: list[str] = []
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content if isinstance(p, dict) and "text" in p)
    if not any("json" in str(text).lower() for text in texts):
        yield RequestError(
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.",
            param="response_format",
        )


def _unsupported(body: Mapping[str, Any]) -> Iterator[RequestError]:
    """What the real API accepts but the simulator cannot answer."""
    if body.get("logprobs"):
        yield RequestError(
            "logprobs=true is not supported by the simulator: it has no token "
            "probabilities to report (the API would send choices[].logprobs). Leave "
            "logprobs unset or false.",
            param="logprobs",
            code="unsupported_value",
        )
    n = body.get("n")
    if n is not None and n != 1:
        yield RequestError(
            f"n={n!r} is not supported by the simulator: it renders one choice per "
            "request (n=1). Ask for one choice, or send n requests.",
            param="n",
            code="unsupported_value",
        )


def _missing(param: str) -> RequestError:
    return RequestError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _wrong_type(param: str, expected: str, value: Any) -> RequestError:
    return RequestError(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _quote(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)
