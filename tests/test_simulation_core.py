"""The provider-neutral simulated-server core on its own: a minimal subclass, several
simulators at once, start/stop, failures in handlers, the patches and the SDK clock."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import anthropic._base_client as anthropic_base
import httpx
import openai
import openai._base_client as openai_base
import pytest

from perfkit import VirtualClock
from perfkit._errors import SimulatorError, UnmatchedRequestError
from perfkit.simulation import AnthropicSimulator
from perfkit.simulation.openai import OpenAISimulator
from perfkit.simulation.server import (
    PATCH_TARGETS,
    Fault,
    Reply,
    SimRequest,
    SimulatedServer,
)


class EchoServer(SimulatedServer):
    """A provider of one route, ``POST /echo``, with its own error body: nothing of
    Anthropic's or OpenAI's."""

    default_base_url = "https://echo.example"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_route("POST", "/echo", self._echo, name="echo")

    def error_body(
        self, status: int, error_type: str, message: str, logged: SimRequest | None
    ) -> Any:
        return {"problem": {"code": error_type, "detail": message, "status": status}}

    def _echo(self, logged: SimRequest, request: httpx.Request) -> httpx.Response:
        answer = self.next_answer(logged)
        if isinstance(answer, Fault):
            return self.fault_response(answer, logged, request)
        logged.status = 200
        text = "".join(block.text for block in answer.blocks if hasattr(block, "text"))
        content = json.dumps({"said": text, "got": logged.body}).encode()
        return self.json_response(200, content, logged, delay=0.25)


def test_a_minimal_subclass_serves_httpx_sync_and_async(clock: VirtualClock) -> None:
    with EchoServer(clock=clock) as server:
        server.enqueue(Reply.text("one"), Fault.rate_limit())
        with httpx.Client() as client:
            first = client.post("https://echo.example/echo", json={"n": 1})
            failed = client.post("https://echo.example/echo", json={"n": 2})

        async def main() -> httpx.Response:
            async with httpx.AsyncClient() as client:
                return await client.post("https://echo.example/echo", json={"n": 3})

        third = clock.run(main())
    assert first.json() == {"said": "one", "got": {"n": 1}}
    assert failed.status_code == 429
    assert failed.json()["problem"]["code"] == "rate_limit_error"
    assert third.json()["said"] == "Simulated answer."
    assert [r.body["n"] for r in server.requests] == [1, 2, 3]
    assert server.requests[0].duration == 0.25


def test_a_route_handler_that_raises_is_reported_at_stop(clock: VirtualClock) -> None:
    class Broken(EchoServer):
        def _echo(self, logged: SimRequest, request: httpx.Request) -> httpx.Response:
            raise ZeroDivisionError("bug in the handler")

    server = Broken(clock=clock).start()
    with httpx.Client() as client, pytest.raises(ZeroDivisionError):
        client.post("https://echo.example/echo", json={})
    with pytest.raises(ZeroDivisionError, match="bug in the handler"):
        server.stop()
    assert not server.active


def test_two_simulators_on_one_base_url_the_newest_answers_then_the_older(
    clock: VirtualClock,
) -> None:
    older, newer = EchoServer(clock=clock), EchoServer(clock=clock)
    older.respond_with(Reply.text("older"))
    newer.respond_with(Reply.text("newer"))
    with older, httpx.Client() as client:
        with newer:
            assert client.post("https://echo.example/echo", json={}).json()["said"] == "newer"
        assert client.post("https://echo.example/echo", json={}).json()["said"] == "older"
    assert (older.call_count, newer.call_count) == (1, 1)


def test_a_simulator_restarts_and_refuses_a_second_start(clock: VirtualClock) -> None:
    server = EchoServer(clock=clock)
    for _ in range(3):
        with server, httpx.Client() as client:
            assert client.post("https://echo.example/echo", json={}).status_code == 200
            with pytest.raises(SimulatorError, match="already active"):
                server.start()
    assert server.call_count == 3
    other = EchoServer(clock=clock, base_url="https://other.example").start()
    with httpx.Client() as client, pytest.raises(UnmatchedRequestError):
        client.post("https://echo.example/echo", json={})  # the stopped one's route is gone
    with pytest.raises(UnmatchedRequestError):
        other.stop()


def _patched_attributes() -> dict[tuple[type, str], Any]:
    return {(t.owner, t.attribute): t.owner.__dict__[t.attribute] for t in PATCH_TARGETS}


def _sdk_attributes() -> dict[tuple[str, str], Any]:
    return {
        (module.__name__, name): getattr(module, name)
        for module in (anthropic_base, openai_base)
        for name in ("time", "random", "asyncify")
    }


def test_every_patch_and_the_sdk_clock_are_undone_after_stop(clock: VirtualClock) -> None:
    pools, sdks = _patched_attributes(), _sdk_attributes()
    with AnthropicSimulator(clock=clock), OpenAISimulator(clock=clock):
        assert all(_patched_attributes()[key] is not pools[key] for key in pools)
        assert all(_sdk_attributes()[key] is not sdks[key] for key in sdks)
    assert _patched_attributes() == pools
    assert _sdk_attributes() == sdks


def test_simulators_stopped_out_of_order_leave_the_sdks_unpatched() -> None:
    """Two simulators started A, B and stopped A, B (not nested): the SDK's sleep must
    follow the simulator still active, and be the real one once both stopped."""
    sdks = _sdk_attributes()
    first_clock, second_clock = VirtualClock(), VirtualClock()
    first = AnthropicSimulator(clock=first_clock).start()
    second = OpenAISimulator(clock=second_clock).start()
    second_anthropic = AnthropicSimulator(
        clock=second_clock, base_url="https://second.example"
    ).start()
    first.stop()
    anthropic_base.time.sleep(5.0)  # the SDK's retry sleep: on the active simulator's clock
    assert second_clock.now() == 5.0
    assert first_clock.now() == 0.0
    second_anthropic.stop()
    second.stop()
    assert _sdk_attributes() == sdks


def test_the_sdks_sleep_on_the_newest_simulators_clock_while_both_are_active() -> None:
    sdks = _sdk_attributes()
    old_clock, new_clock = VirtualClock(), VirtualClock()
    with AnthropicSimulator(clock=old_clock):
        with AnthropicSimulator(clock=new_clock, base_url="https://new.example"):
            anthropic_base.time.sleep(2.0)
        anthropic_base.time.sleep(1.0)
    assert (old_clock.now(), new_clock.now()) == (1.0, 2.0)
    assert _sdk_attributes() == sdks


@pytest.mark.slow
def test_32_threads_share_one_script_queue_exactly_once(clock: VirtualClock) -> None:
    from perfkit._clock import RealClock

    replies = [Reply.text(f"r{index}") for index in range(96)]
    with EchoServer(clock=RealClock()) as server, httpx.Client() as client:
        server.enqueue(*replies)

        def call(index: int) -> str:
            response = client.post("https://echo.example/echo", json={"n": index})
            return str(response.json()["said"])

        with ThreadPoolExecutor(32) as pool:
            said = list(pool.map(call, range(96)))
    assert sorted(said) == sorted(f"r{index}" for index in range(96))
    assert server.call_count == 96
    assert sorted(r.index for r in server.requests) == list(range(96))


def test_max_logged_bounds_the_log_and_the_router_calls(clock: VirtualClock) -> None:
    with EchoServer(clock=clock, max_logged=3) as server, httpx.Client() as client:
        for index in range(10):
            client.post("https://echo.example/echo", json={"n": index})
    assert [r.body["n"] for r in server.requests] == [7, 8, 9]
    assert server.call_count == 10
    assert len(server.router.calls) == 3
    assert len(server.router.routes["echo"].calls) == 3


def test_stop_while_a_stream_is_in_flight_lets_the_client_finish(clock: VirtualClock) -> None:
    sim = AnthropicSimulator(clock=clock, latency=0.0).start()
    sim.enqueue(Reply.of_tokens(20))
    client = anthropic.Anthropic(api_key="k", max_retries=0)
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        next(iter(stream))
        sim.stop()
        message = stream.get_final_message()
    client.close()
    assert message.usage.output_tokens == 20
    assert sim.requests[0].completed


def test_openai_async_client_runs_on_the_virtual_clock(clock: VirtualClock) -> None:
    async def main() -> str:
        async with openai.AsyncOpenAI(api_key="k", max_retries=0) as client:
            reply = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
            )
            return str(reply.choices[0].message.content)

    with OpenAISimulator(clock=clock, latency=1.5):
        assert clock.run(main())
    assert clock.now() >= 1.5


def test_a_route_may_return_a_plain_httpx_response(clock: VirtualClock) -> None:
    """A subclass's route that builds its response itself (no modeled delivery) is
    answered at once, its connection kept for the next request."""

    class Plain(SimulatedServer):
        default_base_url = "https://plain.example"

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.add_route("GET", "/health", self._health, name="health")

        def _health(self, logged: SimRequest, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"ok": True})

    with Plain(clock=clock, handshake=0.5) as server, httpx.Client() as client:
        assert client.get("https://plain.example/health").json() == {"ok": True}
        assert client.get("https://plain.example/health").json() == {"ok": True}
    assert clock.now() == 0.5  # one handshake, then the idle connection is reused
    assert server.connections_opened == 1
    assert [(r.status, r.completed, r.completed_at) for r in server.requests] == [
        (200, True, 0.5),
        (200, True, 0.5),
    ]


def test_two_simulators_on_one_loopback_port_with_different_prefixes(clock: VirtualClock) -> None:
    """A local proxy serving several APIs on one port (``/anthropic`` and ``/v1``): each
    simulator answers its own prefix, whichever started last; a path neither routes is
    still an UnmatchedRequestError, never a request to whatever listens on the port."""
    first = EchoServer(clock=clock, base_url="http://127.0.0.1:8123/a")
    second = EchoServer(clock=clock, base_url="http://127.0.0.1:8123/b")
    first.respond_with(Reply.text("A"))
    second.respond_with(Reply.text("B"))
    with first, second, httpx.Client() as client:
        assert client.post("http://127.0.0.1:8123/b/echo", json={}).json()["said"] == "B"
        assert client.post("http://127.0.0.1:8123/a/echo", json={}).json()["said"] == "A"
        with pytest.raises(UnmatchedRequestError, match="/c/echo"):
            client.post("http://127.0.0.1:8123/c/echo", json={})
        failures = first.pop_failures() + second.pop_failures()
    assert len(failures) == 1
    assert type(failures[0]) is UnmatchedRequestError


def test_a_route_added_after_start_on_the_simulators_loopback_host_is_served(
    clock: VirtualClock,
) -> None:
    """Owning a loopback host and port must not shadow routes the user adds later (a
    health check of the local server the simulator stands in for, say)."""
    with EchoServer(clock=clock, base_url="http://127.0.0.1:8124/v1") as sim:
        sim.router.get("http://127.0.0.1:8124/health").respond(json={"ok": True})
        with httpx.Client() as client:
            assert client.get("http://127.0.0.1:8124/health").json() == {"ok": True}
            with pytest.raises(UnmatchedRequestError, match=r"EchoServer owns 127\.0\.0\.1:8124"):
                client.get("http://127.0.0.1:8124/other")
        [failure] = sim.pop_failures()
        assert type(failure) is UnmatchedRequestError
