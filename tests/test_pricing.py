"""Prices per model, the process-wide meter, and what every simulator charges to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from perfkit import VirtualClock
from perfkit._pricing import (
    FEMTO_PER_USD,
    METER,
    Usage,
    load_prices,
    price_table,
    usd,
    use_prices,
)
from perfkit.simulation import AnthropicSimulator, OpenAISimulator, Reply
from perfkit.simulation.anthropic._models import MODELS

SHIPPED = Path(__file__).resolve().parent.parent / "perfkit" / "data" / "prices.json"


@pytest.fixture(autouse=True)
def shipped_prices() -> Iterator[None]:
    use_prices(None)
    yield
    use_prices(None)


def write(tmp_path: Path, data: Any, name: str = "prices.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# -- the shipped table ------------------------------------------------------------------


def test_every_model_of_the_simulators_catalog_has_a_row() -> None:
    table = price_table()
    names = [name for model in MODELS for name in (model.id, *model.aliases)]
    assert [name for name in names if not table.knows(name)] == []


def test_the_shipped_table_names_its_date_and_source_and_why_a_row_is_assumed() -> None:
    data = json.loads(SHIPPED.read_text())
    assert data["date"]
    assert "platform.claude.com/docs/en/about-claude/pricing" in data["source"]
    assumed = {name for name, row in data["models"].items() if "assumed" in row}
    assert {"claude-fable-5-2", "claude-mythos-5-2", "claude-mythos-preview"} <= assumed
    assert "assumed" in data["fallback"]


def test_published_prices_and_the_cache_multipliers_hold_for_the_claude_rows() -> None:
    """The pricing page's multipliers: a 5-minute write 1.25x input, 1 hour 2x, a read
    0.1x; the rows that differ say so (Fable 5.1's and Opus 5.5's cheaper reads)."""
    table = price_table()
    opus = table.price("claude-opus-4-5-20251101").rates.per_mtok()
    assert opus == {
        "input": 5.0,
        "cache_write_5m": 6.25,
        "cache_write_1h": 10.0,
        "cache_read": 0.5,
        "output": 25.0,
    }
    for row in table.models.values():
        rates = row.rates
        if row.model.startswith("claude-"):
            # Haiku 3's 5-minute write is published as $0.30, not 1.25 x $0.25.
            if row.model != "claude-3-haiku":
                assert rates.cache_write_5m * 4 == rates.input * 5, row.model
            assert rates.cache_write_1h == rates.input * 2, row.model
    assert table.batch_discount == Decimal("0.5")


def test_money_is_exact_and_shown_rounded_to_six_decimals() -> None:
    table = price_table()
    usage = Usage(input_tokens=3, cache_read_tokens=7, output_tokens=1)
    # Haiku 3: $0.25, $0.03 and $1.25 per MTok, exactly, with no float drift.
    cost = table.cost("claude-3-haiku-20240307", usage)
    assert cost == Decimal("0.00000075") + Decimal("0.00000021") + Decimal("0.00000125")
    assert usd(cost) == 0.000002
    many = sum((table.femto("claude-3-haiku", usage) for _ in range(1_000_000)), 0)
    assert Decimal(many) / FEMTO_PER_USD == cost * 1_000_000


def test_the_batch_discount_halves_every_kind_of_token() -> None:
    table = price_table()
    usage = Usage(1000, 1000, 1000, 1000, 1000)
    assert table.femto("claude-sonnet-5", usage, batch=True) * 2 == table.femto(
        "claude-sonnet-5", usage
    )


def test_long_context_rates_apply_above_the_threshold_counting_the_whole_prompt() -> None:
    table = price_table()
    short = Usage(input_tokens=100_000, cache_read_tokens=100_000, output_tokens=1_000)
    long = Usage(input_tokens=100_001, cache_read_tokens=100_000, output_tokens=1_000)
    assert usd(table.cost("claude-sonnet-4-5", short)) == 0.3 + 0.03 + 0.015
    assert usd(table.cost("claude-sonnet-4-5", long)) == round(
        100_001 * 6e-6 + 100_000 * 0.6e-6 + 1_000 * 22.5e-6, 6
    )
    assert table.price("claude-sonnet-4-6").long_context is None  # no surcharge


def test_a_model_no_row_knows_costs_the_fallback_row_never_nothing() -> None:
    table = price_table()
    odd = "claude-<script>\n-🙂-" + "x" * 300
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    assert not table.knows(odd)
    assert table.cost(odd, usage) == table.cost("claude-sonnet-5-5", usage) > 0
    before = METER.unpriced.get(odd, 0)
    METER.charge(odd, usage)
    assert METER.unpriced[odd] == before + 1


# -- price files ------------------------------------------------------------------------


def test_a_price_file_overrides_and_adds_rows_over_the_shipped_table(tmp_path: Path) -> None:
    rows = {
        "claude-sonnet-5": {"input": 1, "output": 2},
        "m": {"input": 0.5, "output": 1, "cache_read": 0},
    }
    path = write(tmp_path, {"models": rows})
    table = load_prices(path)
    assert table.price("claude-sonnet-5").rates.per_mtok() == {
        "input": 1.0,
        "cache_write_5m": 1.25,
        "cache_write_1h": 2.0,
        "cache_read": 0.1,
        "output": 2.0,
    }
    assert table.price("m").rates.cache_read == 0
    assert table.knows("claude-opus-4-5")  # the shipped rows stay
    assert table.path == str(path)


def test_use_prices_changes_what_the_simulators_charge(tmp_path: Path) -> None:
    path = write(tmp_path, {"models": {"claude-sonnet-5": {"input": 1000, "output": 1000}}})
    use_prices(path)
    clock = VirtualClock()
    with AnthropicSimulator(clock=clock) as sim:
        sim.enqueue(Reply.text("a b c", input_tokens=10))
        with anthropic.Anthropic(api_key="k") as client:
            message = client.messages.create(
                model="claude-sonnet-5", max_tokens=9, messages=[{"role": "user", "content": "q"}]
            )
    tokens = message.usage.input_tokens + message.usage.output_tokens
    assert sim.usd == usd(Decimal(tokens) * 1000 / 1_000_000)


BAD_FILES = [
    ("not json", "not valid JSON"),
    ("[]", "must be a JSON object, got list"),
    ('{"models": {"m": {"input": NaN, "output": 1}}}', "NaN is not a price"),
    ('{"models": {"m": {"input": Infinity, "output": 1}}}', "Infinity is not a price"),
    ('{"models": {"m": {"input": -1, "output": 1}}}', "models.m.input must be between 0"),
    ('{"models": {"m": {"input": "3", "output": 1}}}', "models.m.input must be a number"),
    ('{"models": {"m": {"input": true, "output": 1}}}', "models.m.input must be a number"),
    ('{"models": {"m": {"input": 1e300, "output": 1}}}', "must be between 0 and 1,000,000"),
    ('{"models": {"m": {"output": 1}}}', 'models.m: "input" is missing'),
    ('{"models": {"m": {"input": 1, "output": 1, "inptu": 2}}}', "unknown key 'inptu'"),
    ('{"modles": {}}', "unknown key 'modles'"),
    ("{}", '"models" is missing'),
    ('{"models": []}', '"models" must be an object'),
    ('{"models": {"m": 3}}', "models.m must be an object of prices, got int"),
    ('{"models": {"": {"input": 1, "output": 1}}}', "model name '' must be"),
    ('{"models": {"m": {"input": 0.0000001, "output": 1}}}', "at most 6 decimals"),
    ('{"models": {}, "batch_discount": 1}', "batch_discount must be a fraction"),
    ('{"models": {}, "batch_discount": "half"}', "batch_discount must be a fraction"),
    ('{"models": {}, "perfkit_prices": 2}', "only version 1 is known"),
    (
        '{"models": {"m": {"input": 1, "output": 1, "long_context": {"input": 2, "output": 2}}}}',
        "above_tokens must be an int >= 1",
    ),
    ("[" * 100_000, "not valid JSON"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_FILES)
def test_a_bad_price_file_is_an_error_naming_the_file_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="price file") as raised:
        load_prices(path)
    message = str(raised.value)
    assert str(path) in message
    assert problem in message
    assert "\n" not in message


def test_a_missing_price_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"price file .*nope\.json: cannot be read"):
        load_prices(tmp_path / "nope.json")


# -- the meter and the simulators -----------------------------------------------------


def ask(client: anthropic.Anthropic, **extra: Any) -> Any:
    return client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "What is the answer?"}],
        **extra,
    )


def test_a_reply_charges_its_usage_to_the_simulator_and_the_process_meter() -> None:
    clock = VirtualClock()
    before = METER.femto
    with AnthropicSimulator(clock=clock) as sim, anthropic.Anthropic(api_key="k") as client:
        message = ask(client)
    usage = Usage(
        input_tokens=message.usage.input_tokens, output_tokens=message.usage.output_tokens
    )
    assert sim.usage == usage
    expected = price_table().femto("claude-haiku-4-5", usage)
    assert METER.femto - before == expected > 0
    assert sim.usd == usd(expected)
    sim.reset()
    assert (sim.usage, sim.usd) == (Usage(), 0.0)


def test_cache_writes_and_reads_are_charged_at_their_own_rates() -> None:
    clock = VirtualClock()
    system = [{"type": "text", "text": "rule " * 5000, "cache_control": {"type": "ephemeral"}}]
    with AnthropicSimulator(clock=clock) as sim, anthropic.Anthropic(api_key="k") as client:
        first = ask(client, system=system)
        clock.advance(1)
        second = ask(client, system=system)
    written = first.usage.cache_creation_input_tokens
    read = second.usage.cache_read_input_tokens
    assert written == read > 4096
    assert sim.usage.cache_write_5m_tokens == written
    assert sim.usage.cache_read_tokens == read
    rates = price_table().price("claude-haiku-4-5").rates
    assert sim.usd == usd(rates.femto(sim.usage))
    assert rates.cache_read * 10 == rates.input


def test_a_stream_the_client_stops_early_costs_only_what_was_sent() -> None:
    clock = VirtualClock()
    words = " ".join(f"w{i}" for i in range(200))
    with AnthropicSimulator(clock=clock) as sim, anthropic.Anthropic(api_key="k") as client:
        sim.enqueue(Reply.text(words), Reply.text(words))
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=500, messages=[{"role": "user", "content": "q"}]
        ) as stream:
            for _ in stream.text_stream:
                break
        stopped = sim.usage
        sim.reset()
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=500, messages=[{"role": "user", "content": "q"}]
        ) as stream:
            stream.get_final_message()
        whole = sim.usage
    assert stopped.input_tokens == whole.input_tokens > 0
    assert 0 < stopped.output_tokens < whole.output_tokens


def test_message_batch_requests_are_charged_at_the_batch_discount_and_refunded_on_cancel() -> None:
    clock = VirtualClock()
    request = {
        "model": "claude-opus-4-8",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "q"}],
    }
    with (
        AnthropicSimulator(clock=clock, latency=1.0) as sim,
        anthropic.Anthropic(api_key="k") as client,
    ):
        sim.batches.concurrency = 1
        single = client.messages.create(**request)  # type: ignore[call-overload]
        full = sim.usd
        sim.reset()
        sim.batches.concurrency = 1
        batch = client.messages.batches.create(
            requests=[{"custom_id": f"r{i}", "params": request} for i in range(4)]  # type: ignore[misc]
        )
        assert sim.usd == usd(price_table().femto("claude-opus-4-8", sim.usage, batch=True))
        assert sim.usd == pytest.approx(4 * full / 2, abs=1e-6)
        clock.advance(0.5)
        client.messages.batches.cancel(batch.id)  # the first is in progress, 3 are refunded
    assert sim.usd == pytest.approx(full / 2, abs=1e-6)
    assert sim.usage.output_tokens == single.usage.output_tokens


def test_the_openai_simulator_charges_its_usage_at_the_openai_rows() -> None:
    clock = VirtualClock()
    with OpenAISimulator(clock=clock) as sim, openai.OpenAI(api_key="k") as client:
        completion = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
        )
    assert completion.usage is not None
    usage = Usage(
        input_tokens=completion.usage.prompt_tokens,
        output_tokens=completion.usage.completion_tokens,
    )
    assert sim.usage == usage
    assert sim.usd == usd(
        Decimal(usage.input_tokens) * Decimal("2.5") / 10**6
        + Decimal(usage.output_tokens) * 10 / 10**6
    )


def test_the_meter_is_exact_under_threads() -> None:
    meter_before = METER.femto
    usage = Usage(input_tokens=3, output_tokens=1)
    each = price_table().femto("claude-3-haiku", usage)

    def spend() -> None:
        for _ in range(2_000):
            METER.charge("claude-3-haiku", usage)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert METER.femto - meter_before == 16_000 * each


def test_sync_clients_in_threads_charge_every_request_once() -> None:
    clock = VirtualClock()
    with AnthropicSimulator(clock=clock) as sim:

        def work() -> None:
            with anthropic.Anthropic(api_key="k") as client:
                for _ in range(10):
                    ask(client)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sim.call_count == 40
    total = sim.usage
    one = Usage(input_tokens=total.input_tokens // 40, output_tokens=total.output_tokens // 40)
    assert total == Usage(input_tokens=40 * one.input_tokens, output_tokens=40 * one.output_tokens)
    assert sim.usd == usd(40 * price_table().femto("claude-haiku-4-5", one))


def test_charging_costs_little_beside_the_request_it_is_on_the_path_of() -> None:
    """The meter is on every simulated request's path: its cost, per request, is a small
    share of the rest of the request (measured here as a ratio, never a fixed time)."""
    clock = VirtualClock()
    rounds = 300
    with AnthropicSimulator(clock=clock) as sim, anthropic.Anthropic(api_key="k") as client:
        ask(client)
        start = time.perf_counter()
        for _ in range(rounds):
            ask(client)
        per_request = (time.perf_counter() - start) / rounds
        usage = sim.usage
    start = time.perf_counter()
    for _ in range(rounds * 10):
        sim.charge("claude-haiku-4-5", usage)
    per_charge = (time.perf_counter() - start) / (rounds * 10)
    assert per_charge < per_request / 20, (per_charge, per_request)


# -- agents ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["naive", "optimized", "optimized-cached"])
def test_an_agents_reply_reports_every_turns_tokens_and_their_cost(kind: str) -> None:
    from perfkit.agents import NaiveAgent, OptimizedAgent, ToolRegistry
    from perfkit.cache import MultiLayerCache

    clock = VirtualClock()
    tools = ToolRegistry()

    @tools.tool()
    def lookup() -> str:
        """Looks something up."""
        return "found"

    system = "You are a careful support agent. " * 400  # cacheable (over 1,024 tokens)
    options: dict[str, Any] = {"tools": tools, "client_options": {"api_key": "k"}}
    agent: NaiveAgent | OptimizedAgent
    if kind == "naive":
        agent = NaiveAgent(system=system, **options)
    else:
        cache = MultiLayerCache(clock=clock)
        agent = OptimizedAgent(
            system=system, cache=cache, prompt_caching=kind.endswith("cached"), **options
        )

    async def scenario() -> Any:
        try:
            return [await agent.chat("ann", question) for question in ("First?", "Second?")]
        finally:
            await agent.aclose()

    with AnthropicSimulator(clock=clock) as sim:
        sim.enqueue(Reply.tool_use("lookup", {}), Reply.text("Done."), Reply.text("Again."))
        replies = clock.run(scenario())
    assert sum(reply.usd for reply in replies) == pytest.approx(sim.usd, abs=2e-6)
    assert all(reply.usd > 0 for reply in replies)
    total = sim.usage
    assert sum(r.input_tokens for r in replies) == total.input_tokens
    assert sum(r.output_tokens for r in replies) == total.output_tokens
    written = sum(r.cache_creation_input_tokens for r in replies)
    assert written == total.cache_write_5m_tokens + total.cache_write_1h_tokens
    assert sum(r.cache_read_input_tokens for r in replies) == total.cache_read_tokens
    assert (total.cache_read_tokens > 0) == (kind == "optimized-cached")


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{", "not valid JSON"), ('{"models": {"m": {"input": -3, "output": 1}}}', "models.m.input")],
)
def test_perfkit_serve_refuses_a_bad_price_file_with_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, problem: str
) -> None:
    from perfkit import cli

    path = write(tmp_path, content)
    status = cli.main(["serve", "--prices", str(path), "--port", "0"])
    err = capsys.readouterr().err
    assert status == cli.EXIT_USAGE
    assert err.count("\n") == 1
    assert err.startswith(f"perfkit serve: error: price file {path}: ")
    assert problem in err
    assert price_table() is load_prices(None)  # nothing half-applied
