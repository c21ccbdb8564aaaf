"""DuckDB persistence: the only module that speaks SQL.

Writes arrive as group commits (`prepare` on the loop thread, `write` on the writer thread), a few
`unnest` statements per transaction whatever the batch size. Reads use their own cursor.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from ..errors import BadRequestError, DatabaseLockedError
from .records import Changes, State

__all__ = ["Store", "WriteBatch"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads

SCHEMA = """
CREATE TABLE IF NOT EXISTS graph_templates(
    namespace VARCHAR, name VARCHAR, nodes VARCHAR, retry_policy VARCHAR, store_config VARCHAR,
    triggers VARCHAR, secret_names VARCHAR, validation_status VARCHAR, validation_errors VARCHAR,
    created_ms BIGINT, updated_ms BIGINT, PRIMARY KEY(namespace, name));
CREATE TABLE IF NOT EXISTS graph_secrets(
    namespace VARCHAR, graph_name VARCHAR, name VARCHAR, blob BLOB, PRIMARY KEY(namespace, graph_name, name));
CREATE TABLE IF NOT EXISTS registered_nodes(
    namespace VARCHAR, name VARCHAR, runtime_name VARCHAR, inputs_schema VARCHAR, outputs_schema VARCHAR,
    secrets VARCHAR, registered_ms BIGINT, PRIMARY KEY(namespace, name));
CREATE TABLE IF NOT EXISTS graph_versions(
    namespace VARCHAR, name VARCHAR, version VARCHAR, nodes VARCHAR, retry_policy VARCHAR, store_config VARCHAR,
    PRIMARY KEY(namespace, name, version));
CREATE TABLE IF NOT EXISTS run_records(
    run_id VARCHAR PRIMARY KEY, namespace VARCHAR, graph_name VARCHAR, created_ms BIGINT, cancelled BOOLEAN,
    graph_version VARCHAR);
CREATE TABLE IF NOT EXISTS state_records(
    id VARCHAR, seq BIGINT, run_id VARCHAR, namespace VARCHAR, graph_name VARCHAR,
    node_name VARCHAR, identifier VARCHAR, status VARCHAR, inputs VARCHAR, outputs VARCHAR, parents VARCHAR,
    error VARCHAR, retry_count INTEGER, enqueue_after BIGINT, lease_until BIGINT, created_ms BIGINT,
    updated_ms BIGINT, path INTEGER[], output_index INTEGER, execution_id VARCHAR, unite_keys VARCHAR,
    fanout_id VARCHAR, claimed_by VARCHAR);
CREATE TABLE IF NOT EXISTS store_values(run_id VARCHAR, key VARCHAR, value VARCHAR, PRIMARY KEY(run_id, key));
CREATE TABLE IF NOT EXISTS cron_triggers(
    namespace VARCHAR, graph_name VARCHAR, expression VARCHAR, last_fired_ms BIGINT, claimed_until_ms BIGINT,
    PRIMARY KEY(namespace, graph_name, expression));

CREATE OR REPLACE VIEW graphs AS SELECT namespace, name, validation_status,
    CAST(validation_errors AS JSON) AS validation_errors, CAST(nodes AS JSON) AS nodes,
    CAST(retry_policy AS JSON) AS retry_policy, CAST(store_config AS JSON) AS store_config,
    CAST(triggers AS JSON) AS triggers, CAST(secret_names AS JSON) AS secret_names,
    make_timestamp(created_ms * 1000) AS created_at, make_timestamp(updated_ms * 1000) AS updated_at
    FROM graph_templates;
CREATE OR REPLACE VIEW nodes AS SELECT namespace, name, runtime_name, CAST(inputs_schema AS JSON) AS inputs_schema,
    CAST(outputs_schema AS JSON) AS outputs_schema, CAST(secrets AS JSON) AS secrets,
    make_timestamp(registered_ms * 1000) AS registered_at FROM registered_nodes;
CREATE OR REPLACE VIEW states AS SELECT id AS state_id, run_id, namespace, graph_name, node_name, identifier,
    status, CAST(inputs AS JSON) AS inputs, CAST(outputs AS JSON) AS outputs, CAST(parents AS JSON) AS parents,
    error, retry_count, CASE WHEN enqueue_after > 0 THEN make_timestamp(enqueue_after * 1000) END AS enqueue_after,
    make_timestamp(created_ms * 1000) AS created_at, make_timestamp(updated_ms * 1000) AS updated_at,
    path || [output_index] AS branch, fanout_id FROM state_records;
CREATE OR REPLACE VIEW runs AS SELECT r.run_id, r.namespace, r.graph_name, make_timestamp(r.created_ms * 1000) AS created_at,
    count(s.id) AS total_count,
    count_if(s.status IN ('SUCCESS', 'PRUNED')) AS success_count,
    count_if(s.status IN ('CREATED', 'QUEUED', 'EXECUTED')) AS pending_count,
    count_if(s.status IN ('ERRORED', 'NEXT_CREATED_ERROR')) AS errored_count,
    count_if(s.status = 'RETRY_CREATED') AS retried_count,
    count_if(s.status = 'CANCELLED') AS cancelled_count,
    CASE WHEN count_if(s.status IN ('CREATED', 'QUEUED', 'EXECUTED')) > 0 THEN 'PENDING'
         WHEN count_if(s.status = 'CANCELLED') > 0 THEN 'CANCELLED'
         WHEN count_if(s.status IN ('ERRORED', 'NEXT_CREATED_ERROR')) > 0 THEN 'FAILED'
         ELSE 'SUCCESS' END AS status
    FROM run_records r LEFT JOIN state_records s ON s.run_id = r.run_id
    GROUP BY r.run_id, r.namespace, r.graph_name, r.created_ms;
CREATE OR REPLACE VIEW store AS SELECT run_id, key, value FROM store_values;
CREATE OR REPLACE VIEW triggers AS SELECT namespace, graph_name, expression,
    CASE WHEN last_fired_ms > 0 THEN make_timestamp(last_fired_ms * 1000) END AS last_fired_at FROM cron_triggers;
"""

USER_VIEWS = ("graphs", "nodes", "runs", "states", "store", "triggers")
_INTERNAL_TABLE = re.compile(
    r"\b(graph_templates|graph_secrets|graph_versions|registered_nodes|run_records|state_records|store_values|"
    r"cron_triggers)\b",
    re.I,
)

_STATE_COLUMNS = (
    "id, seq, run_id, namespace, graph_name, node_name, identifier, status, inputs, outputs, parents, error, "
    "retry_count, enqueue_after, lease_until, created_ms, updated_ms, path, output_index, execution_id, "
    "unite_keys, fanout_id, claimed_by"
)
_CHUNK = 4096  # rows per statement: bounds DuckDB's copy of the parameters, one transaction all the same
_NON_TERMINAL = "('CREATED', 'QUEUED', 'EXECUTED')"
_LOCK_PID = re.compile(r"PID (\d+)")
_INSERT_STATES = f"INSERT INTO state_records ({_STATE_COLUMNS}) SELECT " + ", ".join(["unnest(?)"] * 23)
_UPDATE_STATES = (
    "UPDATE state_records SET status = u.status, outputs = u.outputs, error = u.error, retry_count = u.retry_count, "
    "enqueue_after = u.enqueue_after, lease_until = u.lease_until, updated_ms = u.updated_ms, claimed_by = u.claimed_by "
    "FROM (SELECT unnest(?) AS id, unnest(?) AS status, unnest(?) AS outputs, unnest(?) AS error, "
    "unnest(?) AS retry_count, unnest(?) AS enqueue_after, unnest(?) AS lease_until, unnest(?) AS updated_ms, "
    "unnest(?) AS claimed_by) u WHERE state_records.id = u.id"
)
_UPDATE_ONE_STATE = (
    "UPDATE state_records SET status = ?, outputs = ?, error = ?, retry_count = ?, enqueue_after = ?, lease_until = ?, "
    "updated_ms = ?, claimed_by = ? WHERE id = ?"
)
MEMORY_LIMIT_ENV = "EXOSPHERE_DUCKDB_MEMORY_LIMIT"


class WriteBatch:
    """One group commit. What can still change on a state (status, outputs, error, counters, times, claim)
    is captured on the loop thread when the batch is taken, so a commit holds exactly the changes applied
    before it (a state's outputs and its next states land in the same one). The rest of a row never
    changes after the state is created: rows and their JSON are built chunk by chunk on the writer
    thread, which keeps memory bounded by a chunk."""

    __slots__ = ("dirty", "new", "ops", "runs", "store_rows")

    def __init__(self, changes: Changes) -> None:
        self.new = [(s, _mutable(s)) for s in changes.new_states.values()]
        for s in changes.new_states.values():
            s.persisted = True
        self.dirty = [(s, _mutable(s)) for s in changes.dirty_states.values()]
        self.runs = [
            (r.run_id, r.namespace, r.graph_name, r.created_ms, r.cancelled, r.graph.version) for r in changes.runs
        ]
        self.store_rows = list(changes.store_rows)
        self.ops = list(changes.ops)

    def insert_chunks(self) -> Iterator[list[list[Any]]]:
        for start in range(0, len(self.new), _CHUNK):
            yield _insert_columns(self.new[start : start + _CHUNK])

    def update_chunks(self) -> Iterator[list[list[Any]]]:
        for start in range(0, len(self.dirty), _CHUNK):
            yield _update_columns(self.dirty[start : start + _CHUNK])


Mutable = tuple[str, Any, Any, int, int, int, int, Any]


def _mutable(s: State) -> Mutable:
    return (s.status, s.outputs, s.error, s.retry_count, s.enqueue_after, s.lease_until, s.updated_ms, s.claimed_by)


def _insert_columns(states: list[tuple[State, Mutable]]) -> list[list[Any]]:
    encoded: dict[int, str] = {}  # siblings and children share dicts: encode each once

    def enc(d: dict[str, Any]) -> str:
        key = id(d)
        text = encoded.get(key)
        if text is None:
            text = encoded[key] = _dumps(d)
        return text

    rows = []
    for s, (status, outputs, error, retry_count, enqueue_after, lease_until, updated_ms, claimed_by) in states:
        node = s.node
        run = s.run
        rows.append(
            (
                s.id,
                s.seq,
                run.run_id,
                run.namespace,
                run.graph_name,
                node.node_name,
                node.identifier,
                status,
                enc(s.inputs),
                None if outputs is None else enc(outputs),
                enc(s.parents),
                error,
                retry_count,
                enqueue_after,
                lease_until,
                s.created_ms,
                updated_ms,
                list(s.path),
                s.output_index,
                s.execution_id,
                enc(s.unite_keys) if s.unite_keys else None,
                s.fanout_id,
                claimed_by,
            )
        )
    return [list(col) for col in zip(*rows)]


def _update_columns(states: list[tuple[State, Mutable]]) -> list[list[Any]]:
    rows = [
        (
            s.id,
            status,
            None if outputs is None else _dumps(outputs),
            error,
            retry_count,
            enqueue_after,
            lease_until,
            updated_ms,
            claimed_by,
        )
        for s, (status, outputs, error, retry_count, enqueue_after, lease_until, updated_ms, claimed_by) in states
    ]
    return [list(col) for col in zip(*rows)]


def _open(path: str) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(path)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" not in text.lower():
            raise
        pid = _LOCK_PID.search(text)
        holder = f"process {pid.group(1)}" if pid else "another process"
        raise DatabaseLockedError(
            f"the state database {path} is in use by {holder} (DuckDB allows one writer per file). "
            f"Connect to that process over HTTP instead: start `exo-nb serve --db {path}` there "
            "(or `%exo serve` in its notebook) and set EXOSPHERE_STATE_MANAGER_URI to the URI it prints; "
            "or use another --db path here."
        ) from None


_PARAM = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")|\?|\$\w+""")


def _without_parameters(sql: str) -> str:
    """The query with `?` / `$n` parameters replaced by NULL (quoted text untouched), for table analysis."""
    return _PARAM.sub(lambda m: m.group(1) or "NULL", sql)


def _memory_limit() -> str:
    value = os.environ.get(MEMORY_LIMIT_ENV, "64MB").strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]?i?B", value, re.I):
        raise ValueError(f"{MEMORY_LIMIT_ENV}={value!r} is not a size like 256MB or 2GiB")
    return value


class Store:
    """The state database. `write` runs on the engine's writer thread; reads on the caller's thread."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._con = _open(self.path)
        if self.path != ":memory:":
            # group commits are large: let DuckDB spill to disk instead of growing the process
            self._con.execute(f"SET memory_limit = '{_memory_limit()}'")
            # checkpoint often: committed rows then live in evictable blocks instead of the write-ahead log
            self._con.execute("SET checkpoint_threshold = '4MB'")
            # and hand freed memory back after each statement instead of caching up to 128 MB of it
            self._con.execute("SET allocator_flush_threshold = '8MB'")
            threads = os.environ.get("EXOSPHERE_DUCKDB_THREADS")
            if threads:
                self._con.execute(f"SET threads = {int(threads)}")
        self._con.execute(SCHEMA)
        # user SQL must not read files (the secrets key file sits beside the database): one-way switch
        self._con.execute("SET enable_external_access = false")
        self._local = threading.local()

    # -- connections -------------------------------------------------------------------------

    @property
    def _read(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self._con.cursor()
        return cur

    def close(self) -> None:
        try:
            self._con.close()
        except duckdb.Error:  # already closed
            pass

    # -- group commit ------------------------------------------------------------------------

    def write(self, batch: WriteBatch) -> None:
        con = self._con
        con.execute("BEGIN")
        try:
            if batch.runs:
                cols = list(zip(*batch.runs))
                con.execute(
                    "INSERT INTO run_records SELECT unnest(?), unnest(?), unnest(?), unnest(?), unnest(?), unnest(?)",  # new
                    [list(c) for c in cols],
                )
            for columns in batch.insert_chunks():
                con.execute(_INSERT_STATES, columns)
            for columns in batch.update_chunks():
                if len(columns[0]) == 1:  # a lone hop: a point update is cheaper than the join
                    con.execute(_UPDATE_ONE_STATE, [col[0] for col in columns[1:]] + [columns[0][0]])
                else:
                    con.execute(_UPDATE_STATES, columns)
            if batch.store_rows:
                cols = list(zip(*batch.store_rows))
                con.execute(
                    "INSERT INTO store_values SELECT unnest(?), unnest(?), unnest(?)",  # written once, at the trigger
                    [list(c) for c in cols],
                )
            for op, args in batch.ops:
                getattr(self, "_op_" + op)(con, *args)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    @staticmethod
    def _op_graph(con: duckdb.DuckDBPyConnection, row: tuple[Any, ...], secrets: list[tuple[str, bytes]]) -> None:
        con.execute("INSERT OR REPLACE INTO graph_templates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", list(row[:11]))
        # every version a run may have started on stays loadable: a restarted run finishes on its own graph
        con.execute(
            "INSERT INTO graph_versions VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [row[0], row[1], row[11], row[2], row[3], row[4]],
        )
        con.execute("DELETE FROM graph_secrets WHERE namespace = ? AND graph_name = ?", [row[0], row[1]])
        for name, blob in secrets:
            con.execute("INSERT INTO graph_secrets VALUES (?, ?, ?, ?)", [row[0], row[1], name, blob])

    @staticmethod
    def _op_validation(
        con: duckdb.DuckDBPyConnection, namespace: str, name: str, status: str, errors: str, updated_ms: int
    ) -> None:
        con.execute(
            "UPDATE graph_templates SET validation_status = ?, validation_errors = ?, updated_ms = ? "
            "WHERE namespace = ? AND name = ?",
            [status, errors, updated_ms, namespace, name],
        )

    @staticmethod
    def _op_node(con: duckdb.DuckDBPyConnection, row: tuple[Any, ...]) -> None:
        con.execute("INSERT OR REPLACE INTO registered_nodes VALUES (?, ?, ?, ?, ?, ?, ?)", list(row))

    @staticmethod
    def _op_triggers(
        con: duckdb.DuckDBPyConnection, namespace: str, graph: str, expressions: list[str], now_ms: int
    ) -> None:
        con.execute(
            "DELETE FROM cron_triggers WHERE namespace = ? AND graph_name = ? AND NOT list_contains(?, expression)",
            [namespace, graph, expressions],
        )
        for expr in expressions:
            con.execute(
                "INSERT INTO cron_triggers VALUES (?, ?, ?, ?, 0) ON CONFLICT DO NOTHING",
                [namespace, graph, expr, now_ms],
            )

    @staticmethod
    def _op_trigger_fired(
        con: duckdb.DuckDBPyConnection,
        namespace: str,
        graph: str,
        expression: str,
        fired_ms: int,
        claimed_until_ms: int,
    ) -> None:
        con.execute(
            "UPDATE cron_triggers SET last_fired_ms = ?, claimed_until_ms = ? "
            "WHERE namespace = ? AND graph_name = ? AND expression = ?",
            [fired_ms, claimed_until_ms, namespace, graph, expression],
        )

    @staticmethod
    def _op_run_cancelled(con: duckdb.DuckDBPyConnection, run_id: str, cancelled: bool) -> None:
        con.execute("UPDATE run_records SET cancelled = ? WHERE run_id = ?", [cancelled, run_id])

    # -- start-up ----------------------------------------------------------------------------

    def max_seq(self) -> int:
        row = self._read.execute("SELECT coalesce(max(seq), 0) FROM state_records").fetchone()
        return int(row[0]) if row else 0

    def load_graphs(self) -> list[dict[str, Any]]:
        cur = self._read.execute(
            "SELECT namespace, name, nodes, retry_policy, store_config, triggers, secret_names, validation_status, "
            "validation_errors, created_ms, updated_ms FROM graph_templates"
        )
        keys = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            rec = dict(zip(keys, row))
            for k in ("nodes", "retry_policy", "store_config", "triggers", "secret_names", "validation_errors"):
                rec[k] = _loads(rec[k]) if rec[k] is not None else None
            out.append(rec)
        return out

    def load_graph_version(self, namespace: str, name: str, version: str) -> dict[str, Any] | None:
        row = self._read.execute(
            "SELECT nodes, retry_policy, store_config FROM graph_versions WHERE namespace = ? AND name = ? AND version = ?",
            [namespace, name, version],
        ).fetchone()
        if row is None:
            return None
        return {"nodes": _loads(row[0]), "retry_policy": _loads(row[1]), "store_config": _loads(row[2])}

    def load_secret_blobs(self, namespace: str, graph: str) -> list[tuple[str, bytes]]:
        rows = self._read.execute(
            "SELECT name, blob FROM graph_secrets WHERE namespace = ? AND graph_name = ? ORDER BY name",
            [namespace, graph],
        ).fetchall()
        return [(name, bytes(blob)) for name, blob in rows]

    def load_nodes(self) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any], list[str]]]:
        rows = self._read.execute(
            "SELECT namespace, name, runtime_name, inputs_schema, outputs_schema, secrets FROM registered_nodes"
        ).fetchall()
        return [(ns, n, rt, _loads(i), _loads(o), _loads(s)) for ns, n, rt, i, o, s in rows]

    def load_triggers(self) -> list[tuple[str, str, str, int, int]]:
        return [
            tuple(r)  # type: ignore[misc]
            for r in self._read.execute(
                "SELECT namespace, graph_name, expression, last_fired_ms, claimed_until_ms FROM cron_triggers"
            ).fetchall()
        ]

    def active_run_ids(self) -> list[str]:
        rows = self._read.execute(
            f"SELECT DISTINCT run_id FROM state_records WHERE status IN {_NON_TERMINAL}"
        ).fetchall()
        return [r[0] for r in rows]

    def load_run(self, run_id: str) -> tuple[tuple[Any, ...], dict[str, str], list[dict[str, Any]]] | None:
        cur = self._read
        run = cur.execute(
            "SELECT run_id, namespace, graph_name, created_ms, cancelled, graph_version FROM run_records WHERE run_id = ?",
            [run_id],
        ).fetchone()
        if run is None:
            return None
        store = dict(cur.execute("SELECT key, value FROM store_values WHERE run_id = ?", [run_id]).fetchall())
        res = cur.execute(f"SELECT {_STATE_COLUMNS} FROM state_records WHERE run_id = ? ORDER BY seq", [run_id])
        keys = [d[0] for d in res.description]
        states = []
        for row in res.fetchall():
            rec = dict(zip(keys, row))
            for k in ("inputs", "outputs", "parents", "unite_keys"):
                if rec[k] is not None:
                    rec[k] = _loads(rec[k])
            states.append(rec)
        return tuple(run), store, states

    # -- reads for clients -------------------------------------------------------------------

    def get_state(self, state_id: str) -> dict[str, Any] | None:
        cur = self._read.execute(
            "SELECT s.id, s.node_name, s.identifier, s.graph_name, s.run_id, s.namespace, s.status, s.inputs, "
            "s.outputs, s.error, s.parents, s.retry_count, s.created_ms, s.updated_ms, s.fanout_id "
            "FROM state_records s WHERE s.id = ?",
            [state_id],
        )
        row = cur.fetchone()
        if row is None:
            return None
        rec = dict(zip([d[0] for d in cur.description], row))
        for k in ("inputs", "outputs", "parents"):
            rec[k] = _loads(rec[k]) if rec[k] is not None else None
        return rec

    def fanout_used(self, run_id: str, fanout_id: str) -> bool:
        return bool(
            self._read.execute(
                "SELECT 1 FROM state_records WHERE run_id = ? AND fanout_id = ? LIMIT 1", [run_id, fanout_id]
            ).fetchone()
        )

    def list_runs(
        self,
        namespace: str,
        page: int,
        size: int,
        graph_name: str | None = None,
        status: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        where = ["namespace = ?"]
        args: list[Any] = [namespace]
        if graph_name is not None:
            where.append("graph_name = ?")
            args.append(graph_name)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if since_ms is not None:
            where.append("created_at >= make_timestamp(? * 1000)")
            args.append(since_ms)
        if until_ms is not None:
            where.append("created_at < make_timestamp(? * 1000)")
            args.append(until_ms)
        cond = " AND ".join(where)
        cur = self._read
        total = cur.execute(f"SELECT count(*) FROM runs WHERE {cond}", args).fetchone()[0]  # type: ignore[index]
        res = cur.execute(
            f"SELECT run_id, graph_name, success_count, pending_count, errored_count, retried_count, cancelled_count, "
            f"total_count, status, epoch_ms(created_at) AS created_ms FROM runs WHERE {cond} "
            "ORDER BY created_at DESC, run_id LIMIT ? OFFSET ?",
            [*args, size, (page - 1) * size],
        )
        keys = [d[0] for d in res.description]
        return int(total), [dict(zip(keys, row)) for row in res.fetchall()]

    def run_exists(self, run_id: str) -> tuple[str, str] | None:
        row = self._read.execute("SELECT namespace, graph_name FROM run_records WHERE run_id = ?", [run_id]).fetchone()
        return (row[0], row[1]) if row else None

    def run_states(self, run_id: str) -> list[dict[str, Any]]:
        res = self._read.execute(
            "SELECT id, node_name, identifier, status, error, parents, outputs, path, output_index "
            "FROM state_records WHERE run_id = ? ORDER BY seq",
            [run_id],
        )
        keys = [d[0] for d in res.description]
        out = []
        for row in res.fetchall():
            rec = dict(zip(keys, row))
            rec["parents"] = _loads(rec["parents"]) if rec["parents"] else {}
            rec["outputs"] = _loads(rec["outputs"]) if rec["outputs"] else None
            out.append(rec)
        return out

    def list_states(
        self, run_id: str, page: int, size: int, identifier: str | None = None, status: str | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        where = ["run_id = ?"]
        args: list[Any] = [run_id]
        if identifier is not None:
            where.append("identifier = ?")
            args.append(identifier)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        cond = " AND ".join(where)
        cur = self._read
        total = cur.execute(f"SELECT count(*) FROM state_records WHERE {cond}", args).fetchone()[0]  # type: ignore[index]
        res = cur.execute(
            f"SELECT id, node_name, identifier, status, inputs, outputs, error, retry_count, created_ms, updated_ms "
            f"FROM state_records WHERE {cond} ORDER BY seq LIMIT ? OFFSET ?",
            [*args, size, (page - 1) * size],
        )
        keys = [d[0] for d in res.description]
        rows = []
        for row in res.fetchall():
            rec = dict(zip(keys, row))
            rec["inputs"] = _loads(rec["inputs"]) if rec["inputs"] else {}
            rec["outputs"] = _loads(rec["outputs"]) if rec["outputs"] else None
            rows.append(rec)
        return int(total), rows

    def run_node_counts(self, run_id: str) -> list[tuple[str, str, int]]:
        return [
            (i, st, int(c))
            for i, st, c in self._read.execute(
                "SELECT identifier, status, count(*) FROM state_records WHERE run_id = ? GROUP BY ALL ORDER BY 1, 2",
                [run_id],
            ).fetchall()
        ]

    def run_success_outputs(self, run_id: str) -> list[tuple[str, list[int], int, dict[str, Any]]]:
        rows = self._read.execute(
            "SELECT identifier, path, output_index, outputs FROM state_records "
            "WHERE run_id = ? AND status = 'SUCCESS' AND outputs IS NOT NULL",
            [run_id],
        ).fetchall()
        return [(i, p or [], o or 0, _loads(out)) for i, p, o, out in rows]

    def namespaces(self) -> list[str]:
        rows = self._read.execute(
            "SELECT namespace FROM graph_templates UNION SELECT namespace FROM registered_nodes ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]

    def status_counts(self, run_id: str) -> dict[str, int]:
        return dict(
            self._read.execute(
                "SELECT status, count(*) FROM state_records WHERE run_id = ? GROUP BY status", [run_id]
            ).fetchall()
        )

    # -- user SQL ----------------------------------------------------------------------------

    def query(self, sql: str, params: Iterable[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one read-only SELECT over the user views; anything else is refused."""
        con = self._read
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise BadRequestError(f"SQL does not parse: {exc}") from None
        if len(statements) != 1:
            raise BadRequestError(f"give exactly one SQL statement, got {len(statements)}")
        if statements[0].type != duckdb.StatementType.SELECT:
            raise BadRequestError(
                f"only SELECT queries are allowed (read-only), got {statements[0].type.name}; "
                f"the views are {', '.join(USER_VIEWS)}"
            )
        try:
            tables = duckdb.get_table_names(_without_parameters(sql))
        except duckdb.Error:
            # it binds against an empty catalog (e.g. JOIN ... USING fails there): name the internal tables instead
            tables = {m.group(0) for m in _INTERNAL_TABLE.finditer(sql)}
        refused = sorted(t for t in tables if t.split(".")[-1].lower() not in USER_VIEWS)
        if refused:
            raise BadRequestError(
                f"query names {', '.join(refused)}; only the views {', '.join(USER_VIEWS)} can be queried"
            )
        try:
            res = con.execute(sql, list(params) if params else None)
            return [d[0] for d in res.description], res.fetchall()
        except duckdb.Error as exc:
            raise BadRequestError(f"query failed: {exc}") from None
