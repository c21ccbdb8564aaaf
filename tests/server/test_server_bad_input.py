"""Bad input over HTTP gets a 4xx with a clear detail, never a 500."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest
from server_helpers import GRAPH, KEY, MAX_BODY, NAMESPACE, LiveServer, graph_body, register_body, setup_graph, trigger

BASE = f"/v0/namespace/{NAMESPACE}"
JSON = {"content-type": "application/json"}


def _messages(res: httpx.Response) -> str:
    detail = res.json()["detail"]
    return detail if isinstance(detail, str) else " | ".join(e["msg"] for e in detail)


def test_malformed_json(client: httpx.Client) -> None:
    res = client.post(f"{BASE}/states/enqueue", content=b'{"nodes": ["A"], "batch_size": ', headers=JSON)
    assert res.status_code == 422
    assert "not valid JSON" in _messages(res)
    assert res.json()["detail"][0]["type"] == "json_invalid"


def test_body_without_json_content_type(client: httpx.Client) -> None:
    res = client.post(f"{BASE}/states/enqueue", content=b'{"nodes": ["A"], "batch_size": 1}')
    assert res.status_code == 422 and "Content-Type: application/json" in _messages(res)


def test_wrong_types(client: httpx.Client) -> None:
    res = client.post(f"{BASE}/states/enqueue", json={"nodes": "Fetch", "batch_size": "many"})
    assert res.status_code == 422
    locs = {tuple(e["loc"]) for e in res.json()["detail"]}
    assert ("body", "nodes") in locs and ("body", "batch_size") in locs
    res = client.post(f"{BASE}/graph/{GRAPH}/trigger", json={"inputs": {"a": 1}, "start_delay": -5})
    assert res.status_code == 422
    locs = {tuple(e["loc"]) for e in res.json()["detail"]}
    assert ("body", "inputs", "a") in locs and ("body", "start_delay") in locs
    res = client.put(f"{BASE}/nodes/", json={"runtime_name": "rt", "nodes": [{"name": 5}]})
    assert res.status_code == 422
    res = client.put(f"{BASE}/nodes/", json=[1, 2])
    assert res.status_code == 422


def test_body_over_the_size_limit_by_content_length(client: httpx.Client) -> None:
    body = {"runtime_name": "rt", "nodes": [], "pad": "x" * MAX_BODY}
    res = client.put(f"{BASE}/nodes/", json=body)
    assert res.status_code == 413
    assert "larger than this server's limit" in res.json()["detail"]


def test_body_over_the_size_limit_streamed(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"runtime_name": "rt", "nodes": [], "pad": "'
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    res = client.put(f"{BASE}/nodes/", content=chunks(), headers=JSON)  # chunked: no Content-Length
    assert res.status_code == 413


def test_body_at_the_limit_is_fine(client: httpx.Client) -> None:
    body = register_body()
    body["pad"] = ""
    size = len(httpx.Request("PUT", "/", json=body).content)
    body["pad"] = "x" * (MAX_BODY - size)
    res = client.put(f"{BASE}/nodes/", json=body)
    assert len(res.request.content) == MAX_BODY
    assert res.status_code == 200, res.text


def test_invalid_content_length(live: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(
            f"PUT {BASE}/nodes/ HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\n".encode()
            + b"content-type: application/json\r\ncontent-length: abc\r\n\r\n{}"
        )
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 4"), status_line


def test_unknown_state_id(client: httpx.Client) -> None:
    sid = "f" * 24
    for kind, body in (("executed", {"outputs": []}), ("errored", {"error": "x"}), ("prune", {"data": {}})):
        res = client.post(f"{BASE}/state/{sid}/{kind}", json=body)
        assert res.status_code == 404 and sid in res.json()["detail"]
    assert client.get(f"{BASE}/state/{sid}/secrets").status_code == 404
    assert client.post(f"{BASE}/state/{sid}/manual-retry", json={"fanout_id": "f"}).status_code == 404
    assert client.get(f"{BASE}/state/{sid}").status_code == 404


@pytest.mark.parametrize("sid", ["not-an-id", "0" * 25, "ZZZZZZZZZZZZZZZZZZZZZZZZ", "%00", "..", "a%2Fb", "é" * 24])
def test_malformed_state_id_is_404(client: httpx.Client, sid: str) -> None:
    for method, suffix, body in (
        ("POST", "/executed", {"outputs": []}),
        ("POST", "/errored", {"error": "x"}),
        ("POST", "/prune", {"data": {}}),
        ("POST", "/re-enqueue-after", {"enqueue_after": 5}),
        ("POST", "/manual-retry", {"fanout_id": "f"}),
        ("GET", "/secrets", None),
        ("GET", "", None),
    ):
        res = client.request(method, f"{BASE}/state/{sid}{suffix}", json=body)
        assert res.status_code == 404, (method, suffix, res.status_code, res.text)
        assert "detail" in res.json()
    res = client.get(f"{BASE}/graph/{GRAPH}/run/{uuid.uuid4()}/node/{sid}")
    assert res.status_code == 404


def test_unknown_graph(client: httpx.Client) -> None:
    res = client.get(f"{BASE}/graph/nope")
    assert res.status_code == 404 and "nope" in res.json()["detail"]
    res = client.post(f"{BASE}/graph/nope/trigger", json={})
    assert res.status_code == 404


def test_typo_in_graph_name_suggests_the_right_one(client: httpx.Client) -> None:
    setup_graph(client)
    res = client.get(f"{BASE}/graph/score")
    assert res.status_code == 404 and repr(GRAPH) in res.json()["detail"]


@pytest.mark.parametrize(("page", "size"), [(0, 10), (1, 0), (-1, 10), (1, -3), ("x", 10), (1, "y")])
def test_bad_runs_page(client: httpx.Client, page: object, size: object) -> None:
    res = client.get(f"{BASE}/runs/{page}/{size}")
    assert res.status_code == 422, res.text
    assert res.json()["detail"][0]["loc"][0] == "path"


def test_huge_pages_are_422_or_empty_never_500(client: httpx.Client) -> None:
    assert client.get(f"{BASE}/runs/{2**31}/{2**31}").status_code == 200
    assert client.get(f"{BASE}/runs/{2**63}/10").status_code == 422
    assert client.get(f"{BASE}/runs", params={"page": 2**40}).status_code == 422


def test_re_enqueue_after_must_be_positive(client: httpx.Client) -> None:
    for value in (0, -10, "soon", None):
        res = client.post(f"{BASE}/state/{'0' * 24}/re-enqueue-after", json={"enqueue_after": value})
        assert res.status_code == 422, value


def test_invalid_cron_is_422(client: httpx.Client) -> None:
    body = graph_body()
    body["triggers"] = [{"type": "CRON", "value": {"expression": "every tuesday"}}]
    res = client.put(f"{BASE}/graph/{GRAPH}", json=body)
    assert res.status_code == 422 and "cron" in _messages(res).lower()


def test_graph_node_fields_are_checked(client: httpx.Client) -> None:
    body = graph_body()
    body["nodes"][0]["identifier"] = "store"
    res = client.put(f"{BASE}/graph/{GRAPH}", json=body)
    assert res.status_code == 422 and "store" in _messages(res)


def test_invalid_outputs_fail_the_state_not_the_request(client: httpx.Client) -> None:
    setup_graph(client)
    trigger(client)
    (state,) = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch"], "batch_size": 1}).json()["states"]
    res = client.post(f"{BASE}/state/{state['state_id']}/executed", json={"outputs": [{"item": 5}]})
    assert res.status_code == 200
    assert res.json()["status"] == "ERRORED" and "item" in res.json()["error"]


def test_bad_batch_size_is_400(client: httpx.Client) -> None:
    res = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch"], "batch_size": 0})
    assert res.status_code == 400 and "batch_size" in res.json()["detail"]


def test_bad_run_filters(client: httpx.Client) -> None:
    for params in ({"since": "yesterday"}, {"until": "2024-13-45"}, {"status": "DONE"}, {"since": str(10**20)}):
        res = client.get(f"{BASE}/runs", params=params)
        assert res.status_code == 422, (params, res.text)


def test_unknown_run_in_extensions_is_404(client: httpx.Client) -> None:
    run = str(uuid.uuid4())
    for method, suffix in (("GET", "summary"), ("GET", "outputs"), ("GET", "wait"), ("POST", "cancel")):
        res = client.request(method, f"{BASE}/runs/{run}/{suffix}")
        assert res.status_code == 404, (suffix, res.text)


def test_request_id_is_echoed_when_a_uuid(client: httpx.Client) -> None:
    rid = str(uuid.uuid4())
    assert client.get("/health", headers={"x-exosphere-request-id": rid}).headers["x-exosphere-request-id"] == rid
    for bad in ("abc", "", "1234"):
        got = client.get("/health", headers={"x-exosphere-request-id": bad}).headers["x-exosphere-request-id"]
        assert got != bad and uuid.UUID(got).version == 4
    # also on errors and refusals
    res = client.get(f"{BASE}/graph/nope", headers={"x-exosphere-request-id": rid})
    assert res.status_code == 404 and res.headers["x-exosphere-request-id"] == rid
    res = client.get(f"{BASE}/graph/nope", headers={"x-exosphere-request-id": rid, "x-api-key": "bad"})
    assert res.status_code == 401 and res.headers["x-exosphere-request-id"] == rid


WEIRD = ["%00", "%FF", "a" * 3000, "x%20y", "%E2%80%AE", "0" * 24, "-1", "9" * 40]


@pytest.mark.parametrize("value", WEIRD)
def test_weird_path_values_never_500(client: httpx.Client, value: str) -> None:
    for method, path, body in (
        ("GET", f"/v0/namespace/{value}/nodes/", None),
        ("GET", f"/v0/namespace/{value}/graphs/", None),
        ("GET", f"{BASE}/graph/{value}", None),
        ("POST", f"{BASE}/graph/{value}/trigger", {}),
        ("GET", f"{BASE}/states/run/{value}/graph", None),
        ("GET", f"{BASE}/runs/{value}/summary", None),
        ("GET", f"{BASE}/runs/{value}/outputs", None),
        ("POST", f"{BASE}/runs/{value}/cancel", None),
        ("GET", f"{BASE}/runs/{value}/wait?timeout=0", None),
        ("GET", f"{BASE}/graph/{value}/run/{value}/node/{value}", None),
        ("GET", f"{BASE}/runs/{value}/10", None),
        ("POST", f"{BASE}/states/heartbeat", {"state_ids": [value]}),
        ("POST", f"{BASE}/states/release", {"state_ids": [value]}),
    ):
        res = client.request(method, path, json=body)
        assert res.status_code < 500, (method, path, res.status_code, res.text)
