"""A small ASGI middleware in front of the app: Host and Origin checks, and the request body size limit.

The body of a POST is read here, up to the limit, before the app sees it: an over-long upload is answered
413 with a JSON error at once, whether it declared its length or came chunked. At most ``max_concurrent``
POSTs are read and handled at once; the others wait their turn with their bodies unread, so that memory
stays bounded however many clients upload together.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DRAIN_LIMIT = 16 * 1024 * 1024  # past the limit, read (and drop) this much more so the client sees the answer


class Guard:
    def __init__(self, app: ASGIApp, max_body: int, allowed_hosts: tuple[str, ...], max_concurrent: int = 16) -> None:
        self.app = app
        self.max_body = max_body
        self.slots = asyncio.Semaphore(max_concurrent)
        self.allowed_hosts = None if "*" in allowed_hosts else {h.lower().strip("[]") for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self._check_host(headers) or self._check_origin(scope, headers)
        if problem:
            await _answer(send, *problem)
            return
        if scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        async with self.slots:
            body = await self._read_body(receive, headers)
            if body is None:
                await _answer(send, 413, f"the request body is larger than the limit of {self.max_body:,} bytes",
                              close=True)
                return
            await self.app(scope, _replay(body, receive), send)

    def _check_host(self, headers: Headers) -> tuple[int, str] | None:
        if self.allowed_hosts is None:
            return None
        host = (urlsplit("//" + headers.get("host", "")).hostname or "").lower()
        if host not in self.allowed_hosts:
            return 400, f"host {host!r} is not served here (allowed: {', '.join(sorted(self.allowed_hosts))})"
        return None

    def _check_origin(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        """Refuses writes from another site's page (a browser sends Origin with them)."""
        if scope["method"] not in UNSAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != headers.get("host", "").lower()):
            return 403, f"cross-origin request from {origin!r} refused"
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross-site request refused"
        return None

    async def _read_body(self, receive: Receive, headers: Headers) -> bytes | None:
        """The whole body, or None when it is over the limit (what was sent is drained, up to a point)."""
        declared = headers.get("content-length")
        too_long = declared is not None and declared.isdigit() and int(declared) > self.max_body
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                too_long = True
            if not too_long:
                chunks.append(chunk)
            if not message.get("more_body", False) or size > self.max_body + DRAIN_LIMIT:
                break
        return None if too_long else b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay


async def _answer(send: Send, status: int, message: str, close: bool = False) -> None:
    logger.info("refused (%d): %s", status, message)
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
