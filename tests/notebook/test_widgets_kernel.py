"""The widgets in a real Jupyter kernel (nbclient): live state after a run, and the output bundle."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

KERNEL = "exosphere-nb-test"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

SETUP = """
import asyncio, json
from pydantic import BaseModel
from exosphere_nb import BaseNode, GraphNodeModel, RetryPolicyModel, Runtime, StateManager, StoreConfigModel, UnitesModel
from exosphere_nb.notebook.widgets import RunView, StatesTable

class Split(BaseNode):
    class Inputs(BaseModel):
        n: str
    class Outputs(BaseModel):
        item: str
    async def execute(self):
        return [self.Outputs(item=str(i)) for i in range(int(self.inputs.n))]

class Work(BaseNode):
    class Inputs(BaseModel):
        item: str
    class Outputs(BaseModel):
        out: str
    class Secrets(BaseModel):
        token: str
    async def execute(self):
        await asyncio.sleep(0.01)
        return self.Outputs(out=self.inputs.item)

class Join(BaseNode):
    class Inputs(BaseModel):
        outs: str
    class Outputs(BaseModel):
        count: str
    async def execute(self):
        return self.Outputs(count=str(len(json.loads(self.inputs.outs))))

URI = "duckdb://state.duckdb"
handle = Runtime(namespace="kernel", name="rt", nodes=[Split, Work, Join], state_manager_uri=URI).start()
assert handle is not None, "Runtime.start() returns a handle in a kernel"
sm = StateManager("kernel", state_manager_uri=URI)
while {n["name"] for n in await sm.list_nodes()} < {"Split", "Work", "Join"}:
    await asyncio.sleep(0.02)
await sm.upsert_graph("g", [
    GraphNodeModel(node_name="Split", namespace="kernel", identifier="split", inputs={"n": "${{ store.n }}"},
                   next_nodes=["work"]),
    GraphNodeModel(node_name="Work", namespace="kernel", identifier="work", inputs={"item": "${{ split.outputs.item }}"}),
    GraphNodeModel(node_name="Join", namespace="kernel", identifier="join", inputs={"outs": "${{ work.outputs.out }}"},
                   unites=UnitesModel(identifier="split")),
], secrets={"token": "kernel-SECRET-5a0c"}, retry_policy=RetryPolicyModel(max_retries=0),
   store_config=StoreConfigModel(required_keys=["n"]))
run_id = (await sm.trigger("g", store={"n": "300"}))["run_id"]
"""

SHOW = """
view = RunView(sm, run_id, interval=0.2)
view
"""

WAIT = """
import time
began = time.monotonic()
view.wait(60)   # this cell blocks the kernel's thread; the view follows the run on the background loop
state = view.get_state()
print(json.dumps({k: state[k] for k in ("status", "counts", "node_counts", "live", "graph_name", "error")}))
print(json.dumps({"svg_has_work": "300 ✓" in state["svg"], "text": view.text()}))
"""

TABLE = """
table = StatesTable(sm, run_id, page_size=25)
table.goto(4).result(10)
print(json.dumps({"page": table.page, "rows": len(table.rows), "total": table.total}))
table
"""


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs this interpreter (the venv's, where exosphere_nb is installed)."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "exosphere_nb tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    for name in ("EXOSPHERE_STATE_MANAGER_URI", "EXOSPHERE_API_KEY", "EXOSPHERE_DB", "EXOSPHERE_SECRETS_KEY"):
        monkeypatch.delenv(name, raising=False)
    return KERNEL


def outputs_text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
def test_run_view_in_a_real_kernel(tmp_path: Path, kernel_name: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(src).strip()) for src in (SETUP, SHOW, WAIT, TABLE)]
    client = NotebookClient(
        nb, kernel_name=kernel_name, timeout=120, resources={"metadata": {"path": str(work)}}, store_widget_state=True
    )
    client.execute()

    for cell in nb.cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, "\n".join("\n".join(e["traceback"]) for e in errors)

    # the displayed view: a widget, plus a stable text/plain and a static text/html for GitHub / nbconvert
    shown = [o for o in nb.cells[1].outputs if o.output_type in ("execute_result", "display_data")]
    assert len(shown) == 1
    data = shown[0]["data"]
    assert WIDGET_VIEW in data and data[WIDGET_VIEW]["model_id"]
    assert data["text/plain"].startswith("RunView(graph='g', status=")
    assert data["text/html"].startswith('<div class="exo-static exo-run">') and "<svg" in data["text/html"]

    lines = outputs_text(nb.cells[2]).splitlines()
    state = json.loads(lines[0])
    assert state["status"] == "SUCCESS" and state["live"] is False and state["error"] == ""
    assert state["graph_name"] == "g"
    assert state["counts"] == {"SUCCESS": 601}  # 300 split + 300 work + 1 join
    assert state["node_counts"] == {"join": {"SUCCESS": 1}, "split": {"SUCCESS": 300}, "work": {"SUCCESS": 300}}
    extra = json.loads(lines[1])
    assert extra == {"svg_has_work": True, "text": "RunView(graph='g', status=SUCCESS, states=601: SUCCESS 601)"}

    # the updates sent from the background loop reached the frontend (here: nbclient's widget state)
    model_id = data[WIDGET_VIEW]["model_id"]
    saved = nb.metadata["widgets"][WIDGET_STATE]["state"][model_id]["state"]
    assert saved["counts"] == {"SUCCESS": 601} and saved["status"] == "SUCCESS"
    assert "kernel-SECRET-5a0c" not in json.dumps(nb.metadata["widgets"])

    assert json.loads(outputs_text(nb.cells[3]).splitlines()[0]) == {"page": 4, "rows": 25, "total": 601}
    table = next(o for o in nb.cells[3].outputs if o.output_type == "execute_result")["data"]
    assert table["text/plain"] == "StatesTable(states=601, page=4/25, size=25)"
    assert WIDGET_VIEW in table and table["text/html"].count("<tr><td><code>") == 25
