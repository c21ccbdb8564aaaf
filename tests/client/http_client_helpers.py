"""A real server on 127.0.0.1 (in a thread) behind a recording, fault-injecting ASGI layer.

`Recorder` sits in front of the app: it notes every request (method, path, the client's TCP port,
so connections can be counted; status; timing; how many of a kind were in flight at once) and can
answer instead of the app, or break the exchange after the app has applied the request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from server_helpers import LiveServer

from exosphere_nb import BaseNode
from exosphere_nb.server.app import create_app

KEY = "client-key-51c0de"
NS = "cli"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


@dataclass
class Hit:
    method: str
    path: str
    client_port: int
    start: float
    end: float = 0.0
    status: int = 0
    body: bytearray = field(default_factory=bytearray)

    def json(self) -> Any:
        return json.loads(bytes(self.body))


@dataclass(frozen=True)
class Fault:
    """What the recorder does to one request instead of passing it through untouched.

    status: answer with this status (the app never sees the request).
    cut: let the app apply the request, then drop the connection after the response headers.
    hang: let the app apply the request, then answer nothing for this many seconds.
    delay: pass it through, answering this many seconds late.
    """

    status: int = 0
    cut: bool = False
    hang: float = 0.0
    delay: float = 0.0


class Recorder:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.hits: list[Hit] = []
        self.fault: Callable[[Hit], Fault | None] | None = None
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hit = Hit(scope["method"], scope["path"], scope["client"][1], time.monotonic())
        self.hits.append(hit)
        fault = self.fault(hit) if self.fault is not None else None
        if fault is not None and fault.status:
            body = json.dumps({"detail": f"injected {fault.status}"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": fault.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            hit.status, hit.end = fault.status, time.monotonic()
            return
        kind = hit.path.rsplit("/", 1)[-1]
        self.in_flight[kind] += 1
        self.max_in_flight[kind] = max(self.max_in_flight[kind], self.in_flight[kind])
        swallow = fault is not None and (fault.cut or fault.hang > 0)

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                hit.status = message["status"]
                if fault is not None and fault.delay:
                    await asyncio.sleep(fault.delay)
            elif message["type"] == "http.response.body":
                hit.body += message.get("body", b"")
            if not swallow:
                await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.in_flight[kind] -= 1
            hit.end = time.monotonic()
        if fault is not None and fault.hang:
            await asyncio.sleep(fault.hang)
        if fault is not None and fault.cut:
            # headers promise a body that never comes: the server closes the connection
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})

    # -- views -------------------------------------------------------------------------------

    def paths(self, suffix: str, since: float = 0.0, until: float = float("inf")) -> list[Hit]:
        return [h for h in self.hits if h.path.endswith(suffix) and since <= h.start < until]

    def connections(self) -> set[int]:
        return {h.client_port for h in self.hits}


class Served:
    """A server with its recorder; `url` is what clients use."""

    def __init__(self, db: Path, *, extensions: bool = True, lease_ms: int | None = None) -> None:
        self.db = db
        self.recorder = Recorder(create_app(db, api_key=KEY, lease_ms=lease_ms, extensions=extensions))
        self.live = LiveServer(self.recorder)  # type: ignore[arg-type]
        self.url = self.live.url

    def start(self) -> Served:
        self.live.start()
        return self

    def stop(self) -> None:
        if self.live.thread.is_alive() or self.live.server.started:
            self.live.stop()
        else:
            self.live.sock.close()


# -- nodes and graphs ---------------------------------------------------------------------------


class Fan(BaseNode):
    class Inputs(BaseModel):
        n: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=str(i)) for i in range(int(self.inputs.n))]


EXECUTED_AT: list[float] = []  # when Item executions happened (tests clear it)


class Item(BaseNode):
    class Inputs(BaseModel):
        item: str
        pause: str

    class Outputs(BaseModel):
        double: str

    async def execute(self) -> Outputs:
        EXECUTED_AT.append(time.monotonic())
        pause = float(self.inputs.pause)
        if pause:
            await asyncio.sleep(pause)
        return self.Outputs(double=str(2 * int(self.inputs.item)))


class Sum(BaseNode):
    class Inputs(BaseModel):
        doubles: str

    class Outputs(BaseModel):
        total: str

    async def execute(self) -> Outputs:
        return self.Outputs(total=str(sum(int(x) for x in json.loads(self.inputs.doubles))))


NODES: list[type[BaseNode]] = [Fan, Item, Sum]


def fan_graph() -> list[Any]:
    from exosphere_nb import GraphNodeModel, UnitesModel

    return [
        GraphNodeModel(
            node_name="Fan", namespace=NS, identifier="fan", inputs={"n": "${{ store.n }}"}, next_nodes=["item"]
        ),
        GraphNodeModel(
            node_name="Item",
            namespace=NS,
            identifier="item",
            inputs={"item": "${{ fan.outputs.item }}", "pause": "${{ store.pause }}"},
            next_nodes=["sum"],
        ),
        GraphNodeModel(
            node_name="Sum",
            namespace=NS,
            identifier="sum",
            inputs={"doubles": "${{ item.outputs.double }}"},
            unites=UnitesModel(identifier="fan"),
        ),
    ]


def expected_total(n: int) -> str:
    return str(sum(2 * i for i in range(n)))


async def until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
