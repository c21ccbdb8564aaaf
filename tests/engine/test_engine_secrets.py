"""semantics.md — Secrets (through the engine; SecretBox itself is covered by test_secrets.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pytest
from engine_helpers import NS, MakeEngine, claim_now, gnode, node_body, register, upsert

from exosphere_nb.engine.engine import Engine
from exosphere_nb.errors import BadRequestError

API_KEY = "sk-live-0123456789-plaintext"
DB_PASSWORD = "correct horse battery staple"
SECRETS = {"api_key": API_KEY, "db_password": DB_PASSWORD}


def _graph(engine: Engine) -> None:
    register(
        engine,
        node_body("Fetch", secrets=("api_key",)),
        node_body("Load", secrets=("api_key", "db_password")),
        node_body("Plain"),
    )
    upsert(
        engine,
        "g",
        [
            gnode("fetch", "1", ["load", "plain"], node="Fetch"),
            gnode("load", "${{ fetch.outputs.y }}", node="Load"),
            gnode("plain", node="Plain"),
        ],
        secrets=SECRETS,
    )


async def test_secrets_stored_encrypted(make_engine: MakeEngine, db_path: Path) -> None:
    engine = await make_engine()
    _graph(engine)
    await engine.committed()
    await engine.close()
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        blobs = con.execute("select name, blob from graph_secrets order by name").fetchall()
        assert [name for name, _ in blobs] == ["api_key", "db_password"]
        for _, blob in blobs:
            assert API_KEY.encode() not in bytes(blob) and DB_PASSWORD.encode() not in bytes(blob)
        # no table anywhere holds the plaintext
        for (table,) in con.execute("select table_name from information_schema.tables").fetchall():
            dump = json.dumps([list(map(str, r)) for r in con.execute(f'select * from "{table}"').fetchall()])
            assert API_KEY not in dump and DB_PASSWORD not in dump, table
    finally:
        con.close()
    raw = db_path.read_bytes()
    assert API_KEY.encode() not in raw and DB_PASSWORD.encode() not in raw
    # and a restarted engine still decrypts them (the key lives beside the database)
    engine = await make_engine()
    engine.trigger(NS, "g")
    [fetch] = await claim_now(engine, ["Fetch"])
    assert engine.get_secrets(fetch.id) == {"secrets": {"api_key": API_KEY}}


async def test_secrets_state_receives_only_its_node_declared_secrets(engine: Engine) -> None:
    _graph(engine)
    engine.trigger(NS, "g")
    [fetch] = await claim_now(engine, ["Fetch"])
    assert engine.get_secrets(fetch.id) == {"secrets": {"api_key": API_KEY}}
    engine.executed(fetch.id, [{"y": "1"}])
    states = {s.node.identifier: s for s in await claim_now(engine, ["Load", "Plain"])}
    assert engine.get_secrets(states["load"].id) == {"secrets": {"api_key": API_KEY, "db_password": DB_PASSWORD}}
    assert engine.get_secrets(states["plain"].id) == {"secrets": {}}


async def test_secrets_never_in_graph_responses(engine: Engine) -> None:
    _graph(engine)
    for response in (engine.get_graph(NS, "g"), engine.list_graphs(NS)):
        text = json.dumps(response)
        assert API_KEY not in text and DB_PASSWORD not in text
    assert engine.get_graph(NS, "g")["secrets"] == {"api_key": True, "db_password": True}
    [template] = engine.list_graphs(NS)["templates"]
    assert template["secrets"] == {"api_key": True, "db_password": True}
    assert "blob" not in json.dumps(template).lower()


async def test_secrets_never_in_sql_views(engine: Engine) -> None:
    _graph(engine)
    await engine.committed()
    for view in ("graphs", "nodes", "runs", "states", "store", "triggers"):
        _cols, data = engine.store.query(f"select * from {view}")
        text = json.dumps([[str(v) for v in r] for r in data])
        assert API_KEY not in text and DB_PASSWORD not in text, view
    with pytest.raises(BadRequestError, match="graph_secrets"):
        engine.store.query("select * from graph_secrets")


async def test_secrets_never_in_logs(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        _graph(engine)
        engine.trigger(NS, "g")
        [fetch] = await claim_now(engine, ["Fetch"])
        engine.get_secrets(fetch.id)
        engine.errored(fetch.id, "boom")
        await engine.committed()
    assert API_KEY not in caplog.text and DB_PASSWORD not in caplog.text


async def test_secrets_replaced_on_upsert(engine: Engine) -> None:
    _graph(engine)
    engine.upsert_graph(
        NS,
        "g",
        nodes=[gnode("fetch", node="Fetch")],
        secrets={"api_key": "rotated"},
    )
    engine.trigger(NS, "g")
    [fetch] = await claim_now(engine, ["Fetch"])
    assert engine.get_secrets(fetch.id) == {"secrets": {"api_key": "rotated"}}
    await engine.committed()
    assert engine.store.query("select secret_names from graphs")[1] == [('["api_key"]',)]
