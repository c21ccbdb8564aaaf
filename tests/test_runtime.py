"""Runtime: lives on the background loop, starts/stops cleanly in every way users start it,
executes nodes (outputs, errors, signals, secrets), hot-reloads node classes and renews leases."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sdk_helpers import (
    NAMESPACE,
    close_db,
    engine,
    gn,
    registered,
    running,
    runtime_tasks,
    sql,
    states_of,
    status_counts,
    until,
    use_db,
)

from exosphere_nb import (
    BaseNode,
    GraphNodeModel,
    PruneSignal,
    ReQueueAfterSignal,
    RetryPolicyModel,
    Runtime,
    RuntimeHandle,
    StateManager,
)
from exosphere_nb.loop import run_sync

NO_RETRY = RetryPolicyModel(max_retries=0)


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    path = use_db(monkeypatch, tmp_path)
    yield path
    close_db(path)


class Split(BaseNode):
    """Fans out into `n` branches."""

    class Inputs(BaseModel):
        n: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=str(i)) for i in range(int(self.inputs.n))]


class Slow(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> Outputs:
        await asyncio.sleep(0.15)
        return self.Outputs(item=self.inputs.item)


def split_slow_graph() -> list:
    return [
        gn("Split", "split", {"n": "1"}, ["slow"]),
        gn("Slow", "slow", {"item": "${{ split.outputs.item }}"}),
    ]


def slow_states(db: str, run_id: str, status: str) -> int:
    query = "SELECT count(*) FROM state_records WHERE run_id = ? AND identifier = 'slow' AND status = ?"
    return sql(db, query, [run_id, status])[0][0]


def assert_nothing_claimed(db: str) -> None:
    """No state is QUEUED and none is CREATED while still carrying a claim's lease."""
    claimed = sql(
        db,
        "SELECT identifier, status, lease_until FROM state_records "
        "WHERE status = 'QUEUED' OR (status = 'CREATED' AND lease_until > 0)",
    )
    assert claimed == [], f"states still claimed after the runtime stopped: {claimed}"


# -- starting and stopping -----------------------------------------------------------------------


async def test_start_in_a_running_loop_returns_a_handle_at_once_and_stop_is_clean(db: str) -> None:
    runtime = Runtime(namespace=NAMESPACE, name="rt", nodes=[Split, Slow], workers=1, batch_size=16)
    began = time.monotonic()
    handle = runtime.start()
    assert isinstance(handle, RuntimeHandle)
    assert time.monotonic() - began < 0.5
    assert not handle.done()
    assert runtime.start() is handle  # starting again while running is a no-op
    try:
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph("g", split_slow_graph(), secrets={})
        first = await sm.trigger("g", inputs={"n": "1"})
        summary = await sm.wait(first["run_id"], timeout=4)
        assert summary["status"] == "SUCCESS"
        assert (await sm.run_outputs(first["run_id"]))["slow"] == [{"item": "0"}]

        # a run still in progress when stopped: one worker, six slow branches claimed in one batch
        second = await sm.trigger("g", inputs={"n": "6"})
        await until(lambda: slow_states(db, second["run_id"], "QUEUED") >= 2)  # one running, others prefetched
    finally:
        handle.stop(grace=2)
    assert handle.done()
    assert await handle is None
    assert runtime_tasks() == []
    assert_nothing_claimed(db)
    counts = status_counts(db, second["run_id"])
    assert counts.get("CREATED", 0) >= 1, counts  # the unfinished branches were handed back, claimable again
    assert set(counts) <= {"SUCCESS", "CREATED"}, counts
    assert slow_states(db, second["run_id"], "SUCCESS") >= 1  # the running node finished within the grace


async def test_a_stopped_runtime_can_be_started_again(db: str) -> None:
    runtime = Runtime(namespace=NAMESPACE, name="rt", nodes=[Split, Slow])
    with running(runtime) as first:
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph("g", split_slow_graph(), secrets={})
    assert first.done()
    with running(runtime) as second:  # re-running the notebook cell
        assert second is not first and not second.done()
        run = await sm.trigger("g", inputs={"n": "2"})
        assert (await sm.wait(run["run_id"], timeout=4))["status"] == "SUCCESS"
    assert runtime_tasks() == []


async def test_a_run_progresses_while_the_calling_thread_blocks(db: str) -> None:
    class Step(BaseNode):
        class Inputs(BaseModel):
            text: str

        class Outputs(BaseModel):
            text: str

        async def execute(self) -> Outputs:
            await asyncio.sleep(0.05)
            return self.Outputs(text=self.inputs.text + "!")

    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=[Step])):
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph(
            "chain",
            [
                gn("Step", "a", {"text": "go"}, ["b"]),
                gn("Step", "b", {"text": "${{ a.outputs.text }}"}, ["c"]),
                gn("Step", "c", {"text": "${{ b.outputs.text }}"}),
            ],
            secrets={},
        )
        run = await sm.trigger("chain")
        time.sleep(1)  # a blocking cell: this loop's thread does nothing, the background loop works on
        summary = await sm.run_status(run["run_id"])
        assert summary["status"] == "SUCCESS", summary
        assert (await sm.run_outputs(run["run_id"]))["c"] == [{"text": "go!!!"}]


async def test_create_task_start_then_cancel_stops_cleanly(db: str) -> None:
    runtime = Runtime(namespace=NAMESPACE, name="rt", nodes=[Split, Slow], workers=1)
    task = asyncio.create_task(runtime._start())
    sm = StateManager(NAMESPACE)
    await registered(sm, "Split", "Slow")
    await sm.upsert_graph("g", split_slow_graph(), secrets={})
    first = await sm.trigger("g", inputs={"n": "1"})
    assert (await sm.wait(first["run_id"], timeout=4))["status"] == "SUCCESS"

    second = await sm.trigger("g", inputs={"n": "5"})
    await until(lambda: slow_states(db, second["run_id"], "QUEUED") >= 2)  # one running, others prefetched
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert runtime._handle is not None and runtime._handle.done()
    # once the cancelled task has ended, the runtime has stopped: nothing claimed, no task left
    assert_nothing_claimed(db)
    assert runtime_tasks() == []


async def test_stop_with_a_short_grace_hands_the_running_state_back(db: str) -> None:
    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=[Split, Slow], workers=1)) as handle:
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph("g", split_slow_graph(), secrets={})
        run = await sm.trigger("g", inputs={"n": "3"})
        await until(lambda: slow_states(db, run["run_id"], "QUEUED") >= 1)  # a Slow node is running
        handle.stop(grace=0.01)  # the running Slow node (0.15 s) cannot finish in time
    assert handle.done()
    assert runtime_tasks() == []
    assert_nothing_claimed(db)
    counts = status_counts(db, run["run_id"])
    assert counts.get("CREATED", 0) >= 1, counts


SCRIPT_HEAD = """
import asyncio, os, signal, sys, threading
from pydantic import BaseModel
from exosphere_nb import BaseNode, GraphNodeModel, Runtime, StateManager

class Hello(BaseNode):
    class Inputs(BaseModel):
        name: str

    class Outputs(BaseModel):
        message: str

    async def execute(self):
        return self.Outputs(message="hello " + self.inputs.name)

async def run_once():
    sm = StateManager("script")
    while "Hello" not in {n["name"] for n in await sm.list_nodes()}:
        await asyncio.sleep(0.02)
    await sm.upsert_graph(
        "g",
        [GraphNodeModel(node_name="Hello", namespace="script", identifier="hello", inputs={"name": "x"})],
        secrets={},
    )
    run = await sm.trigger("g", inputs={"name": "world"})
    summary = await sm.wait(run["run_id"], timeout=10)
    outputs = await sm.run_outputs(run["run_id"])
    queued = (await sm.run_status(run["run_id"]))["counts"]["QUEUED"]
    return summary["status"], outputs["hello"][0]["message"], queued
"""

DAEMON_THREAD_SCRIPT = (
    SCRIPT_HEAD
    + """
if __name__ == "__main__":
    runtime = Runtime(namespace="script", name="rt", nodes=[Hello])
    thread = threading.Thread(target=runtime.start, daemon=True)
    thread.start()
    status, message, queued = asyncio.run(run_once())
    runtime.stop()  # from another thread: start() returns and its thread ends
    thread.join(5)
    print("RESULT", status, message, queued, "thread alive:", thread.is_alive())
"""
)

BLOCKING_MAIN_SCRIPT = (
    SCRIPT_HEAD
    + """
result = []

def watcher():
    try:
        result.append(asyncio.run(run_once()))
    finally:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: what stops a blocking runtime in a script

if __name__ == "__main__":
    runtime = Runtime(namespace="script", name="rt", nodes=[Hello])
    threading.Thread(target=watcher, daemon=True).start()
    returned = runtime.start()  # blocks until Ctrl-C
    status, message, queued = result[0]
    print("RESULT", status, message, queued, returned)
"""
)


def run_script(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXOSPHERE_")}
    env["EXOSPHERE_STATE_MANAGER_URI"] = f"duckdb://{tmp_path / 'script.duckdb'}"
    return subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )


def test_blocking_start_in_a_daemon_thread(tmp_path: Path) -> None:
    proc = run_script(tmp_path, DAEMON_THREAD_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert "RESULT SUCCESS hello world 0 thread alive: False" in proc.stdout, (proc.stdout, proc.stderr)


def test_blocking_start_in_a_script_until_ctrl_c(tmp_path: Path) -> None:
    proc = run_script(tmp_path, BLOCKING_MAIN_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert "RESULT SUCCESS hello world 0 None" in proc.stdout, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr


# -- hot reload ----------------------------------------------------------------------------------

ECHO_CELL = """
from pydantic import BaseModel
from exosphere_nb import BaseNode

class Echo(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self):
        return self.Outputs(text="{prefix}" + self.inputs.text)
"""


async def run_echo(sm: StateManager) -> str:
    run = await sm.trigger("echo", inputs={"text": "hi"})
    assert (await sm.wait(run["run_id"], timeout=4))["status"] == "SUCCESS"
    return (await sm.run_outputs(run["run_id"]))["echo"][0]["text"]


async def test_redefining_a_node_in_a_later_cell_takes_effect_without_restart(db: str) -> None:
    module = f"notebook_cell_{uuid.uuid4().hex}"  # a notebook's __main__, unique to this test
    first: dict = {"__name__": module}
    exec(ECHO_CELL.replace("{prefix}", "v1:"), first)
    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=[first["Echo"]])) as handle:
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph("echo", [gn("Echo", "echo", {"text": "x"})], secrets={})
        assert await run_echo(sm) == "v1:hi"

        second: dict = {"__name__": module}
        exec(ECHO_CELL.replace("{prefix}", "v2:"), second)  # the user edits and re-runs the cell
        assert await run_echo(sm) == "v2:hi"
        assert not handle.done()


async def test_redefining_a_node_class_with_the_same_qualname(db: str) -> None:
    class Echo(BaseNode):
        class Inputs(BaseModel):
            text: str

        class Outputs(BaseModel):
            text: str

        async def execute(self) -> Outputs:
            return self.Outputs(text="old " + self.inputs.text)

    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=[Echo])):
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph("echo", [gn("Echo", "echo", {"text": "x"})], secrets={})
        assert await run_echo(sm) == "old hi"

        class Echo(BaseNode):  # the point: a new definition under the same name
            class Inputs(BaseModel):
                text: str

            class Outputs(BaseModel):
                text: str

            async def execute(self) -> Outputs:
                return self.Outputs(text="new " + self.inputs.text)

        assert await run_echo(sm) == "new hi"


# -- what a node returns or raises -----------------------------------------------------------------


class Boom(BaseNode):
    class Inputs(BaseModel):
        x: str

    async def execute(self) -> None:
        raise ValueError("boom from the node")


async def test_errors_carry_the_full_traceback(db: str) -> None:
    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=[Boom])):
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph("g", [gn("Boom", "boom", {"x": "1"})], secrets={}, retry_policy=NO_RETRY)
        run = await sm.trigger("g")
        assert (await sm.wait(run["run_id"], timeout=4))["status"] == "FAILED"
    [state] = (await sm.run_graph(run["run_id"]))["nodes"]
    assert state["status"] == "ERRORED"
    error = (await sm.get_state(state["id"]))["error"]
    assert "Traceback (most recent call last)" in error
    assert 'raise ValueError("boom from the node")' in error
    assert "ValueError: boom from the node" in error
    assert "test_runtime.py" in error


class After(BaseNode):
    class Inputs(BaseModel):
        label: str

    class Outputs(BaseModel):
        label: str

    async def execute(self) -> Outputs:
        return self.Outputs(label=self.inputs.label)


class ReturnsText(BaseNode):
    class Outputs(BaseModel):
        value: str

    async def execute(self) -> str:  # type: ignore[override]
        return "not an Outputs"


class ReturnsMixedList(BaseNode):
    class Outputs(BaseModel):
        value: str

    async def execute(self) -> list:
        return [self.Outputs(value="ok"), {"value": "a dict"}]


class ReturnsOtherOutputs(BaseNode):
    class Outputs(BaseModel):
        value: str

    async def execute(self) -> BaseModel:
        return After.Outputs(label="wrong model")


class ReturnsNone(BaseNode):
    class Outputs(BaseModel):
        value: str

    async def execute(self) -> None:
        return None


class ReturnsEmpty(BaseNode):
    class Outputs(BaseModel):
        value: str

    async def execute(self) -> list:
        return []


RETURN_NODES = [After, ReturnsText, ReturnsMixedList, ReturnsOtherOutputs, ReturnsNone, ReturnsEmpty]


async def run_single(sm: StateManager, node: str, next_nodes: list[str] | None = None) -> str:
    nodes = [gn(node, "first", {}, next_nodes)]
    if next_nodes:
        nodes.append(gn("After", "after", {"label": "ran"}))
    await sm.upsert_graph(node.lower(), nodes, secrets={}, retry_policy=NO_RETRY)
    run = await sm.trigger(node.lower())
    await sm.wait(run["run_id"], timeout=4)
    return run["run_id"]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("ReturnsText", ["ReturnsText.execute() must return", "got str"]),
        ("ReturnsMixedList", ["ReturnsMixedList.execute() returned a list whose item 1 is dict"]),
        ("ReturnsOtherOutputs", ["'value'", "'label'"]),
    ],
)
async def test_a_bad_return_value_errors_the_state_with_a_clear_message(
    db: str, node: str, expected: list[str]
) -> None:
    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=RETURN_NODES)):
        sm = StateManager(NAMESPACE)
        run_id = await run_single(sm, node, ["after"])
    [state] = states_of(db, run_id)  # the branch stops there
    assert state["status"] == "ERRORED"
    for text in expected:
        assert text in state["error"], state["error"]
    assert (await sm.run_status(run_id))["status"] == "FAILED"


async def test_returning_none_continues_the_branch_with_one_empty_output(db: str) -> None:
    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=RETURN_NODES)):
        sm = StateManager(NAMESPACE)
        run_id = await run_single(sm, "ReturnsNone", ["after"])
    assert (await sm.run_status(run_id))["status"] == "SUCCESS"
    first, after = states_of(db, run_id)
    assert first["status"] == "SUCCESS" and json.loads(first["outputs"]) == {}
    assert after["identifier"] == "after" and after["status"] == "SUCCESS"


async def test_returning_an_empty_list_ends_the_branch(db: str) -> None:
    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=RETURN_NODES)):
        sm = StateManager(NAMESPACE)
        run_id = await run_single(sm, "ReturnsEmpty", ["after"])
    summary = await sm.run_status(run_id)
    assert summary["status"] == "SUCCESS"
    [state] = states_of(db, run_id)
    assert state["identifier"] == "first" and state["status"] == "SUCCESS"


# -- signals -----------------------------------------------------------------------------------


async def test_prune_signal_prunes_the_state_and_keeps_its_data(db: str) -> None:
    class Pruner(BaseNode):
        class Outputs(BaseModel):
            value: str

        async def execute(self) -> Outputs:
            raise PruneSignal({"reason": "nothing to do"})

    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=[Pruner, After])):
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph(
            "g", [gn("Pruner", "prune", {}, ["after"]), gn("After", "after", {"label": "x"})], secrets={}
        )
        run = await sm.trigger("g")
        summary = await sm.wait(run["run_id"], timeout=4)
    assert summary["status"] == "SUCCESS"  # a pruned branch counts as success
    [state] = states_of(db, run["run_id"])
    assert state["status"] == "PRUNED"
    assert (await sm.get_state(state["id"]))["outputs"] == {"reason": "nothing to do"}


async def test_requeue_after_signal_runs_the_state_again_later(db: str) -> None:
    calls: list[float] = []

    class Poller(BaseNode):
        class Outputs(BaseModel):
            attempt: str

        async def execute(self) -> Outputs:
            calls.append(time.monotonic())
            if len(calls) == 1:
                raise ReQueueAfterSignal(timedelta(milliseconds=50))
            return self.Outputs(attempt=str(len(calls)))

    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=[Poller])):
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph("g", [gn("Poller", "poll", {})], secrets={})
        run = await sm.trigger("g")
        assert (await sm.wait(run["run_id"], timeout=4))["status"] == "SUCCESS"
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 0.045
    [state] = states_of(db, run["run_id"])  # the same state ran again: no retry, no new state
    assert state["status"] == "SUCCESS" and state["retry_count"] == 0
    assert json.loads(state["outputs"]) == {"attempt": "2"}


# -- secrets -----------------------------------------------------------------------------------


async def test_a_node_receives_only_the_secrets_it_declares(db: str) -> None:
    class UsesKey(BaseNode):
        class Outputs(BaseModel):
            seen: str

        class Secrets(BaseModel):
            api_key: str

        async def execute(self) -> Outputs:
            return self.Outputs(seen=json.dumps(self.secrets.model_dump()))

    class NoSecrets(BaseNode):
        class Inputs(BaseModel):
            prev: str

        class Outputs(BaseModel):
            seen: str

        async def execute(self) -> Outputs:
            return self.Outputs(seen=json.dumps(self.secrets.model_dump()))

    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=[UsesKey, NoSecrets])):
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph(
            "g",
            [gn("UsesKey", "uses", {}, ["none"]), gn("NoSecrets", "none", {"prev": "${{ uses.outputs.seen }}"})],
            secrets={"api_key": "k-123", "db_password": "pw-456"},
        )
        run = await sm.trigger("g")
        assert (await sm.wait(run["run_id"], timeout=4))["status"] == "SUCCESS"
        outputs = await sm.run_outputs(run["run_id"])
    assert json.loads(outputs["uses"][0]["seen"]) == {"api_key": "k-123"}
    assert json.loads(outputs["none"][0]["seen"]) == {}


# -- leases ------------------------------------------------------------------------------------


async def test_a_node_running_longer_than_the_lease_is_not_expired(db: str) -> None:
    eng = engine(db)
    eng.lease_ms = 300

    class Sleeper(BaseNode):
        class Outputs(BaseModel):
            done: str

        async def execute(self) -> Outputs:
            await asyncio.sleep(1.0)
            return self.Outputs(done="yes")

    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=[Sleeper])):
        sm = StateManager(NAMESPACE)
        await sm.upsert_graph("g", [gn("Sleeper", "sleep", {})], secrets={})
        run = await sm.trigger("g")
        assert (await sm.wait(run["run_id"], timeout=4))["status"] == "SUCCESS"
    [state] = states_of(db, run["run_id"])
    assert state["status"] == "SUCCESS" and state["retry_count"] == 0

    # control: with this lease, a claim that nobody renews does expire
    run = await sm.trigger("g")

    async def claim() -> list:
        await until(lambda: eng.claim(NAMESPACE, ["Sleeper"], 1), timeout=2)
        return []

    run_sync(claim())
    await until(lambda: "RETRY_CREATED" in status_counts(db, run["run_id"]), timeout=2)
    [expired, _retry] = states_of(db, run["run_id"])
    assert "lease expired" in expired["error"]


async def test_prefetched_states_keep_their_leases(tmp_path: Path) -> None:
    """States claimed in a batch and waiting behind a slow node are renewed too: none expire and re-run."""
    from exosphere_nb.client.embedded import get_engine
    from exosphere_nb.loop import run_on_loop

    db = str(tmp_path / "state.duckdb")
    engine = await run_on_loop(get_engine(db))
    engine.lease_ms = 150

    class SlowItem(BaseNode):
        class Inputs(BaseModel):
            item: str

        class Outputs(BaseModel):
            done: str

        async def execute(self) -> Any:
            await asyncio.sleep(0.1)
            return self.Outputs(done=self.inputs.item)

    class Items(BaseNode):
        class Inputs(BaseModel):
            n: str

        class Outputs(BaseModel):
            item: str

        async def execute(self) -> Any:
            return [self.Outputs(item=str(i)) for i in range(int(self.inputs.n))]

    uri = f"duckdb://{db}"
    handle = Runtime("prefetch", "rt", [Items, SlowItem], state_manager_uri=uri, workers=1, batch_size=8).start()
    assert handle is not None
    sm = StateManager("prefetch", state_manager_uri=uri)
    await handle.registered()
    await sm.upsert_graph(
        "g",
        [
            GraphNodeModel(
                node_name="Items", namespace="prefetch", identifier="items", inputs={"n": "6"}, next_nodes=["slow"]
            ),
            GraphNodeModel(
                node_name="SlowItem",
                namespace="prefetch",
                identifier="slow",
                inputs={"item": "${{ items.outputs.item }}"},
            ),
        ],
        secrets={},
    )
    run = await sm.trigger("g")
    summary = await sm.wait(run["run_id"], timeout=30)
    handle.stop()
    assert summary["status"] == "SUCCESS"
    assert summary["nodes"]["slow"] == {"SUCCESS": 6}  # no RETRY_CREATED: nothing expired while queued
