"""semantics.md — Executed: outputs are branches."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from engine_helpers import (
    NS,
    CommitRecorder,
    claim_now,
    claim_within,
    drain,
    fast_retries,
    gnode,
    graph_node_names,
    node_body,
    register,
    run_states,
    statuses,
    upsert,
)

from exosphere_nb.engine.engine import Engine
from exosphere_nb.errors import NotFoundError, StateTransitionError


async def _claim_root(engine: Engine, graph: str = "g", **trigger: Any) -> tuple[str, Any]:
    run_id = engine.trigger(NS, graph, **trigger)["run_id"]
    [root] = await claim_now(engine, graph_node_names(engine, graph))
    return run_id, root


async def test_fanout_k_outputs_make_k_minus_1_siblings(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    run_id, a = await _claim_root(engine)
    assert engine.executed(a.id, [{"y": "1"}, {"y": "2"}, {"y": "3"}]) == {"status": "EXECUTED"}
    await engine.committed()
    a_states = run_states(engine, run_id, "a")
    assert len(a_states) == 3
    assert a_states[0]["state_id"] == a.id  # the first output stays on the claimed state
    assert [s["outputs"] for s in a_states] == [{"y": "1"}, {"y": "2"}, {"y": "3"}]
    assert [s["status"] for s in a_states] == ["SUCCESS"] * 3
    # the siblings are states of the same node with the same inputs and parents, one branch each
    assert all(s["inputs"] == {"x": "in"} and s["parents"] == {} for s in a_states)
    assert [s["branch"] for s in a_states] == [[0], [1], [2]]
    b_states = run_states(engine, run_id, "b")
    assert sorted(s["inputs"]["x"] for s in b_states) == ["1", "2", "3"]
    assert {s["parents"]["a"] for s in b_states} == {s["state_id"] for s in a_states}
    assert await drain(engine, run_id) == "SUCCESS"


async def test_fanout_single_output_makes_no_sibling(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a")])
    run_id, a = await _claim_root(engine)
    engine.executed(a.id, [{"y": "only"}])
    await engine.committed()
    [state] = run_states(engine, run_id)
    assert (state["state_id"], state["status"], state["outputs"]) == (a.id, "SUCCESS", {"y": "only"})


async def test_fanout_zero_outputs_ends_branch_success(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b")])
    run_id, a = await _claim_root(engine)
    assert engine.executed(a.id, []) == {"status": "EXECUTED"}
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"
    [state] = run_states(engine, run_id)
    assert (state["identifier"], state["status"]) == ("a", "SUCCESS")
    assert statuses(engine, run_id, "b") == []


async def test_fanout_zero_outputs_ends_only_that_branch(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}", ["c"]), gnode("c", "${{ b.outputs.y }}")],
    )
    run_id = engine.trigger(NS, "g")["run_id"]

    def b(s: Any) -> list[dict[str, str]]:
        return [] if s.inputs["x"] == "stop" else [{"y": s.inputs["x"]}]

    status = await drain(engine, run_id, {"a": lambda s: [{"y": "stop"}, {"y": "go"}], "b": b})
    assert status == "SUCCESS"
    assert [s["inputs"]["x"] for s in run_states(engine, run_id, "c")] == ["go"]


async def test_output_check_bad_output_is_errored_naming_field(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b")])
    cases: list[tuple[str, list[dict[str, Any]], str]] = [
        ("int", [{"y": 1}], "'y'"),  # non-string value
        ("none", [{"y": None}], "'y'"),
        ("list", [{"y": ["a"]}], "'y'"),
        ("second output", [{"y": "ok"}, {"y": 2}], "'y'"),  # any output of the fan-out
        ("missing", [{"z": "v"}], "'y'"),  # lacks the declared field (and has an undeclared one)
        ("extra", [{"y": "v", "extra": "w"}], "'extra'"),  # a field the node does not declare
    ]
    for case, outputs, fragment in cases:
        run_id, a = await _claim_root(engine)
        res = engine.executed(a.id, outputs)
        assert res["status"] == "ERRORED", case
        assert res["retry_created"] is False
        assert fragment in res["error"], (case, res["error"])
        assert await engine.wait_run(run_id, timeout=2) == "FAILED"
        [state] = run_states(engine, run_id)  # no sibling, no next state
        assert state["status"] == "ERRORED"
        assert fragment in state["error"], case


async def test_output_check_missing_field_names_node_and_field(engine: Engine) -> None:
    register(engine, node_body("Fetch", outputs=("url", "body")))
    upsert(engine, "g", [gnode("f", node="Fetch")])
    _run_id, f = await _claim_root(engine)
    res = engine.executed(f.id, [{"url": "u"}])
    assert res["status"] == "ERRORED"
    assert "'body'" in res["error"] and "Fetch" in res["error"]


async def test_output_check_failure_applies_retries(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in")], retry_policy=fast_retries(2))
    run_id, a = await _claim_root(engine)
    res = engine.executed(a.id, [{"y": 7}])
    assert res["status"] == "ERRORED" and res["retry_created"] is True
    [retry] = await claim_within(engine)
    assert retry.retry_count == 1 and retry.inputs == {"x": "in"}
    engine.executed(retry.id, [{"y": "fixed"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"
    assert statuses(engine, run_id, "a") == ["RETRY_CREATED", "SUCCESS"]


async def test_output_check_empty_output_is_no_data(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "const")])
    run_id, a = await _claim_root(engine)
    assert engine.executed(a.id, [{}]) == {"status": "EXECUTED"}
    assert await drain(engine, run_id) == "SUCCESS"
    assert run_states(engine, run_id, "a")[0]["outputs"] == {}
    assert statuses(engine, run_id, "b") == ["SUCCESS"]


async def test_output_check_empty_output_then_reference_is_next_created_error(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "got ${{ a.outputs.y }}")])
    run_id, a = await _claim_root(engine)
    assert engine.executed(a.id, [{}]) == {"status": "EXECUTED"}
    assert await engine.wait_run(run_id, timeout=2) == "FAILED"
    [state] = run_states(engine, run_id)
    assert state["status"] == "NEXT_CREATED_ERROR"
    assert "'y'" in state["error"]
    assert statuses(engine, run_id, "b") == []


async def test_output_check_unregistered_fields_of_another_node_do_not_leak(engine: Engine) -> None:
    """Each node is checked against its own registered output fields."""
    register(engine, node_body("A", outputs=("y",)), node_body("B", outputs=("z",)))
    upsert(engine, "g", [gnode("a", node="A", next_nodes=["b"]), gnode("b", node="B")])
    run_id = engine.trigger(NS, "g")["run_id"]
    status = await drain(engine, run_id, {"a": lambda s: [{"y": "1"}], "b": lambda s: [{"z": "2"}]})
    assert status == "SUCCESS"


async def test_executed_unknown_state_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFoundError):
        engine.executed("0" * 24, [{"y": "1"}])
    with pytest.raises(NotFoundError):
        engine.executed("not-an-id", [{"y": "1"}])


async def test_executed_twice_is_refused(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a")])
    run_id, a = await _claim_root(engine)
    engine.executed(a.id, [{"y": "1"}])
    with pytest.raises(StateTransitionError, match="SUCCESS"):
        engine.executed(a.id, [{"y": "2"}])
    await engine.committed()
    with pytest.raises(StateTransitionError, match="SUCCESS"):
        engine.executed(a.id, [{"y": "2"}])
    assert run_states(engine, run_id)[0]["outputs"] == {"y": "1"}


def _assert_outputs_and_next_states_together(recorder: CommitRecorder, a_id: str) -> None:
    """In every committed snapshot, a is SUCCESS with its outputs exactly when its next states exist."""
    assert recorder.snapshots
    for snap in recorder.snapshots:
        a = snap["states"].get(a_id)
        children = sorted(ident for ident, _, _ in snap["states"].values() if ident in ("b", "c"))
        done = a is not None and a[1] == "SUCCESS"
        assert children == (["b", "b", "c", "c"] if done else []), (a, children)
        if done:
            assert json.loads(a[2]) == {"y": "1"}


async def test_next_states_written_in_same_commit_as_outputs(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b", "c"]), gnode("b", "${{ a.outputs.y }}"), gnode("c")])
    run_id, a = await _claim_root(engine)
    await engine.committed()
    recorder = CommitRecorder(engine)
    engine.executed(a.id, [{"y": "1"}, {"y": "2"}])
    # before the commit, the database still shows the claimed state and nothing new
    assert [(s["identifier"], s["status"]) for s in run_states(engine, run_id)] == [("a", "QUEUED")]
    await engine.committed()
    _assert_outputs_and_next_states_together(recorder, a.id)
    assert recorder.snapshots[-1]["states"][a.id][1] == "SUCCESS"


async def test_next_states_written_in_same_commit_as_outputs_while_a_commit_is_in_flight(engine: Engine) -> None:
    """The result arrives while the commit of its claim is still being written: no commit may hold the
    outputs without the next states (a crash between two commits would strand the run)."""
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b", "c"]), gnode("b", "${{ a.outputs.y }}"), gnode("c")])
    engine.trigger(NS, "g")
    await engine.committed()
    recorder = CommitRecorder(engine)
    recorder.hold()
    [a] = engine.claim(NS, ["P"], 1)  # its commit starts and waits on the writer thread
    await asyncio.sleep(0.01)
    engine.executed(a.id, [{"y": "1"}, {"y": "2"}])
    recorder.release()
    await engine.committed()
    _assert_outputs_and_next_states_together(recorder, a.id)
    assert recorder.snapshots[-1]["states"][a.id][1] == "SUCCESS"


async def test_status_executed_states_become_success_once_next_states_exist(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b")])
    run_id, a = await _claim_root(engine)
    engine.executed(a.id, [{"y": "1"}, {"y": "2"}])
    assert a.status == "SUCCESS"
    await engine.committed()
    assert {s["status"] for s in run_states(engine, run_id, "a")} == {"SUCCESS"}
    assert statuses(engine, run_id, "b") == ["CREATED", "CREATED"]
