"""A runtime for the test graph over HTTP (EXOSPHERE_STATE_MANAGER_URI / EXOSPHERE_API_KEY); prints `ready`
once its nodes are registered and the graph is VALID, then runs until it is stopped (SIGTERM)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab_nodes import GRAPH, GRAPH_OPTIONS, NAMESPACE, Split, Work, graph_nodes

from exosphere_nb import Runtime, StateManager


async def main() -> None:
    handle = Runtime(namespace=NAMESPACE, name="lab-worker", nodes=[Split, Work]).start()
    sm = StateManager(NAMESPACE)
    for _ in range(100):  # the runtime registers its nodes as it starts
        if {n["name"] for n in await sm.list_nodes()} >= {"Split", "Work"}:
            break
        await asyncio.sleep(0.1)
    await sm.upsert_graph(GRAPH, graph_nodes(), **GRAPH_OPTIONS)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if handle is not None:
        handle.stop()


if __name__ == "__main__":
    asyncio.run(main())
