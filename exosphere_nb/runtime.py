"""`Runtime`: registers node classes, claims their states and executes them.

Embedded (the default), it runs on the process's background loop next to the engine: woken the
moment work appears, with no polling delay. `start()` blocks in a script, and returns a handle
at once inside a running event loop (a notebook), so runs progress while the user works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
import traceback
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from .config import resolve_target
from .errors import BadRequestError, ExosphereError, NodeValidationError
from .loop import background_loop, in_background_loop, run_on_loop
from .node import BaseNode, latest_definition, node_class_errors, node_schema
from .signals import PruneSignal, ReQueueAfterSignal

__all__ = ["Runtime", "RuntimeHandle", "started_runtimes"]

log = logging.getLogger("exosphere_nb.runtime")

DEFAULT_STOP_GRACE = 10.0


class OutputShapeError(TypeError):
    pass


def outputs_of(result: Any, node: type[BaseNode]) -> list[dict[str, Any]]:
    """A node's return value as the list of outputs sent to the state manager.

    None is one output with no fields (the branch continues); an empty list is no output (it ends).
    """
    if result is None:
        return [{}]
    if isinstance(result, BaseModel):
        return [result.model_dump()]
    if isinstance(result, list | tuple):
        out = []
        for i, item in enumerate(result):
            if not isinstance(item, BaseModel):
                raise OutputShapeError(
                    f"{node.__name__}.execute() returned a list whose item {i} is {type(item).__name__}, "
                    f"not {node.__name__}.Outputs"
                )
            out.append(item.model_dump())
        return out
    raise OutputShapeError(
        f"{node.__name__}.execute() must return {node.__name__}.Outputs, a list of them, or None; "
        f"got {type(result).__name__}"
    )


class RuntimeHandle:
    """A started runtime: await it, or `stop()` it. Returned by `Runtime.start()` inside an event loop."""

    def __init__(self, runtime: Runtime, future: concurrent.futures.Future[None]) -> None:
        self._runtime = runtime
        self._future = future

    def __await__(self) -> Any:
        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        r = self._runtime
        status = "stopped" if self._future.done() else "running"
        return (
            f"<RuntimeHandle {r._namespace}/{r._name} {status}: executed={r.executed_count} "
            f"in_flight={len(r._in_flight)}>"
        )

    def done(self) -> bool:
        return self._future.done()

    def wait_registered(self, timeout: float | None = 30) -> bool:
        """Block until the runtime's nodes are registered (so a graph upserted next validates)."""
        return self._runtime._registered.wait(timeout)

    async def registered(self, timeout: float | None = 30) -> bool:
        """Await until the runtime's nodes are registered with the state manager."""
        return await asyncio.to_thread(self._runtime._registered.wait, timeout)

    def stop(self, grace: float = DEFAULT_STOP_GRACE) -> None:
        self._runtime.stop(grace)

    def result(self, timeout: float | None = None) -> None:
        return self._future.result(timeout)


_started: weakref.WeakSet[Runtime] = weakref.WeakSet()


def started_runtimes() -> list[Runtime]:
    """Runtimes started in this process that are still running (for `%exo status` / `%exo stop`)."""
    return [r for r in list(_started) if r._handle is not None and not r._handle.done()]


class Runtime:
    def __init__(
        self,
        namespace: str,
        name: str,
        nodes: Sequence[type[BaseNode]],
        state_manager_uri: str | None = None,
        key: str | None = None,
        batch_size: int = 16,
        workers: int = 4,
        state_manage_version: str = "v0",
        poll_interval: int = 1,
    ) -> None:
        self._namespace = namespace
        self._name = name
        self._batch_size = batch_size
        self._workers = workers
        self._state_manager_version = state_manage_version
        self._poll_interval = poll_interval
        problems = []
        if not isinstance(batch_size, int) or batch_size < 1:
            problems.append(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not isinstance(workers, int) or workers < 1:
            problems.append(f"workers must be an integer >= 1, got {workers!r}")
        if problems:
            raise BadRequestError("; ".join(problems))
        errors = node_class_errors(nodes)
        if not nodes:
            errors.append("a runtime needs at least one node class")
        if errors:
            raise NodeValidationError(errors)
        self._nodes = list(nodes)
        self._node_names = [n.__name__ for n in nodes]
        self._node_mapping: dict[str, type[BaseNode]] = {n.__name__: n for n in nodes}
        self._target = resolve_target(state_manager_uri, key)
        if not self._target.embedded and not self._target.key:
            raise BadRequestError("API key is not set: pass key= or set EXOSPHERE_API_KEY for a remote state manager")
        self._handle: RuntimeHandle | None = None
        self._registered = threading.Event()
        self._stop_event: asyncio.Event | None = None
        self._in_flight: dict[str, Any] = {}
        self._prefetched: deque[Any] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self.executed_count = 0

    def __repr__(self) -> str:
        where = f"db={self._target.db!r}" if self._target.embedded else f"uri={self._target.uri!r}"
        return f"Runtime(namespace={self._namespace!r}, name={self._name!r}, nodes={self._node_names}, {where})"

    def info(self) -> dict[str, Any]:
        """What `%exo status` shows: where it runs, its nodes, workers and progress."""
        running = self._handle is not None and not self._handle.done()
        return {
            "namespace": self._namespace,
            "name": self._name,
            "nodes": list(self._node_names),
            "target": self._target.db if self._target.embedded else self._target.uri,
            "workers": self._workers,
            "batch_size": self._batch_size,
            "running": running,
            "executed": self.executed_count,
            "in_flight": len(self._in_flight),
        }

    # -- starting and stopping -----------------------------------------------------------------

    def _launch(self) -> RuntimeHandle:
        if self._handle is not None and not self._handle.done():
            return self._handle
        # a fresh context: the runtime must not inherit the starting cell's (ipykernel routes a node's
        # print() by the context it runs in; the cell that started the runtime is long finished)
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, self._main(), background_loop())
        self._handle = RuntimeHandle(self, future)
        _started.add(self)
        return self._handle

    def start(self) -> RuntimeHandle | None:
        """Inside a running event loop: start in the background and return a handle. Else: block."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            handle = self._launch()
            try:
                while True:
                    try:
                        handle.result(timeout=0.5)
                        return None
                    except concurrent.futures.TimeoutError:
                        continue
            except KeyboardInterrupt:
                self.stop()
                return None
        return self._launch()

    async def _start(self) -> None:
        """The coroutine form (`asyncio.create_task(runtime._start())`); cancelling it stops the runtime."""
        handle = self._launch()
        try:
            # shielded: cancelling this task must stop the runtime gracefully, not cancel it mid-node
            await asyncio.shield(asyncio.wrap_future(handle._future))
        except asyncio.CancelledError:
            await run_on_loop(self._stop(DEFAULT_STOP_GRACE))
            raise

    def stop(self, grace: float = DEFAULT_STOP_GRACE) -> None:
        """Stop claiming; let in-flight states finish within `grace` seconds, hand the rest back."""
        if self._handle is None:
            return
        if in_background_loop():
            background_loop().create_task(self._stop(grace))
            return
        asyncio.run_coroutine_threadsafe(self._stop(grace), background_loop()).result()

    async def _stop(self, grace: float) -> None:
        if self._stop_event is not None:
            self._stop_event.set()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._handle is not None and not self._handle.done():
            # wait for _main's clean-up (hand-back and final commit); never raise its outcome here
            await asyncio.wait({asyncio.wrap_future(self._handle._future)}, timeout=grace + 5)

    # -- the embedded runtime ------------------------------------------------------------------

    async def _main(self) -> None:
        if not self._target.embedded:
            from .client.remote_runtime import run_remote_runtime

            await run_remote_runtime(self)
            return
        from .client.embedded import get_engine

        engine = await get_engine(self._target.db)  # type: ignore[arg-type]
        self._stop_event = asyncio.Event()
        self._current = {name: latest_definition(cls) for name, cls in self._node_mapping.items()}
        engine.register_nodes(
            self._namespace, self._name, [node_schema(c, self._namespace) for c in self._current.values()]
        )
        await engine.committed()
        self._registered.set()
        names = frozenset(self._node_names)
        stop = asyncio.ensure_future(self._stop_event.wait())
        self._tasks = [asyncio.create_task(self._worker(engine, names, stop)) for _ in range(self._workers)]
        renewer = asyncio.create_task(self._renew_leases(engine, stop))
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            renewer.cancel()
            stop.cancel()
            back = [s.id for s in self._prefetched] + list(self._in_flight)
            self._prefetched.clear()
            self._in_flight.clear()
            if back:
                engine.release(back)
            await engine.committed()

    async def _renew_leases(self, engine: Any, stop: asyncio.Future[Any]) -> None:
        interval = max(0.05, engine.lease_ms / 3000)
        while not stop.done():
            await asyncio.sleep(interval)
            held = [*self._in_flight, *(s.id for s in self._prefetched)]  # claimed and still to run count too
            if held:
                engine.renew_leases(held)

    async def _worker(self, engine: Any, names: frozenset[str], stop: asyncio.Future[Any]) -> None:
        ready = self._prefetched
        namespace = self._namespace
        since_yield = 0
        while not stop.done():
            if not ready:
                batch = engine.claim(namespace, names, self._batch_size, claimed_by="local")
                if not batch:
                    work = engine.wait_for_work(namespace, names)
                    await asyncio.wait((work, stop), return_when=asyncio.FIRST_COMPLETED)
                    if not work.done():
                        work.cancel()
                    continue
                ready.extend(batch)
            state = ready.popleft()
            self._in_flight[state.id] = state
            try:
                await self._execute(engine, state)
            except asyncio.CancelledError:
                engine.release([state.id])  # stopped past the grace period: hand the state back at once
                raise
            finally:
                self._in_flight.pop(state.id, None)
            since_yield += 1
            if since_yield >= 32:  # let group commits and other tasks run between fast nodes
                since_yield = 0
                await asyncio.sleep(0)

    def _node_class(self, engine: Any, name: str) -> type[BaseNode]:
        cls = latest_definition(self._node_mapping[name])
        if cls is not self._current[name]:
            errors = node_class_errors([cls])
            if errors:
                raise NodeValidationError(errors)
            self._current[name] = cls
            engine.register_nodes(self._namespace, self._name, [node_schema(cls, self._namespace)])
        return cls

    async def _execute(self, engine: Any, state: Any) -> None:
        sid = state.id
        try:
            cls = self._node_class(engine, state.node.node_name)
            inputs = cls.Inputs.model_validate(state.inputs)
            if cls.Secrets.model_fields:
                secrets = cls.Secrets.model_validate(engine.get_secrets(sid)["secrets"])
            else:
                secrets = cls.Secrets()
            result = await cls()._execute(inputs, secrets)
            outputs = outputs_of(result, cls)
            del result  # a big fan-out's models must not stay alive while its states are created
        except PruneSignal as signal:
            self._report(engine.prune, sid, signal.data)
        except ReQueueAfterSignal as signal:
            self._report(engine.requeue_after, sid, signal.delay_ms)
        except asyncio.CancelledError:
            raise
        except (Exception, ValidationError):
            self._report(engine.errored, sid, traceback.format_exc())
        else:
            self.executed_count += 1
            self._report(engine.executed, sid, outputs)

    def _report(self, method: Any, *args: Any) -> None:
        try:
            method(*args)
        except ExosphereError as exc:  # e.g. the run was cancelled while the node ran
            log.info("result for state %s refused: %s", args[0], exc.detail)
