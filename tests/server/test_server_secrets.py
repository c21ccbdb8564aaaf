"""Secret values never leave the server except through a claimed state's secrets route."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from server_helpers import GRAPH, NAMESPACE, SECRET, full_run, graph_body, setup_graph, trigger

from exosphere_nb.server.app import create_app

BASE = f"/v0/namespace/{NAMESPACE}"
SECRET_ROUTES = {"/v0/namespace/{namespace}/state/{state_id}/secrets", "/v0/state/{state_id}/secrets"}


def _get_routes() -> list[str]:
    paths = create_app(":memory:").openapi()["paths"]
    return sorted(p for p, item in paths.items() if "get" in item and p not in SECRET_ROUTES)


def test_no_get_response_holds_a_secret_value(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    run_id, runtime = full_run(client)
    assert runtime.seen_secrets == [{"api_token": SECRET}]  # it was there to leak
    pending = trigger(client)
    (claimed,) = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch"], "batch_size": 1}).json()["states"]
    state_ids = [n["id"] for n in client.get(f"{BASE}/states/run/{run_id}/graph").json()["nodes"]]
    state_ids.append(claimed["state_id"])

    checked = 0
    for template in _get_routes():
        for sid in state_ids if "{state_id}" in template else [None]:
            for rid in (run_id, pending):
                values = {"namespace": NAMESPACE, "graph_name": GRAPH, "run_id": rid, "page": "1", "size": "100"}
                if sid is not None:
                    values["state_id"] = sid
                url = re.sub(r"\{(\w+)\}", lambda m, v=values: v[m.group(1)], template)  # type: ignore[misc]
                res = client.get(url, params={"timeout": 0} if url.endswith("/wait") else None)
                assert res.status_code < 500, (url, res.text)
                assert SECRET not in res.text, url
                checked += 1
    assert checked > 30
    graphs = client.get(f"{BASE}/graphs/").text
    assert "api_token" in graphs and SECRET not in graphs
    assert SECRET not in caplog.text
    assert "/secrets" in caplog.text  # the access log was captured, and shows paths only


def test_no_error_detail_holds_a_secret_value(client: httpx.Client) -> None:
    setup_graph(client)
    cases = []
    bad_structure = graph_body()
    bad_structure["nodes"][1]["next_nodes"] = ["nowhere"]
    cases.append(("PUT", f"{BASE}/graph/{GRAPH}", bad_structure))
    wrong_type = graph_body()
    wrong_type["secrets"] = [SECRET]
    cases.append(("PUT", f"{BASE}/graph/{GRAPH}", wrong_type))
    bad_value = graph_body()
    bad_value["secrets"] = {"api_token": SECRET, "other": 7}
    cases.append(("PUT", f"{BASE}/graph/{GRAPH}", bad_value))
    bad_node = graph_body()
    bad_node["nodes"][0]["identifier"] = "  "
    cases.append(("PUT", f"{BASE}/graph/{GRAPH}", bad_node))
    cases.append(("PUT", f"{BASE}/graph/{GRAPH}", {"secrets": SECRET, "nodes": "x"}))
    cases.append(("POST", f"{BASE}/graph/{GRAPH}/trigger", {"inputs": {"k": SECRET}, "store": {"label": "x"}}))
    cases.append(("POST", f"{BASE}/graph/{GRAPH}/trigger", {"inputs": SECRET}))
    for method, url, body in cases:
        res = client.request(method, url, json=body)
        assert 400 <= res.status_code < 500, (url, res.text)
        assert SECRET not in res.text, res.text
    malformed = client.put(
        f"{BASE}/graph/{GRAPH}",
        content=f'{{"secrets": {{"a": "{SECRET}"'.encode(),
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 422 and SECRET not in malformed.text


def test_secrets_are_only_for_claimed_states_of_the_namespace(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client)
    (state,) = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch"], "batch_size": 1}).json()["states"]
    sid = state["state_id"]
    res = client.get(f"{BASE}/state/{sid}/secrets")
    assert res.json() == {"secrets": {"api_token": SECRET}}
    assert res.headers["cache-control"] == "no-store"
    assert client.get(f"/v0/namespace/elsewhere/state/{sid}/secrets").status_code == 404
    client.post(f"{BASE}/state/{sid}/executed", json={"outputs": [{"item": "a"}]})
    res = client.get(f"{BASE}/state/{sid}/secrets")
    assert res.status_code == 400 and SECRET not in res.text
