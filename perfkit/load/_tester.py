"""The ``load_test`` fixture's runner: a load test inside a pytest test, gated by its SLO."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from perfkit._clock import Clock
from perfkit._errors import PerfkitError
from perfkit._perf import in_event_loop
from perfkit._virtual_loop import is_virtual_loop
from perfkit.load._models import ClosedModel, OpenModel, Request
from perfkit.load._result import LoadResult
from perfkit.load._runner import run_load
from perfkit.load._service import CacheCounter, hit_rate
from perfkit.load._slo import SLO, SLOReport, SLOViolation


class LoadTester:
    """Runs a load test and checks it against the test's SLO (its ``perfkit_slo`` marker,
    else the production targets); a missed target fails the test with a measured-vs-target
    table. Against a URL the test runs in real time (real sockets); against an
    in-process ASGI app, on the test's clock, so under the virtual clock a service on the
    simulated API is measured in modeled time, exactly::

        def test_service_meets_its_slo(load_test):
            load_test(app, OpenModel(rate=20), duration=60, request=Request("POST", "/chat", ...))
    """

    def __init__(self, clock: Clock, slo: SLO, record: Callable[[dict[str, Any]], None]) -> None:
        self.clock = clock
        self.slo = slo
        self._record = record
        self.report: SLOReport | None = None

    def __call__(
        self, target: str | Any, model: OpenModel | ClosedModel, **options: Any
    ) -> LoadResult:
        """Run the load test (see :func:`perfkit.load.run_load` for the options, plus
        ``slo=`` and ``check=False``) from a synchronous test."""
        if in_event_loop():
            raise PerfkitError("in an async test, use: result = await load_test.arun(...)")
        coroutine = self.arun(target, model, **options)
        if isinstance(target, str):
            return asyncio.run(coroutine)
        return self.clock.run(coroutine)

    async def arun(
        self,
        target: str | Any,
        model: OpenModel | ClosedModel,
        *,
        slo: SLO | None = None,
        check: bool = True,
        label: str = "",
        metrics_url: str | None = None,
        **options: Any,
    ) -> LoadResult:
        """The async twin of calling the fixture; ``label`` heads the test's entry in the
        report (to tell several load tests of one test apart). The cache hit rate is read
        from perfkit's service (recognised by its ``/healthz``) or from ``metrics_url``,
        a Prometheus endpoint, within half a second before the test and what is left of
        three quarters of a second after it."""
        if isinstance(target, str) and is_virtual_loop(asyncio.get_running_loop()):
            raise PerfkitError(
                "a load test against a URL needs real time, and this async test runs in "
                "virtual time: mark it @pytest.mark.perfkit_clock('real'), or call "
                "load_test(...) from a synchronous test"
            )
        request = options.get("request")
        authorization = _authorization(request) if isinstance(request, Request) else None
        async with CacheCounter(target, metrics_url, authorization) as counter:
            before = await counter.read()
            result = await run_load(target, model, **options)
            after = await counter.read() if before is not None else None
        result.cache_hit_rate = hit_rate(before, after)
        if counter.warning is not None:
            result.warnings.append(counter.warning)
        report = (slo or self.slo).check(result, cache_hit_rate=result.cache_hit_rate)
        self.report = report
        self._record(
            {
                "label": label,
                "result": result.as_dict(),
                "slo": report.as_dict(),
                "passed": report.passed,
                "summary": [*([label] if label else []), *result.lines(), *report.table()],
            }
        )
        if check and not report.passed:
            raise SLOViolation(report, result.target)
        return result


def _authorization(request: Request) -> str | None:
    """The request's ``Authorization`` header: the service's metrics may need it too."""
    found = [value for name, value in request.headers.items() if name.lower() == "authorization"]
    return found[0] if found else None
