"""Hooks perfkit adds to pytest (implement them in a ``conftest.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from perfkit.reporting import Speedup


@pytest.hookspec
def pytest_perfkit_speedups(config: pytest.Config) -> list[Speedup]:  # type: ignore[empty-body]
    """Return the speedup report's rows for this run: :class:`perfkit.Speedup` objects,
    each naming a baseline and an optimized benchmark, the figure to compare and the
    claim it checks. Every implementation's rows are reported, in order."""
