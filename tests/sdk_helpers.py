"""Helpers for the SDK-surface tests (runtime, state manager, compat): one DuckDB file per test.

Embedded engines are per-process singletons keyed by database path, so every test gets its own
file under `tmp_path`; `use_db` points the environment at it, `close_db` shuts its engine down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exosphere_nb import GraphNodeModel, Runtime, RuntimeHandle, StateManager
from exosphere_nb.client.embedded import engine_if_open, get_engine
from exosphere_nb.loop import background_loop, run_sync

URI_ENV = "EXOSPHERE_STATE_MANAGER_URI"
KEY_ENV = "EXOSPHERE_API_KEY"
DB_ENV = "EXOSPHERE_DB"

NAMESPACE = "tests"


def db_path(tmp_path: Path) -> str:
    """The resolved path the engine is keyed by (config resolves paths the same way)."""
    return str((tmp_path / "state.duckdb").resolve())


def use_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Point EXOSPHERE_STATE_MANAGER_URI at this test's own DuckDB file; returns its path."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(DB_ENV, raising=False)
    db = db_path(tmp_path)
    monkeypatch.setenv(URI_ENV, f"duckdb://{db}")
    return db


def engine(db: str) -> Any:
    """The process's engine for `db` (started if needed), for white-box checks."""
    return run_sync(get_engine(db), timeout=10)


def close_db(db: str) -> None:
    eng = engine_if_open(db)
    if eng is not None:
        run_sync(eng.close(), timeout=10)


def sql(db: str, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of `query` over the engine's tables, after everything applied so far is committed."""
    eng = engine(db)

    async def committed_then_query() -> list[tuple[Any, ...]]:
        await eng.committed()
        return eng.store._read.execute(query, params).fetchall()

    return run_sync(committed_then_query(), timeout=10)


def status_counts(db: str, run_id: str) -> dict[str, int]:
    rows = sql(db, "SELECT status, count(*) FROM state_records WHERE run_id = ? GROUP BY status", [run_id])
    return {status: int(n) for status, n in rows}


def states_of(db: str, run_id: str) -> list[dict[str, Any]]:
    rows = sql(
        db,
        "SELECT id, identifier, status, error, retry_count, lease_until, inputs, outputs "
        "FROM state_records WHERE run_id = ? ORDER BY seq",
        [run_id],
    )
    keys = ("id", "identifier", "status", "error", "retry_count", "lease_until", "inputs", "outputs")
    return [dict(zip(keys, r)) for r in rows]


async def until(predicate: Callable[[], Any], timeout: float = 4.0, interval: float = 0.02) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def runtime_tasks() -> list[str]:
    """Names of the runtime coroutines still alive on the background loop."""

    async def collect() -> list[str]:
        out = []
        for task in asyncio.all_tasks():
            name = getattr(task.get_coro(), "__qualname__", "")
            if name.startswith("Runtime."):
                out.append(name)
        return out

    return asyncio.run_coroutine_threadsafe(collect(), background_loop()).result(5)


@contextlib.contextmanager
def running(runtime: Runtime) -> Iterator[RuntimeHandle]:
    """Start `runtime` in the background (we are inside an event loop) and always stop it."""
    handle = runtime.start()
    assert isinstance(handle, RuntimeHandle)
    try:
        yield handle
    finally:
        handle.stop(grace=2)


def gn(
    node_name: str,
    identifier: str,
    inputs: dict[str, Any] | None = None,
    next_nodes: list[str] | None = None,
    **extra: Any,
) -> GraphNodeModel:
    """A graph node in the tests' namespace."""
    return GraphNodeModel(
        node_name=node_name,
        namespace=NAMESPACE,
        identifier=identifier,
        inputs=inputs or {},
        next_nodes=next_nodes,
        **extra,
    )


async def registered(sm: StateManager, *names: str, timeout: float = 4.0) -> None:
    """Wait until a runtime has registered these node names in the state manager's namespace."""

    async def check() -> bool:
        return set(names) <= {n["name"] for n in await sm.list_nodes()}

    await until(check, timeout=timeout)
