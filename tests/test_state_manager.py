"""StateManager on the embedded default: graphs, triggers, and looking at runs (the notebook surface)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel
from sdk_helpers import NAMESPACE, close_db, gn, registered, running, use_db

from exosphere_nb import (
    BadRequestError,
    BaseNode,
    ConflictError,
    GraphValidationError,
    NotFoundError,
    RetryPolicyModel,
    Runtime,
    StateManager,
    StateTransitionError,
    StoreConfigModel,
    UnitesModel,
)

NO_RETRY = RetryPolicyModel(max_retries=0)
FLAKY = {"fail": True}


class Hello(BaseNode):
    class Inputs(BaseModel):
        name: str

    class Outputs(BaseModel):
        message: str

    class Secrets(BaseModel):
        api_key: str

    async def execute(self) -> Outputs:
        return self.Outputs(message=f"hello {self.inputs.name}")


class Split(BaseNode):
    class Inputs(BaseModel):
        n: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=str(i)) for i in range(int(self.inputs.n))]


class Echo(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        return self.Outputs(text=self.inputs.text)


class Flaky(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> Outputs:
        if FLAKY["fail"]:
            raise RuntimeError(f"not yet: {self.inputs.item}")
        return self.Outputs(item=self.inputs.item)


NODES = [Hello, Split, Echo, Flaky]
SECRETS = {"api_key": "k-123"}


def hello_graph(name: str = "x") -> list:
    return [
        gn("Hello", "hello", {"name": name}, ["echo"]),
        gn("Echo", "echo", {"text": "${{ hello.outputs.message }}"}),
    ]


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    path = use_db(monkeypatch, tmp_path)
    yield path
    close_db(path)


@pytest.fixture
async def sm(db: str) -> AsyncIterator[StateManager]:
    FLAKY["fail"] = True
    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=NODES)):
        manager = StateManager(NAMESPACE)
        await registered(manager, *(n.__name__ for n in NODES))
        yield manager


async def finished(sm: StateManager, graph: str, **kw: object) -> str:
    run = await sm.trigger(graph, **kw)  # type: ignore[arg-type]
    await sm.wait(run["run_id"], timeout=4)
    return run["run_id"]


# -- graphs ------------------------------------------------------------------------------------


async def test_upsert_graph_returns_the_valid_graph(sm: StateManager) -> None:
    graph = await sm.upsert_graph("hello", hello_graph(), secrets=SECRETS)
    assert graph["validation_status"] == "VALID"
    assert graph["validation_errors"] == []
    assert graph["name"] == "hello"
    assert [n["identifier"] for n in graph["nodes"]] == ["hello", "echo"]
    assert graph["secrets"] == {"api_key": True}  # names only, never values
    assert await sm.get_graph("hello") == graph
    assert [g["name"] for g in await sm.list_graphs()] == ["hello"]
    assert "k-123" not in json.dumps(await sm.list_graphs())


async def test_a_graph_of_unregistered_nodes_is_invalid_with_every_error_listed(sm: StateManager) -> None:
    with pytest.raises(GraphValidationError) as info:
        await sm.upsert_graph(
            "bad",
            [gn("Helo", "a", {"name": "x"}, ["b"]), gn("Nowhere", "b", {})],
            secrets=SECRETS,
        )
    errors = info.value.errors
    assert len(errors) >= 2, errors
    assert any("Helo" in e and "Hello" in e for e in errors), errors  # the typo, with a suggestion
    assert any("Nowhere" in e for e in errors), errors
    stored = await sm.get_graph("bad")  # an INVALID graph is kept, to be fixed or revalidated
    assert stored["validation_status"] == "INVALID"
    with pytest.raises(BadRequestError):
        await sm.trigger("bad")


async def test_a_graph_missing_a_declared_secret_is_invalid(sm: StateManager) -> None:
    with pytest.raises(GraphValidationError) as info:
        await sm.upsert_graph("nosecret", hello_graph(), secrets={})
    assert any("api_key" in e for e in info.value.errors), info.value.errors


async def test_registering_nodes_revalidates_invalid_graphs(db: str) -> None:
    manager = StateManager(NAMESPACE)
    with pytest.raises(GraphValidationError):
        await manager.upsert_graph("early", hello_graph(), secrets=SECRETS)
    assert (await manager.get_graph("early"))["validation_status"] == "INVALID"
    with running(Runtime(namespace=NAMESPACE, name="rt", nodes=NODES)):
        await registered(manager, "Hello", "Echo")
        assert (await manager.get_graph("early"))["validation_status"] == "VALID"
        run = await manager.trigger("early")
        assert (await manager.wait(run["run_id"], timeout=4))["status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("nodes", "store_config", "expected"),
    [
        ([gn("Echo", "a", {"text": "x"}, ["ghost"])], None, "ghost"),
        (
            [gn("Echo", "a", {"text": "x"}, ["b"]), gn("Echo", "b", {"text": "x"}, ["a"])],
            None,
            "",
        ),
        ([gn("Echo", "a", {"text": "x"}), gn("Echo", "b", {"text": "x"})], None, "root"),
        ([gn("Echo", "a", {"text": "${{ store.missing }}"})], StoreConfigModel(), "missing"),
        ([gn("Echo", "a", {"text": "${{ nowhere.outputs.text }}"})], None, "nowhere"),
        ([gn("Echo", "a", {"text": "${{ broken"})], None, ""),
        ([gn("Echo", "a", {"text": "x"}), gn("Echo", "a", {"text": "y"})], None, "a"),
        ([gn("Echo", "a", {"text": "x"}, unites=UnitesModel(identifier="a"))], None, "a"),
    ],
    ids=["unknown-next", "cycle", "two-roots", "store-key", "unknown-ref", "bad-placeholder", "dup-id", "self-unite"],
)
async def test_a_malformed_graph_is_refused_and_nothing_is_stored(
    sm: StateManager, nodes: list, store_config: StoreConfigModel | None, expected: str
) -> None:
    with pytest.raises(GraphValidationError) as info:
        await sm.upsert_graph("malformed", nodes, secrets={}, store_config=store_config)
    assert info.value.errors
    assert expected in str(info.value)
    assert await sm.list_graphs() == []
    with pytest.raises(NotFoundError):
        await sm.get_graph("malformed")


# -- triggers ----------------------------------------------------------------------------------


async def test_triggering_an_unknown_graph_is_not_found(sm: StateManager) -> None:
    await sm.upsert_graph("hello", hello_graph(), secrets=SECRETS)
    with pytest.raises(NotFoundError) as info:
        await sm.trigger("helo")
    assert "hello" in str(info.value)  # did you mean


async def test_a_missing_required_store_key_is_a_bad_request(sm: StateManager) -> None:
    await sm.upsert_graph(
        "stored",
        [gn("Echo", "echo", {"text": "${{ store.cursor }}"})],
        secrets={},
        store_config=StoreConfigModel(required_keys=["cursor"]),
    )
    with pytest.raises(BadRequestError) as info:
        await sm.trigger("stored")
    assert "cursor" in str(info.value)
    run_id = await finished(sm, "stored", store={"cursor": "7"})
    assert (await sm.run_outputs(run_id))["echo"] == [{"text": "7"}]


async def test_trigger_inputs_override_the_template_and_unknown_inputs_are_refused(sm: StateManager) -> None:
    await sm.upsert_graph("hello", hello_graph("template"), secrets=SECRETS)
    run_id = await finished(sm, "hello", inputs={"name": "given"})
    assert (await sm.run_outputs(run_id))["echo"] == [{"text": "hello given"}]
    run_id = await finished(sm, "hello")
    assert (await sm.run_outputs(run_id))["echo"] == [{"text": "hello template"}]
    with pytest.raises(BadRequestError):
        await sm.trigger("hello", inputs={"nmae": "typo"})


# -- looking at runs -----------------------------------------------------------------------------


async def test_list_runs_filters_by_graph_status_and_time(sm: StateManager) -> None:
    await sm.upsert_graph("g1", hello_graph(), secrets=SECRETS)
    await sm.upsert_graph("g2", hello_graph(), secrets=SECRETS)
    await sm.upsert_graph("bad", [gn("Flaky", "flaky", {"item": "x"})], secrets={}, retry_policy=NO_RETRY)
    a = await finished(sm, "g1")
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)
    b = await finished(sm, "g1")
    c = await finished(sm, "g2")
    d = await finished(sm, "bad")

    def ids(page: dict) -> set[str]:
        return {r["run_id"] for r in page["runs"]}

    everything = await sm.list_runs()
    assert everything["total"] == 4
    assert [r["run_id"] for r in everything["runs"]] == [d, c, b, a]  # newest first
    assert ids(await sm.list_runs(graph_name="g1")) == {a, b}
    assert ids(await sm.list_runs(status="FAILED")) == {d}
    assert ids(await sm.list_runs(status="SUCCESS")) == {a, b, c}
    assert ids(await sm.list_runs(since=middle)) == {b, c, d}
    assert ids(await sm.list_runs(until=middle)) == {a}
    assert ids(await sm.list_runs(since=int(middle.timestamp() * 1000))) == {b, c, d}
    assert ids(await sm.list_runs(graph_name="g1", since=middle)) == {b}
    page = await sm.list_runs(page=2, size=3)
    assert page["total"] == 4 and [r["run_id"] for r in page["runs"]] == [a]
    row = next(r for r in everything["runs"] if r["run_id"] == d)
    assert row["status"] == "FAILED" and row["errored_count"] == 1 and row["graph_name"] == "bad"


async def test_wait_returns_the_run_summary(sm: StateManager) -> None:
    await sm.upsert_graph("hello", hello_graph(), secrets=SECRETS)
    run = await sm.trigger("hello")
    summary = await sm.wait(run["run_id"], timeout=4)
    assert summary["run_id"] == run["run_id"]
    assert summary["graph_name"] == "hello"
    assert summary["status"] == "SUCCESS"
    assert summary["counts"]["SUCCESS"] == 2
    assert summary["nodes"] == {"hello": {"SUCCESS": 1}, "echo": {"SUCCESS": 1}}
    assert await sm.wait(run["run_id"], timeout=1) == summary  # a finished run returns at once


async def test_run_outputs_are_in_branch_order(sm: StateManager) -> None:
    await sm.upsert_graph(
        "fan",
        [gn("Split", "split", {"n": "5"}, ["echo"]), gn("Echo", "echo", {"text": "${{ split.outputs.item }}"})],
        secrets={},
    )
    run_id = await finished(sm, "fan")
    outputs = await sm.run_outputs(run_id)
    assert outputs["split"] == [{"item": str(i)} for i in range(5)]
    assert outputs["echo"] == [{"text": str(i)} for i in range(5)]


async def test_get_state(sm: StateManager) -> None:
    await sm.upsert_graph("hello", hello_graph("ada"), secrets=SECRETS)
    run_id = await finished(sm, "hello")
    graph = await sm.run_graph(run_id)
    by_ident = {n["identifier"]: n["id"] for n in graph["nodes"]}
    echo = await sm.get_state(by_ident["echo"])
    assert echo["run_id"] == run_id and echo["graph_name"] == "hello"
    assert echo["node_name"] == "Echo" and echo["status"] == "SUCCESS"
    assert echo["inputs"] == {"text": "hello ada"}
    assert echo["outputs"] == {"text": "hello ada"}
    assert echo["parents"] == {"hello": by_ident["hello"]}
    assert echo["retry_count"] == 0 and echo["error"] is None
    assert echo["created_at"] and echo["updated_at"]
    assert "k-123" not in json.dumps(await sm.get_state(by_ident["hello"]))
    with pytest.raises(NotFoundError):
        await sm.get_state("0" * 24)


async def test_retry_state(sm: StateManager) -> None:
    await sm.upsert_graph("flaky", [gn("Flaky", "flaky", {"item": "x"})], secrets={}, retry_policy=NO_RETRY)
    run_id = await finished(sm, "flaky")
    [failed] = (await sm.run_graph(run_id))["nodes"]
    assert failed["status"] == "ERRORED" and "not yet: x" in failed["error"]

    FLAKY["fail"] = False
    retried = await sm.retry_state(failed["id"], fanout_id="attempt-2")
    assert retried["id"] != failed["id"]
    summary = await sm.wait(run_id, timeout=4)
    assert summary["status"] == "SUCCESS"
    assert (await sm.get_state(failed["id"]))["status"] == "RETRY_CREATED"
    new = await sm.get_state(retried["id"])
    assert new["status"] == "SUCCESS" and new["outputs"] == {"item": "x"} and new["fanout_id"] == "attempt-2"

    with pytest.raises(ConflictError):
        await sm.retry_state(failed["id"], fanout_id="attempt-2")
    with pytest.raises(StateTransitionError):  # a SUCCESS state is not retried (400)
        await sm.retry_state(retried["id"])


async def test_cancel_run(sm: StateManager) -> None:
    await sm.upsert_graph("hello", hello_graph(), secrets=SECRETS)
    run = await sm.trigger("hello", start_delay=60_000)
    assert (await sm.run_status(run["run_id"]))["status"] == "PENDING"
    res = await sm.cancel_run(run["run_id"])
    assert res["cancelled_count"] == 1 and res["status"] == "CANCELLED"
    summary = await sm.wait(run["run_id"], timeout=2)
    assert summary["status"] == "CANCELLED" and summary["counts"]["CANCELLED"] == 1
    assert {r["run_id"] for r in (await sm.list_runs(status="CANCELLED"))["runs"]} == {run["run_id"]}
    with pytest.raises(NotFoundError):
        await sm.cancel_run("no-such-run")


async def test_retry_failed_retries_every_failed_state(sm: StateManager) -> None:
    await sm.upsert_graph(
        "fan",
        [gn("Split", "split", {"n": "3"}, ["flaky"]), gn("Flaky", "flaky", {"item": "${{ split.outputs.item }}"})],
        secrets={},
        retry_policy=NO_RETRY,
    )
    run_id = await finished(sm, "fan")
    assert (await sm.run_status(run_id))["nodes"]["flaky"] == {"ERRORED": 3}

    FLAKY["fail"] = False
    new_ids = await sm.retry_failed(run_id)
    assert len(new_ids) == 3
    summary = await sm.wait(run_id, timeout=4)
    assert summary["status"] == "SUCCESS"
    assert summary["nodes"]["flaky"] == {"RETRY_CREATED": 3, "SUCCESS": 3}
    assert (await sm.run_outputs(run_id))["flaky"] == [{"item": str(i)} for i in range(3)]
    assert await sm.retry_failed(run_id) == []
