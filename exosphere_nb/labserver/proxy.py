"""Calls to a state manager on the browser's behalf: which routes may pass, and what comes back.

Only the routes the panel needs pass, each with its method: reading graphs, nodes, runs and
states, triggering, retrying and cancelling. Secrets and the runtime routes (claiming states,
reporting results) never go through the browser. The API key is added here, and an answer that
is not what a state manager would send becomes one clear `{"detail": ...}` message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from .connections import Connection

__all__ = ["ALLOWED", "ProxyAnswer", "allowed", "call", "detail_text", "translate"]

_SEG = r"[^/]+"
# (method, path pattern relative to the state manager's root)
ALLOWED: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (method, re.compile(f"^{pattern}$"))
    for method, pattern in (
        ("GET", "health"),
        ("GET", "v0/capabilities"),
        ("GET", "v0/namespaces"),
        ("GET", f"v0/namespace/{_SEG}/nodes/"),
        ("GET", f"v0/namespace/{_SEG}/graphs/"),
        ("GET", f"v0/namespace/{_SEG}/graph/{_SEG}"),
        ("GET", f"v0/namespace/{_SEG}/runs"),
        ("GET", f"v0/namespace/{_SEG}/runs/{_SEG}/summary"),
        ("GET", f"v0/namespace/{_SEG}/runs/[0-9]+/[0-9]+"),
        ("GET", f"v0/namespace/{_SEG}/runs/{_SEG}/outputs"),
        ("GET", f"v0/namespace/{_SEG}/state/{_SEG}"),
        ("GET", f"v0/namespace/{_SEG}/states/run/{_SEG}/graph"),
        ("GET", f"v0/namespace/{_SEG}/graph/{_SEG}/run/{_SEG}/node/{_SEG}"),
        ("POST", f"v0/namespace/{_SEG}/graph/{_SEG}/trigger"),
        ("POST", f"v0/namespace/{_SEG}/runs/{_SEG}/cancel"),
        ("POST", f"v0/namespace/{_SEG}/state/{_SEG}/manual-retry"),
    )
)
_UNSAFE_SEGMENTS = frozenset({"", ".", ".."})


def allowed(method: str, path: str) -> bool:
    segments = path.split("/")
    # `nodes/` and `graphs/` end with an empty segment: that one alone may be empty
    if any(s in _UNSAFE_SEGMENTS for s in (segments[:-1] if path.endswith("/") else segments)):
        return False
    return any(m == method and p.match(path) for m, p in ALLOWED)


@dataclass
class ProxyAnswer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def detail_text(detail: Any) -> str:
    """A state manager's `detail` as one line: FastAPI's validation lists become `where: message; ...`."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                msg = str(item.get("msg", item))
                parts.append(f"{loc}: {msg}" if loc else msg)
            else:
                parts.append(str(item))
        return "; ".join(parts) or "invalid request"
    if detail is None:
        return ""
    return json.dumps(detail)


def _where(conn: Connection) -> str:
    return f"the state manager {conn.name!r} ({conn.uri})" if conn.name != conn.uri else f"the state manager {conn.uri}"


def _redact(value: Any, key: str | None) -> Any:
    """Defence in depth: no state manager echoes its key, but if one did it must not reach the browser."""
    if not key:
        return value
    text = json.dumps(value)
    if key not in text:
        return value
    return json.loads(text.replace(json.dumps(key)[1:-1], "[redacted]"))


def _error(status: int, detail: str, **extra: Any) -> ProxyAnswer:
    return ProxyAnswer(status, {"detail": detail, **extra})


async def call(
    client: httpx.AsyncClient,
    conn: Connection,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes | None,
    timeout: float,
) -> ProxyAnswer:
    """Forward one allowed call; every failure is a ProxyAnswer with a message a person can act on."""
    if not allowed(method, path):
        return _error(
            403,
            f"{method} /{path} is not forwarded to state managers: the panel reads graphs, nodes, runs and "
            "states and may trigger, retry and cancel; secrets and runtime routes never go through the browser",
        )
    url = f"{conn.uri}/{quote(path, safe='/-_.~')}"
    headers = {"accept": "application/json"}
    if conn.key:
        headers["x-api-key"] = conn.key
    if body is not None:
        headers["content-type"] = "application/json"
    try:
        response = await client.request(method, url, params=query, content=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        return _error(504, f"{_where(conn)} did not answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        hint = " Is it still running?"
        if conn.kind == "kernel":
            hint = " Is the kernel still running and serving (`%exo serve`)?"
        return _error(502, f"cannot reach {_where(conn)}: {exc or type(exc).__name__}.{hint}")
    return translate(conn, response)


def translate(conn: Connection, response: httpx.Response) -> ProxyAnswer:
    status = response.status_code
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        data = response.json()
    except ValueError:
        shown = kind or "no content type"
        return _error(
            502,
            f"{_where(conn)} answered HTTP {status} with a body that is not JSON ({shown}): "
            "is this URI an Exosphere state manager?",
            upstream_status=status,
        )
    data = _redact(data, conn.key)
    if 200 <= status < 300:
        return ProxyAnswer(status, data)
    detail = detail_text(data.get("detail") if isinstance(data, dict) else data) or f"HTTP {status}"
    extra: dict[str, Any] = {"upstream_status": status}
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        extra["errors"] = [str(e) for e in data["errors"]]
    if status in (401, 403):
        fix = "edit the saved connection's key" if conn.kind == "remote" else "run `%exo serve` again in the kernel"
        return _error(502, f"{_where(conn)} refused the API key this server holds ({detail}): {fix}", **extra)
    if status >= 500:
        return _error(502, f"{_where(conn)} failed (HTTP {status}): {detail}", **extra)
    return _error(status, detail, **extra)
