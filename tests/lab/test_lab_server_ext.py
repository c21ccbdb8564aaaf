"""The server extension behind the JupyterLab panel, against a real `jupyter server` process.

Every route needs Jupyter's own login (the routes are enumerated from the running app, so a new
route cannot slip by untested); the proxy adds keys server-side and never returns them; answers a
state manager should not give become one clear message.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from lab_helpers import ExoServe, JupyterProcess, Worker, free_port, require_lab
from lab_nodes import BROKEN_FLAG, GRAPH, NAMESPACE

pytestmark = pytest.mark.slow

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SAMPLE_ARGS = {
    "connection_id": "remote-000000000000",
    "path": "v0/namespaces",
    "namespace": NAMESPACE,
    "run_id": "00000000-0000-0000-0000-000000000000",
}

_ROUTES_SCRIPT = r"""
import json, sys
from jupyter_server.serverapp import ServerApp
from tornado.routing import PathMatches

app = ServerApp()
app.initialize(
    argv=['--ServerApp.jpserver_extensions={"exosphere_nb.labserver": True}', "--port=0", "--ip=127.0.0.1"],
    find_extensions=False,
    new_httpserver=False,
)
found = []
def walk(router):
    for rule in getattr(router, "rules", []):
        target = rule.target
        if isinstance(rule.matcher, PathMatches) and isinstance(target, type):
            found.append({"pattern": rule.matcher.regex.pattern, "module": target.__module__,
                          "handler": target.__name__,
                          "methods": [m for m in ("get", "post", "put", "patch", "delete")
                                      if getattr(target, m).__qualname__.split(".")[0] != "RequestHandler"]})
        walk(target)
walk(app.web_app.default_router)
print("ROUTES=" + json.dumps(found))
"""


def app_routes(tmp: Path) -> list[dict[str, Any]]:
    """The routes a server with the extension really has, read from its tornado router."""
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "rt"), "JUPYTER_CONFIG_DIR": str(tmp / "cfg")}
    out = subprocess.run(
        [sys.executable, "-c", _ROUTES_SCRIPT], capture_output=True, text=True, env=env, timeout=120, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("ROUTES="))
    return json.loads(line[len("ROUTES=") :])


def concrete(pattern: str) -> str:
    def sample(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in SAMPLE_ARGS, f"route argument {name!r} has no sample value: add one to SAMPLE_ARGS"
        return SAMPLE_ARGS[name]

    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", sample, pattern).rstrip("$")
    assert "(" not in path, f"route {pattern!r} has an unnamed group: name it"
    return path


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_lab()
    return tmp_path_factory.mktemp("labserver")


@pytest.fixture(scope="module")
def upstream(tmp: Path) -> Iterator[ExoServe]:
    with ExoServe(tmp) as serve:
        yield serve


@pytest.fixture(scope="module")
def worker(tmp: Path, upstream: ExoServe) -> Iterator[Worker]:
    with Worker(tmp, upstream.url, upstream.key) as w:
        yield w


class _Fake(BaseHTTPRequestHandler):
    """Answers a state manager must not give, by the first path segment."""

    def do_GET(self) -> None:
        kind = self.path.strip("/").split("/")[0]
        if kind == "html":
            self._send(200, "text/html", b"<html><body>a login page</body></html>")
        elif kind == "boom":
            self._send(500, "application/json", json.dumps({"detail": "database on fire"}).encode())
        elif kind == "slow":
            time.sleep(4)
            self._send(200, "application/json", b"{}")
        elif kind == "echo":  # a broken server that echoes the key it was sent
            body = {"namespaces": [self.headers.get("x-api-key", "")], "count": 1}
            self._send(200, "application/json", json.dumps(body).encode())
        else:
            self._send(404, "application/json", b'{"detail": "Not Found"}')

    def _send(self, status: int, kind: str, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy gave up waiting (the slow case): nobody to answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def jupyter(tmp: Path) -> Iterator[JupyterProcess]:
    root = tmp / "root"
    root.mkdir()
    with JupyterProcess(tmp, root, extra=["--ExosphereLab.request_timeout=2"]) as server:
        yield server


@pytest.fixture(scope="module")
def client(jupyter: JupyterProcess) -> Iterator[httpx.Client]:
    with httpx.Client(headers=jupyter.auth, timeout=30) as c:
        yield c


def add_remote(client: httpx.Client, jupyter: JupyterProcess, uri: str, key: str | None, name: str) -> str:
    r = client.post(jupyter.api("connections"), json={"uri": uri, "key": key, "name": name, "namespace": NAMESPACE})
    assert r.status_code == 201, r.text
    return str(r.json()["connection"]["id"])


# -- every route needs Jupyter's login ----------------------------------------------------------


def test_every_route_refuses_unauthenticated_calls(tmp: Path, jupyter: JupyterProcess, client: httpx.Client) -> None:
    from exosphere_nb.labserver.handlers import ROUTES

    routes = [r for r in app_routes(tmp) if r["module"].startswith("exosphere_nb")]
    # the app's routes are exactly the module's table: none added elsewhere, none missing
    assert sorted(r["pattern"] for r in routes) == sorted(f"/exosphere-nb/api/{p}$" for p, _ in ROUTES)
    checked = 0
    for route in routes:
        url = jupyter.url + concrete(route["pattern"])
        assert route["methods"], f"{route['handler']} implements no method"
        for method in METHODS:
            implemented = method.lower() in route["methods"]
            for headers in ({}, {"Authorization": "token wrong-token"}, {"Cookie": "_xsrf=x"}):
                r = httpx.request(method, url, headers=headers, json={}, timeout=30)
                allowed = {401, 403} if implemented else {401, 403, 405}
                assert r.status_code in allowed, f"{method} {url} with {headers} answered {r.status_code}: {r.text}"
                assert "connections" not in r.text and "namespaces" not in r.text
                checked += 1
            if implemented:
                r = client.request(method, url, json={"uri": "http://127.0.0.1:9"} if method == "POST" else None)
                assert r.status_code not in (401, 403), f"{method} {url} refused a logged-in call: {r.text}"
    assert checked >= 4 * len(METHODS) * 3


# -- connections ----------------------------------------------------------------------------------


def test_kernel_servers_are_found_and_their_keys_stay_on_the_server(
    jupyter: JupyterProcess, client: httpx.Client, upstream: ExoServe
) -> None:
    # what `%exo serve` writes; this test process stands in for the serving kernel (its pid is alive)
    discovery = jupyter.servers_dir / f"{os.getpid()}.json"
    info = {"uri": upstream.url, "key": upstream.key, "pid": os.getpid(), "namespace": NAMESPACE, "db": "x.duckdb"}
    discovery.write_text(json.dumps(info))
    try:
        r = client.get(jupyter.api("connections"))
        assert r.status_code == 200
        assert upstream.key not in r.text
        kernels = [c for c in r.json()["connections"] if c["kind"] == "kernel"]
        assert [c["id"] for c in kernels] == [f"kernel-{os.getpid()}"]
        assert kernels[0]["has_key"] is True and kernels[0]["namespace"] == NAMESPACE
        assert r.json()["servers_dir"] == str(jupyter.servers_dir)

        r = client.get(jupyter.api(f"proxy/kernel-{os.getpid()}/v0/namespaces"))
        assert r.status_code == 200, r.text
        assert upstream.key not in r.text
    finally:
        discovery.unlink()
    r = client.get(jupyter.api(f"proxy/kernel-{os.getpid()}/v0/namespaces"))
    assert r.status_code == 404
    assert "stopped serving" in r.json()["detail"]


def test_a_dead_kernel_discovery_file_is_not_listed(jupyter: JupyterProcess, client: httpx.Client) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = jupyter.servers_dir / f"{dead.pid}.json"
    path.write_text(json.dumps({"uri": "http://127.0.0.1:1", "key": "k", "pid": dead.pid, "namespace": "x"}))
    try:
        ids = [c["id"] for c in client.get(jupyter.api("connections")).json()["connections"]]
        assert f"kernel-{dead.pid}" not in ids
    finally:
        path.unlink()


def test_remote_connections_are_saved_privately_and_keys_never_returned(
    jupyter: JupyterProcess, client: httpx.Client, upstream: ExoServe
) -> None:
    r = client.post(
        jupyter.api("connections"),
        json={"uri": upstream.url + "/", "key": upstream.key, "name": "the server", "namespace": NAMESPACE},
    )
    assert r.status_code == 201, r.text
    assert upstream.key not in r.text
    body = r.json()
    conn_id = body["connection"]["id"]
    assert body["connection"]["uri"] == upstream.url and body["connection"]["has_key"] is True
    assert body["check"] == {"ok": True}

    saved = jupyter.connections_file
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["connections"][-1]["key"] == upstream.key

    listed = client.get(jupyter.api("connections"))
    assert upstream.key not in listed.text
    assert conn_id in [c["id"] for c in listed.json()["connections"]]

    assert client.delete(jupyter.api(f"connections/{conn_id}")).json() == {"removed": conn_id}
    assert conn_id not in client.get(jupyter.api("connections")).text
    r = client.delete(jupyter.api(f"connections/{conn_id}"))
    assert r.status_code == 404 and "no saved connection" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "the URI is missing"),
        ({"uri": "ftp://example.org"}, "is not an http(s)://host:port URI"),
        ({"uri": "http://user:pw@127.0.0.1:1"}, "base URI only"),
        ({"uri": "http://127.0.0.1:1", "key": 5}, "must be a string"),
    ],
)
def test_a_bad_connection_is_refused_with_a_reason(
    jupyter: JupyterProcess, client: httpx.Client, body: dict[str, Any], message: str
) -> None:
    r = client.post(jupyter.api("connections"), json=body)
    assert r.status_code == 400
    assert message in r.json()["detail"]


def test_an_unreachable_remote_is_saved_with_a_warning(jupyter: JupyterProcess, client: httpx.Client) -> None:
    r = client.post(jupyter.api("connections"), json={"uri": f"http://127.0.0.1:{free_port()}"})
    assert r.status_code == 201
    assert r.json()["check"]["ok"] is False
    assert "cannot reach" in r.json()["check"]["detail"]
    client.delete(jupyter.api(f"connections/{r.json()['connection']['id']}"))


# -- the proxy ------------------------------------------------------------------------------------


def test_proxy_runs_a_graph_and_retries_a_state_without_the_key_reaching_the_browser(
    jupyter: JupyterProcess, client: httpx.Client, upstream: ExoServe, worker: Worker
) -> None:
    conn = add_remote(client, jupyter, upstream.url, upstream.key, "upstream")
    base = jupyter.api(f"proxy/{conn}/v0/namespace/{NAMESPACE}")
    seen: list[str] = []

    def call(method: str, url: str, **kw: Any) -> httpx.Response:
        r = client.request(method, url, **kw)
        seen.append(r.text)
        return r

    (worker.cwd / BROKEN_FLAG).touch()
    graphs = call("GET", f"{base}/graphs/").json()["templates"]
    assert [g["name"] for g in graphs] == [GRAPH] and graphs[0]["validation_status"] == "VALID"
    assert {n["name"] for n in call("GET", f"{base}/nodes/").json()["nodes"]} == {"Split", "Work"}

    run = call("POST", f"{base}/graph/{GRAPH}/trigger", json={"store": {"items": "a,boom,c"}}).json()
    run_id = run["run_id"]
    summary = _wait_status(call, f"{base}/runs/{run_id}/summary", {"FAILED"})
    assert summary["nodes"]["work"] == {"SUCCESS": 2, "ERRORED": 1}

    runs = call("GET", f"{base}/runs", params={"status": "FAILED", "graph_name": GRAPH}).json()
    assert run_id in [r["run_id"] for r in runs["runs"]]

    page = call("GET", jupyter.api(f"run-states/{conn}/{NAMESPACE}/{run_id}"), params={"status": "ERRORED"}).json()
    assert page["total"] == 1
    failed = page["states"][0]
    assert failed["identifier"] == "work" and failed["error"] == "RuntimeError: boom is broken"

    state = call("GET", f"{base}/state/{failed['id']}").json()
    assert "Traceback" in state["error"] and state["inputs"] == {"item": "boom"}

    (worker.cwd / BROKEN_FLAG).unlink()
    retried = call("POST", f"{base}/state/{failed['id']}/manual-retry", json={"fanout_id": "lab-test-1"})
    assert retried.status_code == 200, retried.text
    summary = _wait_status(call, f"{base}/runs/{run_id}/summary", {"SUCCESS"})
    assert summary["nodes"]["work"] == {"SUCCESS": 3, "RETRY_CREATED": 1}

    again = call("POST", f"{base}/state/{failed['id']}/manual-retry", json={"fanout_id": "lab-test-2"})
    assert again.status_code == 400 and "already retried" in again.json()["detail"]

    assert all(upstream.key not in text for text in seen)


def _wait_status(call: Any, url: str, wanted: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        summary: dict[str, Any] = call("GET", url).json()
        if summary["status"] in wanted or time.monotonic() > deadline:
            assert summary["status"] in wanted, summary
            return summary
        time.sleep(0.2)


def test_run_states_pages_and_filters(
    jupyter: JupyterProcess, client: httpx.Client, upstream: ExoServe, worker: Worker
) -> None:
    conn = add_remote(client, jupyter, upstream.url, upstream.key, "pages")
    base = jupyter.api(f"proxy/{conn}/v0/namespace/{NAMESPACE}")
    items = ",".join(f"i{n}" for n in range(12))
    run_id = client.post(f"{base}/graph/{GRAPH}/trigger", json={"store": {"items": items}}).json()["run_id"]
    _wait_status(lambda m, u: client.request(m, u), f"{base}/runs/{run_id}/summary", {"SUCCESS"})
    url = jupyter.api(f"run-states/{conn}/{NAMESPACE}/{run_id}")
    first = client.get(url, params={"identifier": "work", "size": 5}).json()
    assert first["total"] == 12 and len(first["states"]) == 5
    last = client.get(url, params={"identifier": "work", "size": 5, "page": 3}).json()
    assert len(last["states"]) == 2
    ids = {
        s["id"]
        for p in (1, 2, 3)
        for s in client.get(url, params={"identifier": "work", "size": 5, "page": p}).json()["states"]
    }
    assert len(ids) == 12
    assert client.get(url, params={"status": "ERRORED"}).json()["total"] == 0
    bad = client.get(url, params={"size": 100000})
    assert bad.status_code == 400 and "size" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"v0/namespace/{NAMESPACE}/state/abc/secrets"),
        ("GET", "v0/state/abc/secrets"),
        ("POST", f"v0/namespace/{NAMESPACE}/states/enqueue"),
        ("POST", f"v0/namespace/{NAMESPACE}/state/abc/executed"),
        ("PUT", f"v0/namespace/{NAMESPACE}/graph/{GRAPH}"),
        ("GET", f"v0/namespace/{NAMESPACE}/../../docs"),
        ("GET", "docs"),
        ("GET", "openapi.json"),
    ],
)
def test_proxy_forwards_only_the_panels_routes(
    jupyter: JupyterProcess, client: httpx.Client, upstream: ExoServe, method: str, path: str
) -> None:
    conn = add_remote(client, jupyter, upstream.url, upstream.key, "narrow")
    r = client.request(method, jupyter.api(f"proxy/{conn}/{path}"))
    assert r.status_code in (403, 405), r.text
    if r.status_code == 403:
        assert "never go through the browser" in r.json()["detail"]


def test_unknown_connection_is_a_clear_404(jupyter: JupyterProcess, client: httpx.Client) -> None:
    r = client.get(jupyter.api("proxy/remote-nothere/v0/namespaces"))
    assert r.status_code == 404
    assert "no saved connection 'remote-nothere'" in r.json()["detail"]


def test_bad_upstream_answers_become_clear_messages(
    jupyter: JupyterProcess, client: httpx.Client, upstream: ExoServe, fake: str
) -> None:
    def get(uri: str, key: str | None = "k", path: str = "v0/namespaces") -> httpx.Response:
        conn = add_remote(client, jupyter, uri, key, uri)
        return client.get(jupyter.api(f"proxy/{conn}/{path}"))

    closed = f"http://127.0.0.1:{free_port()}"
    r = get(closed)
    assert r.status_code == 502 and r.json()["detail"].startswith(f"cannot reach the state manager {closed}")

    r = get(f"{fake}/html")
    assert r.status_code == 502
    assert "not JSON (text/html)" in r.json()["detail"] and "Exosphere state manager?" in r.json()["detail"]

    r = get(f"{fake}/boom")
    assert r.status_code == 502 and "failed (HTTP 500): database on fire" in r.json()["detail"]

    r = get(f"{fake}/slow")
    assert r.status_code == 504 and "did not answer within 2 s" in r.json()["detail"]

    r = get(upstream.url, key="not-the-key")
    assert r.status_code == 502
    assert "refused the API key" in r.json()["detail"] and "Invalid API key" in r.json()["detail"]
    assert "not-the-key" not in r.text

    r = get(f"{fake}/echo", key="echoed-secret-key")
    assert r.status_code == 200 and "echoed-secret-key" not in r.text and "[redacted]" in r.text

    r = get(upstream.url, key=upstream.key, path=f"v0/namespace/{NAMESPACE}/graph/nope")
    assert r.status_code == 404 and r.json()["detail"] == "graph 'nope' not found in namespace 'lab'"

    r = get(upstream.url, key=upstream.key, path=f"v0/namespace/{NAMESPACE}/graph/{GRAPH}/trigger")
    assert r.status_code == 403  # trigger is POST only

    conn = add_remote(client, jupyter, upstream.url, upstream.key, "validation")
    r = client.post(jupyter.api(f"proxy/{conn}/v0/namespace/{NAMESPACE}/state/abc/manual-retry"), json={})
    assert r.status_code == 422 and r.json()["detail"] == "fanout_id: Field required"
    r = client.post(jupyter.api(f"proxy/{conn}/v0/namespace/{NAMESPACE}/graph/{GRAPH}/trigger"), content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]


def test_proxy_cancels_a_pending_run(
    jupyter: JupyterProcess, client: httpx.Client, upstream: ExoServe, worker: Worker
) -> None:
    conn = add_remote(client, jupyter, upstream.url, upstream.key, "cancel")
    base = jupyter.api(f"proxy/{conn}/v0/namespace/{NAMESPACE}")
    body = {"store": {"items": "a"}, "start_delay": 600_000}  # its root waits: the run stays PENDING
    run_id = client.post(f"{base}/graph/{GRAPH}/trigger", json=body).json()["run_id"]
    assert client.get(f"{base}/runs/{run_id}/summary").json()["status"] == "PENDING"
    cancelled = client.post(f"{base}/runs/{run_id}/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancelled_count"] == 1
    summary = client.get(f"{base}/runs/{run_id}/summary").json()
    assert summary["status"] == "CANCELLED" and summary["nodes"]["split"] == {"CANCELLED": 1}
