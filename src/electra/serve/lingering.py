"""Lingering close: a response sent before the request body has all arrived reaches every client.

An answer that needs no body (413 by ``Content-Length``, 404, 405) or stops reading it halfway (413 while a chunked
body streams in) leaves the rest of the body unread. If the server then closes the connection (``Connection:
close``, as Python's ``urllib`` sends) with unread bytes in its socket, the kernel answers with a TCP reset, and a
client that writes its whole body before reading (``urllib``, ``requests``) gets "connection reset by peer"
instead of the response. As nginx's lingering close (``lingering_time``, ``lingering_timeout``), this middleware
sends such a response with ``Connection: close``, then reads and discards what is left of the body, at most
``max_bytes`` bytes and ``max_seconds`` seconds, and only then lets the server close the connection.

Nothing is discarded when the declared ``Content-Length`` left is over ``max_bytes`` (the connection is closed at
once: such a client may see the reset), or when the client sent ``Expect: 100-continue`` and the app never read
the body (no ``100 Continue`` went out, so the client sends no body: curl's way for bodies over 1 MiB).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class LingeringBody:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: Any, max_bytes: int = 64 << 20, max_seconds: float = 5.0):
        self.app, self.max_bytes, self.max_seconds = app, max_bytes, max_seconds

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        length = headers.get(b"content-length", b"")
        declared = int(length) if length.isdigit() else None
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if not chunked and not declared:  # no body: nothing can be left unread
            await self.app(scope, receive, send)
            return
        expects_continue = b"100-continue" in headers.get(b"expect", b"").lower()
        state = {"read": 0, "done": False, "asked": False, "linger": False}

        async def receive_body() -> dict:
            state["asked"] = True
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                state["done"] = True
            state["read"] += len(message.get("body", b""))
            return message

        async def send_then_linger(message: dict) -> None:
            if message["type"] == "http.response.start" and not state["done"]:
                state["linger"] = True
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*kept, (b"connection", b"close")]}
            elif state["linger"] and message["type"] == "http.response.body" and not message.get("more_body"):
                await send({**message, "more_body": True})  # the whole response is out: the client can read it
                if not (expects_continue and not state["asked"]) and (
                        declared is None or declared - state["read"] <= self.max_bytes):
                    await self._discard(receive)
                message = {"type": "http.response.body", "body": b"", "more_body": False}  # now the server closes
            await send(message)

        await self.app(scope, receive_body, send_then_linger)

    async def _discard(self, receive: Callable) -> None:
        deadline, discarded = time.monotonic() + self.max_seconds, 0
        while discarded <= self.max_bytes and (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(receive(), left)
            except asyncio.TimeoutError:
                return
            discarded += len(message.get("body", b""))
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                return
