"""The test graph `flow` (namespace `lab`): split fans out one item per comma-separated value of the
store's `items`; work upper-cases each item, and fails on `boom` while `broken.flag` exists in the
working directory (remove the file, then retry the failed state: it succeeds)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from exosphere_nb import BaseNode, GraphNodeModel, RetryPolicyModel, StoreConfigModel

NAMESPACE = "lab"
GRAPH = "flow"
BROKEN_FLAG = "broken.flag"


class Split(BaseNode):
    class Inputs(BaseModel):
        items: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=i.strip()) for i in self.inputs.items.split(",") if i.strip()]


class Work(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        result: str

    async def execute(self) -> Outputs:
        if self.inputs.item == "boom" and Path(BROKEN_FLAG).exists():
            raise RuntimeError("boom is broken")
        return self.Outputs(result=self.inputs.item.upper())


def graph_nodes() -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Split",
            namespace=NAMESPACE,
            identifier="split",
            inputs={"items": "${{ store.items }}"},
            next_nodes=["work"],
        ),
        GraphNodeModel(
            node_name="Work",
            namespace=NAMESPACE,
            identifier="work",
            inputs={"item": "${{ split.outputs.item }}"},
        ),
    ]


GRAPH_OPTIONS = {
    "secrets": {},
    "retry_policy": RetryPolicyModel(max_retries=0),
    "store_config": StoreConfigModel(required_keys=["items"]),
}
