"""POST /states/results (the `results` extension): many results in one request, each applied as its
own v0 route would apply it, with one answer per item, in order."""

from __future__ import annotations

from typing import Any

import httpx
from server_helpers import KEY, NAMESPACE, setup_graph, trigger

BASE = f"/v0/namespace/{NAMESPACE}"


def _claim(client: httpx.Client, nodes: list[str], n: int = 1) -> list[dict[str, Any]]:
    return client.post(f"{BASE}/states/enqueue", json={"nodes": nodes, "batch_size": n}).json()["states"]


def _results(client: httpx.Client, items: list[dict[str, Any]], namespace: str = NAMESPACE) -> httpx.Response:
    return client.post(f"/v0/namespace/{namespace}/states/results", json={"results": items})


def test_capabilities_list_results(client: httpx.Client) -> None:
    assert "results" in client.get("/v0/capabilities").json()["extensions"]


def test_each_item_is_applied_like_its_v0_route(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client, label="a")
    trigger(client, label="b")
    fetch_a, fetch_b = _claim(client, ["Fetch"], 2)
    outputs = [{"item": f"feed-{i}"} for i in range(5)]
    res = _results(
        client,
        [
            {"state_id": fetch_a["state_id"], "kind": "executed", "outputs": outputs},
            {"state_id": fetch_b["state_id"], "kind": "errored", "error": "boom"},
        ],
    )
    assert res.status_code == 200
    assert res.json() == {
        "results": [
            {"state_id": fetch_a["state_id"], "status": "EXECUTED"},
            {"state_id": fetch_b["state_id"], "status": "ERRORED", "retry_created": True},
        ]
    }
    # the next states were created (and committed) before the answer
    scores = _claim(client, ["Score"], 16)
    assert len(scores) == 5
    res = _results(
        client,
        [
            {"state_id": scores[0]["state_id"], "kind": "prune", "data": {"why": "filtered"}},
            {"state_id": scores[1]["state_id"], "kind": "re-enqueue-after", "enqueue_after": 60_000},
            {"state_id": scores[2]["state_id"], "kind": "executed", "outputs": [{"score": "20"}]},
        ],
    )
    answers = res.json()["results"]
    assert answers[0]["status"] == "PRUNED"
    assert answers[1]["status"] == "CREATED" and answers[1]["enqueue_after"] > 0
    assert answers[2] == {"state_id": scores[2]["state_id"], "status": "EXECUTED"}
    assert client.get(f"{BASE}/state/{scores[2]['state_id']}").json()["status"] == "SUCCESS"


def test_a_bad_item_gets_its_own_error_and_the_others_still_apply(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client, label="a")
    (fetch,) = _claim(client, ["Fetch"])
    outputs = [{"item": f"feed-{i}"} for i in range(5)]
    items = [
        {"state_id": "0" * 24, "kind": "executed", "outputs": []},  # unknown
        {"state_id": fetch["state_id"], "kind": "re-enqueue-after", "enqueue_after": 0},  # invalid: not > 0
        {"state_id": fetch["state_id"], "kind": "teleported"},  # no such kind
        {"state_id": fetch["state_id"], "kind": "executed", "outputs": outputs},
        {"state_id": fetch["state_id"], "kind": "executed", "outputs": outputs},  # again: no longer QUEUED
    ]
    answers = _results(client, items).json()["results"]
    assert [a.get("status_code") for a in answers] == [404, 422, 422, None, 400]
    assert answers[1]["detail"][0]["loc"] == ["re-enqueue-after", "enqueue_after"]
    assert "input" not in answers[1]["detail"][0]  # never echoes what was sent
    assert answers[3]["status"] == "EXECUTED"
    assert "not QUEUED" in answers[4]["detail"]


def test_results_are_namespace_checked_and_the_body_is_validated(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client)
    (fetch,) = _claim(client, ["Fetch"])
    answers = _results(client, [{"state_id": fetch["state_id"], "kind": "errored", "error": "x"}], "other").json()
    assert answers["results"][0]["status_code"] == 404
    assert client.get(f"{BASE}/state/{fetch['state_id']}").json()["status"] == "QUEUED"
    assert client.post(f"{BASE}/states/results", json={"results": "nope"}).status_code == 422
    assert client.post(f"{BASE}/states/results", json={}).status_code == 422
    assert _results(client, []).json() == {"results": []}


def test_results_need_the_key(anon: httpx.Client) -> None:
    res = anon.post(f"{BASE}/states/results", json={"results": []})
    assert res.status_code == 401
    res = anon.post(f"{BASE}/states/results", json={"results": []}, headers={"x-api-key": KEY})
    assert res.status_code == 200
