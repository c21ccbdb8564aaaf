"""The Runtime over HTTP: batched claims with prefetch, no fixed sleep while work flows (and a
polling back-off when idle), results reported without holding workers up, leases renewed for
nodes that run longer than the server's lease."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import http_client_helpers as helpers
from http_client_helpers import KEY, NODES, NS, Fault, Hit, Served, expected_total, fan_graph, until

from exosphere_nb import Runtime, RuntimeHandle, StateManager, StoreConfigModel


@contextlib.asynccontextmanager
async def running(served: Served, **options: Any) -> AsyncIterator[StateManager]:
    """A runtime of the fan graph's nodes against `served` (stopped afterwards), and a StateManager
    once the graph is stored."""
    handle = Runtime(NS, "http-rt", NODES, state_manager_uri=served.url, key=KEY, **options).start()
    assert isinstance(handle, RuntimeHandle)
    sm = StateManager(NS, state_manager_uri=served.url, key=KEY)
    try:

        async def registered() -> bool:
            return {n["name"] for n in await sm.list_nodes()} >= {"Fan", "Item", "Sum"}

        await until(registered, 10, "the runtime to register its nodes")
        await sm.upsert_graph("fan", fan_graph(), {}, store_config=StoreConfigModel(required_keys=["n", "pause"]))
        yield sm
    finally:
        handle.stop(grace=2)
        await sm._transport.aclose()


async def _run(sm: StateManager, n: int, pause: float, timeout: float) -> dict[str, Any]:
    run = await sm.trigger("fan", store={"n": str(n), "pause": str(pause)})
    status = await sm.wait(run["run_id"], timeout=timeout)
    assert status["status"] == "SUCCESS", status
    outputs = await sm.run_outputs(run["run_id"])
    assert outputs["sum"] == [{"total": expected_total(n)}]
    return status


async def test_work_flows_without_a_fixed_sleep_and_claims_come_in_batches(serve: Callable[..., Served]) -> None:
    served = serve()
    async with running(served, poll_interval=1, workers=4, batch_size=16) as sm:
        started = time.monotonic()
        await _run(sm, 200, 0, timeout=30)
        took = time.monotonic() - started
        warm = served.recorder.connections()
        await _run(sm, 200, 0, timeout=30)
    # a poll_interval sleep between claims would take 200 / 16 batches x 1 s = 12.5 s and more
    assert took < 5, f"a 200-item run took {took:.1f} s"
    claimed = [len(h.json()["states"]) for h in served.recorder.paths("/states/enqueue") if h.status == 200]
    assert sum(claimed) == 2 * (200 + 1 + 1)
    assert max(claimed) > 1  # prefetch: several states per claim
    assert sum(1 for n in claimed if n) <= 200  # far fewer claims that found work than states
    # one bounded pool per client: the second run reused the first run's connections
    assert len(warm) <= 32 + 1, len(warm)
    assert len(served.recorder.connections() - warm) <= 1, served.recorder.connections() - warm


async def test_an_idle_runtime_backs_off_to_poll_interval_and_still_picks_up_work(
    serve: Callable[..., Served],
) -> None:
    served = serve()
    async with running(served, poll_interval=1, workers=2) as sm:
        await _run(sm, 3, 0, timeout=20)
        idle_from = time.monotonic()
        await asyncio.sleep(2.0)  # the observation window: nothing to do for two seconds
        polls = served.recorder.paths("/states/enqueue", since=idle_from, until=idle_from + 2.0)
        assert 1 <= len(polls) <= 15, f"{len(polls)} claims in 2 idle seconds"
        # the last gaps are about poll_interval: it backed off, but kept polling
        gaps = [b.start - a.start for a, b in itertools.pairwise(polls)]
        assert gaps and max(gaps) >= 0.5, gaps
        # work arriving after the idle period is picked up within about poll_interval
        started = time.monotonic()
        await _run(sm, 3, 0, timeout=20)
        assert time.monotonic() - started < 3.0


def _slow_reports(hit: Hit) -> Fault | None:
    if hit.path.endswith(("/executed", "/states/results")):
        return Fault(delay=0.25)
    return None


async def test_slow_result_reports_do_not_hold_workers_up(serve: Callable[..., Served]) -> None:
    served = serve()
    served.recorder.fault = _slow_reports
    async with running(served, poll_interval=1, workers=4, batch_size=16) as sm:
        helpers.EXECUTED_AT.clear()
        await _run(sm, 60, 0, timeout=30)
    spread = max(helpers.EXECUTED_AT) - min(helpers.EXECUTED_AT)
    assert len(helpers.EXECUTED_AT) == 60
    # 60 reports of 0.25 s each, waited for by 4 workers in turn, would spread them over >= 3.75 s
    assert spread < 2.0, f"items executed over {spread:.2f} s"


async def test_leases_of_long_running_nodes_are_renewed(serve: Callable[..., Served]) -> None:
    served = serve(lease_ms=600)
    async with running(served, poll_interval=1, workers=4) as sm:
        status = await _run(sm, 2, 1.5, timeout=30)  # each item runs 1.5 s: 2.5 leases
    assert status["counts"]["RETRY_CREATED"] == 0 and status["counts"]["ERRORED"] == 0, status
    beats = [h for h in served.recorder.paths("/states/heartbeat") if h.status == 200]
    assert len(beats) >= 2
    assert all(h.json()["renewed"] >= 1 for h in beats[:2])


async def test_leases_of_prefetched_states_are_renewed_while_they_wait(serve: Callable[..., Served]) -> None:
    """One worker, a batch of 8: the last claimed item waits ~1.6 s for its turn, 2.7 leases."""
    served = serve(lease_ms=600)
    async with running(served, poll_interval=1, workers=1, batch_size=8) as sm:
        helpers.EXECUTED_AT.clear()
        status = await _run(sm, 5, 0.4, timeout=30)
    assert status["counts"]["RETRY_CREATED"] == 0, status
    assert len(helpers.EXECUTED_AT) == 5  # each item ran once
