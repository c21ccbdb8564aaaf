"""Fan-out throughput: root -> fan-out of N -> one `Square` state per item -> a unite summing them.

Run: `.venv/bin/python benchmarks/fanout.py --n 10000` (add `--no-baseline` to skip the slow baseline).

The graph runs on the embedded DuckDB state manager (a fresh file in a temp dir unless `--db`), driven by
this project's `Runtime` through the public API. The time is taken from just before `trigger` to the return
of `wait` (which returns once the last state is committed, then reads the run's summary).

The baseline runs the same graph (smaller N) on the same engine with a runtime that emulates the request
pattern of the official `exospherehost` SDK: one enqueue (claim of up to `batch_size` states) every second
while its local queue holds fewer than `batch_size` states, `workers` tasks executing from that queue, one
`executed` call per state awaiting its commit (as an HTTP round trip would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from exosphere_nb import BaseNode, GraphNodeModel, Runtime, StateManager, UnitesModel
from exosphere_nb.client.embedded import close_engines, get_engine
from exosphere_nb.loop import background_loop, run_on_loop

NAMESPACE = "bench-fanout"
BASELINE_NAMESPACE = "bench-fanout-official-poll"


class Start(BaseNode):
    class Inputs(BaseNode.Inputs):
        n: str

    class Outputs(BaseNode.Outputs):
        n: str

    async def execute(self) -> Any:
        return self.Outputs(n=self.inputs.n)


class FanOut(BaseNode):
    class Inputs(BaseNode.Inputs):
        n: str

    class Outputs(BaseNode.Outputs):
        value: str

    async def execute(self) -> Any:
        return [self.Outputs(value=str(i)) for i in range(int(self.inputs.n))]


class Square(BaseNode):
    class Inputs(BaseNode.Inputs):
        value: str

    class Outputs(BaseNode.Outputs):
        squared: str

    async def execute(self) -> Any:
        v = int(self.inputs.value)
        return self.Outputs(squared=str(v * v))


class SumSquares(BaseNode):
    class Inputs(BaseNode.Inputs):
        squares: str  # a JSON array string: one entry per Square state, in branch order
        n: str

    class Outputs(BaseNode.Outputs):
        total: str
        count: str

    async def execute(self) -> Any:
        values = [int(v) for v in json.loads(self.inputs.squares)]
        return self.Outputs(total=str(sum(values)), count=str(len(values)))


NODES: list[type[BaseNode]] = [Start, FanOut, Square, SumSquares]


def graph_nodes(namespace: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Start", namespace=namespace, identifier="start", inputs={"n": "0"}, next_nodes=["fanout"]
        ),
        GraphNodeModel(
            node_name="FanOut",
            namespace=namespace,
            identifier="fanout",
            inputs={"n": "${{ start.outputs.n }}"},
            next_nodes=["square"],
        ),
        GraphNodeModel(
            node_name="Square",
            namespace=namespace,
            identifier="square",
            inputs={"value": "${{ fanout.outputs.value }}"},
            next_nodes=None,
        ),
        GraphNodeModel(
            node_name="SumSquares",
            namespace=namespace,
            identifier="sum",
            inputs={"squares": "${{ square.outputs.squared }}", "n": "${{ start.outputs.n }}"},
            unites=UnitesModel(identifier="fanout"),
        ),
    ]


def expected_total(n: int) -> int:
    return (n - 1) * n * (2 * n - 1) // 6


# -- the official SDK's request pattern, emulated against the same engine ------------------------------------


class OfficialPollRuntime:
    """Polls `engine.claim` every `poll_interval` s while its queue is below `batch_size`; `workers` executors.

    Runs on the background loop (where the engine lives). Each call awaits the commit, as the HTTP server
    answers only after it, so the emulation keeps the official SDK's request/response rhythm.
    """

    def __init__(
        self,
        engine: Any,
        namespace: str,
        nodes: list[type[BaseNode]],
        batch_size: int = 16,
        workers: int = 4,
        poll_interval: float = 1.0,
    ) -> None:
        self.engine = engine
        self.namespace = namespace
        self.nodes = {n.__name__: n for n in nodes}
        self.batch_size = batch_size
        self.workers = workers
        self.poll_interval = poll_interval
        self.executed = 0
        self.polls = 0
        self._stop: asyncio.Event | None = None

    def stop(self) -> None:
        """Thread-safe."""
        stop = self._stop
        if stop is not None:
            background_loop().call_soon_threadsafe(stop.set)

    async def run(self) -> None:
        self._stop = asyncio.Event()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2 * self.batch_size)
        tasks = [asyncio.create_task(self._worker(queue)) for _ in range(self.workers)]
        names = list(self.nodes)
        try:
            while not self._stop.is_set():
                if queue.qsize() < self.batch_size:
                    states = self.engine.claim(self.namespace, names, self.batch_size)
                    self.polls += 1
                    await self.engine.committed()
                    for s in states:
                        await queue.put(s)
                try:
                    await asyncio.wait_for(self._stop.wait(), self.poll_interval)
                except TimeoutError:
                    pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            state = await queue.get()
            cls = self.nodes[state.node.node_name]
            try:
                node = cls()
                result = await node._execute(cls.Inputs.model_validate(state.inputs), cls.Secrets())
                if result is None:
                    outputs: list[dict[str, Any]] = []  # the official SDK sends None as no outputs
                elif isinstance(result, list):
                    outputs = [o.model_dump() for o in result]
                else:
                    outputs = [result.model_dump()]
            except Exception as exc:
                self.engine.errored(state.id, str(exc))
            else:
                self.engine.executed(state.id, outputs)
                self.executed += 1
            await self.engine.committed()


# -- the benchmark -------------------------------------------------------------------------------------------


async def wait_registered(sm: StateManager, names: set[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        have = {n["name"] for n in await sm.list_nodes()}
        if names <= have:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nodes {sorted(names - have)} were not registered within {timeout} s")
        await asyncio.sleep(0.01)


async def timed_run(sm: StateManager, graph: str, n: int) -> tuple[float, int, dict[str, Any]]:
    """(seconds from trigger to wait's return, state count, run summary); checks the aggregate."""
    t0 = time.perf_counter()
    run_id = (await sm.trigger(graph, inputs={"n": str(n)}))["run_id"]
    summary = await sm.wait(run_id, timeout=600)
    wall = time.perf_counter() - t0
    if summary["status"] != "SUCCESS":
        raise RuntimeError(f"run {run_id} ended {summary['status']}: {summary['counts']}")
    states = sum(summary["counts"].values())
    outs = (await sm.run_outputs(run_id))["sum"]
    if len(outs) != 1:
        raise RuntimeError(f"expected one unite state, got {len(outs)}")
    total, count = int(outs[0]["total"]), int(outs[0]["count"])
    if count != n or total != expected_total(n):
        raise RuntimeError(f"wrong aggregate: count={count} total={total}, expected {n} and {expected_total(n)}")
    if states != 2 * n + 2:
        raise RuntimeError(f"expected {2 * n + 2} states, the summary counts {states}: {summary['counts']}")
    return wall, states, summary


async def run_ours(db: str, n: int, workers: int, batch_size: int) -> tuple[float, int]:
    uri = f"duckdb://{db}"
    runtime = Runtime(
        NAMESPACE, "bench-fanout-runtime", NODES, state_manager_uri=uri, workers=workers, batch_size=batch_size
    )
    handle = runtime.start()
    assert handle is not None
    try:
        sm = StateManager(NAMESPACE, state_manager_uri=uri)
        await wait_registered(sm, {c.__name__ for c in NODES})
        await sm.upsert_graph("fanout", graph_nodes(NAMESPACE), secrets={})
        await timed_run(sm, "fanout", 10)  # warm-up: imports, first commits
        wall, states, _ = await timed_run(sm, "fanout", n)
    finally:
        handle.stop()
    return wall, states


async def run_baseline(db: str, n: int, workers: int, batch_size: int) -> tuple[float, int, int]:
    from exosphere_nb.node import node_schema

    async def setup() -> OfficialPollRuntime:
        engine = await get_engine(db)
        engine.register_nodes(BASELINE_NAMESPACE, "official-poll", [node_schema(c, BASELINE_NAMESPACE) for c in NODES])
        await engine.committed()
        return OfficialPollRuntime(engine, BASELINE_NAMESPACE, NODES, batch_size=batch_size, workers=workers)

    poller = await run_on_loop(setup())
    task = asyncio.ensure_future(run_on_loop(poller.run()))
    try:
        sm = StateManager(BASELINE_NAMESPACE, state_manager_uri=f"duckdb://{db}")
        await sm.upsert_graph("fanout", graph_nodes(BASELINE_NAMESPACE), secrets={})
        wall, states, _ = await timed_run(sm, "fanout", n)
    finally:
        poller.stop()
        await task
    return wall, states, poller.polls


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="exo-bench-") as tmp:
        db = str(Path(args.db).resolve()) if args.db else str(Path(tmp) / "fanout.duckdb")
        try:
            wall, states = await run_ours(db, args.n, args.workers, args.batch_size)
            rate = states / wall
            if not args.no_baseline:
                b_wall, b_states, polls = await run_baseline(db, args.baseline_n, args.workers, args.batch_size)
                b_rate = b_states / b_wall
                print(
                    f"baseline official_poll_pattern n={args.baseline_n} states={b_states} wall_s={b_wall:.3f} "
                    f"states_per_s={b_rate:.1f} polls={polls} | ours states_per_s={rate:.1f} "
                    f"ratio_vs_official_poll_pattern={rate / b_rate:.1f}"
                )
        finally:
            await run_on_loop(close_engines())
    print(
        f"fanout n={args.n} states={states} wall_s={wall:.3f} states_per_s={rate:.1f} "
        f"us_per_state={wall / states * 1e6:.1f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=10_000, help="fan-out width (states = 2n + 2)")
    p.add_argument("--db", default=None, help="DuckDB file (default: a fresh one in a temp dir)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--baseline-n", type=int, default=200, help="fan-out width of the 1 s polling baseline")
    p.add_argument("--no-baseline", action="store_true", help="skip the official-SDK polling baseline")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
    sys.stdout.flush()
