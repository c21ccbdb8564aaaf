"""semantics.md — Unites (ours)."""

from __future__ import annotations

import json
from typing import Any

from engine_helpers import (
    NS,
    Fail,
    claim_now,
    claim_within,
    drain,
    fast_retries,
    gnode,
    register,
    run_states,
    statuses,
    upsert,
)

from exosphere_nb.engine.engine import Engine
from exosphere_nb.models import StoreConfigModel, UnitesStrategyEnum

ALL_SUCCESS = UnitesStrategyEnum.ALL_SUCCESS
ALL_DONE = UnitesStrategyEnum.ALL_DONE


def map_reduce(strategy: UnitesStrategyEnum = ALL_SUCCESS, u_input: str = "${{ b.outputs.y }}") -> list[Any]:
    """a fans out, b runs per branch, u unites a."""
    return [
        gnode("a", "in", ["b"]),
        gnode("b", "${{ a.outputs.y }}", ["u"]),
        gnode("u", u_input, unites="a", strategy=strategy),
    ]


def fan(*values: str) -> Any:
    return lambda s: [{"y": v} for v in values]


async def _fanned_out(
    engine: Engine, k: int, strategy: UnitesStrategyEnum = ALL_SUCCESS, **kw: Any
) -> tuple[str, list]:
    """Trigger map_reduce, execute a with k outputs, claim the k b states (in branch order)."""
    register(engine)
    upsert(engine, "g", map_reduce(strategy), **kw)
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": str(i)} for i in range(k)])
    bs = await claim_now(engine)
    assert [b.inputs["x"] for b in bs] == [str(i) for i in range(k)]
    return run_id, bs


async def test_unite_all_success_created_after_every_branch_succeeded(engine: Engine) -> None:
    run_id, bs = await _fanned_out(engine, 3)
    engine.executed(bs[0].id, [{"y": "b0"}])
    engine.executed(bs[1].id, [{"y": "b1"}])
    await engine.committed()
    assert statuses(engine, run_id, "u") == []
    assert await claim_now(engine, ["P"]) == []
    engine.executed(bs[2].id, [{"y": "b2"}])
    [u] = await claim_now(engine)
    assert u.node.identifier == "u"
    assert json.loads(u.inputs["x"]) == ["b0", "b1", "b2"]
    engine.executed(u.id, [{"y": "reduced"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"


async def test_unite_all_success_fails_run_when_a_branch_errors(engine: Engine) -> None:
    run_id, bs = await _fanned_out(engine, 3)
    engine.executed(bs[0].id, [{"y": "b0"}])
    engine.errored(bs[1].id, "boom")
    engine.executed(bs[2].id, [{"y": "b2"}])
    assert await engine.wait_run(run_id, timeout=2) == "FAILED"  # never hangs PENDING
    assert statuses(engine, run_id, "u") == []


async def test_unite_all_success_fails_run_when_last_branch_errors(engine: Engine) -> None:
    run_id, bs = await _fanned_out(engine, 3)
    engine.executed(bs[0].id, [{"y": "b0"}])
    engine.executed(bs[1].id, [{"y": "b1"}])
    await engine.committed()
    engine.errored(bs[2].id, "last one fails")
    assert await engine.wait_run(run_id, timeout=2) == "FAILED"
    assert statuses(engine, run_id, "u") == []


async def test_unite_all_success_fails_run_when_a_branch_has_next_created_error(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["b"]),
            gnode("b", "${{ a.outputs.y }}", ["c"]),
            gnode("c", "${{ b.outputs.y }}"),
            gnode("u", "${{ c.outputs.y }}", unites="a"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    status = await drain(
        engine, run_id, {"a": fan("1", "2"), "b": lambda s: [{}] if s.inputs["x"] == "2" else [{"y": "ok"}]}
    )
    assert status == "FAILED"
    assert sorted(statuses(engine, run_id, "b")) == ["NEXT_CREATED_ERROR", "SUCCESS"]
    assert statuses(engine, run_id, "u") == []


async def test_unite_all_done_created_whatever_the_outcome(engine: Engine) -> None:
    run_id, bs = await _fanned_out(engine, 3, ALL_DONE)
    engine.executed(bs[0].id, [{"y": "b0"}])
    engine.errored(bs[1].id, "boom")
    engine.prune(bs[2].id, {"why": "skip"})
    [u] = await claim_now(engine)
    assert u.node.identifier == "u"
    assert json.loads(u.inputs["x"]) == ["b0"]  # only SUCCESS states aggregate
    engine.executed(u.id, [{"y": "done"}])
    assert await engine.wait_run(run_id, timeout=2) == "FAILED"  # an ERRORED branch still fails the run
    assert statuses(engine, run_id, "u") == ["SUCCESS"]


async def test_unite_all_done_released_by_last_branch_failing(engine: Engine) -> None:
    run_id, bs = await _fanned_out(engine, 2, ALL_DONE)
    engine.executed(bs[0].id, [{"y": "b0"}])
    await engine.committed()
    assert statuses(engine, run_id, "u") == []
    engine.errored(bs[1].id, "boom")
    [u] = await claim_now(engine)
    assert json.loads(u.inputs["x"]) == ["b0"]


async def test_unite_all_done_when_every_branch_fails(engine: Engine) -> None:
    _run_id, bs = await _fanned_out(engine, 2, ALL_DONE)
    for b in bs:
        engine.errored(b.id, "boom")
    [u] = await claim_now(engine)
    assert u.inputs == {"x": "[]"}


async def test_unite_all_success_released_by_last_branch_pruned(engine: Engine) -> None:
    run_id, bs = await _fanned_out(engine, 3)
    engine.executed(bs[0].id, [{"y": "b0"}])
    engine.executed(bs[1].id, [{"y": "b1"}])
    await engine.committed()
    engine.prune(bs[2].id, {"reason": "nothing to do"})
    [u] = await claim_now(engine)
    assert json.loads(u.inputs["x"]) == ["b0", "b1"]  # a pruned branch counts as success, adds no value
    engine.executed(u.id, [{"y": "r"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"


async def test_unite_all_success_when_every_branch_pruned(engine: Engine) -> None:
    _run_id, bs = await _fanned_out(engine, 2)
    for b in bs:
        engine.prune(b.id, {})
    [u] = await claim_now(engine)
    assert u.inputs == {"x": "[]"}


async def test_unite_waits_for_every_descendant_of_the_branches(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["b"]),
            gnode("b", "${{ a.outputs.y }}", ["c", "d"]),
            gnode("c", "${{ b.outputs.y }}"),
            gnode("d", "${{ b.outputs.y }}"),
            gnode("u", "${{ c.outputs.y }}", unites="a"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "1"}, {"y": "2"}])
    for b in await claim_now(engine):
        engine.executed(b.id, [{"y": b.inputs["x"]}])
    below = await claim_now(engine)
    assert sorted(s.node.identifier for s in below) == ["c", "c", "d", "d"]
    for s in below[:-1]:
        engine.executed(s.id, [{"y": s.node.identifier + s.inputs["x"]}])
    await engine.committed()
    assert statuses(engine, run_id, "u") == []  # one d is still running
    engine.executed(below[-1].id, [{"y": "last"}])
    [u] = await claim_now(engine)
    assert json.loads(u.inputs["x"]) == ["c1", "c2"]


async def test_unite_exactly_one_per_execution_of_target(engine: Engine) -> None:
    """t runs once per branch of r: each execution of t gets its own u, over its own branches only."""
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("r", "in", ["t"]),
            gnode("t", "${{ r.outputs.y }}", ["b"]),
            gnode("b", "${{ t.outputs.y }}"),
            gnode("u", "${{ t.outputs.y }}:${{ b.outputs.y }}", unites="t"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    status = await drain(
        engine,
        run_id,
        {
            "r": fan("R1", "R2"),
            "t": lambda s: [{"y": f"{s.inputs['x']}.{i}"} for i in range(3 if s.inputs["x"] == "R1" else 2)],
        },
    )
    assert status == "SUCCESS"
    us = run_states(engine, run_id, "u")
    assert sorted(u["inputs"]["x"] for u in us) == [
        'R1.0:["R1.0","R1.1","R1.2"]',
        'R2.0:["R2.0","R2.1"]',
    ]
    t_leaders = {s["state_id"] for s in run_states(engine, run_id, "t") if s["branch"][-1] == 0}
    assert {u["parents"]["t"] for u in us} == t_leaders


async def test_unite_aggregates_json_array_in_branch_order(engine: Engine) -> None:
    _run_id, bs = await _fanned_out(engine, 5)
    for b in reversed(bs):  # finish in reverse: the array still follows the order a returned its outputs
        engine.executed(b.id, [{"y": "v" + b.inputs["x"]}])
        await engine.committed()
    [u] = await claim_now(engine)
    assert u.inputs["x"] == '["v0","v1","v2","v3","v4"]'


async def test_unite_aggregation_json_escapes_values(engine: Engine) -> None:
    _run_id, bs = await _fanned_out(engine, 2)
    values = ['quote " and \\ backslash', "ünïcode ✓\nnewline"]
    for b, v in zip(bs, values):
        engine.executed(b.id, [{"y": v}])
    [u] = await claim_now(engine)
    assert json.loads(u.inputs["x"]) == values


async def test_unite_aggregation_nested_fanouts_flatten_depth_first(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["b"]),
            gnode("b", "${{ a.outputs.y }}", ["c"]),
            gnode("c", "${{ b.outputs.y }}"),
            gnode("u", "${{ c.outputs.y }}|${{ b.outputs.y }}", unites="a"),
        ],
    )
    engine.trigger(NS, "g")
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "A"}, {"y": "B"}])
    bs = await claim_now(engine)
    # b for A fans out 3 ways, b for B 2 ways; report B's first to scramble completion order
    for b in sorted(bs, key=lambda s: s.inputs["x"], reverse=True):
        n = 3 if b.inputs["x"] == "A" else 2
        engine.executed(b.id, [{"y": f"{b.inputs['x']}{i}"} for i in range(n)])
        await engine.committed()
    cs = await claim_now(engine)
    assert len(cs) == 5
    for c in sorted(cs, key=lambda s: s.inputs["x"], reverse=True):
        engine.executed(c.id, [{"y": c.inputs["x"].lower()}])
        await engine.committed()
    [u] = await claim_now(engine)
    c_part, b_part = u.inputs["x"].split("|")
    assert json.loads(c_part) == ["a0", "a1", "a2", "b0", "b1"]
    assert json.loads(b_part) == ["A0", "A1", "A2", "B0", "B1"]


async def test_unite_aggregation_inner_fanout_of_zero_adds_nothing(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["b"]),
            gnode("b", "${{ a.outputs.y }}", ["c"]),
            gnode("c", "${{ b.outputs.y }}"),
            gnode("u", "${{ c.outputs.y }}", unites="a"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]

    def b(s: Any) -> list[dict[str, str]]:
        return [] if s.inputs["x"] == "2" else [{"y": s.inputs["x"] + "x"}, {"y": s.inputs["x"] + "y"}]

    assert await drain(engine, run_id, {"a": fan("1", "2", "3"), "b": b}) == "SUCCESS"
    assert json.loads(run_states(engine, run_id, "u")[0]["inputs"]["x"]) == ["1x", "1y", "3x", "3y"]


async def test_unite_target_resolves_to_plain_string(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("r", "in", ["a"]),
            gnode("a", "${{ r.outputs.y }}", ["b"]),
            gnode("b", "${{ a.outputs.y }}"),
            gnode("u", "t=${{ a.outputs.y }} r=${{ r.outputs.y }} s=${{ store.k }}", unites="a"),
        ],
        store_config=StoreConfigModel(default_values={"k": "K"}),
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"r": fan("R"), "a": fan("first", "second")}) == "SUCCESS"
    [u] = run_states(engine, run_id, "u")
    assert u["inputs"] == {"x": "t=first r=R s=K"}  # the target: its first output; its ancestors as usual


async def test_unite_target_fanout_over_nothing_unites_empty_array(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", map_reduce())
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": lambda s: []}) == "SUCCESS"
    assert statuses(engine, run_id, "b") == []
    assert [u["inputs"] for u in run_states(engine, run_id, "u")] == [{"x": "[]"}]


async def test_unite_parents_and_next_nodes(engine: Engine) -> None:
    register(engine)
    nodes = [*map_reduce(), gnode("d", "${{ u.outputs.y }}+${{ a.outputs.y }}")]
    nodes[2] = gnode("u", "${{ b.outputs.y }}", ["d"], unites="a")
    upsert(engine, "g", nodes)
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": fan("1", "2"), "u": lambda s: [{"y": "U"}]}) == "SUCCESS"
    [a_first, _] = run_states(engine, run_id, "a")
    [u] = run_states(engine, run_id, "u")
    assert u["parents"] == {"a": a_first["state_id"]}
    [d] = run_states(engine, run_id, "d")
    assert d["inputs"] == {"x": "U+1"}
    assert d["parents"] == {"a": a_first["state_id"], "u": u["state_id"]}


async def test_unite_with_retried_branch(engine: Engine) -> None:
    run_id, bs = await _fanned_out(engine, 3, retry_policy=fast_retries(2))
    engine.executed(bs[0].id, [{"y": "b0"}])
    engine.errored(bs[1].id, "transient")
    engine.executed(bs[2].id, [{"y": "b2"}])
    await engine.committed()
    assert statuses(engine, run_id, "u") == []  # the retry of branch 1 is part of the group
    [retry] = await claim_within(engine)
    assert retry.retry_count == 1 and retry.inputs == {"x": "1"}
    engine.executed(retry.id, [{"y": "b1-retried"}])
    [u] = await claim_now(engine)
    assert json.loads(u.inputs["x"]) == ["b0", "b1-retried", "b2"]  # the retry keeps its branch position
    engine.executed(u.id, [{"y": "r"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"


async def test_unite_all_success_fails_when_retries_of_a_branch_are_exhausted(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", map_reduce(), retry_policy=fast_retries(1))
    run_id = engine.trigger(NS, "g")["run_id"]
    status = await drain(
        engine, run_id, {"a": fan("1", "2"), "b": lambda s: Fail() if s.inputs["x"] == "2" else [{"y": "ok"}]}
    )
    assert status == "FAILED"
    assert sorted(statuses(engine, run_id, "b")) == ["ERRORED", "RETRY_CREATED", "SUCCESS"]
    assert statuses(engine, run_id, "u") == []


async def test_unite_of_unite_nested_groups(engine: Engine) -> None:
    """An inner unite (of t, inside a's branches) is itself a member of a's group."""
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["t"]),
            gnode("t", "${{ a.outputs.y }}", ["b"]),
            gnode("b", "${{ t.outputs.y }}"),
            gnode("ui", "${{ b.outputs.y }}", unites="t"),
            gnode("uo", "${{ t.outputs.y }}", unites="a"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    status = await drain(
        engine,
        run_id,
        {"a": fan("1", "2"), "t": lambda s: [{"y": s.inputs["x"] + "a"}, {"y": s.inputs["x"] + "b"}]},
    )
    assert status == "SUCCESS"
    assert sorted(u["inputs"]["x"] for u in run_states(engine, run_id, "ui")) == ['["1a","1b"]', '["2a","2b"]']
    [uo] = run_states(engine, run_id, "uo")
    assert json.loads(uo["inputs"]["x"]) == ["1a", "1b", "2a", "2b"]
    # uo came after both inner unites had finished
    ui_done = max(u["updated_ms"] for u in run_states(engine, run_id, "ui"))
    assert uo["updated_ms"] >= ui_done


async def test_unite_all_success_with_errored_nested_unite_fails(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["t"]),
            gnode("t", "${{ a.outputs.y }}", ["b"]),
            gnode("b", "${{ t.outputs.y }}"),
            gnode("ui", "${{ b.outputs.y }}", unites="t"),
            gnode("uo", "${{ t.outputs.y }}", unites="a"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    status = await drain(engine, run_id, {"a": fan("1", "2"), "ui": lambda s: Fail("inner reduce failed")})
    assert status == "FAILED"
    assert statuses(engine, run_id, "uo") == []


async def test_unite_exactly_once_when_branches_finish_together(engine: Engine) -> None:
    run_id, bs = await _fanned_out(engine, 50)
    # every result in one synchronous burst: no commit, no await in between
    for b in bs:
        engine.executed(b.id, [{"y": b.inputs["x"]}])
    await engine.committed()
    assert statuses(engine, run_id, "u") == ["CREATED"]
    [u] = await claim_now(engine)
    assert json.loads(u.inputs["x"]) == [str(i) for i in range(50)]


async def test_unite_exactly_once_when_mixed_outcomes_finish_together(engine: Engine) -> None:
    run_id, bs = await _fanned_out(engine, 6, ALL_DONE)
    for i, b in enumerate(bs):
        if i % 3 == 0:
            engine.errored(b.id, "x")
        elif i % 3 == 1:
            engine.prune(b.id, {})
        else:
            engine.executed(b.id, [{"y": b.inputs["x"]}])
    await engine.committed()
    assert statuses(engine, run_id, "u") == ["CREATED"]


def _nested(outer: UnitesStrategyEnum = ALL_SUCCESS) -> list[Any]:
    return [
        gnode("a", "in", ["t"]),
        gnode("t", "${{ a.outputs.y }}", ["b"]),
        gnode("b", "${{ t.outputs.y }}"),
        gnode("ui", "${{ b.outputs.y }}", unites="t"),
        gnode("uo", "${{ t.outputs.y }}", unites="a", strategy=outer),
    ]


async def test_unite_outer_waits_for_inner_unite_released_by_the_last_branch(engine: Engine) -> None:
    """ui descends from a's execution: uo (uniting a) must wait until ui is terminal, even when the
    branch state that releases ui is also the last member of a's group."""
    register(engine)
    upsert(engine, "g", _nested())
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "1"}])  # one branch: t's group and a's group end with the same b
    [t] = await claim_now(engine)
    engine.executed(t.id, [{"y": "1a"}])
    [b] = await claim_now(engine)
    engine.executed(b.id, [{"y": "v"}])
    await engine.committed()
    assert statuses(engine, run_id, "ui") == ["CREATED"]
    assert statuses(engine, run_id, "uo") == []  # ui is still to run
    [ui] = await claim_now(engine)
    assert ui.node.identifier == "ui"
    engine.executed(ui.id, [{"y": "reduced"}])
    [uo] = await claim_now(engine)
    assert uo.node.identifier == "uo"


async def test_unite_all_success_outer_fails_when_inner_unite_errors(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", _nested())
    run_id = engine.trigger(NS, "g")["run_id"]
    status = await drain(engine, run_id, {"ui": lambda s: Fail("inner reduce failed")})
    assert status == "FAILED"
    assert statuses(engine, run_id, "ui") == ["ERRORED"]
    assert statuses(engine, run_id, "uo") == []


async def test_unite_outer_aggregates_inner_unite_outputs_in_branch_order(engine: Engine) -> None:
    """Nested map-reduce: an inner unite runs inside the outer target's execution, so the outer unite
    gets one inner result per outer branch, as a JSON array in branch order."""
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["t"]),
            gnode("t", "${{ a.outputs.y }}", ["b"]),
            gnode("b", "${{ t.outputs.y }}"),
            gnode("ui", "${{ b.outputs.y }}", unites="t"),
            gnode("uo", "${{ ui.outputs.y }}", unites="a"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    seen: dict[str, str] = {}

    def reduce_inner(s: Any) -> Any:
        return [{"y": "+".join(json.loads(s.inputs["x"]))}]

    def reduce_outer(s: Any) -> Any:
        seen["uo"] = s.inputs["x"]
        return [{"y": "done"}]

    handlers = {
        "a": fan("A1", "A2"),
        "t": lambda s: [{"y": s.inputs["x"] + "-t1"}, {"y": s.inputs["x"] + "-t2"}],
        "b": lambda s: [{"y": s.inputs["x"] + "-b"}],
        "ui": reduce_inner,
        "uo": reduce_outer,
    }
    assert await drain(engine, run_id, handlers) == "SUCCESS"
    assert json.loads(seen["uo"]) == ["A1-t1-b+A1-t2-b", "A2-t1-b+A2-t2-b"]
    assert statuses(engine, run_id, "ui") == ["SUCCESS", "SUCCESS"]
    assert statuses(engine, run_id, "uo") == ["SUCCESS"]
