"""semantics.md — Manual retry and cancel."""

from __future__ import annotations

import json
from typing import Any

import pytest
from engine_helpers import (
    NS,
    Fail,
    MakeEngine,
    Prune,
    claim_now,
    drain,
    fast_retries,
    gnode,
    register,
    run_states,
    statuses,
    upsert,
)

from exosphere_nb.engine.engine import Engine
from exosphere_nb.errors import BadRequestError, ConflictError, NotFoundError, StateTransitionError
from exosphere_nb.models import UnitesStrategyEnum


def fan(*values: str) -> Any:
    return lambda s: [{"y": v} for v in values]


def map_reduce(strategy: UnitesStrategyEnum = UnitesStrategyEnum.ALL_SUCCESS) -> list[Any]:
    return [
        gnode("a", "in", ["b"]),
        gnode("b", "${{ a.outputs.y }}"),
        gnode("u", "${{ b.outputs.y }}", unites="a", strategy=strategy),
    ]


def fail_on(value: str) -> Any:
    return lambda s: Fail(f"failed on {value}") if s.inputs["x"] == value else [{"y": s.inputs["x"] + "!"}]


async def _failed_map_reduce(engine: Engine, failing: str = "2") -> tuple[str, str]:
    """Run map_reduce where branch `failing` errors (no retries): returns (run_id, errored state id)."""
    register(engine)
    upsert(engine, "g", map_reduce())
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": fan("1", "2", "3"), "b": fail_on(failing)}) == "FAILED"
    [errored] = [s for s in run_states(engine, run_id, "b") if s["status"] == "ERRORED"]
    return run_id, errored["state_id"]


# -- manual retry ---------------------------------------------------------------------------------


async def test_manual_retry_creates_created_copy_and_marks_original_retry_created(engine: Engine) -> None:
    run_id, errored_id = await _failed_map_reduce(engine)
    res = engine.manual_retry(errored_id, "fanout-1")
    assert res["status"] == "CREATED"
    copy_id = res["id"]
    assert copy_id != errored_id
    await engine.committed()
    by_id = {s["state_id"]: s for s in run_states(engine, run_id, "b")}
    original, copy = by_id[errored_id], by_id[copy_id]
    assert original["status"] == "RETRY_CREATED"
    assert copy["status"] == "CREATED"
    assert copy["retry_count"] == 0
    assert copy["fanout_id"] == "fanout-1"
    assert (copy["inputs"], copy["parents"], copy["branch"]) == (
        original["inputs"],
        original["parents"],
        original["branch"],
    )
    [claimed] = await claim_now(engine)
    assert claimed.id == copy_id


async def test_manual_retry_of_retried_state_after_automatic_retries_resets_count(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a")], retry_policy=fast_retries(1))
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": lambda s: Fail()}) == "FAILED"
    last = run_states(engine, run_id, "a")[-1]
    assert (last["status"], last["retry_count"]) == ("ERRORED", 1)
    copy_id = engine.manual_retry(last["state_id"], "again")["id"]
    assert await drain(engine, run_id) == "SUCCESS"
    assert engine.get_state(copy_id)["retry_count"] == 0


async def test_manual_retry_reused_fanout_id_is_409_conflict(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", map_reduce(UnitesStrategyEnum.ALL_DONE))
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": fan("1", "2", "3"), "b": lambda s: Fail()}) == "FAILED"
    first, second, _ = [s["state_id"] for s in run_states(engine, run_id, "b")]
    engine.manual_retry(first, "same-id")
    with pytest.raises(ConflictError, match="same-id") as exc:
        engine.manual_retry(second, "same-id")
    assert exc.value.status_code == 409
    await engine.committed()
    assert statuses(engine, run_id, "b").count("ERRORED") == 2  # the refused retry changed nothing


async def test_manual_retry_reused_fanout_id_is_409_after_commit(engine: Engine) -> None:
    run_id, errored_id = await _failed_map_reduce(engine)
    copy = engine.manual_retry(errored_id, "f")["id"]
    assert await drain(engine, run_id, {"b": lambda s: Fail()}) == "FAILED"
    with pytest.raises(ConflictError):
        engine.manual_retry(copy, "f")


async def test_manual_retry_success_state_is_400(engine: Engine) -> None:
    run_id, _ = await _failed_map_reduce(engine)
    succeeded = next(s for s in run_states(engine, run_id, "b") if s["status"] == "SUCCESS")
    with pytest.raises(StateTransitionError, match="SUCCESS") as exc:
        engine.manual_retry(succeeded["state_id"], "f-ok")
    assert exc.value.status_code == 400


async def test_manual_retry_non_terminal_state_is_400(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", map_reduce())
    run_id = engine.trigger(NS, "g")["run_id"]
    await engine.committed()
    [created] = run_states(engine, run_id, "a")
    with pytest.raises(StateTransitionError, match="CREATED") as exc:
        engine.manual_retry(created["state_id"], "f1")
    assert exc.value.status_code == 400
    [a] = await claim_now(engine)
    with pytest.raises(StateTransitionError, match="QUEUED"):
        engine.manual_retry(a.id, "f2")
    # the refused attempts did not use their fanout ids
    engine.executed(a.id, [{"y": "1"}])
    [b] = await claim_now(engine)
    engine.errored(b.id, "x")
    assert engine.manual_retry(b.id, "f1")["status"] == "CREATED"


async def test_manual_retry_retry_created_state_is_400(engine: Engine) -> None:
    _run_id, errored_id = await _failed_map_reduce(engine)
    engine.manual_retry(errored_id, "f1")
    with pytest.raises(StateTransitionError, match="RETRY_CREATED"):
        engine.manual_retry(errored_id, "f2")


async def test_manual_retry_of_pruned_state(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": lambda s: Prune({"k": "v"})}) == "SUCCESS"
    [pruned] = run_states(engine, run_id, "a")
    copy_id = engine.manual_retry(pruned["state_id"], "p1")["id"]
    assert await drain(engine, run_id, {"a": fan("now")}) == "SUCCESS"
    assert engine.get_state(copy_id)["status"] == "SUCCESS"
    assert [s["inputs"] for s in run_states(engine, run_id, "b")] == [{"x": "now"}]


async def test_manual_retry_of_next_created_error_state(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": lambda s: [{}]}) == "FAILED"
    [nce] = run_states(engine, run_id, "a")
    assert nce["status"] == "NEXT_CREATED_ERROR"
    engine.manual_retry(nce["state_id"], "n1")
    assert await drain(engine, run_id, {"a": fan("fixed")}) == "SUCCESS"
    assert [s["inputs"] for s in run_states(engine, run_id, "b")] == [{"x": "fixed"}]


async def test_manual_retry_unknown_state_is_404(engine: Engine) -> None:
    with pytest.raises(NotFoundError):
        engine.manual_retry("0" * 24, "f")
    with pytest.raises(NotFoundError):
        engine.manual_retry("bogus", "f")


async def test_manual_retry_fanout_id_must_be_non_empty(engine: Engine) -> None:
    _run_id, errored_id = await _failed_map_reduce(engine)
    with pytest.raises(BadRequestError, match="fanout_id"):
        engine.manual_retry(errored_id, "  ")


async def test_manual_retry_unite_waiting_on_group_proceeds_after_run_failed(engine: Engine) -> None:
    run_id, errored_id = await _failed_map_reduce(engine)
    assert statuses(engine, run_id, "u") == []
    assert engine.run_summary(run_id)["status"] == "FAILED"
    engine.manual_retry(errored_id, "retry-branch-2")
    assert await drain(engine, run_id, {"b": fail_on("never")}) == "SUCCESS"
    [u] = run_states(engine, run_id, "u")
    assert json.loads(u["inputs"]["x"]) == ["1!", "2!", "3!"]  # the retried branch keeps its position
    assert engine.list_runs(NS, 1, 20)["runs"][0]["status"] == "SUCCESS"


async def test_manual_retry_unite_waiting_on_group_proceeds_while_run_active(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", map_reduce())
    engine.trigger(NS, "g")
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "1"}, {"y": "2"}])
    b1, b2 = await claim_now(engine)
    engine.errored(b1.id, "x")  # b2 still running: the run stays active
    await engine.committed()
    copy_id = engine.manual_retry(b1.id, "r1")["id"]
    engine.executed(b2.id, [{"y": "two"}])
    [copy] = await claim_now(engine)
    assert copy.id == copy_id
    engine.executed(copy.id, [{"y": "one"}])
    [u] = await claim_now(engine)
    assert json.loads(u.inputs["x"]) == ["one", "two"]


async def test_manual_retry_unite_proceeds_after_restart(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    run_id, errored_id = await _failed_map_reduce(engine)
    await engine.close()
    engine = await make_engine()
    engine.manual_retry(errored_id, "after-restart")
    assert await drain(engine, run_id, {"b": fail_on("never")}) == "SUCCESS"
    assert json.loads(run_states(engine, run_id, "u")[0]["inputs"]["x"]) == ["1!", "2!", "3!"]


async def test_manual_retry_failing_again_keeps_unite_unreleased(engine: Engine) -> None:
    run_id, errored_id = await _failed_map_reduce(engine)
    engine.manual_retry(errored_id, "r1")
    assert await drain(engine, run_id, {"b": lambda s: Fail()}) == "FAILED"
    assert statuses(engine, run_id, "u") == []


async def test_manual_retry_all_done_unite_not_duplicated(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", map_reduce(UnitesStrategyEnum.ALL_DONE))
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": fan("1", "2"), "b": fail_on("2")}) == "FAILED"
    assert statuses(engine, run_id, "u") == ["SUCCESS"]
    errored = next(s for s in run_states(engine, run_id, "b") if s["status"] == "ERRORED")
    engine.manual_retry(errored["state_id"], "r")
    assert await drain(engine, run_id) == "SUCCESS"
    assert statuses(engine, run_id, "u") == ["SUCCESS"]  # the group was already united once


# -- cancel run -----------------------------------------------------------------------------------


async def _running_fanout(engine: Engine) -> tuple[str, list[Any], list[Any]]:
    """a fanned out to 3 b; one b claimed (QUEUED), two CREATED. Returns (run_id, queued, created ids)."""
    register(engine)
    upsert(engine, "g", map_reduce(UnitesStrategyEnum.ALL_DONE))
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "1"}, {"y": "2"}, {"y": "3"}])
    await engine.committed()
    queued = engine.claim(NS, ["P"], 1)
    created = [s["state_id"] for s in run_states(engine, run_id, "b") if s["state_id"] != queued[0].id]
    return run_id, queued, created


async def test_cancel_run_cancels_created_and_queued_states(engine: Engine) -> None:
    run_id, _queued, _created = await _running_fanout(engine)
    res = engine.cancel_run(run_id)
    assert res["cancelled_count"] == 3
    assert await engine.wait_run(run_id, timeout=2) == "CANCELLED"
    assert statuses(engine, run_id, "b") == ["CANCELLED"] * 3
    assert statuses(engine, run_id, "a") == ["SUCCESS"] * 3  # finished states are kept as they were
    assert statuses(engine, run_id, "u") == []  # a cancelled run unites nothing, even ALL_DONE
    assert await claim_now(engine) == []


async def test_cancel_run_refuses_late_results(engine: Engine) -> None:
    run_id, queued, created = await _running_fanout(engine)
    engine.cancel_run(run_id)
    late = queued[0].id
    with pytest.raises(StateTransitionError, match="CANCELLED") as exc:
        engine.executed(late, [{"y": "late"}])
    assert exc.value.status_code == 400
    with pytest.raises(StateTransitionError):
        engine.errored(late, "late")
    with pytest.raises(StateTransitionError):
        engine.prune(late, {})
    with pytest.raises(StateTransitionError):
        engine.requeue_after(late, 10)
    await engine.committed()
    # also once the cancellation is on disk and the state left memory
    with pytest.raises(StateTransitionError, match="CANCELLED"):
        engine.executed(late, [{"y": "late"}])
    with pytest.raises(StateTransitionError, match="CANCELLED"):
        engine.executed(created[0], [{"y": "late"}])
    assert statuses(engine, run_id, "b") == ["CANCELLED"] * 3


async def test_cancel_run_status_cancelled(engine: Engine) -> None:
    run_id, _, _ = await _running_fanout(engine)
    engine.cancel_run(run_id)
    await engine.wait_run(run_id, timeout=2)
    assert engine.run_summary(run_id)["status"] == "CANCELLED"
    [listed] = engine.list_runs(NS, 1, 20)["runs"]
    assert listed["status"] == "CANCELLED"
    # cancelled states count in none of the buckets but the total
    assert (listed["success_count"], listed["pending_count"], listed["errored_count"], listed["retried_count"]) == (
        3,
        0,
        0,
        0,
    )
    assert listed["total_count"] == 6
    assert engine.run_graph(run_id)["execution_summary"]["CANCELLED"] == 3


async def test_cancel_run_cancels_delayed_retries(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a")], retry_policy=fast_retries(3, backoff_ms=60_000))
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.errored(a.id, "x")  # the retry waits a minute
    await engine.committed()
    engine.cancel_run(run_id)
    assert await engine.wait_run(run_id, timeout=2) == "CANCELLED"
    assert statuses(engine, run_id, "a") == ["RETRY_CREATED", "CANCELLED"]


async def test_cancel_run_before_first_commit(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a")])
    run_id = engine.trigger(NS, "g")["run_id"]
    engine.cancel_run(run_id)  # the root is not even committed yet
    assert await engine.wait_run(run_id, timeout=2) == "CANCELLED"
    assert await claim_now(engine) == []
    assert statuses(engine, run_id, "a") == ["CANCELLED"]


async def test_cancel_run_of_finished_run_changes_nothing(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a")])
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id) == "SUCCESS"
    res = engine.cancel_run(run_id)
    assert res["status"] == "SUCCESS" and res["cancelled_count"] == 0
    await engine.committed()
    assert engine.run_summary(run_id)["status"] == "SUCCESS"


async def test_cancel_run_unknown_is_404(engine: Engine) -> None:
    with pytest.raises(NotFoundError):
        engine.cancel_run("00000000-0000-4000-8000-000000000000")


async def test_cancel_run_leaves_other_runs_alone(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a")])
    doomed = engine.trigger(NS, "g")["run_id"]
    kept = engine.trigger(NS, "g")["run_id"]
    await engine.committed()
    engine.cancel_run(doomed)
    [s] = await claim_now(engine)
    assert s.run.run_id == kept
    engine.executed(s.id, [{"y": "1"}])
    assert await engine.wait_run(kept, timeout=2) == "SUCCESS"


async def test_manual_retry_of_cancelled_state(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    run_id = engine.trigger(NS, "g")["run_id"]
    await engine.committed()
    engine.cancel_run(run_id)
    assert await engine.wait_run(run_id, timeout=2) == "CANCELLED"
    [cancelled] = run_states(engine, run_id, "a")
    copy_id = engine.manual_retry(cancelled["state_id"], "resume")["id"]
    assert await drain(engine, run_id) == "SUCCESS"
    assert engine.get_state(copy_id)["status"] == "SUCCESS"
    assert statuses(engine, run_id, "a") == ["RETRY_CREATED", "SUCCESS"]
    assert statuses(engine, run_id, "b") == ["SUCCESS"]


async def test_manual_retry_of_unite_target_starts_a_new_execution(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", map_reduce())
    run_id = engine.trigger(NS, "g")["run_id"]
    assert await drain(engine, run_id, {"a": lambda s: [{}]}) == "FAILED"  # b cannot render a.outputs.y
    [nce] = run_states(engine, run_id, "a")
    assert nce["status"] == "NEXT_CREATED_ERROR"
    assert statuses(engine, run_id, "u") == []
    engine.manual_retry(nce["state_id"], "again")
    assert await drain(engine, run_id, {"a": fan("1", "2"), "b": fail_on("never")}) == "SUCCESS"
    [u] = run_states(engine, run_id, "u")
    assert json.loads(u["inputs"]["x"]) == ["1!", "2!"]


async def test_results_for_another_namespace_are_not_found(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a")])
    engine.trigger(NS, "g")
    [a] = await claim_now(engine)
    for call in (
        lambda: engine.executed(a.id, [{"y": "1"}], namespace="other"),
        lambda: engine.errored(a.id, "x", namespace="other"),
        lambda: engine.prune(a.id, {}, namespace="other"),
        lambda: engine.requeue_after(a.id, 5, namespace="other"),
        lambda: engine.get_secrets(a.id, namespace="other"),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert a.status == "QUEUED"
