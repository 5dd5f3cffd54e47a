"""Rate limits of the simulated Anthropic API: per-model token buckets on the clock, 429s
with retry-after, and the anthropic-ratelimit-* headers, through the real SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from perfkit import VirtualClock
from perfkit.simulation import AnthropicSimulator, Fault, LLMLatency, RateLimits, Reply

SONNET = "claude-sonnet-4-5"
HAIKU, HAIKU_ID = "claude-haiku-4-5", "claude-haiku-4-5-20251001"
HI = [{"role": "user", "content": "Hi"}]


def limits(**per_minute: int) -> RateLimits:
    names = {"rpm": "requests_per_minute", "itpm": "input_tokens_per_minute"}
    names["otpm"] = "output_tokens_per_minute"
    return RateLimits(**{names[key]: value for key, value in per_minute.items()})


@pytest.fixture
def client() -> Iterator[anthropic.Anthropic]:
    sdk = anthropic.Anthropic(api_key="test", max_retries=0)
    yield sdk
    sdk.close()


def create(client: anthropic.Anthropic, **options: Any) -> Any:
    """A raw ``messages.create`` (status, headers, body), a 429 included."""
    params: dict[str, Any] = {"model": SONNET, "max_tokens": 64, "messages": HI, **options}
    try:
        return client.messages.with_raw_response.create(**params)
    except anthropic.APIStatusError as error:
        return error.response


def ratelimit_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("anthropic-ratelimit")}


def test_no_rate_limits_by_default_reports_generous_limits_untouched(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    with AnthropicSimulator(clock=clock):
        statuses = [create(client).status_code for _ in range(100)]
        last = create(client)
    assert statuses == [200] * 100
    assert last.headers["anthropic-ratelimit-requests-remaining"] == "4000"


def test_requests_past_the_limit_get_429_with_the_apis_error_and_headers(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=3)) as sim:
        answered = [create(client) for _ in range(3)]
        refused = create(client)
    assert [r.status_code for r in answered] == [200, 200, 200]
    assert [r.headers["anthropic-ratelimit-requests-remaining"] for r in answered] == [
        "2",
        "1",
        "0",
    ]
    assert refused.status_code == 429
    # 3 a minute refill one request every 20 s.
    assert refused.headers["retry-after"] == "20"
    assert refused.headers["x-should-retry"] == "true"
    assert refused.headers["anthropic-ratelimit-requests-limit"] == "3"
    assert refused.headers["anthropic-ratelimit-requests-reset"] == "2026-01-01T00:01:00Z"
    error = refused.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "rate_limit_error"
    assert error["error"]["message"].startswith(
        "This request would exceed your organization's rate limit of 3 requests per minute "
        f"(org: 00000000-0000-4000-8000-000000000000, model: {SONNET}). For details, refer "
        "to: https://docs.claude.com/en/api/rate-limits."
    )
    assert error["request_id"] == refused.headers["request-id"]
    assert sim.requests[-1].status == 429


def test_a_retry_before_retry_after_fails_and_one_at_it_succeeds(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=7)):
        for _ in range(7):
            create(client)
        refused = create(client)
        wait = int(refused.headers["retry-after"])  # 60 / 7 = 8.57 s: 9
        clock.advance(wait - 0.5)
        early = create(client)
        clock.advance(0.5)
        on_time = create(client)
    assert wait == 9
    assert early.status_code == 429
    assert early.headers["retry-after"] == "1"
    assert on_time.status_code == 200


def test_a_refused_request_uses_up_no_scripted_answer_or_fault(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=1)) as sim:
        sim.enqueue(Reply.text("first"), Fault.overloaded(), Reply.text("third"))
        assert create(client).json()["content"][0]["text"] == "first"
        assert create(client).status_code == 429
        clock.advance(60)
        assert create(client).status_code == 529  # the fault, not used up by the 429
        clock.advance(60)
        assert create(client).json()["content"][0]["text"] == "third"


def test_input_tokens_count_uncached_input_and_cache_writes_not_cache_reads(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    system = [
        {
            "type": "text",
            "text": " ".join(f"w{i}" for i in range(3000)),
            "cache_control": {"type": "ephemeral"},
        }
    ]
    with AnthropicSimulator(clock=clock, rate_limits=limits(itpm=5_000)):
        writes = create(client, system=system)
        clock.advance(1)
        reads = [create(client, system=system) for _ in range(20)]
        clone = create(client, system=[{"type": "text", "text": system[0]["text"]}])
    usage = writes.json()["usage"]
    written = usage["cache_creation_input_tokens"] + usage["input_tokens"]
    assert usage["cache_creation_input_tokens"] > 2500
    assert written < 5_000
    # After the write, each read counts only its few uncached tokens: 20 fit.
    assert [r.status_code for r in reads] == [200] * 20
    assert (
        reads[0].json()["usage"]["cache_read_input_tokens"]
        == (usage["cache_creation_input_tokens"])
    )
    # The same prompt uncached counts in full: the bucket, drained by the write, refuses it.
    assert clone.status_code == 429
    assert "input tokens per minute" in clone.json()["error"]["message"]


def test_output_tokens_are_estimated_from_max_tokens_and_adjusted_at_the_end(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    async def two_at_once(sim: AnthropicSimulator) -> list[int]:
        async with anthropic.AsyncAnthropic(api_key="test", max_retries=0) as aclient:

            async def one(delay: float) -> int:
                await asyncio.sleep(delay)
                try:
                    await aclient.messages.create(model=SONNET, max_tokens=600, messages=HI)
                except anthropic.RateLimitError:
                    return 429
                return 200

            # The second starts while the first (2 s long) still holds its 600 estimate.
            return list(await asyncio.gather(one(0.0), one(1.0), one(2.5)))

    latency = LLMLatency(ttft=2.0)
    with AnthropicSimulator(clock=clock, latency=latency, rate_limits=limits(otpm=1000)) as sim:
        sim.respond_with(lambda _: Reply.text("Four tokens of output"))
        statuses = clock.run(two_at_once(sim))
    # At 2.5 s the first has ended and given back 600 - its few tokens.
    assert statuses == [200, 429, 200]


def test_the_output_estimate_is_held_until_a_stream_ends(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    latency = LLMLatency(ttft=0.5, per_token=1.0)
    with AnthropicSimulator(clock=clock, latency=latency, rate_limits=limits(otpm=1000)) as sim:
        sim.respond_with(lambda _: Reply.text("one two three"))
        with client.messages.stream(model=SONNET, max_tokens=1000, messages=HI) as stream:
            before = create(client, max_tokens=100)
            stream.until_done()
        after = create(client, max_tokens=100)
    assert before.status_code == 429
    assert after.status_code == 200


def test_a_stream_closed_early_gives_back_its_estimate_when_it_is_closed(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    """The API adjusts the OTPM estimate "at the end of the request to reflect the actual
    number of output tokens used": a stream the client closes after its first token ends
    there, having used a token or two, not the hundred it would have generated."""
    latency = LLMLatency(ttft=0.5, per_token=1.0)
    with AnthropicSimulator(clock=clock, latency=latency, rate_limits=limits(otpm=1000)) as sim:
        sim.respond_with(lambda _: Reply.text(" ".join(["word"] * 100)))
        with client.messages.stream(model=SONNET, max_tokens=1000, messages=HI) as stream:
            for event in stream:
                if event.type == "content_block_delta":
                    break
        closed_at = clock.now()
        after = create(client, max_tokens=900)
    assert closed_at < 5
    assert after.status_code == 200
    assert sim.requests[0].output_tokens < 5


def test_a_request_bigger_than_a_bucket_is_always_refused(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    with AnthropicSimulator(clock=clock, rate_limits=limits(otpm=8_000)):
        first = create(client, max_tokens=8_001)
        clock.advance(3600)
        again = create(client, max_tokens=8_001)
        fits = create(client, max_tokens=8_000)
    for refused in (first, again):
        assert refused.status_code == 429
        assert "8,000 output tokens per minute" in refused.json()["error"]["message"]
        # The bucket is full: the API's advice is to ask for fewer tokens; retry-after is
        # the longest a bucket takes to refill, never 0.
        assert refused.headers["retry-after"] == "1"
    assert fits.status_code == 200


def test_each_model_has_its_own_limits_and_an_alias_shares_its_models(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=1)):
        assert create(client, model=SONNET).status_code == 200
        assert create(client, model=HAIKU).status_code == 200
        assert create(client, model=HAIKU_ID).status_code == 429
        assert create(client, model=SONNET).status_code == 429


def test_per_model_overrides(clock: VirtualClock, client: anthropic.Anthropic) -> None:
    configured = RateLimits(
        requests_per_minute=1, models={HAIKU: RateLimits(requests_per_minute=3)}
    )
    assert configured.for_model(HAIKU_ID).requests_per_minute == 3
    with AnthropicSimulator(clock=clock, rate_limits=configured):
        haiku = [create(client, model=HAIKU_ID).status_code for _ in range(4)]
        sonnet = [create(client).status_code for _ in range(2)]
    assert haiku == [200, 200, 200, 429]
    assert sonnet == [200, 429]


def test_every_200_reports_what_is_left_tokens_to_the_nearest_thousand(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    latency = LLMLatency(ttft=1.0)  # the headers are sent before the reply ends
    with AnthropicSimulator(clock=clock, latency=latency, rate_limits=RateLimits.TIER_1) as sim:
        sim.respond_with(lambda _: Reply.text("Hello there"))
        first = create(client, max_tokens=2_600)
    headers = ratelimit_headers(first)
    # 8,000 - 2,600 estimated = 5,400 -> 5,000, full in 19.5 s; input: 30,000 - a few ->
    # 30,000; one request is back in 1.2 s; each reset to the next whole second.
    assert headers == {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:02Z",
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "30000",
        "anthropic-ratelimit-input-tokens-reset": "2026-01-01T00:00:01Z",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "5000",
        "anthropic-ratelimit-output-tokens-reset": "2026-01-01T00:00:20Z",
        "anthropic-ratelimit-tokens-limit": "38000",
        "anthropic-ratelimit-tokens-remaining": "35000",
        "anthropic-ratelimit-tokens-reset": "2026-01-01T00:00:01Z",
    }


def test_the_sdk_retries_land_once_the_bucket_has_refilled(clock: VirtualClock) -> None:
    """60 a minute: one more request each second. The SDK waits exactly ``retry-after``
    (``_calculate_retry_timeout``: "If the API asks us to wait a certain amount of time,
    just do what it says"), so the refused ones land at 1 s and 2 s."""

    async def burst() -> list[float]:
        async with anthropic.AsyncAnthropic(api_key="test") as aclient:  # 2 retries

            async def one() -> float:
                await aclient.messages.create(model=SONNET, max_tokens=64, messages=HI)
                return clock.now()

            return sorted(await asyncio.gather(*(one() for _ in range(62))))

    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=60)) as sim:
        done = clock.run(burst())
    assert done[:60] == [0.0] * 60
    assert done[60:] == [1.0, 2.0]
    assert [r.status for r in sim.requests].count(429) == 3  # 2 at 0 s, 1 at 1 s


def test_without_retries_the_sdk_raises_the_rate_limit_error(clock: VirtualClock) -> None:
    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=1)):
        client = anthropic.Anthropic(api_key="test", max_retries=0)
        client.messages.create(model=SONNET, max_tokens=64, messages=HI)
        with pytest.raises(anthropic.RateLimitError) as raised:
            client.messages.create(model=SONNET, max_tokens=64, messages=HI)
        client.close()
    assert raised.value.status_code == 429
    assert raised.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


@pytest.mark.slow
def test_thousands_of_concurrent_requests_admit_exactly_the_limit(clock: VirtualClock) -> None:
    async def crowd() -> list[int]:
        async with anthropic.AsyncAnthropic(api_key="test", max_retries=0) as aclient:

            async def one() -> int:
                try:
                    await aclient.messages.create(model=SONNET, max_tokens=1, messages=HI)
                except anthropic.RateLimitError:
                    return 429
                return 200

            return list(await asyncio.gather(*(one() for _ in range(1500))))

    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=1000), max_logged=10):
        statuses = clock.run(crowd())
    assert statuses.count(200) == 1000
    assert statuses.count(429) == 500


def test_a_clock_jump_refills_buckets_to_their_limit_and_no_further(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=2, otpm=1000)):
        create(client, max_tokens=1000)
        clock.advance(86_400)
        after = create(client, max_tokens=1000)
        third = create(client, max_tokens=1000)
    assert after.status_code == 200
    assert after.headers["anthropic-ratelimit-requests-remaining"] == "1"
    # After a day the bucket held 1,000, no more: the second, less the few tokens the
    # first used, cannot give 1,000 again.
    assert third.status_code == 429
    assert "1,000 output tokens" in third.json()["error"]["message"]


def test_reset_mid_run_fills_every_bucket(clock: VirtualClock, client: anthropic.Anthropic) -> None:
    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=1)) as sim:
        create(client)
        assert create(client).status_code == 429
        sim.reset()
        assert create(client).status_code == 200


def test_message_batches_do_not_draw_on_the_messages_limits(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    requests: Any = [
        {"custom_id": f"r{i}", "params": {"model": SONNET, "max_tokens": 64, "messages": HI}}
        for i in range(5)
    ]
    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=1)):
        batch = client.messages.batches.create(requests=requests)
        clock.advance(3600)
        results = list(client.messages.batches.results(batch.id))
        single = create(client)
    assert [r.result.type for r in results] == ["succeeded"] * 5
    assert single.status_code == 200


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, "50"])
def test_a_limit_that_is_not_a_positive_int_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"requests_per_minute must be an int >= 1 .*{bad!r}"):
        RateLimits(requests_per_minute=bad)  # type: ignore[arg-type]


def test_bad_overrides_and_bad_rate_limits_are_refused() -> None:
    with pytest.raises(TypeError, match="models\\['x'\\] must be a RateLimits"):
        RateLimits(models={"x": 5})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="names 'claude-haiku-4-5-20251001' twice"):
        RateLimits(models={HAIKU: RateLimits(), HAIKU_ID: RateLimits()})
    with pytest.raises(TypeError, match="rate_limits must be a RateLimits or None"):
        AnthropicSimulator(rate_limits={"requests_per_minute": 5})  # type: ignore[arg-type]


def test_rate_limits_compare_by_value_and_show_their_limits() -> None:
    assert RateLimits(requests_per_minute=5) == RateLimits(requests_per_minute=5)
    assert RateLimits(requests_per_minute=5) != RateLimits(requests_per_minute=6)
    assert repr(RateLimits(output_tokens_per_minute=8_000)) == (
        "RateLimits(output_tokens_per_minute=8000)"
    )


@pytest.mark.perfkit_sim(rate_limits=RateLimits(requests_per_minute=2))
def test_the_marker_sets_the_fixtures_rate_limits(
    anthropic_sim: AnthropicSimulator, client: anthropic.Anthropic
) -> None:
    assert [create(client).status_code for _ in range(3)] == [200, 200, 429]


def test_token_counting_draws_on_none_of_the_messages_limits(
    clock: VirtualClock, client: anthropic.Anthropic
) -> None:
    with AnthropicSimulator(clock=clock, rate_limits=limits(rpm=1, itpm=1_000)):
        counted = [client.messages.count_tokens(model=SONNET, messages=HI) for _ in range(3)]
        created = create(client)
    assert all(count.input_tokens > 0 for count in counted)
    assert created.status_code == 200
