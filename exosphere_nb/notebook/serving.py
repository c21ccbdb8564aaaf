"""`%exo serve`: publish the kernel's embedded state manager over HTTP.

The uvicorn server runs as a task on the process's background loop, next to the engine it serves
(every engine call must run there), so runtimes in other processes or on other machines, and the
JupyterLab panel, reach the same runs the notebook sees. While it serves, a discovery file
`<servers_dir()>/<pid>.json` (mode 0600: it holds the key) tells the panel where the kernel is.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadRequestError, ExosphereError
from ..loop import background_loop

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Served", "list_servers", "serve", "servers_dir", "stop"]

SERVERS_DIR_ENV = "EXOSPHERE_SERVERS_DIR"
START_TIMEOUT_S = 15
STOP_TIMEOUT_S = 15


def servers_dir() -> Path:
    """Where serving kernels leave their discovery files: `$EXOSPHERE_SERVERS_DIR`, else
    `<jupyter runtime dir>/exosphere_nb/servers`, else `~/.local/share/exosphere_nb/servers`."""
    override = os.environ.get(SERVERS_DIR_ENV)
    if override:
        return Path(override)
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return Path.home() / ".local" / "share" / "exosphere_nb" / "servers"
    return Path(jupyter_runtime_dir()) / "exosphere_nb" / "servers"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def list_servers() -> list[dict[str, Any]]:
    """The discovery files of kernels serving now (files of processes that died are skipped)."""
    found = []
    folder = servers_dir()
    if not folder.is_dir():
        return []
    for path in sorted(folder.glob("*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("pid"), int) and _pid_alive(info["pid"]):
            found.append(info)
    return found


def _write_private(path: Path, info: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=2)
    os.chmod(tmp, 0o600)  # the umask may have narrowed it, never widened: be explicit
    os.replace(tmp, path)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(eq=False)
class Served:
    """The kernel's running HTTP server (`Session.server`)."""

    url: str
    key: str | None
    host: str
    port: int
    db: str
    namespace: str
    discovery: Path | None
    _server: Any = field(repr=False)
    _future: concurrent.futures.Future[None] = field(repr=False)
    _engine: Any = field(repr=False)
    _eager_handoff: bool = field(repr=False, default=True)

    def __repr__(self) -> str:
        return f"Served(url={self.url!r}, db={self.db!r}, namespace={self.namespace!r})"

    @property
    def running(self) -> bool:
        return not self._future.done()

    def info(self) -> dict[str, Any]:
        """What the discovery file holds."""
        return {"uri": self.url, "key": self.key, "pid": os.getpid(), "namespace": self.namespace, "db": self.db}


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def _serve(server: Any, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits on a failed start-up; that must not end the background loop
        raise ExosphereError(f"the HTTP server failed to start (uvicorn exit code {exc.code})") from None
    finally:
        sock.close()


def serve(
    session: Session, host: str = "127.0.0.1", port: int = 0, key: str | None = None, no_key: bool = False
) -> Served:
    """Serve the session's embedded state manager; returns the running server (already serving one: it)."""
    current = session.server
    if isinstance(current, Served) and current.running:
        return current
    from ..server.auth import is_loopback

    if no_key and not is_loopback(host):
        raise BadRequestError(
            f"refusing to serve on {host} without an API key: anyone who can reach it could run your graphs "
            "and read their data; drop --no-key (a random key is made) or serve on 127.0.0.1"
        )
    engine = session.engine()
    if engine is None:
        raise BadRequestError(
            f"this session uses the remote state manager {session.target.uri}: there is no embedded one to serve "
            "(connect to a local database first, e.g. `%exo connect`)"
        )
    import uvicorn

    from ..server.app import create_app

    # hex: a key that starts with "-" would read as an option in `%exo connect URI --key KEY`
    api_key = None if no_key else key or secrets.token_hex(24)
    app = create_app(engine_factory=lambda: engine, close_engine=False, api_key=api_key)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    eager = engine.eager_handoff  # the app turns it off while it serves; given back on stop
    future = asyncio.run_coroutine_threadsafe(_serve(server, sock), background_loop())
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if future.done():
            future.result()  # raises why it stopped
            raise ExosphereError("the HTTP server stopped while starting")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise ExosphereError(f"the HTTP server did not start within {START_TIMEOUT_S} s")
        time.sleep(0.01)
    served = Served(
        url=_url(host, bound_port),
        key=api_key,
        host=host,
        port=bound_port,
        db=engine.path,
        namespace=session.namespace,
        discovery=None,
        _server=server,
        _future=future,
        _engine=engine,
        _eager_handoff=eager,
    )
    path = servers_dir() / f"{os.getpid()}.json"
    try:
        _write_private(path, served.info())
        served.discovery = path
    except OSError:  # serving works without discovery; the panel just will not list this kernel
        served.discovery = None
    session.server = served
    _at_exit.add(served)
    return served


def stop(session: Session) -> Served | None:
    """Stop the session's server (in-flight requests finish); returns it, or None when none ran."""
    served = session.server
    if not isinstance(served, Served):
        return None
    session.server = None
    _shutdown(served)
    return served


def _shutdown(served: Served) -> None:
    _at_exit.discard(served)
    if served.discovery is not None:
        with contextlib.suppress(FileNotFoundError):
            served.discovery.unlink()
    if served._future.done():
        return
    loop = background_loop()

    def ask_to_stop() -> None:
        served._server.should_exit = True
        stopping = getattr(served._server.config.app.state, "stopping", None)
        if stopping is not None:
            stopping.set()  # wakes long-polls at once

    loop.call_soon_threadsafe(ask_to_stop)
    try:
        served._future.result(STOP_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        loop.call_soon_threadsafe(setattr, served._server, "force_exit", True)
    except Exception:  # it failed while serving; stopped all the same
        pass
    finally:
        engine = served._engine

        async def restore() -> None:
            engine.eager_handoff = served._eager_handoff

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(restore(), loop).result(5)


_at_exit: set[Served] = set()


@atexit.register
def _remove_discovery_files() -> None:
    for served in list(_at_exit):
        if served.discovery is not None:
            with contextlib.suppress(OSError):
                served.discovery.unlink()
