"""A stand-in Anthropic Messages API as a real ASGI app, for serving on loopback: the
simulated assistant's answers in the simulator's wire format, after real waits of one
given latency (not the assistant's own), so an agent's real connection pool and HTTP
stack run end to end."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from perfkit.simulation import LLMLatency, SimRequest, SimulatedAssistant
from perfkit.simulation.anthropic import render, stream_chunks


def fake_anthropic_app(assistant: SimulatedAssistant, latency: LLMLatency) -> Starlette:
    """``POST /v1/messages`` answered by ``assistant`` after ``latency`` (real time)."""
    ids = itertools.count()

    async def messages(request: Request) -> Response:
        body = json.loads(await request.body())
        index = next(ids)
        reply = assistant(SimRequest(index, "POST", str(request.url), {}, body, 0.0))
        message = render(reply, body, message_id=f"msg_loopback_{index:06d}")
        plan = latency.plan(message.output_tokens)
        if not body.get("stream"):
            await asyncio.sleep(plan.total)
            return JSONResponse(message.to_json())

        async def events() -> AsyncIterator[bytes]:
            for delay, data in stream_chunks(message, plan):
                if delay:
                    await asyncio.sleep(delay)
                yield data

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
