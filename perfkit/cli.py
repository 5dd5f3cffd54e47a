"""The ``perfkit`` command line: ``perfkit demo cache``.

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
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    if arguments.command == "demo":
        return _demos()[arguments.name](stream)
    raise AssertionError(f"unhandled command {arguments.command!r}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
