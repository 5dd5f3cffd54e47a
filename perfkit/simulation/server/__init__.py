"""The provider-neutral simulated-server core: interception of httpx and httpx2 requests,
routes, scripts and faults, the request log, modeled connections and delivery on a
clock. Each provider's simulator (``perfkit.simulation.anthropic``,
``perfkit.simulation.openai``) builds on :class:`SimulatedServer`."""

from __future__ import annotations

from perfkit.simulation.server._connections import ModeledConnections
from perfkit.simulation.server._intercept import (
    DELIVERY_KEY,
    MAX_FAILURES_KEPT,
    REGISTRY,
    Delivery,
    ScheduledStream,
    is_loopback,
)
from perfkit.simulation.server._log import RequestLog, Script, SimRequest
from perfkit.simulation.server._patches import PATCH_TARGETS, PatchTarget
from perfkit.simulation.server._replies import (
    Block,
    Fault,
    FaultKind,
    RedactedThinkingBlock,
    Reply,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    count_tokens,
    tokenize,
)
from perfkit.simulation.server._server import (
    DEFAULT_MAX_LOGGED,
    DEFAULT_TIMEOUT_SECONDS,
    Answer,
    Responder,
    SimulatedServer,
    check_script,
)

__all__ = [
    "DEFAULT_MAX_LOGGED",
    "DEFAULT_TIMEOUT_SECONDS",
    "DELIVERY_KEY",
    "MAX_FAILURES_KEPT",
    "PATCH_TARGETS",
    "REGISTRY",
    "Answer",
    "Block",
    "Delivery",
    "Fault",
    "FaultKind",
    "ModeledConnections",
    "PatchTarget",
    "RedactedThinkingBlock",
    "Reply",
    "RequestLog",
    "Responder",
    "ScheduledStream",
    "Script",
    "SimRequest",
    "SimulatedServer",
    "TextBlock",
    "ThinkingBlock",
    "ToolUseBlock",
    "check_script",
    "count_tokens",
    "is_loopback",
    "tokenize",
]
