"""The API key gate: a pure ASGI middleware, so a wrong key is refused before any body is read.

With a key, every path but the public ones needs `x-api-key` equal to it (compared in constant
time). Without a key, the server trusts loopback clients only: it is meant for one machine.
"""

from __future__ import annotations

import ipaddress
import secrets

from fastapi.security import APIKeyHeader
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["API_KEY_HEADER", "PUBLIC_PATHS", "APIKeyMiddleware", "api_key_scheme", "is_loopback"]

API_KEY_HEADER = "x-api-key"
PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})

# Documents the header in OpenAPI (the lock icons in /docs); the middleware enforces it.
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="The server's API key (`exo-nb serve --api-key` or EXOSPHERE_API_KEY); "
    "not needed when the server runs without a key on loopback.",
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self._key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _route_path(scope) in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        if self._key is None:
            client = scope.get("client")
            if client and not is_loopback(str(client[0])):
                detail = "this state manager runs without an API key and serves loopback clients only"
                await self._refuse(scope, receive, send, 403, detail)
                return
        else:
            given = next((v for k, v in scope["headers"] if k == API_KEY_HEADER.encode()), b"")
            if not secrets.compare_digest(given, self._key):
                await self._refuse(scope, receive, send, 401, "Invalid API key")
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": detail})
            return
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path
