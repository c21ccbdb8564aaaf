"""The live widgets against a real embedded DuckDB state manager (and one remote server), runs driven by Runtime.

Frontend messages are simulated the way the comm delivers them: `widget._on_frontend_msg(widget, content, [])`
for `model.send(...)`, and `widget.set_state({...})` for traits the browser changes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import uvicorn
from pydantic import BaseModel

from exosphere_nb import (
    BaseNode,
    GraphNodeModel,
    GraphValidationError,
    NotFoundError,
    RetryPolicyModel,
    Runtime,
    StateManager,
    StateTransitionError,
    StoreConfigModel,
    UnitesModel,
)
from exosphere_nb.client.embedded import engine_if_open
from exosphere_nb.config import resolve_db
from exosphere_nb.engine.secrets import KEY_ENV_VAR
from exosphere_nb.loop import run_sync
from exosphere_nb.notebook import render
from exosphere_nb.notebook.widgets import GraphView, RunsTable, RunView, StatesTable

NS = "widgets"
SECRET = "sEcReT-token-4f81c0d2"
API_KEY = "widget-test-key-93be"
SVG_NS = "{http://www.w3.org/2000/svg}"
FAILING: set[str] = set()  # items Work fails on (tests flip it to make a retry succeed)
NO_RETRY = RetryPolicyModel(max_retries=0)


class Split(BaseNode):
    class Inputs(BaseModel):
        n: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=str(i)) for i in range(int(self.inputs.n))]


class Work(BaseNode):
    class Inputs(BaseModel):
        item: str
        pause: str

    class Outputs(BaseModel):
        out: str

    class Secrets(BaseModel):
        token: str

    async def execute(self) -> Outputs:
        assert self.secrets.token == SECRET
        if float(self.inputs.pause):
            await asyncio.sleep(float(self.inputs.pause))
        if self.inputs.item in FAILING:
            raise ValueError(f"item {self.inputs.item} fails")
        return self.Outputs(out=self.inputs.item)


class Join(BaseNode):
    class Inputs(BaseModel):
        outs: str

    class Outputs(BaseModel):
        count: str

    async def execute(self) -> Outputs:
        return self.Outputs(count=str(len(json.loads(self.inputs.outs))))


def graph_nodes(namespace: str = NS) -> list[GraphNodeModel]:
    """split (fan-out of store.n) -> work (one per item) -> join (unites split)."""
    return [
        GraphNodeModel(
            node_name="Split",
            namespace=namespace,
            identifier="split",
            inputs={"n": "${{ store.n }}"},
            next_nodes=["work"],
        ),
        GraphNodeModel(
            node_name="Work",
            namespace=namespace,
            identifier="work",
            inputs={"item": "${{ split.outputs.item }}", "pause": "${{ store.pause }}"},
        ),
        GraphNodeModel(
            node_name="Join",
            namespace=namespace,
            identifier="join",
            inputs={"outs": "${{ work.outputs.out }}"},
            unites=UnitesModel(identifier="split"),
        ),
    ]


STORE = StoreConfigModel(required_keys=["n"], default_values={"pause": "0"})


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (KEY_ENV_VAR, "EXOSPHERE_API_KEY", "EXOSPHERE_STATE_MANAGER_URI", "EXOSPHERE_DB", render.DOT_ENV):
        monkeypatch.delenv(name, raising=False)
    FAILING.clear()
    yield
    FAILING.clear()


@pytest.fixture
async def sm(tmp_path: Path) -> AsyncIterator[StateManager]:
    """A StateManager on this test's own DuckDB file, a runtime serving it, and the graph `g` (VALID)."""
    uri = f"duckdb://{tmp_path / 'state.duckdb'}"
    runtime = Runtime(
        namespace=NS, name="rt", nodes=[Split, Work, Join], state_manager_uri=uri, workers=8, batch_size=64
    )
    handle = runtime.start()
    manager = StateManager(NS, state_manager_uri=uri)
    try:
        await registered(manager)
        await manager.upsert_graph(
            "g", graph_nodes(), secrets={"token": SECRET}, retry_policy=NO_RETRY, store_config=STORE
        )
        yield manager
    finally:
        assert handle is not None
        handle.stop(grace=2)
        engine = engine_if_open(resolve_db(tmp_path / "state.duckdb"))
        if engine is not None:
            run_sync(engine.close(), timeout=10)


async def registered(manager: StateManager) -> None:
    """Wait until the runtime has registered its nodes (over HTTP that takes a round trip)."""
    deadline = time.monotonic() + 15
    while {n["name"] for n in await manager.list_nodes()} < {"Split", "Work", "Join"}:
        assert time.monotonic() < deadline, "the runtime did not register its nodes"
        await asyncio.sleep(0.02)


async def until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def done(fut: Any, timeout: float = 20.0) -> Any:
    """Await a widget action's concurrent future from the test's loop."""
    return await asyncio.wait_for(asyncio.wrap_future(fut), timeout)


async def finished(view: RunView, timeout: float = 60.0) -> RunView:
    await until(lambda: not view.following, timeout=timeout)
    assert not view.live
    return view


async def run_to_end(sm: StateManager, n: int, **store: str) -> str:
    run = await sm.trigger("g", store={"n": str(n), **store})
    await sm.wait(run["run_id"], timeout=60)
    return run["run_id"]


def node_titles(svg: str) -> dict[str, str]:
    """The text of every node of a Graphviz SVG, by its title (the node's identifier)."""
    out = {}
    for g in ET.fromstring(svg).iter(f"{SVG_NS}g"):
        if "node" in (g.get("class") or "").split():
            title = g.find(f"{SVG_NS}title")
            assert title is not None
            out[title.text or ""] = " | ".join(t.text or "" for t in g.iter(f"{SVG_NS}text"))
    return out


def everything_shown(widget: Any) -> str:
    """Every byte a widget puts in front of anyone: synced state, and every repr."""
    data, _meta = widget._repr_mimebundle_()
    return "\n".join(
        [json.dumps(widget.get_state(), default=str), repr(widget), widget.text(), widget.to_html(), json.dumps(data)]
    )


# -- RunView --------------------------------------------------------------------------------------


async def test_run_view_of_a_finished_run(sm: StateManager) -> None:
    run_id = await run_to_end(sm, 20)
    summary = await sm.run_status(run_id)
    view = RunView(sm, run_id)
    try:
        assert view.status == "SUCCESS" and not view.live and not view.following  # nothing to follow
        # a fan-out of 20: 20 split states (one per output), 20 work states, 1 join
        assert view.counts == {"SUCCESS": 41} == {k: v for k, v in summary["counts"].items() if v}
        assert view.node_counts == {"join": {"SUCCESS": 1}, "split": {"SUCCESS": 20}, "work": {"SUCCESS": 20}}
        assert view.graph_name == "g" and view.run_id == run_id
        assert view.text() == repr(view) == "RunView(graph='g', status=SUCCESS, states=41: SUCCESS 41)"
        nodes = node_titles(view.svg)
        assert set(nodes) == {"split", "work", "join"}
        assert "20 ✓" in nodes["work"] and "1 ✓" in nodes["join"]
        assert view.progress == 1.0

        data, _ = view._repr_mimebundle_()
        assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == view.model_id
        assert data["text/plain"] == view.text()
        html = data["text/html"]
        assert html.startswith('<div class="exo-static exo-run">') and "<svg" in html and "SUCCESS" in html
        assert "100% done" in html and "<td>work</td><td>20 ✓</td>" in html
        assert run_id not in data["text/plain"]  # stable across runs
    finally:
        view.close()


async def test_run_view_follows_a_running_run_until_it_ends(sm: StateManager) -> None:
    run = await sm.trigger("g", store={"n": "24", "pause": "0.1"})
    view = RunView(sm, run["run_id"], interval=0.1)
    seen: list[dict[str, int]] = []
    view.observe(lambda change: seen.append(change["new"]), names=["counts"])
    assert view.status == "PENDING"
    await until(lambda: view.live)
    await finished(view, timeout=30)
    summary = await sm.run_status(run["run_id"])
    assert summary["status"] == "SUCCESS"
    assert view.status == "SUCCESS"
    assert view.counts == {"SUCCESS": 49}
    assert view.node_counts["work"] == {"SUCCESS": 24}
    assert "24 ✓" in node_titles(view.svg)["work"]
    assert len(seen) >= 2  # it showed progress on the way, not only the end
    assert any(sum(c.values()) < 49 or set(c) != {"SUCCESS"} for c in seen[:-1])
    view.close()


@pytest.mark.slow
async def test_a_10k_state_run_sends_a_few_updates_per_second_and_ends_exact(sm: StateManager) -> None:
    run = await sm.trigger("g", store={"n": "10000", "pause": "0.002"})  # a few seconds long
    began = time.monotonic()
    view = RunView(sm, run["run_id"])  # the default throttle
    assert time.monotonic() - began < 2, "the widget is ready at once, not after the run"
    counts_changes: list[float] = []
    messages: list[float] = []
    view.observe(lambda _: counts_changes.append(time.monotonic()), names=["counts"])
    real_send = view.comm.send

    def counting_send(*args: Any, **kwargs: Any) -> Any:
        messages.append(time.monotonic())
        return real_send(*args, **kwargs)

    view.comm.send = counting_send
    # the calling thread (the kernel's) stays free meanwhile: measure its longest stall
    stall, last = 0.0, time.monotonic()
    while view.following:
        await asyncio.sleep(0.01)
        now = time.monotonic()
        stall, last = max(stall, now - last), now
        assert now - began < 120, "the run did not finish"
    elapsed = time.monotonic() - began
    summary = await sm.run_status(run["run_id"])
    assert summary["status"] == "SUCCESS"
    assert view.counts == {"SUCCESS": 20001} == {k: v for k, v in summary["counts"].items() if v}
    assert view.node_counts == {"join": {"SUCCESS": 1}, "split": {"SUCCESS": 10000}, "work": {"SUCCESS": 10000}}
    assert "10000 ✓" in node_titles(view.svg)["work"]
    # throttled and batched: one message per change of the counts, at most ~1/interval per second
    assert len(messages) <= len(counts_changes) + 2  # + the live flag going off (and on, if not yet sent)
    assert len(counts_changes) >= 2, "the run was followed while it went"
    print(
        f"10k run: {elapsed:.1f} s, {len(counts_changes)} count updates, {len(messages)} messages, stall {stall:.2f} s"
    )
    assert len(counts_changes) / elapsed <= 5, (len(counts_changes), elapsed)
    for i in range(len(messages)):  # and in every 1-second window
        assert sum(1 for m in messages[i:] if m - messages[i] < 1.0) <= 5, messages
    # the engine's own work shares the GIL (stalls of ~0.2 s with or without a widget); the widget adds none
    assert stall < 2.0, f"the calling thread stalled {stall:.2f} s"
    view.close()


# -- clicking a node, retrying, cancelling --------------------------------------------------------


async def test_clicking_a_node_lists_its_states_and_retry_retries_a_failed_one(sm: StateManager) -> None:
    FAILING.update({"3", "7"})
    run_id = await run_to_end(sm, 10)
    view = RunView(sm, run_id, interval=0.1, page_size=4)
    assert view.status == "FAILED"
    assert view.node_counts["work"] == {"SUCCESS": 8, "ERRORED": 2}
    assert "8 ✓ 2 ✗" in node_titles(view.svg)["work"]

    # a click on the node, as the frontend sends it
    view._on_frontend_msg(view, {"type": "select", "identifier": "work"}, [])
    await until(lambda: view.node_total == 10)
    assert view.selected == "work" and view.node_page == 1
    assert [r["identifier"] for r in view.node_states] == ["work"] * 4  # a page of page_size
    view._on_frontend_msg(view, {"type": "select", "identifier": "work", "page": 3}, [])
    await until(lambda: view.node_page == 3 and len(view.node_states) == 2)
    view._on_frontend_msg(view, {"type": "select", "identifier": "work", "status": "ERRORED"}, [])
    await until(lambda: view.node_status == "ERRORED" and view.node_total == 2)
    failed = view.node_states
    assert {r["status"] for r in failed} == {"ERRORED"} and all("fails" in r["error"] for r in failed)
    assert sorted(json.loads(r["inputs"])["item"] for r in failed) == ["3", "7"]

    FAILING.clear()  # the cause is fixed: a retry now succeeds
    view._on_frontend_msg(view, {"type": "retry", "state_id": failed[0]["id"]}, [])
    await until(lambda: "retried as" in view.message)
    assert view.error == ""
    await until(lambda: view.node_counts.get("work", {}).get("SUCCESS") == 9, timeout=20)
    assert view.node_counts["work"] == {"SUCCESS": 9, "ERRORED": 1, "RETRY_CREATED": 1}
    await until(lambda: view.node_total == 1)  # the open panel (ERRORED only) follows along
    assert view.node_states[0]["id"] == failed[1]["id"]

    # retry the rest from the toolbar: the unite then runs and the run succeeds
    await done(view.retry_failed())
    await until(lambda: view.status == "SUCCESS", timeout=20)
    await finished(view)
    summary = await sm.run_status(run_id)
    assert view.counts == {k: v for k, v in summary["counts"].items() if v}
    assert view.counts["RETRY_CREATED"] == 2 and view.node_counts["join"] == {"SUCCESS": 1}
    assert (await sm.run_outputs(run_id))["join"] == [{"count": "10"}]

    view._on_frontend_msg(view, {"type": "select", "identifier": ""}, [])
    await until(lambda: view.selected == "" and view.node_states == [])
    view.close()


async def test_cancel_from_the_widget(sm: StateManager) -> None:
    run = await sm.trigger("g", store={"n": "40", "pause": "0.3"})
    view = RunView(sm, run["run_id"], interval=0.1)
    assert view.status == "PENDING"
    view._on_frontend_msg(view, {"type": "cancel"}, [])
    await until(lambda: view.message == "run cancelled")
    await finished(view, timeout=20)
    assert view.status == "CANCELLED" and view.counts.get("CANCELLED", 0) > 0
    view.close()


async def test_errors_in_callbacks_show_in_the_widget_and_are_never_raised(sm: StateManager) -> None:
    run_id = await run_to_end(sm, 2)
    view = RunView(sm, run_id)
    succeeded = (await sm.run_graph(run_id))["nodes"][0]["id"]
    view._on_frontend_msg(view, {"type": "retry", "state_id": succeeded}, [])  # SUCCESS cannot be retried
    await until(lambda: view.error)
    assert view.error.startswith(f"retrying state {succeeded} failed: StateTransitionError:")
    assert "it succeeded" in view.error and view.busy == 0
    view._on_frontend_msg(view, {"type": "dismiss"}, [])
    assert view.error == ""
    view._on_frontend_msg(view, {"type": "rm -rf"}, [])
    assert "unknown widget message" in view.error
    view._on_frontend_msg(view, {"type": "select", "identifier": "work", "page": "x"}, [])
    assert "ValueError" in view.error
    view._on_frontend_msg(view, "not even a dict", [])
    assert "unknown widget message" in view.error
    with pytest.raises(StateTransitionError):
        await done(view.retry(succeeded))  # a direct call also hands the failure back to the caller
    view.close()


async def test_an_unknown_run_raises_at_once(sm: StateManager) -> None:
    with pytest.raises(NotFoundError):
        RunView(sm, "no-such-run")


async def test_closing_stops_following(sm: StateManager) -> None:
    run = await sm.trigger("g", store={"n": "30", "pause": "0.2"})
    view = RunView(sm, run["run_id"], interval=0.1)
    await until(lambda: view.live)
    follower = view._follower
    view.close()
    assert follower is not None
    await until(follower.done)
    changes: list[Any] = []
    view.observe(changes.append)
    await asyncio.sleep(0.4)
    assert changes == []
    await sm.wait(run["run_id"], timeout=30)


# -- GraphView ------------------------------------------------------------------------------------


async def test_graph_view_of_a_valid_graph(sm: StateManager) -> None:
    view = GraphView(sm, "g")
    assert view.validation_status == "VALID" and view.validation_errors == [] and view.node_errors == {}
    assert [n["identifier"] for n in view.nodes] == ["split", "work", "join"]
    assert view.nodes[1]["inputs"] == {"item": "${{ split.outputs.item }}", "pause": "${{ store.pause }}"}
    assert set(node_titles(view.svg)) == {"split", "work", "join"}
    assert "stroke-dasharray" in view.svg  # join unites split
    assert view.text() == "GraphView(graph='g', validation=VALID, nodes=3)"
    view.close()


async def test_graph_view_shows_validation_errors_on_their_nodes(sm: StateManager) -> None:
    nodes = graph_nodes()
    nodes[1] = GraphNodeModel(
        node_name="Work",
        namespace=NS,
        identifier="work",
        inputs={"item": "${{ split.outputs.item }}", "pause": "0", "bogus": "x"},
    )
    nodes[2] = GraphNodeModel(
        node_name="Missing", namespace=NS, identifier="join", inputs={}, unites=UnitesModel(identifier="split")
    )
    with pytest.raises(GraphValidationError):
        await sm.upsert_graph("bad", nodes, secrets={"token": SECRET}, store_config=STORE)
    view = GraphView(sm, "bad")
    assert view.validation_status == "INVALID"
    assert set(view.node_errors) == {"work", "join"}, view.validation_errors
    assert any("'bogus' is not an input of Work" in e for e in view.node_errors["work"])
    assert any("'Missing' is not registered" in e for e in view.node_errors["join"])
    assert view.graph_errors == []
    titles = node_titles(view.svg)
    assert "⚠ 1 error" in titles["work"] and "⚠ 1 error" in titles["join"] and "⚠" not in titles["split"]
    assert view.text() == "GraphView(graph='bad', validation=INVALID, nodes=3, errors=2)"
    html = view.to_html()
    assert "<code>work</code>: node &#x27;work&#x27;: &#x27;bogus&#x27; is not an input of Work" in html
    view.close()


async def test_widgets_render_with_no_dot_on_path(
    sm: StateManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-dot"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    render.clear_cache()
    view = GraphView(sm, "g")
    assert view.error == "" and set(node_titles(view.svg)) == {"split", "work", "join"}
    assert render.find_dot() == [str(Path(sys.executable).parent / "graphviz-pure")]
    view.close()


async def test_without_any_graphviz_the_views_still_show_counts_and_say_why(
    sm: StateManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = await run_to_end(sm, 3)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(render, "_pure_candidates", lambda: [])
    render.clear_cache()
    view = RunView(sm, run_id)
    assert view.svg == "" and "no Graphviz found" in view.error
    assert view.counts == {"SUCCESS": 7}
    assert "<td>work</td><td>3 ✓</td>" in view.to_html()
    view.close()


# -- StatesTable ----------------------------------------------------------------------------------


async def test_states_table_pages_on_the_server(sm: StateManager) -> None:
    FAILING.add("5")
    run_id = await run_to_end(sm, 45)  # 45 split + 45 work (one ERRORED), no join: 90 states
    every = [n["id"] for n in (await sm.run_graph(run_id))["nodes"]]
    assert len(every) == 90
    table = StatesTable(sm, run_id, page_size=20)
    assert (table.total, table.page, len(table.rows)) == (90, 1, 20)
    assert table.identifiers == ["split", "work"]
    assert [r["id"] for r in table.rows] == every[:20]
    assert table.text() == "StatesTable(states=90, page=1/5, size=20)"
    seen = []
    for page in range(1, 6):
        await done(table.goto(page))
        assert table.page == page
        seen += [r["id"] for r in table.rows]
    assert seen == every and len(table.rows) == 10  # the last page is short

    # the browser changes traits: each change reloads (and goes back into range)
    table.set_state({"page": 9})
    await until(lambda: table.page == 5)
    table.set_state({"status": "ERRORED", "page": 1})
    await until(lambda: table.total == 1)
    assert table.rows[0]["status"] == "ERRORED" and json.loads(table.rows[0]["inputs"])["item"] == "5"
    assert table.text() == "StatesTable(states=1, page=1/1, size=20, status='ERRORED')"
    table.set_state({"status": "", "identifier": "split"})
    await until(lambda: table.total == 45 and {r["identifier"] for r in table.rows} == {"split"})
    table.set_state({"identifier": "", "page_size": 50})
    await until(lambda: table.total == 90 and len(table.rows) == 50)

    # retry from the table
    FAILING.clear()
    errored = [r for r in (await sm.run_graph(run_id))["nodes"] if r["status"] == "ERRORED"]
    table._on_frontend_msg(table, {"type": "retry", "state_id": errored[0]["id"]}, [])
    await until(lambda: "retried as" in table.message)
    await sm.wait(run_id, timeout=30)
    assert (await sm.run_status(run_id))["status"] == "SUCCESS"
    table.close()


# -- RunsTable ------------------------------------------------------------------------------------


async def test_runs_table_filters_pages_triggers_and_refreshes(sm: StateManager) -> None:
    await sm.upsert_graph("h", graph_nodes(), secrets={"token": SECRET}, retry_policy=NO_RETRY, store_config=STORE)
    ok = await run_to_end(sm, 2)
    FAILING.add("0")
    bad = await run_to_end(sm, 1)
    FAILING.clear()
    other = (await sm.trigger("h", store={"n": "1"}))["run_id"]
    await sm.wait(other, timeout=30)

    every = RunsTable(sm, auto_refresh=False)
    assert every.total == 3 and [r["run_id"] for r in every.rows] == [other, bad, ok]  # newest first
    assert every.graphs == ["g", "h"]
    assert every.text() == "RunsTable(graph='any', status=any, runs=3, page=1/1)"
    row = every.rows[1]
    assert row["status"] == "FAILED" and row["errored_count"] == 1 and row["total_count"] == 2
    html = every.to_html()
    assert html.count("<tr><td><code>") == 3 and "FAILED" in html

    g_only = RunsTable(sm, graph_name="g", auto_refresh=False)
    assert {r["run_id"] for r in g_only.rows} == {ok, bad}
    failed = RunsTable(sm, "g", "failed", auto_refresh=False)
    assert [r["run_id"] for r in failed.rows] == [bad]
    # filters and pages from the browser
    g_only.set_state({"status": "SUCCESS"})
    await until(lambda: [r["run_id"] for r in g_only.rows] == [ok])
    every.set_state({"page_size": 2})
    await until(lambda: len(every.rows) == 2)
    every.set_state({"page": 2})
    await until(lambda: [r["run_id"] for r in every.rows] == [ok])
    assert every.text() == "RunsTable(graph='any', status=any, runs=3, page=2/2)"

    # the trigger form
    g_only._on_frontend_msg(g_only, {"type": "trigger", "graph_name": "g", "inputs": {}, "store": {"n": "3"}}, [])
    await until(lambda: "triggered run" in g_only.message)
    new_id = g_only.message.split()[2]
    await sm.wait(new_id, timeout=30)
    assert (await sm.run_status(new_id))["counts"]["SUCCESS"] == 7
    g_only._on_frontend_msg(g_only, {"type": "trigger", "graph_name": "g", "store": '{"n": 3}'}, [])
    await until(lambda: g_only.error)
    assert "store must be an object of string values" in g_only.error
    g_only._on_frontend_msg(g_only, {"type": "trigger", "graph_name": "nope", "store": {}}, [])
    await until(lambda: "NotFoundError" in g_only.error)
    for table in (every, g_only, failed):
        table.close()


async def test_runs_table_auto_refreshes_and_pauses_when_idle(sm: StateManager) -> None:
    table = RunsTable(sm, "g", interval=0.25, idle_timeout=60)
    try:
        assert table.total == 0 and table.auto_refresh
        await until(lambda: table.live)
        run_id = await run_to_end(sm, 1)
        await until(lambda: [r["run_id"] for r in table.rows] == [run_id], timeout=5)
        await until(lambda: table.rows[0]["status"] == "SUCCESS", timeout=5)
        table.set_state({"auto_refresh": False})  # the checkbox
        await until(lambda: not table.live)
        second = await run_to_end(sm, 1)
        await asyncio.sleep(0.6)
        assert [r["run_id"] for r in table.rows] == [run_id]
        table.set_state({"auto_refresh": True})
        await until(lambda: [r["run_id"] for r in table.rows] == [second, run_id], timeout=5)
    finally:
        table.close()
    idle = RunsTable(sm, "g", interval=0.25, idle_timeout=0.5)
    await until(lambda: not idle.auto_refresh, timeout=5)
    assert "auto-refresh paused" in idle.message and not idle.live
    idle.close()


# -- secrets --------------------------------------------------------------------------------------


async def test_no_secret_value_in_any_widget_state_or_repr(sm: StateManager) -> None:
    FAILING.add("1")
    run_id = await run_to_end(sm, 3)
    views = [
        RunView(sm, run_id),
        GraphView(sm, "g"),
        RunsTable(sm, auto_refresh=False),
        StatesTable(sm, run_id),
    ]
    views[0].select("work").result(10)
    try:
        assert views[0].node_total == 3 and views[3].total == 6
        for view in views:
            shown = everything_shown(view)
            assert SECRET not in shown, type(view).__name__
            assert "token" not in json.dumps(view.get_state())  # not even the secret's name
    finally:
        for view in views:
            view.close()


# -- a remote state manager -----------------------------------------------------------------------


class _Server:
    def __init__(self, db: Path) -> None:
        from exosphere_nb.server.app import create_app

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(db, api_key=API_KEY), lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


async def test_widgets_over_http_page_states_and_never_show_the_key(tmp_path: Path) -> None:
    server = _Server(tmp_path / "server.duckdb")
    runtime = Runtime(
        namespace=NS, name="rt", nodes=[Split, Work, Join], state_manager_uri=server.url, key=API_KEY, workers=4
    )
    handle = runtime.start()
    views: list[Any] = []
    try:
        remote = StateManager(NS, state_manager_uri=server.url, key=API_KEY)
        await registered(remote)
        await remote.upsert_graph(
            "g", graph_nodes(), secrets={"token": SECRET}, retry_policy=NO_RETRY, store_config=STORE
        )
        run = await remote.trigger("g", store={"n": "12", "pause": "0.05"})
        view = RunView(remote, run["run_id"], interval=0.1)
        views.append(view)
        await finished(view, timeout=30)
        assert view.status == "SUCCESS" and view.counts == {"SUCCESS": 25}
        table = StatesTable(remote, run["run_id"], page_size=10)
        views.append(table)
        assert (table.total, len(table.rows)) == (25, 10)
        await done(table.goto(3))
        assert len(table.rows) == 5 and all(r["inputs"] for r in table.rows)
        table.set_state({"identifier": "work", "page": 1})
        await until(lambda: table.total == 12)
        views += [GraphView(remote, "g"), RunsTable(remote, auto_refresh=False)]
        assert views[-1].total == 1
        for v in views:
            shown = everything_shown(v)
            assert API_KEY not in shown and SECRET not in shown and server.url not in shown
    finally:
        for v in views:
            v.close()
        assert handle is not None
        handle.stop(grace=2)
        server.stop()


# -- the frontend ---------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the ES module")
async def test_the_frontend_renders_real_widget_states_and_sends_the_right_messages(
    sm: StateManager, tmp_path: Path
) -> None:
    """static/widgets.js in Node with a minimal DOM (tests/notebook/widgets_dom.mjs) and a fake model."""
    FAILING.add("1")
    run_id = await run_to_end(sm, 3)
    nodes = graph_nodes()
    nodes[1] = GraphNodeModel(
        node_name="Work", namespace=NS, identifier="work", inputs={"item": "${{ split.outputs.item }}", "bad": "x"}
    )
    with pytest.raises(GraphValidationError):
        await sm.upsert_graph("bad", nodes, secrets={"token": SECRET}, store_config=STORE)
    run = RunView(sm, run_id)
    await done(run.select("work", status="ERRORED"))
    graph = GraphView(sm, "bad")
    runs = RunsTable(sm, auto_refresh=False)
    states = StatesTable(sm, run_id, page_size=2)
    views = {"run": run, "graph": graph, "runs": runs, "states": states}
    try:
        dump = tmp_path / "states.json"
        dump.write_text(json.dumps({k: v.get_state() for k, v in views.items()}, default=str))
        script = Path(__file__).with_name("widgets_dom.mjs")
        esm = Path(render.__file__).with_name("static") / "widgets.js"
        proc = await asyncio.create_subprocess_exec(
            shutil.which("node") or "node", str(script), str(esm), str(dump), stdout=PIPE, stderr=PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        report = json.loads(out)
    finally:
        for v in views.values():
            v.close()

    failed_id = run.node_states[0]["id"]
    r = report["run"]
    assert r["classes"] == "exo-widget"
    assert "FAILED" in r["head"] and "6 states 5 ✓ 1 ✗" in r["head"] and "retry 1 failed" in r["head"]
    assert r["nodes"] == {"split": False, "work": True, "join": False}  # the selected node is highlighted
    assert r["panel"].startswith("work 1 states") and "ERRORED" in r["panel"] and "item 1 fails" in r["panel"]
    assert r["sent"] == [
        {"type": "select", "identifier": "split"},
        {"type": "retry", "state_id": failed_id},
        {"type": "retry_failed"},
        {"type": "select", "identifier": "work", "page": 1, "status": ""},
    ]
    assert "SUCCESS" in r["head_after"] and "5 states 5 ✓" in r["head_after"]  # redrawn on change
    assert r["listeners_before_cleanup"] > 0 and r["listeners_after_cleanup"] == 0

    g = report["graph"]
    assert "INVALID" in g["head"] and "3 nodes" in g["head"]
    assert any("'bad' is not an input of Work" in e for e in g["errors"])
    assert g["selected"] == "work" and g["saved"] == 1
    assert "item" in g["panel"] and "${{ split.outputs.item }}" in g["panel"] and "is not an input" in g["panel"]

    t = report["runs"]
    assert t["rows"] == 2 and run_id in t["table"] and "FAILED" in t["table"]  # header + one run
    assert t["after_filter"] == {"status": "FAILED", "page": 1, "saved": 1}
    assert t["auto_refresh"] is False
    assert "store.n must be a string" in t["bad_form"]
    # the form defaults to the graph of the newest run
    assert t["sent"] == [{"type": "trigger", "graph_name": "g", "inputs": {}, "store": {"n": "3"}}]

    s = report["states"]
    assert s["rows"] == 2 and "6 states" in s["foot"] and "page 1 of 3" in s["foot"]
    assert s["page"] == 2 and s["filter"] == {"identifier": "work", "page": 1}
