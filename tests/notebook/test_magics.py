"""`%exo` / `%%exo` in an in-process IPython shell, on a real DuckDB file per test."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell
from pydantic import BaseModel

from exosphere_nb import BaseNode, Runtime, RuntimeHandle
from exosphere_nb.client.embedded import engine_if_open
from exosphere_nb.loop import run_sync
from exosphere_nb.notebook import magics, serving
from exosphere_nb.notebook.display import ErrorLine, RunSummary, StateReport, StatusReport, Table
from exosphere_nb.notebook.graphs import GraphReport, node_errors
from exosphere_nb.notebook.magics import SUBCOMMANDS, ExoMagics
from exosphere_nb.notebook.session import Session

NS = "t"
SECRET = "s3cr3t-VALUE-4b7e21"
STATE = {"fail": True}
REAL_WIDGET = magics._widget


class Hello(BaseNode):
    class Inputs(BaseModel):
        name: str
        greeting: str

    class Outputs(BaseModel):
        message: str

    class Secrets(BaseModel):
        api_key: str

    async def execute(self) -> Outputs:
        assert self.secrets.api_key == SECRET
        return self.Outputs(message=f"{self.inputs.greeting} {self.inputs.name}")


class Flaky(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> Outputs:
        if STATE["fail"]:
            raise RuntimeError(f"flaky failure on {self.inputs.item}")
        return self.Outputs(item=self.inputs.item)


HELLO_GRAPH = f"""
nodes:
  - node_name: Hello
    identifier: hello
    inputs:
      name: ${{{{ store.name }}}}
      greeting: hello
store_config:
  required_keys: [name]
secrets:
  api_key: {SECRET}
"""

FLAKY_GRAPH = """
nodes:
  - node_name: Flaky
    identifier: flaky
    inputs: {item: "${{ store.item }}"}
store_config:
  default_values: {item: 7}
retry_policy: {max_retries: 0}
"""


class Exo:
    """Runs `%exo` lines and `%%exo` cells; `out` is what the last call printed (stdout and stderr)."""

    def __init__(self, shell: InteractiveShell, session: Session, capsys: pytest.CaptureFixture[str]) -> None:
        self.shell = shell
        self.session = session
        self.capsys = capsys
        self.out = ""

    def __call__(self, line: str, cell: str | None = None) -> Any:
        self.capsys.readouterr()
        if line.endswith(" --wait"):
            line += " --timeout 30"  # a broken run fails the test instead of hanging it
        if cell is None:
            result = self.shell.run_line_magic("exo", line)
        else:
            result = self.shell.run_cell_magic("exo", line, cell)
        captured = self.capsys.readouterr()
        self.out = captured.out + captured.err
        assert "Traceback" not in self.out, self.out
        return result

    def call(self, coro: Any) -> Any:
        return self.session.call(coro)


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    return InteractiveShell.instance()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded default database, if any, lands here
    for name in ("EXOSPHERE_STATE_MANAGER_URI", "EXOSPHERE_API_KEY", "EXOSPHERE_DB", "EXOSPHERE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(serving.SERVERS_DIR_ENV, str(tmp_path / "servers"))
    monkeypatch.setattr(magics, "_widget", lambda name: None)  # the display.py fallbacks: stable to assert on
    STATE["fail"] = True


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    path = str((tmp_path / "state.duckdb").resolve())
    yield path
    engine = engine_if_open(path)
    if engine is not None:
        run_sync(engine.close(), timeout=10)


@pytest.fixture
def exo(shell: InteractiveShell, db: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Exo]:
    session = Session()
    shell.register_magics(ExoMagics(shell, session=session))
    runner = Exo(shell, session, capsys)
    runner(f"connect {db} --namespace {NS}")
    assert f"namespace '{NS}'" in runner.out
    yield runner
    serving.stop(session)


@pytest.fixture
def runtime(db: str) -> Iterator[RuntimeHandle]:
    rt = Runtime(namespace=NS, name="rt", nodes=[Hello, Flaky], state_manager_uri=f"duckdb://{db}")

    async def start() -> RuntimeHandle | None:
        return rt.start()  # inside the background loop: returns a handle at once

    handle = run_sync(start(), timeout=10)
    assert isinstance(handle, RuntimeHandle)
    yield handle
    handle.stop(grace=2)


def registered(exo: Exo) -> None:
    import time

    deadline = time.monotonic() + 5
    while {n["name"] for n in exo.call(exo.session.sm.list_nodes())} < {"Hello", "Flaky"}:
        assert time.monotonic() < deadline, "runtime did not register its nodes"
        time.sleep(0.02)


@pytest.fixture
def ready(exo: Exo, runtime: RuntimeHandle) -> Exo:
    """A connected session with a runtime and the graphs `hello` and `flaky` stored and VALID."""
    registered(exo)
    for name, body in (("hello", HELLO_GRAPH), ("flaky", FLAKY_GRAPH)):
        report = exo(f"graph {name}", body)
        assert report.status == "VALID", repr(report)
    return exo


def runs_count(exo: Exo) -> int:
    return exo.call(exo.session.sm.list_runs())["total"]


# -- loading, help and usage ------------------------------------------------------------------


def test_load_ext_registers_line_and_cell_magic(shell: InteractiveShell) -> None:
    shell.run_line_magic("load_ext", "exosphere_nb")
    assert shell.find_line_magic("exo") is not None
    assert shell.find_cell_magic("exo") is not None


def test_overview_lists_every_subcommand(exo: Exo) -> None:
    for line in ("", "--help", "help"):
        assert exo(line) is None
        for name in SUBCOMMANDS:
            assert f"  {name} " in exo.out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(exo: Exo, name: str) -> None:
    assert exo(f"{name} --help") is None
    assert f"usage: %exo {name}" in exo.out
    assert "options:" in exo.out


BAD = [
    ("bogus", "unknown subcommand 'bogus'"),
    ("trigger", "required: graph"),
    ("trigger g oops", "'oops' is not key=value"),
    ("trigger g --inputs notjson", "--inputs is not valid JSON"),
    ("trigger g --store-json '[1]'", "must be a JSON object"),
    ("trigger g --start-delay soon", "invalid int value"),
    ("trigger g --timeout 5", "--timeout goes with --wait"),
    ("trigger g --inputs '{", "cannot split the arguments"),
    ("runs --status nope", "invalid choice"),
    ("runs --page 0", "argument --page"),
    ("runs --since someday", "is not a time"),
    ("run", "required: run_id"),
    ("run r1 --timeout 3", "--timeout goes with --wait"),
    ("state", "required: state_id"),
    ("retry", "give a STATE_ID"),
    ("retry s1 --run r1", "give a STATE_ID"),
    ("cancel", "required: run_id"),
    ("nodes extra", "unrecognized arguments: extra"),
    ("graphs --all", "unrecognized arguments: --all"),
    ("graph", "required: name"),
    ("serve --key k --no-key", "not both"),
    ("serve --port x", "invalid int value"),
    ("connect ftp://example.org", "is not understood"),
    ("stop --grace x", "invalid float value"),
    ("sql", "give one SELECT"),
]


@pytest.mark.parametrize(("line", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_print_usage_and_one_error(exo: Exo, line: str, message: str) -> None:
    assert exo(line) is None
    assert "usage: %exo" in exo.out
    errors = [x for x in exo.out.splitlines() if "error:" in x]
    assert len(errors) == 1 and message in errors[0], exo.out


def test_a_cell_body_is_refused_where_none_is_taken(exo: Exo) -> None:
    assert exo("nodes", "something") is None
    assert "takes no cell body" in exo.out
    assert exo("sql SELECT 1", "SELECT 2") is None
    assert "from the cell only" in exo.out


# -- connect, status, nodes, graphs -----------------------------------------------------------


def test_connect_status_nodes_graphs(exo: Exo, db: str, runtime: RuntimeHandle) -> None:
    registered(exo)
    report = exo("status")
    assert isinstance(report, StatusReport)
    text = repr(report)
    assert f"namespace:      {NS}" in text
    assert f"{db} (embedded)" in text
    assert f"{NS}/rt  nodes=[Hello, Flaky] workers=4" in text
    assert "0 ready, 0 delayed, 0 in flight" in text
    assert "runs in flight: 0" in text
    assert "<table>" in report._repr_html_()

    nodes = exo("nodes")
    assert isinstance(nodes, Table)
    assert nodes.records() == [
        {"node": "Flaky", "inputs": "item", "outputs": "item", "secrets": ""},
        {"node": "Hello", "inputs": "name, greeting", "outputs": "message", "secrets": "api_key"},
    ]
    graphs = exo("graphs")
    assert isinstance(graphs, Table) and len(graphs) == 0

    exo("connect --namespace other")
    assert f"namespace 'other' on the embedded state manager {db}" in exo.out
    assert len(exo("nodes")) == 0


def test_a_failed_connect_is_one_error_and_keeps_the_connection(exo: Exo, db: str) -> None:
    assert exo("connect http://127.0.0.1:9 --key k -n elsewhere") is None
    assert exo.out.startswith("error: cannot connect to the state manager at http://127.0.0.1:9: ")
    assert exo.out.rstrip().endswith(f"still connected: namespace '{NS}' on the embedded state manager {db}")
    assert f"{db} (embedded)" in repr(exo("status"))
    assert exo.session.namespace == NS


def test_a_database_locked_by_another_process_is_one_error(exo: Exo, tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    code = "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(other)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert exo(f"connect {other}") is None
        assert exo.out.startswith(f"error: cannot connect to the embedded state manager {other}: ")
        assert f"is in use by process {holder.pid}" in exo.out
    finally:
        holder.kill()
        holder.wait(10)


# -- %%exo graph ------------------------------------------------------------------------------


def test_graph_cell_stores_a_valid_graph(exo: Exo, runtime: RuntimeHandle) -> None:
    registered(exo)
    report = exo("graph hello", HELLO_GRAPH)
    assert isinstance(report, GraphReport) and report.stored and report.status == "VALID"
    assert report.graph["nodes"][0]["namespace"] == NS  # defaulted to the session's namespace
    text = repr(report)
    assert "graph 'hello' (namespace t): VALID" in text
    assert "secrets: api_key (values never shown)" in text
    assert SECRET not in text and SECRET not in report._repr_html_()
    graphs = exo("graphs")
    assert graphs.records()[0]["graph"] == "hello" and graphs.records()[0]["validation"] == "VALID"
    shown = exo("graph hello")  # the line form shows the stored graph
    assert repr(shown) == text


def test_graph_cell_takes_json_too(exo: Exo, runtime: RuntimeHandle) -> None:
    registered(exo)
    body = {
        "nodes": [{"node_name": "Flaky", "identifier": "f", "inputs": {"item": "x"}}],
        "triggers": ["0 * * * *"],
    }
    report = exo("graph j", json.dumps(body))
    assert report.status == "VALID"
    assert "triggers: 0 * * * *" in repr(report)


def test_invalid_graph_is_stored_and_each_error_is_shown_on_its_node_and_field(
    exo: Exo, runtime: RuntimeHandle
) -> None:
    registered(exo)
    body = """
nodes:
  - node_name: Hello
    identifier: hello
    inputs: {nme: x, greeting: hi}
    next_nodes: [other]
  - node_name: Nope
    identifier: other
    inputs: {}
"""
    report = exo("graph broken", body)
    assert report.stored and report.status == "INVALID"
    lines = repr(report).splitlines()
    at_hello = lines.index("  hello (Hello)  next: other")
    at_other = lines.index("  other (Nope)")
    hello_errors = [x for x in lines[at_hello:at_other] if x.startswith("    error")]
    assert any(x.startswith("    error (inputs.nme): 'nme' is not an input of Hello") for x in hello_errors)
    assert any(x.startswith("    error (inputs.name): input 'name' of Hello has no value") for x in hello_errors)
    assert any(x.startswith("    error (secrets.api_key): secret 'api_key'") for x in hello_errors)
    other_errors = [x for x in lines[at_other:] if x.startswith("    error")]
    assert other_errors == ["    error (node_name): node 'Nope' is not registered in namespace 't'"]
    html = report._repr_html_()
    assert "✗ <code>inputs.nme</code>" in html and "✗ <code>node_name</code>" in html
    assert [g["validation_status"] for g in exo.call(exo.session.sm.list_graphs())] == ["INVALID"]
    assert exo("trigger broken") is None
    assert exo.out.startswith("error: graph 'broken' is INVALID")


def test_graph_refused_by_its_structure_is_shown_and_not_stored(exo: Exo) -> None:
    body = """
nodes:
  - {node_name: A, identifier: a, inputs: {x: "${{ nowhere.outputs.y }}"}, next_nodes: [missing]}
  - {node_name: B, identifier: b, inputs: {}}
"""
    report = exo("graph refused", body)
    assert isinstance(report, GraphReport) and not report.stored
    text = repr(report)
    assert text.startswith("graph 'refused' (namespace t) was NOT stored")
    assert "    error (next_nodes): next node 'missing' does not exist" in text

    cycle = "nodes:\n  - {node_name: A, identifier: a, next_nodes: [b]}\n  - {node_name: B, identifier: b, next_nodes: [a]}\n"
    text = repr(exo("graph refused", cycle))
    assert "\nerror: graph has" in text  # not about one node: shown under the graph

    report = exo("graph refused", "nodes:\n  - {node_name: B, identifier: '', inputs: {}}\n")
    assert "  #0 (B)\n    error (identifier): Value error, Node identifier cannot be empty" in repr(report)
    assert exo.call(exo.session.sm.list_graphs()) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("nodes: [a: b", "not valid YAML or JSON"),
        ("\n  \n", "the cell is empty"),
        ("- just\n- a list\n", "must be a mapping"),
        ("nodes: []\nnodez: 1\n", "unknown key(s) nodez"),
        ("nodes: {a: 1}\n", "`nodes` must be a list"),
        ("nodes: []\ntriggers: hourly\n", "`triggers` must be a list"),
    ],
)
def test_malformed_graph_cell_stores_nothing(exo: Exo, body: str, message: str) -> None:
    assert exo("graph g", body) is None
    assert exo.out.startswith("error: nothing stored") and message in exo.out, exo.out
    assert exo.call(exo.session.sm.list_graphs()) == []


# -- trigger, runs, run, state, retry, cancel -------------------------------------------------


def test_trigger_with_key_value_and_json_store_waits_for_success(ready: Exo) -> None:
    summary = ready('trigger hello greeting=hi --store-json \'{"name": "json"}\' --wait')
    assert isinstance(summary, RunSummary)
    assert summary.status == "SUCCESS" and "SUCCESS — 1/1 states finished" in repr(summary)
    assert ready.call(ready.session.sm.run_outputs(summary.run_id)) == {"hello": [{"message": "hi json"}]}
    summary = ready("trigger hello --store name=kv --wait --timeout 20")
    assert ready.call(ready.session.sm.run_outputs(summary.run_id)) == {"hello": [{"message": "hello kv"}]}
    summary = ready('trigger hello --inputs \'{"greeting": "hey"}\' --store name=x --wait')
    assert ready.call(ready.session.sm.run_outputs(summary.run_id)) == {"hello": [{"message": "hey x"}]}
    assert "width:100.00%" in summary._repr_html_()  # the progress bar, full


def test_trigger_without_wait_returns_at_once(ready: Exo) -> None:
    summary = ready("trigger hello --store name=later --start-delay 60000")
    assert isinstance(summary, RunSummary) and summary.status == "PENDING"
    assert f"`%exo run {summary.run_id}` shows it again" in repr(summary)


def test_trigger_errors_are_one_line(ready: Exo) -> None:
    assert ready("trigger nothing") is None
    assert ready.out.startswith("error: ") and "nothing" in ready.out
    assert ready("trigger hello") is None
    assert ready.out.startswith("error: store is missing required keys ['name']")
    assert ready("trigger hello --inputs '{\"name\": 3}' --store name=x") is None
    assert "must be strings" in ready.out
    assert runs_count(ready) == 0


def test_runs_filters(ready: Exo) -> None:
    ok = ready("trigger hello --store name=a --wait").run_id
    bad = ready("trigger flaky --wait").run_id
    everything = ready("runs")
    assert {r["run_id"] for r in everything.records()} == {ok, bad}
    assert "page 1 of 1, 2 run(s)" in repr(everything)
    assert [r["run_id"] for r in ready("runs --graph hello").records()] == [ok]
    assert [r["run_id"] for r in ready("runs --status failed").records()] == [bad]
    assert [r["run_id"] for r in ready("runs -g flaky -s FAILED --since 1h").records()] == [bad]
    assert ready("runs --until 1h").records() == []
    assert ready("runs --since 2999-01-01T00:00:00").records() == []
    page = ready("runs --size 1 --page 2")
    assert len(page) == 1 and "page 2 of 2, 2 run(s)" in repr(page)


def test_run_state_retry(ready: Exo) -> None:
    run_id = ready("trigger flaky --wait").run_id
    summary = ready(f"run {run_id}")
    assert isinstance(summary, RunSummary) and summary.status == "FAILED"
    assert "flaky: ERRORED=1" in repr(summary)
    state_id = ready.call(ready.session.sm.run_graph(run_id))["nodes"][0]["id"]
    report = ready(f"state {state_id}")
    assert isinstance(report, StateReport)
    text = repr(report)
    assert f"state {state_id} — node 'flaky' (Flaky) of run {run_id}, graph 'flaky': ERRORED" in text
    assert "  item: 7" in text  # the YAML number became the string "7"
    assert "Traceback (most recent call last)" not in ready.out  # shown by the report, not raised
    assert "RuntimeError: flaky failure on 7" in text
    html = report._repr_html_()
    assert "<pre" in html and "RuntimeError: flaky failure on 7" in html

    STATE["fail"] = False
    ready(f"retry {state_id}")
    new_id = re.search(r"new state (\w+) \(CREATED\)", ready.out).group(1)  # type: ignore[union-attr]
    assert ready(f"run {run_id} --wait").status == "SUCCESS"
    child = ready(f"state {new_id}")
    assert child.state["status"] == "SUCCESS" and child.state["outputs"] == {"item": "7"}
    outputs = ready(f"run {run_id} --outputs")
    assert outputs.records() == [{"node": "flaky", "branch": 0, "outputs": {"item": "7"}}]

    assert ready(f"retry {new_id}") is None
    assert ready.out.startswith(f"error: state {new_id} is SUCCESS")
    assert ready("state 0123456789abcdef01234567") is None
    assert ready.out.startswith("error: state '0123456789abcdef01234567' not found")


def test_retry_every_failed_state_of_a_run(ready: Exo) -> None:
    run_id = ready("trigger flaky --wait").run_id
    STATE["fail"] = False
    ready(f"retry --run {run_id}")
    assert f"run {run_id}: retried 1 failed state(s)" in ready.out
    assert ready(f"run {run_id} --wait --timeout 20").status == "SUCCESS"


def test_cancel(ready: Exo) -> None:
    run_id = ready("trigger hello --store name=x --start-delay 60000").run_id
    ready(f"cancel {run_id}")
    assert ready.out.strip() == f"run {run_id}: cancelled 1 state(s); the run is CANCELLED"
    assert ready(f"run {run_id}").status == "CANCELLED"
    assert ready("cancel no-such-run") is None
    assert ready.out.startswith("error: run 'no-such-run' not found")


# -- sql --------------------------------------------------------------------------------------


def test_sql_returns_a_dataframe(ready: Exo) -> None:
    import pandas as pd

    first = ready("trigger hello --store name=a --wait").run_id
    second = ready("trigger hello --store name=b --wait").run_id
    df = ready("sql SELECT run_id, status FROM runs ORDER BY created_at")
    assert isinstance(df, pd.DataFrame)
    assert df.to_dict("records") == [{"run_id": first, "status": "SUCCESS"}, {"run_id": second, "status": "SUCCESS"}]
    df = ready("sql", "SELECT key, value FROM store WHERE run_id = '" + second + "'\n")
    assert df.to_dict("records") == [{"key": "name", "value": "b"}]
    counts = ready("sql SELECT identifier, count(*) AS n FROM states GROUP BY ALL")
    assert counts.to_dict("records") == [{"identifier": "hello", "n": 2}]


def test_sql_without_pandas_returns_a_table(ready: Exo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    table = ready("sql SELECT name, validation_status FROM graphs ORDER BY name")
    assert isinstance(table, Table)
    assert table.rows == [["flaky", "VALID"], ["hello", "VALID"]]
    assert "2 row(s)" in repr(table)


WRITES = [
    "DELETE FROM runs",
    "INSERT INTO store VALUES ('r', 'k', 'v')",
    "UPDATE graph_templates SET name = 'x'",
    "CREATE TABLE evil AS SELECT * FROM graphs",
    "DROP VIEW runs",
    "ATTACH '/tmp/other.duckdb' AS other",
    "COPY graphs TO '/tmp/graphs.csv'",
    "SELECT * FROM graph_secrets",
    "SELECT * FROM state_records",
    "SELECT 1; DELETE FROM runs",
]


@pytest.mark.parametrize("query", WRITES)
def test_sql_refuses_anything_but_reading_the_views(ready: Exo, query: str) -> None:
    ready("trigger hello --store name=a --wait")
    before = ready("sql SELECT count(*) AS n FROM runs")["n"][0]
    assert ready(f"sql {query}") is None
    assert ready.out.startswith("error: "), ready.out
    assert any(
        m in ready.out for m in ("only SELECT queries are allowed", "only the views", "exactly one SQL statement")
    )
    assert ready("sql SELECT count(*) AS n FROM runs")["n"][0] == before
    assert sorted(ready("sql SELECT name FROM graphs")["name"]) == ["flaky", "hello"]


def test_no_secret_value_in_any_output(ready: Exo) -> None:
    run_id = ready("trigger hello --store name=a --wait").run_id
    state_id = ready.call(ready.session.sm.run_graph(run_id))["nodes"][0]["id"]
    shown = [
        ready("graphs"),
        ready("graph hello"),
        ready("nodes"),
        ready("status"),
        ready(f"run {run_id}"),
        ready(f"state {state_id}"),
        ready("runs"),
    ]
    texts = [repr(x) for x in shown] + [x._repr_html_() for x in shown]
    for view in ("graphs", "nodes", "runs", "states", "store", "triggers"):
        df = ready(f"sql SELECT * FROM {view}")
        texts.append(df.to_string())
        texts.append(json.dumps(df.astype(str).to_dict("records")))
    assert all(SECRET not in t for t in texts)
    assert "api_key" in texts[0]  # the name is shown, never the value


# -- serve and stop ---------------------------------------------------------------------------


def test_serve_publishes_the_embedded_state_manager(ready: Exo, tmp_path: Path, db: str) -> None:
    assert ready("serve") is None
    uri = re.search(r"EXOSPHERE_STATE_MANAGER_URI=(\S+)", ready.out).group(1)  # type: ignore[union-attr]
    key = re.search(r"EXOSPHERE_API_KEY=(\S+)", ready.out).group(1)  # type: ignore[union-attr]
    assert uri.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=uri, timeout=10) as client:
        assert client.get("/health").json() == {"message": "OK"}
        assert client.get(f"/v0/namespace/{NS}/graphs/").status_code == 401
        listed = client.get(f"/v0/namespace/{NS}/graphs/", headers={"x-api-key": key})
        assert listed.status_code == 200
        assert sorted(g["name"] for g in listed.json()["templates"]) == ["flaky", "hello"]
        assert SECRET not in listed.text

    found = list((tmp_path / "servers").glob("*.json"))
    assert [p.name for p in found] == [f"{os.getpid()}.json"]
    assert stat.S_IMODE(found[0].stat().st_mode) == 0o600
    assert json.loads(found[0].read_text()) == {"uri": uri, "key": key, "pid": os.getpid(), "namespace": NS, "db": db}
    assert serving.list_servers() == [json.loads(found[0].read_text())]
    assert repr(ready("status")).count(f"serving:        {uri}") == 1

    ready("serve")
    assert ready.out.startswith(f"already serving the embedded state manager {db} on {uri}")

    ready("serve --stop")
    assert ready.out.strip() == f"stopped serving {uri}"
    assert not found[0].exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{uri}/health", timeout=2)
    ready("serve --stop")
    assert ready.out.strip() == "not serving"


def test_a_remote_session_works_over_served_http_but_sql_needs_the_database(ready: Exo, capsys: Any) -> None:
    ready("serve --port 0")
    uri = re.search(r"EXOSPHERE_STATE_MANAGER_URI=(\S+)", ready.out).group(1)  # type: ignore[union-attr]
    key = re.search(r"EXOSPHERE_API_KEY=(\S+)", ready.out).group(1)  # type: ignore[union-attr]
    served = ready.session.server
    remote = Exo(ready.shell, Session(), capsys)
    ready.shell.register_magics(ExoMagics(ready.shell, session=remote.session))
    try:
        remote(f"connect {uri} --key {key} --namespace {NS}")
        assert f"on the state manager at {uri} (2 graph(s))" in remote.out
        assert remote("trigger hello --store name=remote --wait").status == "SUCCESS"
        assert "not visible from here (remote state manager)" in repr(remote("status"))
        assert remote("sql SELECT * FROM runs") is None
        assert remote.out.startswith("error: %exo sql reads the embedded DuckDB database")
        assert remote("serve") is None
        assert "there is no embedded one to serve" in remote.out
        remote(f"connect {uri} --key wrong --namespace {NS}")
        assert remote.out.startswith(f"error: cannot connect to the state manager at {uri}: Invalid API key")
        assert "still connected" in remote.out
    finally:
        serving.stop(ready.session)
        ready.shell.register_magics(ExoMagics(ready.shell, session=ready.session))
    assert served is not None and not served.running


def test_serving_on_a_port_in_use_is_one_error(ready: Exo) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert ready(f"serve --port {port}") is None
        assert ready.out.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert ready.session.server is None


def test_serving_off_loopback_needs_a_key(ready: Exo) -> None:
    assert ready("serve --host 0.0.0.0 --no-key") is None
    assert ready.out.startswith("error: refusing to serve on 0.0.0.0 without an API key")
    assert ready.session.server is None


def test_stop_stops_runtimes_and_the_server(ready: Exo, runtime: RuntimeHandle) -> None:
    ready("serve")
    ready("stop --grace 2")
    assert f"stopped runtime {NS}/rt" in ready.out
    assert "stopped serving http://127.0.0.1:" in ready.out
    assert runtime.done()
    ready("stop")
    assert ready.out.strip() == "nothing to stop: no runtime or HTTP server runs in this kernel"


# -- widgets, when they exist -----------------------------------------------------------------


def test_trigger_and_run_show_the_run_widget_when_there_is_one(ready: Exo, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeRunView:
        def __init__(self, sm: Any, run_id: str) -> None:
            self.sm, self.run_id = sm, run_id

    monkeypatch.setattr(magics, "_widget", lambda name: FakeRunView if name == "RunView" else None)
    view = ready("trigger hello --store name=w --wait")
    assert isinstance(view, FakeRunView) and view.sm is ready.session.sm
    assert ready.call(ready.session.sm.run_status(view.run_id))["status"] == "SUCCESS"
    assert ready(f"run {view.run_id}").run_id == view.run_id


def test_the_real_widgets_fit_the_contract(ready: Exo, monkeypatch: pytest.MonkeyPatch) -> None:
    widgets = pytest.importorskip("exosphere_nb.notebook.widgets")
    if not all(hasattr(widgets, n) for n in ("RunView", "GraphView")):
        pytest.skip("the widgets are not there yet")
    monkeypatch.setattr(magics, "_widget", REAL_WIDGET)
    view = ready("trigger hello --store name=real --wait")
    graph = ready("graph hello")
    try:
        assert isinstance(view, widgets.RunView)
        assert isinstance(graph, widgets.GraphView)
        assert ready("run no-such-run") is None
        assert ready.out.startswith("error: run 'no-such-run' not found")
    finally:
        view.close()
        graph.close()


# -- stable reprs -----------------------------------------------------------------------------


def test_display_objects_have_stable_escaped_reprs() -> None:
    table = Table(["a", "b"], [[1, "<script>x</script>"], [None, {"k": "v"}]], caption="t")
    assert repr(table) == 't\na  b\n-  ------------------\n1  <script>x</script>\n   {"k": "v"}'
    html = table._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    summary = RunSummary(
        {
            "run_id": "r1",
            "graph_name": "g",
            "status": "PENDING",
            "counts": {"SUCCESS": 3, "QUEUED": 1, "ERRORED": 0},
            "nodes": {"a": {"SUCCESS": 3}, "b": {"QUEUED": 1}},
        }
    )
    assert repr(summary) == "run r1 of graph 'g': PENDING — 3/4 states finished\n  a: SUCCESS=3\n  b: QUEUED=1"
    assert "width:75.00%" in summary._repr_html_()
    state = StateReport(
        {"id": "s1", "identifier": "a", "node_name": "A", "run_id": "r1", "graph_name": "g", "status": "ERRORED",
         "retry_count": 0, "inputs": {"x": "<1>"}, "outputs": None, "parents": {}, "error": "Traceback\n  boom"}
    )  # fmt: skip
    assert "<pre" in state._repr_html_() and "&lt;1&gt;" in state._repr_html_()
    err = ErrorLine("bad <thing>")
    assert repr(err) == "error: bad <thing>" and "bad &lt;thing&gt;" in err._repr_html_()
    objects = [table, summary, state, err, StatusReport({"namespace": "n", "runtimes": []}), GraphReport({"name": "g"})]
    for obj in objects:
        bundle = obj._repr_mimebundle_()
        assert bundle == {"text/plain": repr(obj), "text/html": obj._repr_html_()}
        assert repr(obj) == repr(obj) and str(obj) == repr(obj)
        assert not re.search(r"0x[0-9a-f]{6,}", repr(obj) + obj._repr_html_())


def test_node_errors_point_at_node_and_field() -> None:
    nodes = [{"identifier": "a"}, {"identifier": "b"}, {"identifier": "b"}]
    on_node, rest = node_errors(
        nodes,
        [
            "node 'a' input 'x': ${{ q.outputs.y }} names 'q', which is not an ancestor of 'a'",
            "nodes[1].inputs: Field required",
            "identifier 'b' is used by 2 nodes; identifiers must be unique",
            "graph has a cycle: a -> b -> a",
        ],
    )
    assert on_node[0] == [("inputs.x", "${{ q.outputs.y }} names 'q', which is not an ancestor of 'a'")]
    assert on_node[1][0] == ("inputs", "Field required")
    assert on_node[2] == [("identifier", "identifier 'b' is used by 2 nodes; identifiers must be unique")]
    assert rest == ["graph has a cycle: a -> b -> a"]


# -- in a real kernel -------------------------------------------------------------------------

KERNEL_NODE = """
from pydantic import BaseModel
from exosphere_nb import BaseNode, Runtime

class Upper(BaseNode):
    class Inputs(BaseModel):
        text: str
    class Outputs(BaseModel):
        text: str
    async def execute(self):
        return self.Outputs(text=self.inputs.text.upper())

handle = Runtime(namespace="k", name="rt", nodes=[Upper], state_manager_uri=URI).start()
"""


@pytest.mark.slow
def test_magics_in_a_real_kernel(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from kernel_helpers import KernelSession, write_kernelspec

    db = tmp_path / "state.duckdb"
    with KernelSession(tmp_path, write_kernelspec(tmp_path_factory.mktemp("jupyter"))) as kernel:
        try:
            kernel.run(f"URI = 'duckdb://{db}'\n%load_ext exosphere_nb")
            assert f"namespace 'k' on the embedded state manager {db}" in kernel.run(f"%exo connect {db} -n k")
            kernel.run(KERNEL_NODE)
            kernel.run("import time; time.sleep(0.5)")
            graph = kernel.run(
                "%%exo graph up\nnodes:\n  - {node_name: Upper, identifier: up, inputs: {text: '${{ store.t }}'}}\n"
                "store_config: {required_keys: [t]}\n"
            )
            assert "'up'" in graph and "VALID" in graph and "INVALID" not in graph, (
                graph
            )  # a GraphView or a GraphReport
            out = kernel.run("%exo trigger up --store t=abc --wait")
            assert "SUCCESS" in out and "Traceback" not in out
            result = kernel.nb.cells[-1].outputs[-1]
            assert result["output_type"] == "execute_result"
            assert {"text/plain", "text/html"} <= set(result["data"])
            assert "ABC" in kernel.run("%exo sql SELECT outputs FROM states")
            bad = kernel.run("%exo runs --status nope")
            assert "usage: %exo runs" in bad and "invalid choice" in bad and "Traceback" not in bad
            err = kernel.run("%exo trigger missing")
            assert err.startswith("error: ") and "Traceback" not in err
            shown = kernel.nb.cells[-1].outputs[-1]
            assert shown["output_type"] == "display_data" and "color:#b00020" in shown["data"]["text/html"]
            kernel.run("%exo stop --grace 2")
        except Exception:
            kernel.save(tmp_path / "failed.ipynb")
            raise
