"""Speak Exosphere v0 over HTTP to any state manager: this project's server or the official one.

One pooled connection per client; timeouts; retries with backoff on connection errors and 5xx for
calls that are safe to repeat; 4xx become typed errors carrying the server's detail. Extensions
(heartbeat, cancel, outputs, filtered runs, long-poll wait, batched results) are used when the server
lists them in `/v0/capabilities`, with plain-v0 fallbacks against the official server.

Plain `http://` state managers reached without a proxy are spoken to through `_Http11Transport`
(asyncio streams and h11): httpx's default pool costs ~2-4 ms of CPU per request once a dozen
connections are open, which is most of a busy runtime's time. TLS and proxies use httpx's own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
import urllib.request
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import h11
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

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["HttpTransport", "run_remote_runtime"]

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


class _Connection:
    __slots__ = ("h11", "reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.used = time.monotonic()

    def reusable(self, now: float, idle_s: float) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof() and now - self.used < idle_s

    def close(self) -> None:
        self.writer.close()


class _Http11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams with h11 and a LIFO pool of keep-alive connections (plain http only).

    Bodies are read whole (this API never streams). Errors map to httpx's exceptions the way its own
    transport raises them (connect, read, write, timeouts, protocol), so retries behave the same.
    """

    IDLE_S = 4.0  # below uvicorn's 5 s keep-alive: a connection the server may be closing is not reused

    def __init__(self, max_connections: int = 32) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        try:
            await asyncio.wait_for(self._slots.acquire(), timeouts.get("pool"))
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time", request=request) from None
        try:
            return await self._send(request, timeouts)
        finally:
            self._slots.release()

    async def _connection(self, request: httpx.Request, timeout: float | None) -> _Connection:
        url = request.url
        host, port = url.host, url.port or 80
        idle = self._idle.setdefault((host, port), [])
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable(now, self.IDLE_S):
                return conn
            conn.close()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or repr(exc), request=request) from exc
        return _Connection(reader, writer)

    async def _send(self, request: httpx.Request, timeouts: dict[str, float | None]) -> httpx.Response:
        conn = await self._connection(request, timeouts.get("connect"))
        done = False
        try:
            body = await request.aread()
            hc = conn.h11
            try:
                data = hc.send(
                    h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw)
                )
                if body:
                    data += hc.send(h11.Data(data=body))
                data += hc.send(h11.EndOfMessage())
            except h11.LocalProtocolError as exc:
                raise httpx.LocalProtocolError(str(exc), request=request) from exc
            try:
                conn.writer.write(data)  # type: ignore[arg-type]
                await asyncio.wait_for(conn.writer.drain(), timeouts.get("write"))
            except TimeoutError:
                raise httpx.WriteTimeout("writing the request timed out", request=request) from None
            except OSError as exc:
                raise httpx.WriteError(str(exc) or repr(exc), request=request) from exc
            response: h11.Response | None = None
            chunks: list[bytes] = []
            read_timeout = timeouts.get("read")
            while True:
                try:
                    event = hc.next_event()
                except h11.RemoteProtocolError as exc:
                    raise httpx.RemoteProtocolError(str(exc), request=request) from exc
                if event is h11.NEED_DATA:
                    try:
                        got = await asyncio.wait_for(conn.reader.read(65536), read_timeout)
                    except TimeoutError:
                        raise httpx.ReadTimeout("reading the response timed out", request=request) from None
                    except OSError as exc:
                        raise httpx.ReadError(str(exc) or repr(exc), request=request) from exc
                    hc.receive_data(got)
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
            assert response is not None
            if hc.our_state is h11.DONE and hc.their_state is h11.DONE and not self._closed:
                hc.start_next_cycle()
                conn.used = time.monotonic()
                self._idle.setdefault((request.url.host, request.url.port or 80), []).append(conn)
                done = True
            return httpx.Response(
                response.status_code,
                headers=response.headers.raw_items(),
                stream=httpx.ByteStream(b"".join(chunks)),
                extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason},
            )
        finally:
            if not done:  # an error, a cancellation or a connection the server closes: never reused
                conn.close()

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


def _lean_transport_fits(uri: str) -> bool:
    """Plain http with no proxy configured for it (httpx's own transport handles TLS and proxies)."""
    url = httpx.URL(uri)
    if url.scheme != "http" or not url.host:
        return False
    proxies = urllib.request.getproxies()
    return not (proxies.get("http") or proxies.get("all")) or bool(urllib.request.proxy_bypass(url.host))


class HttpTransport:
    """StateManager and Runtime calls over HTTP to `{uri}/v0`."""

    def __init__(self, namespace: str, uri: str, key: str | None, *, timeout: float = 30.0, retries: int = 4) -> None:
        self.namespace = namespace
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
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
                transport=_Http11Transport(max_connections=32) if _lean_transport_fits(self.uri) else None,
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
            "status": _status_of(counts),
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


def _status_of(counts: dict[str, int]) -> str:
    if counts.get("CREATED") or counts.get("QUEUED") or counts.get("EXECUTED"):
        return "PENDING"
    if counts.get("CANCELLED"):
        return "CANCELLED"
    if counts.get("ERRORED") or counts.get("NEXT_CREATED_ERROR"):
        return "FAILED"
    return "SUCCESS"


# results sent in one POST /states/results at most, and such requests in flight at once
REPORT_BATCH_MAX = 512
REPORT_BATCHES_IN_FLIGHT = 1
# while the last claim came back full and workers wait on an empty queue: claims in flight per waiting worker
CLAIMS_PER_WAITING_WORKER = 4


async def run_remote_runtime(runtime: Runtime) -> None:
    """The runtime loop against a remote state manager: prefetching claims, concurrent reports.

    Against a server with the `results` extension, executed and errored results are reported in
    batches: each is queued, and a reporter sends whatever has accumulated in one request as soon
    as fewer than REPORT_BATCHES_IN_FLIGHT are in flight (a lone result goes out at once; under
    load the batches grow). Against plain v0, one request per result, as the official SDK sends.
    """
    from ..node import latest_definition, node_class_errors, node_schema
    from ..runtime import outputs_of
    from ..signals import PruneSignal, ReQueueAfterSignal

    target = runtime._target
    transport = HttpTransport(runtime._namespace, target.uri, target.key)  # type: ignore[arg-type]
    ns = runtime._namespace
    current = {name: latest_definition(cls) for name, cls in runtime._node_mapping.items()}
    await transport.register_nodes(runtime._name, [node_schema(c, ns) for c in current.values()])
    runtime._registered.set()
    caps = await transport.capabilities()
    extensions = set(caps.get("extensions", ()))
    lease_s = float(caps.get("lease_ms", 30 * 60 * 1000)) / 1000
    runtime._stop_event = stop_event = asyncio.Event()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    in_flight: dict[str, dict[str, Any]] = {}
    runtime._in_flight = in_flight
    # claims held besides the running states: prefetched ones waiting for a worker, and finished
    # ones whose result is not acknowledged yet. Heartbeats renew them all: a state must not expire
    # (and run again) while it waits in our queue or while the state manager is briefly unreachable.
    prefetched: dict[str, dict[str, Any]] = {}
    unreported: set[str] = set()
    reports: set[asyncio.Task[None]] = set()
    limit = asyncio.Semaphore(max(8, runtime._batch_size * 2))
    names = list(runtime._node_names)
    batched = "results" in extensions
    pending: list[dict[str, Any]] = []  # results waiting for the reporter (batched mode)
    wake = asyncio.Event()
    batch_slots = asyncio.Semaphore(REPORT_BATCHES_IN_FLIGHT)

    batch_size = runtime._batch_size
    max_claims = max(1, CLAIMS_PER_WAITING_WORKER * runtime._workers)
    waiting = 0  # workers waiting for a state

    def take(task: asyncio.Task[list[dict[str, Any]]]) -> int:
        """Queue a finished claim's states; returns how many."""
        try:
            states = task.result()
        except ExosphereError as exc:
            log.warning("claim failed: %s", exc.detail)
            return 0
        for s in states:
            prefetched[s["state_id"]] = s
            queue.put_nowait(s)
        return len(states)

    async def poll() -> None:
        # One claim at a time while the queue is below batch_size (the official SDK's rule). While
        # there is more work than that (the last claim came back full) and workers wait with the
        # queue empty, each waiting worker may have a claim of its own in flight, as each embedded
        # worker claims for itself: the claims share the server's group commits, hiding their latency.
        idle = 0.01
        claims: set[asyncio.Task[list[dict[str, Any]]]] = set()
        more = False
        try:
            while not stop_event.is_set():
                while len(claims) < max_claims and (
                    queue.qsize() + len(claims) * batch_size < batch_size
                    or (more and queue.empty() and len(claims) < CLAIMS_PER_WAITING_WORKER * waiting)
                ):
                    claims.add(asyncio.create_task(transport.claim(names, batch_size)))
                if not claims:
                    await asyncio.sleep(0.005)
                    continue
                done, _ = await asyncio.wait(claims, return_when=asyncio.FIRST_COMPLETED)
                got = 0
                for task in done:
                    claims.discard(task)
                    n = take(task)
                    got += n
                    more = n >= batch_size
                if got:
                    idle = 0.01
                    continue
                if claims:
                    continue
                # nothing to do: back off up to poll_interval (woken early by stop)
                try:
                    await asyncio.wait_for(stop_event.wait(), timeout=idle)
                except TimeoutError:
                    pass
                idle = min(float(runtime._poll_interval), idle * 2)
        finally:
            if claims:  # stopping: what those claims took goes to the queue, so it is handed back
                done, pending_claims = await asyncio.wait(claims, timeout=5)
                for task in done:
                    take(task)
                for task in pending_claims:
                    task.cancel()

    async def send_batch(batch: list[dict[str, Any]]) -> None:
        try:
            answers = await transport.report_many(batch)
        except TransportError as exc:
            # unreachable (e.g. restarting): keep the results (their leases renewed) and send them again
            log.warning("could not report %d results yet, will retry: %s", len(batch), exc.detail)
            await asyncio.sleep(0.5)
            batch_slots.release()
            pending[:0] = batch
            wake.set()
            return
        except ExosphereError as exc:
            batch_slots.release()
            if isinstance(exc, BadRequestError | NotFoundError):
                # e.g. over the body size limit (one bad result must not sink the others), or no such route
                log.info("batch of %d results refused (%s): reporting them one by one", len(batch), exc.detail)
                for item in batch:
                    body = {k: v for k, v in item.items() if k not in ("state_id", "kind")}
                    send(item["state_id"], item["kind"], body, single=True)
                return
            unreported.difference_update(item["state_id"] for item in batch)
            log.warning("could not report %d results: %s", len(batch), exc.detail)
            return
        batch_slots.release()
        unreported.difference_update(item["state_id"] for item in batch)
        for item, answer in zip(batch, answers):
            detail = answer.get("detail")
            if detail is None:
                continue
            if answer.get("status_code") == 400 and " not QUEUED" in str(detail):
                log.info("result for state %s not applied: %s", item["state_id"], detail)
            else:
                log.warning("could not report %s for state %s: %s", item["kind"], item["state_id"], detail)

    async def reporter() -> None:
        while True:
            await wake.wait()
            wake.clear()
            while pending:
                await batch_slots.acquire()  # meanwhile more results queue up: the next batch grows
                batch = pending[:REPORT_BATCH_MAX]
                del pending[:REPORT_BATCH_MAX]
                task = asyncio.create_task(send_batch(batch))
                reports.add(task)
                task.add_done_callback(reports.discard)

    async def drain_reports() -> None:
        while pending or reports:
            wake.set()
            if reports:
                await asyncio.wait(list(reports))
            else:
                await asyncio.sleep(0.001)

    def send(state_id: str, kind: str, body: dict[str, Any], single: bool = False) -> None:
        unreported.add(state_id)
        if batched and not single and kind in ("executed", "errored"):  # JSON-safe; prune data may not be
            pending.append({"state_id": state_id, "kind": kind, **body})
            wake.set()
            return

        async def go() -> None:
            async with limit:
                try:
                    while True:
                        try:
                            await transport.report(state_id, kind, body)
                            return
                        except TransportError as exc:
                            if stop_event.is_set():
                                raise
                            # unreachable (e.g. restarting): keep the result and send it again
                            log.warning(
                                "could not report %s for state %s yet, will retry: %s", kind, state_id, exc.detail
                            )
                            await asyncio.sleep(0.5)
                except ExosphereError as exc:
                    log.warning("could not report %s for state %s: %s", kind, state_id, exc.detail)
                finally:
                    unreported.discard(state_id)

        task = asyncio.create_task(go())
        reports.add(task)
        task.add_done_callback(reports.discard)

    async def execute(state: dict[str, Any]) -> None:
        sid = state["state_id"]
        name = state["node_name"]
        try:
            cls = latest_definition(runtime._node_mapping[name])
            if cls is not current[name]:
                errors = node_class_errors([cls])
                if errors:
                    raise ExosphereError("; ".join(errors))
                current[name] = cls
                await transport.register_nodes(runtime._name, [node_schema(cls, ns)])
            inputs = cls.Inputs.model_validate(state["inputs"])
            if cls.Secrets.model_fields:
                try:
                    values = await transport.secrets(sid)
                except TransportError as exc:
                    # not the node's failure (reporting it would spend a retry): keep the claim, try later
                    log.warning("could not fetch secrets for state %s yet, will retry: %s", sid, exc.detail)
                    prefetched[sid] = state
                    asyncio.get_running_loop().call_later(0.5, queue.put_nowait, state)
                    return
                secrets = cls.Secrets.model_validate(values)
            else:
                secrets = cls.Secrets()
            outputs = outputs_of(await cls()._execute(inputs, secrets), cls)
        except PruneSignal as signal:
            send(sid, "prune", {"data": signal.data})
        except ReQueueAfterSignal as signal:
            send(sid, "re-enqueue-after", {"enqueue_after": signal.delay_ms})
        except asyncio.CancelledError:
            raise
        except Exception:
            send(sid, "errored", {"error": traceback.format_exc()})
        else:
            runtime.executed_count += 1
            send(sid, "executed", {"outputs": outputs})

    async def worker() -> None:
        nonlocal waiting
        since_yield = 0
        while not stop_event.is_set():
            if not queue.empty():
                state = queue.get_nowait()
                since_yield += 1
                if since_yield >= 32:  # let the poller and reporter run between fast nodes
                    since_yield = 0
                    await asyncio.sleep(0)
            else:
                getter = asyncio.ensure_future(queue.get())
                stopper = asyncio.ensure_future(stop_event.wait())
                waiting += 1
                try:
                    await asyncio.wait((getter, stopper), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiting -= 1
                stopper.cancel()
                if not getter.done():
                    getter.cancel()
                    break
                state = getter.result()
            prefetched.pop(state["state_id"], None)
            in_flight[state["state_id"]] = state
            try:
                await execute(state)
            finally:
                in_flight.pop(state["state_id"], None)

    async def heartbeat() -> None:
        while not stop_event.is_set():
            try:
                await asyncio.wait_for(stop_event.wait(), timeout=max(0.05, lease_s / 3))
            except TimeoutError:
                pass
            held = list(dict.fromkeys([*in_flight, *prefetched, *unreported]))
            if held and "heartbeat" in extensions:
                try:
                    await transport.heartbeat(held)
                except ExosphereError as exc:
                    log.warning("heartbeat failed: %s", exc.detail)

    poller = asyncio.create_task(poll())
    beat = asyncio.create_task(heartbeat())
    reporting = asyncio.create_task(reporter())
    runtime._tasks = [asyncio.create_task(worker()) for _ in range(runtime._workers)]
    try:
        await asyncio.gather(*runtime._tasks, return_exceptions=True)
    finally:
        poller.cancel()
        beat.cancel()
        await asyncio.gather(poller, return_exceptions=True)  # its last claims land in the queue
        try:
            await asyncio.wait_for(drain_reports(), timeout=10)
        except TimeoutError:
            log.warning("%d results not reported in time (their leases will expire)", len(pending))
            for task in list(reports):  # reports still retrying must not outlive the runtime
                task.cancel()
        reporting.cancel()
        left = [s["state_id"] for s in list(in_flight.values())]
        while not queue.empty():
            left.append(queue.get_nowait()["state_id"])
        if left and "release" in extensions:
            try:
                await transport.release(left)
            except ExosphereError as exc:
                log.warning("could not hand back %d states (their leases will expire): %s", len(left), exc.detail)
        await transport.aclose()
