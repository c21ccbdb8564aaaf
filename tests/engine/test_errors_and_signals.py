"""semantics.md — Errors and retries; Signals."""

from __future__ import annotations

import asyncio

import pytest
from engine_helpers import (
    NS,
    Prune,
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
from exosphere_nb.errors import BadRequestError, StateTransitionError
from exosphere_nb.models import RetryPolicyModel, RetryStrategyEnum

TRACEBACK = 'Traceback (most recent call last):\n  File "node.py", line 3, in execute\nValueError: bad ünïcode'


async def _queued_b(engine: Engine, policy: RetryPolicyModel) -> tuple[str, object]:
    """a -> b with b claimed; returns (run_id, b)."""
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}")], retry_policy=policy)
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "A"}])
    [b] = await claim_now(engine)
    return run_id, b


# -- errors and retries ---------------------------------------------------------------------------


async def test_errored_below_max_retries_creates_retry_state(engine: Engine) -> None:
    run_id, b = await _queued_b(engine, fast_retries(2))
    res = engine.errored(b.id, "first failure")
    assert res == {"status": "ERRORED", "retry_created": True}
    await engine.committed()
    original, retry = run_states(engine, run_id, "b")
    assert original["state_id"] == b.id
    assert original["status"] == "RETRY_CREATED"
    assert original["error"] == "first failure"
    assert retry["status"] == "CREATED"
    assert retry["retry_count"] == 1
    assert retry["inputs"] == original["inputs"] == {"x": "A"}
    assert retry["parents"] == original["parents"]
    assert retry["branch"] == original["branch"]


async def test_errored_at_max_retries_is_errored(engine: Engine) -> None:
    run_id, b = await _queued_b(engine, fast_retries(2))
    engine.errored(b.id, "1")
    [r1] = await claim_within(engine)
    assert engine.errored(r1.id, "2") == {"status": "ERRORED", "retry_created": True}
    [r2] = await claim_within(engine)
    assert r2.retry_count == 2
    assert engine.errored(r2.id, "3") == {"status": "ERRORED", "retry_created": False}
    assert await engine.wait_run(run_id, timeout=2) == "FAILED"
    assert statuses(engine, run_id, "b") == ["RETRY_CREATED", "RETRY_CREATED", "ERRORED"]
    assert [s["retry_count"] for s in run_states(engine, run_id, "b")] == [0, 1, 2]
    assert [s["error"] for s in run_states(engine, run_id, "b")] == ["1", "2", "3"]


async def test_errored_with_zero_max_retries_is_errored_at_once(engine: Engine) -> None:
    run_id, b = await _queued_b(engine, fast_retries(0))
    assert engine.errored(b.id, "x") == {"status": "ERRORED", "retry_created": False}
    assert await engine.wait_run(run_id, timeout=2) == "FAILED"
    assert statuses(engine, run_id, "b") == ["ERRORED"]


async def test_errored_retry_succeeds_run_succeeds(engine: Engine) -> None:
    run_id, b = await _queued_b(engine, fast_retries(1))
    engine.errored(b.id, "transient")
    [retry] = await claim_within(engine)
    engine.executed(retry.id, [{"y": "ok"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"
    listed = engine.list_runs(NS, 1, 20)["runs"][0]
    assert (listed["success_count"], listed["retried_count"], listed["errored_count"]) == (2, 1, 0)


async def test_errored_error_text_is_stored_in_full(engine: Engine) -> None:
    run_id, b = await _queued_b(engine, fast_retries(0))
    engine.errored(b.id, TRACEBACK)
    await engine.committed()
    assert run_states(engine, run_id, "b")[0]["error"] == TRACEBACK
    assert engine.get_state(b.id)["error"] == TRACEBACK


@pytest.mark.parametrize(
    ("strategy", "factor", "expected"),
    [
        (RetryStrategyEnum.FIXED, 60, [60, 60]),
        (RetryStrategyEnum.LINEAR, 40, [40, 80]),
        (RetryStrategyEnum.EXPONENTIAL, 30, [30, 90]),
    ],
)
async def test_errored_retry_enqueue_after_follows_policy(
    engine: Engine, strategy: RetryStrategyEnum, factor: int, expected: list[int]
) -> None:
    policy = RetryPolicyModel(max_retries=2, strategy=strategy, backoff_factor=factor, exponent=3)
    run_id, b = await _queued_b(engine, policy)
    loop = asyncio.get_running_loop()
    current = b
    for attempt, delay in enumerate(expected, start=1):
        engine.errored(current.id, f"failure {attempt}")
        errored_at = loop.time()
        assert await claim_now(engine) == []  # not before the delay
        await engine.committed()
        states = run_states(engine, run_id, "b")
        failed, retry = states[-2], states[-1]
        assert retry["retry_count"] == attempt
        assert retry["enqueue_after_ms"] - failed["updated_ms"] == delay
        [current] = await claim_within(engine)
        assert loop.time() - errored_at >= delay / 1000 - 0.01
        assert current.id == retry["state_id"]


async def test_errored_max_delay_caps_the_policy(engine: Engine) -> None:
    policy = RetryPolicyModel(
        max_retries=1, strategy=RetryStrategyEnum.EXPONENTIAL, backoff_factor=60_000, max_delay=20
    )
    run_id, b = await _queued_b(engine, policy)
    engine.errored(b.id, "x")
    await engine.committed()
    failed, retry = run_states(engine, run_id, "b")
    assert retry["enqueue_after_ms"] - failed["updated_ms"] == 20


async def test_errored_requires_string_error(engine: Engine) -> None:
    _run_id, b = await _queued_b(engine, fast_retries(0))
    with pytest.raises(BadRequestError, match="string"):
        engine.errored(b.id, 42)  # type: ignore[arg-type]


async def test_errored_twice_is_refused(engine: Engine) -> None:
    run_id, b = await _queued_b(engine, fast_retries(3))
    engine.errored(b.id, "x")
    with pytest.raises(StateTransitionError):
        engine.errored(b.id, "again")
    await engine.committed()
    assert len(run_states(engine, run_id, "b")) == 2  # one retry, not two


# -- signals --------------------------------------------------------------------------------------


async def test_prune_ends_branch_and_keeps_data(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    run_id = engine.trigger(NS, "g")["run_id"]
    [a] = await claim_now(engine)
    res = engine.prune(a.id, {"reason": "nothing to do", "n": 3})
    assert res["status"] == "PRUNED"
    assert "enqueue_after" in res
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"  # counts as success
    [state] = run_states(engine, run_id)
    assert state["status"] == "PRUNED"
    assert state["outputs"] == {"reason": "nothing to do", "n": 3}
    assert statuses(engine, run_id, "b") == []
    listed = engine.list_runs(NS, 1, 20)["runs"][0]
    assert (listed["success_count"], listed["errored_count"], listed["status"]) == (1, 0, "SUCCESS")


async def test_prune_in_one_branch_leaves_others_running(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}", ["c"]), gnode("c")])
    run_id = engine.trigger(NS, "g")["run_id"]
    status = await drain(
        engine,
        run_id,
        {
            "a": lambda s: [{"y": "keep"}, {"y": "drop"}],
            "b": lambda s: Prune({"why": "drop"}) if s.inputs["x"] == "drop" else [{"y": "kept"}],
        },
    )
    assert status == "SUCCESS"
    assert sorted(statuses(engine, run_id, "b")) == ["PRUNED", "SUCCESS"]
    assert statuses(engine, run_id, "c") == ["SUCCESS"]


async def test_prune_only_from_queued(engine: Engine) -> None:
    _run_id, b = await _queued_b(engine, fast_retries(0))
    engine.prune(b.id, {})
    with pytest.raises(StateTransitionError):
        engine.prune(b.id, {})
    with pytest.raises(BadRequestError, match="object"):
        engine.prune("0" * 24, ["not", "a", "dict"])  # type: ignore[arg-type]


async def test_requeue_after_back_to_created_with_enqueue_after(engine: Engine) -> None:
    run_id, b = await _queued_b(engine, fast_retries(0))
    loop = asyncio.get_running_loop()
    res = engine.requeue_after(b.id, 120)
    requeued_at = loop.time()
    assert res["status"] == "CREATED"
    await engine.committed()
    [state] = run_states(engine, run_id, "b")
    assert state["status"] == "CREATED"
    assert res["enqueue_after"] == state["enqueue_after_ms"] == state["updated_ms"] + 120  # absolute epoch ms
    assert state["retry_count"] == 0
    assert await claim_now(engine) == []
    [again] = await claim_within(engine)
    assert loop.time() - requeued_at >= 0.11
    assert again.id == b.id  # the same state, not a copy
    assert again.retry_count == 0
    engine.executed(again.id, [{"y": "later"}])
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"
    assert len(run_states(engine, run_id, "b")) == 1


async def test_requeue_after_keeps_retry_count(engine: Engine) -> None:
    run_id, b = await _queued_b(engine, fast_retries(3))
    engine.errored(b.id, "x")
    [retry] = await claim_within(engine)
    assert retry.retry_count == 1
    engine.requeue_after(retry.id, 20)
    [again] = await claim_within(engine)
    assert again.id == retry.id and again.retry_count == 1
    await engine.committed()
    assert run_states(engine, run_id, "b")[-1]["retry_count"] == 1


async def test_requeue_after_delay_must_be_positive_int(engine: Engine) -> None:
    _run_id, b = await _queued_b(engine, fast_retries(0))
    for bad in (0, -5, 1.5, True, "10"):
        with pytest.raises(BadRequestError, match="enqueue_after"):
            engine.requeue_after(b.id, bad)  # type: ignore[arg-type]
    assert b.status == "QUEUED"


async def test_requeue_after_only_from_queued(engine: Engine) -> None:
    _run_id, b = await _queued_b(engine, fast_retries(0))
    engine.requeue_after(b.id, 50)
    with pytest.raises(StateTransitionError, match="CREATED"):
        engine.requeue_after(b.id, 50)
