"""The state machine: every rule of spec/semantics.md, applied in memory, made durable by group commits.

All methods run on the engine's event loop thread. Mutating methods apply a change at once and
return its result; `committed()` resolves when everything applied so far is on disk. Newly
created states are handed to runtimes only after the commit that holds them.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import os
import re
import secrets as _secrets
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..errors import (
    BadRequestError,
    ConflictError,
    ExosphereError,
    GraphValidationError,
    NotFoundError,
    StateTransitionError,
)
from ..models import (
    CronTrigger,
    GraphNodeModel,
    RetryPolicyModel,
    StoreConfigModel,
    UnitesStrategyEnum,
    run_status_of,
)
from ..placeholders import Ref
from ..retry import retry_delay_ms
from . import cron
from .graph import CompiledGraph, CompiledNode, RegisteredNode, compile_graph, registry_errors, structure_errors
from .records import (
    ALL_STATUSES,
    CANCELLED,
    CREATED,
    ERRORED,
    EXECUTED,
    FAILED,
    NEXT_CREATED_ERROR,
    PRUNED,
    QUEUED,
    RETRY_CREATED,
    RETRYABLE,
    SUCCESS,
    TERMINAL,
    Changes,
    Run,
    State,
    UniteGroup,
)
from .secrets import SecretBox
from .store import Store, WriteBatch

__all__ = ["DEFAULT_LEASE_MS", "Engine", "GraphRecord"]

log = logging.getLogger("exosphere_nb.engine")

DEFAULT_LEASE_MS = 30 * 60 * 1000
_ID_RE = re.compile(r"^[0-9a-f]{24}$")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


class RenderError(Exception):
    """A next state's inputs cannot be built."""


@dataclass(eq=False)
class GraphRecord:
    namespace: str
    name: str
    nodes: list[GraphNodeModel]
    secret_blobs: dict[str, bytes]
    retry_policy: RetryPolicyModel
    store_config: StoreConfigModel
    triggers: list[str]
    validation_status: str
    validation_errors: list[str]
    created_ms: int
    updated_ms: int
    compiled: CompiledGraph = field(repr=False)

    def response(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "nodes": [n.model_dump(mode="json") for n in self.nodes],
            "secrets": dict.fromkeys(sorted(self.secret_blobs), True),
            "retry_policy": self.retry_policy.model_dump(mode="json"),
            "store_config": self.store_config.model_dump(mode="json"),
            "triggers": [{"type": "CRON", "value": {"expression": e}} for e in self.triggers],
            "created_at": iso(self.created_ms),
            "updated_at": iso(self.updated_ms),
            "validation_status": self.validation_status,
            "validation_errors": list(self.validation_errors),
        }

    def row(self) -> tuple[Any, ...]:
        return (
            self.namespace,
            self.name,
            _dumps([n.model_dump(mode="json") for n in self.nodes]),
            _dumps(self.retry_policy.model_dump(mode="json")),
            _dumps(self.store_config.model_dump(mode="json")),
            _dumps(self.triggers),
            _dumps(sorted(self.secret_blobs)),
            self.validation_status,
            _dumps(self.validation_errors),
            self.created_ms,
            self.updated_ms,
            self.compiled.version,
        )


def _pydantic_errors(exc: ValidationError, where: str) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append(f"{where}{'.' + loc if loc else ''}: {err.get('msg')}")
    return out


def _check_str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequestError(f"{what} must be an object of string values, got {type(value).__name__}")
    bad = [f"{k!r} is {type(v).__name__}" for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise BadRequestError(f"{what} values must be strings: {', '.join(bad)}")
    return dict(value)


class Engine:
    """One state manager over one DuckDB file (or `:memory:`)."""

    def __init__(
        self, path: str | os.PathLike[str] = ":memory:", *, lease_ms: int = DEFAULT_LEASE_MS, eager_handoff: bool = True
    ) -> None:
        self.path = str(path)
        self.lease_ms = lease_ms
        # Hand new states to runtimes before their commit. Safe for runtimes in this process (a crash
        # takes both down; unacknowledged work simply runs again). A server turns it off so remote
        # runtimes only ever see committed states.
        self.eager_handoff = eager_handoff
        self.store = Store(self.path)
        self.box = SecretBox.for_database(None if self.path == ":memory:" else self.path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="exo-writer")
        self._states: dict[str, State] = {}
        self._runs: dict[str, Run] = {}
        self._graphs: dict[tuple[str, str], GraphRecord] = {}
        self._nodes: dict[tuple[str, str], RegisteredNode] = {}
        self._output_fields: dict[tuple[str, str], frozenset[str]] = {}
        self._ready: dict[tuple[str, str], list[State]] = {}
        self._delayed: list[tuple[int, int, State]] = []
        self._leases: list[tuple[int, int, State]] = []
        self._waiters: dict[str, list[tuple[frozenset[str], asyncio.Future[None]]]] = {}
        self._crons: dict[tuple[str, str, str], int] = {}
        self._versions: dict[tuple[str, str, str], CompiledGraph] = {}  # older graph versions of loaded runs
        self._changes = Changes()
        self._commit_scheduled = False
        self._committing: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0
        self._closed = False
        self._failure: BaseException | None = None
        self._seq = 0
        self._prefix = f"{int(time.time()) & 0xFFFFFFFF:08x}{_secrets.randbits(16):04x}"

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._seq = self.store.max_seq()
        for ns, name, runtime_name, ins, outs, secrets in self.store.load_nodes():
            body = {"name": name, "inputs_schema": ins, "outputs_schema": outs, "secrets": secrets}
            self._put_node(RegisteredNode.from_body(ns, runtime_name, body))
        for rec in self.store.load_graphs():
            self._load_graph(rec)
        for ns, graph, expr, last_fired, _claimed in self.store.load_triggers():
            self._crons[(ns, graph, expr)] = last_fired
        for run_id in self.store.active_run_ids():
            self._load_run(run_id)
        self._arm_timer(now_ms())

    async def close(self) -> None:
        if self._closed:
            return
        await self.committed()
        self._closed = True
        if self._timer:
            self._timer.cancel()
        for waiters in self._waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.cancel()
        self._writer.shutdown(wait=True)
        self.store.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "engine not started"
        return self._loop

    # -- group commit --------------------------------------------------------------------------

    def _dirty(self) -> None:
        if not self._commit_scheduled and self._committing is None:
            self._commit_scheduled = True
            self.loop.call_soon(self._start_commit)

    def _touch(self, s: State) -> None:
        if s.persisted:
            self._changes.dirty_states[s.id] = s

    def committed(self) -> asyncio.Future[None]:
        """A future resolved once every change applied so far is durable."""
        if self._failure is not None:
            fut = self.loop.create_future()
            fut.set_exception(ExosphereError(f"the state database failed to commit: {self._failure}"))
            return fut
        if self._changes or self._changes.visible or self._changes.finished_runs:
            if self._changes.done is None:
                self._changes.done = self.loop.create_future()
            self._dirty()
            return asyncio.shield(self._changes.done)  # type: ignore[return-value]
        if self._committing is not None:
            return asyncio.shield(self._committing)  # type: ignore[return-value]
        fut = self.loop.create_future()
        fut.set_result(None)
        return fut

    def _start_commit(self) -> None:
        self._commit_scheduled = False
        if self._committing is not None:
            return
        changes = self._changes
        if not (changes or changes.visible or changes.finished_runs):
            return
        self._changes = Changes()
        if changes.done is None:
            changes.done = self.loop.create_future()
        self._committing = changes.done
        batch = WriteBatch(changes)
        fut = self.loop.run_in_executor(self._writer, self.store.write, batch)
        fut.add_done_callback(lambda f: self._commit_done(changes, f))

    def _commit_done(self, changes: Changes, fut: asyncio.Future[None]) -> None:
        self._committing = None
        done = changes.done
        assert done is not None
        exc = fut.exception()
        if exc is not None:
            log.error("state database commit failed: %s", exc)
            self._failure = exc
            done.set_exception(ExosphereError(f"the state database failed to commit: {exc}"))
            done.exception()  # retrieved: callers awaiting committed() see it
            return
        now = now_ms()
        for s in changes.visible:
            if s.status == CREATED:
                self._make_ready(s, now)
        pending = self._changes
        for group in (changes.new_states, changes.dirty_states):
            for sid, s in group.items():
                # a finished state leaves memory once its final status is on disk
                if s.status in TERMINAL and self._states.get(sid) is s and sid not in pending.dirty_states:
                    del self._states[sid]
        for run in changes.finished_runs:
            if run.active == 0:
                status = run.status
                for w in run.waiters:
                    if not w.done():
                        w.set_result(status)
                run.waiters.clear()
                if self._runs.get(run.run_id) is run:
                    del self._runs[run.run_id]
        done.set_result(None)
        if self._changes or self._changes.visible or self._changes.finished_runs:
            self._dirty()

    # -- queues, timers, wake-ups --------------------------------------------------------------

    def _make_ready(self, s: State, now: int) -> None:
        if s.enqueue_after > now:
            heapq.heappush(self._delayed, (s.enqueue_after, s.seq, s))
            self._arm_timer(s.enqueue_after)
            return
        key = (s.run.namespace, s.node.node_name)
        heap = self._ready.get(key)
        if heap is None:
            heap = self._ready[key] = []
        heapq.heappush(heap, s)
        waiters = self._waiters.get(key[0])
        if waiters:
            keep = []
            for names, fut in waiters:
                if fut.done():
                    continue
                if key[1] in names:
                    fut.set_result(None)
                else:
                    keep.append((names, fut))
            self._waiters[key[0]] = keep

    def wait_for_work(self, namespace: str, node_names: frozenset[str]) -> asyncio.Future[None]:
        """Resolves when a state of one of these nodes may be claimable."""
        fut = self.loop.create_future()
        for name in node_names:
            if self._ready.get((namespace, name)):
                fut.set_result(None)
                return fut
        self._waiters.setdefault(namespace, []).append((node_names, fut))
        return fut

    def _arm_timer(self, due_ms: int) -> None:
        if self._closed:
            return
        if self._timer is not None and self._timer_due <= due_ms:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due_ms
        self._timer = self.loop.call_later(max(0.0, (due_ms - now_ms()) / 1000), self._on_timer)

    def _next_due(self, now: int) -> int:
        due = now + 30_000
        if self._delayed:
            due = min(due, self._delayed[0][0])
        if self._leases:
            due = min(due, self._leases[0][0])
        if self._crons:
            due = min(due, (now // 60_000 + 1) * 60_000)
        return due

    def _on_timer(self) -> None:
        self._timer = None
        now = now_ms()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, s = heapq.heappop(self._delayed)
            if s.status == CREATED and s.enqueue_after == due:
                s.enqueue_after = 0
                self._make_ready(s, now)
        while self._leases and self._leases[0][0] <= now:
            until, _, s = heapq.heappop(self._leases)
            if s.status == QUEUED and s.lease_until == until:
                self._fail(
                    s,
                    f"lease expired: no result within {self.lease_ms / 1000:g} s of the claim "
                    "(the runtime crashed, was stopped, or the node ran too long)",
                    now,
                )
        if self._crons:
            self._cron_tick(now)
        self._dirty()
        self._arm_timer(self._next_due(now))

    # -- ids and state creation ----------------------------------------------------------------

    def _new_state(
        self,
        run: Run,
        node: CompiledNode,
        inputs: dict[str, str],
        parents: dict[str, str],
        now: int,
        *,
        path: tuple[int, ...] = (),
        unite_keys: dict[str, str] | None = None,
        status: str = CREATED,
        retry_count: int = 0,
        enqueue_after: int = 0,
    ) -> State:
        self._seq += 1
        sid = f"{self._prefix}{self._seq:012x}"
        keys = unite_keys if unite_keys is not None else {}
        s = State(sid, self._seq, run, node, status, inputs, parents, now, path, keys, retry_count, enqueue_after)
        run.counts[status] += 1
        run.active += 1
        self._states[sid] = s
        if keys:
            groups = []
            for target, key in keys.items():
                for unite in run.graph.nodes[target].united_by:
                    g = run.groups.get((unite.identifier, key))
                    if g is not None:
                        g.pending += 1
                        groups.append(g)
            s.groups = tuple(groups)
        self._changes.new_states[sid] = s
        if status == CREATED:
            if self.eager_handoff:
                self._make_ready(s, now)
            else:
                self._changes.visible.append(s)
        return s

    def _set_status(self, s: State, status: str, now: int) -> None:
        old = s.status
        run = s.run
        run.counts[old] -= 1
        run.counts[status] += 1
        s.status = status
        s.updated_ms = now
        self._touch(s)
        if status not in TERMINAL:
            return
        if old not in TERMINAL:
            run.active -= 1
            if s.groups:
                finished = []
                for g in s.groups:
                    g.pending -= 1
                    if status in FAILED:
                        g.failed += 1
                    elif status == SUCCESS and s.node.identifier in g.unite.aggregate and s.outputs:
                        g.collected.setdefault(s.node.identifier, []).append((s.path + (s.output_index,), s.outputs))
                    if g.pending == 0:
                        finished.append(g)
                # innermost first: releasing an inner unite adds a member to the outer groups it is in
                finished.sort(key=lambda g: -len(g.target.path))
                for g in finished:
                    self._check_group(g, now)
            if run.active == 0:
                self._changes.finished_runs.append(run)
        else:  # terminal to terminal: a failed state superseded by its manual retry
            for g in s.groups:
                if old in FAILED and status not in FAILED:
                    g.failed -= 1

    # -- lookups -------------------------------------------------------------------------------

    def _state_for_result(self, state_id: str, namespace: str | None, expect: str = QUEUED) -> State:
        s = self._states.get(state_id)
        if s is None or (namespace is not None and s.run.namespace != namespace):
            rec = self.store.get_state(state_id) if isinstance(state_id, str) and _ID_RE.match(state_id) else None
            if rec is None or (namespace is not None and rec["namespace"] != namespace):
                raise NotFoundError(
                    f"state {state_id!r} not found" + (f" in namespace {namespace!r}" if namespace else "")
                )
            raise StateTransitionError(f"state {state_id} is {rec['status']}, not {expect}")
        if s.status != expect:
            extra = " (its run was cancelled)" if s.status == CANCELLED else ""
            raise StateTransitionError(f"state {state_id} is {s.status}, not {expect}{extra}")
        return s

    def graph_record(self, namespace: str, name: str) -> GraphRecord:
        rec = self._graphs.get((namespace, name))
        if rec is None:
            import difflib

            names = [g for (ns, g) in self._graphs if ns == namespace]
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise NotFoundError(f"graph {name!r} not found in namespace {namespace!r}{hint}")
        return rec

    # -- nodes ---------------------------------------------------------------------------------

    def _put_node(self, reg: RegisteredNode) -> None:
        self._nodes[(reg.namespace, reg.name)] = reg
        self._output_fields[(reg.namespace, reg.name)] = frozenset(reg.outputs)

    def register_nodes(self, namespace: str, runtime_name: str, nodes: Iterable[dict[str, Any]]) -> dict[str, Any]:
        now = now_ms()
        regs: list[RegisteredNode] = []
        errors: list[str] = []
        for i, body in enumerate(nodes):
            name = body.get("name") if isinstance(body, dict) else None
            if not isinstance(name, str) or not name.strip():
                errors.append(f"nodes[{i}]: name must be a non-empty string")
                continue
            for part in ("inputs_schema", "outputs_schema"):
                schema = body.get(part) or {}
                props = schema.get("properties") or {} if isinstance(schema, dict) else None
                if props is None:
                    errors.append(f"node {name!r}: {part} must be a JSON schema object")
                    continue
                for fname, fschema in props.items():
                    if not isinstance(fschema, dict) or fschema.get("type") != "string":
                        errors.append(f"node {name!r}: {part} field {fname!r} must be of type string (data model v1)")
            secrets = body.get("secrets") or []
            if not isinstance(secrets, list) or not all(isinstance(x, str) for x in secrets):
                errors.append(f"node {name!r}: secrets must be a list of secret names")
                continue
            regs.append(RegisteredNode.from_body(body.get("namespace") or namespace, runtime_name, body))
        if errors:
            raise BadRequestError("cannot register nodes: " + "; ".join(errors))
        for reg in regs:
            self._put_node(reg)
            self._changes.ops.append(
                (
                    "node",
                    (
                        (
                            reg.namespace,
                            reg.name,
                            runtime_name,
                            _dumps(reg.inputs_schema),
                            _dumps(reg.outputs_schema),
                            _dumps(list(reg.secrets)),
                            now,
                        ),
                    ),
                )
            )
        touched = {(r.namespace, r.name) for r in regs}
        for rec in self._graphs.values():
            if rec.validation_status != "VALID" or any((n.namespace, n.node_name) in touched for n in rec.nodes):
                self._revalidate(rec, now)
        self._dirty()
        return {"runtime_name": runtime_name, "registered_nodes": [r.to_body() for r in regs]}

    def list_nodes(self, namespace: str) -> dict[str, Any]:
        nodes = [r.to_body() for (ns, _), r in sorted(self._nodes.items()) if ns == namespace]
        return {"namespace": namespace, "count": len(nodes), "nodes": nodes}

    # -- graphs --------------------------------------------------------------------------------

    def _revalidate(self, rec: GraphRecord, now: int) -> None:
        errors = registry_errors(rec.nodes, self._nodes, rec.secret_blobs)
        status = "INVALID" if errors else "VALID"
        if status != rec.validation_status or errors != rec.validation_errors:
            rec.validation_status, rec.validation_errors, rec.updated_ms = status, errors, now
            self._changes.ops.append(("validation", (rec.namespace, rec.name, status, _dumps(errors), now)))

    def _load_graph(self, row: dict[str, Any]) -> None:
        nodes = [GraphNodeModel.model_validate(n) for n in row["nodes"]]
        policy = RetryPolicyModel.model_validate(row["retry_policy"] or {})
        store_config = StoreConfigModel.model_validate(row["store_config"] or {})
        compiled = compile_graph(row["namespace"], row["name"], nodes, policy, store_config)
        blobs = dict(self.store.load_secret_blobs(row["namespace"], row["name"]))
        self._graphs[(row["namespace"], row["name"])] = GraphRecord(
            row["namespace"],
            row["name"],
            nodes,
            blobs,
            policy,
            store_config,
            list(row["triggers"] or []),
            row["validation_status"],
            list(row["validation_errors"] or []),
            row["created_ms"],
            row["updated_ms"],
            compiled,
        )

    def upsert_graph(
        self,
        namespace: str,
        name: str,
        nodes: Iterable[GraphNodeModel | dict[str, Any]],
        secrets: dict[str, str] | None = None,
        retry_policy: RetryPolicyModel | dict[str, Any] | None = None,
        store_config: StoreConfigModel | dict[str, Any] | None = None,
        triggers: Iterable[CronTrigger | dict[str, Any] | str] | None = None,
    ) -> dict[str, Any]:
        if not isinstance(name, str) or not name.strip():
            raise GraphValidationError(["graph name must be a non-empty string"])
        errors: list[str] = []
        models: list[GraphNodeModel] = []
        for i, n in enumerate(nodes):
            try:
                models.append(n if isinstance(n, GraphNodeModel) else GraphNodeModel.model_validate(n))
            except ValidationError as exc:
                errors.extend(_pydantic_errors(exc, f"nodes[{i}]"))
        try:
            policy = (
                retry_policy
                if isinstance(retry_policy, RetryPolicyModel)
                else RetryPolicyModel.model_validate(retry_policy or {})
            )
        except ValidationError as exc:
            errors.extend(_pydantic_errors(exc, "retry_policy"))
            policy = RetryPolicyModel()
        try:
            store = (
                store_config
                if isinstance(store_config, StoreConfigModel)
                else StoreConfigModel.model_validate(store_config or {})
            )
        except ValidationError as exc:
            errors.extend(_pydantic_errors(exc, "store_config"))
            store = StoreConfigModel()
        expressions: list[str] = []
        for i, t in enumerate(triggers or ()):
            raw = (
                t.expression
                if isinstance(t, CronTrigger)
                else t
                if isinstance(t, str)
                else (
                    (t.get("value") or {}).get("expression")
                    if isinstance(t, dict) and "value" in t
                    else t.get("expression")
                    if isinstance(t, dict)
                    else None
                )
            )
            if isinstance(t, dict) and t.get("type", "CRON") != "CRON":
                errors.append(f"triggers[{i}]: unknown trigger type {t.get('type')!r} (only CRON)")
                continue
            try:
                expr = cron.validate_expression(raw) if isinstance(raw, str) else None
            except BadRequestError as exc:
                errors.append(f"triggers[{i}]: {exc.detail}")
                continue
            if expr is None:
                errors.append(f"triggers[{i}]: expected {{'type': 'CRON', 'value': {{'expression': '<cron>'}}}}")
            elif expr not in expressions:
                expressions.append(expr)
        try:
            secret_map = _check_str_map(secrets, "secrets")
        except BadRequestError as exc:
            errors.append(exc.detail)
            secret_map = {}
        if not errors:
            errors = structure_errors(models, store)
        if errors:
            raise GraphValidationError(errors, headline=f"graph {name!r} is invalid")
        now = now_ms()
        compiled = compile_graph(namespace, name, models, policy, store)
        old = self._graphs.get((namespace, name))
        blobs = {k: self.box.encrypt(v, aad=f"{namespace}/{name}/{k}") for k, v in secret_map.items()}
        reg_errors = registry_errors(models, self._nodes, blobs)
        rec = GraphRecord(
            namespace,
            name,
            models,
            blobs,
            policy,
            store,
            expressions,
            "INVALID" if reg_errors else "VALID",
            reg_errors,
            old.created_ms if old else now,
            now,
            compiled,
        )
        self._graphs[(namespace, name)] = rec
        self._changes.ops.append(("graph", (rec.row(), sorted(blobs.items()))))
        self._changes.ops.append(("triggers", (namespace, name, expressions, now)))
        for key in [k for k in self._crons if k[:2] == (namespace, name) and k[2] not in expressions]:
            del self._crons[key]
        for expr in expressions:
            self._crons.setdefault((namespace, name, expr), now)
        if expressions:
            self._arm_timer(self._next_due(now))
        self._dirty()
        return rec.response()

    def get_graph(self, namespace: str, name: str) -> dict[str, Any]:
        return self.graph_record(namespace, name).response()

    def list_graphs(self, namespace: str) -> dict[str, Any]:
        templates = [r.response() for (ns, _), r in sorted(self._graphs.items()) if ns == namespace]
        return {"namespace": namespace, "count": len(templates), "templates": templates}

    def namespaces(self) -> dict[str, Any]:
        names = sorted({ns for ns, _ in self._graphs} | {ns for ns, _ in self._nodes})
        return {"namespaces": names, "count": len(names)}

    # -- trigger -------------------------------------------------------------------------------

    def trigger(
        self,
        namespace: str,
        graph_name: str,
        inputs: dict[str, str] | None = None,
        store: dict[str, str] | None = None,
        start_delay: int = 0,
    ) -> dict[str, Any]:
        rec = self.graph_record(namespace, graph_name)
        if rec.validation_status != "VALID":
            raise BadRequestError(
                f"graph {graph_name!r} is {rec.validation_status}, not VALID: " + "; ".join(rec.validation_errors)
            )
        inputs = _check_str_map(inputs, "inputs")
        store = _check_str_map(store, "store")
        if not isinstance(start_delay, int) or isinstance(start_delay, bool) or start_delay < 0:
            raise BadRequestError(f"start_delay must be an integer >= 0 (milliseconds), got {start_delay!r}")
        graph = rec.compiled
        root = graph.root
        unknown = sorted(set(inputs) - set(root.inputs))
        if unknown:
            raise BadRequestError(
                f"inputs {unknown} are not inputs of the root node {root.identifier!r} "
                f"(its inputs: {sorted(root.inputs)})"
            )
        missing = [k for k in rec.store_config.required_keys if k not in store]
        if missing:
            raise BadRequestError(f"store is missing required keys {missing} of graph {graph_name!r}")
        run_store = {**rec.store_config.default_values, **store}
        now = now_ms()
        run = Run(str(uuid.uuid4()), namespace, graph_name, graph, run_store, now)

        def resolve(ref: Ref) -> str:
            return run_store[ref.field]

        root_inputs = {k: inputs[k] if k in inputs else t.render(resolve) for k, t in root.inputs.items()}
        self._runs[run.run_id] = run
        self._changes.runs.append(run)
        self._changes.store_rows.extend((run.run_id, k, v) for k, v in run_store.items())
        self._new_state(run, root, root_inputs, {}, now, enqueue_after=now + start_delay if start_delay else 0)
        self._dirty()
        return {"status": "CREATED", "run_id": run.run_id}

    # -- claims and leases ---------------------------------------------------------------------

    def claim(
        self,
        namespace: str,
        node_names: Iterable[str],
        batch_size: int,
        lease_ms: int | None = None,
        claimed_by: str | None = None,
    ) -> list[State]:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BadRequestError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        heaps = [h for h in (self._ready.get((namespace, n)) for n in node_names) if h]
        out: list[State] = []
        if not heaps:
            return out
        now = now_ms()
        until = now + (lease_ms or self.lease_ms)
        leases = self._leases
        while len(out) < batch_size and heaps:
            heap = heaps[0] if len(heaps) == 1 else min(heaps, key=lambda h: h[0].seq)
            s = heapq.heappop(heap)
            if not heap:
                heaps.remove(heap)
            if s.status != CREATED or s.enqueue_after > now:
                continue
            run = s.run
            run.counts[CREATED] -= 1
            run.counts[QUEUED] += 1
            s.status = QUEUED
            s.lease_until = until
            s.updated_ms = now
            s.claimed_by = claimed_by
            if s.persisted:
                self._changes.dirty_states[s.id] = s
            heapq.heappush(leases, (until, s.seq, s))
            out.append(s)
        if out:
            if len(leases) > 2 * len(self._states) + 4096:
                # drop entries of states that finished or renewed: the heap would grow with every claim
                self._leases = [e for e in leases if e[2].status == QUEUED and e[2].lease_until == e[0]]
                heapq.heapify(self._leases)
            self._arm_timer(until)
            self._dirty()
        return out

    def renew_leases(self, state_ids: Iterable[str], lease_ms: int | None = None, namespace: str | None = None) -> int:
        now = now_ms()
        until = now + (lease_ms or self.lease_ms)
        renewed = 0
        for sid in state_ids:
            s = self._states.get(sid)
            if s is None or s.status != QUEUED or (namespace is not None and s.run.namespace != namespace):
                continue
            s.lease_until = until
            self._touch(s)
            heapq.heappush(self._leases, (until, s.seq, s))
            renewed += 1
        if renewed:
            self._dirty()
        return renewed

    def release(self, state_ids: Iterable[str], namespace: str | None = None) -> int:
        """Hand claimed states back (a stopping runtime): QUEUED -> CREATED, claimable again at once."""
        now = now_ms()
        released = 0
        for sid in state_ids:
            s = self._states.get(sid)
            if s is None or s.status != QUEUED or (namespace is not None and s.run.namespace != namespace):
                continue
            self._set_status(s, CREATED, now)
            s.lease_until = 0
            s.claimed_by = None
            self._make_ready(s, now)
            released += 1
        if released:
            self._dirty()
        return released

    # -- results -------------------------------------------------------------------------------

    def _output_error(self, s: State, outputs: Any) -> str | None:
        if not isinstance(outputs, list):
            return f"outputs must be a list of objects, got {type(outputs).__name__}"
        expected = self._output_fields.get((s.node.namespace, s.node.node_name))
        for i, out in enumerate(outputs):
            if not isinstance(out, dict):
                return f"output {i} must be an object, got {type(out).__name__}"
            if not out:
                continue
            for k, v in out.items():
                if type(v) is not str:
                    return f"output {i} field {k!r} of {s.node.node_name} must be a string, got {type(v).__name__}"
            if expected is not None and out.keys() != expected:
                missing = sorted(expected - out.keys())
                extra = sorted(out.keys() - expected)
                parts = []
                if missing:
                    parts.append(f"lacks field(s) {missing}")
                if extra:
                    parts.append(f"has undeclared field(s) {extra}")
                return f"output {i} of {s.node.node_name} " + " and ".join(parts)
        return None

    def executed(self, state_id: str, outputs: list[dict[str, Any]], namespace: str | None = None) -> dict[str, Any]:
        s = self._state_for_result(state_id, namespace)
        now = now_ms()
        problem = self._output_error(s, outputs)
        if problem is not None:
            res = self._fail(s, f"invalid outputs: {problem}", now)
            self._dirty()
            return {**res, "error": f"invalid outputs: {problem}"}
        self._execute(s, outputs, now)
        self._dirty()
        return {"status": "EXECUTED"}

    def _execute(self, s: State, outputs: list[dict[str, Any]], now: int) -> None:
        node = s.node
        run = s.run
        s.lease_until = 0
        if not outputs:
            self._open_groups(s, [], now)
            self._set_status(s, SUCCESS, now)
            return
        s.outputs = outputs[0]
        self._set_status(s, EXECUTED, now)
        out_states = [s]
        for i in range(1, len(outputs)):
            sib = self._new_state(
                run,
                node,
                s.inputs,
                s.parents,
                now,
                path=s.path,
                unite_keys=s.unite_keys,
                status=EXECUTED,
                retry_count=s.retry_count,
            )
            sib.outputs = outputs[i]
            sib.output_index = i
            sib.execution_id = s.id
            out_states.append(sib)
        if node.retain:
            for o in out_states:
                run.outputs[o.id] = o.outputs  # type: ignore[assignment]
        if node.united_by:
            self._open_groups(s, out_states, now)
        if node.children:
            try:
                planned = self._plan_children(s, out_states)
            except RenderError as exc:
                for o in out_states:
                    o.error = f"next states could not be created: {exc}"
                    self._set_status(o, NEXT_CREATED_ERROR, now)
                return
            ident = node.identifier
            keys = s.unite_keys
            if ident in run.graph.unite_targets:
                keys = {**keys, ident: s.id}
            for o, children in planned:
                parents = {**o.parents, ident: o.id}
                path = o.path + (o.output_index,)
                for child, inputs in children:
                    self._new_state(run, child, inputs, parents, now, path=path, unite_keys=keys)
        for o in out_states:
            self._set_status(o, SUCCESS, now)

    def _plan_children(
        self, s: State, out_states: list[State]
    ) -> list[tuple[State, list[tuple[CompiledNode, dict[str, str]]]]]:
        run = s.run
        ident = s.node.identifier
        store = run.store
        retained = run.outputs
        planned = []
        for o in out_states:
            outs = o.outputs or {}
            parents = o.parents

            def resolve(ref: Ref, outs: dict[str, Any] = outs, parents: dict[str, str] = parents) -> str:
                if ref.identifier is None:
                    try:
                        return store[ref.field]
                    except KeyError:
                        raise RenderError(f"{ref}: the run's store has no key {ref.field!r}") from None
                if ref.identifier == ident:
                    source = outs
                else:
                    source = retained.get(parents.get(ref.identifier, ""))  # type: ignore[assignment]
                    if source is None:
                        raise RenderError(f"{ref}: no output of {ref.identifier!r} on this branch")
                try:
                    return source[ref.field]
                except KeyError:
                    raise RenderError(f"{ref}: node {ref.identifier!r} output has no field {ref.field!r}") from None

            children = []
            for child in s.node.children:
                children.append((child, {k: t.render(resolve) for k, t in child.inputs.items()}))
            planned.append((o, children))
        return planned

    # -- unites --------------------------------------------------------------------------------

    def _open_groups(self, s: State, out_states: list[State], now: int) -> None:
        run = s.run
        for unite in s.node.united_by:
            g = UniteGroup(unite=unite, target=s)
            run.groups[(unite.identifier, s.id)] = g
            for o in out_states:
                g.pending += 1
                o.groups = o.groups + (g,)
            if not out_states:
                self._check_group(g, now)

    def _check_group(self, g: UniteGroup, now: int) -> None:
        run = g.target.run
        if g.pending or g.released or run.cancelled:
            return
        if g.unite.unites is not None and g.unite.unites[1] == UnitesStrategyEnum.ALL_SUCCESS and g.failed:
            return  # never created: the run ends FAILED (a manual retry of the failure can reopen the group)
        g.released = True
        target = g.target
        unite = g.unite
        tid = target.node.identifier
        parents = {**target.parents, tid: target.id}

        def resolve(ref: Ref) -> str:
            if ref.identifier is None:
                return run.store[ref.field]
            if ref.identifier in unite.aggregate:
                found = sorted(g.collected.get(ref.identifier, ()), key=lambda e: e[0])
                return _dumps([outs[ref.field] for _, outs in found if ref.field in outs])
            source = (
                target.outputs if ref.identifier == tid else run.outputs.get(target.parents.get(ref.identifier, ""))
            )
            if not source or ref.field not in source:
                raise RenderError(f"{ref}: node {ref.identifier!r} has no output {ref.field!r} for this execution")
            return source[ref.field]

        try:
            inputs = {k: t.render(resolve) for k, t in unite.inputs.items()}
            error = None
        except (RenderError, KeyError) as exc:
            inputs, error = {}, f"unite inputs could not be built: {exc}"
        u = self._new_state(run, unite, inputs, parents, now, path=target.path + (0,), unite_keys=target.unite_keys)
        if error is not None:
            u.error = error
            self._set_status(u, ERRORED, now)

    # -- errors, signals -----------------------------------------------------------------------

    def errored(self, state_id: str, error: str, namespace: str | None = None) -> dict[str, Any]:
        if not isinstance(error, str):
            raise BadRequestError(f"error must be a string, got {type(error).__name__}")
        s = self._state_for_result(state_id, namespace)
        res = self._fail(s, error, now_ms())
        self._dirty()
        return res

    def _fail(self, s: State, error: str, now: int) -> dict[str, Any]:
        policy = s.run.graph.retry_policy
        s.error = error
        s.lease_until = 0
        if s.retry_count < policy.max_retries:
            attempt = s.retry_count + 1
            self._new_state(
                s.run,
                s.node,
                s.inputs,
                s.parents,
                now,
                path=s.path,
                unite_keys=s.unite_keys,
                retry_count=attempt,
                enqueue_after=now + retry_delay_ms(policy, attempt),
            )
            self._set_status(s, RETRY_CREATED, now)
            return {"status": "ERRORED", "retry_created": True}
        self._set_status(s, ERRORED, now)
        return {"status": "ERRORED", "retry_created": False}

    def prune(self, state_id: str, data: dict[str, Any] | None = None, namespace: str | None = None) -> dict[str, Any]:
        if data is not None and not isinstance(data, dict):
            raise BadRequestError(f"prune data must be an object, got {type(data).__name__}")
        s = self._state_for_result(state_id, namespace)
        now = now_ms()
        s.outputs = dict(data or {})
        s.lease_until = 0
        self._set_status(s, PRUNED, now)
        self._dirty()
        return {"status": "PRUNED", "enqueue_after": s.enqueue_after}

    def requeue_after(self, state_id: str, delay_ms: int, namespace: str | None = None) -> dict[str, Any]:
        if not isinstance(delay_ms, int) or isinstance(delay_ms, bool) or delay_ms <= 0:
            raise BadRequestError(f"enqueue_after must be an integer > 0 (milliseconds), got {delay_ms!r}")
        s = self._state_for_result(state_id, namespace)
        now = now_ms()
        self._set_status(s, CREATED, now)
        s.lease_until = 0
        s.enqueue_after = now + delay_ms
        self._changes.visible.append(s)
        self._dirty()
        return {"status": "CREATED", "enqueue_after": s.enqueue_after}

    # -- manual retry, cancel ------------------------------------------------------------------

    def manual_retry(self, state_id: str, fanout_id: str, namespace: str | None = None) -> dict[str, Any]:
        if not isinstance(fanout_id, str) or not fanout_id.strip():
            raise BadRequestError("fanout_id must be a non-empty string")
        s = self._states.get(state_id)
        if s is None:
            rec = self.store.get_state(state_id) if isinstance(state_id, str) and _ID_RE.match(state_id) else None
            if rec is None or (namespace is not None and rec["namespace"] != namespace):
                raise NotFoundError(f"state {state_id!r} not found")
            self._load_run(rec["run_id"])
            s = self._states.get(state_id)
            if s is None:  # terminal: bring the one record back to act on it
                s = self._revive(rec["run_id"], state_id)
        run = s.run
        if namespace is not None and run.namespace != namespace:
            raise NotFoundError(f"state {state_id!r} not found")
        if fanout_id in run.fanout_ids:
            raise ConflictError(f"fanout_id {fanout_id!r} was already used for a retry in run {run.run_id}")
        if s.status not in RETRYABLE:
            why = (
                "it succeeded"
                if s.status == SUCCESS
                else "it is not finished"
                if s.status not in TERMINAL
                else "it was already retried"
            )
            raise StateTransitionError(
                f"state {state_id} is {s.status}: only ERRORED, NEXT_CREATED_ERROR, PRUNED or CANCELLED states "
                f"can be retried ({why})"
            )
        now = now_ms()
        if run.cancelled:
            run.cancelled = False
            self._changes.ops.append(("run_cancelled", (run.run_id, False)))
        if s.node.identifier in run.graph.unite_targets and s.outputs is not None:
            for g in s.groups:  # a re-run of the target starts a new execution: the old group is superseded
                if g.target.id == s.execution_id:
                    g.released = True
        copy = self._new_state(run, s.node, s.inputs, s.parents, now, path=s.path, unite_keys=s.unite_keys)
        copy.fanout_id = fanout_id
        run.fanout_ids.add(fanout_id)
        if run.active == 1 and run in self._changes.finished_runs:
            self._changes.finished_runs.remove(run)
        self._set_status(s, RETRY_CREATED, now)
        self._dirty()
        return {"id": copy.id, "status": "CREATED"}

    def cancel_run(self, run_id: str, namespace: str | None = None) -> dict[str, Any]:
        run = self._runs.get(run_id)
        if run is None:
            found = self.store.run_exists(run_id) if isinstance(run_id, str) else None
            if found is None or (namespace is not None and found[0] != namespace):
                raise NotFoundError(f"run {run_id!r} not found")
            counts = self.store.status_counts(run_id)
            return {"run_id": run_id, "status": run_status_of(counts), "cancelled_count": 0}
        if namespace is not None and run.namespace != namespace:
            raise NotFoundError(f"run {run_id!r} not found")
        now = now_ms()
        run.cancelled = True
        self._changes.ops.append(("run_cancelled", (run_id, True)))
        victims = [s for s in self._states.values() if s.run is run and s.status in (CREATED, QUEUED)]
        for s in victims:
            s.error = "run cancelled"
            s.lease_until = 0
            self._set_status(s, CANCELLED, now)
        self._dirty()
        return {"run_id": run_id, "status": run.status, "cancelled_count": len(victims)}

    # -- secrets -------------------------------------------------------------------------------

    def get_secrets(self, state_id: str, namespace: str | None = None) -> dict[str, Any]:
        s = self._state_for_result(state_id, namespace)
        rec = self._graphs.get((s.run.namespace, s.run.graph_name))
        reg = self._nodes.get((s.node.namespace, s.node.node_name))
        if rec is None or reg is None:
            return {"secrets": {}}
        wanted = [k for k in reg.secrets if k in rec.secret_blobs]
        return {
            "secrets": {k: self.box.decrypt(rec.secret_blobs[k], aad=f"{rec.namespace}/{rec.name}/{k}") for k in wanted}
        }

    # -- cron ----------------------------------------------------------------------------------

    def _cron_tick(self, now: int) -> None:
        now_dt = datetime.fromtimestamp(now / 1000, tz=UTC)
        for key, last in list(self._crons.items()):
            ns, graph, expr = key
            last_dt = datetime.fromtimestamp(last / 1000, tz=UTC) if last else None
            due = cron.due_occurrence(expr, last_dt, now_dt)
            if due is None:
                continue
            fired = int(due.timestamp() * 1000)
            self._crons[key] = fired
            self._changes.ops.append(("trigger_fired", (ns, graph, expr, fired, 0)))
            try:
                res = self.trigger(ns, graph)
                log.info("cron %r fired graph %s/%s: run %s", expr, ns, graph, res["run_id"])
            except ExosphereError as exc:
                log.warning("cron %r could not trigger graph %s/%s: %s", expr, ns, graph, exc.detail)

    # -- runs ----------------------------------------------------------------------------------

    def run(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    async def wait_run(self, run_id: str, timeout: float | None = None) -> str:
        """Wait until no state of the run is pending; returns the run status."""
        run = self._runs.get(run_id)
        if run is None:
            found = self.store.run_exists(run_id)
            if found is None:
                raise NotFoundError(f"run {run_id!r} not found")
            await self.committed()
            run = self._runs.get(run_id)
            if run is None:
                return run_status_of(self.store.status_counts(run_id))
        fut = self.loop.create_future()
        run.waiters.append(fut)
        if run.active == 0:
            self._changes.finished_runs.append(run)
            self._dirty()
        return await asyncio.wait_for(fut, timeout)

    def _load_graph_for_run(self, namespace: str, graph_name: str, version: str | None) -> CompiledGraph:
        """The graph a run started on: the current template, or the stored version it was triggered with."""
        current = self._graphs.get((namespace, graph_name))
        if current is not None and (version is None or current.compiled.version == version):
            return current.compiled
        key = (namespace, graph_name, version or "")
        compiled = self._versions.get(key)
        if compiled is None:
            row = self.store.load_graph_version(namespace, graph_name, version) if version else None
            if row is None:
                return self.graph_record(namespace, graph_name).compiled
            compiled = compile_graph(
                namespace,
                graph_name,
                [GraphNodeModel.model_validate(n) for n in row["nodes"]],
                RetryPolicyModel.model_validate(row["retry_policy"]),
                StoreConfigModel.model_validate(row["store_config"]),
            )
            self._versions[key] = compiled
        return compiled

    def _load_run(self, run_id: str) -> Run | None:
        if run_id in self._runs:
            return self._runs[run_id]
        loaded = self.store.load_run(run_id)
        if loaded is None:
            return None
        (rid, ns, graph_name, created_ms, cancelled, version), store, rows = loaded
        graph = self._load_graph_for_run(ns, graph_name, version)
        run = Run(rid, ns, graph_name, graph, store, created_ms, cancelled=bool(cancelled))
        now = now_ms()
        by_id: dict[str, dict[str, Any]] = {r["id"]: r for r in rows}
        live: list[State] = []
        for r in rows:
            status = r["status"]
            run.counts[status] += 1
            if r["fanout_id"]:
                run.fanout_ids.add(r["fanout_id"])
            node = graph.nodes.get(r["identifier"])
            if node is None:
                continue
            if node.retain and r["outputs"] is not None and status in (SUCCESS, EXECUTED):
                run.outputs[r["id"]] = r["outputs"]
            if status == QUEUED and r.get("claimed_by") == "local":
                # claimed by a runtime of the process that owned this file before: it died with it
                run.counts[QUEUED] -= 1
                run.counts[CREATED] += 1
                r = {**r, "status": CREATED, "lease_until": 0, "claimed_by": None}
                s = self._record_to_state(run, node, r)
                s.updated_ms = now
                self._changes.dirty_states[s.id] = s
                run.active += 1
                live.append(s)
                continue
            if status not in TERMINAL:
                run.active += 1
                live.append(self._record_to_state(run, node, r))
        # unite groups: one per executed state of a unite target
        for r in rows:
            ident = r["identifier"]
            if ident not in graph.unite_targets or r["id"] != r["execution_id"]:
                continue
            if r["status"] not in (SUCCESS, NEXT_CREATED_ERROR, RETRY_CREATED):
                continue
            if r["status"] == RETRY_CREATED and r["outputs"] is None:
                continue  # errored and retried: never executed
            target = self._record_to_state(run, graph.nodes[ident], r)
            for unite in graph.nodes[ident].united_by:
                run.groups[(unite.identifier, r["id"])] = UniteGroup(unite=unite, target=target)
        if run.groups:
            for r in rows:
                keys = dict(r["unite_keys"] or {})
                member_of = list(keys.items())
                if r["identifier"] in graph.unite_targets and r["outputs"] is not None:
                    member_of.append((r["identifier"], r["execution_id"]))
                for target_id, key in member_of:
                    for unite in graph.nodes[target_id].united_by:
                        g = run.groups.get((unite.identifier, key))
                        if g is None:
                            continue
                        status = r["status"]
                        if status not in TERMINAL:
                            g.pending += 1
                        elif status in FAILED:
                            g.failed += 1
                        elif status == RETRY_CREATED and r["identifier"] == target_id and r["outputs"] is not None:
                            g.released = True  # superseded by a manual retry of the target
                        elif status == SUCCESS and r["identifier"] in unite.aggregate and r["outputs"]:
                            g.collected.setdefault(r["identifier"], []).append(
                                (tuple(r["path"] or ()) + (r["output_index"],), r["outputs"])
                            )
                node = graph.nodes.get(r["identifier"])
                if node is not None and node.unites is not None:  # a unite state: its group is released
                    key = (r["parents"] or {}).get(node.unites[0])
                    g = run.groups.get((node.identifier, by_id.get(key, {}).get("execution_id", key) if key else ""))
                    if g is not None:
                        g.released = True
            for s in live:
                s.groups = self._groups_of(run, s.node.identifier, s.unite_keys, None)
        self._runs[rid] = run
        for s in live:
            if s.status == QUEUED:
                s.lease_until = s.lease_until or now + self.lease_ms
                heapq.heappush(self._leases, (s.lease_until, s.seq, s))
            else:
                self._make_ready(s, now)
        for g in list(run.groups.values()):
            if g.pending == 0 and not g.released:
                self._check_group(g, now)
        return run

    def _groups_of(
        self, run: Run, ident: str, keys: dict[str, str], execution_id: str | None
    ) -> tuple[UniteGroup, ...]:
        groups = []
        for target_id, key in keys.items():
            for unite in run.graph.nodes[target_id].united_by:
                g = run.groups.get((unite.identifier, key))
                if g is not None:
                    groups.append(g)
        if execution_id is not None and ident in run.graph.unite_targets:
            for unite in run.graph.nodes[ident].united_by:
                g = run.groups.get((unite.identifier, execution_id))
                if g is not None:
                    groups.append(g)
        return tuple(groups)

    def _record_to_state(self, run: Run, node: CompiledNode, r: dict[str, Any]) -> State:
        s = State(
            r["id"],
            r["seq"],
            run,
            node,
            r["status"],
            r["inputs"] or {},
            r["parents"] or {},
            r["created_ms"],
            tuple(r["path"] or ()),
            r["unite_keys"] or {},
            r["retry_count"],
            r["enqueue_after"] or 0,
        )
        s.outputs = r["outputs"]
        s.error = r["error"]
        s.lease_until = r["lease_until"] or 0
        s.updated_ms = r["updated_ms"]
        s.output_index = r["output_index"] or 0
        s.execution_id = r["execution_id"] or r["id"]
        s.fanout_id = r["fanout_id"]
        s.claimed_by = r.get("claimed_by")
        s.persisted = True
        if s.status not in TERMINAL:
            self._states[s.id] = s
        return s

    def _revive(self, run_id: str, state_id: str) -> State:
        """A terminal state of a loaded run, as a record the engine can act on (manual retry)."""
        run = self._runs[run_id]
        loaded = self.store.load_run(run_id)
        assert loaded is not None
        row = next(r for r in loaded[2] if r["id"] == state_id)
        node = run.graph.nodes.get(row["identifier"])
        if node is None:
            raise BadRequestError(
                f"state {state_id}: node {row['identifier']!r} is no longer in graph {run.graph_name!r}"
            )
        s = self._record_to_state(run, node, row)
        s.groups = self._groups_of(
            run, node.identifier, s.unite_keys, s.execution_id if s.outputs is not None else None
        )
        self._states[s.id] = s  # until its next commit
        return s

    # -- reads ---------------------------------------------------------------------------------

    def queue_snapshot(self) -> dict[str, Any]:
        """Live view for `%exo status`: ready states per node, in-flight claims, runs in progress."""
        ready = {
            f"{ns}/{name}": sum(1 for s in heap if s.status == CREATED) for (ns, name), heap in self._ready.items()
        }
        return {
            "queue_depth": sum(ready.values()),
            "ready_by_node": {k: v for k, v in ready.items() if v},
            "delayed": sum(1 for _, _, s in self._delayed if s.status == CREATED),
            "in_flight": sum(1 for s in self._states.values() if s.status == QUEUED),
            "runs_in_flight": [
                {
                    "run_id": r.run_id,
                    "namespace": r.namespace,
                    "graph_name": r.graph_name,
                    "active": r.active,
                    "counts": {k: v for k, v in r.counts.items() if v},
                }
                for r in self._runs.values()
                if r.active
            ],
        }

    def list_runs(self, namespace: str, page: int = 1, size: int = 20, **filters: Any) -> dict[str, Any]:
        if not isinstance(page, int) or page < 1 or not isinstance(size, int) or size < 1:
            raise BadRequestError("page and size must be integers >= 1")
        total, rows = self.store.list_runs(namespace, page, size, **filters)
        runs = [
            {
                "run_id": r["run_id"],
                "graph_name": r["graph_name"],
                "success_count": r["success_count"],
                "pending_count": r["pending_count"],
                "errored_count": r["errored_count"],
                "retried_count": r["retried_count"],
                "cancelled_count": r["cancelled_count"],
                "total_count": r["total_count"],
                "status": r["status"],
                "created_at": iso(r["created_ms"]),
            }
            for r in rows
        ]
        return {"namespace": namespace, "total": total, "page": page, "size": size, "runs": runs}

    def run_graph(self, run_id: str, namespace: str | None = None) -> dict[str, Any]:
        found = self.store.run_exists(run_id)
        if found is None or (namespace is not None and found[0] != namespace):
            return {
                "graph_name": None,
                "root_states": [],
                "nodes": [],
                "edges": [],
                "node_count": 0,
                "edge_count": 0,
                "execution_summary": dict.fromkeys(ALL_STATUSES, 0),
            }
        rows = self.store.run_states(run_id)
        nodes, edges, roots = [], [], []
        summary = dict.fromkeys(ALL_STATUSES, 0)
        for r in rows:
            item = {
                "id": r["id"],
                "node_name": r["node_name"],
                "identifier": r["identifier"],
                "status": r["status"],
                "error": r["error"],
            }
            nodes.append(item)
            summary[r["status"]] += 1
            if r["parents"]:
                edges.append({"source": list(r["parents"].values())[-1], "target": r["id"]})
            else:
                roots.append(item)
        return {
            "graph_name": found[1],
            "root_states": roots,
            "nodes": nodes,
            "edges": edges,
            "node_count": len(nodes),
            "edge_count": len(edges),
            "execution_summary": summary,
        }

    def get_state(self, state_id: str, namespace: str | None = None) -> dict[str, Any]:
        live = self._states.get(state_id)
        rec = None
        if live is None and isinstance(state_id, str) and _ID_RE.match(state_id):
            rec = self.store.get_state(state_id)
        if rec is None and live is None:
            raise NotFoundError(f"state {state_id!r} not found")
        if live is not None:
            rec = {
                "id": live.id,
                "node_name": live.node.node_name,
                "identifier": live.node.identifier,
                "graph_name": live.run.graph_name,
                "run_id": live.run.run_id,
                "namespace": live.run.namespace,
                "status": live.status,
                "inputs": live.inputs,
                "outputs": live.outputs,
                "error": live.error,
                "parents": live.parents,
                "retry_count": live.retry_count,
                "created_ms": live.created_ms,
                "updated_ms": live.updated_ms,
                "fanout_id": live.fanout_id,
            }
        assert rec is not None
        if namespace is not None and rec["namespace"] != namespace:
            raise NotFoundError(f"state {state_id!r} not found in namespace {namespace!r}")
        out = {
            k: rec[k]
            for k in (
                "id",
                "node_name",
                "identifier",
                "graph_name",
                "run_id",
                "status",
                "inputs",
                "outputs",
                "error",
                "parents",
                "retry_count",
                "fanout_id",
            )
        }
        out["created_at"] = iso(rec["created_ms"])
        out["updated_at"] = iso(rec["updated_ms"])
        return out

    def _run_in(self, run_id: str, namespace: str | None) -> tuple[str, str]:
        found = self.store.run_exists(run_id) if isinstance(run_id, str) else None
        if found is None or (namespace is not None and found[0] != namespace):
            raise NotFoundError(f"run {run_id!r} not found" + (f" in namespace {namespace!r}" if namespace else ""))
        return found

    def run_outputs(self, run_id: str, namespace: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Outputs of every SUCCESS state of the run, per node identifier, in branch order."""
        self._run_in(run_id, namespace)
        found: dict[str, list[tuple[tuple[int, ...], dict[str, Any]]]] = {}
        for ident, path, index, outputs in self.store.run_success_outputs(run_id):
            found.setdefault(ident, []).append(((*path, index), outputs))
        return {k: [o for _, o in sorted(v, key=lambda e: e[0])] for k, v in found.items()}

    def run_summary(self, run_id: str, namespace: str | None = None) -> dict[str, Any]:
        """Per node identifier: states by status, plus the run's status and counts."""
        found = self._run_in(run_id, namespace)
        per_node: dict[str, dict[str, int]] = {}
        totals = dict.fromkeys(ALL_STATUSES, 0)
        for ident, status, count in self.store.run_node_counts(run_id):
            per_node.setdefault(ident, {})[status] = count
            totals[status] += count
        return {
            "run_id": run_id,
            "namespace": found[0],
            "graph_name": found[1],
            "status": run_status_of(totals),
            "counts": totals,
            "nodes": per_node,
        }


def state_payload(s: State) -> dict[str, Any]:
    """A claimed state as the v0 enqueue response lists it."""
    return {
        "state_id": s.id,
        "node_name": s.node.node_name,
        "identifier": s.node.identifier,
        "inputs": s.inputs,
        "created_at": iso(s.created_ms),
    }
