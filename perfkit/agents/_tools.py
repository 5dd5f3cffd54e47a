"""Tools an agent offers the model: a name, a JSON-schema input, and a sync or async function."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from perfkit.concurrency import DEFAULT_TOOL_TIMEOUT, run_tool_calls

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # what the Messages API accepts


@dataclass(frozen=True)
class Tool:
    """One tool: what the model sees (name, description, input schema) and what runs."""

    name: str
    function: Callable[..., Any]
    description: str = ""
    input_schema: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"tool name must be 1-64 letters, digits, '_' or '-', got {self.name!r}"
            )
        if self.input_schema.get("type") != "object":
            raise ValueError(
                f"tool {self.name!r}: input_schema must be a JSON schema of type 'object', "
                f"got {dict(self.input_schema)!r}"
            )
        jsonschema.Draft202012Validator.check_schema(self.input_schema)

    def definition(self) -> dict[str, Any]:
        """The tool as the Messages API's ``tools`` parameter lists it."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": dict(self.input_schema),
        }


class ToolRegistry:
    """The tools of an agent; runs one assistant turn's ``tool_use`` blocks.

    >>> import asyncio
    >>> tools = ToolRegistry()
    >>> @tools.tool(input_schema={"type": "object", "properties": {"city": {"type": "string"}},
    ...                           "required": ["city"]})
    ... def weather(city: str) -> str:
    ...     '''The weather in a city.'''
    ...     return f"sunny in {city}"
    >>> call = {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}}
    >>> asyncio.run(tools.run([call]))
    [{'type': 'tool_result', 'tool_use_id': 't1', 'content': 'sunny in Paris'}]
    """

    def __init__(
        self, tools: Iterable[Tool] = (), *, default_timeout: float = DEFAULT_TOOL_TIMEOUT
    ) -> None:
        self.default_timeout = default_timeout
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> Tool:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def tool(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        input_schema: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the decorated function (its docstring is the default description)."""

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            options: dict[str, Any] = {"timeout": timeout}
            if input_schema is not None:
                options["input_schema"] = input_schema
            self.add(
                Tool(
                    name=name or function.__name__,
                    function=function,
                    description=description or (function.__doc__ or "").strip(),
                    **options,
                )
            )
            return function

        return register

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def definitions(self) -> list[dict[str, Any]]:
        """Every tool as the Messages API's ``tools`` parameter lists it, by name."""
        return [self._tools[name].definition() for name in sorted(self._tools)]

    async def run(self, content: Iterable[Any], *, parallel: bool = True) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks for every ``tool_use`` block in ``content``, in order.

        Calls run concurrently (``parallel=False``: one after another), each with its
        own timeout; an input that does not match the tool's schema, an exception or a
        timeout becomes an ``is_error`` result naming the problem."""
        functions = {name: self._checked(tool) for name, tool in self._tools.items()}
        timeouts = {name: t.timeout for name, t in self._tools.items() if t.timeout is not None}
        return await run_tool_calls(
            content,
            functions,
            tool_timeout=self.default_timeout,
            timeouts=timeouts,
            limit=None if parallel else 1,
        )

    @staticmethod
    def _checked(tool: Tool) -> Callable[..., Any]:
        """``tool.function`` behind a check of its input against the schema (still a
        coroutine function if it was one, so async tools never go through a thread)."""
        validator = jsonschema.Draft202012Validator(tool.input_schema)

        def check(arguments: dict[str, Any]) -> None:
            error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
            if error is not None:
                where = "/".join(str(part) for part in error.absolute_path) or "input"
                raise ValueError(f"invalid input at {where}: {error.message}")

        if inspect.iscoroutinefunction(tool.function):

            async def acall(**arguments: Any) -> Any:
                check(arguments)
                return await tool.function(**arguments)

            return acall

        def call(**arguments: Any) -> Any:
            check(arguments)
            return tool.function(**arguments)

        return call
