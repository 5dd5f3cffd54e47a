"""``perfkit serve``: the agent service on uvicorn, against the simulated API by default."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from starlette.applications import Starlette

from perfkit.agents import Agent, NaiveAgent, OptimizedAgent, demo_tools
from perfkit.cache import MultiLayerCache, connect_redis
from perfkit.service._app import create_app
from perfkit.service._auth import TOKENS_ENV, BearerTokens, is_loopback
from perfkit.service._limits import ServiceLimits, guarded_server, repeats_collapsed
from perfkit.service._metrics import AgentMetrics
from perfkit.simulation import AnthropicSimulator, SimulatedAssistant

AgentKind = Literal["naive", "optimized"]
Backend = Literal["simulated", "anthropic"]
AGENT_KINDS: tuple[AgentKind, ...] = ("naive", "optimized")
BACKENDS: tuple[Backend, ...] = ("simulated", "anthropic")

SIMULATED_HANDSHAKE = 0.1
"""Seconds to open a connection to the simulated API (TCP and TLS handshakes)."""

SYSTEM_PROMPT = "You are a helpful assistant. Use the tools when a question needs live data."


def build_agent(kind: AgentKind, *, redis_url: str | None = None, seed: int = 0) -> Agent:
    """A naive or optimized agent with the demo tools (and, optimized, a cache on Redis
    at ``redis_url`` if given, else in-process only). The Redis client is asyncio's, with
    the cache's latency budget (short timeouts, no retries): a slow Redis never stalls
    the event loop, it only opens the cache's breaker."""
    if kind not in AGENT_KINDS:
        raise ValueError(f"agent must be one of {', '.join(AGENT_KINDS)}, got {kind!r}")
    options: dict[str, Any] = {"tools": demo_tools(seed=seed), "system": SYSTEM_PROMPT}
    if kind == "naive":
        return NaiveAgent(**options)
    redis_client = None if redis_url is None else connect_redis(redis_url, asynchronous=True)
    return OptimizedAgent(cache=MultiLayerCache(redis_client, namespace="agent"), **options)


def simulated_backend(*, seed: int = 0) -> AnthropicSimulator:
    """The simulated Anthropic API the service talks to by default: the
    :class:`SimulatedAssistant` (realistic answer lengths, tool calls and latency) behind
    a modeled connection handshake, on real time, logging only its newest 100 requests."""
    simulator = AnthropicSimulator(seed=seed, handshake=SIMULATED_HANDSHAKE, max_logged=100)
    simulator.respond_with(SimulatedAssistant(seed=seed))
    return simulator


def build_app(
    *,
    agent: AgentKind = "optimized",
    backend: Backend = "simulated",
    seed: int = 0,
    redis_url: str | None = None,
    environ: dict[str, str] | None = None,
    token_file: Path | None = None,
) -> Starlette:
    """The service ``perfkit serve`` runs. ``backend="anthropic"`` needs
    ``ANTHROPIC_API_KEY``; the simulated backend needs nothing. Clients must present a
    token if ``$PERFKIT_SERVICE_TOKENS`` or ``token_file`` gives any."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    env = os.environ if environ is None else environ
    if backend == "anthropic" and not env.get("ANTHROPIC_API_KEY"):
        raise ValueError("--backend anthropic needs the ANTHROPIC_API_KEY environment variable")
    tokens = BearerTokens.from_sources(environ=env, token_file=token_file)
    the_agent = build_agent(agent, redis_url=redis_url, seed=seed)
    simulator = None if backend == "anthropic" else simulated_backend(seed=seed)

    @contextlib.asynccontextmanager
    async def resources(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            redis_client = the_agent.cache.redis if isinstance(the_agent, OptimizedAgent) else None
            if redis_client is not None:
                stack.push_async_callback(redis_client.aclose)
            if simulator is not None:
                stack.enter_context(simulator)
            yield

    if simulator is None:
        return create_app(the_agent, info={"backend": backend}, tokens=tokens, lifespan=resources)
    the_agent.client_options.setdefault("api_key", "simulated")
    return create_app(
        the_agent,
        metrics=AgentMetrics(the_agent, connections=lambda: simulator.open_connections),
        info={"backend": backend},
        lifespan=resources,
        tokens=tokens,
    )


def run(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    allow_unauthenticated: bool = False,
    limits: ServiceLimits | None = None,
) -> None:
    """Serve ``app`` on uvicorn until interrupted (what ``perfkit serve`` does), under
    ``limits`` (connections, deadlines), with repeated log lines collapsed.

    On an address other machines can reach, ``app`` must require tokens (see
    :func:`create_app`) unless ``allow_unauthenticated`` says otherwise."""
    check_exposure(app, host, allow_unauthenticated=allow_unauthenticated)
    limits = limits if limits is not None else ServiceLimits()
    with repeats_collapsed():
        server = guarded_server(
            app, limits, host=host, port=port, log_level=log_level, lifespan="on"
        )
        server.run()


def check_exposure(app: Starlette, host: str, *, allow_unauthenticated: bool = False) -> None:
    """Refuse to serve ``app`` without authentication on a non-loopback ``host``."""
    if allow_unauthenticated or is_loopback(host) or getattr(app.state, "tokens", None):
        return
    raise ValueError(
        f"--host {host} is reachable from other machines, so clients must authenticate: "
        f"give tokens in ${TOKENS_ENV} or --token-file, or pass --allow-unauthenticated"
    )
