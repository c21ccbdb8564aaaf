"""Properties over random graphs and random node behaviour (semantics.md: status, fan-out, unites, retries).

Graphs: a tree of plain nodes (chains and fan-outs), some nodes being unite targets whose unite node
aggregates one node strictly between; unites may have children, so unites nest. Behaviour, drawn per
claimed state: fan out k = 0..3, an empty output, an error (retries apply), a prune, or a re-queue;
after the run ends, some ERRORED states may be retried by hand and the run drained again. A second
property runs on a database file and restarts the engine mid-run, with states still claimed.
After draining: every state is terminal, the run status matches the counts, each executed output
has exactly one state per next node, and each unite ran exactly once per qualifying execution of its
target (ALL_DONE: every execution; ALL_SUCCESS: those whose members all ended SUCCESS/PRUNED or were
retried) with its JSON array in branch order.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine_helpers import NS, TERMINAL, fast_retries, register, run_states
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exosphere_nb.engine.engine import Engine
from exosphere_nb.models import GraphNodeModel, UnitesModel, UnitesStrategyEnum

MAX_NODES = 8
MAX_DEPTH = 3


@dataclass
class Spec:
    ident: str
    x: str
    next: list[str] = field(default_factory=list)
    unites: str | None = None
    strategy: str | None = None
    aggregates: str | None = None  # the node between target and unite whose y the unite reads

    def model(self) -> GraphNodeModel:
        return GraphNodeModel(
            node_name="P",
            namespace=NS,
            identifier=self.ident,
            inputs={"x": self.x},
            next_nodes=self.next or None,
            unites=UnitesModel(identifier=self.unites, strategy=UnitesStrategyEnum(self.strategy))
            if self.unites
            else None,
        )


def _ref(ident: str) -> str:
    return "${{ " + ident + ".outputs.y }}"


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Spec]:
    specs: dict[str, Spec] = {}

    def plain_descendants(ident: str) -> list[str]:
        out, todo = [], list(specs[ident].next)
        while todo:
            i = todo.pop()
            out.append(i)
            todo.extend(specs[i].next)
        return sorted(out)

    def add(parent: str | None, depth: int) -> None:
        ident = f"n{len(specs)}"
        x = _ref(parent) if parent is not None and draw(st.booleans()) else "c"
        specs[ident] = Spec(ident, x)
        if parent is not None:
            specs[parent].next.append(ident)
        if depth < MAX_DEPTH:
            for _ in range(draw(st.integers(0, 2))):
                if len(specs) < MAX_NODES:
                    add(ident, depth + 1)
        between = plain_descendants(ident)
        if between and len(specs) < MAX_NODES and draw(st.booleans()):
            uid = f"n{len(specs)}"
            aggregated = draw(st.sampled_from(between))
            strategy = draw(st.sampled_from(["ALL_SUCCESS", "ALL_DONE"]))
            specs[uid] = Spec(uid, "agg=" + _ref(aggregated), unites=ident, strategy=strategy, aggregates=aggregated)
            if depth < MAX_DEPTH and len(specs) < MAX_NODES and draw(st.booleans()):
                add(uid, depth + 1)

    add(None, 0)
    return specs


# what a runtime does with one claimed state
ACTIONS = st.sampled_from(["k0", "k1", "k1", "k2", "k2", "k3", "empty", "error", "error", "prune", "requeue"])


class Driver:
    """The engine under test; with a database file, it can be closed and reopened mid-run."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.engine: Engine | None = None
        self.restarts = 0

    async def open(self) -> Engine:
        self.engine = Engine(self.path or ":memory:")
        await self.engine.start()
        return self.engine

    async def restart(self) -> Engine:
        assert self.engine is not None and self.path is not None
        await self.engine.close()
        self.restarts += 1
        return await self.open()


async def _drain(driver: Driver, run_id: str, data: st.DataObject, max_restarts: int = 0) -> Engine:
    engine = driver.engine
    assert engine is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    requeues: dict[str, int] = defaultdict(int)
    handled = 0
    delayed = False
    while True:
        if delayed:  # retries and re-queues wait 1 ms: let them all come due, for a reproducible batch
            await asyncio.sleep(0.006)
        await engine.committed()
        batch = engine.claim(NS, ["P"], 1000)
        delayed = False
        if not batch:
            if engine.run(run_id) is None:
                return engine
            assert loop.time() < deadline, f"run still pending: {engine.run_summary(run_id)}"
            await asyncio.sleep(0.002)
            continue
        for s in data.draw(st.permutations(batch), label="order"):
            if driver.restarts < max_restarts and data.draw(st.integers(0, 9), label="restart?") == 0:
                # claimed states stay QUEUED across the restart; their results arrive afterwards
                await engine.committed()
                engine = await driver.restart()
            action = data.draw(ACTIONS, label=f"{s.node.identifier}")
            handled += 1
            if handled > 250 and action in ("k2", "k3", "requeue"):
                action = "k1"  # keep an example small
            if action == "requeue" and requeues[s.id] >= 2:
                action = "k1"
            if action == "error":
                delayed |= engine.errored(s.id, "boom")["retry_created"]
            elif action == "prune":
                engine.prune(s.id, {"pruned": s.id})
            elif action == "requeue":
                requeues[s.id] += 1
                engine.requeue_after(s.id, 1)
                delayed = True
            elif action == "empty":
                engine.executed(s.id, [{}])
            else:
                k = int(action[1])
                engine.executed(s.id, [{"y": f"{s.id}.{i}"} for i in range(k)])


def _check(specs: dict[str, Spec], states: list[dict[str, Any]], status: str, engine: Engine, run_id: str) -> None:
    # every state terminal; the run status follows the counts
    assert all(s["status"] in TERMINAL for s in states), [(s["identifier"], s["status"]) for s in states]
    counts = defaultdict(int)
    for s in states:
        counts[s["status"]] += 1
    expected_status = "FAILED" if counts["ERRORED"] or counts["NEXT_CREATED_ERROR"] else "SUCCESS"
    assert status == expected_status
    assert engine.run_summary(run_id)["status"] == expected_status
    [listed] = [r for r in engine.list_runs(NS, 1, 100)["runs"] if r["run_id"] == run_id]
    assert listed["status"] == expected_status
    assert listed["total_count"] == len(states)
    assert listed["success_count"] == counts["SUCCESS"] + counts["PRUNED"]
    assert listed["errored_count"] == counts["ERRORED"] + counts["NEXT_CREATED_ERROR"]
    assert listed["retried_count"] == counts["RETRY_CREATED"]

    by_ident: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in states:
        by_ident[s["identifier"]].append(s)

    # one state per next node for each output state that produced outputs
    for spec in specs.values():
        for s in by_ident[spec.ident]:
            made = s["status"] == "SUCCESS" and s["outputs"] is not None
            for child in spec.next:
                kids = [  # the state first created for the child; its fan-out siblings and retries come from it
                    c
                    for c in by_ident[child]
                    if c["parents"].get(spec.ident) == s["state_id"]
                    and c["retry_count"] == 0
                    and c["branch"][-1] == 0
                    and c["fanout_id"] is None
                ]
                assert len(kids) == (1 if made else 0), (spec.ident, s["status"], child, len(kids))

    # unites: exactly once per qualifying execution of the target, arrays in branch order
    unites_of: dict[str, set[str]] = defaultdict(set)
    for spec in specs.values():
        if spec.unites:
            unites_of[spec.unites].add(spec.ident)
    for spec in specs.values():
        if not spec.unites:
            continue
        target, excluded = spec.unites, unites_of[spec.unites]
        executions: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for t in by_ident[target]:
            if t["status"] in ("SUCCESS", "NEXT_CREATED_ERROR"):
                executions[(json.dumps(t["parents"], sort_keys=True), json.dumps(t["branch"][:-1]))].append(t)
        created = [
            u for u in by_ident[spec.ident] if u["retry_count"] == 0 and u["branch"][-1] == 0 and u["fanout_id"] is None
        ]
        expected_total = 0
        for outs in executions.values():
            out_ids = {t["state_id"] for t in outs}
            [leader] = [t for t in outs if t["branch"][-1] == 0]
            members = list(outs) + [
                s
                for s in states
                if s["parents"].get(target) in out_ids
                and s["identifier"] not in excluded
                and not excluded.intersection(s["parents"])
            ]
            ok = all(m["status"] in ("SUCCESS", "PRUNED", "RETRY_CREATED") for m in members)
            qualifies = spec.strategy == "ALL_DONE" or ok
            mine = [u for u in created if u["parents"].get(target) == leader["state_id"]]
            assert len(mine) == (1 if qualifies else 0), (spec.ident, spec.strategy, [m["status"] for m in members])
            expected_total += len(mine)
            # an ALL_DONE unite may have run before manual retries in its group: check its array otherwise
            if mine and (spec.strategy == "ALL_SUCCESS" or not any(m["fanout_id"] for m in members)):
                agg = sorted(
                    (m["branch"], m["outputs"]["y"])
                    for m in members
                    if m["identifier"] == spec.aggregates and m["status"] == "SUCCESS" and "y" in (m["outputs"] or {})
                )
                assert mine[0]["inputs"]["x"].startswith("agg=")
                assert json.loads(mine[0]["inputs"]["x"][4:]) == [y for _, y in agg]
        assert len(created) == expected_total, (spec.ident, len(created), expected_total)


async def _scenario(specs: dict[str, Spec], max_retries: int, data: st.DataObject, path: str | None = None) -> None:
    driver = Driver(path)
    engine = await driver.open()
    try:
        register(engine)
        res = engine.upsert_graph(
            NS, "g", nodes=[s.model() for s in specs.values()], retry_policy=fast_retries(max_retries)
        )
        assert res["validation_status"] == "VALID", res["validation_errors"]
        run_id = engine.trigger(NS, "g")["run_id"]
        engine = await _drain(driver, run_id, data, max_restarts=3 if path else 0)
        # manual retries of some ERRORED states, after the run ended: unites waiting on them proceed
        for round_ in range(data.draw(st.sampled_from([0, 1, 1, 2]), label="manual retry rounds")):
            errored = [r["state_id"] for r in run_states(engine, run_id) if r["status"] == "ERRORED"]
            if not errored:
                break
            chosen = data.draw(st.lists(st.sampled_from(errored), min_size=1, unique=True), label="retry")
            for i, sid in enumerate(chosen):
                engine.manual_retry(sid, f"manual-{round_}-{i}")
            engine = await _drain(driver, run_id, data)
        status = await engine.wait_run(run_id, timeout=2)
        await engine.committed()
        _check(specs, run_states(engine, run_id), status, engine, run_id)
    finally:
        assert driver.engine is not None
        await driver.engine.close()


SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(SETTINGS, max_examples=40)
@given(specs=graphs(), max_retries=st.integers(0, 2), data=st.data())
def test_random_graphs_and_failures_end_consistent(
    specs: dict[str, Spec], max_retries: int, data: st.DataObject
) -> None:
    asyncio.run(_scenario(specs, max_retries, data))


@settings(SETTINGS, max_examples=8)
@given(specs=graphs(), max_retries=st.integers(0, 1), data=st.data())
def test_random_graphs_end_consistent_across_restarts(
    specs: dict[str, Spec], max_retries: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_scenario(specs, max_retries, data, str(Path(tmp) / "state.duckdb")))
