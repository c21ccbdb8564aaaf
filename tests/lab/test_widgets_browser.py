"""The widgets in a real JupyterLab, driven through Debian's Chromium by Playwright (never `playwright install`).

A notebook, run from JupyterLab's Run menu, starts a runtime and a run of 400 states (two of them
fail while `broken.flag` exists) and shows a RunView, a GraphView of an INVALID graph, a RunsTable
and a StatesTable. In the browser: the run's counts change while it goes and end exact; a click on
a node lists its states; the failed ones are retried from the widget once the cause is gone and
the run succeeds; the validation errors sit on their nodes; the trigger form starts a run; the
states table pages. No page error is allowed. Needs the `lab` extra and /usr/bin/chromium (skipped
without them); screenshots go to $EXOSPHERE_TEST_ARTIFACTS (or the test's tmp_path).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("EXOSPHERE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
KERNEL = "exo-nb-widgets-browser"
TIMEOUT_MS = 60_000

SETUP = """import asyncio, json
from pathlib import Path
from pydantic import BaseModel
from exosphere_nb import BaseNode, GraphNodeModel, RetryPolicyModel, Runtime, StateManager, StoreConfigModel, UnitesModel
from exosphere_nb.notebook.widgets import GraphView, RunsTable, RunView, StatesTable

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
    async def execute(self):
        await asyncio.sleep(0.04)
        if self.inputs.item in ("7", "13") and Path("broken.flag").exists():
            raise RuntimeError(f"item {self.inputs.item} is broken")
        return self.Outputs(out=self.inputs.item)

class Join(BaseNode):
    class Inputs(BaseModel):
        outs: str
    class Outputs(BaseModel):
        count: str
    async def execute(self):
        return self.Outputs(count=str(len(json.loads(self.inputs.outs))))

Path("broken.flag").touch()
URI = "duckdb://state.duckdb"
handle = Runtime(namespace="w", name="rt", nodes=[Split, Work, Join], state_manager_uri=URI, workers=4).start()
sm = StateManager("w", state_manager_uri=URI)
while {n["name"] for n in await sm.list_nodes()} < {"Split", "Work", "Join"}:
    await asyncio.sleep(0.05)
store = StoreConfigModel(required_keys=["n"])
nodes = [
    GraphNodeModel(node_name="Split", namespace="w", identifier="split", inputs={"n": "${{ store.n }}"},
                   next_nodes=["work"]),
    GraphNodeModel(node_name="Work", namespace="w", identifier="work", inputs={"item": "${{ split.outputs.item }}"}),
    GraphNodeModel(node_name="Join", namespace="w", identifier="join", inputs={"outs": "${{ work.outputs.out }}"},
                   unites=UnitesModel(identifier="split")),
]
await sm.upsert_graph("g", nodes, secrets={}, retry_policy=RetryPolicyModel(max_retries=0), store_config=store)
bad = [nodes[0],
       GraphNodeModel(node_name="Work", namespace="w", identifier="work",
                      inputs={"item": "${{ split.outputs.item }}", "oops": "1"}),
       GraphNodeModel(node_name="Nope", namespace="w", identifier="join", inputs={}, unites=UnitesModel(identifier="split"))]
try:
    await sm.upsert_graph("bad", bad, secrets={}, store_config=store)
except Exception as exc:
    print(type(exc).__name__)
run_id = (await sm.trigger("g", store={"n": "200"}))["run_id"]"""

CELLS = [
    SETUP,
    "view = RunView(sm, run_id)\nview",
    'GraphView(sm, "bad")',
    "RunsTable(sm)",
    "StatesTable(sm, run_id, page_size=10)",
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _needs() -> list[str]:
    missing = [m for m in ("jupyterlab", "playwright") if importlib.util.find_spec(m) is None]
    if not CHROMIUM.exists():
        missing.append(str(CHROMIUM))
    return missing


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """JupyterLab on 127.0.0.1 (isolated config, a kernelspec for this interpreter) with the notebook."""
    missing = _needs()
    if missing:
        pytest.fail(f"needs {', '.join(missing)} (pip install -e '.[lab]'; apt-get install chromium)")
    root = tmp_path / "root"
    root.mkdir()
    spec = tmp_path / "jupyter_path" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "exosphere_nb widget tests",
                "language": "python",
            }
        )
    )
    settings = tmp_path / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "exosphere_nb widget tests", "language": "python"}
    nb.cells = [new_code_cell(c) for c in CELLS]
    nbformat.write(nb, root / "widgets.ipynb")

    port, token = _free_port(), "widgets-" + os.urandom(6).hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXOSPHERE_")}
    env.update(
        JUPYTER_PATH=str(tmp_path / "jupyter_path"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter_config"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter_data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter_runtime"),
        IPYTHONDIR=str(tmp_path / "ipython"),
    )
    log = tmp_path / "jupyterlab.log"
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        "--LabApp.news_url=",
    ]
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"JupyterLab exited:\n{log.read_text()[-4000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/status", headers={"Authorization": f"token {token}"}).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"JupyterLab did not start:\n{log.read_text()[-4000:]}"
            time.sleep(0.2)
        yield f"{url}/lab/tree/widgets.ipynb?token={token}", root
    finally:
        if proc.poll() is None:  # our own process, by its handle; it shuts its kernels down
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _artifacts(tmp_path: Path) -> Path:
    path = Path(os.environ.get("EXOSPHERE_TEST_ARTIFACTS") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_widgets_in_jupyterlab(lab: tuple[str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, root = lab
    expect.set_options(timeout=TIMEOUT_MS)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on(
                "console",
                lambda m: (
                    errors.append(f"console: {m.text}")
                    if m.type == "error" and ("exo" in m.text.lower() or "anywidget" in m.text.lower())
                    else None
                ),
            )
            try:
                _drive(page, url, root)
            except BaseException:
                shot = _artifacts(tmp_path) / "widgets-failure.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot: {shot}")
                raise
            page.screenshot(path=str(_artifacts(tmp_path) / "widgets-end.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, "\n".join(errors)


def _drive(page: Any, url: str, root: Path) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=TIMEOUT_MS)
    # the kernel: accept JupyterLab's kernel choice if it asks, until it is idle and nothing asks
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    dialog = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    deadline, quiet = time.monotonic() + 60, 0
    while quiet < 4:
        if dialog.count():
            dialog.first.click()
            quiet = 0
        elif idle.count():
            quiet += 1
        assert time.monotonic() < deadline, "the notebook's kernel did not become idle"
        page.wait_for_timeout(250)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    # -- RunView: live counts, then exact ones -------------------------------------------------
    run = page.locator(".exo-widget").nth(0)
    counts = run.locator(".exo-head .exo-counts")
    expect(counts).to_contain_text("states")
    seen = []
    deadline = time.monotonic() + 60
    while "FAILED" not in run.locator(".exo-head .exo-badge").inner_text():
        text = counts.inner_text()
        if not seen or seen[-1] != text:
            seen.append(text)
        assert time.monotonic() < deadline, f"the run did not end: {seen[-3:]}"
        page.wait_for_timeout(100)
    expect(counts).to_have_text("400 states 398 ✓ 2 ✗")
    assert len(seen) >= 2, f"the view did not update while the run went: {seen}"
    work = run.locator("g.node", has_text="work")
    expect(work).to_contain_text("198 ✓ 2 ✗")

    # a click on the node lists its states; the status filter narrows them to the failed ones
    work.click()
    panel = run.locator(".exo-panel")
    expect(panel.locator(".exo-panel-head")).to_contain_text("work 200 states")
    expect(run.locator("g.node.exo-selected")).to_have_count(1)
    panel.locator("select").select_option("ERRORED")
    expect(panel.locator("tbody tr")).to_have_count(2)
    expect(panel.locator("tbody")).to_contain_text("RuntimeError: item 7 is broken")

    # the cause is gone: retry one state from its row, the other from the toolbar
    (root / "broken.flag").unlink()
    panel.locator("tbody tr").first.locator("button", has_text="retry").click()
    expect(run.locator(".exo-message")).to_contain_text("retried as")
    expect(panel.locator("tbody tr")).to_have_count(1)
    run.locator(".exo-head button", has_text="retry 1 failed").click()
    expect(run.locator(".exo-head .exo-badge")).to_have_text("SUCCESS")
    expect(counts).to_have_text("403 states 401 ✓ 2 ↻")
    expect(run.locator("g.node", has_text="join")).to_contain_text("1 ✓")

    # -- GraphView: each validation error on its node ---------------------------------------
    graph = page.locator(".exo-widget").nth(1)
    expect(graph.locator(".exo-head .exo-badge")).to_have_text("INVALID")
    expect(graph.locator("ul.exo-errors li")).to_have_count(2)
    for ident in ("work", "join"):
        expect(graph.locator("g.node", has_text=ident)).to_contain_text("⚠ 1 error")
    expect(graph.locator("g.node", has_text="split")).not_to_contain_text("⚠")
    graph.locator("g.node", has_text="work").click()
    expect(graph.locator(".exo-panel")).to_contain_text("'oops' is not an input of Work")

    # -- RunsTable: the trigger form starts a run, which shows up -----------------------------
    runs = page.locator(".exo-widget").nth(2)
    expect(runs.locator("tbody tr")).to_have_count(1)
    runs.locator("details.exo-form summary").click()
    runs.locator("select").nth(2).select_option("g")
    runs.locator("textarea").nth(1).fill('{"n": "3"}')
    runs.locator("button", has_text="trigger").click()
    expect(runs.locator(".exo-message")).to_contain_text("triggered run")
    expect(runs.locator("tbody tr")).to_have_count(2)
    runs.locator("select").nth(1).select_option("SUCCESS")
    expect(runs.locator("tbody tr")).to_have_count(2, timeout=TIMEOUT_MS)

    # -- StatesTable: pages on the server ---------------------------------------------------
    states = page.locator(".exo-widget").nth(3)
    expect(states.locator(".exo-pager")).to_contain_text("page 1 of")  # as many as when it was shown
    expect(states.locator("tbody tr")).to_have_count(10)
    states.locator(".exo-pager button").nth(1).click()
    expect(states.locator(".exo-pager")).to_contain_text("page 2 of")
    states.locator("select").first.select_option("work")  # 200 states, 2 of them retried: 202
    expect(states.locator(".exo-pager")).to_contain_text("page 1 of 21")
    expect(states.locator(".exo-foot")).to_contain_text("202 states")
