"""What a load test sends, and when: the request, and an open or a closed workload model.

In an **open model** requests arrive on a schedule (a constant rate, or a Poisson process
at that rate) whatever the server does, as users of a public service do; each request's
latency is measured from the moment the schedule meant to send it, so a server that
stalls is charged for every request the stall delayed (no "coordinated omission"). In a
**closed model** a fixed number of users each send a request, wait for the reply, think,
and send the next: a slow server slows the users down, and hides its own latency.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from perfkit.load._constants import ARRIVALS, METHODS, Arrivals

TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
"""The characters of an HTTP header name (RFC 9110's ``tchar``)."""
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
"""Headers whose values a repr shows as ``***``."""


@dataclass(frozen=True, repr=False)
class Request:
    """One request of a load test: ``json`` is sent as the body; ``stream`` reads the
    response as server-sent events and times the first one (time to first token)."""

    method: str = "GET"
    path: str = "/"
    json: Any = None
    stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if not _is_visible_ascii(self.path) or not self.path.startswith("/"):
            raise ValueError(
                "path must be ASCII and start with '/', with no spaces or control characters "
                f"(percent-encode them), got {self.path!r}"
            )
        for name, value in self.headers.items():
            if not (isinstance(name, str) and name and set(name) <= TOKEN):
                raise ValueError(f"a header name must be a token, got {name!r}")
            if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
                raise ValueError(f"header {name}'s value must be a str without CR, LF or NUL")
            if not value.isascii():  # the value is not shown: it may be a secret
                raise ValueError(
                    f"header {name}'s value must be ASCII text (httpx sends no other); "
                    "percent-encode or base64 anything else"
                )
        try:
            json.dumps(self.json)
        except (TypeError, ValueError) as error:
            raise ValueError(f"json must be JSON-serializable: {error}") from None

    def __repr__(self) -> str:
        headers = {
            name: "***" if name.lower() in SECRET_HEADERS else value
            for name, value in self.headers.items()
        }
        return (
            f"Request(method={self.method!r}, path={self.path!r}, json={self.json!r}, "
            f"stream={self.stream!r}, headers={headers!r})"
        )


def _is_visible_ascii(text: str) -> bool:
    return all(" " < c < "\x7f" for c in text)


RequestFactory = Callable[[int], Request]
"""Makes the ``n``-th request of a test (to vary users and questions)."""


@dataclass(frozen=True)
class OpenModel:
    """Requests arrive at ``rate`` per second: evenly spaced, or as a Poisson process."""

    rate: float
    arrivals: Arrivals = "constant"
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 < self.rate < math.inf):
            raise ValueError(f"rate must be a number of requests per second > 0, got {self.rate!r}")
        if self.arrivals not in ARRIVALS:
            raise ValueError(
                f"arrivals must be one of {', '.join(ARRIVALS)}; got {self.arrivals!r}"
            )

    def send_times(self, duration: float) -> Iterator[float]:
        """Seconds from the start at which each request is meant to be sent."""
        rng = random.Random(self.seed)
        moment, n = 0.0, 0
        while True:
            if self.arrivals == "constant":
                moment = n / self.rate
            else:
                moment += rng.expovariate(self.rate)
            if moment >= duration:
                return
            yield moment
            n += 1

    def count_after(self, offset: float, duration: float) -> int:
        """How many send times fall after ``offset`` (one of them) and before ``duration``:
        exact for constant arrivals, the expected count for Poisson ones (for a generator
        too far behind to draw them one by one)."""
        if self.arrivals == "poisson":
            return round(max(0.0, duration - offset) * self.rate)
        later = math.ceil(duration * self.rate)  # send times n / rate < duration
        while later > 0 and (later - 1) / self.rate >= duration:
            later -= 1
        while later / self.rate < duration:
            later += 1
        return max(0, later - round(offset * self.rate) - 1)

    def describe(self) -> str:
        return f"open model, {self.rate:g} requests/s ({self.arrivals} arrivals)"


@dataclass(frozen=True)
class ClosedModel:
    """``users`` users, each sending a request, waiting for the reply, then thinking
    ``think_time`` seconds before the next."""

    users: int
    think_time: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.users, bool) or not isinstance(self.users, int) or self.users < 1:
            raise ValueError(f"users must be an int >= 1, got {self.users!r}")
        if not (0 <= self.think_time < math.inf):
            raise ValueError(
                f"think_time must be a number of seconds >= 0, got {self.think_time!r}"
            )

    def describe(self) -> str:
        return f"closed model, {self.users} user(s) thinking {self.think_time:g} s"
