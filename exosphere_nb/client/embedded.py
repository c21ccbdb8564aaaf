"""The embedded state manager: one engine per DuckDB file, living on the background loop."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..loop import background_loop, in_background_loop, on_shutdown, run_on_loop

if TYPE_CHECKING:
    from ..engine.engine import Engine

__all__ = ["EmbeddedTransport", "close_engines", "get_engine"]

_engines: dict[str, Engine] = {}
_starting: dict[str, asyncio.Future[Engine]] = {}


async def get_engine(db: str) -> Engine:
    """The process's engine for `db` (started on first use). Must run on the background loop."""
    assert in_background_loop(), "engines live on the background loop"
    engine = _engines.get(db)
    if engine is not None:
        return engine
    pending = _starting.get(db)
    if pending is not None:
        return await asyncio.shield(pending)
    fut: asyncio.Future[Engine] = background_loop().create_future()
    _starting[db] = fut
    try:
        from ..engine.engine import Engine  # DuckDB loads with the first embedded call, not at import

        engine = Engine(db)
        await engine.start()
    except BaseException as exc:
        fut.set_exception(exc)
        fut.exception()
        raise
    finally:
        del _starting[db]
    if not _engines:
        on_shutdown(close_engines)
    _engines[db] = engine
    fut.set_result(engine)
    return engine


def engine_if_open(db: str) -> Engine | None:
    return _engines.get(db)


async def close_engines() -> None:
    """Commit and close every engine of the process (at exit, or when a notebook disconnects)."""
    while _engines:
        _, engine = _engines.popitem()
        await engine.close()


class EmbeddedTransport:
    """StateManager calls served by the in-process engine (each awaits its group commit)."""

    def __init__(self, namespace: str, db: str) -> None:
        self.namespace = namespace
        self.db = db

    def __repr__(self) -> str:
        return f"EmbeddedTransport(namespace={self.namespace!r}, db={self.db!r})"

    async def _call(self, method: str, *args: Any, commit: bool = False, **kwargs: Any) -> Any:
        async def go() -> Any:
            engine = await get_engine(self.db)
            result = getattr(engine, method)(*args, **kwargs)
            if commit:
                await engine.committed()
            return result

        return await run_on_loop(go())

    async def register_nodes(self, runtime_name: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._call("register_nodes", self.namespace, runtime_name, nodes, commit=True)

    async def upsert_graph(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(
            "upsert_graph",
            self.namespace,
            name,
            body.get("nodes", []),
            body.get("secrets"),
            body.get("retry_policy"),
            body.get("store_config"),
            body.get("triggers"),
            commit=True,
        )

    async def get_graph(self, name: str) -> dict[str, Any]:
        return await self._call("get_graph", self.namespace, name)

    async def list_graphs(self) -> dict[str, Any]:
        return await self._call("list_graphs", self.namespace)

    async def list_nodes(self) -> dict[str, Any]:
        return await self._call("list_nodes", self.namespace)

    async def trigger(
        self, name: str, inputs: dict[str, str], store: dict[str, str], start_delay: int
    ) -> dict[str, Any]:
        return await self._call("trigger", self.namespace, name, inputs, store, start_delay, commit=True)

    async def list_runs(self, page: int, size: int, **filters: Any) -> dict[str, Any]:
        await self._call("committed")
        return await self._call("list_runs", self.namespace, page, size, **filters)

    async def run_graph(self, run_id: str) -> dict[str, Any]:
        await self._call("committed")
        return await self._call("run_graph", run_id, self.namespace)

    async def run_summary(self, run_id: str) -> dict[str, Any]:
        await self._call("committed")
        return await self._call("run_summary", run_id)

    async def run_outputs(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        await self._call("committed")
        return await self._call("run_outputs", run_id)

    async def get_state(self, state_id: str) -> dict[str, Any]:
        return await self._call("get_state", state_id, self.namespace)

    async def manual_retry(self, state_id: str, fanout_id: str) -> dict[str, Any]:
        return await self._call("manual_retry", state_id, fanout_id, self.namespace, commit=True)

    async def cancel_run(self, run_id: str) -> dict[str, Any]:
        return await self._call("cancel_run", run_id, self.namespace, commit=True)

    async def wait_run(self, run_id: str, timeout: float | None) -> str:
        async def go() -> str:
            engine = await get_engine(self.db)
            return await engine.wait_run(run_id, timeout)

        return await run_on_loop(go())
