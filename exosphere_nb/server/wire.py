"""Request bodies and query values of the v0 API and its extensions, as the official SDK sends them.

Field types give FastAPI's 422 for malformed bodies; every rule beyond the shape (graph structure,
state transitions, output fields, store keys) is the engine's, so it answers alike over HTTP and
embedded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from ..models import CronTrigger, GraphNodeModel, RetryPolicyModel, StoreConfigModel

__all__ = [
    "CronTriggerBody",
    "EnqueueRequest",
    "ErroredRequest",
    "ExecutedRequest",
    "HeartbeatRequest",
    "ManualRetryRequest",
    "NodeRegistration",
    "PruneRequest",
    "ReEnqueueAfterRequest",
    "RegisterNodesRequest",
    "ReleaseRequest",
    "ResultsRequest",
    "StateResult",
    "TimeBound",
    "TriggerRequest",
    "UpsertGraphRequest",
    "parse_time_ms",
]

# Bounds that keep page/offset arithmetic and timestamps inside 64-bit integers.
MAX_PAGE = 2**31
MIN_TIME_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_RESULTS = 10_000  # results in one POST /states/results


class NodeRegistration(BaseModel):
    name: str = Field(..., description="Node class name")
    namespace: str | None = Field(None, description="Namespace of the node (default: the path's)")
    inputs_schema: dict[str, Any] = Field(default_factory=dict, description="`Inputs.model_json_schema()`")
    outputs_schema: dict[str, Any] = Field(default_factory=dict, description="`Outputs.model_json_schema()`")
    secrets: list[str] = Field(default_factory=list, description="Names of the Secrets fields")


class RegisterNodesRequest(BaseModel):
    runtime_name: str
    runtime_namespace: str | None = None
    nodes: list[NodeRegistration]


class CronTriggerBody(BaseModel):
    type: Literal["CRON"] = "CRON"
    value: CronTrigger = Field(..., description='`{"expression": "<5-field cron, UTC>"}`')


class UpsertGraphRequest(BaseModel):
    secrets: dict[str, str] = Field(default_factory=dict, description="Secret values (stored encrypted)")
    nodes: list[GraphNodeModel]
    retry_policy: RetryPolicyModel | None = None
    store_config: StoreConfigModel | None = None
    triggers: list[CronTriggerBody] | None = None


class TriggerRequest(BaseModel):
    inputs: dict[str, str] = Field(default_factory=dict, description="Root inputs (override the template's)")
    store: dict[str, str] = Field(default_factory=dict, description="The run's store")
    start_delay: int = Field(0, ge=0, description="Milliseconds before the root may be claimed")


class EnqueueRequest(BaseModel):
    nodes: list[str] = Field(..., description="Node names this runtime executes")
    batch_size: int = Field(..., description="Most states to claim")


class ExecutedRequest(BaseModel):
    # values stay `Any`: the engine marks a state with a non-string output ERRORED (so retries
    # apply) instead of leaving it QUEUED behind a 422
    outputs: list[dict[str, Any]] = Field(..., description="One object per branch; `[]` ends the branch")


class ErroredRequest(BaseModel):
    error: str


class PruneRequest(BaseModel):
    data: dict[str, Any] = Field(default_factory=dict)


class ReEnqueueAfterRequest(BaseModel):
    enqueue_after: int = Field(..., gt=0, description="Delay in milliseconds")


class ManualRetryRequest(BaseModel):
    fanout_id: str


class HeartbeatRequest(BaseModel):
    state_ids: list[str]
    lease_ms: int | None = Field(None, gt=0, description="New lease length (default: the server's)")


class ReleaseRequest(BaseModel):
    state_ids: list[str]


# -- POST /states/results: many states' results in one request, each as its v0 route takes it --


class ExecutedResult(BaseModel):
    state_id: str
    kind: Literal["executed"]
    outputs: list[dict[str, Any]] = Field(..., description="As POST /state/{id}/executed takes them")


class ErroredResult(BaseModel):
    state_id: str
    kind: Literal["errored"]
    error: str


class PruneResult(BaseModel):
    state_id: str
    kind: Literal["prune"]
    data: dict[str, Any] = Field(default_factory=dict)


class ReEnqueueAfterResult(BaseModel):
    state_id: str
    kind: Literal["re-enqueue-after"]
    enqueue_after: int = Field(..., gt=0, description="Delay in milliseconds")


StateResult = Annotated[
    ExecutedResult | ErroredResult | PruneResult | ReEnqueueAfterResult, Field(discriminator="kind")
]


class ResultsRequest(BaseModel):
    # items are validated one by one (a malformed item gets its own 422 entry, the others still apply)
    results: list[dict[str, Any]] = Field(
        ...,
        max_length=MAX_RESULTS,
        description="Each `{state_id, kind: executed|errored|prune|re-enqueue-after, ...}` with the fields of "
        "that v0 route's body (`outputs`, `error`, `data`, `enqueue_after`)",
    )


def parse_time_ms(value: Any) -> int:
    """Epoch milliseconds from an integer (or its digits) or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, bool):
        raise ValueError("expected epoch milliseconds or an ISO-8601 time")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        ms = int(value.strip())
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is neither epoch milliseconds nor an ISO-8601 time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ms = int(dt.timestamp() * 1000)
    else:
        raise ValueError("expected epoch milliseconds or an ISO-8601 time")
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise ValueError("time is out of range (years 1 to 9999)")
    return ms


TimeBound = Annotated[int, BeforeValidator(parse_time_ms)]
