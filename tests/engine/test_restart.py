"""Restart recovery: the in-memory view is rebuilt from DuckDB (design.md, semantics.md claim/lease/unites)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from engine_helpers import (
    NS,
    Fail,
    MakeEngine,
    claim_now,
    claim_within,
    count,
    drain,
    eventually,
    fast_retries,
    gnode,
    register,
    run_states,
    statuses,
    upsert,
)

from exosphere_nb.engine.engine import Engine
from exosphere_nb.errors import ConflictError, StateTransitionError
from exosphere_nb.models import UnitesStrategyEnum


def fan(*values: str) -> Any:
    return lambda s: [{"y": v} for v in values]


def map_reduce(strategy: UnitesStrategyEnum = UnitesStrategyEnum.ALL_SUCCESS) -> list[Any]:
    return [
        gnode("a", "in", ["b"]),
        gnode("b", "${{ a.outputs.y }}"),
        gnode("u", "${{ b.outputs.y }}", unites="a", strategy=strategy),
    ]


async def _reopen(make_engine: MakeEngine, engine: Engine, **kw: Any) -> Engine:
    await engine.close()
    return await make_engine(**kw)


async def test_restart_created_states_claimable_again(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", [gnode("a")])
    runs = [engine.trigger(NS, "g", inputs={"x": str(i)})["run_id"] for i in range(3)]
    await engine.committed()
    engine = await _reopen(make_engine, engine)
    claimed = await claim_now(engine)
    assert [s.run.run_id for s in claimed] == runs  # still oldest first
    assert await claim_now(engine) == []
    for s in claimed:
        engine.executed(s.id, [{"y": s.inputs["x"]}])
    for run_id in runs:
        assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"


async def test_restart_queued_states_keep_their_lease(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    await engine.committed()
    engine = await _reopen(make_engine, engine)
    assert await claim_now(engine) == []  # still QUEUED: not handed out a second time
    assert statuses(engine, run_id, "a") == ["QUEUED"]
    # the runtime that claimed it reports after the restart
    engine.executed(a.id, [{"y": "after restart"}])
    [b] = await claim_now(engine)
    assert b.inputs == {"x": "after restart"}


async def test_restart_queued_lease_still_expires_on_time(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", [gnode("a")], retry_policy=fast_retries(1))
    run_id = engine.trigger(NS, "g")["run_id"]
    await engine.committed()
    loop = asyncio.get_running_loop()
    claimed_at = loop.time()
    [_a] = engine.claim(NS, ["P"], 1, lease_ms=300)
    await engine.committed()
    engine = await _reopen(make_engine, engine)  # default lease: 30 min; the claim's own deadline still holds

    async def retried() -> bool:
        await engine.committed()
        return statuses(engine, run_id, "a") == ["RETRY_CREATED", "CREATED"]

    await eventually(retried, timeout=3, what="the lease to expire after the restart")
    assert loop.time() - claimed_at >= 0.29
    assert "lease expired" in run_states(engine, run_id, "a")[0]["error"]
    [retry] = await claim_within(engine)
    assert retry.retry_count == 1


async def test_restart_delayed_states_keep_enqueue_after(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", [gnode("a")], retry_policy=fast_retries(1, backoff_ms=300))
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    loop = asyncio.get_running_loop()
    engine.errored(a.id, "x")
    errored_at = loop.time()
    await engine.committed()
    engine = await _reopen(make_engine, engine)
    assert await claim_now(engine) == []
    [retry] = await claim_within(engine)
    assert loop.time() - errored_at >= 0.29
    engine.executed(retry.id, [{"y": "ok"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"


async def test_restart_runs_complete_with_ancestor_outputs(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["b"]),
            gnode("b", "${{ a.outputs.y }}", ["c"]),
            gnode("c", "${{ a.outputs.y }}+${{ b.outputs.y }}"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "A1"}, {"y": "A2"}])
    await engine.committed()
    engine = await _reopen(make_engine, engine)
    # c reads a's outputs, written before the restart
    assert await drain(engine, run_id, {"b": lambda s: [{"y": s.inputs["x"].lower()}]}) == "SUCCESS"
    assert sorted(s["inputs"]["x"] for s in run_states(engine, run_id, "c")) == ["A1+a1", "A2+a2"]


async def test_restart_unite_group_releases_exactly_once(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", map_reduce())
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "0"}, {"y": "1"}, {"y": "2"}])
    bs = await claim_now(engine)
    engine.executed(bs[2].id, [{"y": "v2"}])
    engine.executed(bs[0].id, [{"y": "v0"}])
    await engine.committed()
    engine = await _reopen(make_engine, engine)
    assert statuses(engine, run_id, "u") == []
    engine.executed(bs[1].id, [{"y": "v1"}])  # the last branch, claimed before the restart
    [u] = await claim_now(engine)
    assert json.loads(u.inputs["x"]) == ["v0", "v1", "v2"]  # values from before the restart, in branch order
    engine.executed(u.id, [{"y": "r"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"
    assert statuses(engine, run_id, "u") == ["SUCCESS"]


async def test_restart_unite_already_released_is_not_created_again(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", map_reduce(UnitesStrategyEnum.ALL_DONE))
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "0"}, {"y": "1"}])
    for b in await claim_now(engine):
        engine.errored(b.id, "x")
    await engine.committed()
    assert statuses(engine, run_id, "u") == ["CREATED"]
    engine = await _reopen(make_engine, engine)
    await engine.committed()
    assert statuses(engine, run_id, "u") == ["CREATED"]
    assert await drain(engine, run_id) == "FAILED"
    assert statuses(engine, run_id, "u") == ["SUCCESS"]


async def test_restart_all_success_group_with_failure_still_fails(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", map_reduce())
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "0"}, {"y": "1"}])
    b0, b1 = await claim_now(engine)
    engine.errored(b0.id, "x")
    await engine.committed()
    engine = await _reopen(make_engine, engine)
    engine.executed(b1.id, [{"y": "ok"}])
    assert await engine.wait_run(run_id, timeout=2) == "FAILED"
    assert statuses(engine, run_id, "u") == []


async def test_restart_nested_unite_groups(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["t"]),
            gnode("t", "${{ a.outputs.y }}", ["b"]),
            gnode("b", "${{ t.outputs.y }}"),
            gnode("ui", "${{ b.outputs.y }}", unites="t"),
            gnode("uo", "${{ t.outputs.y }}|${{ b.outputs.y }}", unites="a"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "1"}, {"y": "2"}])
    t1, t2 = await claim_now(engine)
    engine.executed(t1.id, [{"y": "1a"}, {"y": "1b"}])
    engine.executed(t2.id, [{"y": "2a"}])
    bs = await claim_now(engine)
    for b in bs[:2]:  # both b of branch 1: its inner unite is released before the restart
        engine.executed(b.id, [{"y": b.inputs["x"]}])
    await engine.committed()
    assert len(run_states(engine, run_id, "ui")) == 1
    engine = await _reopen(make_engine, engine)
    engine.executed(bs[2].id, [{"y": bs[2].inputs["x"]}])
    status = await drain(engine, run_id, {"ui": lambda s: [{"y": "R" + s.inputs["x"]}]})
    assert status == "SUCCESS"
    assert sorted(u["inputs"]["x"] for u in run_states(engine, run_id, "ui")) == ['["1a","1b"]', '["2a"]']
    [uo] = run_states(engine, run_id, "uo")
    t_part, b_part = uo["inputs"]["x"].split("|")
    assert json.loads(t_part) == ["1a", "1b", "2a"]
    assert json.loads(b_part) == ["1a", "1b", "2a"]
    assert statuses(engine, run_id, "ui") == ["SUCCESS", "SUCCESS"]
    assert uo["updated_ms"] >= max(u["updated_ms"] for u in run_states(engine, run_id, "ui"))


async def test_restart_cancelled_run_stays_cancelled(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", [gnode("a")])
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.cancel_run(run_id)
    await engine.committed()
    engine = await _reopen(make_engine, engine)
    assert await engine.wait_run(run_id, timeout=2) == "CANCELLED"
    with pytest.raises(StateTransitionError, match="CANCELLED"):
        engine.executed(a.id, [{"y": "late"}])


async def test_restart_fanout_ids_still_conflict(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", map_reduce(UnitesStrategyEnum.ALL_DONE))
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": fan("1", "2"), "b": lambda s: Fail()}) == "FAILED"
    first, second = [s["state_id"] for s in run_states(engine, run_id, "b")]
    engine.manual_retry(first, "f1")
    await engine.committed()
    engine = await _reopen(make_engine, engine)
    with pytest.raises(ConflictError):
        engine.manual_retry(second, "f1")


async def test_restart_new_state_ids_do_not_collide(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", [gnode("a")])
    for _ in range(3):
        engine.trigger(NS, "g")
    await engine.committed()
    engine = await _reopen(make_engine, engine)
    for _ in range(3):
        engine.trigger(NS, "g")
    await engine.committed()
    assert count(engine, "select count(distinct state_id) from states") == 6
    assert len(await claim_now(engine)) == 6


async def test_restart_with_nothing_pending_loads_no_runs(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", [gnode("a")])
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id) == "SUCCESS"
    engine = await _reopen(make_engine, engine)
    assert engine.run(run_id) is None
    assert await engine.wait_run(run_id, timeout=1) == "SUCCESS"
    assert engine.get_graph(NS, "g")["validation_status"] == "VALID"
    assert engine.list_nodes(NS)["count"] == 1


async def test_restart_run_of_an_updated_graph_never_hangs(make_engine: MakeEngine) -> None:
    """The graph is changed while a run is in flight, then the engine restarts: the run must still
    finish (as it would have without the restart), never stay PENDING with a state nobody can claim."""
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", [gnode("a", "1", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "1"}])
    await engine.committed()
    upsert(engine, "g", [gnode("a", "1")])  # b is no longer in the template
    await engine.committed()
    engine = await _reopen(make_engine, engine)
    status = await drain(engine, run_id, timeout=2)
    assert status in ("SUCCESS", "FAILED")
    assert all(s["status"] not in ("CREATED", "QUEUED", "EXECUTED") for s in run_states(engine, run_id))
    assert engine.list_runs(NS, 1, 20)["runs"][0]["status"] == status


async def test_restart_lease_that_expired_while_down_is_handled_at_start(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    register(engine)
    upsert(engine, "g", [gnode("a")])
    run_id = engine.trigger(NS, "g")["run_id"]
    await engine.committed()
    engine.claim(NS, ["P"], 1, lease_ms=30)
    await engine.committed()
    await engine.close()
    await asyncio.sleep(0.06)  # the runtime and the engine are both gone past the deadline
    engine = await make_engine()
    assert await engine.wait_run(run_id, timeout=2) == "FAILED"  # no retries: ERRORED, never PENDING forever
    assert "lease expired" in run_states(engine, run_id)[0]["error"]
