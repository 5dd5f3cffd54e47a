"""Load testing with correct latency percentiles: open and closed workload models,
latency from each request's intended send time, HDR histograms, and SLO gates::

    from perfkit.load import SLO, OpenModel, Request, run

    result = run("http://127.0.0.1:8000", OpenModel(rate=20), duration=30,
                 request=Request("POST", "/chat", json={"user_id": "u1", "message": "Hi"}))
    assert SLO().check(result).passed

Names load on first use (PEP 562), so ``perfkit load --help`` imports no HTTP client.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

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
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
_DEPRECATED = {"SEED_TARGETS": "PRODUCTION_TARGETS"}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        warnings.warn(
            f"perfkit.load.{name} is deprecated and will be removed in the next release; "
            f"use perfkit.load.{_DEPRECATED[name]} (the same targets)",
            DeprecationWarning,
            stacklevel=2,
        )
        return __getattr__(_DEPRECATED[name])
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'perfkit.load' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
