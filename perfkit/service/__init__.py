"""The agent service: an ASGI app with chat (JSON and SSE), Prometheus metrics and a
health check, and ``perfkit serve`` to run it on uvicorn."""

from __future__ import annotations

from perfkit.service._app import ChatRequest, RequestError, create_app, parse_chat_request
from perfkit.service._auth import TOKENS_ENV, BearerTokens
from perfkit.service._limits import ServiceLimits
from perfkit.service._metrics import (
    ERROR_TYPES,
    LATENCY_BUCKETS,
    AgentMetrics,
    error_type,
)
from perfkit.service._serve import (
    SYSTEM_PROMPT,
    build_agent,
    build_app,
    run,
    simulated_backend,
)

__all__ = [
    "ERROR_TYPES",
    "LATENCY_BUCKETS",
    "SYSTEM_PROMPT",
    "TOKENS_ENV",
    "AgentMetrics",
    "BearerTokens",
    "ChatRequest",
    "RequestError",
    "ServiceLimits",
    "build_agent",
    "build_app",
    "create_app",
    "error_type",
    "parse_chat_request",
    "run",
    "simulated_backend",
]
