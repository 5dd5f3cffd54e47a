"""A simulated assistant: realistic, deterministic answers for services and workloads.

Scripted replies suit unit tests; a service or a workload needs a model that answers
anything, sometimes asks for tools, and takes as long as a real one. Everything it
draws (whether a question needs tools, which ones, how long the answer is, how fast it
comes) is seeded by the request's content, so the same request gets the same answer
and the same latency on every run, in whatever order requests arrive.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from perfkit._validation import check_count
from perfkit.simulation._latency import LLMLatency, LogNormal
from perfkit.simulation.anthropic._output_format import output_schema, schema_instance
from perfkit.simulation.anthropic._simulator import user_texts
from perfkit.simulation.server import Reply, SimRequest, TextBlock, ToolUseBlock, tokenize

_WORDS = (
    "the", "agent", "checks", "this", "against", "the", "latest", "data", "and", "the",
    "answer", "depends", "on", "what", "you", "need", "most", "so", "here", "is", "a",
    "short", "summary", "with", "the", "details", "that", "matter",
)  # fmt: skip


class SimulatedAssistant:
    """A responder for :meth:`AnthropicSimulator.respond_with` that answers like a model.

    A question is answered in ``reply_tokens`` (low, high) tokens. When the request
    offers tools, a share ``tool_rate`` of questions first get a short ``preamble`` and
    ``tools_per_turn`` (low, high) calls of the offered tools at once, and their answer
    once the results arrive. A request that asks for structured output
    (``output_config.format``) is answered with a JSON document valid against its
    schema. Each reply's base time to first token is drawn from a log-normal with median
    ``ttft_median`` and shape ``ttft_sigma``; the simulator adds ``queue`` and the prompt's
    processing, ``prefill_per_token`` seconds per prefilled input token and
    ``cache_read_per_token`` per token read from the prompt cache (all 0 by default); tokens
    follow every ``per_token`` seconds.

    >>> from perfkit.simulation import AnthropicSimulator
    >>> assistant = SimulatedAssistant(seed=1)
    >>> request = SimRequest(0, "POST", "/v1/messages", {}, {"messages": [
    ...     {"role": "user", "content": "What is the capital of France?"}]}, 0.0)
    >>> assistant(request).output_tokens == assistant(request).output_tokens
    True
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        tool_rate: float = 0.3,
        tools_per_turn: tuple[int, int] = (1, 3),
        reply_tokens: tuple[int, int] = (60, 400),
        preamble: str = "Let me look that up.",
        ttft_median: float = 0.6,
        ttft_sigma: float = 0.35,
        per_token: float = 0.02,
        queue: float = 0.0,
        prefill_per_token: float = 0.0,
        cache_read_per_token: float = 0.0,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if (
            isinstance(tool_rate, bool)
            or not isinstance(tool_rate, (int, float))
            or not 0 <= tool_rate <= 1
        ):
            raise ValueError(f"tool_rate must be a number between 0 and 1, got {tool_rate!r}")
        self.seed = seed
        self.tool_rate = float(tool_rate)
        self.tools_per_turn = _check_range("tools_per_turn", tools_per_turn, minimum=1)
        self.reply_tokens = _check_range("reply_tokens", reply_tokens, minimum=1)
        self.preamble = preamble
        # Validated by the models themselves (positive median, non-negative spread).
        LogNormal(ttft_median, ttft_sigma)
        LLMLatency(
            per_token=per_token,
            queue=queue,
            prefill_per_token=prefill_per_token,
            cache_read_per_token=cache_read_per_token,
        )
        self.ttft_median = ttft_median
        self.ttft_sigma = ttft_sigma
        self.per_token = per_token
        self.queue = queue
        self.prefill_per_token = prefill_per_token
        self.cache_read_per_token = cache_read_per_token

    def __call__(self, request: SimRequest) -> Reply:
        body = request.body
        question = _question(body)
        asked = random.Random(self._seed_of(question))
        needs_tools = asked.random() < self.tool_rate
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t]
        # Tool-use ids number requests in arrival order: leave them out, so a request's
        # latency does not depend on how many came before it.
        latency = self._latency(random.Random(self._seed_of(_without_ids(body))))
        if needs_tools and tools and not _has_tool_results(body):
            count = min(asked.randint(*self.tools_per_turn), len(tools))
            calls = [
                ToolUseBlock(tool["name"], _input_for(tool, question, asked))
                for tool in asked.sample(tools, count)
            ]
            return Reply(TextBlock(self.preamble), *calls, latency=latency)
        schema = output_schema(body)
        if schema is not None:  # structured output: a JSON document valid against the schema
            return Reply.text(json.dumps(schema_instance(schema)), latency=latency)
        tokens = asked.randint(*self.reply_tokens)
        return Reply.text(_answer(question, tokens, asked), latency=latency)

    def _latency(self, rng: random.Random) -> LLMLatency:
        ttft = LogNormal(self.ttft_median, self.ttft_sigma, seed=rng.randrange(2**32))
        return LLMLatency(
            ttft=ttft.sample(),
            per_token=self.per_token,
            queue=self.queue,
            prefill_per_token=self.prefill_per_token,
            cache_read_per_token=self.cache_read_per_token,
        )

    def _seed_of(self, content: object) -> int:
        encoded = json.dumps([self.seed, content], sort_keys=True, default=str).encode()
        return int.from_bytes(hashlib.sha256(encoded).digest()[:8], "big")

    def __repr__(self) -> str:
        return (
            f"SimulatedAssistant(seed={self.seed}, tool_rate={self.tool_rate}, "
            f"tools_per_turn={self.tools_per_turn}, reply_tokens={self.reply_tokens}, "
            f"ttft_median={self.ttft_median}, ttft_sigma={self.ttft_sigma}, "
            f"per_token={self.per_token}{self._request_parts()})"
        )

    def _request_parts(self) -> str:
        """The request-dependent parameters that are set, for the repr."""
        parts = {
            "queue": self.queue,
            "prefill_per_token": self.prefill_per_token,
            "cache_read_per_token": self.cache_read_per_token,
        }
        return "".join(f", {name}={value}" for name, value in parts.items() if value)


def _check_range(name: str, value: object, *, minimum: int) -> tuple[int, int]:
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError(f"{name} must be a (low, high) tuple of ints, got {value!r}")
    low = check_count(f"{name}[0]", value[0], minimum=minimum)
    high = check_count(f"{name}[1]", value[1], minimum=low)
    return low, high


def _question(body: dict[str, Any]) -> str:
    """The text of the latest user turn that is not only tool results."""
    return next((text for text in user_texts(body) if text), "")


def _without_ids(value: Any) -> Any:
    """``value`` as it seeds a reply: without tool-use ids, and with a tool call's
    ``caller`` seeded as None whatever it says (the simulator's tool calls carry
    ``{"type": "direct"}``, which clients echo back; the SDK dumped a reply without it
    as None, so conversations seed as they did before the wire gained it). Without
    ``cache_control`` markers either: they change what the prompt cache keeps, not the
    question, so a request with and without them is answered alike."""
    if isinstance(value, dict):
        return {
            k: None if k == "caller" else _without_ids(v)
            for k, v in value.items()
            if k not in ("id", "tool_use_id", "cache_control")
        }
    if isinstance(value, list):
        return [_without_ids(item) for item in value]
    return value


def _has_tool_results(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    content = last.get("content") if isinstance(last, dict) else None
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def _input_for(tool: dict[str, Any], question: str, rng: random.Random) -> dict[str, Any]:
    """Arguments that satisfy a simple JSON schema: its required properties, filled in."""
    schema = tool.get("input_schema") or {}
    properties = schema.get("properties") or {}
    names = schema.get("required") or list(properties)
    arguments: dict[str, Any] = {}
    for name in names:
        kind = (properties.get(name) or {}).get("type", "string")
        if kind == "integer":
            arguments[name] = rng.randint(1, 100)
        elif kind == "number":
            arguments[name] = round(rng.uniform(0, 100), 2)
        elif kind == "boolean":
            arguments[name] = True
        else:
            arguments[name] = " ".join(question.split()[:6]) or "query"
    return arguments


def _answer(question: str, tokens: int, rng: random.Random) -> str:
    """A text of exactly ``tokens`` simulator tokens that starts by naming the question."""
    opening = tokenize(f"About {' '.join(question.split()[:8])}:")[:tokens]
    words = [rng.choice(_WORDS) for _ in range(tokens - len(opening))]
    return "".join(opening) + "".join(f" {word}" for word in words)
