"""`exo-nb demo`: the main job on the embedded state manager, with a readable summary.

fetch (root, uses a secret and the store) fans out N items -> score (one per item; one item fails
once and is retried, every 25th is pruned) -> report (unites fetch: aggregates every score).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pydantic import BaseModel

from . import (
    BaseNode,
    GraphNodeModel,
    PruneSignal,
    RetryPolicyModel,
    RetryStrategyEnum,
    Runtime,
    StateManager,
    StoreConfigModel,
    UnitesModel,
    UnitesStrategyEnum,
)

NAMESPACE = "demo"
GRAPH = "demo-scores"
_failed_once: set[str] = set()


class Fetch(BaseNode):
    class Inputs(BaseModel):
        source: str
        count: str

    class Outputs(BaseModel):
        item: str

    class Secrets(BaseModel):
        api_token: str

    async def execute(self) -> list[Outputs]:
        if not self.secrets.api_token:
            raise RuntimeError("no api token")
        return [self.Outputs(item=f"{self.inputs.source}-{i}") for i in range(int(self.inputs.count))]


class Score(BaseNode):
    class Inputs(BaseModel):
        item: str
        factor: str

    class Outputs(BaseModel):
        score: str

    async def execute(self) -> Outputs:
        n = int(self.inputs.item.rsplit("-", 1)[1])
        if n % 25 == 24:
            raise PruneSignal({"reason": f"item {n} filtered out"})
        if n == 7 and self.inputs.item not in _failed_once:
            _failed_once.add(self.inputs.item)
            raise ConnectionError(f"transient failure scoring {self.inputs.item}")
        return self.Outputs(score=str(n * int(self.inputs.factor)))


class Report(BaseNode):
    class Inputs(BaseModel):
        scores: str
        label: str

    class Outputs(BaseModel):
        summary: str

    async def execute(self) -> Outputs:
        scores = [int(s) for s in json.loads(self.inputs.scores)]
        return self.Outputs(
            summary=json.dumps({"label": self.inputs.label, "count": len(scores), "total": sum(scores)})
        )


def graph_nodes() -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Fetch",
            namespace=NAMESPACE,
            identifier="fetch",
            inputs={"source": "${{ store.source }}", "count": "${{ store.count }}"},
            next_nodes=["score"],
        ),
        GraphNodeModel(
            node_name="Score",
            namespace=NAMESPACE,
            identifier="score",
            inputs={"item": "${{ fetch.outputs.item }}", "factor": "${{ store.factor }}"},
        ),
        GraphNodeModel(
            node_name="Report",
            namespace=NAMESPACE,
            identifier="report",
            inputs={"scores": "${{ score.outputs.score }}", "label": "scores of ${{ store.source }}"},
            unites=UnitesModel(identifier="fetch", strategy=UnitesStrategyEnum.ALL_SUCCESS),
        ),
    ]


def _table(nodes: dict[str, dict[str, int]]) -> str:
    statuses = [
        s
        for s in (
            "SUCCESS",
            "PRUNED",
            "RETRY_CREATED",
            "ERRORED",
            "NEXT_CREATED_ERROR",
            "CANCELLED",
            "CREATED",
            "QUEUED",
        )
        if any(c.get(s) for c in nodes.values())
    ]
    head = f"  {'node':<8}" + "".join(f"{s:>15}" for s in statuses)
    rows = [f"  {ident:<8}" + "".join(f"{counts.get(s, 0):>15}" for s in statuses) for ident, counts in nodes.items()]
    return "\n".join([head, *rows])


async def run_demo(db: str | None = None, items: int = 120) -> dict[str, Any]:
    uri = f"duckdb://{db}" if db else None
    runtime = Runtime(namespace=NAMESPACE, name="demo-runtime", nodes=[Fetch, Score, Report], state_manager_uri=uri)
    handle = runtime.start()
    sm = StateManager(NAMESPACE, state_manager_uri=uri)
    try:
        await sm.upsert_graph(
            GRAPH,
            graph_nodes(),
            secrets={"api_token": "demo-token-not-shown"},
            retry_policy=RetryPolicyModel(max_retries=2, strategy=RetryStrategyEnum.FIXED, backoff_factor=50),
            store_config=StoreConfigModel(required_keys=["source"], default_values={"factor": "3", "count": "120"}),
        )
        _failed_once.clear()
        started = time.perf_counter()
        run = await sm.trigger(GRAPH, store={"source": "sensor", "count": str(items)})
        summary = await sm.wait(run["run_id"], timeout=120)
        wall = time.perf_counter() - started
        outputs = await sm.run_outputs(run["run_id"])
    finally:
        assert handle is not None
        await asyncio.get_running_loop().run_in_executor(None, handle.stop)
    return {"run_id": run["run_id"], "summary": summary, "outputs": outputs, "wall_s": wall, "db": repr(sm)}


def main(db: str | None = None, items: int = 120) -> int:
    result = asyncio.run(run_demo(db, items))
    summary = result["summary"]
    total_states = sum(summary["counts"].values())
    report = json.loads(result["outputs"]["report"][0]["summary"]) if result["outputs"].get("report") else None
    print(f"exosphere_nb demo on the embedded state manager ({result['db']})")
    print(f"graph {GRAPH!r}: fetch -> score (fan-out of {items}) -> report (unites fetch, ALL_SUCCESS)")
    print(f"run {result['run_id']}: {summary['status']}, {total_states} states in {result['wall_s']:.3f} s")
    print("states per node, by status:")
    print(_table(summary["nodes"]))
    if report is not None:
        print(f"aggregated by report: {report['count']} scores of {report['label']!r}, total = {report['total']}")
    return 0 if summary["status"] == "SUCCESS" and report is not None else 1
