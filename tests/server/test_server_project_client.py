"""This project's own Runtime and StateManager, pointed at the server over HTTP, use its extensions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel
from server_helpers import KEY, LiveServer

from exosphere_nb import BaseNode, GraphNodeModel, Runtime, StateManager, StoreConfigModel, UnitesModel
from exosphere_nb.server.app import create_app

NS = "remote"


class Split(BaseNode):
    class Inputs(BaseModel):
        n: str

    class Outputs(BaseModel):
        part: str

    class Secrets(BaseModel):
        token: str

    async def execute(self) -> list[Outputs]:
        if self.secrets.token != "tok":
            raise RuntimeError("bad token")
        return [self.Outputs(part=str(i)) for i in range(int(self.inputs.n))]


class SlowSquare(BaseNode):
    class Inputs(BaseModel):
        part: str

    class Outputs(BaseModel):
        sq: str

    async def execute(self) -> Outputs:
        await asyncio.sleep(1.2)  # longer than the lease: only heartbeats keep the claim
        return self.Outputs(sq=str(int(self.inputs.part) ** 2))


class Total(BaseNode):
    class Inputs(BaseModel):
        sqs: str

    class Outputs(BaseModel):
        total: str

    async def execute(self) -> Outputs:
        return self.Outputs(total=str(sum(int(x) for x in json.loads(self.inputs.sqs))))


@pytest.fixture
def short_lease_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(create_app(tmp_path / "remote.duckdb", api_key=KEY, lease_ms=500)).start()
    yield server
    server.stop()


async def test_runtime_and_state_manager_over_http(short_lease_server: LiveServer) -> None:
    url = short_lease_server.url
    runtime = Runtime(NS, "remote-rt", [Split, SlowSquare, Total], state_manager_uri=url, key=KEY, workers=8)
    handle = runtime.start()
    try:
        sm = StateManager(NS, state_manager_uri=url, key=KEY)
        nodes = [
            GraphNodeModel(
                node_name="Split", namespace=NS, identifier="split", inputs={"n": "${{ store.n }}"}, next_nodes=["sq"]
            ),
            GraphNodeModel(
                node_name="SlowSquare",
                namespace=NS,
                identifier="sq",
                inputs={"part": "${{ split.outputs.part }}"},
                next_nodes=["total"],
            ),
            GraphNodeModel(
                node_name="Total",
                namespace=NS,
                identifier="total",
                inputs={"sqs": "${{ sq.outputs.sq }}"},
                unites=UnitesModel(identifier="split"),
            ),
        ]
        for _ in range(100):  # the runtime registers its nodes in the background
            if len(await sm.list_nodes()) == 3:
                break
            await asyncio.sleep(0.05)
        graph = await sm.upsert_graph(
            "squares", nodes, {"token": "tok"}, store_config=StoreConfigModel(required_keys=["n"])
        )
        assert graph["validation_status"] == "VALID"
        run = await sm.trigger("squares", store={"n": "6"})
        summary = await sm.wait(run["run_id"], timeout=60)
        assert summary["status"] == "SUCCESS", summary
        assert summary["counts"]["RETRY_CREATED"] == 0  # heartbeats kept every claim alive
        outputs = await sm.run_outputs(run["run_id"])
        assert outputs["total"] == [{"total": str(sum(i * i for i in range(6)))}]
        runs = await sm.list_runs(status="SUCCESS")
        assert [r["run_id"] for r in runs["runs"]] == [run["run_id"]]
    finally:
        handle.stop()  # type: ignore[union-attr]
