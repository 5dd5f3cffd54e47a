"""Load testing with correct latency percentiles: open and closed workload models,
latency from each request's intended send time, HDR histograms, and SLO gates::

    from perfkit.load import SLO, OpenModel, Request, run

    result = run("http://127.0.0.1:8000", OpenModel(rate=20), duration=30,
                 request=Request("POST", "/chat", json={"user_id": "u1", "message": "Hi"}))
    assert SLO().check(result).passed
"""

from __future__ import annotations

import asyncio
from typing import Any

from perfkit.load._histogram import PERCENTILES, LatencyHistogram
from perfkit.load._models import ClosedModel, OpenModel, Request, RequestFactory
from perfkit.load._result import LoadResult, Progress
from perfkit.load._runner import run_load
from perfkit.load._slo import SEED_TARGETS, SLO, SLOReport, SLORow, SLOViolation
from perfkit.load._tester import LoadTester


def run(target: str | Any, model: OpenModel | ClosedModel, **options: Any) -> LoadResult:
    """:func:`run_load` in a new event loop, for synchronous callers (the CLI)."""
    return asyncio.run(run_load(target, model, **options))


__all__ = [
    "PERCENTILES",
    "SEED_TARGETS",
    "SLO",
    "ClosedModel",
    "LatencyHistogram",
    "LoadResult",
    "LoadTester",
    "OpenModel",
    "Progress",
    "Request",
    "RequestFactory",
    "SLOReport",
    "SLORow",
    "SLOViolation",
    "run",
    "run_load",
]
