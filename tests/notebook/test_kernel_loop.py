"""The background loop in a REAL Jupyter kernel (ipykernel, driven by nbclient), cell by cell.

- runs keep progressing while a cell blocks (`time.sleep`) and while the kernel sits idle between cells;
- calls arriving on other threads (plain threads, ipykernel 7 subshells, a widget's click callback
  dispatched on a subshell) reach the runtime safely;
- a node class redefined in a later cell is used by the next state, with nothing restarted;
- a started runtime's handle can be awaited in a cell (and the guide's other two patterns stop cleanly).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_helpers import (
    KernelSession,
    collect_replies,
    control_request,
    send_execute,
    stream_texts,
    write_kernelspec,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_kernelspec(tmp_path_factory.mktemp("jupyter"))


@pytest.fixture
def kernel(tmp_path: Path, jupyter_path: Path) -> Iterator[KernelSession]:
    with KernelSession(tmp_path, jupyter_path) as session:
        try:
            yield session
        except Exception:
            session.save(tmp_path / "failed.ipynb")
            raise


def setup_code(db: Path, namespace: str, delay: float = 0.2) -> str:
    """A three-step chain (each step sleeps `delay` s on the loop), its graph, and a started runtime."""
    return f"""
import asyncio, threading, time
from pydantic import BaseModel
from exosphere_nb import BaseNode, GraphNodeModel, Runtime, RuntimeHandle, StateManager, StoreConfigModel
from exosphere_nb.notebook.session import current

URI = {f"duckdb://{db}"!r}
NS = {namespace!r}

class Step(BaseNode):
    class Inputs(BaseModel):
        text: str
    class Outputs(BaseModel):
        text: str
    async def execute(self):
        await asyncio.sleep({delay})
        return self.Outputs(text=self.inputs.text + "+")

runtime = Runtime(namespace=NS, name="rt", nodes=[Step], state_manager_uri=URI)
handle = runtime.start()
assert isinstance(handle, RuntimeHandle), handle
sm = StateManager(NS, state_manager_uri=URI)
current().connect(URI, namespace=NS)
await sm.upsert_graph("chain", [
    GraphNodeModel(node_name="Step", namespace=NS, identifier="a", inputs={{"text": "${{{{ store.seed }}}}"}}, next_nodes=["b"]),
    GraphNodeModel(node_name="Step", namespace=NS, identifier="b", inputs={{"text": "${{{{ a.outputs.text }}}}"}}, next_nodes=["c"]),
    GraphNodeModel(node_name="Step", namespace=NS, identifier="c", inputs={{"text": "${{{{ b.outputs.text }}}}"}}),
], secrets={{}}, store_config=StoreConfigModel(required_keys=["seed"]))
print("ready")
"""


def test_kernel_runs_this_interpreter(kernel: KernelSession) -> None:
    import ipykernel

    out = kernel.run("import sys, ipykernel, json; print(json.dumps([sys.executable, ipykernel.__version__]))")
    executable, version = json.loads(out)
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert version == ipykernel.__version__  # the project's venv has ipykernel 7; these tests also pass on 6.29+
    assert kernel.kernel_pid is not None


def test_run_progresses_during_a_blocking_cell(kernel: KernelSession, tmp_path: Path) -> None:
    assert kernel.run(setup_code(tmp_path / "state.duckdb", "blocking")).strip() == "ready"
    out = kernel.run(
        "run = await sm.trigger('chain', store={'seed': 'x'})\n"
        "rid = run['run_id']\n"
        "print(current().call(sm.run_status(rid))['status'])"
    )
    assert out.strip() == "PENDING"  # three steps of 0.2 s each are ahead
    # a cell that blocks the kernel's thread (and its asyncio loop) for 1.5 s, awaiting nothing
    kernel.run("time.sleep(1.5)")
    # the next cell awaits nothing either: a sync call finds the run finished
    out = kernel.run(
        "status = current().call(sm.run_status(rid))\n"
        "outputs = current().call(sm.run_outputs(rid))\n"
        "print(status['status'], outputs['c'][0]['text'])"
    )
    assert out.split() == ["SUCCESS", "x+++"]


def test_run_progresses_between_cells(kernel: KernelSession, tmp_path: Path) -> None:
    kernel.run(setup_code(tmp_path / "state.duckdb", "idle"))
    out = kernel.run(
        "rid = current().call(sm.trigger('chain', store={'seed': 'y'}))['run_id']\n"
        "print(current().call(sm.run_status(rid))['status'])"
    )
    assert out.strip() == "PENDING"
    time.sleep(1.5)  # the kernel is idle: no cell runs
    out = kernel.run("s = current().call(sm.run_status(rid)); print(s['status'], s['counts']['SUCCESS'])")
    assert out.split() == ["SUCCESS", "3"]


def test_calls_from_other_threads_reach_the_runtime(kernel: KernelSession, tmp_path: Path) -> None:
    kernel.run(setup_code(tmp_path / "state.duckdb", "threads", delay=0.01))
    out = kernel.run(
        """
results, errors = [], []

def callback(i):  # what a widget callback does: sync calls into the background loop
    try:
        rid = current().call(sm.trigger("chain", store={"seed": f"t{i}"}))["run_id"]
        if i % 2:
            summary = current().call(sm.wait(rid, timeout=20))
        else:  # or its own event loop in this thread, awaiting the SDK's coroutines
            summary = asyncio.run(sm.wait(rid, timeout=20))
        outputs = current().call(sm.run_outputs(rid))
        results.append((i, summary["status"], outputs["c"][0]["text"], threading.current_thread().name))
    except BaseException as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=callback, args=(i,), name=f"cb-{i}") for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join(30)
assert not errors, errors
assert not any(t.is_alive() for t in threads)
import json
print(json.dumps(sorted(results)))
"""
    )
    results = json.loads(out)
    assert [r[:3] for r in results] == [[i, "SUCCESS", f"t{i}+++"] for i in range(8)]
    assert {r[3] for r in results} == {f"cb-{i}" for i in range(8)}
    # the session's own sync helper and the runs listing agree, from the kernel's main thread
    out = kernel.run("print(current().call(sm.list_runs(size=50))['total'])")
    assert out.strip() == "8"


def test_subshell_and_widget_click_reach_the_runtime_while_the_main_shell_blocks(
    kernel: KernelSession, tmp_path: Path
) -> None:
    kernel.run(setup_code(tmp_path / "state.duckdb", "subshell", delay=0.05))
    kc = kernel.side_client()
    try:
        info = kc.kernel_info(reply=True, timeout=30)["content"]
        if "kernel subshells" not in info.get("supported_features", []):
            pytest.skip("this ipykernel has no kernel subshells (they came in ipykernel 7)")
        subshell = control_request(kc, "create_subshell_request", {})
        assert subshell["status"] == "ok", subshell
        sid = subshell["subshell_id"]
        # a button created from the subshell: ipykernel 7 routes its comm messages to that subshell
        make_button = send_execute(
            kc,
            """
import ipywidgets
clicks = []
def on_click(button):
    rid = current().call(sm.trigger("chain", store={"seed": "click"}))["run_id"]
    summary = current().call(sm.wait(rid, timeout=20))
    clicks.append((threading.current_thread().name, summary["status"], current().call(sm.run_outputs(rid))["c"][0]["text"]))
button = ipywidgets.Button(description="run")
button.on_click(on_click)
print(button.model_id)
""",
            sid,
        )
        ((_, reply),) = collect_replies(kc, [make_button])
        assert reply["status"] == "ok", reply
        model_id = stream_texts(kc, [make_button])[make_button].strip()

        blocked = send_execute(kc, "time.sleep(3); print('main shell done')")
        time.sleep(0.3)  # the main shell is now inside time.sleep
        on_sub = send_execute(
            kc,
            "rid = current().call(sm.trigger('chain', store={'seed': 'sub'}))['run_id']\n"
            "s = current().call(sm.wait(rid, timeout=20))\n"
            "print(threading.current_thread().name, s['status'])",
            sid,
        )
        click = kc.session.msg(
            "comm_msg", {"comm_id": model_id, "data": {"method": "custom", "content": {"event": "click"}}}
        )
        click["header"]["subshell_id"] = sid
        kc.shell_channel.send(click)
        after_click = send_execute(kc, "print(clicks)", sid)
        replies = collect_replies(kc, [blocked, on_sub, after_click], timeout=60)
        order = [m for m, _ in replies]
        assert all(content["status"] == "ok" for _, content in replies), replies
        # both subshell requests finished while the main shell was still blocked
        assert order.index(on_sub) < order.index(blocked)
        assert order.index(after_click) < order.index(blocked)
        texts = stream_texts(kc, [blocked, on_sub, after_click])
        name, status = texts[on_sub].split()
        assert name == f"subshell-{sid}" and status == "SUCCESS", texts[on_sub]
        assert texts[after_click].strip() == repr([(f"subshell-{sid}", "SUCCESS", "click+++")])
        assert texts[blocked].strip() == "main shell done"
        assert control_request(kc, "delete_subshell_request", {"subshell_id": sid})["status"] == "ok"
    finally:
        kc.stop_channels()
    out = kernel.run("print(sorted(r['status'] for r in current().call(sm.list_runs())['runs']))")
    assert out.strip() == "['SUCCESS', 'SUCCESS']"


def test_redefined_node_is_used_by_the_next_state(kernel: KernelSession, tmp_path: Path) -> None:
    db = tmp_path / "state.duckdb"
    kernel.run(
        f"""
from pydantic import BaseModel
from exosphere_nb import BaseNode, GraphNodeModel, Runtime, StateManager, StoreConfigModel
URI = {f"duckdb://{db}"!r}

class Echo(BaseNode):
    class Inputs(BaseModel):
        text: str
    class Outputs(BaseModel):
        text: str
    async def execute(self):
        return self.Outputs(text=f"v1:{{self.inputs.text}}")

handle = Runtime(namespace="hot", name="rt", nodes=[Echo], state_manager_uri=URI).start()
sm = StateManager("hot", state_manager_uri=URI)
await sm.upsert_graph("echo", [GraphNodeModel(node_name="Echo", namespace="hot", identifier="echo",
                                              inputs={{"text": "${{{{ store.text }}}}"}})],
                      secrets={{}}, store_config=StoreConfigModel(required_keys=["text"]))
"""
    )
    first = kernel.run(
        "rid = (await sm.trigger('echo', store={'text': 'hello'}))['run_id']\n"
        "await sm.wait(rid, timeout=10)\n"
        "print((await sm.run_outputs(rid))['echo'][0]['text'])"
    )
    assert first.strip() == "v1:hello"
    # a later cell redefines the class, with a different output
    kernel.run(
        """
class Echo(BaseNode):
    class Inputs(BaseModel):
        text: str
    class Outputs(BaseModel):
        text: str
    async def execute(self):
        return self.Outputs(text=f"v2:{self.inputs.text.upper()}")
"""
    )
    second = kernel.run(
        "rid = (await sm.trigger('echo', store={'text': 'hello'}))['run_id']\n"
        "await sm.wait(rid, timeout=10)\n"
        "print((await sm.run_outputs(rid))['echo'][0]['text'], handle.done())"
    )
    assert second.split() == ["v2:HELLO", "False"]  # the same runtime, still running, used the new class


def test_await_the_run_handle_and_the_guides_other_patterns(kernel: KernelSession, tmp_path: Path) -> None:
    kernel.run(setup_code(tmp_path / "state.duckdb", "handles", delay=0.01))
    # (c) runtime.start() returned a handle: wait for a run with top-level await, stop, await the handle
    out = kernel.run(
        "rid = (await sm.trigger('chain', store={'seed': 'h'}))['run_id']\n"
        "summary = await sm.wait(rid, timeout=10)\n"
        "handle.stop()\n"
        "await handle\n"
        "print(summary['status'], handle.done(), repr(handle).split(':')[0])"
    )
    assert out.split() == ["SUCCESS", "True", "<RuntimeHandle", "handles/rt", "stopped"]
    # (b) asyncio.create_task(runtime._start()) in a cell, cancelled in a later one
    kernel.run(
        "task = asyncio.create_task(Runtime(namespace=NS, name='rt-task', nodes=[Step], state_manager_uri=URI)._start())"
    )
    out = kernel.run(
        "rid = (await sm.trigger('chain', store={'seed': 't'}))['run_id']\n"
        "print((await sm.wait(rid, timeout=10))['status'])\n"
        "task.cancel()\n"
        "try:\n"
        "    await task\n"
        "except asyncio.CancelledError:\n"
        "    print('cancelled')"
    )
    assert out.split() == ["SUCCESS", "cancelled"]
    # (a) runtime.start() blocking in a daemon thread, stopped from a cell
    out = kernel.run(
        "rt = Runtime(namespace=NS, name='rt-thread', nodes=[Step], state_manager_uri=URI)\n"
        "thread = threading.Thread(target=rt.start, daemon=True)\n"
        "thread.start()\n"
        "rid = (await sm.trigger('chain', store={'seed': 'th'}))['run_id']\n"
        "print((await sm.wait(rid, timeout=10))['status'])\n"
        "rt.stop()\n"
        "thread.join(10)\n"
        "print(thread.is_alive())"
    )
    assert out.split() == ["SUCCESS", "False"]
    out = kernel.run(
        "from exosphere_nb.runtime import started_runtimes\n"
        "s = current().call(sm.list_runs())\n"
        "print(len(started_runtimes()), s['total'], sorted({r['status'] for r in s['runs']}))"
    )
    assert out.strip() == "0 3 ['SUCCESS']"
