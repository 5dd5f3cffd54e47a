"""The ``perfkit`` command line: ``demo``, ``serve``, and the benchmark report's jobs
outside pytest: ``report``, ``compare`` and ``update-baseline`` (from a ``report.json``).

Exit codes: 0 success (the gate passed), 1 a regression, 2 a usage error (one readable
line on stderr: a bad option, a missing, corrupt or mismatched file).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from perfkit._errors import PerfkitError
from perfkit.reporting._gate import DEFAULT_CPU_THRESHOLD, DEFAULT_TOLERANCE

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _demos() -> dict[str, Callable[[TextIO], int]]:
    from perfkit.demos import cache

    return {"cache": cache.main}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="perfkit", description="Performance testing for LLM agents.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser("demo", help="run a walk-through of the seed chapter")
    demo.add_argument("name", choices=sorted(_demos()), help="which demo")
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
    serve.add_argument("--seed", type=int, default=0, help="seed of the simulated backend")
    serve.add_argument("--redis-url", help="an L2 cache on this Redis (optimized agent)")
    serve.add_argument(
        "--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info"
    )
    _add_report_commands(commands)
    return parser


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
    update = commands.add_parser(
        "update-baseline",
        help="write a baseline from a results file, on purpose",
    )
    update.add_argument("results", **results)
    update.add_argument("--baseline", type=Path, required=True, metavar="PATH")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
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
    return EXIT_OK


def _compare(arguments: argparse.Namespace, out: TextIO) -> int:
    from perfkit import reporting

    document = reporting.load_report(arguments.results)
    settings = reporting.GateSettings(
        tolerance=arguments.tolerance, cpu_threshold=arguments.cpu_threshold
    )
    gate = reporting.gate_report(document, arguments.baseline, settings)
    for line in reporting.gate_lines(gate):
        print(line, file=out)
    return EXIT_REGRESSION if gate["status"] == "fail" else EXIT_OK


def _update_baseline(arguments: argparse.Namespace, out: TextIO) -> int:
    from perfkit import reporting

    document = reporting.load_report(arguments.results)
    reporting.update_baseline(document, arguments.baseline)
    count = len(reporting.load_baseline(arguments.baseline)["benchmarks"])
    print(f"{arguments.baseline}: baseline written ({count} benchmarks)", file=out)
    return EXIT_OK


def _write(path: Path, text: str) -> None:
    from perfkit.reporting._documents import write_text

    write_text(path, text)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer from 0 to 65535, got {text!r}")
    return port


def _serve(arguments: argparse.Namespace) -> int:
    from perfkit.service import build_app, run

    try:
        app = build_app(
            agent=arguments.agent,
            backend=arguments.backend,
            seed=arguments.seed,
            redis_url=arguments.redis_url,
        )
    except ValueError as error:
        print(f"perfkit serve: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    run(app, host=arguments.host, port=arguments.port, log_level=arguments.log_level)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    if arguments.command == "demo":
        return _demos()[arguments.name](stream)
    if arguments.command == "serve":
        return _serve(arguments)
    jobs = {"report": _report, "compare": _compare, "update-baseline": _update_baseline}
    try:
        return jobs[arguments.command](arguments, stream)
    except (PerfkitError, OSError) as error:
        print(f"perfkit {arguments.command}: error: {_reason(error)}", file=sys.stderr)
        return EXIT_USAGE


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
