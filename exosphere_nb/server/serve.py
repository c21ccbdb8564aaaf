"""`exo-nb serve`: run the app under uvicorn until SIGINT/SIGTERM, then commit and exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from types import FrameType

import uvicorn

from ..config import KEY_ENV, URI_ENV, resolve_db
from ..engine.engine import Engine
from ..errors import DatabaseLockedError
from .app import create_app
from .auth import is_loopback
from .middleware import DEFAULT_MAX_BODY_BYTES

__all__ = ["serve"]

GRACEFUL_SHUTDOWN_S = 10


class _Server(uvicorn.Server):
    """Also wakes long-polls when a signal asks the server to stop, so shutdown is prompt."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)  # type: ignore[arg-type]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: self.config.app.state.stopping.set())  # type: ignore[union-attr]


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    db: str | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    lease_ms: int | None = None,
    log_level: str = "info",
) -> int:
    """Serve until stopped; returns the process exit code."""
    key = api_key if api_key is not None else os.environ.get(KEY_ENV)
    key = key or None
    if key is None and not is_loopback(host):
        print(
            f"exo-nb serve: refusing to listen on {host} without an API key: anyone who can reach it could "
            f"run your graphs and read their data. Pass --api-key KEY (or set {KEY_ENV}), or listen on 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    path = resolve_db(db)
    try:
        engine = Engine(path, lease_ms=lease_ms) if lease_ms else Engine(path)
    except DatabaseLockedError as exc:
        print(f"exo-nb serve: {exc.detail}", file=sys.stderr)
        return 1

    async def started_engine() -> Engine:
        await engine.start()  # on uvicorn's loop: the engine lives where the routes run
        return engine

    app = create_app(api_key=key, engine_factory=started_engine, max_body_bytes=max_body_bytes)
    url = _url(host, port)
    print(f"exo-nb serve: Exosphere v0 state manager on {url} (database: {path})", flush=True)
    if key is None:
        print("exo-nb serve: running WITHOUT an API key: loopback clients only, requests need no key", flush=True)
    else:
        print(f"exo-nb serve: clients must send the API key in the x-api-key header ({KEY_ENV})", flush=True)
    print(f"exo-nb serve: point clients at it with {URI_ENV}={url}", flush=True)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = _Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down; with these no-op handlers
    # in place (it restores them first), a SIGTERM'd server exits 0 after its final commit.
    restore = {}
    if threading.current_thread() is threading.main_thread():
        restore = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def _ignore(sig: int, frame: FrameType | None) -> None:
    pass
