"""Memory: peak RSS of one run of ~N states (root -> fan-out of N/2 -> N/2 item states -> unite).

Run: `.venv/bin/python benchmarks/memory.py --n 100000`.

The run happens in a fresh child process (this script re-invoked with `--child`), so its peak RSS belongs to
this run alone. The child measures its RSS after imports, engine and runtime start and a small warm-up run
(the baseline), then runs the graph once and reads its peak RSS (`ru_maxrss`). Bytes per state is
(peak - baseline) / states: everything the run costs, engine records, DuckDB buffers and the node's outputs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAMESPACE = "bench-memory"
RESULT_PREFIX = "MEMORY-RESULT "


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


async def child_main(db: str, width: int) -> dict[str, Any]:
    from exosphere_nb import BaseNode, GraphNodeModel, Runtime, StateManager, UnitesModel
    from exosphere_nb.client.embedded import close_engines
    from exosphere_nb.loop import run_on_loop

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
            squares: str

        class Outputs(BaseNode.Outputs):
            total: str
            count: str

        async def execute(self) -> Any:
            values = [int(v) for v in json.loads(self.inputs.squares)]
            return self.Outputs(total=str(sum(values)), count=str(len(values)))

    ns = NAMESPACE
    nodes: list[type[BaseNode]] = [Start, FanOut, Square, SumSquares]
    graph = [
        GraphNodeModel(node_name="Start", namespace=ns, identifier="start", inputs={"n": "0"}, next_nodes=["fanout"]),
        GraphNodeModel(
            node_name="FanOut",
            namespace=ns,
            identifier="fanout",
            inputs={"n": "${{ start.outputs.n }}"},
            next_nodes=["square"],
        ),
        GraphNodeModel(
            node_name="Square", namespace=ns, identifier="square", inputs={"value": "${{ fanout.outputs.value }}"}
        ),
        GraphNodeModel(
            node_name="SumSquares",
            namespace=ns,
            identifier="sum",
            inputs={"squares": "${{ square.outputs.squared }}"},
            unites=UnitesModel(identifier="fanout"),
        ),
    ]
    uri = f"duckdb://{db}"
    handle = Runtime(ns, "bench-memory-runtime", nodes, state_manager_uri=uri).start()
    assert handle is not None
    try:
        sm = StateManager(ns, state_manager_uri=uri)
        deadline = time.monotonic() + 30
        while {n["name"] for n in await sm.list_nodes()} < {c.__name__ for c in nodes}:
            if time.monotonic() > deadline:
                raise RuntimeError("nodes were not registered within 30 s")
            await asyncio.sleep(0.01)
        await sm.upsert_graph("fanout", graph, secrets={})
        warm = await sm.wait((await sm.trigger("fanout", inputs={"n": "10"}))["run_id"], timeout=60)
        assert warm["status"] == "SUCCESS", warm
        baseline = current_rss_bytes()
        t0 = time.perf_counter()
        run_id = (await sm.trigger("fanout", inputs={"n": str(width)}))["run_id"]
        summary = await sm.wait(run_id, timeout=600)
        wall = time.perf_counter() - t0
        peak = peak_rss_bytes()
        if summary["status"] != "SUCCESS":
            raise RuntimeError(f"run {run_id} ended {summary['status']}: {summary['counts']}")
        outs = (await sm.run_outputs(run_id))["sum"]
        expected = (width - 1) * width * (2 * width - 1) // 6
        if int(outs[0]["total"]) != expected or int(outs[0]["count"]) != width:
            raise RuntimeError(f"wrong aggregate {outs[0]}, expected total {expected} over {width} items")
        states = sum(summary["counts"].values())
    finally:
        handle.stop()
        await run_on_loop(close_engines())
    return {
        "states": states,
        "peak": peak,
        "baseline": baseline,
        "wall_s": wall,
        "end_rss": current_rss_bytes(),
        "db_bytes": Path(db).stat().st_size,
    }


def parent_main(args: argparse.Namespace) -> None:
    width = args.width if args.width else max(1, (args.n - 2) // 2)
    with tempfile.TemporaryDirectory(prefix="exo-bench-") as tmp:
        db = str(Path(tmp) / "memory.duckdb")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--db", db, "--width", str(width)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child failed with exit code {proc.returncode}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX))
    res = json.loads(line[len(RESULT_PREFIX) :])
    mb = 1024 * 1024
    per_state = (res["peak"] - res["baseline"]) / res["states"]
    print(
        f"memory detail width={width} run_wall_s={res['wall_s']:.3f} rss_after_run_mb={res['end_rss'] / mb:.1f} "
        f"db_file_mb={res['db_bytes'] / mb:.1f}"
    )
    print(
        f"memory states={res['states']} peak_rss_mb={res['peak'] / mb:.1f} baseline_rss_mb={res['baseline'] / mb:.1f} "
        f"bytes_per_state={per_state:.0f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=100_000, help="states in the run (fan-out width (n - 2) / 2)")
    p.add_argument("--width", type=int, default=0, help="fan-out width, overriding --n (states = 2 * width + 2)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before the child is given up")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    _args = parse_args()
    if _args.child:
        _res = asyncio.run(child_main(_args.db, _args.width))
        print(RESULT_PREFIX + json.dumps(_res), flush=True)
    else:
        parent_main(_args)
