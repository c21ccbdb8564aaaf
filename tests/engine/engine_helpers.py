"""Driving the real Engine in tests: node bodies, graph nodes, claims, reports, reads.

Every helper runs on the test's event loop, like the engine itself.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exosphere_nb.engine.engine import Engine
from exosphere_nb.engine.records import State
from exosphere_nb.models import GraphNodeModel, RetryPolicyModel, RetryStrategyEnum, UnitesModel, UnitesStrategyEnum

NS = "ns"
RUNTIME = "rt"
MakeEngine = Callable[..., Awaitable[Engine]]
TERMINAL = frozenset({"SUCCESS", "PRUNED", "ERRORED", "NEXT_CREATED_ERROR", "RETRY_CREATED", "CANCELLED"})


# -- registration and templates ----------------------------------------------------------------


def node_body(
    name: str, inputs: Iterable[str] = ("x",), outputs: Iterable[str] = ("y",), secrets: Iterable[str] = ()
) -> dict[str, Any]:
    """A node as a runtime registers it (PUT /nodes/ body item)."""
    return {
        "name": name,
        "inputs_schema": {"properties": {k: {"type": "string"} for k in inputs}},
        "outputs_schema": {"properties": {k: {"type": "string"} for k in outputs}},
        "secrets": list(secrets),
    }


def register(engine: Engine, *bodies: dict[str, Any], namespace: str = NS) -> None:
    """Register node bodies; with none, the standard node P (input x, output y)."""
    engine.register_nodes(namespace, RUNTIME, list(bodies) or [node_body("P")])


def gnode(
    identifier: str,
    x: str | None = "c",
    next_nodes: Iterable[str] | None = None,
    *,
    node: str = "P",
    inputs: dict[str, Any] | None = None,
    unites: str | None = None,
    strategy: UnitesStrategyEnum | str = UnitesStrategyEnum.ALL_SUCCESS,
    namespace: str = NS,
) -> GraphNodeModel:
    """A graph node; by default of node P with input x (a constant unless given)."""
    return GraphNodeModel(
        node_name=node,
        namespace=namespace,
        identifier=identifier,
        inputs=inputs if inputs is not None else ({"x": x} if x is not None else {}),
        next_nodes=list(next_nodes) if next_nodes else None,
        unites=UnitesModel(identifier=unites, strategy=UnitesStrategyEnum(strategy)) if unites else None,
    )


def fast_retries(max_retries: int, backoff_ms: int = 1) -> RetryPolicyModel:
    return RetryPolicyModel(max_retries=max_retries, strategy=RetryStrategyEnum.FIXED, backoff_factor=backoff_ms)


NO_RETRIES = RetryPolicyModel(max_retries=0, strategy=RetryStrategyEnum.FIXED, backoff_factor=1)


def upsert(engine: Engine, name: str, nodes: list[GraphNodeModel], **kw: Any) -> dict[str, Any]:
    """Upsert a graph (no retries unless a retry_policy is given) and require it VALID."""
    kw.setdefault("retry_policy", NO_RETRIES)
    res = engine.upsert_graph(NS, name, nodes=nodes, **kw)
    assert res["validation_status"] == "VALID", res["validation_errors"]
    return res


# -- results a handler may ask for -------------------------------------------------------------


@dataclass
class Fail:
    error: str = "boom"


@dataclass
class Prune:
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Requeue:
    delay_ms: int


Result = list[dict[str, Any]] | Fail | Prune | Requeue
Handler = Callable[[State], Result]


def echo(s: State) -> Result:
    """The default handler: one output whose y is the state's x."""
    return [{"y": s.inputs.get("x", "")}]


def report(engine: Engine, s: State, result: Result) -> dict[str, Any]:
    if isinstance(result, Fail):
        return engine.errored(s.id, result.error)
    if isinstance(result, Prune):
        return engine.prune(s.id, result.data)
    if isinstance(result, Requeue):
        return engine.requeue_after(s.id, result.delay_ms)
    return engine.executed(s.id, result)


# -- claims and driving runs -------------------------------------------------------------------


async def claim_now(engine: Engine, names: Iterable[str] = ("P",), batch_size: int = 1000, ns: str = NS) -> list[State]:
    """Claim what is claimable once everything applied so far is committed."""
    await engine.committed()
    return engine.claim(ns, list(names), batch_size)


async def claim_within(
    engine: Engine, names: Iterable[str] = ("P",), count: int = 1, timeout: float = 3.0, ns: str = NS
) -> list[State]:
    """Poll until at least `count` states were claimed (delayed states need the engine's timer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got: list[State] = []
    while len(got) < count:
        got += await claim_now(engine, names, ns=ns)
        if len(got) >= count:
            break
        if loop.time() > deadline:
            raise AssertionError(f"only {len(got)} of {count} states became claimable within {timeout} s")
        await asyncio.sleep(0.005)
    return got


async def eventually(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 3.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        res = predicate()
        if not isinstance(res, bool):
            res = await res
        if res:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.005)


def graph_node_names(engine: Engine, graph_name: str, ns: str = NS) -> list[str]:
    return sorted({n["node_name"] for n in engine.get_graph(ns, graph_name)["nodes"]})


async def drain(
    engine: Engine,
    run_id: str,
    handlers: Mapping[str, Handler] | None = None,
    *,
    ns: str = NS,
    timeout: float = 5.0,
    batch_size: int = 1000,
) -> str:
    """Claim, handle (per node identifier, default `echo`) and report until the run is finished.

    Returns the run status wait_run reports, after checking the stored status agrees.
    """
    handlers = handlers or {}
    await engine.committed()
    summary = engine.run_summary(run_id)
    names = graph_node_names(engine, summary["graph_name"], ns)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        states = await claim_now(engine, names, batch_size, ns)
        for s in states:
            report(engine, s, handlers.get(s.node.identifier, echo)(s))
        if not states:
            await engine.committed()
            if engine.run_summary(run_id)["status"] != "PENDING":
                break
            if loop.time() > deadline:
                raise AssertionError(f"run {run_id} still PENDING after {timeout} s: {engine.run_summary(run_id)}")
            await asyncio.sleep(0.003)
    status = await engine.wait_run(run_id, timeout=2)
    assert status == engine.run_summary(run_id)["status"]
    return status


# -- reads -------------------------------------------------------------------------------------


def rows(engine: Engine, sql: str, *params: Any) -> list[dict[str, Any]]:
    cols, data = engine.store.query(sql, list(params) if params else None)
    return [dict(zip(cols, r)) for r in data]


def _decode(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def run_states(engine: Engine, run_id: str, identifier: str | None = None) -> list[dict[str, Any]]:
    """The run's states from the `states` view, oldest first, with JSON columns decoded."""
    sql = (
        "select state_id, identifier, node_name, status, inputs, outputs, parents, error, retry_count, "
        "epoch_ms(enqueue_after) as enqueue_after_ms, epoch_ms(updated_at) as updated_ms, branch, fanout_id "
        "from states where run_id = ?"
    )
    params: list[Any] = [run_id]
    if identifier is not None:
        sql += " and identifier = ?"
        params.append(identifier)
    out = rows(engine, sql + " order by created_at, state_id", *params)
    for r in out:
        for k in ("inputs", "outputs", "parents"):
            r[k] = _decode(r[k])
    return out


def statuses(engine: Engine, run_id: str, identifier: str) -> list[str]:
    return [r["status"] for r in run_states(engine, run_id, identifier)]


def count(engine: Engine, sql: str, *params: Any) -> int:
    return int(engine.store.query(sql, list(params) if params else None)[1][0][0])


def run_status(engine: Engine, run_id: str) -> str:
    return str(engine.run_summary(run_id)["status"])


class CommitRecorder:
    """Wraps Store.write: after every group commit, snapshots what the database then holds.

    With `hold()`, commits wait (on the writer thread) until `release()`: a commit can be kept in
    flight while the loop applies more changes.
    """

    def __init__(self, engine: Engine) -> None:
        self.snapshots: list[dict[str, Any]] = []
        self._gate = threading.Event()
        self._gate.set()
        store = engine.store
        original = store.write

        def write(batch: Any) -> None:
            assert self._gate.wait(10), "commit held for too long"
            original(batch)
            self.snapshots.append(
                {
                    "states": {
                        sid: (ident, status, outputs)
                        for sid, ident, status, outputs in store.query(
                            "select state_id, identifier, status, outputs from states"
                        )[1]
                    },
                    "runs": {r[0] for r in store.query("select run_id from runs")[1]},
                    "store": {(r[0], r[1]) for r in store.query("select run_id, key from store")[1]},
                }
            )

        store.write = write  # type: ignore[method-assign]

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()
