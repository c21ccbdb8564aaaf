"""semantics.md — Claim, and the lease (ours)."""

from __future__ import annotations

import asyncio

import pytest
from engine_helpers import (
    NS,
    MakeEngine,
    claim_now,
    claim_within,
    eventually,
    fast_retries,
    gnode,
    node_body,
    register,
    run_states,
    upsert,
)

from exosphere_nb.engine.engine import Engine
from exosphere_nb.errors import BadRequestError, StateTransitionError


async def _runs(engine: Engine, n: int, graph: str = "g") -> list[str]:
    ids = [engine.trigger(NS, graph, inputs={"x": str(i)})["run_id"] for i in range(n)]
    await engine.committed()
    return ids


async def test_claim_exactly_once(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")])
    await _runs(engine, 10)
    first = engine.claim(NS, ["P"], 4)
    second = engine.claim(NS, ["P"], 100)
    third = engine.claim(NS, ["P"], 100)
    ids = [s.id for s in first + second]
    assert len(first) == 4 and len(second) == 6 and third == []
    assert len(set(ids)) == 10
    assert all(s.status == "QUEUED" for s in first + second)
    await engine.committed()
    assert {r["status"] for r in _all(engine)} == {"QUEUED"}


async def test_claim_oldest_first(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")])
    runs = await _runs(engine, 6)
    got = [s.run.run_id for s in engine.claim(NS, ["P"], 2)]
    got += [s.run.run_id for s in engine.claim(NS, ["P"], 3)]
    got += [s.run.run_id for s in engine.claim(NS, ["P"], 10)]
    assert got == runs


async def test_claim_oldest_first_across_node_names(engine: Engine) -> None:
    register(engine, node_body("A"), node_body("B"))
    upsert(engine, "ga", [gnode("a", node="A")])
    upsert(engine, "gb", [gnode("b", node="B")])
    order = []
    for i in range(6):
        graph = "ga" if i % 3 else "gb"
        order.append(engine.trigger(NS, graph)["run_id"])
    await engine.committed()
    got = [s.run.run_id for s in engine.claim(NS, ["A", "B"], 3)]
    got += [s.run.run_id for s in engine.claim(NS, ["B", "A"], 3)]
    assert got == order


async def test_claim_batch_size(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")])
    await _runs(engine, 5)
    assert len(engine.claim(NS, ["P"], 3)) == 3
    assert len(engine.claim(NS, ["P"], 3)) == 2
    assert engine.claim(NS, ["P"], 3) == []


async def test_claim_batch_size_must_be_positive_int(engine: Engine) -> None:
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(BadRequestError, match="batch_size"):
            engine.claim(NS, ["P"], bad)  # type: ignore[arg-type]


async def test_claim_only_named_nodes_of_the_namespace(engine: Engine) -> None:
    register(engine, node_body("A"), node_body("B"))
    register(engine, node_body("A"), namespace="other")
    upsert(engine, "ga", [gnode("a", node="A")])
    upsert(engine, "gb", [gnode("b", node="B")])
    engine.upsert_graph("other", "ga", nodes=[gnode("a", node="A", namespace="other")])
    engine.trigger(NS, "ga")
    engine.trigger(NS, "gb")
    engine.trigger("other", "ga")
    await engine.committed()
    assert [s.node.node_name for s in engine.claim(NS, ["B"], 10)] == ["B"]
    assert engine.claim(NS, ["B", "C"], 10) == []
    [a] = engine.claim(NS, ["A"], 10)
    assert a.run.namespace == NS
    [other] = engine.claim("other", ["A"], 10)
    assert other.run.namespace == "other"


async def test_claim_enqueue_after(engine: Engine) -> None:
    """A CREATED state is eligible only once enqueue_after <= now (here: a re-queue)."""
    register(engine)
    upsert(engine, "g", [gnode("r")])
    await _runs(engine, 1)
    [s] = engine.claim(NS, ["P"], 1)
    res = engine.requeue_after(s.id, 120)
    assert res["status"] == "CREATED"
    assert await claim_now(engine) == []
    await asyncio.sleep(0.04)
    assert await claim_now(engine) == []
    [again] = await claim_within(engine, timeout=2)
    assert again.id == s.id


async def test_next_states_claimable_only_after_their_commit(make_engine: MakeEngine) -> None:
    """With eager hand-off off (how the server runs the engine), a runtime only ever sees committed states."""
    engine = await make_engine(eager_handoff=False)
    register(engine)
    upsert(engine, "g", [gnode("a", "1", ["b"]), gnode("b")])
    run_id = engine.trigger(NS, "g")["run_id"]
    assert engine.claim(NS, ["P"], 10) == []  # not committed yet
    await engine.committed()
    [a] = engine.claim(NS, ["P"], 10)
    engine.executed(a.id, [{"y": "1"}])
    assert engine.claim(NS, ["P"], 10) == []
    await engine.committed()
    [b] = engine.claim(NS, ["P"], 10)
    assert b.node.identifier == "b"
    assert [s["identifier"] for s in run_states(engine, run_id)] == ["a", "b"]  # b was on disk when claimed


async def test_eager_handoff_state_claimed_before_commit_is_recorded(engine: Engine) -> None:
    """In-process hand-off before the commit (the default): the claim and the result still reach the database."""
    register(engine)
    upsert(engine, "g", [gnode("a", "1", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    run_id = engine.trigger(NS, "g")["run_id"]
    claimed = engine.claim(NS, ["P"], 10)
    claimed += await claim_now(engine)
    [a] = claimed
    engine.executed(a.id, [{"y": "1"}])
    claimed = engine.claim(NS, ["P"], 10)
    claimed += await claim_now(engine)
    [b] = claimed
    engine.executed(b.id, [{"y": "2"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"
    assert [(s["identifier"], s["status"], s["outputs"]) for s in run_states(engine, run_id)] == [
        ("a", "SUCCESS", {"y": "1"}),
        ("b", "SUCCESS", {"y": "2"}),
    ]


async def test_claim_results_only_from_queued(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")])
    [run_id] = await _runs(engine, 1)
    [created] = run_states(engine, run_id)
    with pytest.raises(StateTransitionError, match="CREATED"):
        engine.executed(created["state_id"], [{"y": "1"}])
    with pytest.raises(StateTransitionError):
        engine.errored(created["state_id"], "x")
    with pytest.raises(StateTransitionError):
        engine.prune(created["state_id"], {})
    with pytest.raises(StateTransitionError):
        engine.requeue_after(created["state_id"], 10)


# -- lease ----------------------------------------------------------------------------------------


async def test_lease_expiry_applies_retry_policy(make_engine: MakeEngine) -> None:
    engine = await make_engine(lease_ms=50)
    register(engine)
    upsert(engine, "g", [gnode("r")], retry_policy=fast_retries(1))
    [run_id] = await _runs(engine, 1)
    [s] = engine.claim(NS, ["P"], 1)
    # nobody reports: the engine's timer handles the expired lease as an error, and the policy retries
    await eventually(lambda: _statuses_committed(engine, run_id, ["RETRY_CREATED", "CREATED"]), what="retry")
    original, retry = run_states(engine, run_id)
    assert original["state_id"] == s.id
    assert "lease expired" in original["error"]
    assert retry["retry_count"] == 1
    assert retry["inputs"] == original["inputs"]
    [s2] = await claim_within(engine)
    assert s2.id == retry["state_id"]
    # the retry's lease expires too: retries exhausted, ERRORED, and the run ends FAILED (never PENDING forever)
    assert await engine.wait_run(run_id, timeout=3) == "FAILED"
    assert [r["status"] for r in run_states(engine, run_id)] == ["RETRY_CREATED", "ERRORED"]
    assert "lease expired" in run_states(engine, run_id)[1]["error"]


async def test_lease_expired_state_refuses_late_result(make_engine: MakeEngine) -> None:
    engine = await make_engine(lease_ms=50)
    register(engine)
    upsert(engine, "g", [gnode("r")])
    [run_id] = await _runs(engine, 1)
    [s] = engine.claim(NS, ["P"], 1)
    assert await engine.wait_run(run_id, timeout=3) == "FAILED"
    with pytest.raises(StateTransitionError, match="ERRORED"):
        engine.executed(s.id, [{"y": "late"}])


async def test_lease_per_claim_lease_ms(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")])
    [run_id] = await _runs(engine, 1)
    [s] = engine.claim(NS, ["P"], 1, lease_ms=50)
    assert await engine.wait_run(run_id, timeout=3) == "FAILED"
    assert "lease expired" in run_states(engine, run_id)[0]["error"]
    assert s.status == "ERRORED"


async def test_lease_renewed_state_stays_queued(make_engine: MakeEngine) -> None:
    engine = await make_engine(lease_ms=150)
    register(engine)
    upsert(engine, "g", [gnode("r")])
    [run_id] = await _runs(engine, 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    [s] = engine.claim(NS, ["P"], 1)
    while loop.time() - started < 0.3:  # twice the lease, renewed as this project's runtime does
        await asyncio.sleep(0.04)
        assert engine.renew_leases([s.id]) == 1
    assert s.status == "QUEUED"
    engine.executed(s.id, [{"y": "in time"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"


async def test_lease_default_is_thirty_minutes(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")])
    await _runs(engine, 1)
    [s] = engine.claim(NS, ["P"], 1)
    assert s.lease_until - s.updated_ms == 30 * 60 * 1000


def _all(engine: Engine) -> list[dict[str, object]]:
    cols, data = engine.store.query("select state_id, status from states")
    return [dict(zip(cols, r)) for r in data]


async def _statuses_committed(engine: Engine, run_id: str, expected: list[str]) -> bool:
    await engine.committed()
    return [r["status"] for r in run_states(engine, run_id)] == expected


async def test_lease_expiry_in_a_unite_branch_still_releases_the_unite(make_engine: MakeEngine) -> None:
    engine = await make_engine(lease_ms=50)
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["b"]),
            gnode("b", "${{ a.outputs.y }}"),
            gnode("u", "${{ b.outputs.y }}", unites="a", strategy="ALL_DONE"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "1"}, {"y": "2"}])
    b1, _b2 = await claim_now(engine)
    engine.executed(b1.id, [{"y": "done"}])
    # b2's runtime died: its lease expires, it ends ERRORED (no retries), and the unite is released
    [u] = await claim_within(engine, ["P"])
    assert u.node.identifier == "u"
    assert u.inputs == {"x": '["done"]'}
    engine.executed(u.id, [{"y": "r"}])
    assert await engine.wait_run(run_id, timeout=2) == "FAILED"
    assert "lease expired" in next(s for s in run_states(engine, run_id, "b") if s["status"] == "ERRORED")["error"]
