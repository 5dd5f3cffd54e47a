"""What a load test measured: counts, throughput, error causes and latency percentiles,
as a terminal table, Markdown and JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from perfkit.load._histogram import PERCENTILES, LatencyHistogram


@dataclass(frozen=True)
class Progress:
    """The counts of a running load test, reported once a second."""

    elapsed: float
    sent: int
    completed: int
    errors: int
    in_flight: int

    def line(self) -> str:
        return (
            f"{self.elapsed:6.1f} s  sent {self.sent:,}  completed {self.completed:,}  "
            f"errors {self.errors:,}  in flight {self.in_flight:,}"
        )


@dataclass
class LoadResult:
    """A finished load test. Latency runs from each request's intended send time to the
    end of its response; service time from when it was actually sent; time to first
    token to its first server-sent event. Only successful requests are in the latency
    histograms; every failure is counted in ``errors`` by cause."""

    target: str
    model: str
    duration: float
    warmup: float
    requests: int
    successes: int
    completed_in_window: int
    """Successful requests that finished inside the measured period (sent at any time)."""
    errors: dict[str, int]
    warmup_requests: int
    latency: LatencyHistogram
    service_time: LatencyHistogram
    ttft: LatencyHistogram
    send_lag: LatencyHistogram
    warnings: list[str] = field(default_factory=list)
    cache_hit_rate: float | None = None
    """The service's cache hit rate over the test, when it reports its cache."""

    @property
    def measured_seconds(self) -> float:
        return self.duration - self.warmup

    @property
    def rps(self) -> float:
        """Throughput: successful requests that finished per second of the measured period.
        A service that keeps up finishes what it is offered; one that falls behind does not."""
        return self.completed_in_window / self.measured_seconds

    @property
    def offered_rps(self) -> float:
        """Requests per second the test meant to send in the measured period."""
        return self.requests / self.measured_seconds

    @property
    def error_rate(self) -> float:
        """Failed requests over all measured requests (0 when none was sent)."""
        return sum(self.errors.values()) / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        histograms = {
            "latency": self.latency,
            "service_time": self.service_time,
            "ttft": self.ttft,
            "send_lag": self.send_lag,
        }
        return {
            "target": self.target,
            "model": self.model,
            "duration": self.duration,
            "warmup": self.warmup,
            "requests": self.requests,
            "successes": self.successes,
            "errors": dict(self.errors),
            "error_rate": round(self.error_rate, 6),
            "rps": round(self.rps, 3),
            "offered_rps": round(self.offered_rps, 3),
            "completed_in_window": self.completed_in_window,
            "warmup_requests": self.warmup_requests,
            **{name: histogram.as_dict() for name, histogram in histograms.items()},
            "cache_hit_rate": self.cache_hit_rate,
            "warnings": list(self.warnings),
        }

    def lines(self) -> list[str]:
        """The result as a summary table for a terminal."""
        errors = sum(self.errors.values())
        causes = ", ".join(f"{cause} {count:,}" for cause, count in self.errors.items())
        lines = [
            f"{self.target}: {self.model}, {self.duration:g} s"
            + (f" ({self.warmup:g} s warm-up excluded)" if self.warmup else ""),
            f"requests {self.requests:,}  ok {self.successes:,}  errors {errors:,} "
            f"({self.error_rate:.2%})" + (f": {causes}" if causes else ""),
            f"throughput {self.rps:,.2f} requests/s (offered {self.offered_rps:,.2f})"
            + (
                f", cache hit rate {self.cache_hit_rate:.1%}"
                if self.cache_hit_rate is not None
                else ""
            ),
        ]
        table = [("", *(f"p{q:g}" for q in PERCENTILES), "max")]
        for label, histogram in self._histograms().items():
            table.append((label, *_cells(histogram)))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
        return lines + [f"WARNING: {warning}" for warning in self.warnings]

    def markdown(self) -> str:
        """The result as Markdown."""
        errors = ", ".join(f"{cause}: {count:,}" for cause, count in self.errors.items()) or "none"
        parts = [
            f"### Load test: {self.target}",
            "",
            f"{self.model}, {self.duration:g} s"
            + (f" ({self.warmup:g} s warm-up excluded)" if self.warmup else "")
            + f". {self.requests:,} requests, {self.successes:,} ok, error rate "
            f"{self.error_rate:.2%} ({errors}), throughput {self.rps:,.2f} requests/s "
            f"(offered {self.offered_rps:,.2f}).",
            "",
            "| | " + " | ".join(f"p{q:g}" for q in PERCENTILES) + " | max |",
            "|---|" + "---|" * (len(PERCENTILES) + 1),
        ]
        for label, histogram in self._histograms().items():
            parts.append(f"| {label} | " + " | ".join(_cells(histogram)) + " |")
        parts += [f"\n**Warning:** {warning}" for warning in self.warnings]
        return "\n".join(parts) + "\n"

    def _histograms(self) -> Mapping[str, LatencyHistogram]:
        shown = {"latency": self.latency, "service time": self.service_time}
        if self.ttft.count:
            shown["time to first token"] = self.ttft
        return shown


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def _cells(histogram: LatencyHistogram) -> list[str]:
    """A histogram's percentiles and max, or dashes when it recorded nothing."""
    if not histogram.count:
        return ["-"] * (len(PERCENTILES) + 1)
    return [_ms(histogram.percentile(q)) for q in PERCENTILES] + [_ms(histogram.max)]
