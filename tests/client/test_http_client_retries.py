"""Retries with backoff on connection errors and 5xx for calls safe to repeat; a trigger (not
idempotent) is never repeated once it may have been applied; one pooled connection per client."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from http_client_helpers import KEY, NODES, NS, Fault, Hit, Served, fan_graph

from exosphere_nb import StateManager, StoreConfigModel
from exosphere_nb.client.http import HttpTransport
from exosphere_nb.errors import ServerError, TransportError
from exosphere_nb.node import node_schema


async def _with_graph(url: str) -> StateManager:
    transport = HttpTransport(NS, url, KEY)
    try:
        await transport.register_nodes("retries-test", [node_schema(n, NS) for n in NODES])
    finally:
        await transport.aclose()
    sm = StateManager(NS, state_manager_uri=url, key=KEY)
    await sm.upsert_graph("fan", fan_graph(), {}, store_config=StoreConfigModel(required_keys=["n", "pause"]))
    return sm


def _first(k: int, suffix: str, fault: Fault) -> Callable[[Hit], Fault | None]:
    """Apply `fault` to the first k requests whose path ends with `suffix`."""
    seen = [0]

    def decide(hit: Hit) -> Fault | None:
        if hit.path.endswith(suffix):
            seen[0] += 1
            if seen[0] <= k:
                return fault
        return None

    return decide


async def _runs(url: str) -> int:
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": KEY}) as c:
        return (await c.get(f"/v0/namespace/{NS}/runs/1/50")).json()["total"]


async def test_reads_are_retried_with_backoff_through_5xx(serve: Callable[..., Served]) -> None:
    served = serve()
    served.recorder.fault = _first(2, "/graphs/", Fault(status=503))
    sm = StateManager(NS, state_manager_uri=served.url, key=KEY)
    try:
        assert await sm.list_graphs() == []
    finally:
        await sm._transport.aclose()
    hits = served.recorder.paths("/graphs/")
    assert [h.status for h in hits] == [503, 503, 200]
    gaps = [b.start - a.start for a, b in itertools.pairwise(hits)]
    assert all(gap >= 0.04 for gap in gaps), gaps  # it backed off before each retry
    assert sum(gaps) < 2.0, gaps


async def test_a_server_failing_for_good_gives_a_server_error_after_bounded_retries(
    serve: Callable[..., Served],
) -> None:
    served = serve()
    served.recorder.fault = _first(100, "/graphs/", Fault(status=502))
    transport = HttpTransport(NS, served.url, KEY, retries=3)
    started = time.monotonic()
    try:
        with pytest.raises(ServerError) as err:
            await transport.list_graphs()
    finally:
        await transport.aclose()
    assert "injected 502" in err.value.detail and err.value.status_code == 502
    assert len(served.recorder.paths("/graphs/")) == 4  # the first try and 3 retries
    assert time.monotonic() - started < 5


async def test_a_trigger_answered_with_5xx_is_not_repeated(serve: Callable[..., Served]) -> None:
    served = serve()
    sm = await _with_graph(served.url)
    served.recorder.fault = _first(1, "/trigger", Fault(status=503))
    try:
        with pytest.raises(ServerError):
            await sm.trigger("fan", store={"n": "1", "pause": "0"})
    finally:
        await sm._transport.aclose()
    assert len(served.recorder.paths("/trigger")) == 1


@pytest.mark.parametrize("fault", [Fault(cut=True), Fault(hang=1.5)], ids=["connection-cut", "read-timeout"])
async def test_a_trigger_that_may_have_been_applied_is_not_repeated(serve: Callable[..., Served], fault: Fault) -> None:
    served = serve()
    await (await _with_graph(served.url))._transport.aclose()
    served.recorder.fault = _first(1, "/trigger", fault)
    transport = HttpTransport(NS, served.url, KEY, timeout=0.5)
    try:
        with pytest.raises(TransportError) as err:
            await transport.trigger("fan", {}, {"n": "1", "pause": "0"}, 0)
    finally:
        await transport.aclose()
    assert served.url in err.value.detail
    expected = "RemoteProtocolError" if fault.cut else "ReadTimeout"
    assert expected in err.value.detail, err.value.detail
    assert len(served.recorder.paths("/trigger")) == 1  # sent once, never again
    assert await _runs(served.url) == 1  # the server applied it exactly once


@pytest.mark.parametrize("fault", [Fault(cut=True), Fault(hang=1.5)], ids=["connection-cut", "read-timeout"])
async def test_a_read_without_an_answer_is_retried(serve: Callable[..., Served], fault: Fault) -> None:
    served = serve()
    served.recorder.fault = _first(1, "/graphs/", fault)
    transport = HttpTransport(NS, served.url, KEY, timeout=0.5)
    try:
        assert (await transport.list_graphs())["templates"] == []
    finally:
        await transport.aclose()
    assert len(served.recorder.paths("/graphs/")) == 2


async def test_a_trigger_sent_while_the_server_starts_waits_for_it_and_lands_once(
    serve: Callable[..., Served],
) -> None:
    """Connection refused means nothing was sent: even a trigger is safe to try again."""
    first = serve()
    await (await _with_graph(first.url))._transport.aclose()
    first.stop()
    late = serve(start=False, db=first.db)  # the same database, served again a moment later
    starter = threading.Timer(0.2, late.start)
    transport = HttpTransport(NS, late.url, KEY)
    starter.start()
    asked = time.monotonic()
    try:
        run = await transport.trigger("fan", {}, {"n": "1", "pause": "0"}, 0)
    finally:
        starter.join(20)
        await transport.aclose()
    assert run["status"] == "CREATED"
    (landed,) = late.recorder.paths("/trigger")
    assert landed.start - asked >= 0.15  # the first attempts were refused: the server was not up yet
    assert await _runs(late.url) == 1


async def test_one_pooled_connection_serves_many_sequential_calls(serve: Callable[..., Served]) -> None:
    served = serve()
    sm = await _with_graph(served.url)
    start = time.monotonic()
    try:
        run = await sm.trigger("fan", store={"n": "2", "pause": "0"})
        for _ in range(10):
            await sm.list_graphs()
            await sm.get_graph("fan")
            await sm.run_status(run["run_id"])
            await sm.list_runs()
    finally:
        await sm._transport.aclose()
    calls = [h for h in served.recorder.hits if h.start >= start]
    assert len(calls) >= 41
    assert len({h.client_port for h in calls}) == 1, sorted({h.client_port for h in calls})
