"""`%exo` / `%%exo`: thin magics over the session's state manager — parse, call, display.

Each subcommand has its own argparse parser and `--help`; bad arguments print the usage and one
line of error, SDK errors print one line, never a traceback. Everything runs on the background
loop through `Session.call`; only `--wait` waits for a run.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import re
import shlex
from datetime import UTC, datetime, timedelta
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from ..config import Target
from ..errors import BadRequestError, ExosphereError, GraphValidationError
from ..loop import background_loop
from ..runtime import started_runtimes
from . import serving
from .display import (
    ErrorLine,
    RunSummary,
    StateReport,
    StatusReport,
    Table,
    nodes_table,
    outputs_table,
    runs_table,
)
from .graphs import GraphReport, graph_body, graphs_table, settled, shown_body
from .session import Session, current

__all__ = ["ExoMagics", "load_ipython_extension"]


class _ArgError(Exception):
    """Bad arguments: the usage and this message are printed."""


class _HelpShown(Exception):
    """`--help` was printed: nothing else to do."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, name: str, description: str, epilog: str | None = None) -> None:
        super().__init__(
            prog=f"%exo {name}",
            description=description,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            exit_on_error=False,
            allow_abbrev=False,
        )

    def error(self, message: str) -> Any:  # argparse would print and exit the kernel's process
        raise _ArgError(message)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            print(message, end="")
        raise _HelpShown


def _widget(name: str) -> Any:
    """A class of `exosphere_nb.notebook.widgets` when that module and the class exist, else None."""
    try:
        from . import widgets
    except ImportError:
        return None
    return getattr(widgets, name, None)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _ArgError(f"{what} {item!r} is not key=value")
        out[key.strip()] = value
    return out


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _ArgError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _ArgError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _when(text: str, now: datetime | None = None) -> datetime:
    """`30m` / `2h` / `7d` ago, epoch milliseconds, or ISO-8601 (a time without zone is UTC)."""
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[ago.group(2)]: float(ago.group(1))})
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _ArgError(f"{text!r} is not a time: use 30m, 2h, 7d (ago), epoch ms, or ISO-8601") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(text)
    return value


def _where(target: Target) -> str:
    return f"the embedded state manager {target.db}" if target.embedded else f"the state manager at {target.uri}"


def _target_text(target: Target) -> str:
    """What `Session.connect` takes to reach `target` again."""
    if not target.embedded:
        return str(target.uri)
    return ":memory:" if target.db == ":memory:" else f"duckdb://{target.db}"


def _filters_text(args: argparse.Namespace) -> str:
    shown = []
    for key in ("graph", "status", "since", "until"):
        value = getattr(args, key)
        if value is not None:
            shown.append(f"{key}={value.isoformat() if isinstance(value, datetime) else value}")
    return f"({', '.join(shown)})" if shown else ""


def _served_text(served: serving.Served, already: bool) -> str:
    lines = [
        ("already serving" if already else "serving") + f" the embedded state manager {served.db} on {served.url}",
        f"  EXOSPHERE_STATE_MANAGER_URI={served.url}",
    ]
    if served.key:
        lines.append(f"  EXOSPHERE_API_KEY={served.key}")
    else:
        lines.append("  no API key: loopback clients only")
    key = f", key={served.key!r}" if served.key else ""
    lines += [
        f"elsewhere: StateManager({served.namespace!r}, state_manager_uri={served.url!r}{key})",
        "stop with %exo serve --stop (or %exo stop)",
    ]
    return "\n".join(lines)


EPILOGS = {
    "connect": "examples:\n  %exo connect\n  %exo connect .exosphere/state.duckdb --namespace demo\n"
    "  %exo connect http://127.0.0.1:8000 --key $KEY --namespace demo",
    "graph": "example:\n  %%exo graph hello\n  nodes:\n    - node_name: Hello\n      identifier: hello\n"
    "      inputs: {name: '${{ store.name }}'}\n  store_config: {required_keys: [name]}\n  secrets: {api_key: '...'}",
    "trigger": "examples:\n  %exo trigger hello --store name=world --wait\n"
    '  %exo trigger squares count=3 --store-json \'{"label": "x"}\'',
    "runs": "examples:\n  %exo runs --graph hello --status FAILED --since 2h",
    "sql": "examples:\n  %exo sql SELECT status, count(*) AS n FROM states GROUP BY status\n"
    "  %%exo sql\n  SELECT * FROM runs WHERE status = 'FAILED'",
    "serve": "examples:\n  %exo serve\n  %exo serve --host 0.0.0.0 --port 8000\n  %exo serve --stop",
}


# -- the parsers ------------------------------------------------------------------------------

SUBCOMMANDS: dict[str, str] = {
    "connect": "choose the state manager: the embedded default, a DuckDB path, or a URI + key",
    "status": "connection, runtimes, workers, queue depth, runs in flight",
    "stop": "stop every runtime started in this kernel, and the HTTP server",
    "nodes": "the node classes registered in the namespace",
    "graphs": "the graph templates of the namespace",
    "graph": "show a graph; as %%exo graph NAME, create or replace it from the YAML/JSON cell",
    "trigger": "start a run of a graph (inputs and store as key=value or JSON); --wait for it",
    "runs": "runs, newest first, filtered by graph, status and time",
    "run": "one run: its live view (--wait for it, --outputs for its results)",
    "state": "one state: inputs, outputs, error with traceback, parents",
    "retry": "retry a failed state (or every failed state of a run with --run)",
    "cancel": "cancel a run's states that have not run yet",
    "sql": "read-only SQL over the views graphs, nodes, runs, states, store, triggers",
    "serve": "publish this kernel's embedded state manager over HTTP (prints URI and key)",
}


def _build(name: str) -> _Parser:
    p = _Parser(name, SUBCOMMANDS[name][0].upper() + SUBCOMMANDS[name][1:] + ".", EPILOGS.get(name))
    if name == "connect":
        p.add_argument(
            "target", nargs="?", help="'embedded' (default), a DuckDB file, ':memory:', or http(s)://host:port"
        )
        p.add_argument("--key", help="API key of a remote state manager (default: EXOSPHERE_API_KEY)")
        p.add_argument(
            "--namespace", "-n", help="the namespace to work in (kept when not given; alone, only it changes)"
        )
    elif name == "stop":
        p.add_argument("--grace", type=float, default=10.0, help="seconds for running states to finish (default 10)")
    elif name == "graph":
        p.add_argument("name", help="the graph's name")
    elif name == "trigger":
        p.add_argument("graph", help="the graph to run")
        p.add_argument("inputs", nargs="*", default=[], metavar="key=value", help="inputs of the root node")
        p.add_argument("--inputs", dest="inputs_json", metavar="JSON", help="root inputs as a JSON object")
        p.add_argument("--store", nargs="+", action="extend", default=[], metavar="key=value", help="store values")
        p.add_argument("--store-json", metavar="JSON", help="store values as a JSON object")
        p.add_argument("--start-delay", type=int, default=0, metavar="MS", help="start after this many milliseconds")
        p.add_argument("--wait", action="store_true", help="wait until nothing in the run is pending")
        p.add_argument("--timeout", type=_seconds, metavar="S", help="with --wait: stop waiting after S seconds")
    elif name == "runs":
        p.add_argument("--graph", "-g", help="only runs of this graph")
        p.add_argument("--status", "-s", type=str.upper, choices=["PENDING", "SUCCESS", "FAILED", "CANCELLED"])
        p.add_argument("--since", type=_when, metavar="WHEN", help="created at or after: 30m, 2h, 7d (ago), ISO-8601")
        p.add_argument("--until", type=_when, metavar="WHEN", help="created before: same forms as --since")
        p.add_argument("--page", type=_positive, default=1)
        p.add_argument("--size", type=_positive, default=20)
    elif name == "run":
        p.add_argument("run_id")
        p.add_argument("--wait", action="store_true", help="wait until nothing in the run is pending")
        p.add_argument("--timeout", type=_seconds, metavar="S", help="with --wait: stop waiting after S seconds")
        p.add_argument("--outputs", action="store_true", help="show the outputs of its successful states")
    elif name == "state":
        p.add_argument("state_id")
    elif name == "retry":
        p.add_argument("state_id", nargs="?", help="the ERRORED, PRUNED or CANCELLED state to retry")
        p.add_argument("--run", metavar="RUN_ID", help="retry every failed state of this run instead")
    elif name == "cancel":
        p.add_argument("run_id")
    elif name == "sql":
        p.add_argument("query", nargs="*", default=[], help="one SELECT (as %%%%exo sql: the cell)")
    elif name == "serve":
        p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
        p.add_argument("--key", help="the API key clients must send (default: a random one)")
        p.add_argument("--no-key", action="store_true", help="no key: loopback clients only")
        p.add_argument("--stop", action="store_true", help="stop serving")
    return p


def overview() -> str:
    lines = ["%exo SUBCOMMAND [options]   (each subcommand has --help)", ""]
    lines += [f"  {name:<8} {summary}" for name, summary in SUBCOMMANDS.items()]
    lines += ["", "Cell forms: %%exo graph NAME (YAML or JSON body), %%exo sql (one SELECT)."]
    return "\n".join(lines)


# -- the magics -------------------------------------------------------------------------------


@magics_class
class ExoMagics(Magics):
    """`%exo SUBCOMMAND ...` and `%%exo graph NAME` / `%%exo sql`."""

    def __init__(self, shell: Any = None, session: Session | None = None) -> None:
        super().__init__(shell)
        self.session = session or current()

    @line_cell_magic
    def exo(self, line: str, cell: str | None = None) -> Any:
        name, _, rest = line.strip().partition(" ")
        if name in ("", "-h", "--help", "help"):
            print(overview())
            return None
        if name not in SUBCOMMANDS:
            close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            print("usage: %exo SUBCOMMAND [options]   (%exo --help lists them)")
            print(f"%exo: error: unknown subcommand {name!r}{hint}")
            return None
        parser = _build(name)
        try:
            if name == "sql" and rest.strip() not in ("-h", "--help"):
                return self._sql(rest, cell)
            try:
                argv = shlex.split(rest)
            except ValueError as exc:
                raise _ArgError(f"cannot split the arguments: {exc}") from None
            args = parser.parse_args(argv)
            if cell is not None and name != "graph":
                raise _ArgError(f"%%exo {name} takes no cell body (only %%exo graph and %%exo sql do)")
            return getattr(self, f"_{name}")(args, cell)
        except _HelpShown:
            return None
        except (_ArgError, argparse.ArgumentError) as exc:
            print(parser.format_usage().rstrip())
            print(f"{parser.prog}: error: {exc}")
        except ExosphereError as exc:
            display(ErrorLine(exc.detail))
        except TimeoutError:
            display(ErrorLine("the state manager did not answer in time"))
        return None

    # -- connection and process ---------------------------------------------------------------

    def _connect(self, args: argparse.Namespace, cell: str | None) -> None:
        scheme = _SCHEME.match(args.target or "")
        if scheme and scheme.group(1).lower() not in ("http", "https", "duckdb"):
            raise _ArgError(f"{args.target!r} is not understood: give http(s)://host:port, a DuckDB path or :memory:")
        try:
            before = self.session.target, self.session.namespace
        except ValueError:  # EXOSPHERE_STATE_MANAGER_URI is not understood: nothing to go back to
            before = None
        if args.target is None and args.key is None and args.namespace:
            self.session.namespace = args.namespace  # only the namespace changes
            sm = self.session.sm
        else:
            try:
                sm = self.session.connect(args.target, key=args.key, namespace=args.namespace)
            except ValueError as exc:
                raise _ArgError(str(exc)) from None
        target = self.session.target
        try:
            graphs = self.session.call(sm.list_graphs(), timeout=30)
        except (ExosphereError, TimeoutError) as exc:
            detail = exc.detail if isinstance(exc, ExosphereError) else "no answer within 30 s"
            if before is None:
                raise
            self.session.connect(_target_text(before[0]), key=before[0].key, namespace=before[1])
            raise ExosphereError(
                f"cannot connect to {_where(target)}: {detail}\n"
                f"still connected: namespace {before[1]!r} on {_where(before[0])}"
            ) from None
        print(f"connected: namespace {sm.namespace!r} on {_where(target)} ({len(graphs)} graph(s))")
        served = self.session.server
        if isinstance(served, serving.Served) and served.db != target.db:
            print(f"note: %exo serve still publishes {served.db} on {served.url}")

    def _status(self, args: argparse.Namespace, cell: str | None) -> StatusReport:
        return StatusReport(self.session.status())

    def _stop(self, args: argparse.Namespace, cell: str | None) -> None:
        stopped = False
        for runtime in started_runtimes():
            runtime.stop(args.grace)
            info = runtime.info()
            print(f"stopped runtime {info['namespace']}/{info['name']} ({info['executed']} state(s) executed)")
            stopped = True
        served = serving.stop(self.session)
        if served is not None:
            print(f"stopped serving {served.url}")
            stopped = True
        if not stopped:
            print("nothing to stop: no runtime or HTTP server runs in this kernel")

    def _serve(self, args: argparse.Namespace, cell: str | None) -> None:
        if args.stop:
            served = serving.stop(self.session)
            print(f"stopped serving {served.url}" if served else "not serving")
            return
        if args.key is not None and args.no_key:
            raise _ArgError("give --key or --no-key, not both")
        before = self.session.server
        try:
            served = serving.serve(self.session, args.host, args.port, key=args.key, no_key=args.no_key)
        except OSError as exc:
            raise BadRequestError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        print(_served_text(served, already=served is before))

    # -- graphs and nodes ---------------------------------------------------------------------

    def _nodes(self, args: argparse.Namespace, cell: str | None) -> Table:
        return nodes_table(self.session.call(self.session.sm.list_nodes()), self.session.namespace)

    def _graphs(self, args: argparse.Namespace, cell: str | None) -> Table:
        return graphs_table(self.session.call(self.session.sm.list_graphs()), self.session.namespace)

    def _graph(self, args: argparse.Namespace, cell: str | None) -> Any:
        sm = self.session.sm
        if cell is None:
            return self._graph_view(self.session.call(sm.get_graph(args.name)))
        body = graph_body(cell, self.session.namespace)
        try:
            graph = self.session.call(sm._transport.upsert_graph(args.name, body))
        except GraphValidationError as exc:
            return GraphReport(shown_body(args.name, self.session.namespace, body), stored=False, errors=exc.errors)
        graph = self.session.call(settled(sm, graph), timeout=None)
        return self._graph_view(graph)

    def _graph_view(self, graph: dict[str, Any]) -> Any:
        view = _widget("GraphView")
        if view is not None and graph.get("validation_status") == "VALID":
            return view(self.session.sm, graph["name"])
        return GraphReport(graph)

    # -- runs and states ----------------------------------------------------------------------

    def _trigger(self, args: argparse.Namespace, cell: str | None) -> Any:
        inputs: dict[str, Any] = _pairs(args.inputs, "input")
        if args.inputs_json:
            inputs.update(_json_object(args.inputs_json, "--inputs"))
        store: dict[str, Any] = _pairs(args.store, "store value")
        if args.store_json:
            store.update(_json_object(args.store_json, "--store-json"))
        if args.start_delay < 0:
            raise _ArgError("--start-delay must be >= 0 milliseconds")
        if args.timeout is not None and not args.wait:
            raise _ArgError("--timeout goes with --wait")
        run = self.session.call(self.session.sm.trigger(args.graph, inputs, store, args.start_delay))
        return self._run_view(run["run_id"], args.wait, args.timeout)

    def _run(self, args: argparse.Namespace, cell: str | None) -> Any:
        if args.timeout is not None and not args.wait:
            raise _ArgError("--timeout goes with --wait")
        if args.outputs:
            if args.wait:
                self._wait(args.run_id, args.timeout)
            return outputs_table(args.run_id, self.session.call(self.session.sm.run_outputs(args.run_id)))
        return self._run_view(args.run_id, args.wait, args.timeout)

    def _run_view(self, run_id: str, wait: bool, timeout: float | None) -> Any:
        note = self._wait(run_id, timeout) if wait else None
        if note:
            print(note)
        summary = self.session.call(self.session.sm.run_status(run_id))  # an unknown run: one error line
        view = _widget("RunView")
        if view is not None:
            return view(self.session.sm, run_id)
        if summary["status"] == "PENDING" and not note:
            note = f"a snapshot: `%exo run {run_id}` shows it again, `--wait` waits for it"
        return RunSummary(summary, note=note)

    def _wait(self, run_id: str, timeout: float | None) -> str | None:
        """Wait for the run (Ctrl-C / interrupt stops waiting, not the run); a note when it did not end."""
        future = asyncio.run_coroutine_threadsafe(self.session.sm.wait(run_id, timeout), background_loop())
        try:
            future.result()
        except KeyboardInterrupt:
            future.cancel()
            return f"stopped waiting; run {run_id} goes on"
        except TimeoutError:
            return f"run {run_id} is still running after {timeout:g} s"
        return None

    def _runs(self, args: argparse.Namespace, cell: str | None) -> Table:
        page = self.session.call(
            self.session.sm.list_runs(args.graph, args.status, args.since, args.until, args.page, args.size)
        )
        return runs_table(page, _filters_text(args))

    def _state(self, args: argparse.Namespace, cell: str | None) -> StateReport:
        return StateReport(self.session.call(self.session.sm.get_state(args.state_id)))

    def _retry(self, args: argparse.Namespace, cell: str | None) -> None:
        sm = self.session.sm
        if (args.state_id is None) == (args.run is None):
            raise _ArgError("give a STATE_ID, or --run RUN_ID to retry every failed state of a run")
        if args.run is not None:
            new = self.session.call(sm.retry_failed(args.run))
            print(f"run {args.run}: retried {len(new)} failed state(s)" + (f": {', '.join(new)}" if new else ""))
            return
        result = self.session.call(sm.retry_state(args.state_id))
        print(f"state {args.state_id} retried: new state {result['id']} ({result.get('status', 'CREATED')})")

    def _cancel(self, args: argparse.Namespace, cell: str | None) -> None:
        result = self.session.call(self.session.sm.cancel_run(args.run_id))
        print(
            f"run {args.run_id}: cancelled {result.get('cancelled_count', 0)} state(s); "
            f"the run is {result.get('status')}"
        )

    # -- sql ----------------------------------------------------------------------------------

    def _sql(self, rest: str, cell: str | None) -> Any:
        query = rest if cell is None else cell
        if cell is not None and rest.strip():
            raise _ArgError("%%exo sql takes the query from the cell only")
        if not query.strip():
            raise _ArgError("give one SELECT query")
        engine = self.session.engine()
        if engine is None:
            raise BadRequestError(
                f"%exo sql reads the embedded DuckDB database, and this session uses the remote state manager "
                f"{self.session.target.uri}: run it in the kernel that serves it, or %exo connect to a local database"
            )

        async def run() -> tuple[list[str], list[tuple[Any, ...]]]:
            await engine.committed()  # everything acknowledged so far is visible
            return engine.store.query(query)

        columns, rows = self.session.call(run())
        try:
            import pandas as pd
        except ImportError:
            return Table(columns, rows, footer=f"{len(rows)} row(s)")
        return pd.DataFrame.from_records(rows, columns=columns)


def load_ipython_extension(ipython: Any) -> None:
    """Register `%exo` / `%%exo` (called by `%load_ext exosphere_nb`)."""
    ipython.register_magics(ExoMagics(ipython))
