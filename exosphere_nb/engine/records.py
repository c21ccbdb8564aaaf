"""The engine's in-memory records: live states, active runs, unite groups, the next group commit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ..models import run_status_of
from .graph import CompiledGraph, CompiledNode

# Status strings (the StateStatus enum values), plain str on the hot path.
CREATED = "CREATED"
QUEUED = "QUEUED"
EXECUTED = "EXECUTED"
SUCCESS = "SUCCESS"
ERRORED = "ERRORED"
NEXT_CREATED_ERROR = "NEXT_CREATED_ERROR"
RETRY_CREATED = "RETRY_CREATED"
PRUNED = "PRUNED"
CANCELLED = "CANCELLED"

ALL_STATUSES = (CREATED, QUEUED, EXECUTED, SUCCESS, ERRORED, NEXT_CREATED_ERROR, RETRY_CREATED, PRUNED, CANCELLED)
TERMINAL = frozenset({SUCCESS, PRUNED, ERRORED, NEXT_CREATED_ERROR, RETRY_CREATED, CANCELLED})
FAILED = frozenset({ERRORED, NEXT_CREATED_ERROR, CANCELLED})  # what fails an ALL_SUCCESS unite
RETRYABLE = frozenset({ERRORED, NEXT_CREATED_ERROR, PRUNED, CANCELLED})  # manual retry accepts these

_EMPTY: dict[str, str] = {}


class State:
    """One execution of one node in one run."""

    __slots__ = (
        "claimed_by",
        "created_ms",
        "enqueue_after",
        "error",
        "execution_id",
        "fanout_id",
        "groups",
        "id",
        "inputs",
        "lease_until",
        "node",
        "output_index",
        "outputs",
        "parents",
        "path",
        "persisted",
        "retry_count",
        "run",
        "seq",
        "status",
        "unite_keys",
        "updated_ms",
    )

    def __init__(
        self,
        id: str,
        seq: int,
        run: Run,
        node: CompiledNode,
        status: str,
        inputs: dict[str, str],
        parents: dict[str, str],
        now_ms: int,
        path: tuple[int, ...] = (),
        unite_keys: dict[str, str] = _EMPTY,
        retry_count: int = 0,
        enqueue_after: int = 0,
    ) -> None:
        self.id = id
        self.seq = seq
        self.run = run
        self.node = node
        self.status = status
        self.inputs = inputs
        self.outputs: dict[str, Any] | None = None
        self.parents = parents
        self.error: str | None = None
        self.retry_count = retry_count
        self.enqueue_after = enqueue_after
        self.lease_until = 0
        self.created_ms = now_ms
        self.updated_ms = now_ms
        self.path = path
        self.output_index = 0
        self.execution_id = id
        self.unite_keys = unite_keys
        self.groups: tuple[UniteGroup, ...] = ()
        self.fanout_id: str | None = None
        self.claimed_by: str | None = None  # "local": a runtime in this process (re-queued on restart)
        self.persisted = False

    def __lt__(self, other: State) -> bool:  # heaps order ready states oldest first
        return self.seq < other.seq

    def __repr__(self) -> str:
        return f"<State {self.id} {self.node.identifier} {self.status}>"


@dataclass(eq=False, slots=True)
class UniteGroup:
    """Bookkeeping of one unite node for one execution of its target."""

    unite: CompiledNode
    target: State  # the target's executed state (first output)
    pending: int = 0  # member states not yet terminal
    failed: int = 0  # member states that ended ERRORED / NEXT_CREATED_ERROR / CANCELLED
    released: bool = False  # the unite state exists
    collected: dict[str, list[tuple[tuple[int, ...], dict[str, Any]]]] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class Run:
    run_id: str
    namespace: str
    graph_name: str
    graph: CompiledGraph
    store: dict[str, str]
    created_ms: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALL_STATUSES, 0))
    active: int = 0  # states not terminal
    cancelled: bool = False
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # retained outputs by state id
    groups: dict[tuple[str, str], UniteGroup] = field(default_factory=dict)
    fanout_ids: set[str] = field(default_factory=set)
    waiters: list[asyncio.Future[str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return run_status_of(self.counts)


@dataclass(eq=False, slots=True)
class Changes:
    """Everything the next group commit writes, and what waits for it."""

    new_states: dict[str, State] = field(default_factory=dict)
    dirty_states: dict[str, State] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    store_rows: list[tuple[str, str, str]] = field(default_factory=list)
    ops: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)  # rare writes: graphs, nodes, triggers
    visible: list[State] = field(default_factory=list)  # states handed to runtimes once committed
    finished_runs: list[Run] = field(default_factory=list)
    done: asyncio.Future[None] | None = None

    def __bool__(self) -> bool:
        return bool(self.new_states or self.dirty_states or self.runs or self.store_rows or self.ops)
