"""Load testing with correct latency percentiles: open and closed workload models,
latency from each request's intended send time, HDR histograms, and SLO gates::

    from perfkit.load import SLO, OpenModel, Request, run

    result = run("http://127.0.0.1:8000", OpenModel(rate=20), duration=30,
                 request=Request("POST", "/chat", json={"user_id": "u1", "message": "Hi"}))
    assert SLO().check(result).passed

Names load on first use (PEP 562), so ``perfkit load --help`` imports no HTTP client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfkit._lazy import lazy_names

if TYPE_CHECKING:
    from perfkit.load._constants import PRODUCTION_TARGETS
    from perfkit.load._histogram import PERCENTILES, LatencyHistogram
    from perfkit.load._models import ClosedModel, OpenModel, Request, RequestFactory
    from perfkit.load._result import LoadResult, Progress
    from perfkit.load._runner import run, run_load
    from perfkit.load._slo import SLO, SLOReport, SLORow, SLOViolation
    from perfkit.load._tester import LoadTester

_HOMES = {
    "perfkit.load._constants": ("PRODUCTION_TARGETS",),
    "perfkit.load._histogram": ("PERCENTILES", "LatencyHistogram"),
    "perfkit.load._models": ("ClosedModel", "OpenModel", "Request", "RequestFactory"),
    "perfkit.load._result": ("LoadResult", "Progress"),
    "perfkit.load._runner": ("run", "run_load"),
    "perfkit.load._slo": ("SLO", "SLOReport", "SLORow", "SLOViolation"),
    "perfkit.load._tester": ("LoadTester",),
}
__getattr__, __dir__ = lazy_names(
    __name__, _HOMES, globals(), renamed={"SEED_TARGETS": "PRODUCTION_TARGETS"}
)


__all__ = [
    "PERCENTILES",
    "PRODUCTION_TARGETS",
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
