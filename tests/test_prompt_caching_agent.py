"""The optimized agent's prompt caching: where its breakpoints go, and what they read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import pytest

from perfkit import AnthropicSimulator, LLMLatency, Reply, VirtualClock
from perfkit.agents import (
    SUPPORT_SYSTEM_PROMPT,
    ConversationStore,
    OptimizedAgent,
    Tool,
    ToolRegistry,
    estimate_tokens,
    support_tools,
)
from perfkit.cache import MultiLayerCache, anthropic_request_key
from perfkit.simulation import SimulatedAssistant, ToolUseBlock

LATENCY = LLMLatency(ttft=0.5, per_token=0.02)
SYSTEM = "You answer questions about our product, politely and precisely. " * 80
"""About 800 simulator tokens: with the tools, over Sonnet 5's 1,024-token minimum."""
SCHEMA = {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}
EPHEMERAL = {"type": "ephemeral"}


def tools(count: int = 3) -> ToolRegistry:
    async def look_up(sku: str) -> str:
        await asyncio.sleep(0.1)
        return f"{sku}: in stock"

    return ToolRegistry(
        Tool(
            name=f"stock_{n}",
            function=look_up,
            description="How many of a product are in stock, per warehouse. " * 20,
            input_schema=SCHEMA,
        )
        for n in range(count)
    )


class Recorder(OptimizedAgent):
    """The optimized agent, keeping the usage the API reported for each of its turns."""

    usages: list[dict[str, Any]]

    async def _turn(self, session: Any, request: dict[str, Any]) -> AsyncIterator[Any]:
        async for piece in super()._turn(session, request):
            if isinstance(piece, dict):
                self.usages.append(piece["usage"])
            yield piece


def make_agent(clock: VirtualClock, **options: Any) -> Recorder:
    options.setdefault("tools", tools())
    options.setdefault("system", SYSTEM)
    agent = Recorder(
        cache=options.pop("cache", MultiLayerCache(clock=clock)),
        client_options={"api_key": "test"},
        **options,
    )
    agent.usages = []
    return agent


def converse(
    clock: VirtualClock, agent: OptimizedAgent, questions: list[str], user: str = "ann"
) -> None:
    async def main() -> None:
        try:
            for question in questions:
                await agent.chat(user, question)
        finally:
            await agent.aclose()

    clock.run(main())


def marks(body: dict[str, Any]) -> list[tuple[str, int, int]]:
    """Where ``body`` carries cache_control: (section, message or item, block)."""
    found = [
        ("tools", i, 0) for i, tool in enumerate(body.get("tools", [])) if "cache_control" in tool
    ]
    system = body.get("system")
    if isinstance(system, list):
        found += [("system", 0, i) for i, block in enumerate(system) if "cache_control" in block]
    for m, message in enumerate(body["messages"]):
        content = message["content"]
        if isinstance(content, list):
            found += [
                ("messages", m, b) for b, block in enumerate(content) if "cache_control" in block
            ]
    return found


def prompt_tokens(usage: dict[str, Any]) -> int:
    return int(
        usage["input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"]
    )


def test_breakpoints_go_on_the_last_tool_the_system_prompt_and_the_conversation() -> None:
    clock = VirtualClock()
    agent = make_agent(clock)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(
            Reply.tool_use("stock_1", {"sku": "A-1"}, text="Checking."),
            Reply.text("In stock."),
            Reply.text("You are welcome."),
        )
        converse(clock, agent, ["Is A-1 in stock?", "Thanks!"])
        bodies = [request.body for request in sim.requests]
    first, tool_turn, next_question = bodies
    assert marks(first) == [("tools", 2, 0), ("system", 0, 0), ("messages", 0, 0)]
    assert first["system"] == [{"type": "text", "text": SYSTEM, "cache_control": EPHEMERAL}]
    assert first["messages"][0]["content"] == [
        {"type": "text", "text": "Is A-1 in stock?", "cache_control": EPHEMERAL}
    ]
    # The tool results (the newest message) and the question (where the last request ended).
    assert marks(tool_turn) == [
        ("tools", 2, 0),
        ("system", 0, 0),
        ("messages", 0, 0),
        ("messages", 2, 0),
    ]
    assert tool_turn["messages"][2]["content"][0]["type"] == "tool_result"
    # The next question, and the tool results: the end of the previous request.
    assert marks(next_question) == [
        ("tools", 2, 0),
        ("system", 0, 0),
        ("messages", 2, 0),
        ("messages", 4, 0),
    ]
    # What the agent remembers carries no marker: markers never pile up turn after turn.
    assert all(
        "cache_control" not in block
        for message in agent.history.messages("ann")
        if isinstance(message["content"], list)
        for block in message["content"]
    )


def test_each_turn_and_each_next_question_reads_the_previous_prefix() -> None:
    clock = VirtualClock()
    agent = make_agent(clock)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(
            Reply.tool_use("stock_1", {"sku": "A-1"}, text="Checking."),
            Reply.text("In stock."),
            Reply.text("It ships tomorrow."),
            Reply.text("You are welcome."),
        )
        converse(clock, agent, ["Is A-1 in stock?", "When does it ship?", "Thanks!"])
    first = agent.usages[0]
    assert len(agent.usages) == 4
    assert first["cache_read_input_tokens"] == 0
    assert first["cache_creation_input_tokens"] == prompt_tokens(first)
    for previous, usage in pairwise(agent.usages):
        # Everything the previous request sent is read; only what was added is written.
        assert usage["cache_read_input_tokens"] == prompt_tokens(previous)
        assert usage["input_tokens"] == 0
        assert usage["cache_creation_input_tokens"] == prompt_tokens(usage) - prompt_tokens(
            previous
        )


def test_a_turn_with_more_blocks_than_the_lookback_still_reads_the_previous_prefix() -> None:
    # Twelve tool calls add 13 assistant blocks and 12 results: 25 blocks, past the 20
    # the API looks back from the newest breakpoint; the one where the question ended holds.
    clock = VirtualClock()
    agent = make_agent(clock, tools=tools(12))
    calls = [ToolUseBlock(f"stock_{n}", {"sku": f"A-{n}"}) for n in range(12)]
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(Reply("Checking all of them.", *calls), Reply.text("All in stock."))
        converse(clock, agent, ["Is everything in stock?"])
        assert len(sim.requests[1].body["messages"][2]["content"]) == 12
        assert max(len(marks(request.body)) for request in sim.requests) == 4
    first, second = agent.usages
    assert second["cache_read_input_tokens"] == prompt_tokens(first)


def test_a_long_conversation_never_sends_more_than_four_breakpoints() -> None:
    clock = VirtualClock()
    agent = make_agent(clock)
    replies = [
        Reply.tool_use("stock_0", {"sku": f"B-{n}"}) if n % 3 == 0 else Reply.text(f"Answer {n}.")
        for n in range(30)
    ]
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(*replies)
        converse(clock, agent, [f"Question {n}?" for n in range(20)])
        counts = [len(marks(request.body)) for request in sim.requests]
        assert all(request.status == 200 for request in sim.requests)
    assert max(counts) == 4
    assert counts[0] == 3  # a first question: no earlier request to mark


def test_without_a_system_prompt_or_tools_only_the_conversation_is_marked() -> None:
    clock = VirtualClock()
    agent = make_agent(clock, tools=ToolRegistry(), system=None)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        converse(clock, agent, ["Hello?", "Again?"])
        first, second = (request.body for request in sim.requests)
    assert "system" not in first
    assert "tools" not in first
    assert marks(first) == [("messages", 0, 0)]
    assert marks(second) == [("messages", 0, 0), ("messages", 2, 0)]


@pytest.mark.parametrize("system", ["", "   "])
@pytest.mark.parametrize("caching", [True, False])
def test_a_blank_system_prompt_is_sent_as_it_was_given(system: str, caching: bool) -> None:
    # As a text block it would be refused: "text content blocks must be non-empty".
    clock = VirtualClock()
    agent = make_agent(clock, system=system, prompt_caching=caching)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        converse(clock, agent, ["Hello?"])
        assert sim.requests[0].status == 200
        assert sim.requests[0].body["system"] == system


def test_switched_off_the_same_blocks_are_sent_without_markers() -> None:
    bodies: dict[bool, list[dict[str, Any]]] = {}
    usages: dict[bool, list[dict[str, Any]]] = {}
    for caching in (True, False):
        clock = VirtualClock()
        agent = make_agent(clock, prompt_caching=caching)
        with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
            sim.enqueue(
                Reply.tool_use("stock_1", {"sku": "A-1"}), Reply.text("Yes."), Reply.text("Ok.")
            )
            converse(clock, agent, ["Is A-1 in stock?", "Thanks!"])
            bodies[caching] = [request.body for request in sim.requests]
        usages[caching] = agent.usages
    assert all(marks(body) == [] for body in bodies[False])
    assert [strip(body) for body in bodies[True]] == bodies[False]
    assert all(usage["cache_read_input_tokens"] == 0 for usage in usages[False])
    assert all(usage["cache_creation_input_tokens"] == 0 for usage in usages[False])
    assert sum(u["cache_read_input_tokens"] for u in usages[True]) > 0


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip(item) for item in value]
    return value


@pytest.mark.parametrize("caching", [True, False])
def test_a_repeated_question_still_hits_the_response_cache(caching: bool) -> None:
    # Ann's question is marked as the newest message; Bob's identical one is too.
    clock = VirtualClock()
    agent = make_agent(clock, prompt_caching=caching)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(Reply.text("Yes."))
        converse(clock, agent, ["Is A-1 in stock?"], user="ann")
        agent.usages.clear()
        converse(clock, agent, ["Is A-1 in stock?"], user="bob")
        assert sim.call_count == 1


def test_turning_prompt_caching_on_keeps_the_response_caches_keys() -> None:
    # A deployment that turns it on finds the replies it cached before.
    clock = VirtualClock()
    cache = MultiLayerCache(clock=clock)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(Reply.text("Yes."))
        converse(clock, make_agent(clock, cache=cache, prompt_caching=False), ["Is A-1 in stock?"])
        converse(clock, make_agent(clock, cache=cache, prompt_caching=True), ["Is A-1 in stock?"])
        assert sim.call_count == 1


def test_marked_and_unmarked_requests_have_one_key() -> None:
    clock = VirtualClock()
    on, off = make_agent(clock), make_agent(clock, prompt_caching=False)
    messages = [{"role": "user", "content": "Hi"}]
    assert anthropic_request_key(on._request(messages)) == anthropic_request_key(
        off._request(messages)
    )


def test_a_one_hour_ttl_marks_tools_and_system_and_the_api_accepts_it() -> None:
    clock = VirtualClock()
    agent = make_agent(clock, prompt_cache_ttl="1h")
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(Reply.text("Yes."), Reply.text("Ok."))
        converse(clock, agent, ["Is A-1 in stock?", "Thanks!"])
        body = sim.requests[1].body
        assert all(request.status == 200 for request in sim.requests)
    hour = {"type": "ephemeral", "ttl": "1h"}
    assert body["tools"][-1]["cache_control"] == hour
    assert body["system"][0]["cache_control"] == hour
    assert body["messages"][-1]["content"][-1]["cache_control"] == EPHEMERAL
    first, second = agent.usages
    assert first["cache_creation"]["ephemeral_1h_input_tokens"] > 0
    assert second["cache_read_input_tokens"] == prompt_tokens(first)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"prompt_cache_ttl": "10m"},
            ValueError,
            "prompt_cache_ttl must be one of ('5m', '1h'), got '10m'",
        ),
        (
            {"prompt_cache_ttl": 300},
            ValueError,
            "prompt_cache_ttl must be one of ('5m', '1h'), got 300",
        ),
        ({"prompt_caching": "yes"}, TypeError, "prompt_caching must be True or False, got 'yes'"),
    ],
)
def test_bad_prompt_caching_options_are_refused(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        OptimizedAgent(client_options={"api_key": "test"}, **options)
    assert str(raised.value) == message


# History trimmed in steps keeps the prefix the prompt cache reads.


def exchange(n: int) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": f"Question {n:02d}: " + "detail " * 30},
        {"role": "assistant", "content": [{"type": "text", "text": "answer " * 30}]},
    ]


def firsts(store: ConversationStore, questions: int) -> list[str]:
    """The first message kept after each of ``questions`` exchanges."""
    seen = []
    for n in range(questions):
        store.add("ann", exchange(n))
        seen.append(store.messages("ann")[0]["content"][:11])
    return seen


def test_history_trimmed_in_steps_keeps_its_beginning_for_several_questions() -> None:
    one_cost = estimate_tokens(exchange(0))
    budget = 6 * one_cost
    every_time = firsts(ConversationStore(max_tokens=budget, trim_to=1.0), 20)
    in_steps = firsts(ConversationStore(max_tokens=budget, trim_to=0.5), 20)
    changes = [sum(a != b for a, b in pairwise(kept)) for kept in (every_time, in_steps)]
    assert changes[0] == 14  # once full, the beginning moves with every question
    assert changes[1] == 4  # in steps: a few exchanges dropped at once, 4 times
    store = ConversationStore(max_tokens=budget, trim_to=0.5)
    for n in range(20):
        store.add("ann", exchange(n))
        assert store.tokens("ann") <= budget


def test_the_default_store_trims_in_steps() -> None:
    assert ConversationStore().trim_to == 0.5


def test_trimming_in_steps_writes_less_to_the_prompt_cache() -> None:
    written = {}
    for trim_to in (1.0, 0.5):
        clock = VirtualClock()
        agent = make_agent(clock, history=ConversationStore(max_tokens=400, trim_to=trim_to))
        with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
            sim.enqueue(*(Reply.text("An answer of some length. " * 8) for _ in range(16)))
            converse(clock, agent, [f"Question {n}: " + "detail " * 20 for n in range(16)])
        written[trim_to] = sum(u["cache_creation_input_tokens"] for u in agent.usages[1:])
    assert written[0.5] < written[1.0] * 0.8


@pytest.mark.parametrize("trim_to", [0, -0.5, 1.5, "half", True, float("nan")])
def test_a_bad_trim_to_is_refused(trim_to: Any) -> None:
    with pytest.raises(ValueError, match=r"^trim_to must be a number in \(0, 1\], got "):
        ConversationStore(trim_to=trim_to)


# The support agent's realistic prompt.


def test_the_support_prompt_is_thousands_of_tokens_and_its_tools_take_what_a_model_sends() -> None:
    clock = VirtualClock()
    agent = make_agent(clock, tools=support_tools(latency=(0.0, 0.0)), system=SUPPORT_SYSTEM_PROMPT)
    assistant = SimulatedAssistant(seed=1, tool_rate=1.0, tools_per_turn=(9, 9))
    with AnthropicSimulator(clock=clock) as sim:
        sim.respond_with(assistant)
        converse(clock, agent, ["Where is my order LH-123456?"])
        first, second = (request.body for request in sim.requests)
    results = second["messages"][-1]["content"]
    assert sorted(tool["name"] for tool in first["tools"]) == sorted(
        block["name"] for block in second["messages"][1]["content"] if block["type"] == "tool_use"
    )
    assert len(results) == 9
    assert not any(result.get("is_error") for result in results), results
    assert prompt_tokens(agent.usages[0]) > 2_000
    assert agent.usages[0]["cache_creation_input_tokens"] == prompt_tokens(agent.usages[0])


def test_support_tools_refuse_a_bad_latency() -> None:
    with pytest.raises(ValueError, match=r"latency must be a \(low, high\) pair"):
        support_tools(latency=(0.5, 0.1))


def test_a_system_prompt_given_as_marked_blocks_gets_the_agents_one_breakpoint() -> None:
    """The API takes a system prompt as a list of text blocks, maybe marked by the user:
    with the agent's own breakpoints that made five (a 400 from the second question on)
    and a 5-minute tools breakpoint before a 1-hour system one. The agent places the
    system's breakpoint itself: on its last block, with the tools' lifetime."""
    clock = VirtualClock()
    blocks = [
        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "Today is Monday.", "cache_control": EPHEMERAL},
    ]
    agent = make_agent(clock, system=blocks)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(Reply.text("Yes."), Reply.text("Ok."), Reply.text("Bye."))
        converse(clock, agent, ["Is A-1 in stock?", "Thanks!", "Bye"])
        assert [request.status for request in sim.requests] == [200, 200, 200]
        last = sim.requests[-1].body
    assert marks(last) == [
        ("tools", 2, 0),
        ("system", 0, 1),
        ("messages", 2, 0),
        ("messages", 4, 0),
    ]
    assert [block["text"] for block in last["system"]] == [SYSTEM, "Today is Monday."]
    assert blocks[0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}  # not changed
    third = agent.usages[-1]
    assert third["cache_read_input_tokens"] > 0
