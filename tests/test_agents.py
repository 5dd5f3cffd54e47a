"""The naive and optimized agents: one interface, the full tool loop, and where they differ."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from perfkit import AnthropicSimulator, Fault, LLMLatency, Reply, VirtualClock
from perfkit.agents import (
    MAX_MESSAGE_CHARS,
    AgentError,
    AgentReply,
    ConversationStore,
    NaiveAgent,
    OptimizedAgent,
    Tool,
    ToolRegistry,
    demo_tools,
    estimate_tokens,
    support_tools,
)
from perfkit.cache import MultiLayerCache
from perfkit.pooling import connection_stats
from perfkit.simulation import ToolUseBlock

LATENCY = LLMLatency(ttft=0.5, per_token=0.02)
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
AGENTS = ["naive", "optimized"]


def make_tools() -> ToolRegistry:
    tools = ToolRegistry(default_timeout=5.0)

    @tools.tool(input_schema=CITY_SCHEMA)
    async def weather(city: str) -> str:
        """The weather in a city."""
        await asyncio.sleep(1.0)  # a modeled 1 s API call
        return f"sunny in {city}"

    @tools.tool(input_schema=CITY_SCHEMA)
    async def events(city: str) -> list[str]:
        """What is on in a city."""
        await asyncio.sleep(1.0)
        return [f"concert in {city}"]

    @tools.tool()
    def broken() -> str:
        """Always fails."""
        raise RuntimeError("database is down")

    @tools.tool(timeout=0.5)
    async def slow() -> str:
        """Never answers in time."""
        await asyncio.sleep(60)
        return "too late"

    return tools


def make_agent(kind: str, clock: VirtualClock, **options: Any) -> NaiveAgent | OptimizedAgent:
    options.setdefault("tools", make_tools())
    options.setdefault("client_options", {"api_key": "test"})
    if kind == "naive":
        return NaiveAgent(**options)
    options.setdefault("cache", MultiLayerCache(clock=clock))
    return OptimizedAgent(**options)


def run(
    clock: VirtualClock,
    agent: NaiveAgent | OptimizedAgent,
    scenario: Callable[[], Awaitable[Any]],
) -> Any:
    async def main() -> Any:
        try:
            return await scenario()
        finally:
            await agent.aclose()

    return clock.run(main())


def tool_results(sim: AnthropicSimulator, request: int) -> list[dict[str, Any]]:
    content = sim.requests[request].body["messages"][-1]["content"]
    assert isinstance(content, list)
    return content


@pytest.mark.parametrize("kind", AGENTS)
def test_the_tool_loop_runs_until_end_turn(kind: str) -> None:
    clock = VirtualClock()
    agent = make_agent(kind, clock)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(Reply.tool_use("weather", {"city": "Paris"}), Reply.text("Sunny in Paris."))
        reply = run(clock, agent, lambda: agent.chat("ann", "Weather in Paris?"))
        assert sim.call_count == 2
        first, second = sim.requests
    assert reply == AgentReply(
        text="Sunny in Paris.",
        turns=2,
        tool_calls=1,
        input_tokens=reply.input_tokens,
        output_tokens=reply.output_tokens,
        stop_reason="end_turn",
        usd=sim.usd,
        model="claude-sonnet-5",
    )
    assert reply.input_tokens > 0
    assert reply.output_tokens > 0
    assert [tool["name"] for tool in first.body["tools"]] == [
        "broken",
        "events",
        "slow",
        "weather",
    ]
    roles = [message["role"] for message in second.body["messages"]]
    assert roles == ["user", "assistant", "user"]
    (result,) = tool_results(sim, 1)
    assert result["content"] == "sunny in Paris"
    assert result["tool_use_id"] == second.body["messages"][1]["content"][0]["id"]


@pytest.mark.parametrize("kind", AGENTS)
def test_failing_timed_out_and_invalid_tools_become_error_results(kind: str) -> None:
    clock = VirtualClock()
    agent = make_agent(kind, clock)
    calls = Reply.tool_use("broken", {})
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(
            Reply(
                *calls.blocks,
                *Reply.tool_use("slow", {}).blocks,
                *Reply.tool_use("weather", {"town": "Paris"}).blocks,
                *Reply.tool_use("teleport", {}).blocks,
            ),
            Reply.text("Sorry, my tools failed."),
        )
        reply = run(clock, agent, lambda: agent.chat("ann", "Help"))
        results = tool_results(sim, 1)
    assert reply.text == "Sorry, my tools failed."
    assert [r.get("is_error") for r in results] == [True] * 4
    assert [r["content"] for r in results] == [
        "tool 'broken' failed: RuntimeError: database is down",
        "tool 'slow' timed out after 0.5 s",
        "tool 'weather' failed: ValueError: invalid input at input: 'city' is a required property",
        "unknown tool 'teleport'; known tools: broken, events, slow, weather",
    ]


@pytest.mark.parametrize(("kind", "seconds"), [("naive", 2.0), ("optimized", 1.0)])
def test_tools_of_one_turn_run_one_after_another_or_at_once(kind: str, seconds: float) -> None:
    clock = VirtualClock()
    agent = make_agent(kind, clock)
    both = Reply(
        *Reply.tool_use("weather", {"city": "Rome"}).blocks,
        *Reply.tool_use("events", {"city": "Rome"}).blocks,
    )
    with AnthropicSimulator(clock=clock) as sim:  # no API latency: only the tools' time
        sim.enqueue(both, Reply.text("Sunny, with a concert."))

        async def timed() -> float:
            start = clock.now()
            await agent.chat("ann", "Rome tonight?")
            return clock.elapsed(start)

        assert run(clock, agent, timed) == seconds
        assert [r["content"] for r in tool_results(sim, 1)] == [
            "sunny in Rome",
            '["concert in Rome"]',
        ]


def test_the_optimized_agent_streams_and_the_naive_one_does_not() -> None:
    clock = VirtualClock()
    arrivals: dict[str, list[tuple[float, str]]] = {}
    for kind in AGENTS:
        agent = make_agent(kind, clock)

        async def collect(agent: NaiveAgent | OptimizedAgent = agent) -> list[tuple[float, str]]:
            start = clock.now()
            return [
                (clock.elapsed(start), chunk)
                async for chunk in agent.chat_stream("ann", "Tell me a story")
            ]

        with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
            sim.respond_with(Reply.of_tokens(100))
            arrivals[kind] = run(clock, agent, collect)
    full = round(0.5 + 99 * 0.02, 6)
    assert [seconds for seconds, _ in arrivals["naive"]] == [full]
    optimized = arrivals["optimized"]
    assert (optimized[0][0], optimized[-1][0], len(optimized)) == (0.5, full, 100)
    assert "".join(c for _, c in optimized) == arrivals["naive"][0][1]


def test_closing_the_stream_early_stops_the_upstream_request() -> None:
    clock = VirtualClock()
    agent = make_agent("optimized", clock)

    async def three_tokens() -> list[str]:
        chunks = agent.chat_stream("ann", "Tell me a story")
        got = [await anext(chunks) for _ in range(3)]
        await chunks.aclose()  # the user went away
        return got

    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.respond_with(Reply.of_tokens(100))
        assert len(run(clock, agent, three_tokens)) == 3
        upstream = sim.last_request
    assert upstream.completed is False
    assert upstream.output_tokens < 100
    assert agent.history.messages("ann") == []  # an unfinished exchange is not remembered


@pytest.mark.parametrize(("kind", "api_calls"), [("naive", 2), ("optimized", 1)])
def test_a_repeated_question_is_answered_from_the_cache(kind: str, api_calls: int) -> None:
    clock = VirtualClock()
    agent = make_agent(kind, clock)

    async def twice() -> list[str]:
        return [(await agent.chat(user, "What is Python?")).text for user in ("ann", "bob")]

    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        first, second = run(clock, agent, twice)
        assert sim.call_count == api_calls
    assert first == second


def test_different_system_prompts_or_tools_never_share_a_cache_entry() -> None:
    clock = VirtualClock()
    cache = MultiLayerCache(clock=clock)
    agents = [
        make_agent("optimized", clock, cache=cache, system="You are terse."),
        make_agent("optimized", clock, cache=cache, system="You are verbose."),
        make_agent("optimized", clock, cache=cache, tools=ToolRegistry()),
        make_agent("optimized", clock, cache=cache, system="You are terse."),
    ]

    async def ask_all() -> None:
        for agent in agents:
            await agent.chat("ann", "What is Python?")
            await agent.aclose()

    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        clock.run(ask_all())
        assert sim.call_count == 3  # the fourth shares the first's prompt and tools


def test_history_is_sent_with_the_next_question_and_trimmed_to_its_budget() -> None:
    clock = VirtualClock()
    store = ConversationStore(max_tokens=40)
    agent = make_agent("optimized", clock, history=store)

    async def three_questions() -> None:
        for n in range(3):
            await agent.chat("ann", f"Question number {n}?")

    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        run(clock, agent, three_questions)
        sent = [len(request.body["messages"]) for request in sim.requests]
    assert sent[:2] == [1, 3]  # the second question carries the first exchange
    assert store.tokens("ann") <= 40
    assert sent[2] < 5  # the oldest exchange was trimmed away


def test_the_naive_agent_keeps_everything() -> None:
    clock = VirtualClock()
    agent = make_agent("naive", clock)

    async def three_questions() -> None:
        for n in range(3):
            await agent.chat("ann", f"Question number {n}?")

    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        run(clock, agent, three_questions)
        assert [len(r.body["messages"]) for r in sim.requests] == [1, 3, 5]
    assert len(agent.conversations["ann"]) == 6


def test_memory_stays_bounded_with_ten_thousand_users() -> None:
    store = ConversationStore(max_tokens=200, max_users=1_000)
    exchange = [
        {"role": "user", "content": "What is Python?"},
        {"role": "assistant", "content": [{"type": "text", "text": "A language."}]},
    ]
    for n in range(10_000):
        store.add(f"user-{n}", exchange)
        store.add(f"user-{n}", exchange)
    assert len(store) == 1_000
    assert store.messages("user-0") == []  # the least recently active were forgotten
    assert store.messages("user-9999") == exchange + exchange


def test_ten_thousand_users_through_the_optimized_agent_keep_memory_bounded() -> None:
    clock = VirtualClock()
    store = ConversationStore(max_users=500)
    agent = make_agent("optimized", clock, history=store, tools=ToolRegistry())

    async def many_users() -> None:
        for n in range(10_000):
            await agent.chat(f"user-{n}", "What is Python?")  # answered from the cache

    with AnthropicSimulator(clock=clock) as sim:
        run(clock, agent, many_users)
        assert sim.call_count == 1
    assert len(store) == 500


def test_the_sdks_retries_are_counted() -> None:
    clock = VirtualClock()
    agent = make_agent("optimized", clock)
    with AnthropicSimulator(latency=LATENCY, clock=clock) as sim:
        sim.enqueue(Fault.rate_limit(retry_after=1), Reply.text("Hello"))
        reply = run(clock, agent, lambda: agent.chat("ann", "Hi"))
        assert sim.call_count == 2
    assert (reply.text, agent.retries) == ("Hello", 1)


@pytest.mark.parametrize("kind", AGENTS)
def test_a_model_that_never_stops_asking_for_tools_is_an_error(kind: str) -> None:
    clock = VirtualClock()
    agent = make_agent(kind, clock, max_turns=3)
    with AnthropicSimulator(clock=clock) as sim:
        sim.respond_with(lambda request: Reply.tool_use("weather", {"city": "Oslo"}))
        with pytest.raises(AgentError, match=r"after 3 turns \(max_turns=3\)"):
            run(clock, agent, lambda: agent.chat("ann", "Weather?"))
        assert sim.call_count == 3


@pytest.mark.parametrize(
    ("user_id", "message", "error"),
    [
        ("", "Hi", "user_id must be a non-empty string, got ''"),
        ("ann", "  ", "message must be a non-empty string, got '  '"),
        ("ann", 42, "message must be a non-empty string, got 42"),
        (
            "ann",
            "x" * (MAX_MESSAGE_CHARS + 1),
            f"message is {MAX_MESSAGE_CHARS + 1} characters; at most",
        ),
    ],
)
def test_bad_questions_are_refused_before_any_request(
    user_id: Any, message: Any, error: str
) -> None:
    clock = VirtualClock()
    agent = make_agent("optimized", clock)
    with AnthropicSimulator(clock=clock) as sim:
        with pytest.raises(ValueError, match=error.replace("(", r"\(")):
            run(clock, agent, lambda: agent.chat(user_id, message))
        assert sim.call_count == 0


def test_the_optimized_agent_shares_one_tracked_client_and_closes_it() -> None:
    clock = VirtualClock()
    agent = make_agent("optimized", clock)

    async def scenario() -> tuple[bool, bool]:
        client = agent.client
        await agent.chat("ann", "Hi")
        await agent.chat("bob", "Hello")
        same = agent.client is client
        connection_stats(client)  # tracked: raises if not
        await agent.aclose()
        return same, client.is_closed()

    with AnthropicSimulator(clock=clock):
        assert clock.run(scenario()) == (True, True)


def test_tool_definitions_and_registration_errors() -> None:
    tools = ToolRegistry()
    tool = tools.add(Tool("lookup", lambda: "x", description="Look it up."))
    assert tool.definition() == {
        "name": "lookup",
        "description": "Look it up.",
        "input_schema": {"type": "object", "properties": {}},
    }
    assert "lookup" in tools
    assert len(tools) == 1
    with pytest.raises(ValueError, match="a tool named 'lookup' is already registered"):
        tools.add(Tool("lookup", lambda: "y"))
    with pytest.raises(ValueError, match="tool name must be 1-64 letters"):
        Tool("look up", lambda: "x")
    with pytest.raises(ValueError, match="must be a JSON schema of type 'object'"):
        Tool("lookup", lambda: "x", input_schema={"type": "string"})


def test_estimate_tokens_grows_with_the_text() -> None:
    short = estimate_tokens([{"role": "user", "content": "Hi"}])
    long = estimate_tokens([{"role": "user", "content": "Hi " * 400}])
    assert 1 <= short < long
    assert long == pytest.approx(300, rel=0.1)


def test_conversation_store_rejects_bad_budgets() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        ConversationStore(max_tokens=0)
    with pytest.raises(ValueError, match="max_users"):
        ConversationStore(max_users=0)


def test_public_names_are_pinned() -> None:
    import perfkit.agents

    assert perfkit.agents.__all__ == [
        "DEMO_TOOL_LATENCY",
        "MAX_MESSAGE_CHARS",
        "SUPPORT_SYSTEM_PROMPT",
        "Agent",
        "AgentError",
        "AgentReply",
        "ConversationStore",
        "NaiveAgent",
        "OptimizedAgent",
        "Tool",
        "ToolRegistry",
        "demo_tools",
        "estimate_tokens",
        "support_tools",
    ]


def test_demo_tools_wait_a_modeled_latency_the_same_for_the_same_input() -> None:
    tools = demo_tools(latency=(0.1, 0.5), seed=2)
    assert sorted(tool["name"] for tool in tools.definitions()) == [
        "get_weather",
        "lookup_order",
        "search_docs",
    ]
    clock = VirtualClock()

    async def timed(query: str) -> tuple[float, str]:
        start = clock.now()
        call = {"type": "tool_use", "id": "t1", "name": "search_docs", "input": {"query": query}}
        (result,) = await tools.run([call])
        return clock.elapsed(start), result["content"]

    first = clock.run(timed("pooling"))
    assert first == clock.run(timed("pooling"))
    assert 0.1 <= first[0] <= 0.5
    assert first[1] == "search_docs(pooling): result 1 of 1"
    with pytest.raises(ValueError, match=r"latency must be a \(low, high\) pair"):
        demo_tools(latency=(0.5, 0.1))


@pytest.mark.parametrize("kind", AGENTS)
def test_a_reply_cut_off_in_a_tool_call_leaves_a_history_the_api_accepts(kind: str) -> None:
    # The tool call that max_tokens cut was never run: kept in the history, its tool_use
    # would have no tool_result, and the API refuses every later question of the user.
    clock = VirtualClock()
    agent = make_agent(kind, clock, max_tokens=5)
    long_city = "Paris, the capital of France, on the Seine"
    with AnthropicSimulator(clock=clock) as sim:
        sim.enqueue(Reply("Ok", ToolUseBlock("weather", {"city": long_city})))

        async def scenario() -> tuple[AgentReply, AgentReply]:
            return await agent.chat("ann", "Weather?"), await agent.chat("ann", "Tomorrow?")

        cut, later = run(clock, agent, scenario)
        assert (cut.stop_reason, later.stop_reason) == ("max_tokens", "end_turn")
        assert [logged.status for logged in sim.requests] == [200, 200]
        remembered = sim.requests[1].body["messages"][1]
    assert remembered["role"] == "assistant"
    assert [block["type"] for block in remembered["content"]] == ["text"]


@pytest.mark.parametrize("make", [demo_tools, support_tools])
@pytest.mark.parametrize("latency", [(0.5, 0.1), (-0.1, 0.2)])
def test_tool_registries_refuse_a_latency_that_is_not_a_range(
    make: Any, latency: tuple[float, float]
) -> None:
    with pytest.raises(ValueError, match=r"latency must be a \(low, high\) pair with 0 <= low"):
        make(latency=latency)
