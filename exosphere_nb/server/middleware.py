"""Pure ASGI middlewares: request ids, and the body size limit enforced before any parsing."""

from __future__ import annotations

import uuid

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_MAX_BODY_BYTES", "REQUEST_ID_HEADER", "BodyLimitMiddleware", "RequestIdMiddleware"]

REQUEST_ID_HEADER = "x-exosphere-request-id"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)


class RequestIdMiddleware:
    """Echo `x-exosphere-request-id` when it is a UUID, else answer with a fresh one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = None
        if raw:
            try:
                text = raw.decode("latin-1").strip()
                uuid.UUID(text)
                request_id = text
            except ValueError:
                pass
        request_id = request_id or str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413: by Content-Length at once, else while reading.

    The body is read here (at most `max_bytes`) and replayed to the app, so nothing downstream
    ever parses an oversized body, whatever the framework version does with a failing `receive`.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        mib = self.max_bytes / (1024 * 1024)
        return JSONResponse(
            {"detail": f"request body is larger than this server's limit of {self.max_bytes} bytes ({mib:g} MiB)"},
            status_code=413,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
                if size < 0:
                    raise ValueError
            except ValueError:
                await JSONResponse({"detail": "invalid Content-Length header"}, status_code=400)(scope, receive, send)
                return
            if size > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)
