"""No credential in any output: a failing test's report (-vv), JUnit XML, logs and reprs
show ``***`` where an API key or token was, while code can still read it."""

from __future__ import annotations

import anthropic  # noqa: F401  (imported once here, so the in-process run does not re-import it)
import httpx
import pytest

from perfkit._secrets import Secret, hide_secrets, is_secret_name, shown_in_assertion
from perfkit._settings import Settings
from perfkit.agents import NaiveAgent
from perfkit.simulation import AnthropicSimulator, SimRequest

API_KEY = "sk-ant-api03-FAKE-4f9c2e7d1b"
AUTH_TOKEN = "tok-FAKE-8a1d3c5e7f"

FAILING_TESTS = """
import os

import anthropic
import pytest

from perfkit.agents import NaiveAgent
from perfkit.simulation import Fault


def ask(client):
    client.messages.create(
        model="claude-sonnet-5", max_tokens=16, messages=[{"role": "user", "content": "Hi"}]
    )


def test_the_logged_request(anthropic_sim):
    with anthropic.Anthropic() as client:
        ask(client)
    assert anthropic_sim.last_request.status == 500


def test_its_headers(anthropic_sim):
    with anthropic.Anthropic() as client:
        ask(client)
    assert anthropic_sim.last_request.headers == {"accept": "text/plain"}


def test_the_whole_log(anthropic_sim):
    with anthropic.Anthropic() as client:
        ask(client)
        ask(client)
    assert anthropic_sim.requests == []


def test_an_agents_options():
    agent = NaiveAgent(client_options={"api_key": os.environ["ANTHROPIC_API_KEY"]})
    assert agent.client_options == {}


def test_a_credential_compared_as_text(anthropic_sim):
    with anthropic.Anthropic() as client:
        ask(client)
    assert anthropic_sim.last_request.headers["authorization"] == "Bearer another"


def test_the_routers_record(anthropic_sim):
    with anthropic.Anthropic() as client:
        ask(client)
    assert anthropic_sim.router.calls.last.request.headers == {"accept": "text/plain"}


def test_the_sdks_request(anthropic_sim):
    anthropic_sim.respond_with(Fault.server_error())
    with anthropic.Anthropic(max_retries=0) as client:
        with pytest.raises(anthropic.InternalServerError) as raised:
            ask(client)
    assert raised.value.request.headers == {"accept": "text/plain"}
"""


def test_a_failing_run_shows_no_key_in_its_output_or_junit_xml(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK reads both from the environment, as in a real project: no test source
    # line holds them, so whatever shows them is a repr, a log or a report.
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", AUTH_TOKEN)
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )
    pytester.makepyfile(test_inner=FAILING_TESTS)
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        "-vv",
        "--log-level=DEBUG",
        f"--junitxml={xml}",
    )
    result.assert_outcomes(failed=7)
    shown = "\n".join([*result.outlines, *result.errlines, xml.read_text()])
    assert shown.count(API_KEY) == 0
    assert shown.count(AUTH_TOKEN) == 0
    assert "'authorization': '***'" in shown  # the reprs were printed, the key hidden
    assert "'api_key': '***'" in shown


def test_a_logged_request_reads_its_real_headers_and_shows_them_hidden() -> None:
    request = SimRequest(
        0,
        "POST",
        "https://alice:pa55word@llm.example/v1/messages",
        {"X-Api-Key": API_KEY, "Authorization": f"Bearer {AUTH_TOKEN}", "accept": "*/*"},
        {},
        0.0,
    )
    assert request.headers["X-Api-Key"] == API_KEY
    assert request.headers == {
        "X-Api-Key": API_KEY,
        "Authorization": f"Bearer {AUTH_TOKEN}",
        "accept": "*/*",
    }
    shown_as = (repr(request), str(request), repr(request.headers), f"{request.headers}")
    for shown in shown_as:
        assert API_KEY not in shown
        assert AUTH_TOKEN not in shown
        assert "pa55word" not in shown
    assert "'accept': '*/*'" in repr(request)
    assert "alice:***@llm.example" in repr(request)


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "Proxy-Authorization",
        "x-api-key",
        "anthropic-api-key",
        "Cookie",
        "set-cookie",
        "x-auth-token",
        "api_key",
        "auth_token",
        "client_secret",
    ],
)
def test_credential_names_are_recognised_in_any_case(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["accept", "content-type", "anthropic-version", "x-stainless-retry-count", "host"]
)
def test_other_names_are_shown(name: str) -> None:
    assert not is_secret_name(name)


def test_credentials_nested_in_options_are_hidden_too() -> None:
    options = hide_secrets({"default_headers": {"x-api-key": API_KEY}, "max_retries": 2})
    assert options == {"default_headers": {"x-api-key": API_KEY}, "max_retries": 2}
    assert repr(options) == "{'default_headers': {'x-api-key': '***'}, 'max_retries': 2}"


def test_a_secret_is_its_text_everywhere_but_in_its_repr() -> None:
    key = Secret(API_KEY)
    assert (key, f"{key}", str(key), key.encode()) == (API_KEY, API_KEY, API_KEY, API_KEY.encode())
    assert repr(key) == "'***'"


def test_an_agents_options_are_readable_and_shown_hidden() -> None:
    agent = NaiveAgent(client_options={"api_key": API_KEY, "max_retries": 0})
    assert agent.client_options == {"api_key": API_KEY, "max_retries": 0}
    assert repr(agent.client_options) == "{'api_key': '***', 'max_retries': 0}"


def test_a_simulators_repr_hides_a_password_in_its_base_url() -> None:
    simulator = AnthropicSimulator(base_url="https://alice:pa55word@llm.example")
    assert "pa55word" not in repr(simulator)
    assert "alice:***@llm.example" in repr(simulator)


def test_a_redis_url_with_a_password_is_never_shown(pytester: pytest.Pytester) -> None:
    assert "pa55word" not in repr(Settings(redis_url="redis://:pa55word@cache.example:6379"))
    pytester.makepyfile(test_inner="def test_nothing():\n    pass\n")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--perfkit-redis-url", "http://:pa55word@cache.example"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    shown = "\n".join([*result.outlines, *result.errlines])
    assert "must be a redis://" in shown
    assert "pa55word" not in shown


def test_an_assertion_shows_credentials_hidden_and_everything_else_as_it_is() -> None:
    headers = httpx.Headers({"Authorization": f"Bearer {AUTH_TOKEN}", "accept": "*/*"})
    assert repr(shown_in_assertion(headers)) == "{'authorization': '***', 'accept': '*/*'}"
    assert (
        repr(shown_in_assertion({"opts": {"api_key": API_KEY}})) == "{'opts': {'api_key': '***'}}"
    )
    assert shown_in_assertion(Secret(API_KEY)) == "***"
    for plain in ({"accept": "*/*"}, hide_secrets({"x-api-key": API_KEY}), API_KEY, [API_KEY], 3):
        assert shown_in_assertion(plain) is plain


def test_the_routers_record_of_a_request_shows_its_credentials_hidden() -> None:
    # httpx's Headers hide only authorization: respx's call lists showed x-api-key.
    with AnthropicSimulator() as simulator, httpx.Client() as client:
        client.post(
            "https://api.anthropic.com/v1/messages",
            headers={"x-api-key": API_KEY, "cookie": f"session={AUTH_TOKEN}"},
            json={"model": "m", "max_tokens": 8, "messages": []},
        )
    headers = simulator.router.calls.last.request.headers
    assert (headers["x-api-key"], headers.get("cookie")) == (API_KEY, f"session={AUTH_TOKEN}")
    for shown in (repr(headers), str(headers), repr(dict(headers)), repr(simulator.router.calls)):
        assert API_KEY not in shown
        assert AUTH_TOKEN not in shown
    assert "'x-api-key': '***'" in repr(headers)
    assert "'host': 'api.anthropic.com'" in repr(headers)


def test_a_url_with_credentials_in_an_agents_options_is_shown_hidden() -> None:
    url = "https://alice:pa55word@llm.example"
    agent = NaiveAgent(client_options={"base_url": url, "default_headers": {"via": url}})
    assert agent.client_options["base_url"] == url
    assert "pa55word" not in repr(agent.client_options)
    assert "'base_url': 'https://alice:***@llm.example'" in repr(agent.client_options)
    assert shown_in_assertion(agent.client_options["base_url"]) == "https://alice:***@llm.example"
    assert "pa55word" not in repr(shown_in_assertion({"base_url": url}))


def test_an_agents_base_url_credentials_are_sent_as_basic_auth_and_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The SDK (DEBUG) and httpx2 (INFO) log every request's URL, userinfo included.
    import asyncio
    import base64

    from perfkit import VirtualClock

    clock = VirtualClock()
    agent = NaiveAgent(
        client_options={"base_url": "https://alice:pa55word@llm.example", "api_key": API_KEY}
    )
    # A gateway that takes Basic auth: the real API would refuse it (401), so not strict.
    simulator = AnthropicSimulator(base_url="https://llm.example", clock=clock, strict=False)
    with simulator, caplog.at_level("DEBUG"):
        clock.run(agent.chat("ann", "Hi"))
    basic = base64.b64encode(b"alice:pa55word").decode()
    assert simulator.last_request.headers["authorization"] == f"Basic {basic}"
    assert "llm.example/v1/messages" in caplog.text
    assert "pa55word" not in caplog.text
    assert basic not in caplog.text
    asyncio.run(agent.aclose())
