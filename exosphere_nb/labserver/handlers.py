"""The server extension's routes, under `{base_url}exosphere-nb/api/`; each needs Jupyter's own login.

- `connections` GET: kernels serving now and saved remote state managers (never a key); POST: save one.
- `connections/{id}` DELETE: forget a saved remote state manager.
- `proxy/{id}/{path}` GET/POST: one allowed call to that state manager, the key added here.
- `run-states/{id}/{namespace}/{run_id}` GET: one page of a run's states (filtered by node and status),
  cut from the run's whole state graph here, so a run of 100k states never floods the browser.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from . import proxy
from .connections import Connection, ConnectionProblem, RemoteStore, find, kernel_connections, servers_dir

__all__ = ["API_PREFIX", "ROUTES", "ExtensionState", "route_table"]

API_PREFIX = "exosphere-nb/api"
AUTH_RESOURCE = "exosphere_nb"
MAX_PAGE_SIZE = 500
ERROR_PREVIEW = 300


class ExtensionState:
    """What the handlers share: the saved connections, one HTTP client, the upstream timeout."""

    def __init__(self, store: RemoteStore, timeout: float, serverapp: Any = None) -> None:
        self.store = store
        self.timeout = timeout
        self.serverapp = serverapp
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        # made on first use, on the server's running loop; state managers are reached directly
        if self._client is None:
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class _Base(APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, state: ExtensionState) -> None:
        self.state = state

    def reply(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("cache-control", "no-store")
        self.finish(json.dumps(body))

    def refuse(self, status: int, detail: str) -> None:
        self.reply(status, {"detail": detail})

    def json_body(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            self.refuse(400, f"the request body is not valid JSON: {exc}")
            return None
        if not isinstance(data, dict):
            self.refuse(400, "the request body must be a JSON object")
            return None
        return data

    def connection(self, connection_id: str) -> Connection | None:
        try:
            return find(self.state.store, connection_id)
        except ConnectionProblem as exc:
            self.refuse(404, str(exc))
            return None


async def _notebook_of_kernels(serverapp: Any) -> dict[int, str]:
    """Kernel process id -> the notebook (session path) using it, for kernels this server started."""
    if serverapp is None:
        return {}
    found: dict[int, str] = {}
    try:
        km = serverapp.kernel_manager
        sessions = await serverapp.session_manager.list_sessions()
        by_kernel = {s["kernel"]["id"]: s.get("path") or s.get("name") for s in sessions if s.get("kernel")}
        for kernel_id in km.list_kernel_ids():
            provisioner = getattr(km.get_kernel(kernel_id), "provisioner", None)
            pid = getattr(provisioner, "pid", None)
            if isinstance(pid, int) and by_kernel.get(kernel_id):
                found[pid] = str(by_kernel[kernel_id])
    except Exception:  # best effort: the panel then names the kernel by its process id
        return found
    return found


class ConnectionsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            remote = self.state.store.list()
            problem = None
        except ConnectionProblem as exc:
            remote, problem = [], str(exc)
        notebooks = await _notebook_of_kernels(self.state.serverapp)
        kernels = []
        for conn in kernel_connections():
            item = conn.public()
            notebook = notebooks.get(conn.pid or -1)
            if notebook:
                item["notebook"] = notebook
                item["name"] = f"{notebook} (kernel {conn.pid})"
            kernels.append(item)
        self.reply(
            200,
            {
                "connections": kernels + [c.public() for c in remote],
                "servers_dir": servers_dir(),
                "problem": problem,
            },
        )

    @web.authenticated
    @authorized
    async def post(self) -> None:
        data = self.json_body()
        if data is None:
            return
        try:
            conn = self.state.store.add(data.get("uri"), data.get("key"), data.get("name"), data.get("namespace"))
        except ConnectionProblem as exc:
            self.refuse(400, str(exc))
            return
        check = await proxy.call(self.state.client, conn, "GET", "v0/namespaces", [], None, self.state.timeout)
        reachable = {"ok": check.status == 200}
        if check.status != 200:
            reachable["detail"] = str(check.body.get("detail") if isinstance(check.body, dict) else check.body)
        self.reply(201, {"connection": conn.public(), "check": reachable})


class ConnectionHandler(_Base):
    @web.authenticated
    @authorized
    async def delete(self, connection_id: str) -> None:
        if connection_id.startswith("kernel-"):
            self.refuse(400, "a kernel's connection goes away when it stops serving (`%exo serve --stop`)")
            return
        try:
            removed = self.state.store.remove(connection_id)
        except ConnectionProblem as exc:
            self.refuse(500, str(exc))
            return
        if not removed:
            self.refuse(404, f"no saved connection {connection_id!r}")
            return
        self.reply(200, {"removed": connection_id})


class ProxyHandler(_Base):
    async def _forward(self, method: str, connection_id: str, path: str) -> None:
        conn = self.connection(connection_id)
        if conn is None:
            return
        body = None
        if method == "POST":
            if self.json_body() is None:
                return
            body = self.request.body or b"{}"
        query = [(k, v.decode()) for k, values in self.request.query_arguments.items() for v in values]
        answer = await proxy.call(self.state.client, conn, method, path, query, body, self.state.timeout)
        self.reply(answer.status, answer.body)

    @web.authenticated
    @authorized
    async def get(self, connection_id: str, path: str) -> None:
        await self._forward("GET", connection_id, path)

    @web.authenticated
    @authorized
    async def post(self, connection_id: str, path: str) -> None:
        await self._forward("POST", connection_id, path)


def _int_arg(handler: APIHandler, name: str, default: int, high: int) -> int | None:
    raw = handler.get_argument(name, None)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 1 <= value <= high else None


class RunStatesHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, connection_id: str, namespace: str, run_id: str) -> None:
        page = _int_arg(self, "page", 1, 10**9)
        size = _int_arg(self, "size", 50, MAX_PAGE_SIZE)
        if page is None or size is None:
            self.refuse(400, f"page must be >= 1 and size 1-{MAX_PAGE_SIZE}")
            return
        identifier = self.get_argument("identifier", None) or None
        statuses = {s.strip().upper() for s in (self.get_argument("status", None) or "").split(",") if s.strip()}
        conn = self.connection(connection_id)
        if conn is None:
            return
        path = f"v0/namespace/{namespace}/states/run/{run_id}/graph"
        answer = await proxy.call(self.state.client, conn, "GET", path, [], None, self.state.timeout)
        if answer.status != 200:
            self.reply(answer.status, answer.body)
            return
        nodes = answer.body.get("nodes") if isinstance(answer.body, dict) else None
        if not isinstance(nodes, list):
            self.refuse(502, f"{conn.uri} answered the run's state graph without a `nodes` list")
            return
        chosen = [
            n
            for n in nodes
            if isinstance(n, dict)
            and (identifier is None or n.get("identifier") == identifier)
            and (not statuses or n.get("status") in statuses)
        ]
        start = (page - 1) * size
        states = []
        for n in chosen[start : start + size]:
            error = n.get("error")
            states.append(
                {
                    "id": n.get("id"),
                    "identifier": n.get("identifier"),
                    "node_name": n.get("node_name"),
                    "status": n.get("status"),
                    # the first line tells which error; the inspector fetches the whole traceback
                    "error": _error_line(error) if isinstance(error, str) else None,
                }
            )
        self.reply(
            200,
            {
                "run_id": run_id,
                "graph_name": answer.body.get("graph_name"),
                "total": len(chosen),
                "page": page,
                "size": size,
                "states": states,
            },
        )


def _error_line(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last[:ERROR_PREVIEW]


ROUTES: tuple[tuple[str, type[_Base]], ...] = (
    (r"connections", ConnectionsHandler),
    (r"connections/(?P<connection_id>[^/]+)", ConnectionHandler),
    (r"proxy/(?P<connection_id>[^/]+)/(?P<path>.*)", ProxyHandler),
    (r"run-states/(?P<connection_id>[^/]+)/(?P<namespace>[^/]+)/(?P<run_id>[^/]+)", RunStatesHandler),
)


def route_table(base_url: str, state: ExtensionState) -> list[tuple[str, type[_Base], dict[str, Any]]]:
    return [(url_path_join(base_url, API_PREFIX, pattern), handler, {"state": state}) for pattern, handler in ROUTES]
