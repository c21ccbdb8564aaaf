"""Fan-out throughput: root -> fan-out of N -> one `Square` state per item -> a unite summing them.

Run: `.venv/bin/python benchmarks/fanout.py --n 10000` (add `--no-baseline` to skip the slow baseline;
`--http` for the same job over loopback HTTP, with the server and the runtime in their own processes).

The graph runs on the embedded DuckDB state manager (a fresh file in a temp dir unless `--db`), driven by
this project's `Runtime` through the public API. The time is taken from just before `trigger` to the return
of `wait` (which returns once the last state is committed, then reads the run's summary).

The baseline runs the same graph (smaller N) on the same engine with a runtime that emulates the request
pattern of the official `exospherehost` SDK: one enqueue (claim of up to `batch_size` states) every second
while its local queue holds fewer than `batch_size` states, `workers` tasks executing from that queue, one
`executed` call per state awaiting its commit (as an HTTP round trip would).

With `--http` the same graph runs over loopback HTTP instead: the benchmark starts `exo-nb serve` (a server
process on a free 127.0.0.1 port, a random API key, a fresh database file) and ONE runtime process
(`Runtime(..., state_manager_uri=http://127.0.0.1:PORT, key=KEY).start()`), triggers and waits through
`StateManager` over HTTP, and stops both processes by pid (SIGTERM) at the end. Its baseline is a second
runtime process written here with plain httpx that sends what the official SDK sends: POST /states/enqueue
every 1 s (batch 16) while its queue is below 16, 4 workers, a new connection per call, GET secrets only for
nodes that declare some, and one POST executed per state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from exosphere_nb import BaseNode, GraphNodeModel, Runtime, StateManager, UnitesModel
from exosphere_nb.client.embedded import close_engines, get_engine
from exosphere_nb.loop import background_loop, run_on_loop

NAMESPACE = "bench-fanout"
BASELINE_NAMESPACE = "bench-fanout-official-poll"
HTTP_BASELINE_NAMESPACE = "bench-fanout-official-sdk-http"
KEY_ENV = "EXO_BENCH_API_KEY"  # how the runtime children get the key (kept out of their argv)


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


async def wait_registered(sm: StateManager, names: set[str], timeout: float = 30.0, check: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
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


# -- over HTTP: a server process and a runtime process on loopback ------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_watchdog(max_seconds: float) -> None:
    """In a child: SIGTERM itself when the benchmark process goes away or after `max_seconds`; exit hard 15 s later."""
    parent = os.getppid()
    deadline = time.monotonic() + max_seconds

    def watch() -> None:
        while os.getppid() == parent and time.monotonic() < deadline:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(15)
        os._exit(3)

    threading.Thread(target=watch, name="bench-watchdog", daemon=True).start()


class Child:
    """A child process of this benchmark (output to a log file), stopped by its pid."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} process exited {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the process so far (Linux /proc), else None."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds of the main thread and of the others, summed (Linux /proc; ended threads not counted)."""
        out: dict[str, float] = {}
        try:
            tasks = list(Path(f"/proc/{self.proc.pid}/task").iterdir())
        except OSError:
            return out
        for task in tasks:
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            name = "main" if task.name == str(self.proc.pid) else "threads"
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return out

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM by pid, then SIGKILL by pid if it has not exited within `timeout` s."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                return self.proc.wait(5)
            except ProcessLookupError:
                pass
        return self.proc.poll()


def child_cmd(args: argparse.Namespace, role: str, *extra: str) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", role, "--max-seconds", str(args.max_seconds)]
    if args.profile_dir:
        cmd += ["--profile-dir", str(Path(args.profile_dir).resolve())]
    return [*cmd, *extra]


async def wait_healthy(uri: str, server: Child, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0) as client:
        while True:
            server.check()
            try:
                if (await client.get(f"{uri}/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /health within {timeout} s:\n{server.tail()}")
            await asyncio.sleep(0.05)


def cpu_snapshot(children: list[Child]) -> dict[str, tuple[float | None, dict[str, float]]]:
    return {c.name: (c.cpu_seconds(), c.thread_cpu()) for c in children}


def cpu_line(wall: float, before: dict[str, tuple[float | None, dict[str, float]]], children: list[Child]) -> str:
    """CPU time each child used during the timed run: all, main thread, other threads."""
    parts = []
    for child in children:
        start, threads0 = before.get(child.name, (None, {}))
        end, threads1 = child.cpu_seconds(), child.thread_cpu()
        if start is None or end is None:
            continue
        used = {k: v - threads0.get(k, 0.0) for k, v in threads1.items()}
        detail = ",".join(f"{k}:{v:.1f}" for k, v in sorted(used.items()))
        parts.append(f"{child.name}={end - start:.2f}s({(end - start) / wall:.0%})[{detail}]")
    return "cpu during the timed run: " + " ".join(parts)


async def run_http(args: argparse.Namespace, db: str, log_dir: Path) -> tuple[float, int, list[str]]:
    """Ours over HTTP; then (unless --no-baseline) the official SDK's request pattern.

    Returns (wall, states, lines to print before the result line).
    """
    port = free_port()
    key = secrets.token_hex(24)
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, KEY_ENV: key}
    for name in ("EXOSPHERE_API_KEY", "EXOSPHERE_STATE_MANAGER_URI", "EXOSPHERE_DB"):
        env.pop(name, None)
    serve_args = ["--host", "127.0.0.1", "--port", str(port), "--api-key", key, "--db", db, "--log-level", "warning"]
    children: list[Child] = []
    try:
        server = Child("server", child_cmd(args, "serve", "--", *serve_args), log_dir, env)
        children.append(server)
        await wait_healthy(uri, server)

        runtime = Child("runtime", child_cmd(args, "runtime", "--uri", uri), log_dir, env)
        children.append(runtime)
        sm = StateManager(NAMESPACE, state_manager_uri=uri, key=key)
        await wait_registered(sm, {c.__name__ for c in NODES}, check=runtime.check)
        await sm.upsert_graph("fanout", graph_nodes(NAMESPACE), secrets={})
        await timed_run(sm, "fanout", 10)  # warm-up: imports, connections, first commits
        before = cpu_snapshot(children)
        wall, states, _ = await timed_run(sm, "fanout", args.n)
        lines = [cpu_line(wall, before, children)]
        runtime.check()
        runtime.stop()
        if not args.no_baseline:
            official = Child("official-sdk-runtime", child_cmd(args, "official", "--uri", uri), log_dir, env)
            children.append(official)
            bsm = StateManager(HTTP_BASELINE_NAMESPACE, state_manager_uri=uri, key=key)
            await wait_registered(bsm, {c.__name__ for c in NODES}, check=official.check)
            await bsm.upsert_graph("fanout", graph_nodes(HTTP_BASELINE_NAMESPACE), secrets={})
            b_wall, b_states, _ = await timed_run(bsm, "fanout", args.baseline_n)
            official.check()
            official.stop()
            rate, b_rate = states / wall, b_states / b_wall
            lines.append(
                f"baseline official_sdk_pattern_http n={args.baseline_n} states={b_states} wall_s={b_wall:.3f} "
                f"states_per_s={b_rate:.1f} | ours_http states_per_s={rate:.1f} "
                f"ratio_vs_official_sdk_pattern={rate / b_rate:.1f}"
            )
    except BaseException:
        for child in children:
            if child.proc.poll() is not None or child.name == "server":
                print(f"--- {child.name} log (tail) ---\n{child.tail()}", file=sys.stderr)
        raise
    finally:
        for child in reversed(children):  # runtimes first, then the server (which commits and exits 0)
            child.stop()
    return wall, states, lines


# -- the children ---------------------------------------------------------------------------------------------


def _profiled(args: argparse.Namespace) -> Any:
    """A cProfile.Profile when --profile-dir is set (dumped by the caller), else None."""
    if not args.profile_dir:
        return None
    import cProfile

    return cProfile.Profile()


def _dump(prof: Any, args: argparse.Namespace, role: str) -> None:
    if prof is not None:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
        prof.dump_stats(str(Path(args.profile_dir) / f"{role}.prof"))


def child_serve(args: argparse.Namespace, rest: list[str]) -> int:
    """`exo-nb serve <rest>` in this process (the CLI's own entry point), under the watchdog."""
    from exosphere_nb.cli import main as cli_main

    start_watchdog(args.max_seconds)
    prof = _profiled(args)
    if prof is not None:
        prof.enable()  # uvicorn runs its loop (and every route) on this thread
    try:
        return cli_main(["serve", *rest])
    finally:
        if prof is not None:
            prof.disable()
        _dump(prof, args, "serve")


def child_runtime(args: argparse.Namespace) -> int:
    """This project's remote runtime: `Runtime(..., state_manager_uri=uri, key=key).start()`; SIGTERM stops it."""
    start_watchdog(args.max_seconds)

    def on_term(sig: int, frame: Any) -> None:
        raise KeyboardInterrupt  # Runtime.start() stops gracefully on it

    signal.signal(signal.SIGTERM, on_term)
    runtime = Runtime(
        NAMESPACE,
        "bench-fanout-http-runtime",
        NODES,
        state_manager_uri=args.uri,
        key=os.environ[KEY_ENV],
        workers=args.workers,
        batch_size=args.batch_size,
    )
    prof = _profiled(args)
    if prof is not None:
        loop = background_loop()  # the runtime runs on it: profile that thread
        run_sync_on(loop, prof.enable)
    try:
        runtime.start()
    finally:
        if prof is not None:
            run_sync_on(background_loop(), prof.disable)
        _dump(prof, args, "runtime")
    return 0


def run_sync_on(loop: asyncio.AbstractEventLoop, fn: Any) -> None:
    done = threading.Event()

    def call() -> None:
        try:
            fn()
        finally:
            done.set()

    loop.call_soon_threadsafe(call)
    done.wait(5)


async def official_sdk_runtime(
    uri: str,
    key: str,
    namespace: str,
    nodes: list[type[BaseNode]],
    stop: asyncio.Event,
    batch_size: int = 16,
    workers: int = 4,
    poll_interval: float = 1.0,
) -> None:
    """The official `exospherehost` runtime's request pattern, with plain httpx.

    One enqueue every `poll_interval` s while the local queue holds fewer than `batch_size` states (the queue
    holds at most 2 * batch_size); `workers` executors; every call on a new connection (the SDK opens a new
    client session per call; here `Connection: close`); GET secrets only for nodes that declare some; one
    POST executed (or errored) per state.
    """
    base = f"{uri}/v0/namespace/{namespace}"
    mapping = {c.__name__: c for c in nodes}
    client = httpx.AsyncClient(timeout=30.0, headers={"x-api-key": key, "connection": "close"})

    async def call(method: str, path: str, body: Any = None) -> Any:
        response = await client.request(method, base + path, json=body)
        response.raise_for_status()
        return response.json()

    await call(
        "PUT",
        "/nodes/",
        {
            "runtime_name": "official-sdk-pattern",
            "runtime_namespace": namespace,
            "nodes": [
                {
                    "name": c.__name__,
                    "namespace": namespace,
                    "inputs_schema": c.Inputs.model_json_schema(),
                    "outputs_schema": c.Outputs.model_json_schema(),
                    "secrets": list(c.Secrets.model_fields),
                }
                for c in nodes
            ],
        },
    )
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=2 * batch_size)

    async def worker() -> None:
        while True:
            state = await queue.get()
            sid = state["state_id"]
            cls = mapping[state["node_name"]]
            try:
                secret_values: dict[str, str] = {}
                if cls.Secrets.model_fields:
                    secret_values = (await call("GET", f"/state/{sid}/secrets"))["secrets"]
                result = await cls()._execute(cls.Inputs(**state["inputs"]), cls.Secrets(**secret_values))
                if result is None:
                    result = []
                if not isinstance(result, list):
                    result = [result]
                await call("POST", f"/state/{sid}/executed", {"outputs": [o.model_dump() for o in result]})
            except Exception as exc:
                try:
                    await call("POST", f"/state/{sid}/errored", {"error": str(exc)})
                except Exception:
                    pass
            finally:
                queue.task_done()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        while not stop.is_set():
            if queue.qsize() < batch_size:
                try:
                    res = await call("POST", "/states/enqueue", {"nodes": list(mapping), "batch_size": batch_size})
                    for state in res.get("states", []):
                        await queue.put(state)
                except httpx.HTTPError:
                    pass
            try:
                await asyncio.wait_for(stop.wait(), poll_interval)
            except TimeoutError:
                pass
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()


def child_official(args: argparse.Namespace) -> int:
    start_watchdog(args.max_seconds)

    async def go() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await official_sdk_runtime(
            args.uri, os.environ[KEY_ENV], HTTP_BASELINE_NAMESPACE, NODES, stop, args.batch_size, args.workers
        )

    asyncio.run(go())
    return 0


# -- main -----------------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    if args.http:
        with tempfile.TemporaryDirectory(prefix="exo-bench-http-") as tmp:
            db = str(Path(args.db).resolve()) if args.db else str(Path(tmp) / "fanout-http.duckdb")
            wall, states, lines = await run_http(args, db, Path(tmp))
        for line in lines:
            print(line)
        print("mode=http server=process runtime=process transport=loopback")
        print(
            f"fanout n={args.n} states={states} wall_s={wall:.3f} states_per_s={states / wall:.1f} "
            f"us_per_state={wall / states * 1e6:.1f}"
        )
        return
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


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=10_000, help="fan-out width (states = 2n + 2)")
    p.add_argument("--db", default=None, help="DuckDB file (default: a fresh one in a temp dir)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--baseline-n", type=int, default=200, help="fan-out width of the 1 s polling baseline")
    p.add_argument("--no-baseline", action="store_true", help="skip the official-SDK polling baseline")
    p.add_argument("--http", action="store_true", help="run over loopback HTTP: a server and a runtime process")
    p.add_argument("--max-seconds", type=float, default=900.0, help="--http: children stop themselves after this long")
    p.add_argument("--profile-dir", default=None, help="--http: cProfile the server and runtime children into DIR")
    p.add_argument("--child", choices=["serve", "runtime", "official"], help=argparse.SUPPRESS)
    p.add_argument("--uri", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    rest: list[str] = []
    if "--" in argv:  # a child server's `exo-nb serve` arguments follow `--`
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1 :]
    return p.parse_args(argv), rest


if __name__ == "__main__":
    ns, rest = parse_args()
    if ns.child == "serve":
        sys.exit(child_serve(ns, rest))
    if ns.child == "runtime":
        sys.exit(child_runtime(ns))
    if ns.child == "official":
        sys.exit(child_official(ns))
    asyncio.run(main(ns))
    sys.stdout.flush()
