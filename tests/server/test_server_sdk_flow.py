"""Requests shaped exactly as the official SDK sends them drive a full run to SUCCESS over HTTP."""

from __future__ import annotations

import json
import uuid

import httpx
from server_helpers import (
    GRAPH,
    NAMESPACE,
    SECRET,
    SdkRuntime,
    full_run,
    graph_body,
    register_body,
    setup_graph,
    trigger,
)

BASE = f"/v0/namespace/{NAMESPACE}"


def test_sdk_shaped_requests_drive_a_run_to_success(client: httpx.Client) -> None:
    run_id, runtime = full_run(client)

    # the secret reached the node that declares it, and only that node asked for it
    assert runtime.seen_secrets == [{"api_token": SECRET}]

    structure = client.get(f"{BASE}/states/run/{run_id}/graph").json()
    assert structure["graph_name"] == GRAPH
    by_ident: dict[str, list[dict]] = {}
    for node in structure["nodes"]:
        by_ident.setdefault(node["identifier"], []).append(node)
    assert [n["status"] for n in by_ident["fetch"]] == ["SUCCESS"] * 5
    statuses = sorted(n["status"] for n in by_ident["score"])
    assert statuses == ["PRUNED", "RETRY_CREATED"] + ["SUCCESS"] * 4
    assert [n["status"] for n in by_ident["report"]] == ["SUCCESS"]
    assert {n["identifier"] for n in structure["root_states"]} == {"fetch"}  # the root and its fan-out siblings
    assert structure["node_count"] == len(structure["nodes"])
    assert structure["edge_count"] == structure["node_count"] - len(structure["root_states"])
    assert structure["execution_summary"]["SUCCESS"] == 10

    report_id = by_ident["report"][0]["id"]
    details = client.get(f"{BASE}/graph/{GRAPH}/run/{run_id}/node/{report_id}")
    assert details.status_code == 200, details.text
    report = details.json()
    assert report["run_id"] == run_id and report["graph_name"] == GRAPH and report["status"] == "SUCCESS"
    label, scores = report["outputs"]["summary"].split(":", 1)
    assert label == "weekly"
    assert sorted(json.loads(scores)) == ["0", "10", "20", "40"]  # item 3 was pruned
    assert set(report["parents"]) == {"fetch"}
    assert report["created_at"].endswith("+00:00")

    run = client.get(f"{BASE}/runs/1/10").json()
    assert run["namespace"] == NAMESPACE and run["total"] == 1 and run["page"] == 1 and run["size"] == 10
    row = run["runs"][0]
    assert row["run_id"] == run_id and row["graph_name"] == GRAPH and row["status"] == "SUCCESS"
    assert row["success_count"] == 11 and row["retried_count"] == 1 and row["pending_count"] == 0
    assert row["total_count"] == 12

    assert client.get("/v0/namespaces").json() == {"namespaces": [NAMESPACE], "count": 1}
    nodes = client.get(f"{BASE}/nodes/").json()
    assert nodes["count"] == 3 and {n["name"] for n in nodes["nodes"]} == {"Fetch", "Score", "Report"}
    graphs = client.get(f"{BASE}/graphs/").json()
    assert graphs["count"] == 1 and graphs["templates"][0]["secrets"] == {"api_token": True}


def test_register_answers_like_upstream(client: httpx.Client) -> None:
    res = client.put(f"{BASE}/nodes/", json=register_body("rt-1"))
    assert res.status_code == 200
    body = res.json()
    assert body["runtime_name"] == "rt-1"
    fetch = next(n for n in body["registered_nodes"] if n["name"] == "Fetch")
    assert fetch["secrets"] == ["api_token"]
    assert set(fetch["inputs_schema"]["properties"]) == {"source", "count"}


def test_upsert_graph_is_201_and_get_returns_what_was_stored(client: httpx.Client) -> None:
    client.put(f"{BASE}/nodes/", json=register_body())
    body = graph_body()
    body["triggers"] = [{"type": "CRON", "value": {"expression": "0 3 * * *"}}]
    res = client.put(f"{BASE}/graph/{GRAPH}", json=body)
    assert res.status_code == 201, res.text
    got = client.get(f"{BASE}/graph/{GRAPH}").json()
    assert got["validation_status"] == "VALID" and got["validation_errors"] == []
    assert got["retry_policy"]["backoff_factor"] == 1 and got["retry_policy"]["strategy"] == "FIXED"
    assert got["store_config"]["required_keys"] == ["label"]
    assert got["triggers"] == [{"type": "CRON", "value": {"expression": "0 3 * * *"}}]
    assert got["secrets"] == {"api_token": True}


def test_graph_of_unregistered_nodes_is_invalid_with_every_error(client: httpx.Client) -> None:
    res = client.put(f"{BASE}/graph/{GRAPH}", json=graph_body())
    assert res.status_code == 201
    assert res.json()["validation_status"] == "INVALID"
    assert len(res.json()["validation_errors"]) >= 3
    res = client.post(f"{BASE}/graph/{GRAPH}/trigger", json={"start_delay": 0, "inputs": {}, "store": {"label": "x"}})
    assert res.status_code == 400 and "INVALID" in res.json()["detail"]


def test_malformed_graph_is_400_listing_every_error(client: httpx.Client) -> None:
    body = graph_body()
    body["nodes"][1]["next_nodes"] = ["nowhere"]
    body["nodes"][2]["unites"] = {"identifier": "ghost", "strategy": "ALL_SUCCESS"}
    res = client.put(f"{BASE}/graph/{GRAPH}", json=body)
    assert res.status_code == 400, res.text
    errors = res.json()["errors"]
    assert len(errors) >= 2
    assert all(e in res.json()["detail"] for e in errors)


def test_trigger_checks_store_and_inputs(client: httpx.Client) -> None:
    setup_graph(client)
    res = client.post(f"{BASE}/graph/{GRAPH}/trigger", json={"start_delay": 0, "inputs": {}, "store": {}})
    assert res.status_code == 400 and "label" in res.json()["detail"]
    res = client.post(f"{BASE}/graph/{GRAPH}/trigger", json={"inputs": {"nope": "1"}, "store": {"label": "x"}})
    assert res.status_code == 400 and "nope" in res.json()["detail"]
    res = client.post(f"{BASE}/graph/missing/trigger", json={"inputs": {}, "store": {}, "start_delay": 0})
    assert res.status_code == 404


def test_start_delay_holds_the_root_back(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client, start_delay=60_000)
    res = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch"], "batch_size": 4})
    assert res.json() == {"count": 0, "namespace": NAMESPACE, "status": "QUEUED", "states": []}


def test_enqueue_response_shape(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client)
    res = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch", "Score"], "batch_size": 4})
    body = res.json()
    assert body["count"] == 1 and body["status"] == "QUEUED" and body["namespace"] == NAMESPACE
    (state,) = body["states"]
    assert set(state) == {"state_id", "node_name", "identifier", "inputs", "created_at"}
    assert state["node_name"] == "Fetch" and state["inputs"] == {"source": "feed", "count": "5"}


def test_results_for_a_finished_state_are_refused(client: httpx.Client) -> None:
    run_id, _ = full_run(client)
    structure = client.get(f"{BASE}/states/run/{run_id}/graph").json()
    done = next(n for n in structure["nodes"] if n["status"] == "SUCCESS")
    for kind, body in (
        ("executed", {"outputs": []}),
        ("errored", {"error": "late"}),
        ("prune", {"data": {}}),
        ("re-enqueue-after", {"enqueue_after": 10}),
    ):
        res = client.post(f"{BASE}/state/{done['id']}/{kind}", json=body)
        assert res.status_code == 400, (kind, res.text)
        assert "not QUEUED" in res.json()["detail"]
    assert client.get(f"{BASE}/state/{done['id']}/secrets").status_code == 400


def test_manual_retry_of_a_pruned_state_then_the_fanout_id_is_spent(client: httpx.Client) -> None:
    run_id, _ = full_run(client)
    structure = client.get(f"{BASE}/states/run/{run_id}/graph").json()
    pruned = next(n for n in structure["nodes"] if n["status"] == "PRUNED")
    succeeded = next(n for n in structure["nodes"] if n["status"] == "SUCCESS")
    fanout = str(uuid.uuid4())
    res = client.post(f"{BASE}/state/{pruned['id']}/manual-retry", json={"fanout_id": fanout})
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "CREATED" and res.json()["id"] != pruned["id"]
    for state in (pruned, succeeded):  # the fanout_id is spent in this run, whatever the state
        res = client.post(f"{BASE}/state/{state['id']}/manual-retry", json={"fanout_id": fanout})
        assert res.status_code == 409, res.text
    res = client.post(f"{BASE}/state/{succeeded['id']}/manual-retry", json={"fanout_id": str(uuid.uuid4())})
    assert res.status_code == 400 and "SUCCESS" in res.json()["detail"]


def test_manual_retry_reusing_a_fanout_id_is_409(client: httpx.Client) -> None:
    setup_graph(client)
    run_id = trigger(client)
    runtime = SdkRuntime(client)
    # fail the root for good: three errored reports exhaust max_retries=2
    for _ in range(3):
        for _ in range(200):
            res = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch"], "batch_size": 1}).json()
            if res["states"]:
                break
        (state,) = res["states"]
        assert client.post(f"{BASE}/state/{state['state_id']}/errored", json={"error": "boom"}).status_code == 200
    structure = client.get(f"{BASE}/states/run/{run_id}/graph").json()
    failed = [n for n in structure["nodes"] if n["status"] == "ERRORED"]
    assert len(failed) == 1
    fanout = "fan-1"
    first = client.post(f"{BASE}/state/{failed[0]['id']}/manual-retry", json={"fanout_id": fanout})
    assert first.status_code == 200, first.text
    runtime.run_until_done(run_id)
    # the retried copy succeeded; the fanout_id cannot be used again
    structure = client.get(f"{BASE}/states/run/{run_id}/graph").json()
    assert any(n["status"] == "SUCCESS" and n["identifier"] == "fetch" for n in structure["nodes"])
    res = client.post(f"{BASE}/state/{failed[0]['id']}/manual-retry", json={"fanout_id": fanout})
    assert res.status_code == 409, res.text


def test_re_enqueue_after_answers_absolute_time(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client)
    (state,) = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch"], "batch_size": 1}).json()["states"]
    res = client.post(f"{BASE}/state/{state['state_id']}/re-enqueue-after", json={"enqueue_after": 60_000})
    assert res.status_code == 200
    body = res.json()
    assert body["status"] == "CREATED" and body["enqueue_after"] > 1_600_000_000_000


def test_errored_reports_whether_a_retry_was_created(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client)
    (state,) = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch"], "batch_size": 1}).json()["states"]
    res = client.post(f"{BASE}/state/{state['state_id']}/errored", json={"error": "boom"})
    assert res.json() == {"status": "ERRORED", "retry_created": True}


def test_unknown_run_graph_is_zeros(client: httpx.Client) -> None:
    res = client.get(f"{BASE}/states/run/{uuid.uuid4()}/graph")
    assert res.status_code == 200
    body = res.json()
    assert body["nodes"] == [] and body["node_count"] == 0 and set(body["execution_summary"].values()) == {0}


def test_secrets_on_the_older_sdk_path(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client)
    (state,) = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch"], "batch_size": 1}).json()["states"]
    res = client.get(f"/v0/state/{state['state_id']}/secrets")
    assert res.status_code == 200 and res.json() == {"secrets": {"api_token": SECRET}}
    # another namespace cannot read them
    assert client.get(f"/v0/namespace/other/state/{state['state_id']}/secrets").status_code == 404
