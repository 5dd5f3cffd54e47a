"""Runnable walk-throughs of the book chapter's examples, under virtual time.

Each demo is a module here with ``main(out) -> int``; ``DEMOS`` names them without
importing them (``perfkit demo --help`` stays cheap)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TextIO

DEMOS = ("cache",)


def demo(name: str) -> Callable[[TextIO], int]:
    """The ``main`` of the demo called ``name`` (one of ``DEMOS``)."""
    if name not in DEMOS:
        raise ValueError(f"demo must be one of {', '.join(DEMOS)}; got {name!r}")
    main: Callable[[TextIO], int] = importlib.import_module(f"perfkit.demos.{name}").main
    return main
