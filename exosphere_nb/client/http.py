"""Speak Exosphere v0 over HTTP to any state manager: this project's server or the official one.

One pooled connection per client; timeouts; retries with backoff on connection errors and 5xx for
calls that are safe to repeat; 4xx become typed errors carrying the server's detail. Extensions
(heartbeat, cancel, outputs, filtered runs, long-poll wait, batched results) are used when the server
lists them in `/v0/capabilities`, with plain-v0 fallbacks against the official server.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    ExosphereError,
    GraphValidationError,
    NotFoundError,
    ServerError,
    StateTransitionError,
    TransportError,
)
from ..models import run_status_of

if TYPE_CHECKING:
    pass

__all__ = ["HttpTransport"]

log = logging.getLogger("exosphere_nb.http")

STATUSES = (
    "CREATED",
    "QUEUED",
    "EXECUTED",
    "SUCCESS",
    "ERRORED",
    "NEXT_CREATED_ERROR",
    "RETRY_CREATED",
    "PRUNED",
    "CANCELLED",
)


def _validation_detail(detail: list[Any]) -> str:
    """FastAPI's 422 list as one readable line per problem: `body.inputs.n: Input should be ...`."""
    lines = []
    for item in detail:
        if isinstance(item, dict) and "msg" in item:
            loc = ".".join(str(part) for part in item.get("loc") or ())
            lines.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
        else:
            lines.append(str(item))
    return "; ".join(lines)


def _error_for(response: httpx.Response) -> ExosphereError:
    error = _typed_error(response)
    error.status_code = response.status_code  # the code the server answered (a 422 is a BadRequestError)
    return error


def _typed_error(response: httpx.Response) -> ExosphereError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        detail = _validation_detail(detail)
    elif not isinstance(detail, str):
        detail = str(detail) if detail is not None else (response.text[:500] or response.reason_phrase)
    where = f"{response.request.method} {response.request.url.path}"
    code = response.status_code
    if code == 401:
        return AuthError(f"{detail} ({where}: check EXOSPHERE_API_KEY)")
    if code == 404:
        return NotFoundError(detail)
    if code == 409:
        return ConflictError(detail)
    if code == 400 and isinstance(body, dict) and isinstance(body.get("errors"), list):
        return GraphValidationError(
            body["errors"], headline=detail.split(":")[0] if ":" in detail else "graph is invalid"
        )
    if code == 400 and " not QUEUED" in detail:
        return StateTransitionError(detail)
    if 400 <= code < 500:
        return BadRequestError(f"{detail} ({where} -> {code})")
    return ServerError(f"state manager error {code} on {where}: {detail}")


class HttpTransport:
    """StateManager and Runtime calls over HTTP to `{uri}/v0`."""

    def __init__(
        self,
        namespace: str,
        uri: str,
        key: str | None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        max_connections: int = 32,
    ) -> None:
        self.namespace = namespace
        self.max_connections = max_connections
        self.uri = uri.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.retries = retries
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._capabilities: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"HttpTransport(namespace={self.namespace!r}, uri={self.uri!r})"

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        # one pooled client per event loop (httpx clients are bound to the loop they first ran on)
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None or client.is_closed:
            headers = {"x-api-key": self.key} if self.key else {}
            client = httpx.AsyncClient(
                base_url=self.uri,
                headers=headers,
                timeout=httpx.Timeout(self.timeout, connect=5.0),
                limits=httpx.Limits(
                    max_connections=self.max_connections, max_keepalive_connections=self.max_connections
                ),
            )
            self._clients[loop_id] = client
        return client

    async def aclose(self) -> None:
        for client in list(self._clients.values()):
            await client.aclose()
        self._clients.clear()

    def _ns(self, path: str) -> str:
        return f"/v0/namespace/{self.namespace}{path}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = True,
        ok: Iterable[int] = (200, 201),
    ) -> Any:
        attempt = 0
        while True:
            sent = False
            try:
                response = await self.client.request(method, path, json=json, params=params)
                sent = True
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                failure: Exception = exc
            except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as exc:
                failure, sent = exc, True
            else:
                if response.status_code in ok:
                    return response.json() if response.content else None
                if response.status_code < 500:
                    raise _error_for(response)
                failure = _error_for(response)
            # a request that may have been applied is repeated only when repeating it is harmless
            if attempt >= self.retries or (sent and not idempotent):
                if isinstance(failure, ExosphereError):
                    raise failure
                raise TransportError(f"cannot reach the state manager at {self.uri}: {failure!r}") from failure
            attempt += 1
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))

    async def capabilities(self) -> dict[str, Any]:
        if self._capabilities is None:
            try:
                self._capabilities = await self.request("GET", "/v0/capabilities") or {}
            except (NotFoundError, BadRequestError):
                self._capabilities = {}  # the official state manager: plain v0
        return self._capabilities

    async def has(self, extension: str) -> bool:
        return extension in (await self.capabilities()).get("extensions", ())

    # -- StateManager calls -------------------------------------------------------------------

    async def register_nodes(self, runtime_name: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"runtime_name": runtime_name, "runtime_namespace": self.namespace, "nodes": nodes}
        return await self.request("PUT", self._ns("/nodes/"), json=body)

    async def upsert_graph(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", self._ns(f"/graph/{name}"), json=body)

    async def get_graph(self, name: str) -> dict[str, Any]:
        return await self.request("GET", self._ns(f"/graph/{name}"))

    async def list_graphs(self) -> dict[str, Any]:
        return await self.request("GET", self._ns("/graphs/"))

    async def list_nodes(self) -> dict[str, Any]:
        return await self.request("GET", self._ns("/nodes/"))

    async def trigger(
        self, name: str, inputs: dict[str, str], store: dict[str, str], start_delay: int
    ) -> dict[str, Any]:
        body = {"start_delay": start_delay, "inputs": inputs, "store": store}
        return await self.request("POST", self._ns(f"/graph/{name}/trigger"), json=body, idempotent=False)

    async def list_runs(self, page: int, size: int, **filters: Any) -> dict[str, Any]:
        if await self.has("runs"):
            params = {
                k: v
                for k, v in {
                    "page": page,
                    "size": size,
                    "graph_name": filters.get("graph_name"),
                    "status": filters.get("status"),
                    "since": filters.get("since_ms"),
                    "until": filters.get("until_ms"),
                }.items()
                if v is not None
            }
            return await self.request("GET", self._ns("/runs"), params=params)
        if any(v is not None for v in filters.values()):
            raise BadRequestError("this state manager cannot filter runs (plain v0): list without filters")
        return await self.request("GET", self._ns(f"/runs/{page}/{size}"))

    async def run_graph(self, run_id: str) -> dict[str, Any]:
        return await self.request("GET", self._ns(f"/states/run/{run_id}/graph"))

    async def run_summary(self, run_id: str) -> dict[str, Any]:
        if await self.has("summary"):
            return await self.request("GET", self._ns(f"/runs/{run_id}/summary"))
        graph = await self.run_graph(run_id)
        if graph.get("graph_name") is None and not graph["nodes"]:
            raise NotFoundError(f"run {run_id!r} not found")
        nodes: dict[str, dict[str, int]] = {}
        for n in graph["nodes"]:
            per = nodes.setdefault(n["identifier"], {})
            per[n["status"]] = per.get(n["status"], 0) + 1
        counts = {s: graph["execution_summary"].get(s, 0) for s in STATUSES}
        return {
            "run_id": run_id,
            "namespace": self.namespace,
            "graph_name": graph["graph_name"],
            "status": run_status_of(counts),
            "counts": counts,
            "nodes": nodes,
        }

    async def run_outputs(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        if await self.has("outputs"):
            return await self.request("GET", self._ns(f"/runs/{run_id}/outputs"))
        graph = await self.run_graph(run_id)
        out: dict[str, list[dict[str, Any]]] = {}
        for n in graph["nodes"]:
            if n["status"] == "SUCCESS":
                state = await self.request("GET", self._ns(f"/graph/{graph['graph_name']}/run/{run_id}/node/{n['id']}"))
                if state.get("outputs") is not None:
                    out.setdefault(n["identifier"], []).append(state["outputs"])
        return out

    async def get_state(self, state_id: str) -> dict[str, Any]:
        if not await self.has("state"):
            raise BadRequestError("this state manager needs the graph and run to look up a state (plain v0)")
        return await self.request("GET", self._ns(f"/state/{state_id}"))

    async def manual_retry(self, state_id: str, fanout_id: str) -> dict[str, Any]:
        return await self.request("POST", self._ns(f"/state/{state_id}/manual-retry"), json={"fanout_id": fanout_id})

    async def cancel_run(self, run_id: str) -> dict[str, Any]:
        if not await self.has("cancel"):
            raise BadRequestError("this state manager cannot cancel runs (plain v0)")
        return await self.request("POST", self._ns(f"/runs/{run_id}/cancel"), idempotent=True)

    async def wait_run(self, run_id: str, timeout: float | None) -> str:
        deadline = None if timeout is None else time.monotonic() + timeout
        long_poll = await self.has("wait")
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"run {run_id} still pending after {timeout} s")
            if long_poll:
                chunk = 20.0 if left is None else min(20.0, left)
                summary = await self.request("GET", self._ns(f"/runs/{run_id}/wait"), params={"timeout": chunk})
            else:
                summary = await self.run_summary(run_id)
            if summary["status"] != "PENDING":
                return summary["status"]
            if not long_poll:
                await asyncio.sleep(0.25 if left is None else min(0.25, left))

    # -- Runtime calls ------------------------------------------------------------------------

    async def claim(self, nodes: list[str], batch_size: int) -> list[dict[str, Any]]:
        res = await self.request(
            "POST", self._ns("/states/enqueue"), json={"nodes": nodes, "batch_size": batch_size}, idempotent=False
        )
        return res.get("states", [])

    async def report(self, state_id: str, kind: str, body: dict[str, Any]) -> None:
        try:
            await self.request("POST", self._ns(f"/state/{state_id}/{kind}"), json=body)
        except StateTransitionError as exc:
            # after an ambiguous failure the first attempt may have landed; otherwise the run moved on
            log.info("result for state %s not applied: %s", state_id, exc.detail)

    async def report_many(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Many results in one request (the `results` extension): one answer per item, in order.

        Each item is `{state_id, kind, ...}` with the body of the state's v0 result route; an answer
        carrying `status_code` and `detail` is what that route would have answered with an error.
        """
        res = await self.request("POST", self._ns("/states/results"), json={"results": results})
        return res.get("results", []) if isinstance(res, dict) else []

    async def secrets(self, state_id: str) -> dict[str, str]:
        res = await self.request("GET", self._ns(f"/state/{state_id}/secrets"))
        return res.get("secrets", res) if isinstance(res, dict) else {}

    async def heartbeat(self, state_ids: list[str]) -> None:
        await self.request("POST", self._ns("/states/heartbeat"), json={"state_ids": state_ids})

    async def release(self, state_ids: list[str]) -> None:
        await self.request("POST", self._ns("/states/release"), json={"state_ids": state_ids})
