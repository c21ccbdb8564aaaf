"""The official SDK documentation's examples, with only `from exospherehost import ...` changed.

Each example runs end to end on the embedded default: no URI, no key, the database under the
working directory (`.exosphere/state.duckdb`, here a fresh temporary directory per test). Where
the upstream pages show only a fragment (graph nodes without node classes), the node classes are
written the way the register-node page teaches; the calls themselves are as documented.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel
from sdk_helpers import DB_ENV, KEY_ENV, URI_ENV, close_db

from exosphere_nb import (
    BaseNode,
    CronTrigger,
    GraphNodeModel,
    RetryPolicyModel,
    RetryStrategyEnum,
    Runtime,
    RuntimeHandle,
    StateManager,
    StoreConfigModel,
    UnitesModel,
    UnitesStrategyEnum,
)

# The upstream examples pass these module-level names; unset, the embedded default is used.
EXOSPHERE_STATE_MANAGER_URI = None
EXOSPHERE_API_KEY = None


@pytest.fixture(autouse=True)
def embedded_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    for name in (URI_ENV, KEY_ENV, DB_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    db = str((tmp_path / ".exosphere" / "state.duckdb").resolve())
    yield db
    close_db(db)


@pytest.fixture
def handles() -> Iterator[list[RuntimeHandle]]:
    """Runtimes a test started with `.start()`; stopped when it ends."""
    started: list[RuntimeHandle] = []
    yield started
    for handle in started:
        handle.stop(grace=2)


# (a) the quick start ------------------------------------------------------------------------------


async def test_quick_start_sample_node(
    handles: list[RuntimeHandle], embedded_default: str, capsys: pytest.CaptureFixture[str]
) -> None:
    class SampleNode(BaseNode):
        class Inputs(BaseModel):
            name: str
            data: str

        class Outputs(BaseModel):
            message: str
            processed_data: str

        class Secrets(BaseModel):
            pass

        async def execute(self) -> Outputs:
            print(f"Processing data for: {self.inputs.name}")
            processed_data = f"completed:{self.inputs.data}"
            return self.Outputs(message="success", processed_data=processed_data)

    handle = Runtime(namespace="MyProject", name="DataProcessor", nodes=[SampleNode]).start()
    handles.append(handle)
    assert isinstance(handle, RuntimeHandle)  # in a running loop, start() returns at once

    state_manager = StateManager(namespace="MyProject")
    await state_manager.upsert_graph(
        graph_name="sample",
        graph_nodes=[
            GraphNodeModel(
                node_name="SampleNode",
                namespace="MyProject",
                identifier="sample",
                inputs={"name": "default", "data": "default"},
                next_nodes=[],
            )
        ],
        secrets={},
    )
    result = await state_manager.trigger("sample", inputs={"name": "Ada", "data": "payload"})
    assert result["status"] == "CREATED"
    summary = await state_manager.wait(result["run_id"], timeout=4)
    assert summary["status"] == "SUCCESS"
    outputs = await state_manager.run_outputs(result["run_id"])
    assert outputs["sample"] == [{"message": "success", "processed_data": "completed:payload"}]
    assert "Processing data for: Ada" in capsys.readouterr().out
    assert Path(embedded_default).exists()  # the embedded default: .exosphere/state.duckdb in the cwd


# (b) loader -> processor (python-sdk-graph page) ---------------------------------------------------


class DataLoaderNode(BaseNode):
    class Inputs(BaseModel):
        source: str

    class Outputs(BaseModel):
        data: str

    class Secrets(BaseModel):
        api_key: str

    async def execute(self) -> Outputs:
        return self.Outputs(data=json.dumps({"source": self.inputs.source, "rows": [1, 2, 3]}))


class DataProcessorNode(BaseNode):
    class Inputs(BaseModel):
        data: str

    class Outputs(BaseModel):
        result: str

    class Secrets(BaseModel):
        pass

    async def execute(self) -> Outputs:
        data = json.loads(self.inputs.data)  # complex data travels as JSON text
        return self.Outputs(result=f"{data['source']}:{sum(data['rows'])}")


async def test_loader_processor_graph(handles: list[RuntimeHandle]) -> None:
    handles.append(Runtime(namespace="MyProject", name="MyRuntime", nodes=[DataLoaderNode, DataProcessorNode]).start())

    async def create_graph():
        state_manager = StateManager(
            namespace="MyProject",
            state_manager_uri=EXOSPHERE_STATE_MANAGER_URI,
            key=EXOSPHERE_API_KEY
        )

        graph_nodes = [
            GraphNodeModel(
                node_name="DataLoaderNode",
                namespace="MyProject",
                identifier="loader",
                inputs={"source": "initial"},
                next_nodes=["processor"]
            ),
            GraphNodeModel(
                node_name="DataProcessorNode",
                namespace="MyProject",
                identifier="processor",
                inputs={"data": "${{ loader.outputs.data }}"},
                next_nodes=[]
            )
        ]

        retry_policy = RetryPolicyModel(
            max_retries=3,
            strategy=RetryStrategyEnum.EXPONENTIAL,
            backoff_factor=2000,
            exponent=2
        )

        result = await state_manager.upsert_graph(
            graph_name="my-workflow",
            graph_nodes=graph_nodes,
            secrets={"api_key": "your-key"},
            retry_policy=retry_policy,
        )
        return result

    result = await create_graph()
    assert result["validation_status"] == "VALID"

    state_manager = StateManager(namespace="MyProject")
    run = await state_manager.trigger("my-workflow")
    assert (await state_manager.wait(run["run_id"], timeout=4))["status"] == "SUCCESS"
    outputs = await state_manager.run_outputs(run["run_id"])
    assert outputs["processor"] == [{"result": "initial:6"}]


# (c) fan-out + unite (fanout and unite pages) --------------------------------------------------------


class DataSplitterNode(BaseNode):
    class Inputs(BaseModel):
        data: str

    class Outputs(BaseModel):
        chunk: str

    async def execute(self) -> list[Outputs]:
        data = json.loads(self.inputs.data)
        chunk_size = 2

        outputs = []
        for i in range(0, len(data), chunk_size):
            chunk = data[i:i + chunk_size]
            outputs.append(self.Outputs(
                chunk=json.dumps(chunk)
            ))

        return outputs  # This creates fanout on each output


class ChunkProcessorNode(BaseNode):
    class Inputs(BaseModel):
        data: str

    class Outputs(BaseModel):
        result: str

    async def execute(self) -> Outputs:
        return self.Outputs(result=str(sum(json.loads(self.inputs.data))))


class ResultMergerNode(BaseNode):
    class Inputs(BaseModel):
        processed_data: str

    class Outputs(BaseModel):
        total: str

    async def execute(self) -> Outputs:
        results = json.loads(self.inputs.processed_data)  # one result per branch, in branch order
        return self.Outputs(total=json.dumps(results))


async def test_fanout_and_unite(handles: list[RuntimeHandle]) -> None:
    handles.append(
        Runtime(
            namespace="MyProject",
            name="MyRuntime",
            nodes=[DataSplitterNode, ChunkProcessorNode, ResultMergerNode],
        ).start()
    )

    graph_nodes = [
        GraphNodeModel(
            node_name="DataSplitterNode",
            namespace="MyProject",
            identifier="data_splitter",
            inputs={"data": "[]"},
            next_nodes=["processor"]
        ),
        GraphNodeModel(
            node_name="ChunkProcessorNode",
            namespace="MyProject",
            identifier="processor",
            inputs={"data": "${{ data_splitter.outputs.chunk }}"},
            next_nodes=["result_merger"]
        ),
        GraphNodeModel(
            node_name="ResultMergerNode",
            namespace="MyProject",
            identifier="result_merger",
            inputs={"processed_data": "${{ processor.outputs.result }}"},
            unites=UnitesModel(
                identifier="data_splitter",
                strategy=UnitesStrategyEnum.ALL_SUCCESS
            ),
            next_nodes=[]
        )
    ]
    state_manager = StateManager(namespace="MyProject")
    await state_manager.upsert_graph(graph_name="fanout", graph_nodes=graph_nodes, secrets={})
    run = await state_manager.trigger("fanout", inputs={"data": json.dumps([1, 2, 3, 4, 5, 6, 7])})
    summary = await state_manager.wait(run["run_id"], timeout=4)
    assert summary["status"] == "SUCCESS"
    assert summary["nodes"]["processor"] == {"SUCCESS": 4}
    assert summary["nodes"]["result_merger"] == {"SUCCESS": 1}  # once per execution of the splitter
    outputs = await state_manager.run_outputs(run["run_id"])
    assert outputs["result_merger"] == [{"total": json.dumps(["3", "7", "11", "7"])}]


# (d) retry policy (retry-policy page) ----------------------------------------------------------------

ATTEMPTS: list[int] = []


class UnreliableNode(BaseNode):
    class Inputs(BaseModel):
        url: str

    class Outputs(BaseModel):
        body: str

    async def execute(self) -> Outputs:
        ATTEMPTS.append(1)
        if len(ATTEMPTS) == 1:
            raise ConnectionError("temporary failure")
        return self.Outputs(body=f"fetched {self.inputs.url}")


async def test_retry_policy_retries_a_failing_node(handles: list[RuntimeHandle]) -> None:
    ATTEMPTS.clear()
    handles.append(Runtime(namespace="MyProject", name="MyRuntime", nodes=[UnreliableNode]).start())

    retry_policy = RetryPolicyModel(
        max_retries=3,
        strategy=RetryStrategyEnum.FIXED,
        backoff_factor=100
    )
    state_manager = StateManager(namespace="MyProject")
    await state_manager.upsert_graph(
        graph_name="robust-pipeline",
        graph_nodes=[
            GraphNodeModel(
                node_name="UnreliableNode",
                namespace="MyProject",
                identifier="fetch",
                inputs={"url": "https://example.com"},
                next_nodes=[]
            )
        ],
        secrets={},
        retry_policy=retry_policy
    )
    run = await state_manager.trigger("robust-pipeline")
    summary = await state_manager.wait(run["run_id"], timeout=4)
    assert summary["status"] == "SUCCESS"
    assert summary["nodes"]["fetch"] == {"RETRY_CREATED": 1, "SUCCESS": 1}
    assert len(ATTEMPTS) == 2
    graph = await state_manager.run_graph(run["run_id"])
    first, retry = graph["nodes"]
    assert "ConnectionError: temporary failure" in first["error"]
    assert (await state_manager.get_state(retry["id"]))["retry_count"] == 1


# (e) store (store page) -------------------------------------------------------------------------


class CursorNode(BaseNode):
    class Inputs(BaseModel):
        cursor: str
        batch_size: str

    class Outputs(BaseModel):
        window: str

    async def execute(self) -> Outputs:
        start = int(self.inputs.cursor)
        return self.Outputs(window=f"{start}-{start + int(self.inputs.batch_size)}")


async def test_store_required_keys_and_defaults(handles: list[RuntimeHandle]) -> None:
    handles.append(Runtime(namespace="MyProject", name="MyRuntime", nodes=[CursorNode]).start())
    state_manager = StateManager(namespace="MyProject")

    store_config = StoreConfigModel(
        required_keys=["cursor", "batch_id"],
        default_values={
            "cursor": "0",
            "batch_size": "100"
        }
    )
    graph_nodes = [
        GraphNodeModel(
            node_name="CursorNode",
            namespace="MyProject",
            identifier="processor",
            inputs={
                "cursor": "${{ store.cursor }}",
                "batch_size": "${{ store.batch_size }}"
            },
            next_nodes=[]
        )
    ]
    result = await state_manager.upsert_graph(
        graph_name="my-workflow",
        graph_nodes=graph_nodes,
        secrets={},
        store_config=store_config
    )
    assert result["store_config"]["default_values"] == {"cursor": "0", "batch_size": "100"}

    # Trigger graph with initial store values
    result = await state_manager.trigger(
        "my-workflow",
        store={
            "cursor": "500",
            "batch_id": "batch_001"
        }
    )
    assert (await state_manager.wait(result["run_id"], timeout=4))["status"] == "SUCCESS"
    outputs = await state_manager.run_outputs(result["run_id"])
    assert outputs["processor"] == [{"window": "500-600"}]  # given cursor, default batch_size


# (f) cron trigger (triggers page) ------------------------------------------------------------------


class DataExtractorNode(BaseNode):
    class Inputs(BaseModel):
        source: str

    class Outputs(BaseModel):
        data: str

    async def execute(self) -> Outputs:
        return self.Outputs(data=f"extracted from {self.inputs.source}")


class RawDataProcessorNode(BaseNode):
    class Inputs(BaseModel):
        raw_data: str

    class Outputs(BaseModel):
        result: str

    async def execute(self) -> Outputs:
        return self.Outputs(result=self.inputs.raw_data.upper())


async def test_cron_trigger_is_accepted_and_shown(handles: list[RuntimeHandle]) -> None:
    handles.append(
        Runtime(namespace="DataPipeline", name="MyRuntime", nodes=[DataExtractorNode, RawDataProcessorNode]).start()
    )

    async def create_scheduled_graph():
        state_manager = StateManager(
            namespace="DataPipeline",
            state_manager_uri=EXOSPHERE_STATE_MANAGER_URI,
            key=EXOSPHERE_API_KEY
        )

        # Define your graph nodes
        graph_nodes = [
            GraphNodeModel(
                node_name="DataExtractorNode",
                namespace="DataPipeline",
                identifier="extractor",
                inputs={"source": "initial"},
                next_nodes=["processor"]
            ),
            GraphNodeModel(
                node_name="RawDataProcessorNode",
                namespace="DataPipeline",
                identifier="processor",
                inputs={"raw_data": "${{ extractor.outputs.data }}"},
                next_nodes=[]
            )
        ]

        # Define triggers for automatic execution
        triggers = [
            CronTrigger(expression="*/5 * * * *"),  # Every 5 minutes
            CronTrigger(expression="0 */4 * * *")   # Every 4 hours
        ]

        # Create the graph with triggers
        result = await state_manager.upsert_graph(
            graph_name="data-pipeline",
            graph_nodes=graph_nodes,
            secrets={"api_key": "your-api-key"},
            triggers=triggers
        )

        print(f"Graph created with {len(triggers)} triggers")
        return result

    result = await create_scheduled_graph()
    expected = [
        {"type": "CRON", "value": {"expression": "*/5 * * * *"}},
        {"type": "CRON", "value": {"expression": "0 */4 * * *"}},
    ]
    assert result["triggers"] == expected
    state_manager = StateManager(namespace="DataPipeline")
    assert (await state_manager.get_graph("data-pipeline"))["triggers"] == expected

    # the same graph also runs on demand
    run = await state_manager.trigger("data-pipeline")
    assert (await state_manager.wait(run["run_id"], timeout=4))["status"] == "SUCCESS"
    assert (await state_manager.run_outputs(run["run_id"]))["processor"] == [{"result": "EXTRACTED FROM INITIAL"}]
