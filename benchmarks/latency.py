"""Latency: trigger -> root node starts, and node A returns -> node B starts (graph A -> B).

Run: `.venv/bin/python benchmarks/latency.py --samples 200` (add `--no-baseline` to skip the slow baseline).

Runs are sequential (one at a time, each awaited), on the embedded DuckDB state manager (fresh file in a
temp dir), driven by this project's `Runtime`. All timestamps are `time.perf_counter()` in this one process:
(a) just before `StateManager.trigger` vs. the first line of A.execute; (b) the last line of A.execute (just
before its return) vs. the first line of B.execute. Both include the group commit that must precede the hand-off.

The baseline repeats the measurement on the same engine with a runtime emulating the official `exospherehost`
SDK's request pattern (claim every 1 s while its queue is below `batch_size`, `workers` executors); a random
0-1 s pause before each of its triggers keeps the samples from locking onto the poll phase.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from exosphere_nb import BaseNode, GraphNodeModel, Runtime, StateManager
from exosphere_nb.client.embedded import close_engines, get_engine
from exosphere_nb.loop import background_loop, run_on_loop

NAMESPACE = "bench-latency"
BASELINE_NAMESPACE = "bench-latency-official-poll"

A_START: dict[str, float] = {}
A_END: dict[str, float] = {}
B_START: dict[str, float] = {}


class HopA(BaseNode):
    class Inputs(BaseNode.Inputs):
        sample: str

    class Outputs(BaseNode.Outputs):
        sample: str

    async def execute(self) -> Any:
        A_START[self.inputs.sample] = time.perf_counter()
        out = self.Outputs(sample=self.inputs.sample)
        A_END[self.inputs.sample] = time.perf_counter()
        return out


class HopB(BaseNode):
    class Inputs(BaseNode.Inputs):
        sample: str

    class Outputs(BaseNode.Outputs):
        sample: str

    async def execute(self) -> Any:
        B_START[self.inputs.sample] = time.perf_counter()
        return self.Outputs(sample=self.inputs.sample)


NODES: list[type[BaseNode]] = [HopA, HopB]


def graph_nodes(namespace: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(node_name="HopA", namespace=namespace, identifier="a", inputs={"sample": "x"}, next_nodes=["b"]),
        GraphNodeModel(
            node_name="HopB", namespace=namespace, identifier="b", inputs={"sample": "${{ a.outputs.sample }}"}
        ),
    ]


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
            await self.engine.committed()


# -- the benchmark -------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between order statistics."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


async def wait_registered(sm: StateManager, names: set[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        have = {n["name"] for n in await sm.list_nodes()}
        if names <= have:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nodes {sorted(names - have)} were not registered within {timeout} s")
        await asyncio.sleep(0.01)


async def sample_runs(
    sm: StateManager, tag: str, count: int, warmup: int = 0, jitter_s: float = 0.0
) -> tuple[list[float], list[float]]:
    """(trigger->start ms, hop ms) for `count` sequential runs after `warmup` discarded ones."""
    starts: list[float] = []
    hops: list[float] = []
    for i in range(warmup + count):
        sample = f"{tag}-{i}"
        if jitter_s:
            await asyncio.sleep(random.uniform(0, jitter_s))
        t0 = time.perf_counter()
        run_id = (await sm.trigger("hop", inputs={"sample": sample}))["run_id"]
        summary = await sm.wait(run_id, timeout=120)
        if summary["status"] != "SUCCESS":
            raise RuntimeError(f"run {run_id} ended {summary['status']}: {summary['counts']}")
        if i >= warmup:
            starts.append((A_START[sample] - t0) * 1000)
            hops.append((B_START[sample] - A_END[sample]) * 1000)
    return starts, hops


async def run_ours(db: str, samples: int, workers: int, batch_size: int) -> tuple[list[float], list[float]]:
    uri = f"duckdb://{db}"
    runtime = Runtime(
        NAMESPACE, "bench-latency-runtime", NODES, state_manager_uri=uri, workers=workers, batch_size=batch_size
    )
    handle = runtime.start()
    assert handle is not None
    try:
        sm = StateManager(NAMESPACE, state_manager_uri=uri)
        await wait_registered(sm, {c.__name__ for c in NODES})
        await sm.upsert_graph("hop", graph_nodes(NAMESPACE), secrets={})
        return await sample_runs(sm, "ours", samples, warmup=5)
    finally:
        handle.stop()


async def run_baseline(db: str, samples: int, workers: int, batch_size: int) -> tuple[list[float], list[float]]:
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
        await sm.upsert_graph("hop", graph_nodes(BASELINE_NAMESPACE), secrets={})
        return await sample_runs(sm, "baseline", samples, jitter_s=1.0)
    finally:
        poller.stop()
        await task


def summary_line(label: str, starts: list[float], hops: list[float]) -> str:
    return (
        f"{label} samples={len(starts)} trigger_to_start_median_ms={statistics.median(starts):.3f} "
        f"trigger_to_start_p99_ms={pct(starts, 0.99):.3f} hop_median_ms={statistics.median(hops):.3f} "
        f"hop_p99_ms={pct(hops, 0.99):.3f}"
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="exo-bench-") as tmp:
        db = str(Path(tmp) / "latency.duckdb")
        try:
            starts, hops = await run_ours(db, args.samples, args.workers, args.batch_size)
            print(summary_line("ours", starts, hops))
            print(
                f"ours trigger_to_start_ms min={min(starts):.3f} max={max(starts):.3f} | "
                f"hop_ms min={min(hops):.3f} max={max(hops):.3f}"
            )
            if not args.no_baseline:
                b_starts, b_hops = await run_baseline(db, args.baseline_samples, args.workers, args.batch_size)
                print(summary_line("baseline official_poll_pattern", b_starts, b_hops))
                print(
                    "ratio_vs_official_poll_pattern "
                    f"trigger_to_start_median={statistics.median(b_starts) / statistics.median(starts):.1f} "
                    f"hop_median={statistics.median(b_hops) / statistics.median(hops):.1f}"
                )
        finally:
            await run_on_loop(close_engines())
    print(
        f"latency trigger_to_start_median_ms={statistics.median(starts):.3f} "
        f"trigger_to_start_p99_ms={pct(starts, 0.99):.3f} hop_median_ms={statistics.median(hops):.3f} "
        f"hop_p99_ms={pct(hops, 0.99):.3f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--samples", type=int, default=200, help="measured runs (after 5 warm-up runs)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--baseline-samples", type=int, default=10, help="runs measured with the 1 s polling baseline")
    p.add_argument("--no-baseline", action="store_true", help="skip the official-SDK polling baseline")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
