"""The ``perfkit`` command line: ``demo``, ``serve``, ``load``, ``calibrate`` (a latency
profile from recorded traces), and the benchmark report's jobs outside pytest: ``report``,
``compare`` and ``update-baseline`` (from a ``report.json``).

Exit codes: 0 success (the gate passed, every SLO met), 1 a regression, a missed SLO or
a load test with too many failed requests, 2 a usage error (one readable line on stderr:
a bad option, a missing, corrupt or mismatched file, a file that cannot be written).
``perfkit load`` stopped by Ctrl-C exits 130, with one line and no result.

It answers ``--help`` and usage mistakes at once: this module imports only the standard
library and perfkit modules that import nothing heavy; each command imports what it needs
(the load generator, the agent service, the reporting package) when it runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from perfkit._defaults import (
    ARRIVALS,
    DEFAULT_CPU_THRESHOLD,
    DEFAULT_TIMEOUT,
    DEFAULT_TOLERANCE,
    METHODS,
    PRODUCTION_TARGETS,
    TARGET_NAMES,
)
from perfkit._errors import PerfkitError
from perfkit._validation import parse_fraction
from perfkit.demos import DEMOS, demo

if TYPE_CHECKING:
    from perfkit.load import LoadResult

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""``perfkit load`` stopped by Ctrl-C (SIGINT): 128 + the signal's number, as shells say."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="perfkit", description="Performance testing for LLM agents.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    walk_through = commands.add_parser(
        "demo", help="run a walk-through of one of the book chapter's examples"
    )
    walk_through.add_argument(
        "name", choices=DEMOS, help="which one (cache: a miss, an L1 hit, an L2 hit)"
    )
    serve = commands.add_parser(
        "serve",
        help="run the agent service (POST /chat, POST /chat/stream, GET /metrics, GET /healthz)",
        description="Run the agent service on uvicorn. By default it answers from the "
        "simulated Anthropic API with realistic latency, so it needs no API key.",
    )
    serve.add_argument("--agent", choices=("naive", "optimized"), default="optimized")
    serve.add_argument(
        "--backend",
        choices=("simulated", "anthropic"),
        default="simulated",
        help="simulated (default, no API key) or anthropic (uses ANTHROPIC_API_KEY)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--seed", type=int, default=0, help="random seed of the simulated backend")
    serve.add_argument("--redis-url", help="an L2 cache on this Redis (optimized agent)")
    serve.add_argument(
        "--prices",
        type=Path,
        metavar="PATH",
        help="price file whose rows, over the shipped table, price perfkit_llm_cost_usd_total",
    )
    serve.add_argument(
        "--token-file",
        type=Path,
        help="name:token lines; clients must send Authorization: Bearer <token> (so must they "
        "with tokens in $PERFKIT_SERVICE_TOKENS)",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve a non-loopback --host without tokens (anyone who can reach it may chat)",
    )
    serve.add_argument(
        "--max-connections",
        type=_count,
        help="client connections held at once (default: what the descriptor limit, ulimit -n, "
        "safely allows); at the cap the slowest unfinished request makes room",
    )
    serve.add_argument(
        "--header-timeout", type=_positive, default=10.0,
        help="seconds a request head may take to arrive (default 10)",
    )  # fmt: skip
    serve.add_argument(
        "--body-timeout", type=_positive, default=30.0,
        help="seconds a request body may take to arrive (default 30)",
    )  # fmt: skip
    serve.add_argument(
        "--send-timeout", type=_positive, default=30.0,
        help="seconds an answer may wait for its client to read it (default 30)",
    )  # fmt: skip
    serve.add_argument(
        "--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info"
    )
    _add_report_commands(commands)
    _add_load_command(commands)
    _add_calibrate_command(commands)
    return parser


def _add_calibrate_command(commands: Any) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="fit the simulator's latency model to recorded traces and write a profile",
        description="Fit each model's latency (connect, time to first token with its "
        "prefill and cache-read rates, per output token) to a trace file a TraceRecorder "
        "wrote, print how well the fit holds (p50/p95/p99 fitted against observed, and a "
        "Kolmogorov-Smirnov statistic) and write the profile LLMLatency.from_profile reads.",
    )
    calibrate.add_argument("traces", type=Path, help="the trace file (JSON lines)")
    calibrate.add_argument(
        "-o", "--output", type=Path, required=True, metavar="PROFILE",
        help="where to write the profile (JSON; replaced whole, never half-written)",
    )  # fmt: skip
    calibrate.add_argument("--model", help="fit only this model (default: every model)")
    calibrate.add_argument(
        "--seed", type=int, default=0,
        help="random seed of the simulation that checks the fit (default 0)",
    )  # fmt: skip


def _add_load_command(commands: Any) -> None:
    load = commands.add_parser(
        "load",
        help="load-test a URL: open model (--rate) or closed model (--users)",
        description="Send requests to URL on an open-model schedule (--rate, constant or "
        "Poisson arrivals) or from a closed model's users (--users), and report latency "
        "(from each request's intended send time in the open model; HDR percentiles), "
        "throughput and errors by cause. Exit 1 when more requests failed than "
        "--max-error-rate allows, or an --slo target is missed.",
    )
    load.add_argument("url", help="the URL to load, path included (http://host:port/chat)")
    model = load.add_mutually_exclusive_group(required=True)
    model.add_argument("--rate", type=_positive, help="requests per second (open model)")
    model.add_argument("--users", type=_count, help="concurrent users (closed model)")
    load.add_argument("--duration", type=_positive, required=True, help="seconds of load")
    load.add_argument(
        "--arrivals", choices=ARRIVALS, default="constant", help="open model's arrivals"
    )
    load.add_argument("--seed", type=int, default=0, help="random seed of Poisson arrivals")
    load.add_argument("--think", type=_seconds, default=0.0, help="closed model's think time")
    load.add_argument("--warmup", type=_seconds, default=0.0, help="seconds excluded at start")
    load.add_argument(
        "--timeout", type=_positive, default=DEFAULT_TIMEOUT, help="seconds per request"
    )
    load.add_argument("--method", choices=METHODS, help="default: POST with --json, else GET")
    load.add_argument("--json", type=_json_body, metavar="BODY", help="a JSON request body")
    load.add_argument(
        "--stream", action="store_true", help="read server-sent events; time the first one"
    )
    load.add_argument(
        "--header", type=_header, action="append", default=[], metavar="'NAME: VALUE'",
        help="a header to send with every request (repeatable); an Authorization header "
        "is also sent to the target's /healthz and /metrics, and never printed",
    )  # fmt: skip
    load.add_argument(
        "--max-error-rate", type=_error_rate, metavar="FRACTION",
        help="exit 1 when more than this share of the requests failed (default: the --slo "
        f"error_rate if one is given, else {PRODUCTION_TARGETS['error_rate']:g}, the "
        "production target of 0.1%%)",
    )  # fmt: skip
    production = ", ".join(f"{name} {value:g}" for name, value in PRODUCTION_TARGETS.items())
    load.add_argument(
        "--slo", type=_slo_target, action="append", default=[], metavar="NAME=VALUE",
        help=f"a target to meet ({', '.join(TARGET_NAMES)}; seconds, fractions, requests/s), "
        f"or 'production' for the production targets ({production})",
    )  # fmt: skip
    load.add_argument(
        "--metrics-url", metavar="URL",
        help="read the cache hit rate from this Prometheus endpoint (default: the target's "
        "/metrics when the target is perfkit's service, recognised by its /healthz)",
    )  # fmt: skip
    load.add_argument("--json-out", type=Path, metavar="PATH", help="write the result as JSON")
    load.add_argument("--markdown-out", type=Path, metavar="PATH", help="write it as Markdown")
    load.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_report_commands(commands: Any) -> None:
    results = {"metavar": "RESULTS", "type": Path, "help": "a report.json a benchmark run wrote"}
    report = commands.add_parser(
        "report",
        help="print the speedup report of a results file (and write it as Markdown or SVG)",
    )
    report.add_argument("results", **results)
    report.add_argument("--markdown", type=Path, metavar="PATH", help="also write Markdown here")
    report.add_argument("--svg", type=Path, metavar="PATH", help="also write the chart here")
    compare = commands.add_parser(
        "compare",
        help="gate a results file against a baseline: exit 1 on a regression",
    )
    compare.add_argument("results", **results)
    compare.add_argument("--baseline", type=Path, required=True, metavar="PATH")
    compare.add_argument(
        "--tolerance",
        type=_fraction,
        default=DEFAULT_TOLERANCE,
        help=f"relative rise of an exact figure allowed (default: {DEFAULT_TOLERANCE})",
    )
    compare.add_argument(
        "--cpu-threshold",
        type=_fraction,
        default=DEFAULT_CPU_THRESHOLD,
        help=f"least relative rise of CPU time allowed (default: {DEFAULT_CPU_THRESHOLD})",
    )
    compare.add_argument(
        "--allow-unmatched",
        action="store_true",
        help="list benchmarks new, missing or no longer comparable without failing on them",
    )
    update = commands.add_parser(
        "update-baseline",
        help="write a baseline from a results file, on purpose",
    )
    update.add_argument("results", **results)
    update.add_argument("--baseline", type=Path, required=True, metavar="PATH")
    diff = commands.add_parser(
        "baseline-diff",
        help="print as Markdown every figure HEAD's baseline moved against BASE's",
        description="Compare two baseline files (a pull request's and its base branch's) and "
        "print, as Markdown, every figure that rose or fell and every benchmark added or "
        "removed, so a regression accepted by refreshing the baseline is seen in review.",
    )
    diff.add_argument("base", type=Path, metavar="BASE", help="the base branch's baseline")
    diff.add_argument("head", type=Path, metavar="HEAD", help="this change's baseline")


def _positive(text: str) -> float:
    value = _number(text)
    if not (0 < value < math.inf):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if not (0 <= value < math.inf):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def _count(text: str) -> int:
    if not (text.isdecimal() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return int(text)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _json_body(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"is not valid JSON ({error}): {text!r}") from None


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        # The text is not echoed: a header's value may be a secret.
        raise argparse.ArgumentTypeError("must be 'NAME: VALUE' (curl's -H form)")
    return name.strip(), value.strip()


def _slo_target(text: str) -> dict[str, float]:
    if text == "seed":  # the old spelling, kept for one release
        print(
            "perfkit load: warning: --slo seed is deprecated and will be removed in the next "
            "release; use --slo production (the same targets)",
            file=sys.stderr,
        )
        text = "production"
    if text == "production":
        return dict(PRODUCTION_TARGETS)
    name, equals, value = text.partition("=")
    if not equals or name not in TARGET_NAMES:
        raise argparse.ArgumentTypeError(
            f"must be NAME=VALUE with NAME one of {', '.join(TARGET_NAMES)}, or 'production'; "
            f"got {text!r}"
        )
    number = _number(value)
    if not (0 <= number < math.inf):
        raise argparse.ArgumentTypeError(f"{name} must be a number >= 0, got {value!r}")
    return {name: number}


def _error_rate(text: str) -> float:
    value = parse_fraction(text)
    if value is None or value > 1:
        raise argparse.ArgumentTypeError(
            f"must be a fraction from 0 to 1 (0.001 is 0.1%), got {text!r}"
        )
    return value


def _fraction(text: str) -> float:
    value = parse_fraction(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"must be a number >= 0 (a fraction: 0.001 is 0.1%), got {text!r}"
        )
    return value


def _report(arguments: argparse.Namespace, out: TextIO) -> int:
    from perfkit import reporting

    document = reporting.load_report(arguments.results)
    for line in reporting.terminal_lines(document["speedups"]):
        print(line, file=out)
    for line in reporting.gate_lines(document["gate"]):
        print(line, file=out)
    if arguments.markdown is not None:
        _write(arguments.markdown, reporting.markdown(document))
    if arguments.svg is not None:
        _write(arguments.svg, reporting.svg_chart(document["speedups"]))
    gate = document["gate"]
    return EXIT_REGRESSION if gate is not None and gate["status"] == "fail" else EXIT_OK


def _compare(arguments: argparse.Namespace, out: TextIO) -> int:
    from perfkit import reporting

    document = reporting.load_report(arguments.results)
    settings = reporting.GateSettings(
        tolerance=arguments.tolerance,
        cpu_threshold=arguments.cpu_threshold,
        allow_unmatched=arguments.allow_unmatched,
    )
    gate = reporting.gate_report(document, arguments.baseline, settings)
    for line in reporting.gate_lines(gate):
        print(line, file=out)
    return EXIT_REGRESSION if gate["status"] == "fail" else EXIT_OK


def _baseline_diff(arguments: argparse.Namespace, out: TextIO) -> int:
    from perfkit import reporting

    out.write(reporting.baseline_diff(arguments.base, arguments.head))
    return EXIT_OK


def _update_baseline(arguments: argparse.Namespace, out: TextIO) -> int:
    from perfkit import reporting

    document = reporting.load_report(arguments.results)
    reporting.update_baseline(document, arguments.baseline)
    count = len(reporting.load_baseline(arguments.baseline)["benchmarks"])
    print(f"{arguments.baseline}: baseline written ({count} benchmarks)", file=out)
    return EXIT_OK


def _load(arguments: argparse.Namespace, out: TextIO) -> int:
    # Every usage mistake is found before the load generator is imported.
    if arguments.rate is not None and arguments.think:
        raise ValueError("--think is the closed model's (--users); the open model has none")
    if arguments.users is not None and (arguments.arrivals != "constant" or arguments.seed):
        raise ValueError("--arrivals and --seed are the open model's (--rate), not --users'")
    if arguments.warmup >= arguments.duration:
        raise ValueError(
            f"--warmup must be shorter than --duration ({arguments.duration:g} s), "
            f"got {arguments.warmup:g} s"
        )
    base, path = _split_url(arguments.url)
    if arguments.metrics_url is not None:
        from perfkit._url import parse_http_url

        parse_http_url(arguments.metrics_url, "--metrics-url")
    targets: dict[str, float] = {}
    for target in arguments.slo:
        targets.update(target)
    bound, bound_option = _error_rate_bound(arguments.max_error_rate, targets)

    from perfkit import load
    from perfkit._clock import RealClock

    headers = dict(arguments.header)
    method = arguments.method or ("POST" if arguments.json is not None else "GET")
    model: load.OpenModel | load.ClosedModel = (
        load.OpenModel(arguments.rate, arguments.arrivals, arguments.seed)
        if arguments.rate is not None
        else load.ClosedModel(arguments.users, arguments.think)
    )
    slo = load.SLO(
        p50=targets.get("p50"),
        p95=targets.get("p95"),
        p99=targets.get("p99"),
        error_rate=targets.get("error_rate"),
        min_rps=targets.get("min_rps"),
        cache_hit_rate=targets.get("cache_hit_rate"),
    )

    def progress(report: load.Progress) -> None:
        print(report.line(), file=sys.stderr, flush=True)

    tester = load.LoadTester(RealClock(), slo, record=lambda _entry: None)
    try:
        result = tester(
            base,
            model,
            check=False,
            duration=arguments.duration,
            warmup=arguments.warmup,
            request_timeout=arguments.timeout,
            request=load.Request(
                method, path, json=arguments.json, stream=arguments.stream, headers=headers
            ),
            progress=None if arguments.quiet else progress,
            metrics_url=arguments.metrics_url,
        )
    except KeyboardInterrupt:  # every request was cancelled and its connection closed
        print("perfkit load: interrupted (no result written)", file=sys.stderr)
        return EXIT_INTERRUPTED
    assert tester.report is not None
    report = tester.report
    for line in result.lines():
        print(line, file=out)
    if report.rows:
        for line in report.table():
            print(line, file=out)
    if arguments.json_out is not None:
        _write(
            arguments.json_out,
            json.dumps({**result.as_dict(), "slo": report.as_dict()}, indent=2) + "\n",
        )
    if arguments.markdown_out is not None:
        table = "\n".join(["", "```text", *report.table(), "```", ""]) if report.rows else ""
        _write(arguments.markdown_out, result.markdown() + table)
    failure = _failed_requests(result, bound, bound_option)
    if failure:
        print(f"perfkit load: {failure}", file=sys.stderr)
    return EXIT_OK if report.passed and not failure else EXIT_REGRESSION


def _error_rate_bound(option: float | None, targets: dict[str, float]) -> tuple[float, str]:
    """The share of failed requests ``perfkit load`` allows, and the option that set it."""
    if option is not None:
        return option, "--max-error-rate"
    if "error_rate" in targets:
        return targets["error_rate"], "--slo error_rate"
    return PRODUCTION_TARGETS["error_rate"], "--max-error-rate"


def _failed_requests(result: LoadResult, bound: float, option: str) -> str:
    """Why the load test failed on its requests alone (nothing measured, or too many
    failed), or "" if it did not."""
    if not result.requests:
        return "no request was measured (all were sent during the warm-up): nothing was tested"
    if result.error_rate <= bound:
        return ""
    causes = ", ".join(f"{cause}: {count:,}" for cause, count in result.errors.items())
    return (
        f"{_percent(result.error_rate)} of {result.requests:,} requests failed ({causes}), "
        f"above the allowed {_percent(bound)} ({option})"
    )


def _percent(fraction: float) -> str:
    """0.25 as 25%, 0.001 as 0.1%, 1/3 as 33.3%: three significant digits at most."""
    return f"{fraction * 100:.3g}%"


def _split_url(url: str) -> tuple[str, str]:
    """``http://host:port/path?query`` as the base URL (credentials kept) and the path."""
    import urllib.parse

    from perfkit._url import parse_http_url

    parsed = parse_http_url(url)
    return f"{parsed.scheme}://{urllib.parse.urlsplit(url).netloc}", parsed.path


def _write(path: Path, text: str) -> None:
    """Write a file the user named (a failure is a ReportWriteError naming ``path``)."""
    from perfkit.reporting import write_text

    write_text(path, text)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer from 0 to 65535, got {text!r}")
    return port


def _serve(arguments: argparse.Namespace, out: TextIO) -> int:
    from perfkit.service import ServiceLimits, build_app, run

    if arguments.prices is not None:
        from perfkit._pricing import use_prices

        use_prices(arguments.prices)  # a bad file: ValueError naming it, exit 2
    app = build_app(
        agent=arguments.agent,
        backend=arguments.backend,
        seed=arguments.seed,
        redis_url=arguments.redis_url,
        token_file=arguments.token_file,
    )
    run(
        app,
        host=arguments.host,
        port=arguments.port,
        log_level=arguments.log_level,
        allow_unauthenticated=arguments.allow_unauthenticated,
        limits=ServiceLimits(
            max_connections=arguments.max_connections,
            header_timeout=arguments.header_timeout,
            body_timeout=arguments.body_timeout,
            send_timeout=arguments.send_timeout,
        ),
    )
    return EXIT_OK


def _calibrate(arguments: argparse.Namespace, out: TextIO) -> int:
    import datetime

    from perfkit.traces import fit_traces, read_traces

    if arguments.output.exists() and arguments.output.samefile(arguments.traces):
        raise ValueError(f"{arguments.output}: is the trace file; write the profile elsewhere")
    if arguments.output.exists() and not arguments.output.is_file():
        # The profile replaces its file whole: a FIFO or a device (/dev/stdout) would be
        # replaced by a regular file, not written to.
        raise ValueError(f"{arguments.output}: not a regular file; write the profile to a file")
    try:
        traces = read_traces(arguments.traces)
    except UnicodeDecodeError:
        raise ValueError(f"{arguments.traces}: not a trace file: not UTF-8 text") from None
    if not traces:
        raise ValueError(f"{arguments.traces}: no traces in the file")
    fitted = fit_traces(traces, model=arguments.model, seed=arguments.seed)
    fitted_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    profile = fitted.profile(source=str(arguments.traces), fitted_at=fitted_at)
    _write(arguments.output, json.dumps(profile, indent=2) + "\n")
    for fit in fitted.fits:
        for line in fit.lines():
            print(line, file=out)
    for model, reason in fitted.skipped.items():
        print(f"model {model}: not fitted: {reason}", file=out)
    print(f"{arguments.output}: profile written ({len(fitted.fits)} model(s))", file=out)
    return EXIT_OK


def _demo(arguments: argparse.Namespace, out: TextIO) -> int:
    return demo(arguments.name)(out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    jobs = {
        "demo": _demo,
        "serve": _serve,
        "report": _report,
        "compare": _compare,
        "update-baseline": _update_baseline,
        "baseline-diff": _baseline_diff,
        "load": _load,
        "calibrate": _calibrate,
    }
    try:
        _check_files_to_read(arguments)
        return jobs[arguments.command](arguments, stream)
    except (PerfkitError, OSError, ValueError) as error:  # a bad file, option or URL
        print(f"perfkit {arguments.command}: error: {_reason(error)}", file=sys.stderr)
        return EXIT_USAGE


FILES_TO_READ = {
    "report": (("results", "report"),),
    "compare": (("results", "report"), ("baseline", "baseline")),
    "update-baseline": (("results", "report"),),
    "baseline-diff": (("base", "baseline"), ("head", "baseline")),
    "calibrate": (("traces", "trace"),),
}
"""The files each command reads, by argument, and what kind of file each is."""


def _check_files_to_read(arguments: argparse.Namespace) -> None:
    """A file that is not there is a usage error, found before reporting (jsonschema and
    the rest) is imported: the answer comes at once."""
    for argument, kind in FILES_TO_READ.get(arguments.command, ()):
        path: Path = getattr(arguments, argument)
        if not path.exists():
            raise PerfkitError(f"{path}: no such {kind} file")


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
