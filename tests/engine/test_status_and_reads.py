"""semantics.md — Status; wire-api-v0.md — run listing counts, run graph, state, SQL views."""

from __future__ import annotations

import asyncio

import pytest
from engine_helpers import NS, Fail, Prune, claim_now, drain, fast_retries, gnode, register, rows, upsert

from exosphere_nb.engine.engine import Engine
from exosphere_nb.errors import BadRequestError, NotFoundError

STATUSES = (
    "CREATED",
    "QUEUED",
    "EXECUTED",
    "SUCCESS",
    "ERRORED",
    "NEXT_CREATED_ERROR",
    "RETRY_CREATED",
    "PRUNED",
    "CANCELLED",
)


async def test_status_run_pending_until_every_state_terminal(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b")])
    run_id = engine.trigger(NS, "g")["run_id"]
    await engine.committed()
    assert engine.run_summary(run_id)["status"] == "PENDING"  # CREATED
    [a] = await claim_now(engine)
    await engine.committed()
    assert engine.run_summary(run_id)["status"] == "PENDING"  # QUEUED
    engine.executed(a.id, [{"y": "1"}])
    await engine.committed()
    assert engine.run_summary(run_id)["status"] == "PENDING"  # b CREATED
    [b] = await claim_now(engine)
    engine.executed(b.id, [{"y": "2"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"


async def test_status_run_counts_buckets(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}", ["c"]), gnode("c", "${{ b.outputs.y }}")],
        retry_policy=fast_retries(1),
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    attempts: dict[str, int] = {}

    def b(s: object) -> object:
        x = s.inputs["x"]  # type: ignore[attr-defined]
        attempts[x] = attempts.get(x, 0) + 1
        if x == "prune":
            return Prune({})
        if x == "flaky" and attempts[x] == 1:
            return Fail("once")
        if x == "fail":
            return Fail("always")
        if x == "empty":
            return [{}]  # c cannot render b.outputs.y: NEXT_CREATED_ERROR
        return [{"y": x}]

    fan = [{"y": v} for v in ("ok", "prune", "flaky", "fail", "empty")]
    status = await drain(engine, run_id, {"a": lambda s: fan, "b": b})
    assert status == "FAILED"
    summary = engine.run_summary(run_id)
    counts = summary["counts"]
    # a: 5 SUCCESS; b: ok, flaky-retry SUCCESS, prune PRUNED, flaky RETRY_CREATED, fail RETRY_CREATED + ERRORED,
    # empty NEXT_CREATED_ERROR; c: 2 SUCCESS
    assert counts == {
        "CREATED": 0,
        "QUEUED": 0,
        "EXECUTED": 0,
        "SUCCESS": 9,
        "ERRORED": 1,
        "NEXT_CREATED_ERROR": 1,
        "RETRY_CREATED": 2,
        "PRUNED": 1,
        "CANCELLED": 0,
    }
    [listed] = engine.list_runs(NS, 1, 20)["runs"]
    assert listed["run_id"] == run_id
    assert listed["graph_name"] == "g"
    assert (listed["success_count"], listed["pending_count"], listed["errored_count"], listed["retried_count"]) == (
        10,
        0,
        2,
        2,
    )
    assert listed["total_count"] == 14
    assert listed["status"] == "FAILED"
    graph = engine.run_graph(run_id)
    assert graph["execution_summary"] == counts
    assert set(graph["execution_summary"]) == set(STATUSES)


async def test_status_runs_listed_newest_first_with_pages(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a")])
    runs = []
    for _ in range(5):
        runs.append(engine.trigger(NS, "g")["run_id"])
        await engine.committed()
        await _tick()
    page1 = engine.list_runs(NS, 1, 2)
    page3 = engine.list_runs(NS, 3, 2)
    assert page1["total"] == 5 and (page1["page"], page1["size"]) == (1, 2)
    assert [r["run_id"] for r in page1["runs"]] == runs[::-1][:2]
    assert [r["run_id"] for r in page3["runs"]] == runs[:1]
    assert all(r["status"] == "PENDING" and r["pending_count"] == 1 for r in page1["runs"])
    for page, size in ((0, 1), (1, 0)):
        with pytest.raises(BadRequestError):
            engine.list_runs(NS, page, size)


async def test_status_run_graph_of_unknown_run_is_empty(engine: Engine) -> None:
    res = engine.run_graph("00000000-0000-4000-8000-000000000000")
    assert res["nodes"] == [] and res["edges"] == [] and res["node_count"] == 0
    assert res["execution_summary"] == dict.fromkeys(STATUSES, 0)
    with pytest.raises(NotFoundError):
        engine.run_summary("00000000-0000-4000-8000-000000000000")


async def test_status_get_state_shape(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": lambda s: [{"y": "Y"}]}) == "SUCCESS"
    [b_row] = rows(engine, "select state_id from states where identifier = 'b'")
    [a_row] = rows(engine, "select state_id from states where identifier = 'a'")
    state = engine.get_state(b_row["state_id"])
    assert {k: state[k] for k in ("id", "node_name", "identifier", "graph_name", "run_id", "status")} == {
        "id": b_row["state_id"],
        "node_name": "P",
        "identifier": "b",
        "graph_name": "g",
        "run_id": run_id,
        "status": "SUCCESS",
    }
    assert state["inputs"] == {"x": "Y"} and state["outputs"] == {"y": "Y"}
    assert state["parents"] == {"a": a_row["state_id"]}
    assert state["error"] is None
    assert state["created_at"].endswith("+00:00") and state["updated_at"].endswith("+00:00")
    with pytest.raises(NotFoundError):
        engine.get_state(b_row["state_id"], namespace="other")
    with pytest.raises(NotFoundError):
        engine.get_state("not-an-id")


async def test_store_query_is_read_only_over_views(engine: Engine) -> None:
    for sql in ("delete from states", "create table t(x int)", "select 1; select 2"):
        with pytest.raises(BadRequestError):
            engine.store.query(sql)
    with pytest.raises(BadRequestError, match="state_records"):
        engine.store.query("select * from state_records")


async def test_store_query_accepts_parameters(engine: Engine) -> None:
    """Store.query(sql, params) takes parameters; a '?' must not trip its table-name check."""
    register(engine)
    upsert(engine, "g", [gnode("a")])
    run_id = engine.trigger(NS, "g")["run_id"]
    await engine.committed()
    _cols, data = engine.store.query("select count(*) as n from states where run_id = ?", [run_id])
    assert data == [(1,)]


async def _tick() -> None:
    await asyncio.sleep(0.002)  # distinct created_at for a stable newest-first order
