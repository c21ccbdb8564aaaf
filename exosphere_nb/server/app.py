"""`create_app`: the Exosphere v0 HTTP API (plus extensions) as a thin adapter over one Engine.

The engine is started by the app's lifespan on the server's event loop, and every route runs on
that loop. Middlewares, outermost first: request id, API key (before any body is read), body
size limit (before any parsing).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .._version import __version__
from ..config import resolve_db
from ..engine.engine import Engine
from ..errors import ExosphereError, GraphValidationError
from . import extensions as extensions_routes
from . import v0
from .auth import APIKeyMiddleware
from .middleware import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware, RequestIdMiddleware

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

log = logging.getLogger("exosphere_nb.server")

EngineFactory = Callable[[], "Engine | Awaitable[Engine]"]

_DESCRIPTION = """\
The Exosphere v0 state manager API, served by exosphere_nb over its DuckDB engine.

Code written for the official `exospherehost` SDK works against it unchanged. Send the server's key
in the `x-api-key` header (not needed when the server runs without a key, on loopback only).
Routes tagged **extensions** go beyond upstream v0; `GET /v0/capabilities` lists them.
"""

_TAGS = [
    {"name": "nodes", "description": "Node classes registered by runtimes"},
    {"name": "graph", "description": "Graph templates and triggers"},
    {"name": "state", "description": "What runtimes call: claim states, report results, read secrets"},
    {"name": "runs", "description": "Runs and their states"},
    {"name": "namespaces", "description": "Namespaces"},
    {"name": "extensions", "description": "Beyond upstream v0 (listed by `GET /v0/capabilities`)"},
]


def create_app(
    db: str | os.PathLike[str] | None = None,
    *,
    api_key: str | None = None,
    engine_factory: EngineFactory | None = None,
    close_engine: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    lease_ms: int | None = None,
    extensions: bool = True,
) -> FastAPI:
    """The HTTP app. Its lifespan opens `Engine(db)` (default: the embedded default database).

    `engine_factory` instead returns an already started engine (or an awaitable of one) that
    lives on the loop serving the app, e.g. a notebook's `client.embedded.get_engine(db)`; pass
    `close_engine=False` when the engine outlives the app. `api_key=None` means no key: serve
    loopback only. `extensions=False` serves plain v0 only (no `/v0/capabilities`), as the official
    state manager does: what clients fall back on is tested against it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if engine_factory is not None:
            made = engine_factory()
            engine = await made if inspect.isawaitable(made) else made
            if engine.loop is not asyncio.get_running_loop():
                raise RuntimeError(
                    "engine_factory returned an engine started on another event loop: serve the app on the "
                    "engine's loop (every engine call must run there)"
                )
        else:
            path = resolve_db(db)
            engine = Engine(path, lease_ms=lease_ms) if lease_ms else Engine(path)
            await engine.start()
        # remote runtimes are handed committed states only (the design's rule for results seen over HTTP)
        engine.eager_handoff = False
        app.state.engine = engine
        app.state.stopping = asyncio.Event()
        log.info("state manager serving %s", engine.path)
        try:
            yield
        finally:
            app.state.stopping.set()
            app.state.engine = None
            if close_engine:
                await engine.close()
            else:
                await engine.committed()
            log.info("state manager stopped; every acknowledged change is committed")

    app = FastAPI(
        title="exosphere_nb state manager",
        description=_DESCRIPTION,
        version=__version__,
        openapi_tags=_TAGS,
        lifespan=lifespan,
    )
    app.state.engine = None
    app.state.stopping = asyncio.Event()

    @app.get("/health", tags=["health"], summary="Liveness (no key needed)")
    async def health() -> dict[str, str]:
        return {"message": "OK"}

    # extensions first: `/runs/{run_id}/summary` must win over v0's `/runs/{page}/{size}`
    if extensions:
        app.include_router(extensions_routes.router)
        app.include_router(extensions_routes.global_router)
    app.include_router(v0.router)
    app.include_router(v0.global_router)

    app.add_exception_handler(ExosphereError, _exosphere_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)

    # added innermost first
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(APIKeyMiddleware, api_key=api_key or None)
    app.add_middleware(RequestIdMiddleware)
    return app


async def _exosphere_error(request: Request, exc: ExosphereError) -> JSONResponse:
    body: dict[str, Any] = {"detail": exc.detail}
    if isinstance(exc, GraphValidationError):
        body["errors"] = list(exc.errors)
    if exc.status_code >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
    return JSONResponse(body, status_code=exc.status_code)


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's shape, minus each error's `input`: it may hold a secret the client sent
    errors = []
    for err in exc.errors():
        item: dict[str, Any] = {"type": err.get("type"), "loc": list(err.get("loc", ())), "msg": err.get("msg")}
        ctx = err.get("ctx")
        if ctx:
            item["ctx"] = {k: _plain(v) for k, v in ctx.items()}
        if item["type"] == "json_invalid":
            item["msg"] = f"request body is not valid JSON: {(ctx or {}).get('error', 'decode error')}"
        elif item["loc"] == ["body"] and not _is_json(request):
            item["msg"] = "request body must be a JSON object sent with Content-Type: application/json"
        errors.append(item)
    return JSONResponse({"detail": errors}, status_code=422)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    return JSONResponse({"detail": f"internal server error (request id {request_id})"}, status_code=500)
