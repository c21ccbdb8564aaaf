"""semantics.md — Trigger."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from engine_helpers import NS, CommitRecorder, claim_now, claim_within, count, gnode, register, rows, run_states, upsert

from exosphere_nb.engine.engine import Engine
from exosphere_nb.errors import BadRequestError
from exosphere_nb.models import StoreConfigModel


async def test_trigger_root_is_the_single_node_without_incoming_edge(engine: Engine) -> None:
    register(engine)
    # listed out of order: the root is found from the edges, not the position
    upsert(
        engine, "g", [gnode("c", "${{ b.outputs.y }}"), gnode("b", "${{ a.outputs.y }}", ["c"]), gnode("a", "r", ["b"])]
    )
    res = engine.trigger(NS, "g")
    assert res["status"] == "CREATED"
    assert str(uuid.UUID(res["run_id"], version=4)) == res["run_id"]
    await engine.committed()
    [root] = run_states(engine, res["run_id"])
    assert (root["identifier"], root["status"], root["inputs"], root["parents"]) == ("a", "CREATED", {"x": "r"}, {})
    [claimed] = await claim_now(engine)
    assert claimed.node.identifier == "a"


async def test_trigger_root_detection_counts_unites_as_incoming_edge(engine: Engine) -> None:
    register(engine)
    # u has no next_nodes edge into it; its unites edge from a keeps it from being a second root
    upsert(engine, "g", [gnode("u", "${{ b.outputs.y }}", unites="a"), gnode("a", "r", ["b"]), gnode("b")])
    run_id = engine.trigger(NS, "g")["run_id"]
    await engine.committed()
    assert [s["identifier"] for s in run_states(engine, run_id)] == ["a"]


async def test_trigger_root_inputs_overridden_by_trigger_inputs(engine: Engine) -> None:
    register(engine, {**_two_inputs("R")})
    upsert(engine, "g", [gnode("r", node="R", inputs={"x": "template-x", "z": "template-z"})])
    run_id = engine.trigger(NS, "g", inputs={"x": "given-x"})["run_id"]
    await engine.committed()
    [root] = run_states(engine, run_id)
    assert root["inputs"] == {"x": "given-x", "z": "template-z"}
    [s] = await claim_now(engine, ["R"])
    assert s.inputs == {"x": "given-x", "z": "template-z"}


async def test_trigger_root_template_reads_store(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [gnode("r", "k=${{ store.k }}, d=${{ store.d }}!")],
        store_config=StoreConfigModel(required_keys=["k"], default_values={"d": "dflt"}),
    )
    run_id = engine.trigger(NS, "g", store={"k": "given"})["run_id"]
    await engine.committed()
    assert run_states(engine, run_id)[0]["inputs"] == {"x": "k=given, d=dflt!"}
    # a trigger input for the same key still wins over the rendered template
    run2 = engine.trigger(NS, "g", inputs={"x": "over"}, store={"k": "given"})["run_id"]
    await engine.committed()
    assert run_states(engine, run2)[0]["inputs"] == {"x": "over"}


async def test_trigger_store_required_keys_must_be_given(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")], store_config=StoreConfigModel(required_keys=["k1", "k2"]))
    with pytest.raises(BadRequestError, match="k2") as exc:
        engine.trigger(NS, "g", store={"k1": "v"})
    assert exc.value.status_code == 400
    await engine.committed()
    assert count(engine, "select count(*) from runs") == 0
    assert count(engine, "select count(*) from states") == 0
    assert count(engine, "select count(*) from store") == 0


async def test_trigger_store_defaults_fill_the_rest(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [gnode("r")],
        store_config=StoreConfigModel(required_keys=["k"], default_values={"a": "da", "b": "db"}),
    )
    run_id = engine.trigger(NS, "g", store={"k": "vk", "b": "given-b"})["run_id"]
    await engine.committed()
    stored = {r["key"]: r["value"] for r in rows(engine, "select key, value from store where run_id = ?", run_id)}
    assert stored == {"k": "vk", "a": "da", "b": "given-b"}


async def test_trigger_start_delay_delays_first_claim(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")])
    loop = asyncio.get_running_loop()
    started = loop.time()
    run_id = engine.trigger(NS, "g", start_delay=150)["run_id"]
    assert await claim_now(engine) == []
    [root] = run_states(engine, run_id)
    assert root["status"] == "CREATED"
    assert root["enqueue_after_ms"] >= root["updated_ms"] + 150
    await asyncio.sleep(0.05)
    assert await claim_now(engine) == []
    [s] = await claim_within(engine, timeout=2)
    assert loop.time() - started >= 0.14
    assert s.node.identifier == "r"


async def test_trigger_start_delay_must_be_non_negative_int(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")])
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(BadRequestError, match="start_delay"):
            engine.trigger(NS, "g", start_delay=bad)  # type: ignore[arg-type]


async def test_trigger_unknown_input_keys_refused(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")])
    with pytest.raises(BadRequestError, match="nope") as exc:
        engine.trigger(NS, "g", inputs={"x": "ok", "nope": "v"})
    assert exc.value.status_code == 400
    await engine.committed()
    assert count(engine, "select count(*) from runs") == 0
    assert count(engine, "select count(*) from states") == 0


async def test_trigger_non_string_inputs_and_store_refused(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r")])
    with pytest.raises(BadRequestError, match="string"):
        engine.trigger(NS, "g", inputs={"x": 1})  # type: ignore[dict-item]
    with pytest.raises(BadRequestError, match="string"):
        engine.trigger(NS, "g", store={"k": 1})  # type: ignore[dict-item]
    await engine.committed()
    assert count(engine, "select count(*) from runs") == 0


async def test_trigger_of_invalid_graph_refused(engine: Engine) -> None:
    upsert_res = engine.upsert_graph(NS, "g", nodes=[gnode("r")])  # node P not registered yet
    assert upsert_res["validation_status"] == "INVALID"
    with pytest.raises(BadRequestError, match="INVALID"):
        engine.trigger(NS, "g")
    await engine.committed()
    assert count(engine, "select count(*) from runs") == 0


async def test_trigger_writes_run_store_and_root_atomically(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("r", "${{ store.k }}")], store_config=StoreConfigModel(default_values={"k": "v"}))
    await engine.committed()
    recorder = CommitRecorder(engine)
    run_id = engine.trigger(NS, "g")["run_id"]
    # nothing of the run is visible before its commit
    assert count(engine, "select count(*) from runs where run_id = ?", run_id) == 0
    await engine.committed()
    for snap in recorder.snapshots:  # in every commit: all of the trigger's writes, or none
        has_run = run_id in snap["runs"]
        assert ((run_id, "k") in snap["store"]) == has_run
        assert (["r"] if has_run else []) == [ident for ident, _, _ in snap["states"].values()]
    assert run_id in recorder.snapshots[-1]["runs"]


def _two_inputs(name: str) -> dict[str, object]:
    return {
        "name": name,
        "inputs_schema": {"properties": {"x": {"type": "string"}, "z": {"type": "string"}}},
        "outputs_schema": {"properties": {"y": {"type": "string"}}},
        "secrets": [],
    }
