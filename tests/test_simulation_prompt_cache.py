"""Prompt caching accounting: breakpoints, prefixes, per-model minimums and TTLs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from perfkit import VirtualClock
from perfkit.simulation import AnthropicSimulator, Reply, count_tokens
from perfkit.simulation.anthropic._prompt_cache import (
    LOOKBACK_BLOCKS,
    CacheUsage,
    PromptBlock,
    PromptCache,
    minimum_cacheable_tokens,
    prompt_blocks,
)

SONNET = "claude-sonnet-4-5"
FIVE_MINUTES, ONE_HOUR = 300.0, 3600.0
EPHEMERAL: dict[str, Any] = {"type": "ephemeral"}


def words(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def count(block: PromptBlock) -> int:
    """A block's tokens in these tests: the words of its text (a tool: of its description)."""
    content = block.content
    if isinstance(content, str):
        return len(content.split())
    return len(str(content.get("text") or content.get("description") or "").split())


def text(n: int, tag: str = "w", ttl: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": words(n, tag)}
    if ttl is not None:
        block["cache_control"] = {"type": "ephemeral", "ttl": ttl}
    return block


def marked(n: int, tag: str = "w") -> dict[str, Any]:
    """A text block that is a breakpoint with the default TTL (no ``ttl`` key)."""
    return {"type": "text", "text": words(n, tag), "cache_control": dict(EPHEMERAL)}


def request(
    *,
    system: list[dict[str, Any]] | None = None,
    messages: list[dict[str, Any]] | None = None,
    tools: list[dict[str, Any]] | None = None,
    model: str = SONNET,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": 100, **extra}
    body["messages"] = messages or [{"role": "user", "content": words(10, "q")}]
    if system is not None:
        body["system"] = system
    if tools is not None:
        body["tools"] = tools
    return body


def user(*blocks: dict[str, Any] | str) -> dict[str, Any]:
    content = blocks[0] if len(blocks) == 1 and isinstance(blocks[0], str) else list(blocks)
    return {"role": "user", "content": content}


def tool(name: str, n: int, ttl: str | None = None) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "name": name,
        "description": words(n, name),
        "input_schema": {"type": "object"},
    }
    if ttl is not None:
        definition["cache_control"] = {"type": "ephemeral", "ttl": ttl}
    return definition


def account(cache: PromptCache, body: dict[str, Any], now: float) -> CacheUsage:
    usage = cache.account(body, count=count, now=now)
    assert usage.total_input_tokens == sum(count(b) for b in prompt_blocks(body))
    return usage


WRITE_5M = CacheUsage(10, 2000, 0, 2000, 0)
READ = CacheUsage(10, 0, 2000)


def test_a_write_then_a_read_within_the_ttl_then_a_write_again_after_it() -> None:
    cache = PromptCache()
    body = request(system=[marked(2000)])
    assert account(cache, body, 0.0) == WRITE_5M
    assert account(cache, body, FIVE_MINUTES - 1) == READ
    # The read restarted the 5 minutes: expired only 5 minutes after it.
    assert account(cache, body, 2 * FIVE_MINUTES - 2) == READ
    assert account(cache, body, 3 * FIVE_MINUTES) == WRITE_5M


def test_an_entry_not_read_expires_after_five_minutes() -> None:
    cache = PromptCache()
    body = request(system=[marked(2000)])
    account(cache, body, 0.0)
    assert account(cache, body, FIVE_MINUTES + 1) == WRITE_5M


def test_a_one_hour_entry_outlives_five_minutes_and_expires_after_an_hour() -> None:
    cache = PromptCache()
    body = request(system=[text(2000, ttl="1h")])
    assert account(cache, body, 0.0) == CacheUsage(10, 2000, 0, 0, 2000)
    assert account(cache, body, ONE_HOUR - 1) == READ
    assert account(cache, body, 2 * ONE_HOUR) == CacheUsage(10, 2000, 0, 0, 2000)


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("claude-sonnet-4-5", 1024),
        ("claude-sonnet-4-6", 1024),
        ("claude-opus-4-1-20250805", 1024),
        ("claude-opus-4-5-20251101", 4096),
        ("claude-opus-4-6", 4096),
        ("claude-haiku-4-5-20251001", 4096),
        ("claude-3-5-haiku-20241022", 2048),
        ("claude-3-haiku-20240307", 2048),
        ("a-model-nobody-knows", 1024),
    ],
)
def test_each_model_caches_from_its_minimum_cacheable_length(model: str, minimum: int) -> None:
    assert minimum_cacheable_tokens(model) == minimum
    cache = PromptCache()
    short = request(model=model, system=[marked(minimum - 1, "short")])
    assert account(cache, short, 0.0) == CacheUsage(minimum - 1 + 10)
    assert account(cache, short, 1.0) == CacheUsage(minimum - 1 + 10)
    enough = request(model=model, system=[marked(minimum, "enough")])
    assert account(cache, enough, 2.0) == CacheUsage(10, minimum, 0, minimum, 0)
    assert account(cache, enough, 3.0) == CacheUsage(10, 0, minimum)


def test_a_request_without_breakpoints_is_all_input() -> None:
    cache = PromptCache()
    body = request(system=[text(2000)])
    assert account(cache, body, 0.0) == CacheUsage(2010)
    assert account(cache, body, 1.0) == CacheUsage(2010)
    assert len(cache) == 0


def test_caches_are_per_model() -> None:
    cache = PromptCache()
    account(cache, request(system=[marked(2000)]), 0.0)
    other = request(model="claude-sonnet-4-6", system=[marked(2000)])
    assert account(cache, other, 1.0) == WRITE_5M


def test_an_alias_shares_the_cache_of_its_dated_model() -> None:
    cache = PromptCache()
    account(cache, request(model="claude-haiku-4-5-20251001", system=[marked(5000)]), 0.0)
    alias = request(model="claude-haiku-4-5", system=[marked(5000)])
    assert account(cache, alias, 1.0) == CacheUsage(10, 0, 5000)


def test_a_changed_earlier_block_misses_and_a_change_after_the_breakpoint_does_not() -> None:
    cache = PromptCache()
    system = [text(1500, "a"), marked(500, "b")]
    account(cache, request(system=system), 0.0)
    later_change = request(system=system, messages=[user(words(30, "other"))])
    assert account(cache, later_change, 1.0) == CacheUsage(30, 0, 2000)
    earlier_change = request(system=[text(1500, "A"), marked(500, "b")])
    assert account(cache, earlier_change, 2.0) == WRITE_5M


def test_a_changed_tool_misses_the_system_entry_after_it() -> None:
    cache = PromptCache()
    account(cache, request(tools=[tool("t", 100)], system=[marked(2000)]), 0.0)
    changed = request(tools=[tool("t", 101)], system=[marked(2000)])
    assert account(cache, changed, 1.0) == CacheUsage(10, 2101, 0, 2101, 0)


def test_breakpoints_on_tools_system_and_messages_with_mixed_ttls() -> None:
    # Tools 1200 (1h), system 300 (1h), messages 700 (5m), then 10 uncached.
    cache = PromptCache()
    body = request(
        tools=[tool("search", 400), tool("fetch", 800, ttl="1h")],
        system=[text(300, "s", ttl="1h")],
        messages=[user(marked(700, "doc"), text(10, "q"))],
    )
    # The docs' rule: 1-hour tokens up to the last 1-hour breakpoint, 5-minute after it.
    assert account(cache, body, 0.0) == CacheUsage(10, 2200, 0, 700, 1500)
    assert account(cache, body, 1.0) == CacheUsage(10, 0, 2200)
    # The 5-minute entry expired; the 1-hour ones hold: read 1500, write 700 again.
    assert account(cache, body, 1.0 + FIVE_MINUTES + 1) == CacheUsage(10, 700, 1500, 700, 0)


def test_the_tools_entry_is_read_when_only_the_system_prompt_changed() -> None:
    cache = PromptCache()
    tools = [tool("search", 1500, ttl="5m")]
    account(cache, request(tools=tools, system=[marked(600, "v1")]), 0.0)
    changed = request(tools=tools, system=[marked(600, "v2")])
    assert account(cache, changed, 1.0) == CacheUsage(10, 600, 1500, 600, 0)


def test_a_conversation_moving_its_breakpoint_reads_the_previous_turns() -> None:
    cache = PromptCache()
    system = [marked(1500, "sys")]
    first = [user(marked(100, "q1"))]
    assert account(cache, request(system=system, messages=first), 0.0) == CacheUsage(
        0, 1600, 0, 1600, 0
    )
    second = [
        user(text(100, "q1")),
        {"role": "assistant", "content": [text(50, "a1")]},
        user(marked(20, "q2")),
    ]
    assert account(cache, request(system=system, messages=second), 5.0) == CacheUsage(
        0, 70, 1600, 70, 0
    )


@pytest.mark.parametrize(("after", "hit"), [(LOOKBACK_BLOCKS - 1, True), (LOOKBACK_BLOCKS, False)])
def test_a_hit_is_found_up_to_twenty_positions_back_from_a_breakpoint(
    after: int, hit: bool
) -> None:
    cache = PromptCache()
    account(cache, request(messages=[user(marked(2000, "doc"))]), 0.0)
    more = [text(1, f"b{i}") for i in range(after - 1)] + [marked(1, "last")]
    body = request(messages=[user(text(2000, "doc"), *more)])
    expected = (
        CacheUsage(0, after, 2000, after, 0)
        if hit
        else CacheUsage(0, 2000 + after, 0, 2000 + after, 0)
    )
    assert account(cache, body, 1.0) == expected


def test_changing_tool_choice_misses_the_messages_but_not_the_system_prompt() -> None:
    cache = PromptCache()
    system = [marked(1500)]
    messages = [user(marked(500, "doc"), text(10, "q"))]
    auto = request(system=system, messages=messages, tool_choice={"type": "auto"})
    account(cache, auto, 0.0)
    forced = request(system=system, messages=messages, tool_choice={"type": "any"})
    assert account(cache, forced, 1.0) == CacheUsage(10, 500, 1500, 500, 0)


def test_top_level_cache_control_marks_the_last_block() -> None:
    cache = PromptCache()
    body = request(
        system=[text(1500)],
        messages=[user(words(600, "q"))],
        cache_control={"type": "ephemeral", "ttl": "1h"},
    )
    assert account(cache, body, 0.0) == CacheUsage(0, 2100, 0, 0, 2100)
    assert account(cache, body, FIVE_MINUTES + 1) == CacheUsage(0, 0, 2100)


def test_a_string_and_its_text_block_are_the_same_prefix() -> None:
    cache = PromptCache()
    doc = words(1500, "doc")
    account(cache, request(messages=[user(doc), user(marked(10, "q"))]), 0.0)
    as_block = request(messages=[user({"type": "text", "text": doc}), user(marked(10, "q"))])
    assert account(cache, as_block, 1.0) == CacheUsage(0, 0, 1510)


def test_the_least_recently_used_entry_goes_first_beyond_the_cap() -> None:
    cache = PromptCache(max_entries=2)
    a, b, c = (request(system=[marked(2000, tag)]) for tag in "abc")
    account(cache, a, 0.0)
    account(cache, b, 1.0)
    account(cache, a, 2.0)  # a is now more recent than b
    account(cache, c, 3.0)
    assert len(cache) == 2
    assert account(cache, a, 4.0) == READ
    assert account(cache, b, 5.0) == WRITE_5M


def test_clear_forgets_every_entry() -> None:
    cache = PromptCache()
    body = request(system=[marked(2000)])
    account(cache, body, 0.0)
    cache.clear()
    assert len(cache) == 0
    assert account(cache, body, 1.0) == WRITE_5M


def test_usage_fields_carry_the_ttl_breakdown() -> None:
    assert CacheUsage(10, 2200, 5, 700, 1500).usage_fields() == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 2200,
        "cache_read_input_tokens": 5,
        "cache_creation": {"ephemeral_5m_input_tokens": 700, "ephemeral_1h_input_tokens": 1500},
    }


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_max_entries_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="max_entries must be an int >= 1"):
        PromptCache(max_entries=bad)  # type: ignore[arg-type]


# --- through the anthropic SDK, on the simulator's clock ----------------------------------------

SYSTEM = words(1500, "policy")  # 1,500 simulator tokens
QUESTION = "What does the policy say?"  # 5


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator(clock=clock) as simulator:
        yield simulator


def cached_system(ttl: str | None = None) -> dict[str, Any]:
    control: dict[str, Any] = (
        {"type": "ephemeral"} if ttl is None else {"type": "ephemeral", "ttl": ttl}
    )
    return {
        "model": SONNET,
        "max_tokens": 64,
        "system": [{"type": "text", "text": SYSTEM, "cache_control": control}],
        "messages": [{"role": "user", "content": QUESTION}],
    }


def counts(usage: Any) -> tuple[int, int, int, int, int]:
    """input, cache creation, cache read, and the 5-minute and 1-hour creation breakdown."""
    return (
        usage.input_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation.ephemeral_5m_input_tokens,
        usage.cache_creation.ephemeral_1h_input_tokens,
    )


SDK_WRITE_5M = (5, 1500, 0, 1500, 0)
SDK_READ = (5, 0, 1500, 0, 0)


def test_the_sdk_sees_a_write_a_read_within_five_minutes_and_a_write_after(
    sim: AnthropicSimulator, clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    assert counts(client.messages.create(**cached_system()).usage) == SDK_WRITE_5M
    clock.advance(FIVE_MINUTES - 1)
    assert counts(client.messages.create(**cached_system()).usage) == SDK_READ
    clock.advance(FIVE_MINUTES + 1)
    assert counts(client.messages.create(**cached_system()).usage) == SDK_WRITE_5M


def test_a_one_hour_breakpoint_is_read_after_five_minutes_and_written_after_an_hour(
    sim: AnthropicSimulator, clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    written = (5, 1500, 0, 0, 1500)
    assert counts(client.messages.create(**cached_system("1h")).usage) == written
    clock.advance(FIVE_MINUTES + 1)
    assert counts(client.messages.create(**cached_system("1h")).usage) == SDK_READ
    clock.advance(ONE_HOUR + 1)
    assert counts(client.messages.create(**cached_system("1h")).usage) == written


def test_a_stream_reports_the_cache_counts_in_message_start_delta_and_final_message(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    client.messages.create(**cached_system())
    events = list(client.messages.create(stream=True, **cached_system()))
    start = events[0]
    assert start.type == "message_start"
    assert counts(start.message.usage) == SDK_READ
    delta = next(event for event in events if event.type == "message_delta")
    assert (
        delta.usage.input_tokens,
        delta.usage.cache_creation_input_tokens,
        delta.usage.cache_read_input_tokens,
    ) == SDK_READ[:3]
    with client.messages.stream(**cached_system()) as stream:
        final = stream.get_final_message()
    assert counts(final.usage) == SDK_READ


def test_count_tokens_is_the_whole_prompt_input_plus_creation_plus_read(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    body = {key: value for key, value in cached_system().items() if key != "max_tokens"}
    total = client.messages.count_tokens(**body).input_tokens
    assert total == 1505
    for _ in range(2):
        usage = client.messages.create(**cached_system()).usage
        assert (
            usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
            == total
        )


def test_a_tools_breakpoint_caches_the_tool_definitions(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    tools = [
        {**tool("lookup", 1200), "cache_control": {"type": "ephemeral"}},
    ]
    # The definition's tokens: its cache_control marker is not billed.
    tokens = count_tokens(json.dumps(tool("lookup", 1200), sort_keys=True))
    body = {
        "model": SONNET,
        "max_tokens": 64,
        "tools": tools,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    assert counts(client.messages.create(**body).usage) == (5, tokens, 0, tokens, 0)
    assert counts(client.messages.create(**body).usage) == (5, 0, tokens, 0, 0)


def test_reset_forgets_the_prompt_cache(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    client.messages.create(**cached_system())
    sim.reset()
    assert counts(client.messages.create(**cached_system()).usage) == SDK_WRITE_5M


def test_a_scripted_input_count_is_kept_beside_the_cache_counts(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    sim.enqueue(Reply.text("ok", input_tokens=7))
    assert counts(client.messages.create(**cached_system()).usage) == (7, 1500, 0, 1500, 0)


def test_without_breakpoints_everything_is_input(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    body = cached_system()
    del body["system"][0]["cache_control"]
    for _ in range(2):
        assert counts(client.messages.create(**body).usage) == (1505, 0, 0, 0, 0)
