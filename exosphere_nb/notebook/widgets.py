"""Live notebook widgets (anywidget): a run's graph, a graph template, a runs table and a states table.

Each widget talks to a `StateManager` (embedded or remote). All SDK calls run on the process's
background loop; the kernel's thread only schedules them, so a cell that blocks (or a run of 100k
states) never stalls the widgets or the other way round. Following a run is one refresher coroutine
per widget on that loop: it reads `run_status` at most every `interval` seconds and sends one
batched update (`hold_sync`) only when something changed, then stops once the run is finished.

The frontend code is `static/widgets.js` / `static/widgets.css` (plain ES module, shipped in the
package, nothing fetched from a CDN). Synced traits hold only what is displayed: SVG, counts, rows.
Secrets never reach a widget (no call used here returns secret values).

Every widget also has a stable `text/plain` and a static `text/html` repr (`text()`, `to_html()`),
so notebooks render on GitHub / nbconvert and compare cleanly under nbval.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import math
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from ..errors import BadRequestError, NotFoundError
from ..loop import background_loop, in_background_loop, run_on_loop, run_sync
from .render import (
    attach_errors,
    escape,
    format_counts,
    graph_dot,
    svg_or_message,
)

__all__ = ["GraphView", "RunView", "RunsTable", "StatesTable", "page_states"]

STATIC = Path(__file__).with_name("static")
STATUS_ORDER = (
    "CREATED",
    "QUEUED",
    "EXECUTED",
    "SUCCESS",
    "ERRORED",
    "NEXT_CREATED_ERROR",
    "RETRY_CREATED",
    "PRUNED",
    "CANCELLED",
)
PENDING_STATUSES = frozenset({"CREATED", "QUEUED", "EXECUTED"})
_TEXT_LIMIT = 300
_ERROR_LIMIT = 600
_LOAD_TIMEOUT = 60.0

_pool_lock = threading.Lock()
_pool_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _static(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads for Graphviz subprocesses, so the background loop never waits on a layout."""
    global _pool_executor
    with _pool_lock:
        if _pool_executor is None:
            _pool_executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="exo-widgets")
        return _pool_executor


async def _render(dot: str) -> tuple[str, str]:
    return await asyncio.get_running_loop().run_in_executor(_pool(), svg_or_message, dot)


# -- small helpers --------------------------------------------------------------------------------


def _clip(value: Any, limit: int = _TEXT_LIMIT) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail(value: Any, limit: int = _ERROR_LIMIT) -> str:
    """The end of a long text (a traceback's last lines say what went wrong)."""
    text = "" if value is None else str(value)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _last_line(value: Any) -> str:
    lines = [ln.strip() for ln in str(value or "").splitlines() if ln.strip()]
    return _clip(lines[-1], 200) if lines else ""


def _iso(ms: Any) -> str:
    if isinstance(ms, int | float):
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()
    return str(ms or "")


def _nonzero(counts: Mapping[str, Any] | None) -> dict[str, int]:
    return {k: int(v) for k, v in (counts or {}).items() if v}


def _ordered(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    known = [(s, counts[s]) for s in STATUS_ORDER if counts.get(s)]
    return known + sorted((s, n) for s, n in counts.items() if s not in STATUS_ORDER and n)


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{s} {n}" for s, n in _ordered(counts))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return _clip(f"{type(exc).__name__}: {text}", _ERROR_LIMIT)


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise BadRequestError(f"{what} must be a JSON object of strings: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadRequestError(f"{what} must be an object of string values")
    return dict(value)


def _embedded_db(sm: Any) -> str | None:
    target = getattr(sm, "_target", None)
    if target is not None and getattr(target, "embedded", False):
        return target.db
    return None


def _state_row(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(rec.get("id", "")),
        "identifier": str(rec.get("identifier", "")),
        "node_name": str(rec.get("node_name", "")),
        "status": str(rec.get("status", "")),
        "retry_count": int(rec.get("retry_count") or 0),
        "error": _tail(rec.get("error")),
        "error_line": _last_line(rec.get("error")),
        "inputs": _clip(rec.get("inputs")),
        "outputs": _clip(rec.get("outputs")),
        "created_at": _iso(rec.get("created_ms", rec.get("created_at"))),
        "updated_at": _iso(rec.get("updated_ms", rec.get("updated_at"))),
    }


async def page_states(
    sm: Any, run_id: str, page: int = 1, size: int = 50, identifier: str | None = None, status: str | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """One page of a run's states (in creation order) as display rows: `(total, rows)`.

    Embedded: a paged query on the engine's store. Remote: `run_graph` (every state's id and status),
    sliced here, then `get_state` for the rows of the page (inputs/outputs when the server has it).
    """
    page, size = max(1, int(page)), max(1, int(size))
    db = _embedded_db(sm)
    if db is not None:
        from ..client.embedded import get_engine

        async def query() -> tuple[int, list[dict[str, Any]]]:
            engine = await get_engine(db)
            await engine.committed()
            found = engine.store.run_exists(run_id)
            if found is None or found[0] != sm.namespace:
                raise NotFoundError(f"run {run_id!r} not found in namespace {sm.namespace!r}")
            return engine.store.list_states(run_id, page, size, identifier=identifier, status=status)

        total, recs = await run_on_loop(query())
        return total, [_state_row(r) for r in recs]
    graph = await sm.run_graph(run_id)
    if graph.get("graph_name") is None and not graph.get("nodes"):
        raise NotFoundError(f"run {run_id!r} not found")
    nodes = [
        n
        for n in graph["nodes"]
        if (identifier is None or n["identifier"] == identifier) and (status is None or n["status"] == status)
    ]
    chunk = nodes[(page - 1) * size : page * size]
    details = await asyncio.gather(*(sm.get_state(n["id"]) for n in chunk), return_exceptions=True)
    rows = []
    for n, d in zip(chunk, details):
        rows.append(_state_row({**n, **d} if isinstance(d, dict) else n))
    return len(nodes), rows


def _pages(total: int, size: int) -> int:
    return max(1, math.ceil(total / max(1, size)))


# -- the base -------------------------------------------------------------------------------------


class _ExoWidget(anywidget.AnyWidget):
    """Threading, actions and reprs shared by the exosphere widgets."""

    _esm = _static("widgets.js")
    _css = _static("widgets.css")
    _kind = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    busy = t.Int(0).tag(sync=True)

    _actions: tuple[str, ...] = ("refresh",)

    def __init__(self, sm: Any, **kwargs: Any) -> None:
        self._sm = sm
        self._lock = threading.RLock()
        self._closed = False
        self._gens: dict[str, int] = {}
        self._follower: concurrent.futures.Future[Any] | None = None
        self._follow_token: object | None = None
        self._follow_again = False
        super().__init__(**kwargs)
        self.on_msg(self._on_frontend_msg)

    # -- reprs --------------------------------------------------------------------------------

    def text(self) -> str:  # pragma: no cover - every subclass overrides
        return type(self).__name__

    def to_html(self) -> str:  # pragma: no cover - every subclass overrides
        return f"<pre>{escape(self.text())}</pre>"

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        bundle = super()._repr_mimebundle_(**kwargs)
        data, meta = bundle if isinstance(bundle, tuple) else (bundle or {}, {})
        with self._lock:
            data = {**data, "text/plain": self.text(), "text/html": self.to_html()}
        return data, meta

    def _html_messages(self) -> str:
        out = ""
        if self.error:
            out += f'<div class="exo-error">{escape(self.error)}</div>'
        return out

    # -- state updates from any thread --------------------------------------------------------

    def _apply(self, _gen: tuple[str, int] | None = None, **updates: Any) -> bool:
        """Set traits in one batched message (only those that changed); from any thread.

        Off the main thread the update runs in an empty context, so ipykernel tags the comm message
        with the request the kernel is serving now (its fallback for threads), not with the stale
        one a background task inherited when it was scheduled: frontends and nbclient then apply it.
        """
        if threading.current_thread() is threading.main_thread():
            return self._apply_now(_gen, updates)
        return contextvars.Context().run(self._apply_now, _gen, updates)

    def _apply_now(self, gen: tuple[str, int] | None, updates: dict[str, Any]) -> bool:
        with self._lock:
            if self._closed or (gen is not None and self._gens.get(gen[0]) != gen[1]):
                return False
            changed = {k: v for k, v in updates.items() if getattr(self, k) != v}
            if changed:
                with self.hold_sync():
                    for k, v in changed.items():
                        setattr(self, k, v)
            return True

    def _next_gen(self, key: str) -> tuple[str, int]:
        with self._lock:
            self._gens[key] = self._gens.get(key, 0) + 1
            return key, self._gens[key]

    # -- running work on the background loop --------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> concurrent.futures.Future[Any]:
        """Run an action on the background loop; failures show in `error` (and in the returned future)."""
        return asyncio.run_coroutine_threadsafe(self._guard(coro, what), background_loop())

    async def _guard(self, coro: Coroutine[Any, Any, Any], what: str) -> Any:
        with self._lock:
            self._apply(busy=self.busy + 1)
        try:
            result = await coro
        except Exception as exc:
            self._apply(error=f"{what} failed: {_describe(exc)}")
            raise
        finally:
            with self._lock:
                self._apply(busy=max(0, self.busy - 1))
        return result

    def _load_now(self, coro: Coroutine[Any, Any, Any]) -> None:
        """The first load, synchronously (so the first repr is complete) unless on the loop itself."""
        if in_background_loop():
            self._spawn(coro, "loading")
            return
        try:
            run_sync(coro, _LOAD_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def _follow(self, step: Callable[[], Coroutine[Any, Any, bool]], interval: float) -> None:
        """Call `step` every `interval` s on the background loop until it returns False or we close.

        At most one follower runs per widget; asking while one runs makes it go on (even if its
        last step just said "done"), so a retry right as a run ends is still followed.
        """
        with self._lock:
            if self._closed:
                return
            self._follow_again = True
            if self._follow_token is not None:
                return
            token = self._follow_token = object()
            self._follower = asyncio.run_coroutine_threadsafe(
                self._follow_loop(step, interval, token), background_loop()
            )

    async def _follow_loop(self, step: Callable[[], Coroutine[Any, Any, bool]], interval: float, token: object) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        self._apply(live=True)
        try:
            while True:
                with self._lock:
                    if self._closed or self._follow_token is not token:
                        return
                    self._follow_again = False
                began = loop.time()
                try:
                    more = await step()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a flaky connection: show it, keep trying for a while
                    failures += 1
                    self._apply(error=f"refresh failed: {_describe(exc)}")
                    more = failures < 10
                if not more:
                    with self._lock:
                        if not self._follow_again and self._follow_token is token:
                            self._follow_token = None  # retired: the next _follow() starts a new loop
                            return
                    continue
                # at most one step per interval, and never fetching more than a third of the time
                # (a slow server, or a plain-v0 one that sends every state for each status read)
                spent = loop.time() - began
                await asyncio.sleep(max(interval * (1 + min(failures, 8)), 3 * spent) - spent)
        finally:
            with self._lock:
                if self._follow_token is token:
                    self._follow_token = None
                if self._follow_token is None:  # no newer follower took over
                    self._apply(live=False)

    @property
    def following(self) -> bool:
        """True while a refresher runs for this widget (a run being followed, an auto-refresh)."""
        fut = self._follower
        return fut is not None and not fut.done()

    def _stop_following(self) -> None:
        with self._lock:
            self._follow_token = None
            self._follow_again = False
            fut = self._follower
        if fut is not None and not fut.done():
            fut.cancel()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._stop_following()
        super().close()

    # -- frontend messages --------------------------------------------------------------------

    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any = None) -> None:
        """Messages from the browser (`model.send`): `{"type": <action>, ...}`; never raises."""
        try:
            if not isinstance(content, dict) or content.get("type") not in self._actions:
                raise BadRequestError(f"unknown widget message {content!r}")
            args = {k: v for k, v in content.items() if k != "type"}
            getattr(self, str(content["type"]))(**args)
        except Exception as exc:
            self._apply(error=_describe(exc))

    def dismiss(self) -> None:
        self._apply(error="", message="")

    def refresh(self) -> concurrent.futures.Future[Any]:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


# -- a run ----------------------------------------------------------------------------------------


class RunView(_ExoWidget):
    """A run on its graph: per-node state counts (`97 ✓ 2 ✗ 1 ▶`), live while the run goes.

    Click a node to list its states (paged) and retry failed ones; cancel the run or retry every
    failed state from the toolbar. Refreshes at most every `interval` seconds, only when changed.
    """

    _kind = t.Unicode("run").tag(sync=True)
    run_id = t.Unicode("").tag(sync=True)
    graph_name = t.Unicode("").tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    counts = t.Dict().tag(sync=True)
    node_counts = t.Dict().tag(sync=True)
    svg = t.Unicode("").tag(sync=True)
    live = t.Bool(False).tag(sync=True)
    selected = t.Unicode("").tag(sync=True)
    node_status = t.Unicode("").tag(sync=True)
    node_page = t.Int(1).tag(sync=True)
    node_total = t.Int(0).tag(sync=True)
    node_states = t.List().tag(sync=True)
    page_size = t.Int(20).tag(sync=True)

    _actions = ("refresh", "select", "retry", "retry_failed", "cancel", "dismiss")

    def __init__(self, sm: Any, run_id: str, *, interval: float = 0.3, page_size: int = 20) -> None:
        super().__init__(sm, run_id=str(run_id), page_size=max(1, int(page_size)))
        self.interval = max(0.1, float(interval))
        self._template: list[dict[str, Any]] | None = None
        self._published: Any = None
        self._refreshing: asyncio.Lock | None = None
        self._load_now(self._first_load())

    # -- loading --------------------------------------------------------------------------------

    async def _first_load(self) -> None:
        if await self._refresh_once():
            self._follow(self._refresh_once, self.interval)

    async def _template_nodes(self, graph_name: str) -> list[dict[str, Any]]:
        if self._template is None:
            try:
                graph = await self._sm.get_graph(graph_name)
                self._template = [
                    {k: n.get(k) for k in ("identifier", "node_name", "next_nodes", "unites")}
                    for n in graph.get("nodes") or []
                ]
            except Exception:  # the template may be gone: show the run's nodes without edges
                self._template = []
        return self._template

    async def _refresh_once(self) -> bool:
        """Fetch the run's counts and publish them if they changed; True while the run is pending."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            summary = await self._sm.run_status(self.run_id)
            status = str(summary.get("status") or "")
            counts = _nonzero(summary.get("counts"))
            node_counts = {k: _nonzero(v) for k, v in sorted((summary.get("nodes") or {}).items())}
            graph_name = str(summary.get("graph_name") or "")
            key = (status, counts, node_counts)
            if key != self._published:
                nodes = list(await self._template_nodes(graph_name))
                known = {n["identifier"] for n in nodes}
                nodes += [{"identifier": i, "node_name": ""} for i in node_counts if i not in known]
                svg, problem = await _render(graph_dot({"nodes": nodes}, node_counts))
                updates: dict[str, Any] = {
                    "graph_name": graph_name,
                    "status": status,
                    "counts": counts,
                    "node_counts": node_counts,
                }
                if svg:
                    updates["svg"] = svg
                elif problem:
                    updates["error"] = f"graph layout: {problem}"
                panel: dict[str, Any] = {}
                with self._lock:
                    panel_gen, selected = self._gens.get("node"), self.selected
                    page, node_status = self.node_page, self.node_status
                if selected:  # the open node's list follows along, in the same message
                    panel = await self._node_page(selected, page, node_status)
                with self._lock:
                    if self._gens.get("node") == panel_gen:  # unless a click changed it meanwhile
                        updates.update(panel)
                    if self._apply(**updates):
                        self._published = key
            return status == "PENDING"

    async def _node_page(self, identifier: str, page: int, status: str) -> dict[str, Any]:
        total, rows = await page_states(self._sm, self.run_id, page, self.page_size, identifier or None, status or None)
        pages = _pages(total, self.page_size)
        if page > pages:
            page = pages
            total, rows = await page_states(
                self._sm, self.run_id, page, self.page_size, identifier or None, status or None
            )
        return {"node_states": rows, "node_total": total, "node_page": page}

    # -- actions (each returns a concurrent future; errors also land in `error`) -----------------

    def refresh(self) -> concurrent.futures.Future[Any]:
        """Fetch now, the template too (and follow again if the run is pending)."""

        async def go() -> None:
            self._template, self._published = None, None
            if await self._refresh_once():
                self._follow(self._refresh_once, self.interval)

        return self._spawn(go(), "refresh")

    def select(self, identifier: str = "", page: int = 1, status: str = "") -> concurrent.futures.Future[Any]:
        """List the states of node `identifier` (a page of `page_size`, optionally one status only)."""
        identifier, status, page = str(identifier or ""), str(status or ""), max(1, int(page or 1))

        async def go() -> None:
            gen = self._next_gen("node")
            self._apply(selected=identifier, node_status=status, node_page=page)
            if not identifier:
                self._apply(_gen=gen, node_states=[], node_total=0)
                return
            self._apply(_gen=gen, **await self._node_page(identifier, page, status))

        return self._spawn(go(), f"listing the states of {identifier!r}")

    select_node = select

    def retry(self, state_id: str) -> concurrent.futures.Future[Any]:
        """Manually retry one failed (or pruned / cancelled) state of this run."""

        async def go() -> dict[str, Any]:
            result = await self._sm.retry_state(str(state_id))
            self._apply(message=f"state {state_id} retried as {result.get('id')}", error="")
            await self._after_change()
            return result

        return self._spawn(go(), f"retrying state {state_id}")

    def retry_failed(self) -> concurrent.futures.Future[Any]:
        """Retry every ERRORED / NEXT_CREATED_ERROR state of the run."""

        async def go() -> list[str]:
            ids = await self._sm.retry_failed(self.run_id)
            self._apply(message=f"retried {len(ids)} failed state{'s' if len(ids) != 1 else ''}", error="")
            await self._after_change()
            return ids

        return self._spawn(go(), "retrying failed states")

    def cancel(self) -> concurrent.futures.Future[Any]:
        """Cancel the run: its waiting states become CANCELLED."""

        async def go() -> dict[str, Any]:
            result = await self._sm.cancel_run(self.run_id)
            self._apply(message="run cancelled", error="")
            await self._after_change()
            return result

        return self._spawn(go(), "cancelling the run")

    async def _after_change(self) -> None:
        if await self._refresh_once():
            self._follow(self._refresh_once, self.interval)

    def wait(self, timeout: float | None = None) -> RunView:
        """Block until the view has followed the run to its end (for scripts and tests); returns self.

        Raises TimeoutError after `timeout` seconds; the view keeps following.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            fut = self._follower
            if fut is None or fut.done():
                if fut is self._follower:
                    return self
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                fut.result(remaining)
            except concurrent.futures.CancelledError:
                pass
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"the run was still going after {timeout:g} s") from None

    # -- reprs ----------------------------------------------------------------------------------

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def progress(self) -> float:
        """Share of the run's states that are finished (0..1)."""
        total = self.total
        if not total:
            return 0.0
        return sum(n for s, n in self.counts.items() if s not in PENDING_STATUSES) / total

    def text(self) -> str:
        states = f"{self.total}: {_counts_text(self.counts)}" if self.counts else "0"
        return f"RunView(graph={self.graph_name!r}, status={self.status or '?'}, states={states})"

    def to_html(self) -> str:
        done = round(self.progress * 100)
        rows = "".join(
            f"<tr><td>{escape(ident)}</td><td>{escape(format_counts(c))}</td><td>{escape(_counts_text(c))}</td></tr>"
            for ident, c in self.node_counts.items()
        )
        return (
            '<div class="exo-static exo-run">'
            f"<p><b>Run</b> of graph <code>{escape(self.graph_name)}</code>: "
            f"<b>{escape(self.status or '?')}</b> — {self.total} states, {done}% done "
            f"({escape(format_counts(self.counts)) or 'no states'})</p>"
            f"{self._html_messages()}"
            f'<div class="exo-svg">{self.svg}</div>'
            "<table><thead><tr><th>node</th><th>states</th><th>by status</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )


# -- a graph template -----------------------------------------------------------------------------


class GraphView(_ExoWidget):
    """A graph template: its DAG, its validation status, and each validation error on its node."""

    _kind = t.Unicode("graph").tag(sync=True)
    graph_name = t.Unicode("").tag(sync=True)
    validation_status = t.Unicode("").tag(sync=True)
    validation_errors = t.List().tag(sync=True)
    node_errors = t.Dict().tag(sync=True)
    graph_errors = t.List().tag(sync=True)
    nodes = t.List().tag(sync=True)
    svg = t.Unicode("").tag(sync=True)
    live = t.Bool(False).tag(sync=True)
    selected = t.Unicode("").tag(sync=True)

    _actions = ("refresh", "dismiss")

    def __init__(self, sm: Any, graph_name: str, *, interval: float = 0.5) -> None:
        super().__init__(sm, graph_name=str(graph_name))
        self.interval = max(0.1, float(interval))
        self._load_now(self._first_load())

    async def _first_load(self) -> None:
        if await self._refresh_once():
            self._follow(self._refresh_once, self.interval)

    async def _refresh_once(self) -> bool:
        """Fetch the template; True while its validation is still PENDING."""
        graph = await self._sm.get_graph(self.graph_name)
        nodes = [
            {
                "identifier": str(n.get("identifier")),
                "node_name": str(n.get("node_name") or ""),
                "namespace": str(n.get("namespace") or ""),
                "next_nodes": list(n.get("next_nodes") or []),
                "unites": n.get("unites"),
                "inputs": {str(k): _clip(v) for k, v in (n.get("inputs") or {}).items()},
            }
            for n in graph.get("nodes") or []
        ]
        errors = [str(e) for e in graph.get("validation_errors") or []]
        per_node, rest = attach_errors(errors, [n["identifier"] for n in nodes])
        svg, problem = await _render(graph_dot({"nodes": nodes}, node_errors=per_node))
        status = str(graph.get("validation_status") or "")
        updates: dict[str, Any] = {
            "validation_status": status,
            "validation_errors": errors,
            "node_errors": per_node,
            "graph_errors": rest,
            "nodes": nodes,
        }
        if svg:
            updates["svg"] = svg
        elif problem:
            updates["error"] = f"graph layout: {problem}"
        self._apply(**updates)
        return status == "PENDING"

    def refresh(self) -> concurrent.futures.Future[Any]:
        async def go() -> None:
            if await self._refresh_once():
                self._follow(self._refresh_once, self.interval)

        return self._spawn(go(), "refresh")

    def text(self) -> str:
        extra = f", errors={len(self.validation_errors)}" if self.validation_errors else ""
        return (
            f"GraphView(graph={self.graph_name!r}, validation={self.validation_status or '?'}, "
            f"nodes={len(self.nodes)}{extra})"
        )

    def to_html(self) -> str:
        items = "".join(
            f"<li><code>{escape(ident)}</code>: {escape(err)}</li>"
            for ident, errs in self.node_errors.items()
            for err in errs
        ) + "".join(f"<li>{escape(err)}</li>" for err in self.graph_errors)
        errors = f'<ul class="exo-errors">{items}</ul>' if items else ""
        return (
            '<div class="exo-static exo-graph">'
            f"<p><b>Graph</b> <code>{escape(self.graph_name)}</code>: <b>{escape(self.validation_status or '?')}</b>"
            f", {len(self.nodes)} nodes</p>{self._html_messages()}{errors}"
            f'<div class="exo-svg">{self.svg}</div></div>'
        )


# -- runs -----------------------------------------------------------------------------------------

_RUN_KEYS = (
    "run_id",
    "graph_name",
    "status",
    "success_count",
    "pending_count",
    "errored_count",
    "retried_count",
    "cancelled_count",
    "total_count",
    "created_at",
)


class RunsTable(_ExoWidget):
    """Runs, newest first: filter by graph and status, page, trigger new runs, auto-refresh."""

    _kind = t.Unicode("runs").tag(sync=True)
    graph_name = t.Unicode("").tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    page = t.Int(1).tag(sync=True)
    page_size = t.Int(20).tag(sync=True)
    total = t.Int(0).tag(sync=True)
    rows = t.List().tag(sync=True)
    graphs = t.List().tag(sync=True)
    auto_refresh = t.Bool(True).tag(sync=True)
    live = t.Bool(False).tag(sync=True)
    selected_run = t.Unicode("").tag(sync=True)

    _actions = ("refresh", "trigger", "cancel", "dismiss")

    def __init__(
        self,
        sm: Any,
        graph_name: str | None = None,
        status: str | None = None,
        *,
        page_size: int = 20,
        auto_refresh: bool = True,
        interval: float = 2.0,
        idle_timeout: float = 600.0,
    ) -> None:
        self._ready = False
        super().__init__(
            sm,
            graph_name=graph_name or "",
            status=(status or "").upper(),
            page_size=max(1, int(page_size)),
            auto_refresh=bool(auto_refresh),
        )
        self.interval = max(0.25, float(interval))
        self.idle_timeout = float(idle_timeout)
        self._load_now(self._reload(with_graphs=True))
        self._ready = True
        if self.auto_refresh:
            self._start_auto()

    async def _reload(self, with_graphs: bool = False) -> bool:
        gen = self._next_gen("rows")
        page, size = self.page, self.page_size
        listing = await self._sm.list_runs(
            graph_name=self.graph_name or None, status=self.status or None, page=page, size=size
        )
        total = int(listing.get("total") or 0)
        if page > _pages(total, size):
            page = _pages(total, size)
            listing = await self._sm.list_runs(
                graph_name=self.graph_name or None, status=self.status or None, page=page, size=size
            )
        rows = [{k: r.get(k) for k in _RUN_KEYS} for r in listing.get("runs") or []]
        updates: dict[str, Any] = {"rows": rows, "total": total, "page": page}
        if with_graphs:
            try:
                updates["graphs"] = sorted(str(g.get("name")) for g in await self._sm.list_graphs())
            except Exception:  # the graph list only fills the form's choices: the runs still show
                pass
        before = (self.rows, self.total)
        self._apply(_gen=gen, **updates)
        return before != (rows, total)

    def _start_auto(self) -> None:
        loop_time = background_loop().time
        last_change = [loop_time()]

        async def tick() -> bool:
            if not self.auto_refresh:
                return False
            changed = await self._reload(with_graphs=False)
            now = loop_time()
            if changed:
                last_change[0] = now
            elif now - last_change[0] > self.idle_timeout:
                self._apply(
                    auto_refresh=False,
                    message=f"auto-refresh paused after {self.idle_timeout:g} s without changes",
                )
                return False
            return True

        self._follow(tick, self.interval)

    @t.observe("graph_name", "status", "page", "page_size")
    def _filters_changed(self, change: Any) -> None:
        if getattr(self, "_ready", False) and not self._closed:
            self.refresh()

    @t.observe("auto_refresh")
    def _auto_changed(self, change: Any) -> None:
        if not getattr(self, "_ready", False) or self._closed:
            return
        if change["new"]:
            self._start_auto()
        else:
            self._stop_following()

    def refresh(self) -> concurrent.futures.Future[Any]:
        return self._spawn(self._reload(with_graphs=True), "listing runs")

    def trigger(
        self,
        graph_name: str | None = None,
        inputs: Any = None,
        store: Any = None,
        start_delay: int = 0,
    ) -> concurrent.futures.Future[Any]:
        """Trigger a run (inputs / store: dicts of strings or JSON text); the table shows it at once."""

        async def go() -> dict[str, Any]:
            name = graph_name or self.graph_name
            if not name:
                raise BadRequestError("choose a graph to trigger")
            result = await self._sm.trigger(
                name,
                inputs=_str_map(inputs, "inputs"),
                store=_str_map(store, "store"),
                start_delay=int(start_delay or 0),
            )
            self._apply(message=f"triggered run {result.get('run_id')} of {name!r}", error="")
            await self._reload()
            if self.auto_refresh:
                self._start_auto()
            return result

        return self._spawn(go(), "trigger")

    def cancel(self, run_id: str) -> concurrent.futures.Future[Any]:
        async def go() -> dict[str, Any]:
            result = await self._sm.cancel_run(str(run_id))
            self._apply(message=f"run {run_id} cancelled", error="")
            await self._reload()
            return result

        return self._spawn(go(), f"cancelling run {run_id}")

    def text(self) -> str:
        return (
            f"RunsTable(graph={self.graph_name or 'any'!r}, status={self.status or 'any'}, runs={self.total}, "
            f"page={self.page}/{_pages(self.total, self.page_size)})"
        )

    def to_html(self) -> str:
        body = ""
        for r in self.rows:
            total = int(r.get("total_count") or 0)
            done = total - int(r.get("pending_count") or 0)
            pct = round(100 * done / total) if total else 0
            body += (
                f"<tr><td><code>{escape(r.get('run_id'))}</code></td><td>{escape(r.get('graph_name'))}</td>"
                f"<td>{escape(r.get('status'))}</td><td>{done}/{total} ({pct}%)</td>"
                f"<td>{int(r.get('success_count') or 0)} ✓ {int(r.get('errored_count') or 0)} ✗</td>"
                f"<td>{escape(r.get('created_at'))}</td></tr>"
            )
        return (
            '<div class="exo-static exo-runs">'
            f"<p><b>Runs</b> (graph {escape(self.graph_name or 'any')}, status {escape(self.status or 'any')}): "
            f"{self.total}, page {self.page} of {_pages(self.total, self.page_size)}</p>{self._html_messages()}"
            "<table><thead><tr><th>run</th><th>graph</th><th>status</th><th>done</th><th>states</th>"
            f"<th>created</th></tr></thead><tbody>{body}</tbody></table></div>"
        )


# -- states ---------------------------------------------------------------------------------------


class StatesTable(_ExoWidget):
    """A run's states, paged on the server side (`page_size` rows at a time), filterable, retryable."""

    _kind = t.Unicode("states").tag(sync=True)
    run_id = t.Unicode("").tag(sync=True)
    identifier = t.Unicode("").tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    identifiers = t.List().tag(sync=True)
    page = t.Int(1).tag(sync=True)
    page_size = t.Int(50).tag(sync=True)
    total = t.Int(0).tag(sync=True)
    rows = t.List().tag(sync=True)

    _actions = ("refresh", "retry", "dismiss")

    def __init__(
        self,
        sm: Any,
        run_id: str,
        page_size: int = 50,
        *,
        identifier: str | None = None,
        status: str | None = None,
    ) -> None:
        self._ready = False
        super().__init__(
            sm,
            run_id=str(run_id),
            page_size=max(1, int(page_size)),
            identifier=identifier or "",
            status=(status or "").upper(),
        )
        self._load_now(self._reload(with_identifiers=True))
        self._ready = True

    async def _reload(self, with_identifiers: bool = False) -> None:
        gen = self._next_gen("rows")
        page, size = self.page, self.page_size
        ident, status = self.identifier or None, self.status or None
        total, rows = await page_states(self._sm, self.run_id, page, size, ident, status)
        if page > _pages(total, size):
            page = _pages(total, size)
            total, rows = await page_states(self._sm, self.run_id, page, size, ident, status)
        updates: dict[str, Any] = {"rows": rows, "total": total, "page": page}
        if with_identifiers:
            summary = await self._sm.run_status(self.run_id)
            updates["identifiers"] = sorted(summary.get("nodes") or {})
        self._apply(_gen=gen, **updates)

    @t.observe("identifier", "status", "page", "page_size")
    def _filters_changed(self, change: Any) -> None:
        if getattr(self, "_ready", False) and not self._closed:
            self.refresh()

    def refresh(self) -> concurrent.futures.Future[Any]:
        return self._spawn(self._reload(with_identifiers=True), "listing states")

    def goto(self, page: int) -> concurrent.futures.Future[Any]:
        """Show page `page` (1-based); returns the reload's future."""
        with self._lock:
            self._ready = False
            try:
                self._apply(page=max(1, int(page)))
            finally:
                self._ready = True
        return self.refresh()

    def retry(self, state_id: str) -> concurrent.futures.Future[Any]:
        async def go() -> dict[str, Any]:
            result = await self._sm.retry_state(str(state_id))
            self._apply(message=f"state {state_id} retried as {result.get('id')}", error="")
            await self._reload()
            return result

        return self._spawn(go(), f"retrying state {state_id}")

    def text(self) -> str:
        filters = "".join(f", {k}={v!r}" for k, v in (("identifier", self.identifier), ("status", self.status)) if v)
        return (
            f"StatesTable(states={self.total}, page={self.page}/{_pages(self.total, self.page_size)}, "
            f"size={self.page_size}{filters})"
        )

    def to_html(self) -> str:
        filters = "".join(f" {k} {v}" for k, v in (("of node", self.identifier), ("with status", self.status)) if v)
        body = "".join(
            f"<tr><td><code>{escape(r['id'])}</code></td><td>{escape(r['identifier'])}</td>"
            f"<td>{escape(r['status'])}</td><td>{r['retry_count']}</td><td>{escape(r['inputs'])}</td>"
            f"<td>{escape(r['outputs'])}</td><td>{escape(r['error'])}</td></tr>"
            for r in self.rows
        )
        return (
            '<div class="exo-static exo-states">'
            f"<p><b>States</b>{escape(filters)}: {self.total}, page {self.page} of "
            f"{_pages(self.total, self.page_size)}</p>"
            f"{self._html_messages()}"
            "<table><thead><tr><th>state</th><th>node</th><th>status</th><th>retries</th><th>inputs</th>"
            f"<th>outputs</th><th>error</th></tr></thead><tbody>{body}</tbody></table></div>"
        )
