"""semantics.md — Graph validation: immediate, and against registered nodes."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import NS, count, gnode, node_body, register, upsert

from exosphere_nb.engine.engine import Engine
from exosphere_nb.errors import BadRequestError, GraphValidationError
from exosphere_nb.models import StoreConfigModel


async def _refused(engine: Engine, nodes: list[Any], *fragments: str, **kw: Any) -> GraphValidationError:
    """The upsert raises GraphValidationError naming every fragment, and nothing reaches the database."""
    with pytest.raises(GraphValidationError) as exc:
        engine.upsert_graph(NS, "g", nodes=nodes, **kw)
    err = exc.value
    assert err.status_code == 400
    text = str(err)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    await engine.committed()
    assert count(engine, "select count(*) from graphs") == 0
    assert count(engine, "select count(*) from triggers") == 0
    with pytest.raises(Exception, match="not found"):
        engine.get_graph(NS, "g")
    return err


# -- immediate ------------------------------------------------------------------------------------


async def test_graph_validation_identifiers_unique(engine: Engine) -> None:
    err = await _refused(engine, [gnode("a", "1", ["b"]), gnode("b"), gnode("b")], "identifier 'b'", "unique")
    assert err.errors == ["identifier 'b' is used by 2 nodes; identifiers must be unique"]


async def test_graph_validation_next_nodes_exist(engine: Engine) -> None:
    await _refused(engine, [gnode("fetch", "1", ["parse"]), gnode("parser")], "'parse'", "does not exist", "'parser'")


async def test_graph_validation_unites_target_exists(engine: Engine) -> None:
    await _refused(
        engine,
        [gnode("fetch", "1", ["b"]), gnode("b"), gnode("u", unites="fetc")],
        "unites target 'fetc' does not exist",
        "did you mean 'fetch'",
    )


async def test_graph_validation_node_cannot_unite_itself(engine: Engine) -> None:
    await _refused(engine, [gnode("a", "1", ["u"]), gnode("u", unites="u")], "'u'", "cannot unite itself")


async def test_graph_validation_exactly_one_root(engine: Engine) -> None:
    err = await _refused(engine, [gnode("a", "1", ["c"]), gnode("b", "1", ["c"]), gnode("c")], "exactly one root")
    assert "'a'" in str(err) and "'b'" in str(err)


async def test_graph_validation_no_root_in_a_cycle(engine: Engine) -> None:
    await _refused(engine, [gnode("a", "1", ["b"]), gnode("b", "1", ["a"])], "cycle", "a -> b -> a")


async def test_graph_validation_no_cycles(engine: Engine) -> None:
    await _refused(
        engine,
        [gnode("r", "1", ["a"]), gnode("a", "1", ["b"]), gnode("b", "1", ["c"]), gnode("c", "1", ["a"])],
        "cycle",
        "a -> b -> c -> a",
    )


async def test_graph_validation_every_node_reachable_from_root(engine: Engine) -> None:
    await _refused(
        engine,
        [gnode("r", "1", ["a"]), gnode("a"), gnode("x", "1", ["y"]), gnode("y", "1", ["x"])],
        "not reachable from the root 'r'",
        "'x'",
        "'y'",
    )


async def test_graph_validation_inputs_are_strings(engine: Engine) -> None:
    await _refused(engine, [gnode("a", inputs={"x": 5})], "node 'a' input 'x'", "must be a string")


async def test_graph_validation_placeholders_parse(engine: Engine) -> None:
    for value, fragment in [
        ("${{ a.outputs }}", "bad placeholder"),
        ("${{ a.outputs.y ", "unterminated placeholder"),
        ("${{ }}", "empty placeholder"),
        ("${{ store.outputs.y }}", "'store' is the run store"),
        ("${{ a.inputs.x }}", "bad placeholder"),
    ]:
        await _refused(engine, [gnode("a", "1", ["b"]), gnode("b", value)], "node 'b' input 'x'", fragment)


async def test_graph_validation_placeholders_name_ancestors(engine: Engine) -> None:
    await _refused(
        engine,
        [gnode("a", "1", ["b", "c"]), gnode("b", "${{ c.outputs.y }}"), gnode("c")],
        "node 'b' input 'x'",
        "'c', which is not an ancestor of 'b'",
    )


async def test_graph_validation_placeholder_cannot_name_a_descendant(engine: Engine) -> None:
    await _refused(
        engine,
        [gnode("a", "${{ b.outputs.y }}", ["b"]), gnode("b")],
        "'b', which is not an ancestor of 'a'",
    )


async def test_graph_validation_placeholder_must_name_ancestor_on_every_path(engine: Engine) -> None:
    # d runs after b and after c: on the c path, b is no ancestor
    await _refused(
        engine,
        [
            gnode("a", "1", ["b", "c"]),
            gnode("b", "1", ["d"]),
            gnode("c", "1", ["d"]),
            gnode("d", "${{ b.outputs.y }}"),
        ],
        "'b', which is not an ancestor of 'd'",
    )


async def test_graph_validation_placeholder_typo_suggests_closest(engine: Engine) -> None:
    await _refused(
        engine,
        [gnode("fetch", "1", ["parse"]), gnode("parse", "${{ fetc.outputs.y }}")],
        "'fetc'",
        "did you mean 'fetch'",
    )


async def test_graph_validation_unite_may_name_nodes_allowed_above(engine: Engine) -> None:
    register(engine)
    res = upsert(
        engine,
        "g",
        [
            gnode("r", "1", ["t"]),
            gnode("t", "${{ r.outputs.y }}", ["b"]),
            gnode("b", "${{ t.outputs.y }}", ["c"]),
            gnode("c", "${{ b.outputs.y }}"),
            gnode("u", "${{ r.outputs.y }} ${{ t.outputs.y }} ${{ b.outputs.y }} ${{ c.outputs.y }}", unites="t"),
        ],
    )
    assert res["validation_errors"] == []


async def test_graph_validation_unite_cannot_name_nodes_outside_its_group(engine: Engine) -> None:
    # s is a sibling branch of t under r: neither an ancestor of t nor between t and u
    await _refused(
        engine,
        [
            gnode("r", "1", ["t", "s"]),
            gnode("t", "1", ["b"]),
            gnode("b"),
            gnode("s"),
            gnode("u", "${{ s.outputs.y }}", unites="t"),
        ],
        "node 'u' input 'x'",
        "'s'",
    )


async def test_graph_validation_unite_cannot_name_nodes_below_itself(engine: Engine) -> None:
    await _refused(
        engine,
        [gnode("t", "1", ["b"]), gnode("b"), gnode("u", "${{ d.outputs.y }}", ["d"], unites="t"), gnode("d")],
        "node 'u' input 'x'",
        "'d'",
    )


async def test_graph_validation_store_keys_required_or_defaulted(engine: Engine) -> None:
    await _refused(
        engine,
        [gnode("a", "${{ store.k }} ${{ store.req }} ${{ store.dflt }}")],
        "store key 'k'",
        store_config=StoreConfigModel(required_keys=["req"], default_values={"dflt": "d"}),
    )


async def test_graph_validation_store_keys_ok_when_declared(engine: Engine) -> None:
    register(engine)
    upsert(
        engine,
        "g",
        [gnode("a", "${{ store.req }} ${{ store.dflt }}")],
        store_config=StoreConfigModel(required_keys=["req"], default_values={"dflt": "d"}),
    )


async def test_graph_validation_cron_expressions_parse(engine: Engine) -> None:
    for trigger, fragment in [
        ({"type": "CRON", "value": {"expression": "not a cron"}}, "invalid cron expression"),
        ({"type": "CRON", "value": {"expression": "* * * *"}}, "5 fields"),
        ({"type": "CRON", "value": {"expression": "0 0 30 2 *"}}, "never fires"),
        ({"type": "WEBHOOK", "value": {}}, "unknown trigger type"),
    ]:
        await _refused(engine, [gnode("a")], "triggers[0]", fragment, triggers=[trigger])


async def test_graph_validation_reserved_store_identifier_and_bad_bodies(engine: Engine) -> None:
    await _refused(
        engine,
        [
            {"node_name": "P", "namespace": NS, "identifier": "store", "inputs": {}},
            {"node_name": " ", "namespace": NS, "identifier": "b", "inputs": {}},
        ],
        "nodes[0]",
        "reserved word 'store'",
        "nodes[1]",
    )


async def test_graph_validation_bad_retry_policy_and_store_config(engine: Engine) -> None:
    await _refused(
        engine,
        [gnode("a")],
        "retry_policy",
        "store_config",
        retry_policy={"max_retries": -1},
        store_config={"required_keys": ["a.b"]},
    )


async def test_graph_validation_empty_graph(engine: Engine) -> None:
    await _refused(engine, [], "no nodes")


async def test_graph_validation_lists_every_problem(engine: Engine) -> None:
    err = await _refused(
        engine,
        [gnode("a", "1", ["nope"]), gnode("b", unites="zzz"), gnode("a")],
        "identifier 'a'",
        "'nope'",
        "'zzz'",
    )
    assert len(err.errors) == 3


async def test_graph_validation_failure_leaves_existing_graph_unchanged(engine: Engine) -> None:
    register(engine)
    before = upsert(engine, "g", [gnode("a", "v1")])
    await engine.committed()
    with pytest.raises(GraphValidationError):
        engine.upsert_graph(NS, "g", nodes=[gnode("a", "v2", ["missing"])])
    await engine.committed()
    assert engine.get_graph(NS, "g") == before
    [(nodes,)] = engine.store.query("select nodes from graphs")[1]
    assert '"v1"' in nodes and '"v2"' not in nodes


# -- against registered nodes ---------------------------------------------------------------------


async def test_graph_invalid_when_node_not_registered(engine: Engine) -> None:
    res = engine.upsert_graph(NS, "g", nodes=[gnode("a", node="Fetcher")])
    assert res["validation_status"] == "INVALID"
    assert res["validation_errors"] == ["node 'a': node 'Fetcher' is not registered in namespace 'ns'"]
    await engine.committed()
    assert engine.store.query("select validation_status from graphs")[1] == [("INVALID",)]
    with pytest.raises(BadRequestError, match="not registered"):
        engine.trigger(NS, "g")


async def test_graph_invalid_node_registered_in_another_namespace(engine: Engine) -> None:
    register(engine, node_body("Fetcher"), namespace="elsewhere")
    res = engine.upsert_graph(NS, "g", nodes=[gnode("a", node="Fetcher")])
    assert res["validation_status"] == "INVALID"
    assert "'Fetcher' is not registered in namespace 'ns'" in res["validation_errors"][0]


async def test_graph_invalid_lists_every_error(engine: Engine) -> None:
    register(
        engine,
        node_body("Fetch", inputs=("url", "depth"), outputs=("body",), secrets=("token",)),
        node_body("Parse", inputs=("text",), outputs=("items",)),
    )
    res = engine.upsert_graph(
        NS,
        "g",
        nodes=[
            gnode("fetch", node="Fetch", inputs={"url": "u", "extra": "e"}, next_nodes=["parse", "store_it"]),
            gnode("parse", node="Parse", inputs={"text": "${{ fetch.outputs.bodyy }}"}),
            gnode("store_it", node="Store", inputs={}),
        ],
    )
    assert res["validation_status"] == "INVALID"
    errors = res["validation_errors"]
    expected = [
        "node 'fetch': input 'depth' of Fetch has no value in the graph",
        "node 'fetch': 'extra' is not an input of Fetch",
        "node 'fetch': secret 'token' declared by Fetch is not among the graph's secrets",
        "node 'parse' input 'text'",  # the referenced output field does not exist
        "node 'store_it': node 'Store' is not registered",
    ]
    for fragment in expected:
        assert any(fragment in e for e in errors), f"{fragment!r} not in {errors}"
    assert len(errors) == len(expected)
    [bad_ref] = [e for e in errors if "node 'parse'" in e]
    assert "'bodyy'" in bad_ref and "did you mean 'body'" in bad_ref


async def test_graph_invalid_suggests_closest_name_for_typos(engine: Engine) -> None:
    register(engine, node_body("Fetcher", inputs=("url",)))
    res = engine.upsert_graph(NS, "g", nodes=[gnode("a", node="Fetchr", inputs={"url": "u"})])
    assert "did you mean 'Fetcher'" in res["validation_errors"][0]
    res = engine.upsert_graph(NS, "g", nodes=[gnode("a", node="Fetcher", inputs={"ulr": "u"})])
    assert any("'ulr'" in e and "did you mean 'url'" in e for e in res["validation_errors"])


async def test_graph_invalid_secret_not_provided(engine: Engine) -> None:
    register(engine, node_body("S", secrets=("api_key",)))
    res = engine.upsert_graph(NS, "g", nodes=[gnode("a", node="S")], secrets={"other": "v"})
    assert res["validation_status"] == "INVALID"
    assert any("'api_key'" in e and "node 'a'" in e for e in res["validation_errors"])
    res = engine.upsert_graph(NS, "g", nodes=[gnode("a", node="S")], secrets={"api_key": "v"})
    assert res["validation_status"] == "VALID"


async def test_registering_nodes_later_revalidates_to_valid(engine: Engine) -> None:
    res = engine.upsert_graph(NS, "g", nodes=[gnode("a", "1", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    assert res["validation_status"] == "INVALID"
    assert len(res["validation_errors"]) == 2  # both nodes unregistered
    register(engine)
    assert engine.get_graph(NS, "g")["validation_status"] == "VALID"
    assert engine.get_graph(NS, "g")["validation_errors"] == []
    await engine.committed()
    assert engine.store.query("select validation_status, validation_errors from graphs")[1] == [("VALID", "[]")]
    run_id = engine.trigger(NS, "g")["run_id"]
    assert run_id


async def test_registering_nodes_revalidates_only_as_far_as_fixed(engine: Engine) -> None:
    engine.upsert_graph(NS, "g", nodes=[gnode("a", "1", ["b"], node="A"), gnode("b", node="B")])
    register(engine, node_body("A"))
    rec = engine.get_graph(NS, "g")
    assert rec["validation_status"] == "INVALID"
    assert rec["validation_errors"] == ["node 'b': node 'B' is not registered in namespace 'ns'"]
    register(engine, node_body("B"))
    assert engine.get_graph(NS, "g")["validation_status"] == "VALID"


async def test_registering_changed_nodes_revalidates_valid_graphs(engine: Engine) -> None:
    register(engine)
    upsert(engine, "g", [gnode("a", "1", ["b"]), gnode("b", "${{ a.outputs.y }}")])
    register(engine, node_body("P", outputs=("z",)))  # y no longer exists
    rec = engine.get_graph(NS, "g")
    assert rec["validation_status"] == "INVALID"
    assert any("'y'" in e for e in rec["validation_errors"])


async def test_registering_nodes_refuses_non_string_fields(engine: Engine) -> None:
    body = node_body("P")
    body["outputs_schema"]["properties"]["n"] = {"type": "integer"}
    with pytest.raises(BadRequestError, match="'n'"):
        engine.register_nodes(NS, "rt", [body])
    assert engine.list_nodes(NS)["count"] == 0


async def test_graph_response_shape(engine: Engine) -> None:
    register(engine)
    res = upsert(
        engine,
        "g",
        [gnode("a")],
        secrets={"k": "v"},
        store_config=StoreConfigModel(required_keys=["r"], default_values={"d": "1"}),
        triggers=[{"type": "CRON", "value": {"expression": "0  9 * * 1-5"}}],
    )
    assert set(res) >= {
        "nodes",
        "secrets",
        "retry_policy",
        "store_config",
        "triggers",
        "created_at",
        "updated_at",
        "validation_status",
        "validation_errors",
    }
    assert res["secrets"] == {"k": True}
    assert res["retry_policy"]["max_retries"] == 0  # the stored policy, not the defaults
    assert res["store_config"] == {"required_keys": ["r"], "default_values": {"d": "1"}}
    assert res["triggers"] == [{"type": "CRON", "value": {"expression": "0 9 * * 1-5"}}]
    assert engine.get_graph(NS, "g") == res
