"""A live uvicorn server in a background thread, and a runtime that speaks HTTP exactly as the
official `exospherehost` SDK does (same paths, same bodies), to drive runs against it."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from exosphere_nb.models import (
    GraphNodeModel,
    RetryPolicyModel,
    RetryStrategyEnum,
    StoreConfigModel,
    UnitesModel,
    UnitesStrategyEnum,
)

KEY = "test-key-7f3a1c"
SECRET = "s3cr3t-VALUE-9c1e77"
NAMESPACE = "srv"
GRAPH = "scores"
MAX_BODY = 64 * 1024  # the test servers' body limit: small, so the size-limit tests stay cheap


class LiveServer:
    """Serve `app` on 127.0.0.1 (a socket bound here, so no port race) until `stop()`."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then (else ~40 ms per request)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # log_config=None: uvicorn's loggers propagate to the root logger, so caplog sees them
        config = uvicorn.Config(app, lifespan="on", log_config=None, log_level="debug", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()
        assert not self.thread.is_alive(), "the test server did not stop"


# -- nodes, as a user of the official SDK writes them ---------------------------------------------


class PruneSignal(Exception):
    def __init__(self, data: dict[str, Any] | None = None) -> None:
        super().__init__("prune")
        self.data = data or {}


class ReQueueAfterSignal(Exception):
    def __init__(self, delay: timedelta) -> None:
        super().__init__("requeue")
        self.delay = delay


class Fetch:
    class Inputs(BaseModel):
        source: str
        count: str

    class Outputs(BaseModel):
        item: str

    class Secrets(BaseModel):
        api_token: str

    @staticmethod
    def execute(inputs: Inputs, secrets: Secrets, attempts: dict[str, int]) -> Any:
        if secrets.api_token != SECRET:
            raise RuntimeError("wrong api token")
        return [Fetch.Outputs(item=f"{inputs.source}-{i}") for i in range(int(inputs.count))]


class Score:
    class Inputs(BaseModel):
        item: str
        factor: str

    class Outputs(BaseModel):
        score: str

    class Secrets(BaseModel):
        pass

    @staticmethod
    def execute(inputs: Inputs, secrets: Any, attempts: dict[str, int]) -> Any:
        n = int(inputs.item.rsplit("-", 1)[1])
        attempts[inputs.item] = attempts.get(inputs.item, 0) + 1
        if n == 1 and attempts[inputs.item] == 1:
            raise ConnectionError(f"transient failure scoring {inputs.item}")
        if n == 2 and attempts[inputs.item] == 1:
            raise ReQueueAfterSignal(timedelta(milliseconds=5))
        if n == 3:
            raise PruneSignal({"reason": f"item {n} filtered out"})
        return Score.Outputs(score=str(n * int(inputs.factor)))


class Report:
    class Inputs(BaseModel):
        scores: str
        label: str

    class Outputs(BaseModel):
        summary: str

    class Secrets(BaseModel):
        pass

    @staticmethod
    def execute(inputs: Inputs, secrets: Any, attempts: dict[str, int]) -> Any:
        return Report.Outputs(summary=f"{inputs.label}:{inputs.scores}")


NODES = {"Fetch": Fetch, "Score": Score, "Report": Report}


def register_body(runtime_name: str = "sdk-runtime") -> dict[str, Any]:
    """PUT /nodes/ as `exospherehost.Runtime._register` builds it."""
    return {
        "runtime_name": runtime_name,
        "runtime_namespace": NAMESPACE,
        "nodes": [
            {
                "name": name,
                "namespace": NAMESPACE,
                "inputs_schema": node.Inputs.model_json_schema(),
                "outputs_schema": node.Outputs.model_json_schema(),
                "secrets": list(node.Secrets.model_fields.keys()),
            }
            for name, node in NODES.items()
        ],
    }


def graph_body(secret: str = SECRET) -> dict[str, Any]:
    """PUT /graph/{name} as `exospherehost.StateManager.upsert_graph` builds it (plain model_dump())."""
    nodes = [
        GraphNodeModel(
            node_name="Fetch",
            namespace=NAMESPACE,
            identifier="fetch",
            inputs={"source": "${{ store.source }}", "count": "5"},
            next_nodes=["score"],
        ),
        GraphNodeModel(
            node_name="Score",
            namespace=NAMESPACE,
            identifier="score",
            inputs={"item": "${{ fetch.outputs.item }}", "factor": "10"},
            next_nodes=["report"],
        ),
        GraphNodeModel(
            node_name="Report",
            namespace=NAMESPACE,
            identifier="report",
            inputs={"scores": "${{ score.outputs.score }}", "label": "${{ store.label }}"},
            unites=UnitesModel(identifier="fetch", strategy=UnitesStrategyEnum.ALL_SUCCESS),
        ),
    ]
    return {
        "secrets": {"api_token": secret},
        "nodes": [n.model_dump() for n in nodes],
        "retry_policy": RetryPolicyModel(
            max_retries=2, strategy=RetryStrategyEnum.FIXED, backoff_factor=1
        ).model_dump(),
        "store_config": StoreConfigModel(required_keys=["label"], default_values={"source": "feed"}).model_dump(),
    }


class SdkRuntime:
    """The official runtime's worker loop, over httpx: the same endpoints and bodies."""

    def __init__(self, client: httpx.Client, namespace: str = NAMESPACE) -> None:
        self.client = client
        self.base = f"/v0/namespace/{namespace}"
        self.attempts: dict[str, int] = {}
        self.seen_secrets: list[dict[str, str]] = []

    def poll_once(self, batch_size: int = 16) -> int:
        res = self.client.post(f"{self.base}/states/enqueue", json={"nodes": list(NODES), "batch_size": batch_size})
        assert res.status_code == 200, res.text
        states = res.json()["states"]
        for state in states:
            self.execute(state)
        return len(states)

    def execute(self, state: dict[str, Any]) -> None:
        sid = state["state_id"]
        node = NODES[state["node_name"]]
        try:
            secrets: dict[str, str] = {}
            if node.Secrets.model_fields:
                res = self.client.get(f"{self.base}/state/{sid}/secrets")
                assert res.status_code == 200, res.text
                secrets = res.json()["secrets"]
                self.seen_secrets.append(secrets)
            outputs = node.execute(node.Inputs(**state["inputs"]), node.Secrets(**secrets), self.attempts)
            if outputs is None:
                outputs = []
            if not isinstance(outputs, list):
                outputs = [outputs]
            body: dict[str, Any] = {"outputs": [o.model_dump() for o in outputs]}
            kind = "executed"
        except PruneSignal as signal:
            kind, body = "prune", {"data": signal.data}
        except ReQueueAfterSignal as signal:
            kind, body = "re-enqueue-after", {"enqueue_after": int(signal.delay.total_seconds() * 1000)}
        except Exception as exc:
            kind, body = "errored", {"error": str(exc)}
        res = self.client.post(f"{self.base}/state/{sid}/{kind}", json=body)
        assert res.status_code == 200, (kind, res.text)

    def run_until_done(self, run_id: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.poll_once():
                run = run_row(self.client, run_id)
                if run is not None and run["status"] != "PENDING":
                    return run
                time.sleep(0.01)
        raise AssertionError(f"run {run_id} did not finish: {run_row(self.client, run_id)}")


def run_row(client: httpx.Client, run_id: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
    res = client.get(f"/v0/namespace/{namespace}/runs/1/100")
    assert res.status_code == 200, res.text
    return next((r for r in res.json()["runs"] if r["run_id"] == run_id), None)


def setup_graph(client: httpx.Client) -> None:
    res = client.put(f"/v0/namespace/{NAMESPACE}/nodes/", json=register_body())
    assert res.status_code == 200, res.text
    res = client.put(f"/v0/namespace/{NAMESPACE}/graph/{GRAPH}", json=graph_body())
    assert res.status_code in (200, 201), res.text
    assert res.json()["validation_status"] == "VALID", res.json()


def trigger(client: httpx.Client, label: str = "weekly", start_delay: int = 0) -> str:
    body = {"start_delay": start_delay, "inputs": {}, "store": {"label": label}}
    res = client.post(f"/v0/namespace/{NAMESPACE}/graph/{GRAPH}/trigger", json=body)
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "CREATED"
    run_id = res.json()["run_id"]
    uuid.UUID(run_id)
    return run_id


def full_run(client: httpx.Client) -> tuple[str, SdkRuntime]:
    setup_graph(client)
    run_id = trigger(client)
    runtime = SdkRuntime(client)
    run = runtime.run_until_done(run_id)
    assert run["status"] == "SUCCESS", run
    return run_id, runtime
