"""What a load test reads from the service itself: its cache's hits and misses, from the
Prometheus text of its ``/metrics`` endpoint (perfkit's agent service exposes them).

Only perfkit's service is read (recognised by its ``/healthz``), or the endpoint the user
names (``metrics_url``). Each reading has a deadline for the whole exchange and a cap on
what it reads; a reading that fails leaves the hit rate unmeasured, with a warning saying
why, and never fails the load test or holds it up."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from perfkit._url import parse_http_url

METRICS_DEADLINE = 0.5
"""Seconds one reading (``/healthz`` and ``/metrics`` together) may take in all."""
BUDGET_READINGS = 1.5
"""All the readings of one counter (a load test makes two) may take this many deadlines
in all: the first may take its whole deadline, the second then gets what is left, so a
service that answers just inside the deadline twice cannot push a load test past
duration + timeout + 1 s."""
MAX_METRICS_BYTES = 1 << 20
"""The largest ``/metrics`` read (perfkit's service sends a few kilobytes)."""
MAX_HEALTHZ_BYTES = 64 << 10
HITS = "perfkit_cache_hits_total"
MISSES = "perfkit_cache_misses_total"


class _Unreadable(Exception):
    """Why a reading failed, as the end of a sentence naming the endpoint."""


class CacheCounter:
    """Reads a service's cache hits and misses (see the module's docstring), on one client
    for all its readings; ``warning`` says why a reading found none, when that matters::

        async with CacheCounter(target) as counter:
            before = await counter.read()
            ...
            rate = hit_rate(before, await counter.read())
    """

    def __init__(
        self,
        target: str | Any,
        metrics_url: str | None = None,
        authorization: str | None = None,
        deadline: float = METRICS_DEADLINE,
    ) -> None:
        """``authorization`` is the target's ``Authorization`` header (the load's
        requests send it): it goes to the target's endpoints, not to ``metrics_url``."""
        self._deadline = deadline
        self._left = deadline * BUDGET_READINGS
        self._named = metrics_url is not None
        self._recognised = self._named  # as perfkit's service, or named by the user
        self.warning: str | None = None
        headers = {"Accept-Encoding": "identity"}  # a compressed body would escape the cap
        url = None
        if metrics_url is not None:
            url = parse_http_url(metrics_url, "metrics_url")
            self._metrics, self._healthz, self.where = url.origin + url.path, "", url.redacted
            authorization = url.authorization  # another endpoint: the target's is not its
        elif isinstance(target, str):
            url = parse_http_url(target, "target")
            base = url.origin + url.path.rstrip("/")
            self._metrics, self._healthz = f"{base}/metrics", f"{base}/healthz"
            self.where = f"{url.redacted.rstrip('/')}/metrics"
            authorization = authorization or url.authorization  # a header beats the URL's
        else:
            self._metrics, self._healthz = "http://app/metrics", "http://app/healthz"
            self.where = "the app's /metrics"
        if authorization is not None:
            headers["Authorization"] = authorization
        if url is None:
            app: Any = target
            transport = httpx.ASGITransport(app=app)
            self._client = httpx.AsyncClient(transport=transport, headers=headers)
            return
        # verify: a plain http:// client has no certificates to load (that takes a while).
        self._client = httpx.AsyncClient(
            headers=headers, timeout=deadline, verify=url.scheme == "https"
        )

    async def __aenter__(self) -> CacheCounter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    async def read(self) -> tuple[float, float] | None:
        """The total hits and misses so far, or None (no cache, or the reading failed)."""
        loop = asyncio.get_running_loop()
        start, allowed = loop.time(), min(self._deadline, self._left)
        try:
            async with asyncio.timeout(allowed):
                if not self._recognised:
                    if not await _is_perfkit_service(self._client, self._healthz):
                        return None
                    self._recognised = True
                return await self._counts()
        except TimeoutError:
            self._warn(f"did not answer within {allowed:.2g} s")
        except _Unreadable as error:
            self._warn(str(error))
        except Exception as error:  # a failed reading never fails the load test
            self._warn(f"could not be read ({type(error).__name__})")
        finally:
            self._left = max(0.0, self._left - (loop.time() - start))
        return None

    async def _counts(self) -> tuple[float, float] | None:
        status, body = await _get(self._client, self._metrics, MAX_METRICS_BYTES)
        if status != 200:
            raise _Unreadable(f"answered {status}")
        try:
            counts = parse_cache_counts(body.decode("utf-8", "replace"))
        except ValueError as error:  # a counter's value is not a number
            reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
            raise _Unreadable(f"reported unreadable perfkit cache counters ({reason})") from None
        if counts is None and self._named:  # the user named it: say it had none
            raise _Unreadable("reported no perfkit cache counters")
        return counts

    def _warn(self, reason: str) -> None:
        if self._recognised:  # a service not known to be perfkit's is none of our business
            self.warning = f"the cache hit rate was not measured: {self.where} {reason}"


async def _is_perfkit_service(client: httpx.AsyncClient, url: str) -> bool:
    """Whether ``url`` answers as perfkit's ``/healthz`` does: ``{"status": "ok",
    "agent": ...}``."""
    try:
        status, body = await _get(client, url, MAX_HEALTHZ_BYTES)
        health = json.loads(body) if status == 200 else None
    except (_Unreadable, ValueError):
        return False
    return isinstance(health, dict) and health.get("status") == "ok" and "agent" in health


async def _get(client: httpx.AsyncClient, url: str, max_bytes: int) -> tuple[int, bytes]:
    """GET ``url``: its status, and its body if 200 (at most ``max_bytes``)."""
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            return response.status_code, b""
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > max_bytes:
                raise _Unreadable(f"sent more than {max_bytes:,} bytes")
        return 200, bytes(body)


def parse_cache_counts(exposition: str) -> tuple[float, float] | None:
    """Total hits (every layer) and misses of every cache in a Prometheus exposition.

    Only the two counters' sample lines are read, each in one pass: a full parser can
    take seconds on a hostile megabyte (a label value of escaped quotes), and a reading
    must end within its deadline, which cannot interrupt work on the event loop.

    >>> text = 'perfkit_cache_hits_total{layer="l1"} 3\\nperfkit_cache_misses_total 1\\n'
    >>> parse_cache_counts(text)
    (3.0, 1.0)
    """
    totals = {HITS: 0.0, MISSES: 0.0}
    found = False
    for line in exposition.splitlines():
        name, value = _sample(line)
        if name in totals:
            found = True
            totals[name] += value
    return (totals[HITS], totals[MISSES]) if found else None


def _sample(line: str) -> tuple[str, float]:
    """A sample line's metric name and value (("", 0.0) for any other line): ``name
    value``, ``name{labels} value``, either with a timestamp after. The value follows the
    line's last ``}`` (a label value may hold one; a value or timestamp cannot)."""
    name = line[: len(line) - len(line.lstrip(_NAME_CHARACTERS))] if line[:1] != "#" else ""
    if name not in (HITS, MISSES):
        return "", 0.0
    rest = line[len(name) :]
    if rest.startswith("{"):
        rest = rest[rest.rfind("}") + 1 :]
    elif rest[:1] not in (" ", "\t"):
        return "", 0.0
    fields = rest.split()
    if not fields:
        raise ValueError(f"{name} has no value")
    return name, float(fields[0])


_NAME_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:"


def hit_rate(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    """The hit rate of the lookups between two readings (None without both, or none)."""
    if before is None or after is None:
        return None
    hits, misses = after[0] - before[0], after[1] - before[1]
    return hits / (hits + misses) if hits + misses > 0 else None
