"""A real HTTPS server on loopback (hypercorn, HTTP/1.1 and HTTP/2) for pooling tests.

Each response reports the HTTP version the server spoke and the client's port, so a
test can count the TCP connections it really used from the server's side too.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets


class _BoundConfig(Config):
    """A hypercorn config serving TLS on a socket bound beforehand (port 0: no races)."""

    def __init__(self, listener: socket.socket) -> None:
        super().__init__()
        self._listener = listener

    def create_sockets(self) -> Sockets:
        return Sockets([self._listener], [], [])


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/slow?seconds=S`` answers after S seconds; ``/v1/messages`` answers like the
    Messages API; every other path echoes what the server saw."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    query = dict(pair.split("=") for pair in scope["query_string"].decode().split("&") if pair)
    if "seconds" in query:
        await asyncio.sleep(float(query["seconds"]))
    seen = {"http_version": scope["http_version"], "client_port": scope["client"][1]}
    if scope["path"] == "/v1/messages":
        seen = _message(seen)
    body = json.dumps(seen).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _message(seen: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_loopback",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5",
        "content": [{"type": "text", "text": json.dumps(seen)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


class LoopbackHTTPS:
    """The running server: its base ``url``, and SSL contexts that trust it."""

    def __init__(self, url: str, ca: trustme.CA) -> None:
        self.url = url
        self._ca = ca

    def trust(self) -> ssl.SSLContext:
        """A new client SSL context trusting the server (one per client: httpcore sets
        each connection's ALPN protocols on the context it is given)."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context


@contextmanager
def running_https_server() -> Iterator[LoopbackHTTPS]:
    """Serve :func:`app` over TLS on 127.0.0.1 in a thread of its own until the block ends."""
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    config_ssl = certificate.private_key_and_cert_chain_pem
    listener = socket.create_server(("127.0.0.1", 0))
    config = _BoundConfig(listener)
    with config_ssl.tempfile() as pem:
        config.certfile = config.keyfile = pem
        config.alpn_protocols = ["h2", "http/1.1"]
        config.loglevel = "WARNING"
        config.accesslog = None
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        started = threading.Event()

        async def main() -> None:
            started.set()
            await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield LoopbackHTTPS(f"https://127.0.0.1:{listener.getsockname()[1]}", ca)
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()
            listener.close()
