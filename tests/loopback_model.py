"""A model with known latency parameters, answering the Messages API on loopback.

An ASGI app (served by a real uvicorn, in a process of its own so that its waits do not
share the client's interpreter lock) that behaves like an LLM server whose latency is
known exactly: the response headers ``connect`` seconds after a request arrives; the first
token after ``queue``, a base drawn from a seeded log-normal, ``prefill_per_token`` per
prefilled input token and ``cache_read_per_token`` per token read from its prompt cache;
then one token per ``per_token`` seconds, each gap with seeded log-normal noise. Every
token is due at a time fixed from the arrival, so a late wake-up does not delay the
tokens after it. Replies stream in the Messages API's server-sent events (the simulator's
``sse_event``), one ``text_delta`` per token, ``max_tokens`` tokens long; input tokens are
counted as the simulator counts them. A system block marked ``cache_control`` is a cached
prefix: the first request writes it, later ones read it.

Run as a script it serves until killed and prints ``listening on <url>`` once it listens:

    python tests/loopback_model.py --seed 0 '{"per_token": 0.005}'
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from perfkit.simulation.anthropic import count_input_tokens, sse_event


@dataclass(frozen=True)
class ModelParameters:
    """The emulated model's latency, in seconds (per token where it says so)."""

    connect: float = 0.02
    queue: float = 0.03
    base_median: float = 0.08
    base_sigma: float = 0.25
    prefill_per_token: float = 2e-5
    cache_read_per_token: float = 2e-6
    per_token: float = 0.005
    per_token_sigma: float = 0.3

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def model_app(parameters: ModelParameters, *, seed: int = 0) -> Starlette:
    """``POST /v1/messages`` answered as the model of ``parameters`` would, noise seeded."""
    rng = random.Random(seed)
    ids = itertools.count()
    cached: set[str] = set()

    async def messages(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        body = json.loads(await request.body())
        index = next(ids)
        total = count_input_tokens(body)
        prefix = cached_prefix(body)
        read = write = 0
        if prefix is not None:
            key, tokens = prefix
            if key in cached:
                read = tokens
            else:
                write = tokens
                cached.add(key)
        uncached = total - read - write
        output = int(body.get("max_tokens", 1))
        base = parameters.base_median * math.exp(rng.gauss(0.0, parameters.base_sigma))
        first = (
            parameters.connect
            + parameters.queue
            + base
            + parameters.prefill_per_token * (uncached + write)
            + parameters.cache_read_per_token * read
        )
        due = [first]
        for _ in range(output - 1):
            gap = parameters.per_token * math.exp(rng.gauss(0.0, parameters.per_token_sigma))
            due.append(due[-1] + gap)
        usage = {
            "input_tokens": uncached,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "output_tokens": output,
        }
        message = {
            "id": f"msg_loopback_{index:06d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        await sleep_until(arrived + parameters.connect)
        headers = {"request-id": f"req_loopback_{index:06d}"}
        if not body.get("stream"):
            await sleep_until(arrived + due[-1])
            text = "".join(token(i) for i in range(output))
            message.update(
                content=[{"type": "text", "text": text}], stop_reason="max_tokens", usage=usage
            )
            return JSONResponse(message, headers=headers)

        async def events() -> AsyncIterator[bytes]:
            yield sse_event("message_start", {"type": "message_start", "message": message})
            block = {"type": "text", "text": ""}
            start = {"type": "content_block_start", "index": 0, "content_block": block}
            yield sse_event("content_block_start", start)
            for i, moment in enumerate(due):
                await sleep_until(arrived + moment)
                delta = {"type": "text_delta", "text": token(i)}
                yield sse_event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                )
            yield sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
            end = {"stop_reason": "max_tokens", "stop_sequence": None}
            yield sse_event(
                "message_delta", {"type": "message_delta", "delta": end, "usage": usage}
            )
            yield sse_event("message_stop", {"type": "message_stop"})

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


def cached_prefix(body: dict[str, Any]) -> tuple[str, int] | None:
    """The cached prefix a request marks (its system blocks up to the last one with
    ``cache_control``) as a key and its tokens, or None."""
    system = body.get("system")
    if not isinstance(system, list):
        return None
    marked = [i for i, block in enumerate(system) if block.get("cache_control")]
    if not marked:
        return None
    blocks = system[: marked[-1] + 1]
    key = json.dumps([body.get("model"), blocks], sort_keys=True)
    return key, count_input_tokens({"system": blocks})


def token(index: int) -> str:
    return "tok" if index == 0 else " tok"


async def sleep_until(moment: float) -> None:
    delay = moment - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parameters", nargs="?", default="{}", help="ModelParameters as JSON")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    parameters = ModelParameters(**json.loads(arguments.parameters))
    listener = socket.create_server(("127.0.0.1", 0))
    print(f"listening on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        model_app(parameters, seed=arguments.seed), log_level="warning", access_log=False
    )
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    sys.exit(main())
