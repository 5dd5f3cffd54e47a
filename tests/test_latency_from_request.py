"""The modeled latency of an LLM call depends on the request: queueing, a base, the prefill
of the uncached input, the prompt-cache read, then the decode of every output token.

Every test runs through the real SDK against a simulator on a VirtualClock: the times are
exact, and each is computed from the parameters and the tokens the request carried."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import re
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from perfkit import VirtualClock
from perfkit.agents import ConversationStore, NaiveAgent, OptimizedAgent
from perfkit.cache import MultiLayerCache
from perfkit.simulation import (
    AnthropicSimulator,
    Fault,
    LLMLatency,
    OpenAISimulator,
    Replay,
    Reply,
    SimRequest,
    SimulatedAssistant,
    ThinkingBlock,
    count_tokens,
)
from perfkit.simulation.anthropic._prompt_cache import CacheUsage, PromptBlock, PromptCache

SONNET = "claude-sonnet-4-5"
BASE, PREFILL, READ, PER_TOKEN = 0.2, 0.0001, 0.00001, 0.02
LATENCY = LLMLatency(
    ttft=BASE, prefill_per_token=PREFILL, cache_read_per_token=READ, per_token=PER_TOKEN
)


def words(n: int, tag: str = "w") -> str:
    """``n`` simulator tokens of text."""
    return " ".join(f"{tag}{i}" for i in range(n))


def us(seconds: float) -> float:
    return round(seconds, 6)


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator(latency=LATENCY, clock=clock) as simulator:
        yield simulator


def ask(question: str, *, system: str | None = None, cached: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": SONNET,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": question}],
    }
    if system is not None:
        block: dict[str, Any] = {"type": "text", "text": system}
        if cached:
            block["cache_control"] = {"type": "ephemeral"}
        body["system"] = [block]
    return body


def streamed_ttft(client: anthropic.Anthropic, clock: VirtualClock, body: dict[str, Any]) -> float:
    """Seconds from sending to the first content delta, as the client sees them."""
    start = clock.now()
    with client.messages.stream(**body) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                return clock.elapsed(start)
    raise AssertionError("the stream carried no content")


def prompt_tokens(client: anthropic.Anthropic, body: dict[str, Any]) -> int:
    counted = {key: value for key, value in body.items() if key != "max_tokens"}
    return client.messages.count_tokens(**counted).input_tokens


# --- prefill, cache read, queue -------------------------------------------------------------


def test_ttft_grows_with_uncached_input_exactly_as_configured(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    short, long = ask(words(1_000)), ask(words(11_000))
    sizes = [prompt_tokens(client, body) for body in (short, long)]
    assert sizes[1] - sizes[0] == 10_000
    ttfts = [streamed_ttft(client, clock, body) for body in (short, long)]
    assert ttfts == [us(BASE + n * PREFILL) for n in sizes]
    assert us(ttfts[1] - ttfts[0]) == 1.0
    assert sim.last_request.ttft == ttfts[1]


def test_a_cache_read_is_faster_than_the_prefill_it_replaces(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    body = ask("What does the policy say?", system=words(10_000, "policy"), cached=True)
    written = client.messages.create(**body).usage
    assert (written.cache_creation_input_tokens, written.cache_read_input_tokens) == (10_000, 0)
    first, second = (streamed_ttft(client, clock, body) for _ in range(2))
    read = client.messages.create(**body).usage
    assert (read.cache_creation_input_tokens, read.cache_read_input_tokens) == (0, 10_000)
    # The first streamed call already read what the non-streamed one wrote.
    assert first == second == us(BASE + read.input_tokens * PREFILL + 10_000 * READ)

    sim.reset()  # an empty cache: the first call writes, and pays the prefill of its write
    writing, reading = (streamed_ttft(client, clock, body) for _ in range(2))
    assert writing == us(BASE + (written.input_tokens + 10_000) * PREFILL)
    assert us(writing - reading) == us((PREFILL - READ) * 10_000) == 0.9


def test_cache_creation_tokens_are_prefilled_like_uncached_input(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    system = words(5_000, "rules")
    plain = streamed_ttft(client, clock, ask("Hi", system=system))
    writing = streamed_ttft(client, clock, ask("Hi", system=system, cached=True))
    assert plain == writing == us(BASE + prompt_tokens(client, ask("Hi", system=system)) * PREFILL)


def test_a_prompt_below_the_cacheable_minimum_is_all_prefilled(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    body = ask("Hi", system=words(500, "short"), cached=True)  # Sonnet caches from 1,024
    ttfts = [streamed_ttft(client, clock, body) for _ in range(2)]
    assert ttfts == [us(BASE + prompt_tokens(client, body) * PREFILL)] * 2


def test_queueing_adds_to_the_time_to_first_token(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    body = ask(words(2_000))
    before = streamed_ttft(client, clock, body)
    sim.latency = LLMLatency(ttft=BASE, prefill_per_token=PREFILL, queue=0.75, connect=0.1)
    after = streamed_ttft(client, clock, body)
    assert us(after - before) == 0.85


def test_a_scripted_input_count_is_what_is_prefilled(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    sim.enqueue(Reply.text("ok", input_tokens=50_000))
    assert streamed_ttft(client, clock, ask("Hi")) == us(BASE + 50_000 * PREFILL)
    cached = ask("Hi", system=words(2_000, "policy"), cached=True)
    sim.enqueue(Reply.text("ok", input_tokens=7))  # beside a cache write of 2,000
    assert streamed_ttft(client, clock, cached) == us(BASE + 2_007 * PREFILL)


def test_a_reply_with_its_own_latency_is_planned_with_the_request(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    own = LLMLatency(ttft=1.0, prefill_per_token=0.001)
    sim.enqueue(Reply.text("ok", latency=own))
    body = ask(words(300))
    assert streamed_ttft(client, clock, body) == us(1.0 + prompt_tokens(client, body) * 0.001)


# --- decode: thinking, complete time, streamed or not -----------------------------------------


def test_thinking_delays_the_first_text_by_its_decode_but_not_the_first_token(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    thought = words(40, "hmm")
    thinks = {"type": "enabled", "budget_tokens": 1024}
    body = {**ask(words(3_000)), "max_tokens": 4096, "thinking": thinks}
    first_token = us(BASE + prompt_tokens(client, body) * PREFILL)
    sim.enqueue(Reply.text("Paris."))
    with client.messages.stream(**body) as stream:
        stream.until_done()
    without = sim.last_request
    sim.enqueue(Reply(ThinkingBlock(thought), "Paris."))
    with client.messages.stream(**body) as stream:
        stream.until_done()
    thinking = sim.last_request
    assert without.ttft == thinking.ttft == first_token
    assert thinking.first_text_at is not None
    text_after = us(thinking.first_text_at - thinking.sent_at)
    assert text_after == us(first_token + count_tokens(thought) * PER_TOKEN)


def test_streamed_and_not_streamed_complete_at_the_same_time(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    body = ask("Summarise the policy", system=words(4_000, "policy"), cached=True)
    durations = []
    for stream in (False, True, False, True):
        sim.enqueue(Reply.of_tokens(120))
        start = clock.now()
        if stream:
            with client.messages.stream(**body) as events:
                events.until_done()
        else:
            client.messages.create(**body)
        durations.append(clock.elapsed(start))
    prompt = prompt_tokens(client, body)
    decode = 119 * PER_TOKEN
    write = us(BASE + prompt * PREFILL + decode)
    read = us(BASE + (prompt - 4_000) * PREFILL + 4_000 * READ + decode)
    assert durations == [write, read, read, read]


def test_an_old_three_part_latency_ignores_the_request(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    sim.latency = LLMLatency(connect=0.1, ttft=0.5, per_token=0.02)
    for size in (10, 20_000):
        sim.enqueue(Reply.of_tokens(100))
        start = clock.now()
        client.messages.create(**ask(words(size)))
        assert clock.elapsed(start) == 2.58


# --- faults, the cache's timing, broken models ----------------------------------------------


def test_a_stream_cut_by_an_error_waits_for_the_prefill_too(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    body = ask(words(5_000))
    first_token = us(BASE + prompt_tokens(client, body) * PREFILL)
    sim.enqueue(Fault.stream_error(after_tokens=3, reply=Reply.of_tokens(10)))
    start = clock.now()
    with pytest.raises(anthropic.APIStatusError), client.messages.stream(**body) as stream:
        stream.until_done()
    assert sim.last_request.ttft == first_token
    assert clock.elapsed(start) == us(first_token + 3 * PER_TOKEN)


def test_a_cache_write_is_readable_only_once_its_prefill_is_done(
    sim: AnthropicSimulator, clock: VirtualClock
) -> None:
    """The writer's first token comes after its prefill of the whole prompt (1.2001 s);
    a request sent at 1 s, past the base alone, still finds nothing to read."""
    body = ask("Hi", system=words(10_000, "policy"), cached=True)

    async def later(client: anthropic.AsyncAnthropic, delay: float) -> Any:
        await asyncio.sleep(delay)
        return (await client.messages.create(**body)).usage

    async def main() -> list[Any]:
        async with anthropic.AsyncAnthropic(api_key="test", max_retries=0) as client:
            return list(
                await asyncio.gather(later(client, 0.0), later(client, 1.0), later(client, 1.3))
            )

    writer, early, late = clock.run(main())
    assert sim.requests[0].first_token_at is None  # not streamed: the plan is in the log
    first_token = us(BASE + (writer.input_tokens + 10_000) * PREFILL)
    assert first_token == 1.2001
    assert early.cache_creation_input_tokens == 10_000
    assert (late.cache_creation_input_tokens, late.cache_read_input_tokens) == (0, 10_000)


def test_a_latency_model_running_out_fails_the_request_and_undoes_its_cache_write(
    sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    sim.latency = LLMLatency(ttft=0.2, prefill_per_token=Replay([0.0001]))
    body = ask("Hi", system=words(2_000, "policy"), cached=True)
    assert client.messages.create(**body).usage.cache_creation_input_tokens == 2_000
    sim.reset()
    # The SDK sees its transport fail; the simulator keeps the cause for the test.
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(**body)
    (failure,) = sim.pop_failures()
    assert "Replay ran out of recorded latencies" in str(failure)
    sim.latency = LATENCY
    usage = client.messages.create(**body).usage  # the failed request wrote nothing
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (2_000, 0)


# --- the simulated assistant and the OpenAI simulator ---------------------------------------


def test_the_simulated_assistant_prefills_and_reads_the_cache(
    sim: AnthropicSimulator, client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    assistant = SimulatedAssistant(
        seed=3,
        ttft_sigma=0.0,
        tool_rate=0.0,
        prefill_per_token=PREFILL,
        cache_read_per_token=READ,
    )
    sim.respond_with(assistant)
    body = ask("What does the policy say?", system=words(3_000, "policy"), cached=True)
    writing, reading = (streamed_ttft(client, clock, body) for _ in range(2))
    assert us(writing - reading) == us(3_000 * (PREFILL - READ))
    assert "prefill_per_token=0.0001" in repr(assistant)


@pytest.mark.parametrize("name", ["queue", "prefill_per_token", "cache_read_per_token"])
def test_the_simulated_assistant_refuses_a_bad_rate(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a finite number >= 0.0, got -1$"):
        SimulatedAssistant(**{name: -1})  # type: ignore[arg-type]


def test_openai_prefills_the_whole_prompt(clock: VirtualClock) -> None:
    latency = LLMLatency(ttft=BASE, prefill_per_token=PREFILL)
    ttfts: list[tuple[int, Any]] = []
    with (
        OpenAISimulator(latency=latency, clock=clock) as sim,
        openai.OpenAI(api_key="test", max_retries=0) as client,
    ):
        for size in (100, 10_100):
            messages: Any = [{"role": "user", "content": words(size)}]
            completion = client.chat.completions.create(model="gpt-4o", messages=messages)
            assert completion.usage is not None
            ttfts.append((completion.usage.prompt_tokens, sim.last_request.duration))
    (small, small_time), (large, large_time) = ttfts
    assert large - small == 10_000
    assert small_time == us(BASE + small * PREFILL)
    assert us(large_time - small_time) == 1.0


# --- the prompt cache asks for the writer's first token once it knows the usage ------------


def cache_body(n: int = 2_000) -> dict[str, Any]:
    return ask("Hi", system=words(n, "policy"), cached=True)


def block_tokens(block: PromptBlock) -> int:
    content = block.content
    return len((content if isinstance(content, str) else content["text"]).split())


def test_the_cache_asks_for_the_first_token_with_the_usage_outside_its_lock() -> None:
    cache = PromptCache()
    seen: list[tuple[CacheUsage, CacheUsage]] = []

    def first_token(usage: CacheUsage) -> float:
        # Not under the lock (this would deadlock), and what is being written is not
        # readable yet: a parallel request writes it too.
        parallel = cache.account(cache_body(), count=block_tokens, now=0.5, ready_after=0.5)
        seen.append((usage, parallel))
        return 2.0

    usage = cache.account(cache_body(), count=block_tokens, now=0.0, ready_after=first_token)
    ((asked, parallel),) = seen
    assert asked == usage
    assert usage.cache_creation_input_tokens == parallel.cache_creation_input_tokens == 2_000
    # The parallel write's own first token (0.5 s after it, at 1.0) comes first.
    assert cache.account(cache_body(), count=block_tokens, now=0.99).cache_read_input_tokens == 0
    assert cache.account(cache_body(), count=block_tokens, now=1.0).cache_read_input_tokens == 2_000


def test_a_request_whose_plan_fails_writes_nothing_unless_another_writes_too() -> None:
    cache = PromptCache()

    def broken(usage: CacheUsage) -> float:
        raise ValueError("no latency")

    with pytest.raises(ValueError, match="no latency"):
        cache.account(cache_body(), count=block_tokens, now=0.0, ready_after=broken)
    assert len(cache) == 0
    assert cache.account(cache_body(), count=block_tokens, now=1.0).cache_creation_input_tokens

    def parallel_then_broken(usage: CacheUsage) -> float:
        cache.account(cache_body(3_000), count=block_tokens, now=10.0, ready_after=0.25)
        raise ValueError("no latency")

    with pytest.raises(ValueError, match="no latency"):
        cache.account(
            cache_body(3_000), count=block_tokens, now=10.0, ready_after=parallel_then_broken
        )
    read = cache.account(cache_body(3_000), count=block_tokens, now=10.25)
    assert read.cache_read_input_tokens == 3_000


# --- trimming history buys modeled time ----------------------------------------------------------


QUESTIONS = 20
CONTEXT_TOKENS = 400  # each question brings a document of its own
REPLY_TOKENS = 20


def conversation(
    agent: NaiveAgent | OptimizedAgent, clock: VirtualClock
) -> tuple[list[SimRequest], list[int]]:
    """The same 20 questions, each with 400 tokens of context and answered in 20 tokens,
    on a simulator that prefills: the log of every request and the input tokens each reply
    reported. (Long questions rather than long replies: a streamed token costs the SDK an
    event to parse, a prefilled one nothing.)"""
    latency = LLMLatency(ttft=BASE, prefill_per_token=PREFILL, per_token=PER_TOKEN)
    with AnthropicSimulator(latency=latency, clock=clock, max_logged=None) as sim:
        sim.respond_with(lambda request: Reply.of_tokens(REPLY_TOKENS, word="detail"))

        async def main() -> list[int]:
            try:
                replies = [
                    await agent.chat("ann", f"About part {n}: {words(CONTEXT_TOKENS, f'p{n}')}?")
                    for n in range(QUESTIONS)
                ]
            finally:
                await agent.aclose()
            return [reply.input_tokens for reply in replies]

        sent = clock.run(main())
        return list(sim.requests), sent


def modeled_ttft(request: SimRequest) -> float:
    """The modeled time to first token: logged for a stream; for a reply not streamed, its
    complete time less the decode of its other tokens."""
    if request.stream:
        assert request.ttft is not None
        return request.ttft
    assert request.duration is not None
    return us(request.duration - (request.output_tokens - 1) * PER_TOKEN)


@pytest.fixture
def one_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's clients share one TLS context: the naive agent makes a client for every
    request, and loading the certificates for each costs tens of milliseconds."""
    tls = ssl.create_default_context()
    client = anthropic.DefaultAsyncHttpxClient
    monkeypatch.setattr(anthropic, "DefaultAsyncHttpxClient", functools.partial(client, verify=tls))


@pytest.mark.usefixtures("one_tls_context")
def test_a_trimmed_history_shows_a_modeled_ttft_gain_on_a_long_conversation() -> None:
    clock = VirtualClock()
    naive = NaiveAgent(client_options={"api_key": "test"})
    trimmed = OptimizedAgent(
        cache=MultiLayerCache(clock=clock),
        history=ConversationStore(max_tokens=2_000),
        prompt_caching=False,  # the history budget alone: every token sent is prefilled
        client_options={"api_key": "test"},
    )
    naive_log, naive_sent = conversation(naive, clock)
    trimmed_log, trimmed_sent = conversation(trimmed, clock)
    assert len(naive_log) == len(trimmed_log) == QUESTIONS
    naive_ttft = [modeled_ttft(request) for request in naive_log]
    trimmed_ttft = [modeled_ttft(request) for request in trimmed_log]
    # Exactly what the tokens sent cost: the base and their prefill.
    assert naive_ttft == [us(BASE + PREFILL * tokens) for tokens in naive_sent]
    assert trimmed_ttft == [us(BASE + PREFILL * tokens) for tokens in trimmed_sent]
    # The naive agent sends every exchange again; the trimmed one stays within its budget.
    assert naive_sent == sorted(naive_sent)
    exchange = CONTEXT_TOKENS + REPLY_TOKENS
    assert naive_sent[-1] > QUESTIONS * exchange
    assert max(trimmed_sent) < 2_000 + 2 * exchange
    late = range(QUESTIONS - 8, QUESTIONS)
    assert all(trimmed_ttft[n] < naive_ttft[n] for n in late)
    gain = us(naive_ttft[-1] - trimmed_ttft[-1])
    assert gain == us(PREFILL * (naive_sent[-1] - trimmed_sent[-1]))
    assert gain > 0.5


# --- docs/latency-model.md runs as it stands ------------------------------------------------------


PAGE = Path(__file__).resolve().parent.parent / "docs" / "latency-model.md"


def examples(text: str) -> list[tuple[str, str | None]]:
    """Each ``python`` block of a page, with the ``text`` block right after it (what it
    prints), if any."""
    found: list[tuple[str, str | None]] = []
    fences = list(re.finditer(r"^```(\w*)\n(.*?)^```\n", text, re.M | re.S))
    for fence, after in zip(fences, [*fences[1:], None], strict=True):
        if fence.group(1) != "python":
            continue
        follows = after is not None and after.group(1) == "text"
        follows = follows and not text[fence.end() : after.start()].strip()  # type: ignore[union-attr]
        found.append((fence.group(2), after.group(2) if follows else None))  # type: ignore[union-attr]
    return found


def test_the_latency_model_page_runs_as_it_stands(capsys: pytest.CaptureFixture[str]) -> None:
    found = examples(PAGE.read_text())
    assert len(found) == 3
    for code, output in found:
        exec(compile(code, str(PAGE), "exec"), {})
        printed = capsys.readouterr().out
        assert printed == (output or ""), code


# --- hostile probes ----------------------------------------------------------------------------


def test_parallel_writers_in_threads_all_write_and_settle() -> None:
    cache = PromptCache()
    started = threading.Barrier(8)

    def first_token(usage: CacheUsage) -> float:
        started.wait(timeout=5)  # all eight are between their write and its settling
        return 0.5

    def request(_: int) -> CacheUsage:
        return cache.account(cache_body(), count=block_tokens, now=0.0, ready_after=first_token)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        usages = list(pool.map(request, range(8)))
    assert [usage.cache_creation_input_tokens for usage in usages] == [2_000] * 8
    assert cache.account(cache_body(), count=block_tokens, now=0.49).cache_read_input_tokens == 0
    assert cache.account(cache_body(), count=block_tokens, now=0.5).cache_read_input_tokens == 2_000


class Broken:
    """A latency model that fails: a user's model with a bug."""

    def sample(self) -> float:
        raise RuntimeError("the latency model broke")


@pytest.mark.parametrize(
    ("latency", "reply", "cause"),
    [
        (LLMLatency(ttft=Broken()), Reply.text("ok"), "the latency model broke"),
        (
            LATENCY,
            Reply.text("ok", input_tokens=2 * 10**9),
            "input_tokens must be an int from 0 to 1,000,000,000, got 2000002000",
        ),
    ],
    ids=["model-raises", "huge-scripted-input"],
)
def test_a_request_that_cannot_be_planned_fails_and_the_simulator_names_why(
    sim: AnthropicSimulator,
    client: anthropic.Anthropic,
    latency: LLMLatency,
    reply: Reply,
    cause: str,
) -> None:
    sim.latency = latency
    sim.enqueue(reply)
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(**cache_body())
    (failure,) = sim.pop_failures()
    assert cause in str(failure)
    sim.latency = LATENCY  # the simulator goes on, and the failed write left nothing
    usage = client.messages.create(**cache_body()).usage
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (2_000, 0)
