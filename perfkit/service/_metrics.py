"""Prometheus metrics of the agent service, with bounded labels (never a user id)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import anthropic
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from perfkit._pricing import price_table
from perfkit.agents import Agent, AgentError, AgentReply, OptimizedAgent
from perfkit.cache import register_cache_metrics

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds, from a cached reply to a long generation: LLM calls take seconds to minutes
(prometheus_client's default buckets stop at 10 s), with a boundary on each of the
production targets p50 < 1 s, p95 < 2 s and p99 < 5 s, so they are read exactly."""

ENDPOINTS = ("chat", "stream")

ERROR_TYPES = (
    "invalid_json",
    "invalid_request",
    "payload_too_large",
    "unsupported_media_type",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "rate_limited",
    "overloaded",
    "upstream_error",
    "timeout",
    "connection",
    "agent",
    "internal",
)
"""Every value of the ``type`` label of ``perfkit_agent_errors_total``."""

TOKEN_KINDS = ("input", "cache_creation", "cache_read", "output")
"""The ``kind`` label of ``perfkit_llm_tokens_total``: uncached input, cache writes,
cache reads and output, as the API's ``usage`` reports them."""
MAX_MODELS = 20
"""Distinct ``model`` label values kept; later unknown names count as ``other`` (the
name comes from the API's answer, and a label's values must stay bounded)."""


def error_type(error: BaseException) -> str:
    """The bounded error type of an exception raised while answering a chat."""
    if isinstance(error, anthropic.RateLimitError):
        return "rate_limited"
    if isinstance(error, anthropic.APIStatusError):
        return "overloaded" if error.status_code == 529 else "upstream_error"
    if isinstance(error, anthropic.APITimeoutError):
        return "timeout"
    if isinstance(error, anthropic.APIConnectionError):
        return "connection"
    if isinstance(error, AgentError):
        return "agent"
    return "internal"


class AgentMetrics:
    """The service's metrics in a registry of their own (one per app, so tests and
    several apps in one process never collide).

    >>> from perfkit.agents import NaiveAgent
    >>> metrics = AgentMetrics(NaiveAgent())
    >>> metrics.count_error("timeout")
    >>> b'perfkit_agent_errors_total{type="timeout"} 1.0' in metrics.exposition()
    True
    """

    def __init__(
        self,
        agent: Agent,
        *,
        registry: CollectorRegistry | None = None,
        connections: Callable[[], float] | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "perfkit_agent_requests", "Chat requests answered", ["endpoint", "status"], registry=r
        )
        self.response_seconds = Histogram(
            "perfkit_agent_response_seconds",
            "Time from a chat request to the end of its response",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft_seconds = Histogram(
            "perfkit_agent_time_to_first_token_seconds",
            "Time from a chat request to the first text the user sees",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_progress = Gauge(
            "perfkit_agent_requests_in_progress",
            "Chat requests being answered",
            ["endpoint"],
            registry=r,
        )
        self.active_connections = Gauge(
            "perfkit_agent_active_connections",
            "HTTP connections to the model API open now",
            registry=r,
        )
        source = connections if connections is not None else (lambda: agent.connections.open)
        self.active_connections.set_function(source)
        self.tokens = Counter(
            "perfkit_agent_tokens", "Model tokens, input and output", ["direction"], registry=r
        )
        self.llm_tokens = Counter(
            "perfkit_llm_tokens",
            "Model tokens by kind (input is the uncached rest of each prompt)",
            ["model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "perfkit_llm_cost_usd",
            "Dollars the model's usage cost, at perfkit's price table",
            ["model"],
            registry=r,
        )
        self._models: set[str] = set()
        self._models_lock = threading.Lock()
        self.tool_calls = Counter("perfkit_agent_tool_calls", "Tools the agent ran", registry=r)
        self.errors = Counter(
            "perfkit_agent_errors", "Failed requests by type", ["type"], registry=r
        )
        r.register(_RetryCollector(agent))
        if isinstance(agent, OptimizedAgent):
            register_cache_metrics({"agent": agent.cache}, registry=r)
        for endpoint in ENDPOINTS:  # every series from the start, so dashboards show 0
            self.requests.labels(endpoint, "200")
            self.response_seconds.labels(endpoint)
            self.ttft_seconds.labels(endpoint)
            self.in_progress.labels(endpoint)
        for direction in ("input", "output"):
            self.tokens.labels(direction)
        for kind in ERROR_TYPES:
            self.errors.labels(kind)
        self._count_usage(agent.model, AgentReply("", 0, 0, 0, 0, None))

    def count_usage(self, reply: AgentReply) -> None:
        """Count a reply's tokens by kind and what they cost, under the model that
        answered it."""
        self._count_usage(reply.model, reply)

    def _count_usage(self, model: str, reply: AgentReply) -> None:
        label = self._model_label(model)
        counts = (
            reply.input_tokens,
            reply.cache_creation_input_tokens,
            reply.cache_read_input_tokens,
            reply.output_tokens,
        )
        for kind, tokens in zip(TOKEN_KINDS, counts, strict=True):
            self.llm_tokens.labels(label, kind).inc(tokens)
        self.cost.labels(label).inc(reply.usd)

    def _model_label(self, model: str) -> str:
        with self._models_lock:
            if model in self._models:
                return model
            if len(self._models) < MAX_MODELS and (model and price_table().knows(model)):
                self._models.add(model)
                return model
        return "other"

    def count_error(self, kind: str) -> None:
        if kind not in ERROR_TYPES:
            raise ValueError(f"unknown error type {kind!r}; one of {', '.join(ERROR_TYPES)}")
        self.errors.labels(kind).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)


class _RetryCollector(Collector):
    """The SDK's retries, read from the agent when Prometheus scrapes."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        retries = CounterMetricFamily(
            "perfkit_agent_retries", "Requests the SDK retried (429, 5xx, connection errors)"
        )
        retries.add_metric([], self.agent.retries)
        yield retries
