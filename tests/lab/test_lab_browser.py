"""The panel in a real JupyterLab, driven through Debian's Chromium by Playwright (never `playwright install`).

A notebook, run from JupyterLab's own Run menu, defines two nodes, starts a runtime, publishes its
kernel's state manager (`%exo serve`) and triggers two runs of `flow`: one succeeds, one fails on
`boom`. The panel must find the kernel by itself, list both runs and show them finish; a run's DAG
shows per-node counts; the failed state's traceback shows in the inspector and, once the cause is
gone, its Retry makes the run succeed; the trigger form starts a run; the dark theme applies. No
console error is allowed. Screenshots go to tests/lab/artifacts/ (or $EXOSPHERE_TEST_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from lab_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    KERNEL_NAME,
    SETUP_HINT,
    ExoServe,
    JupyterProcess,
    Worker,
    artifacts_dir,
    free_port,
    pid_alive,
    require_lab,
)
from lab_nodes import NAMESPACE
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

pytestmark = pytest.mark.slow

TIMEOUT_MS = 60_000

NOTEBOOK_CELLS = [
    "%load_ext exosphere_nb\n%exo connect --namespace lab",
    """from pathlib import Path

from pydantic import BaseModel

from exosphere_nb import BaseNode, GraphNodeModel, RetryPolicyModel, Runtime, StateManager, StoreConfigModel

Path("broken.flag").touch()  # `work` fails on "boom" while this file exists


class Split(BaseNode):
    class Inputs(BaseModel):
        items: str

    class Outputs(BaseModel):
        item: str

    async def execute(self):
        return [self.Outputs(item=i.strip()) for i in self.inputs.items.split(",") if i.strip()]


class Work(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        result: str

    async def execute(self):
        if self.inputs.item == "boom" and Path("broken.flag").exists():
            raise RuntimeError("boom is broken")
        return self.Outputs(result=self.inputs.item.upper())""",
    """runtime = Runtime(namespace="lab", name="notebook", nodes=[Split, Work]).start()
sm = StateManager("lab")
graph = await sm.upsert_graph(
    "flow",
    [
        GraphNodeModel(node_name="Split", namespace="lab", identifier="split",
                       inputs={"items": "${{ store.items }}"}, next_nodes=["work"]),
        GraphNodeModel(node_name="Work", namespace="lab", identifier="work",
                       inputs={"item": "${{ split.outputs.item }}"}),
    ],
    secrets={},
    retry_policy=RetryPolicyModel(max_retries=0),
    store_config=StoreConfigModel(required_keys=["items"]),
)""",
    "%exo serve",
    """ok = await sm.trigger("flow", store={"items": "a,b,c"})
bad = await sm.trigger("flow", store={"items": "x,boom"})
print("triggered", ok["run_id"], bad["run_id"])""",
]


def write_notebook(path: Path) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "exosphere_nb lab tests", "language": "python"}
    nb.cells = [new_markdown_cell("# Exosphere from a notebook")] + [new_code_cell(c) for c in NOTEBOOK_CELLS]
    nbformat.write(nb, path)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterProcess]:
    require_lab()
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: {SETUP_HINT}", pytrace=False)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(f"the Playwright package is missing: {SETUP_HINT}", pytrace=False)
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "flow.ipynb")
    server = JupyterProcess(tmp_path, root, lab=True)
    try:
        yield server.start()
    finally:
        server.stop()
        # jupyter shuts its kernels down as it stops; a kernel that outlived it is stopped by its pid
        for pid in server.kernel_pids:
            deadline = time.monotonic() + 15
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"the notebook's kernel (pid {pid}) outlived JupyterLab")


class Shots:
    def __init__(self, page: Any, prefix: str) -> None:
        self.page = page
        self.prefix = prefix
        self.dir = artifacts_dir()
        self.n = 0

    def __call__(self, name: str) -> None:
        self.n += 1
        path = self.dir / f"lab-{self.prefix}-{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        print(f"screenshot: {path}")


def run_command(page: Any, label: str) -> None:
    """Run a command from JupyterLab's command palette, as a person would."""
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".lm-CommandPalette-input")
    palette.wait_for(state="visible")
    palette.fill(label)
    item = page.locator(".lm-CommandPalette-item", has_text=label).first
    item.wait_for(state="visible")
    item.click()


def test_panel_follows_a_notebooks_runs_and_retries_a_failed_state(lab: JupyterProcess) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.on(
                "console",
                lambda m: errors.append(f"console {m.type}: {m.text} @ {m.location}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            shot = Shots(page, "notebook")
            try:
                _drive(page, lab, shot)
            except BaseException:
                shot("failure")
                raise
        finally:
            browser.close()
    assert not errors, "the browser console reported errors:\n" + "\n".join(errors)


def _drive(page: Any, lab: JupyterProcess, shot: Shots) -> None:
    from playwright.sync_api import expect

    page.goto(f"{lab.url}/lab/tree/flow.ipynb?token={lab.token}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=TIMEOUT_MS)
    _settle_kernel(page)

    # the notebook, run from the Run menu: it publishes its kernel and triggers two runs
    _run_all_cells(page)
    discovery = _wait_for_discovery(lab)
    lab.kernel_pids.append(discovery["pid"])
    expect(page.locator(".jp-OutputArea-output", has_text="triggered")).to_be_visible(timeout=120_000)
    shot("notebook")

    # the palette has a command for each main action
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("Exosphere:")
    labels = page.locator(".lm-CommandPalette-item .lm-CommandPalette-itemLabel").all_text_contents()
    for label in (
        "Open Panel",
        "Refresh",
        "Add Remote State Manager…",
        "Trigger Graph…",
        "Open Run…",
        "Auto-Refresh Runs",
        "Cancel Run",
        "Retry Inspected State",
    ):
        assert f"Exosphere: {label}" in labels, labels
    page.keyboard.press("Escape")

    # the panel, from the command palette: it finds the kernel by itself and lists both runs
    run_command(page, "Exosphere: Open Panel")
    panel = page.locator("#exosphere-nb-panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".exo-connection-select option", has_text="flow.ipynb")).to_have_count(1)
    expect(panel.locator(".exo-namespace-select")).to_have_value("lab")
    expect(panel.locator('.exo-graph[data-graph="flow"] .exo-validation-valid')).to_have_text("VALID")
    expect(panel.locator(".exo-run-row")).to_have_count(2)
    expect(panel.locator('.exo-run-row[data-status="SUCCESS"]')).to_have_count(1)
    expect(panel.locator('.exo-run-row[data-status="FAILED"]')).to_have_count(1)
    ok_id = panel.locator('.exo-run-row[data-status="SUCCESS"]').get_attribute("data-run-id")
    bad_id = panel.locator('.exo-run-row[data-status="FAILED"]').get_attribute("data-run-id")
    shot("panel-runs")

    # filters: by status, then by graph
    panel.locator(".exo-filter-status").select_option("FAILED")
    expect(panel.locator(".exo-run-row")).to_have_count(1)
    expect(panel.locator(".exo-run-row")).to_have_attribute("data-run-id", bad_id)
    panel.locator(".exo-filter-status").select_option("")
    panel.locator(".exo-filter-graph").select_option("flow")
    expect(panel.locator(".exo-run-row")).to_have_count(2)
    panel.locator(".exo-filter-since").select_option("15m")
    expect(panel.locator(".exo-run-row")).to_have_count(2)
    panel.locator(".exo-filter-graph").select_option("")
    panel.locator(".exo-filter-since").select_option("")

    # the successful run: its DAG with per-node counts
    panel.locator(f'.exo-run-row[data-run-id="{ok_id}"]').click()
    ok_view = page.locator(f'.exo-run-view[data-run-id="{ok_id}"]')
    expect(ok_view).to_be_visible()
    expect(ok_view.locator(".exo-run-head .exo-badge")).to_have_text("SUCCESS")
    expect(ok_view.locator('.exo-dag-node[data-identifier="split"] .exo-count-success')).to_have_text("3 ✓")
    expect(ok_view.locator('.exo-dag-node[data-identifier="work"] .exo-count-success')).to_have_text("3 ✓")
    expect(ok_view.locator(".exo-dag-edge")).to_have_count(1)
    shot("run-success-dag")

    # the failed run: inspect the failed state, remove the cause, retry it from the inspector
    panel.locator(f'.exo-run-row[data-run-id="{bad_id}"]').click()
    view = page.locator(f'.exo-run-view[data-run-id="{bad_id}"]')
    expect(view).to_be_visible()
    expect(view.locator(".exo-run-head .exo-badge")).to_have_text("FAILED")
    work = view.locator('.exo-dag-node[data-identifier="work"]')
    expect(work.locator(".exo-count-success")).to_have_text("1 ✓")
    expect(work.locator(".exo-count-failed")).to_have_text("1 ✗")
    work.click()
    expect(view.locator(".exo-states-head")).to_contain_text("states of work")
    expect(view.locator(".exo-state-row")).to_have_count(2)
    view.locator('.exo-state-row[data-status="ERRORED"]').click()
    inspector = view.locator(".exo-inspector")
    expect(inspector.locator(".exo-inspector-head")).to_have_attribute("data-status", "ERRORED")
    expect(inspector.locator(".exo-traceback")).to_contain_text("RuntimeError: boom is broken")
    expect(inspector.locator(".exo-traceback")).to_contain_text("Traceback")
    expect(inspector.locator(".exo-kv-table").first).to_contain_text("boom")
    shot("inspector-failed-state")

    (lab.root / "broken.flag").unlink()  # the fix
    inspector.locator(".exo-retry").click()
    expect(inspector.locator(".exo-inspector-message")).to_contain_text("retried")
    expect(inspector.locator(".exo-inspector-head")).to_have_attribute("data-status", "SUCCESS")
    expect(inspector.locator(".exo-kv-table").nth(1)).to_contain_text("BOOM")
    expect(view.locator(".exo-run-head .exo-badge")).to_have_text("SUCCESS")
    expect(work.locator(".exo-count-success")).to_have_text("2 ✓")
    expect(work.locator(".exo-count-retried")).to_have_text("1 ↻")
    expect(panel.locator(f'.exo-run-row[data-run-id="{bad_id}"]')).to_have_attribute("data-status", "SUCCESS")
    shot("retried-run-success")

    # the trigger form starts a run, which opens and finishes
    panel.locator('.exo-graph[data-graph="flow"] .exo-trigger-button').click()
    form = panel.locator('.exo-trigger-form[data-graph="flow"]')
    form.locator('input[name="store-items"]').fill("p,q")
    shot("trigger-form")
    form.locator(".exo-trigger-submit").click()
    expect(panel.locator(".exo-run-row")).to_have_count(3)
    new_view = page.locator(".exo-run-view:visible")
    expect(new_view).to_have_count(1)
    new_id = new_view.get_attribute("data-run-id")
    assert new_id not in (ok_id, bad_id)
    expect(new_view.locator(".exo-run-head .exo-badge")).to_have_text("SUCCESS")
    expect(new_view.locator('.exo-dag-node[data-identifier="work"] .exo-count-success')).to_have_text("2 ✓")

    # palette commands act on the run in view: cancelling a finished run is refused by the button state
    expect(new_view.locator(".exo-cancel-run")).to_be_disabled()

    # light and dark themes: the panel follows JupyterLab's
    light = panel.evaluate("el => getComputedStyle(el).backgroundColor")
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text="JupyterLab Dark").first.click()
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
    expect(panel).not_to_have_css("background-color", light)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)
    page.locator(".lm-TabBar-tab", has_text=f"Run {bad_id[:8]}").first.click()
    expect(view).to_be_visible()
    shot("dark-theme")


def _settle_kernel(page: Any, timeout: float = 60) -> None:
    """Wait until the notebook's kernel has been idle for 2 s, its display name in the status bar."""
    deadline = time.monotonic() + timeout
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    status_bar = page.locator(".jp-StatusBar-TextItem", has_text="exosphere_nb lab tests | Idle")
    since: float | None = None
    while time.monotonic() < deadline:
        if idle.count() and status_bar.count() and not page.locator(".jp-Dialog").count():
            since = since or time.monotonic()
            if time.monotonic() - since >= 2:
                return
        else:
            since = None
        page.wait_for_timeout(200)
    raise AssertionError("the notebook's kernel did not become idle")


def _run_all_cells(page: Any) -> None:
    """Run > Run All Cells; the first code cell must start executing (its prompt leaves `[ ]`)."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    prompt = page.locator(".jp-CodeCell .jp-InputPrompt").first
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = (prompt.text_content() or "").strip()
        if text not in ("", "[ ]:"):
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"Run All Cells did not start the notebook (first prompt {text!r})")


def _wait_for_discovery(lab: JupyterProcess, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in lab.servers_dir.glob("*.json"):
            try:
                return dict(json.loads(path.read_text()))
            except ValueError:
                pass  # being written
        time.sleep(0.25)
    raise AssertionError(
        f"no kernel published its state manager within {timeout} s; JupyterLab log:\n{lab.log.read_text()[-3000:]}"
    )


@pytest.fixture
def remote_lab(tmp_path: Path) -> Iterator[tuple[JupyterProcess, ExoServe]]:
    require_lab()
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: {SETUP_HINT}", pytrace=False)
    root = tmp_path / "root"
    root.mkdir()
    with (
        ExoServe(tmp_path) as upstream,
        Worker(tmp_path, upstream.url, upstream.key),
        JupyterProcess(tmp_path, root, lab=True) as server,
    ):
        yield server, upstream


def test_panel_keeps_remote_keys_on_the_server_and_explains_bad_upstreams(
    remote_lab: tuple[JupyterProcess, ExoServe],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    lab, upstream = remote_lab
    assert upstream.key
    expect.set_options(timeout=TIMEOUT_MS)
    errors: list[str] = []
    bodies: list[str] = []
    closed = f"http://127.0.0.1:{free_port()}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("response", lambda r: bodies.append(r.text()) if "/exosphere-nb/api/" in r.url else None)
            page.on(
                "request", lambda r: bodies.append(r.post_data or "") if "/exosphere-nb/api/proxy" in r.url else None
            )
            shot = Shots(page, "remote")
            try:
                # an INVALID graph: its node class is registered by no runtime
                broken = {
                    "secrets": {},
                    "nodes": [{"node_name": "Missing", "namespace": NAMESPACE, "identifier": "lost", "inputs": {}}],
                }
                r = httpx.put(
                    f"{upstream.url}/v0/namespace/{NAMESPACE}/graph/broken",
                    json=broken,
                    headers={"x-api-key": upstream.key},
                    timeout=30,
                )
                assert r.status_code == 201, r.text
                page.goto(f"{lab.url}/lab?token={lab.token}")
                page.locator(".jp-LauncherCard").first.wait_for(timeout=TIMEOUT_MS)
                run_command(page, "Exosphere: Open Panel")
                panel = page.locator("#exosphere-nb-panel")
                expect(panel.locator(".exo-connection-info")).to_contain_text("%exo serve")
                shot("no-connection")

                run_command(page, "Exosphere: Add Remote State Manager…")
                form = panel.locator(".exo-add-connection")
                form.locator('input[name="name"]').fill("shared server")
                form.locator('input[name="uri"]').fill(upstream.url)
                form.locator('input[name="key"]').fill(upstream.key)
                form.locator('input[name="namespace"]').fill(NAMESPACE)
                form.get_by_role("button", name="Save").click()
                expect(panel.locator(".exo-connection-select option", has_text="shared server")).to_have_count(1)
                expect(panel.locator(".exo-connection-info")).to_contain_text("key saved on the server")
                expect(panel.locator('.exo-graph[data-graph="flow"] .exo-validation-valid')).to_have_text("VALID")
                invalid = panel.locator('.exo-graph[data-graph="broken"]')
                expect(invalid.locator(".exo-validation-invalid")).to_have_text("INVALID")
                expect(invalid.locator(".exo-trigger-button")).to_be_disabled()
                expect(panel.locator('.exo-validation-errors[data-graph="broken"]')).to_contain_text(
                    "node 'lost': node 'Missing' is not registered in namespace 'lab'"
                )
                invalid.locator(".exo-graph-summary").click()
                expect(invalid.locator('.exo-dag-node[data-identifier="lost"].exo-dag-node-alert')).to_have_count(1)
                shot("graphs-valid-and-invalid")

                panel.locator('.exo-graph[data-graph="flow"] .exo-trigger-button').click()
                panel.locator('.exo-trigger-form input[name="store-items"]').fill("r,s,t")
                panel.locator(".exo-trigger-submit").click()
                view = page.locator(".exo-run-view:visible")
                expect(view.locator(".exo-run-head .exo-badge")).to_have_text("SUCCESS")
                expect(view.locator('.exo-dag-node[data-identifier="work"] .exo-count-success')).to_have_text("3 ✓")
                shot("remote-run")

                # a state manager that does not answer: saved, and the panel says why nothing shows
                run_command(page, "Exosphere: Add Remote State Manager…")
                form.locator('input[name="uri"]').fill(closed)
                form.get_by_role("button", name="Save").click()
                message = panel.locator(".exo-message .exo-error").first
                expect(message).to_contain_text(f"cannot reach the state manager '{closed[7:]}' ({closed})")
                shot("unreachable-remote")
                run_command(page, "Exosphere: Forget This Remote State Manager")
                expect(panel.locator(".exo-connection-select option", has_text=closed[7:])).to_have_count(0)
                expect(panel.locator(".exo-connection-select")).to_contain_text("shared server")
                assert upstream.key not in page.content()
            except BaseException:
                shot("failure")
                raise
        finally:
            browser.close()
    assert all(upstream.key not in body for body in bodies), "an API key reached the browser"
    # the only console errors allowed: Chromium's own notes of the 502 answers for the closed port
    unexpected = [e for e in errors if "status of 502" not in e]
    assert not unexpected, "the browser console reported errors:\n" + "\n".join(unexpected)
