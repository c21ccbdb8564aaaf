"""semantics.md — Cron triggers, through the engine (the cron arithmetic itself: test_cron.py).

The engine's `_cron_tick(now_ms)` is what its timer calls; giving it a controlled `now` checks what fires
without waiting for the wall clock. Schedules are daily at midnight UTC so the real timer stays idle.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
from engine_helpers import NS, MakeEngine, claim_now, count, gnode, register, rows, run_states, upsert

from exosphere_nb.engine.engine import Engine
from exosphere_nb.models import StoreConfigModel

DAY_MS = 24 * 3600 * 1000
DAILY = "0 0 * * *"


def _now() -> int:
    return int(time.time() * 1000)


async def _cron_graph(engine: Engine, expression: str = DAILY) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [gnode("a", "${{ store.k }}")],
        store_config=StoreConfigModel(default_values={"k": "default-k"}),
        triggers=[{"type": "CRON", "value": {"expression": expression}}],
    )
    await engine.committed()


async def _runs_after_tick(engine: Engine, now: int) -> int:
    before = count(engine, "select count(*) from runs")
    engine._cron_tick(now)
    await engine.committed()
    return count(engine, "select count(*) from runs") - before


async def test_cron_missed_window_fires_once_not_a_burst(engine: Engine) -> None:
    await _cron_graph(engine)
    now = _now()
    assert await _runs_after_tick(engine, now + 10 * DAY_MS) == 1  # ten missed midnights: one run
    assert await _runs_after_tick(engine, now + 10 * DAY_MS) == 0
    assert await _runs_after_tick(engine, now + 10 * DAY_MS + 3600_000) == 0
    assert await _runs_after_tick(engine, now + 11 * DAY_MS) == 1


async def test_cron_every_minute_fires_once_per_tick_window(engine: Engine) -> None:
    await _cron_graph(engine, "*/5 * * * *")
    now = _now()
    assert await _runs_after_tick(engine, now + 3 * 3600_000) == 1  # 36 missed occurrences
    assert await _runs_after_tick(engine, now + 3 * 3600_000 + 5 * 60_000) == 1


async def test_cron_new_schedule_does_not_fire_for_the_past(engine: Engine) -> None:
    await _cron_graph(engine, "* * * * *")
    assert await _runs_after_tick(engine, _now()) == 0


async def test_cron_run_has_empty_inputs_and_store_defaults(engine: Engine) -> None:
    await _cron_graph(engine)
    assert await _runs_after_tick(engine, _now() + 2 * DAY_MS) == 1
    [run] = engine.list_runs(NS, 1, 20)["runs"]
    [root] = run_states(engine, run["run_id"])
    assert root["inputs"] == {"x": "default-k"}
    assert rows(engine, "select key, value from store where run_id = ?", run["run_id"]) == [
        {"key": "k", "value": "default-k"}
    ]
    [s] = await claim_now(engine)
    assert s.run.run_id == run["run_id"]


async def test_cron_last_fire_recorded(engine: Engine) -> None:
    await _cron_graph(engine)
    fire_at = _now() + 3 * DAY_MS
    await _runs_after_tick(engine, fire_at)
    [trigger] = rows(engine, "select expression, epoch_ms(last_fired_at) as last from triggers")
    assert trigger["expression"] == DAILY
    assert trigger["last"] == fire_at - fire_at % DAY_MS  # the latest missed midnight


async def test_cron_last_fire_survives_restart(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    await _cron_graph(engine)
    now = _now()
    assert await _runs_after_tick(engine, now + 5 * DAY_MS) == 1
    await engine.close()
    engine = await make_engine()
    assert await _runs_after_tick(engine, now + 5 * DAY_MS) == 0
    assert await _runs_after_tick(engine, now + 6 * DAY_MS) == 1


async def test_cron_trigger_claimed_by_dead_process_is_recovered(make_engine: MakeEngine, db_path: Path) -> None:
    engine = await make_engine()
    await _cron_graph(engine)
    await engine.close()
    # a process that died mid-fire left its claim on the trigger
    con = duckdb.connect(str(db_path))
    con.execute("update cron_triggers set claimed_until_ms = ?", [_now() + 365 * DAY_MS])
    con.close()
    engine = await make_engine()
    assert await _runs_after_tick(engine, _now() + 2 * DAY_MS) == 1


async def test_cron_removed_trigger_stops_firing(engine: Engine) -> None:
    await _cron_graph(engine)
    upsert(engine, "g", [gnode("a", "x")])
    await engine.committed()
    assert count(engine, "select count(*) from triggers") == 0
    assert await _runs_after_tick(engine, _now() + 2 * DAY_MS) == 0


async def test_cron_upsert_keeps_last_fire_of_unchanged_expression(engine: Engine) -> None:
    await _cron_graph(engine)
    now = _now()
    assert await _runs_after_tick(engine, now + 2 * DAY_MS) == 1
    await _cron_graph(engine)  # the same schedule again
    assert await _runs_after_tick(engine, now + 2 * DAY_MS) == 0
