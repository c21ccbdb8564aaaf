"""Concurrency: many claimers and simultaneous results (semantics.md: claim exactly once, one unite per execution)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter

from engine_helpers import NS, claim_now, drain, gnode, register, run_states, statuses, upsert

from exosphere_nb.engine.engine import Engine
from exosphere_nb.engine.records import State


async def test_claim_concurrent_callers_each_state_claimed_once(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a")])
    total = 300
    triggered: list[str] = []
    claimed: list[State] = []
    rng = random.Random(7)

    async def producer() -> None:
        for i in range(total):
            triggered.append(engine.trigger(NS, "g", inputs={"x": str(i)})["run_id"])
            if i % 17 == 0:
                await engine.committed()
            elif i % 5 == 0:
                await asyncio.sleep(0)
        await engine.committed()

    async def claimer(seed: int) -> None:
        local = random.Random(seed)
        deadline = asyncio.get_running_loop().time() + 5
        while len(claimed) < total:
            got = engine.claim(NS, ["P"], local.randint(1, 7))
            claimed.extend(got)
            for s in got:
                if local.random() < 0.5:
                    engine.executed(s.id, [{"y": s.inputs["x"]}])
            await asyncio.sleep(0 if got else 0.001)
            assert asyncio.get_running_loop().time() < deadline, f"claimed {len(claimed)} of {total}"

    await asyncio.gather(producer(), *(claimer(rng.randint(0, 10**6)) for _ in range(8)))
    ids = Counter(s.id for s in claimed)
    assert len(ids) == total
    assert max(ids.values()) == 1
    assert {s.run.run_id for s in claimed} == set(triggered)
    assert await claim_now(engine) == []


async def test_claim_concurrent_drainers_complete_a_fanout_with_unite(engine: Engine) -> None:
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
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": f"{i:03d}"} for i in range(120)])
    handled: Counter[str] = Counter()

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while engine.run_summary(run_id)["status"] == "PENDING":
            await engine.committed()
            for s in engine.claim(NS, ["P"], rng.randint(1, 9)):
                handled[s.id] += 1
                await asyncio.sleep(0)  # another worker may run in between claim and result
                engine.executed(s.id, [{"y": s.inputs["x"]}])
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(6))), timeout=10)
    assert max(handled.values()) == 1
    assert await engine.wait_run(run_id, timeout=2) == "SUCCESS"
    [u] = run_states(engine, run_id, "u")
    assert json.loads(u["inputs"]["x"]) == [f"{i:03d}" for i in range(120)]


async def test_unite_exactly_once_when_branches_finish_together_with_claims_interleaved(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("r", "in", ["a"]),
            gnode("a", "${{ r.outputs.y }}", ["b"]),
            gnode("b", "${{ a.outputs.y }}"),
            gnode("u", "${{ b.outputs.y }}", unites="a"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    [r] = await claim_now(engine)
    engine.executed(r.id, [{"y": "p"}, {"y": "q"}])
    for a in await claim_now(engine):
        engine.executed(a.id, [{"y": f"{a.inputs['x']}{i}"} for i in range(10)])
    bs = await claim_now(engine)
    assert len(bs) == 20
    random.Random(3).shuffle(bs)
    # all results of both groups in one synchronous burst, claims in between: no commit anywhere
    early: list[State] = []
    for b in bs:
        engine.executed(b.id, [{"y": b.inputs["x"]}])
        early += engine.claim(NS, ["P"], 5)  # with eager hand-off a unite may be claimable at once
    assert all(s.node.identifier == "u" for s in early)
    await engine.committed()
    assert sorted(statuses(engine, run_id, "u")) == sorted(["QUEUED"] * len(early) + ["CREATED"] * (2 - len(early)))
    for u in early:
        engine.executed(u.id, [{"y": "r"}])
    assert await drain(engine, run_id) == "SUCCESS"
    assert sorted(json.loads(u["inputs"]["x"])[0] for u in run_states(engine, run_id, "u")) == ["p0", "q0"]
