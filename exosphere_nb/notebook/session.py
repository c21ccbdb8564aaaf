"""The kernel's session: which state manager the notebook talks to, and sync calls into it.

Magics and widgets call the async SDK from the kernel's thread (or a widget callback's thread);
`Session.call` runs the coroutine on the process's background loop and waits for it, so the loop
keeps serving runtimes meanwhile.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import resolve_target
from ..loop import in_background_loop, run_sync
from ..runtime import started_runtimes
from ..state_manager import StateManager

if TYPE_CHECKING:
    from ..engine.engine import Engine

__all__ = ["Session", "current"]

T = TypeVar("T")
DEFAULT_NAMESPACE = "default"


class Session:
    def __init__(self) -> None:
        self.namespace = DEFAULT_NAMESPACE
        self._uri: str | None = None
        self._key: str | None = None
        self._sm: StateManager | None = None
        self.server: Any = None  # set by `%exo serve`: the kernel's published HTTP server

    def connect(self, target: str | None = None, key: str | None = None, namespace: str | None = None) -> StateManager:
        """`None`: the embedded default; a DuckDB path, `duckdb://...`, `:memory:`, or an http(s) URI."""
        if (
            target is not None
            and not target.startswith(("http://", "https://", "duckdb://"))
            and target not in (":memory:", "embedded")
        ):
            if "://" in target:
                raise ValueError(
                    f"cannot connect to {target!r}: use http(s)://host:port, duckdb://PATH, a DuckDB file path or :memory:"
                )
            target = f"duckdb://{target}"
        resolve_target(target, key)  # validates before anything changes
        self._uri, self._key = target, key
        if namespace:
            self.namespace = namespace
        self._sm = None
        return self.sm

    @property
    def sm(self) -> StateManager:
        if self._sm is None or self._sm.namespace != self.namespace:
            self._sm = StateManager(self.namespace, state_manager_uri=self._uri, key=self._key)
        return self._sm

    @property
    def target(self) -> Any:
        return resolve_target(self._uri, self._key)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        """Run an SDK coroutine on the background loop and return its result (from any other thread)."""
        if in_background_loop():
            coro.close()
            raise RuntimeError("Session.call() on the background loop: await the coroutine instead")
        return run_sync(coro, timeout)

    def engine(self) -> Engine | None:
        """The embedded engine behind this session (None when connected to a remote state manager)."""
        target = self.target
        if not target.embedded:
            return None
        from ..client.embedded import get_engine

        return run_sync(get_engine(target.db))

    def status(self) -> dict[str, Any]:
        target = self.target
        info: dict[str, Any] = {
            "namespace": self.namespace,
            "state_manager": target.db if target.embedded else target.uri,
            "mode": "embedded" if target.embedded else "remote",
            "runtimes": [r.info() for r in started_runtimes()],
            "server": getattr(self.server, "url", None),
        }
        engine = self.engine()
        if engine is not None:

            async def snapshot() -> dict[str, Any]:
                return engine.queue_snapshot()

            info.update(run_sync(snapshot()))
        return info


_current = Session()


def current() -> Session:
    return _current
