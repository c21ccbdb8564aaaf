"""The state managers the panel can talk to: kernels that serve (`%exo serve`) and saved remote ones.

Kernel connections are read from the discovery files `%exo serve` writes (`serving.servers_dir()`),
on every request, so a kernel that starts or stops serving shows up or goes at once. Remote
connections live in one JSON file on the server's side (mode 0600: it holds their keys). Keys
never leave this module's callers in any answer sent to the browser: `Connection.public()` has none.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "Connection",
    "ConnectionProblem",
    "RemoteStore",
    "find",
    "kernel_connections",
    "servers_dir",
    "validate_uri",
]

KERNEL_PREFIX = "kernel-"
REMOTE_PREFIX = "remote-"
MAX_NAME = 80


class ConnectionProblem(ValueError):
    """A connection cannot be added or found; the message is shown in the panel as it is."""


@dataclass(frozen=True)
class Connection:
    id: str
    kind: str  # "kernel" | "remote"
    name: str
    uri: str
    key: str | None
    namespace: str | None = None
    db: str | None = None
    pid: int | None = None

    def public(self) -> dict[str, Any]:
        """What the browser may see: everything but the key (only whether there is one)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "uri": self.uri,
            "namespace": self.namespace,
            "db": self.db,
            "pid": self.pid,
            "has_key": bool(self.key),
        }


def validate_uri(uri: Any) -> str:
    if not isinstance(uri, str) or not uri.strip():
        raise ConnectionProblem("the URI is missing: give http(s)://host:port of a state manager")
    uri = uri.strip().rstrip("/")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectionProblem(f"{uri!r} is not an http(s)://host:port URI")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConnectionProblem(f"{uri!r}: give the state manager's base URI only (no user, query or fragment)")
    return uri


def kernel_connections() -> list[Connection]:
    """Kernels serving their embedded state manager now, newest discovery file last."""
    from ..notebook.serving import list_servers

    found = []
    for info in list_servers():
        uri = info.get("uri")
        pid = info.get("pid")
        if not isinstance(uri, str) or not isinstance(pid, int):
            continue
        key = info.get("key")
        namespace = info.get("namespace")
        db = info.get("db")
        found.append(
            Connection(
                id=f"{KERNEL_PREFIX}{pid}",
                kind="kernel",
                name=f"kernel {pid}",
                uri=uri.rstrip("/"),
                key=key if isinstance(key, str) and key else None,
                namespace=namespace if isinstance(namespace, str) else None,
                db=db if isinstance(db, str) else None,
                pid=pid,
            )
        )
    return found


def servers_dir() -> str:
    from ..notebook.serving import servers_dir as where

    return str(where())


class RemoteStore:
    """Saved remote state managers, in one private JSON file: `{"connections": [{id, name, uri, key, namespace}]}`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ConnectionProblem(f"cannot read the saved connections in {self.path}: {exc}") from None
        items = data.get("connections") if isinstance(data, dict) else None
        return [c for c in items or [] if isinstance(c, dict) and isinstance(c.get("id"), str)]

    def _write(self, items: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"connections": items}, f, indent=2)
        os.chmod(tmp, 0o600)  # the umask may only have narrowed it: be explicit
        os.replace(tmp, self.path)

    @staticmethod
    def _connection(item: dict[str, Any]) -> Connection:
        return Connection(
            id=item["id"],
            kind="remote",
            name=str(item.get("name") or item.get("uri")),
            uri=str(item.get("uri", "")),
            key=item.get("key") or None,
            namespace=item.get("namespace") or None,
        )

    def list(self) -> list[Connection]:
        with self._lock:
            return [self._connection(item) for item in self._read()]

    def add(self, uri: Any, key: Any = None, name: Any = None, namespace: Any = None) -> Connection:
        uri = validate_uri(uri)
        if key is not None and not isinstance(key, str):
            raise ConnectionProblem("the API key must be a string")
        if name is not None and not isinstance(name, str):
            raise ConnectionProblem("the name must be a string")
        if namespace is not None and not isinstance(namespace, str):
            raise ConnectionProblem("the namespace must be a string")
        name = (name or "").strip()[:MAX_NAME] or (urlsplit(uri).netloc or uri)
        item = {
            "id": f"{REMOTE_PREFIX}{secrets.token_hex(6)}",
            "name": name,
            "uri": uri,
            "key": (key or "").strip() or None,
            "namespace": (namespace or "").strip() or None,
        }
        with self._lock:
            items = self._read()
            items.append(item)
            self._write(items)
        return self._connection(item)

    def remove(self, connection_id: str) -> bool:
        with self._lock:
            items = self._read()
            kept = [c for c in items if c["id"] != connection_id]
            if len(kept) == len(items):
                return False
            self._write(kept)
            return True


def find(store: RemoteStore, connection_id: str) -> Connection:
    """A kernel or remote connection by id; a clear error when it is gone."""
    pool = kernel_connections() if connection_id.startswith(KERNEL_PREFIX) else store.list()
    for conn in pool:
        if conn.id == connection_id:
            return conn
    if connection_id.startswith(KERNEL_PREFIX):
        raise ConnectionProblem(
            f"kernel connection {connection_id!r} is gone: that kernel stopped serving (run `%exo serve` in it again)"
        )
    raise ConnectionProblem(f"no saved connection {connection_id!r}: it may have been removed")
