"""The API key gate: every route but /health and the docs needs the key, checked before the body."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from server_helpers import KEY, MAX_BODY

from exosphere_nb.server.app import create_app
from exosphere_nb.server.auth import APIKeyMiddleware, is_loopback

PUBLIC = {"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
DUMMIES = {
    "namespace": "ns",
    "graph_name": "g",
    "state_id": "0" * 24,
    "run_id": str(uuid.uuid4()),
    "page": "1",
    "size": "10",
}


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: DUMMIES[m.group(1)], path)


def all_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route of the app: its OpenAPI paths plus the docs routes."""
    app = create_app(":memory:", api_key=KEY)
    routes = {(m.upper(), path) for path, item in app.openapi()["paths"].items() for m in item}
    for route in app.routes:  # the docs routes and anything left out of the schema
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD" and getattr(route, "path", None):
                routes.add((method, route.path))
    return sorted(routes)


ROUTES = all_routes()
PROTECTED = [(m, p) for m, p in ROUTES if p not in PUBLIC]


def test_the_route_list_covers_the_whole_contract() -> None:
    paths = {p for _, p in ROUTES}
    for expected in (
        "/v0/namespace/{namespace}/nodes/",
        "/v0/namespace/{namespace}/graph/{graph_name}",
        "/v0/namespace/{namespace}/graphs/",
        "/v0/namespace/{namespace}/graph/{graph_name}/trigger",
        "/v0/namespace/{namespace}/states/enqueue",
        "/v0/namespace/{namespace}/state/{state_id}/executed",
        "/v0/namespace/{namespace}/state/{state_id}/errored",
        "/v0/namespace/{namespace}/state/{state_id}/prune",
        "/v0/namespace/{namespace}/state/{state_id}/re-enqueue-after",
        "/v0/namespace/{namespace}/state/{state_id}/manual-retry",
        "/v0/namespace/{namespace}/state/{state_id}/secrets",
        "/v0/namespace/{namespace}/runs/{page}/{size}",
        "/v0/namespace/{namespace}/states/run/{run_id}/graph",
        "/v0/namespace/{namespace}/graph/{graph_name}/run/{run_id}/node/{state_id}",
        "/v0/namespaces",
        "/health",
        "/v0/capabilities",
        "/v0/namespace/{namespace}/states/heartbeat",
        "/v0/namespace/{namespace}/states/release",
        "/v0/namespace/{namespace}/runs",
        "/v0/namespace/{namespace}/runs/{run_id}/cancel",
        "/v0/namespace/{namespace}/runs/{run_id}/outputs",
        "/v0/namespace/{namespace}/runs/{run_id}/summary",
        "/v0/namespace/{namespace}/runs/{run_id}/wait",
        "/v0/namespace/{namespace}/state/{state_id}",
    ):
        assert expected in paths, expected
    assert len(PROTECTED) >= 25


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_every_route_refuses_a_missing_or_wrong_key(shared_anon: httpx.Client, method: str, path: str) -> None:
    url = _fill(path)
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": KEY + "x"}, {"x-api-key": ""}):
        res = shared_anon.request(method, url, headers=headers)
        assert res.status_code == 401, (method, url, headers, res.text)
        assert res.json() == {"detail": "Invalid API key"}


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_every_route_accepts_the_key(shared_client: httpx.Client, method: str, path: str) -> None:
    res = shared_client.request(method, _fill(path), json={} if method in ("POST", "PUT") else None)
    assert res.status_code not in (401, 403, 500), (method, path, res.text)


def test_public_routes_need_no_key(anon: httpx.Client) -> None:
    assert anon.get("/health").json() == {"message": "OK"}
    assert anon.get("/openapi.json").status_code == 200
    assert anon.get("/docs").status_code == 200


def test_the_key_is_checked_before_the_body(anon: httpx.Client) -> None:
    url = "/v0/namespace/ns/states/enqueue"
    headers = {"x-api-key": "wrong", "content-type": "application/json"}
    assert anon.post(url, content=b"{not json", headers=headers).status_code == 401
    assert anon.post(url, json={"nodes": 3}, headers=headers).status_code == 401
    big = b"[" + b"1," * MAX_BODY + b"1]"
    assert anon.post(url, content=big, headers=headers).status_code == 401


def test_unknown_paths_do_not_reveal_themselves_without_a_key(anon: httpx.Client) -> None:
    assert anon.get("/v0/namespace/ns/nothing-here").status_code == 401


def test_openapi_documents_the_key_and_the_extensions(anon: httpx.Client) -> None:
    spec = anon.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("in") == "header" and s.get("name") == "x-api-key" for s in schemes.values())
    tags = {t for item in spec["paths"].values() for op in item.values() for t in op.get("tags", [])}
    assert "extensions" in tags
    assert "extensions" in spec["paths"]["/v0/capabilities"]["get"]["tags"]


# -- without a key: loopback only -------------------------------------------------------------


@pytest.fixture
def keyless() -> Iterator[Any]:
    yield create_app(":memory:", api_key=None)


async def test_without_a_key_loopback_requests_need_none(keyless: Any) -> None:
    async with keyless.router.lifespan_context(keyless):
        transport = httpx.ASGITransport(app=keyless, client=("127.0.0.1", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            assert (await c.get("/v0/namespaces")).status_code == 200
            assert (await c.get("/v0/namespaces", headers={"x-api-key": "anything"})).status_code == 200


async def test_without_a_key_remote_clients_are_refused(keyless: Any) -> None:
    async with keyless.router.lifespan_context(keyless):
        transport = httpx.ASGITransport(app=keyless, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            res = await c.get("/v0/namespaces")
            assert res.status_code == 403 and "loopback" in res.json()["detail"]
            assert (await c.get("/health")).status_code == 200


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com", ""))


async def test_websockets_need_the_key_too() -> None:
    reached: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append("app")

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        reached.append(message)

    gate = APIKeyMiddleware(app, KEY)
    await gate({"type": "websocket", "path": "/v0/anything", "headers": []}, receive, send)
    assert reached == [{"type": "websocket.close", "code": 1008, "reason": "Invalid API key"}]
    reached.clear()
    await gate({"type": "websocket", "path": "/v0/anything", "headers": [(b"x-api-key", KEY.encode())]}, receive, send)
    assert reached == ["app"]
