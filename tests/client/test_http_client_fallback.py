"""Against a plain-v0 server (the official state manager speaks no extensions), the client falls
back on v0 routes alone: status, wait, outputs and unfiltered listing work; the runtime runs
without heartbeats; what v0 cannot do fails with a clear BadRequestError."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from http_client_helpers import KEY, NODES, NS, Served, expected_total, fan_graph, until

from exosphere_nb import Runtime, RuntimeHandle, StateManager, StoreConfigModel
from exosphere_nb.client.http import HttpTransport
from exosphere_nb.errors import BadRequestError, NotFoundError

EXTENSION_PATHS = ("/capabilities", "/heartbeat", "/release", "/results", "/summary", "/wait", "/outputs", "/cancel")


@pytest.fixture
def plain(serve: Callable[..., Served]) -> Served:
    return serve(extensions=False)


@pytest.fixture
async def runtime(plain: Served) -> AsyncIterator[RuntimeHandle]:
    # inside a running loop, start() returns a handle at once (the runtime runs on the background loop)
    handle = Runtime(NS, "plain-rt", NODES, state_manager_uri=plain.url, key=KEY, workers=4).start()
    assert isinstance(handle, RuntimeHandle)
    yield handle
    handle.stop(grace=2)


async def test_a_plain_v0_server_has_no_capabilities(plain: Served) -> None:
    transport = HttpTransport(NS, plain.url, KEY)
    try:
        assert await transport.capabilities() == {}
        assert not await transport.has("heartbeat")
        await transport.capabilities()  # asked once, remembered
    finally:
        await transport.aclose()
    assert [h.status for h in plain.recorder.paths("/capabilities")] == [404]


async def test_state_manager_and_runtime_work_against_plain_v0(plain: Served, runtime: RuntimeHandle) -> None:
    sm = StateManager(NS, state_manager_uri=plain.url, key=KEY)
    try:
        await until(lambda: _registered(sm), 10, "the runtime to register its nodes")
        await sm.upsert_graph("fan", fan_graph(), {}, store_config=StoreConfigModel(required_keys=["n", "pause"]))
        run = await sm.trigger("fan", store={"n": "5", "pause": "0"})
        run_id = run["run_id"]

        status = await sm.wait(run_id, timeout=20)  # polls the run's graph: no long-poll route
        assert status["status"] == "SUCCESS", status
        assert status["graph_name"] == "fan"
        assert status["counts"]["SUCCESS"] == 5 + 5 + 1  # fan-out siblings, items, the unite
        assert status["nodes"] == {"fan": {"SUCCESS": 5}, "item": {"SUCCESS": 5}, "sum": {"SUCCESS": 1}}
        assert await sm.run_status(run_id) == status

        outputs = await sm.run_outputs(run_id)  # one v0 node-details call per successful state
        assert outputs["sum"] == [{"total": expected_total(5)}]
        assert sorted(int(o["double"]) for o in outputs["item"]) == [0, 2, 4, 6, 8]

        runs = await sm.list_runs()
        assert [r["run_id"] for r in runs["runs"]] == [run_id] and runs["runs"][0]["status"] == "SUCCESS"
        with pytest.raises(BadRequestError, match="cannot filter runs"):
            await sm.list_runs(status="SUCCESS")
        with pytest.raises(BadRequestError, match="plain v0"):
            await sm.get_state((await sm.run_graph(run_id))["nodes"][0]["id"])
        with pytest.raises(BadRequestError, match="cannot cancel"):
            await sm.cancel_run(run_id)
        with pytest.raises(NotFoundError):
            await sm.run_status("00000000-0000-4000-8000-000000000000")
    finally:
        await sm._transport.aclose()

    hits = plain.recorder.hits
    # the only extension route ever asked for is the capabilities probe, once per client
    assert [h.path for h in hits if h.path.endswith(EXTENSION_PATHS)] == ["/v0/capabilities"] * 2
    assert [h.path for h in hits if h.status == 404] == ["/v0/capabilities"] * 2
    assert all(h.status < 500 for h in hits)


async def _registered(sm: StateManager) -> bool:
    return {n["name"] for n in await sm.list_nodes()} >= {"Fan", "Item", "Sum"}
