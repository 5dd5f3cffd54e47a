"""Extended thinking through the anthropic SDK: thinking blocks with signatures, before the
text, streamed as ``thinking_delta`` and ``signature_delta``, billed as output tokens, and
decoded in modeled time like any output. Every test runs on a VirtualClock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from perfkit import VirtualClock
from perfkit.simulation import (
    AnthropicSimulator,
    LLMLatency,
    RedactedThinkingBlock,
    Reply,
    ThinkingBlock,
    ToolUseBlock,
    count_tokens,
)

LATENCY = LLMLatency(ttft=0.5, per_token=0.02)
THOUGHT = "The user wants the weather in Paris. I should call the weather tool."
ANSWER = "Let me look that up."


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator(latency=LATENCY, clock=clock) as simulator:
        yield simulator


def ask(*, budget: int | None = 2048, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        **extra,
    }
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return body


def test_a_message_thinks_before_it_answers(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    sim.enqueue(Reply(ThinkingBlock(THOUGHT), ANSWER))
    start = clock.now()
    message = client.messages.create(**ask())
    assert [block.type for block in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert thinking.thinking == THOUGHT
    assert thinking.signature
    tokens = count_tokens(THOUGHT) + count_tokens(ANSWER)
    assert message.usage.output_tokens == tokens
    assert clock.elapsed(start) == round(0.5 + (tokens - 1) * 0.02, 6)


def test_a_stream_thinks_before_the_text_and_signs_once(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    sim.enqueue(Reply(ThinkingBlock(THOUGHT, signature="sig_paris"), ANSWER))
    with client.messages.stream(**ask()) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds.index("thinking") < kinds.index("signature") < kinds.index("text")
    assert kinds.count("signature") == 1
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].signature == "sig_paris"  # type: ignore[union-attr]
    assert final.content[0].thinking == THOUGHT  # type: ignore[union-attr]
    assert final.usage.output_tokens == count_tokens(THOUGHT) + count_tokens(ANSWER)


def test_thinking_is_decoded_in_modeled_time_before_the_first_text_token(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    sim.enqueue(Reply(ThinkingBlock(THOUGHT), ANSWER))
    start = clock.now()
    first_thinking = first_text = None
    with client.messages.stream(**ask()) as stream:
        for event in stream:
            if event.type == "thinking" and first_thinking is None:
                first_thinking = clock.elapsed(start)
            if event.type == "text" and first_text is None:
                first_text = clock.elapsed(start)
    thought, answer = count_tokens(THOUGHT), count_tokens(ANSWER)
    assert first_thinking == 0.5
    assert first_text == round(0.5 + thought * 0.02, 6)
    assert clock.elapsed(start) == round(0.5 + (thought + answer - 1) * 0.02, 6)
    logged = sim.last_request
    assert logged.ttft == 0.5  # the first token of any block
    assert logged.first_text_at is not None
    assert round(logged.first_text_at - logged.sent_at, 6) == first_text
    assert logged.output_tokens == thought + answer


def test_thinking_is_left_out_unless_the_request_enables_it(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    sim.enqueue(Reply(ThinkingBlock(THOUGHT), ANSWER))
    start = clock.now()
    message = client.messages.create(**ask(budget=None))
    assert [block.type for block in message.content] == ["text"]
    assert message.usage.output_tokens == count_tokens(ANSWER)
    assert clock.elapsed(start) == round(0.5 + (count_tokens(ANSWER) - 1) * 0.02, 6)


def test_the_default_reply_thinks_when_thinking_is_enabled(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    message = client.messages.create(**ask())
    again = client.messages.create(**ask())
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking  # type: ignore[union-attr]
    assert message.content == again.content  # deterministic
    plain = client.messages.create(**ask(budget=None))
    assert [block.type for block in plain.content] == ["text"]
    assert plain.content[0].text == message.content[1].text  # type: ignore[union-attr]


def test_thinking_then_a_tool_call_streams_as_the_sdk_expects(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    sim.enqueue(Reply(ThinkingBlock(THOUGHT), ToolUseBlock("weather", {"location": "Paris"})))
    with client.messages.stream(**ask()) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "tool_use"]
    assert final.content[1].input == {"location": "Paris"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"


def test_thinking_is_capped_by_its_budget(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    long_thought = " ".join(["ponder"] * 1500)
    sim.enqueue(Reply(ThinkingBlock(long_thought), ANSWER))
    message = client.messages.create(**ask(budget=1024))
    assert count_tokens(message.content[0].thinking) == 1024  # type: ignore[union-attr]
    assert message.usage.output_tokens == 1024 + count_tokens(ANSWER)


def test_redacted_thinking_reaches_the_sdk_streamed_and_not(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    redacted = RedactedThinkingBlock("EmwKAhgBEgy3va3pzix/LafPsn4a")
    sim.enqueue(Reply(redacted, ANSWER), Reply(redacted, ANSWER))
    message = client.messages.create(**ask())
    with client.messages.stream(**ask()) as stream:
        final = stream.get_final_message()
    for reply in (message, final):
        assert [block.type for block in reply.content] == ["redacted_thinking", "text"]
        assert reply.content[0].data == redacted.data  # type: ignore[union-attr]
        assert reply.usage.output_tokens == count_tokens(ANSWER)
