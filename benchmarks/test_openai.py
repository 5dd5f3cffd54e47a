"""An OpenAI agent on the simulated Chat Completions API: the core is provider neutral.

Three questions, each one agent turn through the official openai SDK: a request that
answers with two tool calls, the two tools (200 ms each, modeled), then the streamed
answer. Asked one after another with the tools run in turn, or all at once with the
tools of a turn run together. The same simulated-server core, clock and latency model
as the Anthropic benchmarks: 300 ms to the first token and 20 ms per token after it.

A turn's first request outputs 4 tokens (two calls' arguments, ``{"city": "Paris"}`` is
2), 0.3 + 3 x 0.02 = 0.36 s; its answer 20 tokens, 0.3 + 19 x 0.02 = 0.68 s. Sequential:
3 x (0.36 + 2 x 0.2 + 0.68) = 4.32 s a round; concurrent: 0.36 + 0.2 + 0.68 = 1.24 s.
``perf.observe`` records each question's time to the first token of its answer.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from perfkit import LLMLatency, Perf, Reply
from perfkit._clock import Clock
from perfkit._perf import Counters
from perfkit.concurrency import gather_bounded
from perfkit.simulation import OpenAISimulator, SimRequest, ToolUseBlock

LATENCY = LLMLatency(ttft=0.300, per_token=0.020)
TOOL_SECONDS = 0.200
QUESTIONS = [f"What should I wear in {city} today?" for city in ("Paris", "Oslo", "Lima")]
ANSWER_TOKENS = 20
MODEL = "gpt-4o"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name in ("get_weather", "get_forecast")
]
MODES = ["sequential", "concurrent"]


def model(request: SimRequest) -> Reply:
    """The modeled assistant: two tool calls for a question, an answer after the tools."""
    last = request.body["messages"][-1]
    if last["role"] == "user":
        city = last["content"].split(" in ")[1].split(" ")[0]
        return Reply(
            ToolUseBlock("get_weather", {"city": city}),
            ToolUseBlock("get_forecast", {"city": city}),
        )
    return Reply.of_tokens(ANSWER_TOKENS, word="warm")


async def tool(call: Any, clock: Clock) -> dict[str, Any]:
    await clock.asleep(TOOL_SECONDS)
    return {
        "role": "tool",
        "tool_call_id": call.id,
        "content": f"{call.function.name}: {json.loads(call.function.arguments)} -> 21 C",
    }


async def agent_turn(
    client: openai.AsyncOpenAI, question: str, mode: str, perf: Perf, clock: Clock
) -> str:
    start = clock.now()
    messages: list[Any] = [{"role": "user", "content": question}]
    first = await client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    message = first.choices[0].message
    calls = message.tool_calls or []
    jobs = [lambda call=call: tool(call, clock) for call in calls]
    if mode == "sequential":
        results = [await job() for job in jobs]
    else:
        results = await gather_bounded(jobs)
    messages += [message.model_dump(exclude_none=True), *results]
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if not pieces:
                perf.observe(clock.elapsed(start))
            pieces.append(chunk.choices[0].delta.content)
    return "".join(pieces)


@pytest.mark.parametrize("mode", MODES)
def test_openai_agent_turns(
    perf: Perf, perfkit_clock: Clock, perfkit_counters: Counters, mode: str
) -> None:
    async def three_questions() -> list[str]:
        async with openai.AsyncOpenAI(api_key="sim") as client:
            turns = [
                lambda q=question: agent_turn(client, q, mode, perf, perfkit_clock)
                for question in QUESTIONS
            ]
            if mode == "sequential":
                return [await turn() for turn in turns]
            return await gather_bounded(turns)

    with OpenAISimulator(latency=LATENCY, clock=perfkit_clock) as sim:
        sim.respond_with(model)
        perfkit_counters.track("api_requests", lambda: sim.call_count)
        perfkit_counters.track("api_output_tokens", lambda: sim.output_tokens)
        answers = perf(three_questions, rounds=3)
    assert answers == [" ".join(["warm"] * ANSWER_TOKENS)] * len(QUESTIONS)
    assert perf.result.counters["api_requests"] == 2 * len(QUESTIONS) * 3
    assert all(request.status == 200 for request in sim.requests)
