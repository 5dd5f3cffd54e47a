"""The simulated assistant: realistic answers, deterministic per request."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from perfkit.agents import demo_tools
from perfkit.simulation import Reply, SimRequest, SimulatedAssistant, ToolUseBlock, count_tokens

TOOLS = demo_tools().definitions()


def request(*messages: dict[str, Any], tools: bool = True) -> SimRequest:
    body: dict[str, Any] = {"model": "m", "max_tokens": 1024, "messages": list(messages)}
    if tools:
        body["tools"] = TOOLS
    return SimRequest(0, "POST", "https://api.anthropic.com/v1/messages", {}, body, 0.0)


def ask(question: str, **options: Any) -> SimRequest:
    return request({"role": "user", "content": question}, **options)


def calls_of(reply: Reply) -> list[ToolUseBlock]:
    return [block for block in reply.blocks if isinstance(block, ToolUseBlock)]


def test_the_same_request_gets_the_same_answer_and_latency() -> None:
    assistant = SimulatedAssistant(seed=4)
    first, second = assistant(ask("What is HTTP/2?")), assistant(ask("What is HTTP/2?"))
    assert first.blocks == second.blocks
    assert first.latency is not None
    assert first.latency == second.latency
    assert SimulatedAssistant(seed=5)(ask("What is HTTP/2?")).blocks != first.blocks


def test_answers_have_the_configured_length_and_name_the_question() -> None:
    assistant = SimulatedAssistant(tool_rate=0.0, reply_tokens=(30, 40))
    for n in range(50):
        reply = assistant(ask(f"Question number {n}"))
        (text,) = reply.blocks
        assert 30 <= reply.output_tokens <= 40
        assert count_tokens(text.text) == reply.output_tokens  # type: ignore[union-attr]
        assert text.text.startswith(f"About Question number {n}:")  # type: ignore[union-attr]


def test_a_share_of_questions_call_tools_with_valid_inputs_then_get_an_answer() -> None:
    assistant = SimulatedAssistant(seed=1, tool_rate=0.3, tools_per_turn=(1, 3))
    replies = [assistant(ask(f"Question {n}")) for n in range(400)]
    with_tools = [reply for reply in replies if calls_of(reply)]
    assert 0.22 < len(with_tools) / len(replies) < 0.38
    schemas = {tool["name"]: tool["input_schema"] for tool in TOOLS}
    for reply in with_tools:
        assert reply.stop_reason == "tool_use"
        assert reply.blocks[0].text == "Let me look that up."  # type: ignore[union-attr]
        calls = calls_of(reply)
        assert 1 <= len(calls) <= 3
        assert len({call.name for call in calls}) == len(calls)
        for call in calls:
            jsonschema.validate(dict(call.input), schemas[call.name])
    # After the tool results the same question is answered.
    asked = next(n for n, reply in enumerate(replies) if calls_of(reply))
    question = {"role": "user", "content": f"Question {asked}"}
    results = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}],
    }
    answer = assistant(request(question, {"role": "assistant", "content": "..."}, results))
    assert not calls_of(answer)
    assert answer.blocks[0].text.startswith(f"About Question {asked}")  # type: ignore[union-attr]


def test_without_tools_offered_every_question_is_answered_directly() -> None:
    assistant = SimulatedAssistant(tool_rate=1.0)
    assert not calls_of(assistant(ask("Weather?", tools=False)))
    assert calls_of(assistant(ask("Weather?")))


def test_time_to_first_token_follows_the_log_normal() -> None:
    assistant = SimulatedAssistant(ttft_median=0.6, ttft_sigma=0.35, per_token=0.02)
    ttfts = sorted(assistant(ask(f"q{n}")).latency.ttft.sample() for n in range(400))  # type: ignore[union-attr]
    median = ttfts[len(ttfts) // 2]
    assert 0.5 < median < 0.7
    assert ttfts[-1] > 1.0  # the long right tail


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tool_rate": 1.5}, "tool_rate must be a number between 0 and 1, got 1.5"),
        ({"reply_tokens": (10, 5)}, r"reply_tokens\[1\] must be an int >= 10, got 5"),
        ({"tools_per_turn": 2}, r"tools_per_turn must be a \(low, high\) tuple"),
        ({"ttft_median": 0}, "median"),
        ({"seed": "x"}, "seed must be an int"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        SimulatedAssistant(**options)


def test_tool_use_ids_do_not_change_the_latency() -> None:
    assistant = SimulatedAssistant()

    def after_tools(tool_id: str) -> SimRequest:
        call = {"type": "tool_use", "id": tool_id, "name": "get_weather", "input": {}}
        result = {"type": "tool_result", "tool_use_id": tool_id, "content": "sunny"}
        return request(
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result]},
        )

    first, later = assistant(after_tools("toolu_sim_000001")), assistant(after_tools("toolu_9"))
    assert first.latency == later.latency
    assert first.blocks == later.blocks


def test_a_tool_call_echoed_with_its_caller_keeps_the_latency() -> None:
    # Replies' tool_use blocks carry caller {"type": "direct"}; a client echoes the block
    # (the agents send back the SDK's model_dump, where a reply without it dumped None).
    assistant = SimulatedAssistant()

    def after_tools(caller: dict[str, str] | None) -> SimRequest:
        call = {"type": "tool_use", "id": "t", "name": "get_weather", "input": {}}
        call["caller"] = caller
        result = {"type": "tool_result", "tool_use_id": "t", "content": "sunny"}
        return request(
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result]},
        )

    echoed, dumped = assistant(after_tools({"type": "direct"})), assistant(after_tools(None))
    assert echoed.latency == dumped.latency
    assert echoed.blocks == dumped.blocks


def test_cache_control_markers_do_not_reseed_the_reply() -> None:
    # A prompt-caching agent moves its markers every turn; the question stays the same.
    marker = {"type": "ephemeral"}
    plain = request({"role": "user", "content": [{"type": "text", "text": "Weather?"}]})
    marked = request(
        {"role": "user", "content": [{"type": "text", "text": "Weather?", "cache_control": marker}]}
    )
    marked.body["tools"] = [*TOOLS[:-1], {**TOOLS[-1], "cache_control": marker}]
    marked.body["cache_control"] = marker
    for tool_rate in (0.0, 1.0):
        answers = SimulatedAssistant(tool_rate=tool_rate)
        assert answers(plain).latency == answers(marked).latency
        assert answers(plain).blocks == answers(marked).blocks
