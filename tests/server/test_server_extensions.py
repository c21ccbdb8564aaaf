"""The routes beyond upstream v0: capabilities, heartbeat, release, cancel, outputs, summary, runs, wait."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from server_helpers import GRAPH, KEY, NAMESPACE, LiveServer, SdkRuntime, full_run, setup_graph, trigger

from exosphere_nb.engine.engine import Engine
from exosphere_nb.server.app import create_app
from exosphere_nb.server.wire import parse_time_ms

BASE = f"/v0/namespace/{NAMESPACE}"


def _claim(client: httpx.Client, nodes: list[str], n: int = 1) -> list[dict[str, Any]]:
    return client.post(f"{BASE}/states/enqueue", json={"nodes": nodes, "batch_size": n}).json()["states"]


def test_capabilities_list_every_extension(client: httpx.Client) -> None:
    caps = client.get("/v0/capabilities").json()
    assert set(caps["extensions"]) >= {"heartbeat", "release", "cancel", "outputs", "summary", "runs", "state", "wait"}
    assert caps["version"] and caps["lease_ms"] > 0


def test_heartbeat_renews_only_this_namespaces_claimed_states(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client)
    (state,) = _claim(client, ["Fetch"])
    res = client.post(f"{BASE}/states/heartbeat", json={"state_ids": [state["state_id"], "0" * 24], "lease_ms": 5000})
    assert res.json() == {"renewed": 1}
    res = client.post("/v0/namespace/other/states/heartbeat", json={"state_ids": [state["state_id"]]})
    assert res.json() == {"renewed": 0}
    res = client.post(f"{BASE}/states/heartbeat", json={"state_ids": [state["state_id"]], "lease_ms": 0})
    assert res.status_code == 422


def test_release_hands_states_back_at_once(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client)
    (state,) = _claim(client, ["Fetch"])
    assert _claim(client, ["Fetch"]) == []
    res = client.post("/v0/namespace/other/states/release", json={"state_ids": [state["state_id"]]})
    assert res.json() == {"released": 0}  # not that namespace's state
    res = client.post(f"{BASE}/states/release", json={"state_ids": [state["state_id"], "nope"]})
    assert res.json() == {"released": 1}
    (again,) = _claim(client, ["Fetch"])
    assert again["state_id"] == state["state_id"]


def test_get_state_is_namespace_checked(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client)
    (state,) = _claim(client, ["Fetch"])
    got = client.get(f"{BASE}/state/{state['state_id']}").json()
    assert got["status"] == "QUEUED" and got["graph_name"] == GRAPH and got["identifier"] == "fetch"
    assert client.get(f"/v0/namespace/other/state/{state['state_id']}").status_code == 404


def test_cancel_run_refuses_later_results(client: httpx.Client) -> None:
    setup_graph(client)
    run_id = trigger(client)
    (state,) = _claim(client, ["Fetch"])
    assert client.post(f"/v0/namespace/other/runs/{run_id}/cancel").status_code == 404
    res = client.post(f"{BASE}/runs/{run_id}/cancel")
    assert res.status_code == 200 and res.json()["cancelled_count"] == 1 and res.json()["status"] == "CANCELLED"
    res = client.post(f"{BASE}/state/{state['state_id']}/executed", json={"outputs": []})
    assert res.status_code == 400 and "CANCELLED" in res.json()["detail"]
    assert client.get(f"{BASE}/runs/{run_id}/summary").json()["status"] == "CANCELLED"


def test_outputs_and_summary_of_a_finished_run(client: httpx.Client) -> None:
    run_id, _ = full_run(client)
    summary = client.get(f"{BASE}/runs/{run_id}/summary").json()
    assert summary["status"] == "SUCCESS" and summary["graph_name"] == GRAPH and summary["namespace"] == NAMESPACE
    assert summary["nodes"]["score"] == {"SUCCESS": 4, "PRUNED": 1, "RETRY_CREATED": 1}
    outputs = client.get(f"{BASE}/runs/{run_id}/outputs").json()
    assert [o["item"] for o in outputs["fetch"]] == [f"feed-{i}" for i in range(5)]
    assert [o["score"] for o in outputs["score"]] == ["0", "10", "20", "40"]
    assert client.get(f"/v0/namespace/other/runs/{run_id}/summary").status_code == 404
    assert client.get(f"/v0/namespace/other/runs/{run_id}/outputs").status_code == 404


def test_runs_filters(client: httpx.Client) -> None:
    setup_graph(client)
    first = trigger(client)
    time.sleep(0.01)
    middle = datetime.now(UTC)
    time.sleep(0.01)
    second = trigger(client)
    everything = client.get(f"{BASE}/runs").json()
    assert [r["run_id"] for r in everything["runs"]] == [second, first]
    assert everything["total"] == 2 and everything["page"] == 1 and everything["size"] == 20
    since = client.get(f"{BASE}/runs", params={"since": middle.isoformat()}).json()
    assert [r["run_id"] for r in since["runs"]] == [second]
    until = client.get(f"{BASE}/runs", params={"until": int(middle.timestamp() * 1000)}).json()
    assert [r["run_id"] for r in until["runs"]] == [first]
    assert client.get(f"{BASE}/runs", params={"graph_name": "other"}).json()["total"] == 0
    assert client.get(f"{BASE}/runs", params={"status": "SUCCESS"}).json()["total"] == 0
    assert client.get(f"{BASE}/runs", params={"status": "PENDING"}).json()["total"] == 2
    paged = client.get(f"{BASE}/runs", params={"page": 2, "size": 1}).json()
    assert [r["run_id"] for r in paged["runs"]] == [first]


def test_wait_long_polls_until_the_run_is_done(client: httpx.Client) -> None:
    setup_graph(client)
    run_id = trigger(client)
    quick = client.get(f"{BASE}/runs/{run_id}/wait", params={"timeout": 0.2}).json()
    assert quick["status"] == "PENDING"

    runtime = SdkRuntime(client)
    with httpx.Client(base_url=str(client.base_url), headers={"x-api-key": KEY}, timeout=30) as other:
        worker = threading.Thread(target=runtime.run_until_done, args=(run_id,))
        started = time.monotonic()
        worker.start()
        done = other.get(f"{BASE}/runs/{run_id}/wait", params={"timeout": 20}).json()
        worker.join()
    assert done["status"] == "SUCCESS"
    assert time.monotonic() - started < 15


def test_wait_answers_promptly_when_the_server_stops(db_file: Any) -> None:
    live = LiveServer(create_app(db_file, api_key=KEY)).start()
    try:
        with httpx.Client(base_url=live.url, headers={"x-api-key": KEY}, timeout=30) as c:
            setup_graph(c)
            run_id = trigger(c)
            answer: dict[str, Any] = {}

            def wait() -> None:
                answer.update(c.get(f"{BASE}/runs/{run_id}/wait", params={"timeout": 60}).json())

            waiter = threading.Thread(target=wait)
            waiter.start()
            time.sleep(0.3)
            started = time.monotonic()
            live.app.state.stopping.set()  # what serve's signal handler does
            waiter.join(10)
            assert answer["status"] == "PENDING"
            assert time.monotonic() - started < 5
    finally:
        live.stop()


def test_parse_time_ms() -> None:
    assert parse_time_ms("1700000000000") == 1_700_000_000_000
    assert parse_time_ms(5) == 5
    assert parse_time_ms("2024-01-01T00:00:00Z") == 1_704_067_200_000
    assert parse_time_ms("2024-01-01T01:00:00+01:00") == 1_704_067_200_000
    assert parse_time_ms("2024-01-01T00:00:00") == 1_704_067_200_000  # naive means UTC
    for bad in ("soon", "", True, 1.5, 10**20):
        with pytest.raises(ValueError):
            parse_time_ms(bad)


async def test_app_can_serve_an_engine_it_does_not_own(tmp_path: Any) -> None:
    engine = Engine(str(tmp_path / "shared.duckdb"))
    await engine.start()
    try:
        app = create_app(api_key=KEY, engine_factory=lambda: engine, close_engine=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t", headers={"x-api-key": KEY}) as c:
                res = await c.put(f"{BASE}/nodes/", json={"runtime_name": "rt", "nodes": []})
                assert res.status_code == 200
        # the app has stopped; the engine it borrowed still works
        assert engine.namespaces() == {"namespaces": [], "count": 0}
    finally:
        await engine.close()


def test_an_engine_on_another_loop_is_refused(tmp_path: Any) -> None:
    engine = Engine(str(tmp_path / "elsewhere.duckdb"))
    other = asyncio.new_event_loop()
    other.run_until_complete(engine.start())
    app = create_app(engine_factory=lambda: engine, close_engine=False)

    async def serve() -> None:
        with pytest.raises(RuntimeError, match="another event loop"):
            async with app.router.lifespan_context(app):
                pass

    try:
        asyncio.run(serve())
    finally:
        other.run_until_complete(engine.close())
        other.close()


def test_run_routes_are_not_taken_for_v0_paging(client: httpx.Client) -> None:
    for suffix in ("summary", "outputs", "wait"):
        res = client.get(f"{BASE}/runs/1/{suffix}")
        assert res.status_code == 404 and "run '1' not found" in res.json()["detail"]
    assert client.get(f"{BASE}/runs/1/5").json()["size"] == 5
