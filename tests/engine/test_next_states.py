"""semantics.md — Next states."""

from __future__ import annotations

from engine_helpers import NS, claim_now, drain, gnode, node_body, register, run_states, statuses, upsert

from exosphere_nb.engine.engine import Engine
from exosphere_nb.models import StoreConfigModel


async def test_next_states_one_per_output_state_per_next_node(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b", "c"]), gnode("b", "${{ a.outputs.y }}"), gnode("c", "k")])
    run_id = engine.trigger(NS, "g")["run_id"]
    await drain(engine, run_id, {"a": lambda s: [{"y": "1"}, {"y": "2"}, {"y": "3"}]})
    assert sorted(s["inputs"]["x"] for s in run_states(engine, run_id, "b")) == ["1", "2", "3"]
    assert [s["inputs"]["x"] for s in run_states(engine, run_id, "c")] == ["k"] * 3


async def test_next_state_inputs_render_from_direct_parent(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    engine.trigger(NS, "g")
    [a] = await claim_now(engine)
    engine.executed(a.id, [{"y": "from-a"}])
    [b] = await claim_now(engine)
    assert b.inputs == {"x": "from-a"}


async def test_next_state_inputs_render_from_ancestor_on_the_same_branch(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [
            gnode("a", "in", ["b"]),
            gnode("b", "${{ a.outputs.y }}", ["c"]),
            gnode("c", "${{ a.outputs.y }}/${{ b.outputs.y }}"),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    status = await drain(
        engine,
        run_id,
        {"a": lambda s: [{"y": "A1"}, {"y": "A2"}], "b": lambda s: [{"y": s.inputs["x"] + ".b"}]},
    )
    assert status == "SUCCESS"
    # each c reads the a output of its own branch, not a sibling's
    assert sorted(s["inputs"]["x"] for s in run_states(engine, run_id, "c")) == ["A1/A1.b", "A2/A2.b"]


async def test_next_state_inputs_render_from_store(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [gnode("a", "in", ["b"]), gnode("b", "${{ store.given }}|${{ store.dflt }}")],
        store_config=StoreConfigModel(required_keys=["given"], default_values={"dflt": "D", "given": "unused"}),
    )
    run_id = engine.trigger(NS, "g", store={"given": "G"})["run_id"]
    await drain(engine, run_id)
    assert run_states(engine, run_id, "b")[0]["inputs"] == {"x": "G|D"}


async def test_next_state_inputs_keep_text_around_placeholders(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [gnode("a", "in", ["b"]), gnode("b", "pre ${{ a.outputs.y }} mid ${{store.k}} post {{ not }} $ {")],
        store_config=StoreConfigModel(default_values={"k": "K"}),
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    await drain(engine, run_id, {"a": lambda s: [{"y": "Y"}]})
    assert run_states(engine, run_id, "b")[0]["inputs"] == {"x": "pre Y mid K post {{ not }} $ {"}


async def test_next_state_inputs_several_fields_and_json_text(engine: Engine) -> None:
    register(engine, node_body("A", inputs=(), outputs=("doc", "n")), node_body("B", inputs=("doc", "n", "both")))
    upsert(
        engine,
        "g",
        [
            gnode("a", node="A", inputs={}, next_nodes=["b"]),
            gnode(
                "b",
                node="B",
                inputs={
                    "doc": "${{ a.outputs.doc }}",
                    "n": "${{ a.outputs.n }}",
                    "both": "${{ a.outputs.n }}:${{ a.outputs.doc }}",
                },
            ),
        ],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    doc = '{"k": [1, 2], "s": "${{ a.outputs.n }}"}'  # a value that looks like a placeholder stays verbatim
    await drain(engine, run_id, {"a": lambda s: [{"doc": doc, "n": "7"}], "b": lambda s: [{}]})
    assert run_states(engine, run_id, "b")[0]["inputs"] == {"doc": doc, "n": "7", "both": "7:" + doc}


async def test_next_state_parents_map(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}", ["c"]), gnode("c", "${{ b.outputs.y }}")],
    )
    run_id = engine.trigger(NS, "g")["run_id"]
    await drain(engine, run_id, {"a": lambda s: [{"y": "1"}, {"y": "2"}], "b": lambda s: [{"y": "p"}, {"y": "q"}]})
    a_ids = [s["state_id"] for s in run_states(engine, run_id, "a")]
    bs = run_states(engine, run_id, "b")
    cs = run_states(engine, run_id, "c")
    assert sorted(b["parents"]["a"] for b in bs) == sorted(a_ids * 2)  # two b states (b and its sibling) per a
    assert all(list(b["parents"]) == ["a"] for b in bs)
    by_id = {b["state_id"]: b for b in bs}
    assert len(cs) == 4
    for c in cs:
        assert list(c["parents"]) == ["a", "b"]  # ancestors in path order: the last is the direct parent
        parent = by_id[c["parents"]["b"]]
        assert c["parents"]["a"] == parent["parents"]["a"]
        assert c["inputs"]["x"] == parent["outputs"]["y"]
    graph = engine.run_graph(run_id)
    assert graph["node_count"] == 2 + 4 + 4
    assert len(graph["root_states"]) == 2  # a and its sibling have no parents
    assert {e["target"] for e in graph["edges"]} == {s["state_id"] for s in bs + cs}


async def test_next_state_build_failure_marks_next_created_error(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "in", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    run_id = engine.trigger(NS, "g")["run_id"]
    status = await drain(engine, run_id, {"a": lambda s: [{"y": "fine"}, {}]})
    assert status == "FAILED"
    states = run_states(engine, run_id, "a")
    assert all(s["status"] == "NEXT_CREATED_ERROR" for s in states)
    assert all("'y'" in s["error"] for s in states)
    assert statuses(engine, run_id, "b") == []
