"""The load generator: percentiles, workload models, coordinated omission, error causes,
SLO checks, the load_test fixture and ``perfkit load``. In-process apps run in virtual
time (exact figures); the acceptance checks run against real servers on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import perfkit.load
from perfkit import VirtualClock, cli
from perfkit.load import (
    PRODUCTION_TARGETS,
    SLO,
    ClosedModel,
    LatencyHistogram,
    LoadResult,
    OpenModel,
    Request,
    SLOViolation,
    run,
    run_load,
)
from perfkit.load._http import EventParser
from perfkit.load._runner import _Recorder, _warnings
from perfkit.load._service import hit_rate, parse_cache_counts
from tests.loopback_asgi import running_uvicorn

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "load-testing.md"

# Histograms: lossless percentiles (3 significant digits, nearest rank)


def test_percentiles_match_hand_computed_nearest_ranks() -> None:
    histogram = LatencyHistogram()
    for ms in range(1, 1001):  # 1 ms .. 1,000 ms
        histogram.record(ms / 1000)
    # Nearest rank: p50 of 1,000 values is the 500th, p99 the 990th, p99.9 the 999th.
    for q, expected in ((50, 0.500), (90, 0.900), (95, 0.950), (99, 0.990), (99.9, 0.999)):
        assert histogram.percentile(q) == pytest.approx(expected, rel=1e-3)
    assert histogram.count == 1000
    assert histogram.mean == pytest.approx(0.5005, rel=1e-3)
    assert histogram.max == pytest.approx(1.0, rel=1e-3)


def test_an_empty_histogram_and_bad_values() -> None:
    histogram = LatencyHistogram()
    assert histogram.percentile(99) == histogram.mean == histogram.max == 0.0
    with pytest.raises(ValueError, match="finite number >= 0, got -1"):
        histogram.record(-1)
    with pytest.raises(ValueError, match="q must be between 0 and 100, got 101"):
        histogram.percentile(101)


# Workload models


def test_constant_arrivals_are_evenly_spaced_and_poisson_ones_seeded() -> None:
    assert list(OpenModel(rate=4).send_times(1.0)) == [0.0, 0.25, 0.5, 0.75]
    poisson = list(OpenModel(rate=100, arrivals="poisson", seed=3).send_times(10.0))
    assert poisson == list(OpenModel(rate=100, arrivals="poisson", seed=3).send_times(10.0))
    assert 900 < len(poisson) < 1100
    assert poisson != list(OpenModel(rate=100, arrivals="poisson", seed=4).send_times(10.0))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: OpenModel(rate=0), "rate must be a number of requests per second > 0, got 0"),
        (lambda: OpenModel(rate=1, arrivals="bursty"), "arrivals must be one of constant"),  # type: ignore[arg-type]
        (lambda: ClosedModel(users=0), "users must be an int >= 1, got 0"),
        (lambda: ClosedModel(users=1, think_time=-1), "think_time must be a number of seconds"),
        (lambda: Request("FETCH"), "method must be one of GET, POST"),
        (lambda: Request(path="chat"), "path must be ASCII and start with '/', with no spaces"),
    ],
)
def test_bad_models_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"duration": 0}, "duration must be a number of seconds > 0, got 0"),
        ({"duration": 1, "warmup": 1}, "warmup must be shorter than duration"),
        ({"duration": 1, "request_timeout": -1}, "request_timeout must be a number of seconds"),
        ({"duration": 1, "max_in_flight": 0}, "max_in_flight must be an int >= 1, got 0"),
    ],
)
def test_bad_run_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VirtualClock().run(run_load(make_app(), OpenModel(rate=1), **options))


def test_a_target_must_be_a_url_or_an_app() -> None:
    with pytest.raises(ValueError, match="target must be an http:// or https:// URL with a host"):
        asyncio.run(run_load("ftp://x", OpenModel(rate=1), duration=1))


# In-process apps in virtual time: exact figures


class Server:
    """An app's behaviour: a service time, a stall of the whole server every ``stall_every``
    requests, failing statuses, SSE streams."""

    def __init__(self, service: float = 0.010, stall_every: int = 0, stall: float = 1.0) -> None:
        self.service, self.stall_every, self.stall = service, stall_every, stall
        self.count = 0
        self.busy_until = 0.0

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        self.count += 1
        if self.stall_every and self.count % self.stall_every == 0:
            self.busy_until = max(loop.time(), self.busy_until) + self.stall
        await asyncio.sleep(max(0.0, self.busy_until - loop.time()) + self.service)


def make_app(server: Server | None = None) -> Starlette:
    server = server or Server()

    async def ok(request: StarletteRequest) -> Response:
        await server.wait()
        return JSONResponse({"ok": True})

    async def status(request: StarletteRequest) -> Response:
        await server.wait()
        return JSONResponse({}, status_code=int(request.path_params["code"]))

    async def events(request: StarletteRequest) -> Response:
        async def stream() -> Any:
            yield b": a comment\n\nevent: ping\ndata: {}\n\n"
            await server.wait()
            yield b"event: token\ndata: {}\n\n"
            await asyncio.sleep(0.5)
            yield f"event: {request.query_params.get('end', 'done')}\ndata: {{}}\n\n".encode()

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/", ok, methods=["GET", "POST"]),
            Route("/status/{code}", status),
            Route("/events", events, methods=["POST"]),
        ]
    )


def virtual(target: Any, model: OpenModel | ClosedModel, **options: Any) -> LoadResult:
    return VirtualClock().run(run_load(target, model, **options))


def test_an_open_model_sends_on_schedule_and_measures_exactly() -> None:
    result = virtual(make_app(Server(service=0.050)), OpenModel(rate=10), duration=2)
    assert (result.requests, result.successes, result.errors) == (20, 20, {})
    assert result.rps == 10.0
    assert result.latency.percentile(50) == pytest.approx(0.050, rel=1e-3)
    assert result.latency.max == pytest.approx(0.050, rel=1e-3)
    assert result.send_lag.max == 0.0
    assert result.warnings == []  # virtual time: no CPU or lag warning to give


def test_the_warmup_is_excluded() -> None:
    result = virtual(make_app(), OpenModel(rate=10), duration=3, warmup=1)
    assert (result.warmup_requests, result.requests) == (10, 20)
    assert result.rps == 10.0


def test_a_closed_model_waits_and_thinks() -> None:
    result = virtual(
        make_app(Server(service=0.1)), ClosedModel(users=2, think_time=0.4), duration=2
    )
    assert result.requests == 8  # each user: 0.1 s reply + 0.4 s thinking, 4 times
    assert result.latency.percentile(99) == pytest.approx(0.1, rel=1e-3)


def test_coordinated_omission_the_closed_model_hides_a_stall_the_open_model_reports() -> None:
    # The whole server stalls for 1 s every 100 requests; a request normally takes 10 ms.
    open_model = virtual(make_app(Server(stall_every=100)), OpenModel(rate=20), duration=15)
    closed = virtual(make_app(Server(stall_every=100)), ClosedModel(users=1), duration=15)
    assert open_model.latency.percentile(99) > 0.9  # every request the stall delayed counts
    assert closed.latency.percentile(99) == pytest.approx(0.010, rel=1e-2)  # one slow sample
    assert closed.latency.max > 1.0  # it did see the stall, once per stall


def test_errors_are_split_by_cause() -> None:
    def request(n: int) -> Request:
        return Request(path=["/", "/status/503", "/status/404"][n % 3])

    result = virtual(make_app(), OpenModel(rate=9), duration=1, request=request)
    assert result.errors == {"http_404": 3, "http_503": 3}
    assert (result.successes, result.error_rate) == (3, pytest.approx(2 / 3))
    assert result.latency.count == 3  # only successes are in the latency histograms


def test_sse_time_to_first_token_and_stream_errors() -> None:
    # httpx's ASGI transport delivers an in-process app's body whole: the first event
    # arrives with the last, so TTFT equals the full time here (real servers stream it).
    streamed = virtual(
        make_app(Server(service=0.2)), OpenModel(rate=2), duration=1,
        request=Request("POST", "/events", stream=True),
    )  # fmt: skip
    assert streamed.ttft.count == streamed.successes == 2
    broken = virtual(
        make_app(), OpenModel(rate=2), duration=1,
        request=Request("POST", "/events?end=error", stream=True),
    )  # fmt: skip
    assert broken.errors == {"stream_error": 2}


def test_an_overloaded_generator_counts_what_it_could_not_send() -> None:
    result = virtual(
        make_app(Server(service=10.0)), OpenModel(rate=10), duration=1, max_in_flight=3,
        request_timeout=20,
    )  # fmt: skip
    assert result.errors == {"generator_overload": 7}
    assert result.successes == 3


def test_a_request_that_never_ends_times_out_and_the_test_ends() -> None:
    result = virtual(
        make_app(Server(service=100.0)), ClosedModel(users=2), duration=1, request_timeout=5
    )
    assert result.errors == {"timeout": 2}  # the whole request is bounded, not each read


def test_a_result_reads_as_a_table_markdown_and_json() -> None:
    result = virtual(make_app(), OpenModel(rate=10), duration=2, warmup=1)
    lines = result.lines()
    assert lines[0] == (
        "in-process app Starlette: open model, 10 requests/s (constant arrivals), 2 s "
        "(1 s warm-up excluded)"
    )
    assert lines[1] == "requests 10  ok 10  errors 0 (0.00%)"
    assert lines[2] == "throughput 10.00 requests/s (offered 10.00)"
    assert lines[3].split() == ["p50", "p90", "p95", "p99", "p99.9", "max"]
    assert lines[4].startswith("latency       10.0 ms")
    markdown = result.markdown()
    assert "| latency | 10.0 ms | 10.0 ms |" in markdown
    document = json.loads(json.dumps(result.as_dict()))
    assert document["latency"]["p99.9"] == pytest.approx(0.010, rel=1e-3)
    assert document["requests"] == 10


# SLOs


def test_an_slo_compares_every_target_with_what_was_measured() -> None:
    result = virtual(make_app(Server(service=0.5)), OpenModel(rate=4), duration=2)
    met = SLO(p50=1.0, p95=2.0, p99=5.0, error_rate=0.001, min_rps=2, cache_hit_rate=0.8)
    report = met.check(result, cache_hit_rate=0.9)
    assert report.passed
    missed = SLO(p95=0.4, min_rps=10, workers=1, cache_hit_rate=0.8).check(result)
    assert not missed.passed
    assert [" ".join(line.split()) for line in missed.table()] == [
        "SLO measured target verdict",
        "p50 latency 500 ms <= 1,000 ms met",
        "p95 latency 500 ms <= 400 ms MISSED",
        "p99 latency 500 ms <= 5,000 ms met",
        "error rate 0.00% <= 0.10% met",
        "throughput per worker 3.50 requests/s >= 10.00 requests/s MISSED",
        "cache hit rate - >= 80.00% not measured",
    ]
    assert [row.verdict for row in missed.rows] == [
        "met", "MISSED", "met", "met", "MISSED", "not measured",
    ]  # fmt: skip
    error = SLOViolation(missed, "the app")
    assert str(error).splitlines()[0] == "the app missed its SLO (p95, min_rps):"
    assert isinstance(error, AssertionError)


def test_throughput_targets_are_per_worker() -> None:
    result = virtual(make_app(), OpenModel(rate=12), duration=1)
    assert SLO(min_rps=10).check(result).passed
    assert not SLO(min_rps=10, workers=2).check(result).passed


def test_bad_slos_are_refused() -> None:
    with pytest.raises(ValueError, match="SLO p95 must be a number >= 0 or None, got -1"):
        SLO(p95=-1)
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        SLO(workers=0)


def test_the_cache_hit_rate_comes_from_the_service_metrics() -> None:
    before = parse_cache_counts(
        'perfkit_cache_hits_total{layer="l1"} 2\nperfkit_cache_misses_total 8\n'
    )
    after = parse_cache_counts(
        'perfkit_cache_hits_total{layer="l1"} 8\nperfkit_cache_hits_total{layer="l2"} 4\n'
        "perfkit_cache_misses_total 10\n"
    )
    assert hit_rate(before, after) == 10 / 12
    assert parse_cache_counts("other_total 1\n") is None
    assert hit_rate(None, after) is None
    assert hit_rate(after, after) is None


# Real servers on loopback


def stalling_app() -> Starlette:
    """Blocks its whole event loop for 1 s once every 100 requests (a GC pause, say)."""
    count = [0]

    async def handler(request: StarletteRequest) -> Response:
        count[0] += 1
        if count[0] % 100 == 0:
            time.sleep(1.0)  # noqa: ASYNC251 - the stall: nothing else is served meanwhile
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/", handler)])


@pytest.mark.slow  # about 15 s of real load
def test_a_stall_every_100_requests_shows_in_the_open_models_p99_not_the_closed_ones() -> None:
    with running_uvicorn(stalling_app()) as url:
        open_model = run(url, OpenModel(rate=40), duration=5, request_timeout=5)
    with running_uvicorn(stalling_app()) as url:
        # Long enough for the closed loop to send about 250 requests on this machine.
        pace = run(url, ClosedModel(users=1), duration=1, request_timeout=5).requests
    with running_uvicorn(stalling_app()) as url:
        closed = run(url, ClosedModel(users=1), duration=250 / pace + 2, request_timeout=5)
    assert open_model.errors == closed.errors == {}
    assert closed.requests > 200  # so the closed loop met at least two stalls
    assert open_model.latency.percentile(99) > 0.8  # within HDR precision of the 1 s stall
    assert closed.latency.max > 0.9  # the closed loop met the stalls...
    assert closed.latency.percentile(99) < 0.2  # ...but its p99 does not show them


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        accepted: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    accepted.append(listener.accept()[0])
                except OSError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()


def test_a_stalled_server_gives_a_clean_report_of_timeouts(silent_server: str) -> None:
    start = time.perf_counter()
    result = run(silent_server, OpenModel(rate=10), duration=1, request_timeout=0.5)
    assert time.perf_counter() - start < 5  # duration + timeout, not a hang
    assert result.errors == {"timeout": 10}
    assert result.successes == 0
    assert "timeout 10" in result.lines()[1]


def dead_url() -> str:
    """A loopback URL nothing listens on (a port bound, then closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_a_dead_server_gives_a_clean_report_of_connection_errors() -> None:
    result = run(dead_url(), OpenModel(rate=10), duration=1, request_timeout=2)
    assert result.errors == {"connection": 10}


# The load_test fixture and the perfkit_slo marker

FIXTURE_TESTS = """
import asyncio

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from perfkit.load import OpenModel


async def slow(request):
    await asyncio.sleep(0.3)
    return JSONResponse({"ok": True})


APP = Starlette(routes=[Route("/", slow)])


@pytest.mark.perfkit_slo(p95=0.5, min_rps=5, cache_hit_rate=None)
def test_meets_its_slo(load_test):
    result = load_test(APP, OpenModel(rate=10), duration=60)
    assert result.requests == 600  # modeled: a minute of load in milliseconds


@pytest.mark.perfkit_slo(p95=0.2, cache_hit_rate=None)
def test_misses_its_slo(load_test):
    load_test(APP, OpenModel(rate=12), duration=60)


@pytest.mark.perfkit_slo(p95=0.2)
async def test_async_tests_await_arun(load_test):
    result = await load_test.arun(APP, OpenModel(rate=10), duration=5, check=False)
    assert not load_test.report.passed
"""


def test_the_load_test_fixture_gates_on_the_marker_slo(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\nperfkit_report_dir = report\n"
    )
    pytester.makepyfile(test_slo_service=FIXTURE_TESTS)
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*in-process app Starlette missed its SLO (p95):*",
            "*p95 latency*300 ms*<= 200 ms*MISSED",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*perfkit load tests*", "test_slo_service.py::test_meets_its_slo: SLO met"]
    )
    report = json.loads((pytester.path / "report" / "report.json").read_text())
    assert [entry["passed"] for entry in report["load_tests"]] == [True, False, False]
    assert report["load_tests"][0]["result"]["offered_rps"] == 10.0


def test_a_bad_slo_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.perfkit_slo(p96=1)\ndef test_x(load_test):\n    pass\n"
    )
    result = pytester.runpytest("-p", "no:randomly")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*perfkit_slo has no option 'p96' (did you mean 'p99'?)*"])


# perfkit load


def test_perfkit_load_prints_the_summary_and_gates_on_its_slo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_uvicorn(make_app()) as url:
        json_out, markdown_out = tmp_path / "load.json", tmp_path / "load.md"
        argv = [
            "load", f"{url}/", "--rate", "20", "--duration", "1", "--quiet",
            "--json-out", str(json_out), "--markdown-out", str(markdown_out),
        ]  # fmt: skip
        assert cli.main([*argv, "--slo", "p95=1"]) == cli.EXIT_OK
        out = capsys.readouterr().out
        assert "requests 20  ok 20  errors 0 (0.00%)" in out
        assert "p95 latency" in out
        assert json.loads(json_out.read_text())["slo"][0]["verdict"] == "met"
        assert markdown_out.read_text().startswith(f"### Load test: {url}")
        assert cli.main([*argv, "--slo", "p95=0.000001"]) == cli.EXIT_REGRESSION
        assert "MISSED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["load", "http://x", "--duration", "1"], "one of the arguments --rate --users is"),
        (["load", "http://x", "--rate", "0", "--duration", "1"], "--rate: must be a number > 0"),
        (["load", "http://x", "--users", "0", "--duration", "1"], "--users: must be an int >= 1"),
        (
            ["load", "http://x", "--rate", "1", "--duration", "1", "--slo", "p96=1"],
            "--slo: must be NAME=VALUE with NAME one of p50, p95",
        ),
        (
            ["load", "http://x", "--rate", "1", "--duration", "1", "--json", "{"],
            "--json: is not valid JSON",
        ),
        (["load", "ftp://x", "--rate", "1", "--duration", "1"], "URL must be an http:// or"),
        (
            ["load", "http://x/caf\u00e9", "--rate", "1", "--duration", "1"],
            "URL must be ASCII, with no spaces or control characters (percent-encode them), "
            "got 'http://x/caf\u00e9'",
        ),
        (
            ["load", "http://x", "--rate", "1", "--duration", "1", "--max-error-rate", "2"],
            "--max-error-rate: must be a fraction from 0 to 1 (0.001 is 0.1%), got '2'",
        ),
        (
            ["load", "http://x", "--rate", "1", "--duration", "1", "--max-error-rate", "nan"],
            "--max-error-rate: must be a fraction from 0 to 1",
        ),
        (
            ["load", "http://x", "--rate", "1", "--duration", "1", "--slo", "seeds"],
            "or 'production'; got 'seeds'",
        ),
    ],
)
def test_perfkit_load_mistakes_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = cli.main(argv)
    except SystemExit as exited:
        status = int(exited.code or 0)
    err = capsys.readouterr().err
    assert status == cli.EXIT_USAGE
    assert err.count("\n") == 1
    assert message in err


URL_IN_VIRTUAL_TIME = """
import pytest

from perfkit.load import OpenModel


async def test_url_in_virtual_time(load_test):
    with pytest.raises(Exception, match="a load test against a URL needs real time"):
        await load_test.arun("http://127.0.0.1:9", OpenModel(rate=1), duration=1)


@pytest.mark.perfkit_slo(p50=None, p95=None, p99=None, min_rps=None, cache_hit_rate=None)
def test_labelled(load_test):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ok(request):
        return JSONResponse({})

    app = Starlette(routes=[Route("/", ok)])
    load_test(app, OpenModel(rate=5), duration=1, label="the labelled service")
"""


def test_a_url_needs_real_time_and_labels_head_the_report(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\nperfkit_report_dir = report\n"
    )
    pytester.makepyfile(test_guard=URL_IN_VIRTUAL_TIME)
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["test_guard.py::test_labelled: SLO met", "    the labelled service"]
    )
    report = json.loads((pytester.path / "report" / "report.json").read_text())
    assert report["load_tests"][0]["label"] == "the labelled service"
    assert "the labelled service" in (pytester.path / "report" / "report.md").read_text()


def test_the_load_testing_guide_runs(pytester: pytest.Pytester) -> None:
    guide = GUIDE.read_text()
    [example] = guide.split("```python\n")[1:]
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    pytester.makepyfile(test_guide=example.partition("```")[0])
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)


# Review fixes: throughput, failures, cancellation, stale connections


def test_throughput_counts_what_finished_in_the_window_not_what_was_offered() -> None:
    gate = asyncio.Semaphore(1)  # one request at a time, 0.2 s each: capacity 5 per second

    async def one_at_a_time(request: StarletteRequest) -> Response:
        async with gate:
            await asyncio.sleep(0.2)
        return JSONResponse({})

    app = Starlette(routes=[Route("/", one_at_a_time)])
    result = virtual(app, OpenModel(rate=10), duration=10, request_timeout=60)
    assert result.offered_rps == 10.0
    assert result.rps == 5.0  # 50 finished inside the 10 s: the service's capacity
    assert not SLO(min_rps=10, p50=None, p95=None, p99=None).check(result).passed


def test_a_run_where_every_request_failed_misses_its_latency_targets() -> None:
    result = virtual(make_app(), OpenModel(rate=5), duration=1, request=Request(path="/status/503"))
    report = SLO(p95=1.0, error_rate=None, min_rps=None, cache_hit_rate=None).check(result)
    assert [(row.name, row.verdict) for row in report.rows] == [
        ("p50", "MISSED"), ("p95", "MISSED"), ("p99", "MISSED"),
    ]  # fmt: skip
    assert "no success" in report.table()[1]
    assert report.as_dict()[0]["measured"] is None  # JSON has no infinity


def test_a_client_side_failure_is_a_failed_request() -> None:
    async def garbled(request: StarletteRequest) -> Response:
        return Response(b"not gzip", headers={"content-encoding": "gzip"})

    app = Starlette(routes=[Route("/", garbled)])
    result = virtual(app, OpenModel(rate=4), duration=1)
    assert result.errors == {"client_error:DecodingError": 4}
    assert result.successes == 0
    with pytest.raises(ValueError, match="json must be JSON-serializable"):
        Request("POST", json={"x": {1, 2}})
    with pytest.raises(ValueError, match="path must be ASCII"):
        Request(path="/café")


def test_a_cancelled_load_test_leaves_nothing_running() -> None:
    async def cancelled(model: OpenModel | ClosedModel) -> int:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                run_load(make_app(Server(service=5.0)), model, duration=10), timeout=1
            )
        return len(asyncio.all_tasks())

    for model in (OpenModel(rate=20), ClosedModel(users=5)):
        assert VirtualClock().run(cancelled(model)) == 1  # only this coroutine's own task


def test_a_url_target_refuses_a_virtual_time_loop() -> None:
    with pytest.raises(ValueError, match="a load test against a URL needs real time"):
        virtual("http://127.0.0.1:9", OpenModel(rate=1), duration=1)


def test_idle_connections_the_server_closed_are_not_reused() -> None:
    # uvicorn closes a keep-alive connection after 1 s idle here; users think 1.5 s.
    with running_uvicorn(make_app(), timeout_keep_alive=1) as url:
        start = time.perf_counter()
        result = run(url, ClosedModel(users=2, think_time=1.5), duration=3, request_timeout=5)
    assert result.errors == {}
    assert result.successes >= 4
    assert time.perf_counter() - start < 6  # no request waited for its timeout


def test_perfkit_load_warmup_longer_than_the_test_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["load", "http://127.0.0.1:9/", "--rate", "1", "--duration", "1", "--warmup", "2"]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--warmup must be shorter than --duration (1 s), got 2 s" in err


def test_warnings_say_when_the_generators_figures_cannot_be_trusted() -> None:
    behind = _Recorder(0.0, 10.0)
    behind.send_lag.record(0.200)
    assert _warnings(behind, cpu=9.5, wall=10.0, virtual=False) == [
        "this process used 95% of a CPU during the test: the generator (and an in-process "
        "app) was saturated, so latencies include its own queueing; lower the rate, or "
        "spread the load over more processes (Locust's workers)",
        "requests left up to 200 ms after their scheduled time (p99): the generator fell "
        "behind its schedule",
    ]
    on_time = _Recorder(0.0, 10.0)
    on_time.send_lag.record(0.001)
    assert _warnings(on_time, cpu=2.0, wall=10.0, virtual=False) == []
    assert _warnings(behind, cpu=9.5, wall=10.0, virtual=True) == []  # modeled time


def test_sse_events_split_anywhere_across_chunks() -> None:
    names: list[str] = []
    parser = EventParser(names.append)
    for chunk in (b"event: token\r", b"\ndata: {}\r\n\r", b"\nevent: ping\r\ndata: {}\r\n\r\n"):
        parser.feed(chunk)
    parser.feed(b"data: unnamed")
    parser.close()
    assert names == ["token", "message"]


def test_perfkit_load_shows_progress_and_refuses_mixed_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with running_uvicorn(make_app(Server(service=0.0))) as url:
        assert cli.main(["load", f"{url}/", "--rate", "20", "--duration", "2.5"]) == cli.EXIT_OK
    err = capsys.readouterr().err.splitlines()
    assert [line.split()[0] for line in err] == ["1.0", "2.0"]  # a progress line a second
    assert "sent" in err[0]
    assert "in flight" in err[0]
    mixed = ["load", f"{url}/", "--rate", "1", "--duration", "1", "--think", "2"]
    assert cli.main(mixed) == cli.EXIT_USAGE
    assert "--think is the closed model's" in capsys.readouterr().err


def test_time_to_first_token_waits_for_content_not_framing() -> None:
    async def anthropic_style(request: StarletteRequest) -> Response:
        async def stream() -> Any:
            yield b"event: message_start\ndata: {}\n\n"
            await asyncio.sleep(0.4)
            yield b"event: content_block_delta\ndata: {}\n\n"
            await asyncio.sleep(0.6)
            yield b"event: message_stop\ndata: {}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    with running_uvicorn(Starlette(routes=[Route("/", anthropic_style, methods=["POST"])])) as url:
        result = run(url, OpenModel(rate=2), duration=1, request=Request("POST", stream=True))
    assert result.successes == 2
    assert 0.4 <= result.ttft.percentile(50) < 0.9  # the delta, not message_start at ~0 s
    assert result.latency.percentile(50) >= 1.0


@pytest.mark.parametrize("model", [OpenModel(rate=10), ClosedModel(users=2)])
def test_a_failing_request_factory_fails_the_load_test(model: OpenModel | ClosedModel) -> None:
    def factory(n: int) -> Request:
        if n == 3:
            raise RuntimeError("no fourth question")
        return Request()

    async def failing() -> int:
        with pytest.raises(RuntimeError, match="no fourth question"):
            await run_load(make_app(), model, duration=2, request=factory)
        return len(asyncio.all_tasks())

    assert VirtualClock().run(failing()) == 1


# perfkit load fails on failed requests, --slo or not


def run_load_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``perfkit load ARGV --quiet``: its exit status and stderr."""
    status = cli.main(["load", *argv, "--quiet"])
    return status, capsys.readouterr().err


def test_perfkit_load_against_a_dead_port_exits_1_saying_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, err = run_load_cli([f"{dead_url()}/", "--rate", "10", "--duration", "1"], capsys)
    assert (status, err) == (
        cli.EXIT_REGRESSION,
        "perfkit load: 100% of 10 requests failed (connection: 10), above the allowed 0.1% "
        "(--max-error-rate)\n",
    )


@pytest.mark.parametrize(
    ("path", "cause"),
    [("/no-such-path", "http_404"), ("/events", "http_405")],  # /events takes POST only
    ids=["404 path", "POST endpoint hit with GET"],
)
def test_perfkit_load_whose_requests_fail_exits_1_saying_why(
    path: str, cause: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_uvicorn(make_app(Server(service=0.0))) as url:
        argv = [f"{url}{path}", "--rate", "20", "--duration", "1"]
        status, err = run_load_cli(argv, capsys)
        assert (status, err) == (
            cli.EXIT_REGRESSION,
            f"perfkit load: 100% of 20 requests failed ({cause}: 20), above the allowed 0.1% "
            "(--max-error-rate)\n",
        )
        if cause == "http_404":  # the line docs/load-testing.md quotes
            assert f"```text\n{err}```" in GUIDE.read_text()
        assert run_load_cli([*argv, "--max-error-rate", "1"], capsys) == (cli.EXIT_OK, "")
        status, err = run_load_cli([*argv, "--slo", "error_rate=0.5"], capsys)
        assert status == cli.EXIT_REGRESSION
        assert err.endswith("above the allowed 50% (--slo error_rate)\n")
        assert run_load_cli([f"{url}/", "--rate", "20", "--duration", "1"], capsys) == (
            cli.EXIT_OK,
            "",
        )


def test_perfkit_load_that_measured_nothing_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [f"{dead_url()}/", "--rate", "1", "--duration", "1", "--warmup", "0.5"]
    assert run_load_cli(argv, capsys) == (
        cli.EXIT_REGRESSION,
        "perfkit load: no request was measured (all were sent during the warm-up): nothing "
        "was tested\n",
    )


def test_slo_production_states_the_production_targets_and_seed_is_its_deprecated_alias(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = cli.build_parser()
    base = ["load", "http://x", "--rate", "1", "--duration", "1", "--slo"]
    assert parser.parse_args([*base, "production"]).slo == [PRODUCTION_TARGETS]
    assert capsys.readouterr().err == ""
    assert parser.parse_args([*base, "seed"]).slo == [PRODUCTION_TARGETS]
    assert capsys.readouterr().err == (
        "perfkit load: warning: --slo seed is deprecated and will be removed in the next "
        "release; use --slo production (the same targets)\n"
    )
    assert PRODUCTION_TARGETS == {
        "p50": 1.0, "p95": 2.0, "p99": 5.0, "error_rate": 0.001, "min_rps": 10.0,
        "cache_hit_rate": 0.8,
    }  # fmt: skip
    assert SLO() == SLO(**PRODUCTION_TARGETS)
    assert SLO.names() == list(PRODUCTION_TARGETS)  # what --slo NAME=VALUE accepts


def test_seed_targets_is_a_deprecated_alias_of_production_targets() -> None:
    with pytest.deprecated_call(match="use perfkit.load.PRODUCTION_TARGETS"):
        from perfkit.load import SEED_TARGETS
    assert SEED_TARGETS is PRODUCTION_TARGETS
    with pytest.raises(AttributeError, match="has no attribute 'NOPE'"):
        perfkit.load.NOPE  # noqa: B018


def test_every_public_name_of_perfkit_load_resolves() -> None:
    for name in perfkit.load.__all__:
        assert getattr(perfkit.load, name) is not None
    assert set(perfkit.load.__all__) <= set(dir(perfkit.load))
