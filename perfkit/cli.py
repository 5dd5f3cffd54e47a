"""The ``perfkit`` command line: ``perfkit demo cache``, ``perfkit serve``.

Exit codes: 0 success, 2 usage error (one readable line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

EXIT_OK = 0
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
    return parser


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
    raise AssertionError(f"unhandled command {arguments.command!r}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
