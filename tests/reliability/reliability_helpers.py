"""Real processes on 127.0.0.1 for the reliability tests: `exo-nb serve` and runtime workers.

Every process is started through `Procs`, whose fixture kills each one by its own pid at teardown.
Output goes to files, never pipes (an undrained pipe blocks a chatty child).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from exosphere_nb.models import GraphNodeModel, RetryPolicyModel, RetryStrategyEnum, StoreConfigModel, UnitesModel

KEY = "reliability-key-4b1d9e"
NS = "rel"
GRAPH = "fan"
WORKER = Path(__file__).with_name("reliability_worker.py")
BASE = f"/v0/namespace/{NS}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXOSPHERE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll until `predicate()` is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Proc:
    """One child process, its stdout and stderr in `log`."""

    def __init__(self, argv: list[str], log: Path, cwd: Path) -> None:
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL, by pid, and reap it."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill9()


class Server(Proc):
    def __init__(self, tmp: Path, db: Path, port: int, lease_ms: int | None = None, tag: str = "server") -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "exosphere_nb", "serve", "--port", str(port), "--db", str(db)]
        argv += ["--api-key", KEY, "--log-level", "warning"]
        if lease_ms is not None:
            argv += ["--lease-ms", str(lease_ms)]
        super().__init__(argv, tmp / f"{tag}-{port}.log", tmp)

    def wait_healthy(self, timeout: float = 20) -> None:
        def healthy() -> bool:
            if not self.alive():
                raise AssertionError(f"server exited {self.proc.returncode}: {self.output}")
            try:
                return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout, f"the server on port {self.port}", interval=0.05)


class Worker(Proc):
    def __init__(self, tmp: Path, url: str, name: str, *, workers: int = 4, batch_size: int = 16) -> None:
        self.name = name
        self.ready = tmp / f"{name}.ready"
        self.effects = tmp / "effects.tsv"  # shared by every worker of a test: one line per event
        self.acks = tmp / f"{name}.acks"
        argv = [sys.executable, str(WORKER), "--uri", url, "--key", KEY, "--namespace", NS, "--name", name]
        argv += ["--effects", str(self.effects), "--acks", str(self.acks), "--ready", str(self.ready)]
        argv += ["--workers", str(workers), "--batch-size", str(batch_size)]
        super().__init__(argv, tmp / f"{name}.log", tmp)

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"runtime {self.name} exited {self.proc.returncode}: {self.output}")
            return self.ready.exists()

        wait_for(ready, timeout, f"runtime {self.name} to poll", interval=0.05)

    def acked(self) -> list[str]:
        return self.acks.read_text().split() if self.acks.exists() else []


P = TypeVar("P", bound="Proc")


class Procs:
    """Every process a test starts; `cleanup()` kills the ones still running, each by its pid."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def add(self, proc: P) -> P:
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in reversed(self.started):
            try:
                proc.kill9()
            except Exception:  # pragma: no cover - keep killing the others
                pass


# -- side effects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    event: str
    node: str
    state_id: str
    value: str
    pid: int


def read_effects(path: Path) -> list[Effect]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, node, sid, value, pid = line.split("\t")  # a torn line would fail here
        assert sid != "?", "a node did not learn its state id: does the runtime still fetch secrets per state?"
        out.append(Effect(event, node, sid, value, int(pid)))
    return out


def done(effects: list[Effect], node: str) -> list[Effect]:
    return [e for e in effects if e.event == "done" and e.node == node]


def per_state(effects: list[Effect]) -> Counter[str]:
    return Counter(e.state_id for e in effects)


# -- the graph, and the server's view of a run ------------------------------------------------------


def client(url: str, timeout: float = 10) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"x-api-key": KEY}, timeout=timeout)


def setup_graph(c: httpx.Client) -> None:
    nodes = [
        GraphNodeModel(
            node_name="Split", namespace=NS, identifier="split", inputs={"n": "${{ store.n }}"}, next_nodes=["work"]
        ),
        GraphNodeModel(
            node_name="Work",
            namespace=NS,
            identifier="work",
            inputs={"item": "${{ split.outputs.item }}", "pause": "${{ store.pause }}"},
            next_nodes=["gather"],
        ),
        GraphNodeModel(
            node_name="Gather",
            namespace=NS,
            identifier="gather",
            inputs={"values": "${{ work.outputs.value }}"},
            unites=UnitesModel(identifier="split"),
        ),
    ]
    body = {
        "secrets": {"token": "tok"},
        "nodes": [n.model_dump(mode="json") for n in nodes],
        "retry_policy": RetryPolicyModel(max_retries=3, strategy=RetryStrategyEnum.FIXED, backoff_factor=10).model_dump(
            mode="json"
        ),
        "store_config": StoreConfigModel(required_keys=["n", "pause"]).model_dump(mode="json"),
    }
    res = c.put(f"{BASE}/graph/{GRAPH}", json=body)
    assert res.status_code in (200, 201), res.text
    assert res.json()["validation_status"] == "VALID", res.json()


def trigger(c: httpx.Client, n: int, pause: float) -> str:
    res = c.post(f"{BASE}/graph/{GRAPH}/trigger", json={"inputs": {}, "store": {"n": str(n), "pause": str(pause)}})
    assert res.status_code == 200, res.text
    return res.json()["run_id"]


def summary(c: httpx.Client, run_id: str) -> dict[str, Any] | None:
    """The run's summary, or None while the server cannot be reached."""
    try:
        res = c.get(f"{BASE}/runs/{run_id}/summary")
    except httpx.HTTPError:
        return None
    return res.json() if res.status_code == 200 else None


def wait_finished(c: httpx.Client, run_id: str, timeout: float, procs: list[Proc]) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        s = summary(c, run_id)
        return s if s is not None and s["status"] != "PENDING" else None

    try:
        return wait_for(finished, timeout, f"run {run_id} to finish", interval=0.1)
    except AssertionError as exc:
        logs = "\n".join(f"--- {p.log.name}\n{p.output[-3000:]}" for p in procs)
        raise AssertionError(f"{exc}; last summary {summary(c, run_id)}\n{logs}") from None


@dataclass(frozen=True)
class StateView:
    id: str
    identifier: str
    status: str
    error: str | None
    retry_count: int
    inputs: dict[str, str]


def states_view(c: httpx.Client, run_id: str, identifiers: tuple[str, ...] = ("work", "gather")) -> list[StateView]:
    """The run's states of these node identifiers as the server stores them (one GET per state)."""
    graph = c.get(f"{BASE}/states/run/{run_id}/graph").json()
    out = []
    for n in graph["nodes"]:
        if n["identifier"] not in identifiers:
            continue
        s = c.get(f"{BASE}/state/{n['id']}").json()
        out.append(StateView(s["id"], s["identifier"], s["status"], s["error"], s["retry_count"], s["inputs"]))
    return out
