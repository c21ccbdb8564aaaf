"""`StateManager`: register graphs, trigger runs, and look at them — the same calls as `exospherehost`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .client.embedded import EmbeddedTransport
from .config import Target, resolve_target
from .errors import ExosphereError, GraphValidationError
from .models import CronTrigger, GraphNodeModel, RetryPolicyModel, StoreConfigModel

__all__ = ["StateManager"]

M = TypeVar("M", bound=BaseModel)


def _ms(value: datetime | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)


def make_transport(namespace: str, target: Target) -> Any:
    if target.embedded:
        assert target.db is not None
        return EmbeddedTransport(namespace, target.db)
    from .client.http import HttpTransport

    return HttpTransport(namespace, target.uri, target.key)  # type: ignore[arg-type]


def _as_model(model: type[M], value: Any, what: str) -> M:
    """Accept the model or its dict form (a cron trigger may also be its expression)."""
    if isinstance(value, model):
        return value
    if model is CronTrigger and isinstance(value, str):
        value = {"expression": value}
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise GraphValidationError([f"{what}: {e['msg']}" for e in exc.errors()]) from None


class StateManager:
    """Talks to the embedded state manager by default, or to `state_manager_uri` over HTTP."""

    def __init__(
        self,
        namespace: str,
        state_manager_uri: str | None = None,
        key: str | None = None,
        state_manager_version: str = "v0",
    ) -> None:
        self._namespace = namespace
        self._state_manager_version = state_manager_version
        self._target = resolve_target(state_manager_uri, key)
        self._transport = make_transport(namespace, self._target)

    def __repr__(self) -> str:
        where = f"db={self._target.db!r}" if self._target.embedded else f"uri={self._target.uri!r}"
        return f"StateManager(namespace={self._namespace!r}, {where})"

    @property
    def namespace(self) -> str:
        return self._namespace

    # -- the exospherehost surface -------------------------------------------------------------

    async def trigger(
        self,
        graph_name: str,
        inputs: dict[str, str] | None = None,
        store: dict[str, str] | None = None,
        start_delay: int = 0,
    ) -> dict[str, Any]:
        """Start a run of `graph_name`; returns `{"status": "CREATED", "run_id": ...}`."""
        return await self._transport.trigger(graph_name, inputs or {}, store or {}, start_delay)

    async def get_graph(self, graph_name: str) -> dict[str, Any]:
        return await self._transport.get_graph(graph_name)

    async def upsert_graph(
        self,
        graph_name: str,
        graph_nodes: list[GraphNodeModel],
        secrets: dict[str, str],
        retry_policy: RetryPolicyModel | None = None,
        store_config: StoreConfigModel | None = None,
        triggers: list[CronTrigger] | None = None,
        validation_timeout: int = 60,
        polling_interval: int = 1,
    ) -> dict[str, Any]:
        """Create or replace a graph template; waits for validation and raises unless it is VALID."""
        body: dict[str, Any] = {
            "secrets": secrets,
            "nodes": [n.model_dump(mode="json") if isinstance(n, GraphNodeModel) else n for n in graph_nodes],
        }
        if retry_policy is not None:
            body["retry_policy"] = _as_model(RetryPolicyModel, retry_policy, "retry_policy").model_dump(mode="json")
        if store_config is not None:
            body["store_config"] = _as_model(StoreConfigModel, store_config, "store_config").model_dump(mode="json")
        if triggers is not None:
            body["triggers"] = [
                {"type": "CRON", "value": {"expression": _as_model(CronTrigger, t, "triggers").expression}}
                for t in triggers
            ]
        graph = await self._transport.upsert_graph(graph_name, body)
        deadline = time.monotonic() + validation_timeout
        while graph["validation_status"] == "PENDING":
            if time.monotonic() > deadline:
                raise ExosphereError(f"graph {graph_name!r} validation timed out after {validation_timeout} s")
            await asyncio.sleep(polling_interval)
            graph = await self.get_graph(graph_name)
        if graph["validation_status"] != "VALID":
            raise GraphValidationError(
                graph.get("validation_errors") or ["unknown validation error"],
                headline=f"graph {graph_name!r} is {graph['validation_status']}",
            )
        return graph

    # -- what a notebook user needs beyond it ----------------------------------------------------

    async def list_graphs(self) -> list[dict[str, Any]]:
        return (await self._transport.list_graphs())["templates"]

    async def list_nodes(self) -> list[dict[str, Any]]:
        return (await self._transport.list_nodes())["nodes"]

    async def list_runs(
        self,
        graph_name: str | None = None,
        status: str | None = None,
        since: datetime | int | None = None,
        until: datetime | int | None = None,
        page: int = 1,
        size: int = 20,
    ) -> dict[str, Any]:
        """Runs newest first: `{"total", "page", "size", "runs": [...]}`; times are datetimes or epoch ms."""
        return await self._transport.list_runs(
            page, size, graph_name=graph_name, status=status, since_ms=_ms(since), until_ms=_ms(until)
        )

    async def run_status(self, run_id: str) -> dict[str, Any]:
        """The run's status, its state counts by status, and per node identifier."""
        return await self._transport.run_summary(run_id)

    async def wait(self, run_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until nothing in the run is pending; returns `run_status(run_id)`."""
        await self._transport.wait_run(run_id, timeout)
        return await self.run_status(run_id)

    async def run_outputs(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        """Outputs of the run's successful states per node identifier, in branch order."""
        return await self._transport.run_outputs(run_id)

    async def run_graph(self, run_id: str) -> dict[str, Any]:
        return await self._transport.run_graph(run_id)

    async def get_state(self, state_id: str) -> dict[str, Any]:
        return await self._transport.get_state(state_id)

    async def retry_state(self, state_id: str, fanout_id: str | None = None) -> dict[str, Any]:
        """Manually retry a failed, pruned or cancelled state; returns `{"id": new_state_id, ...}`."""
        return await self._transport.manual_retry(state_id, fanout_id or uuid.uuid4().hex)

    async def cancel_run(self, run_id: str) -> dict[str, Any]:
        return await self._transport.cancel_run(run_id)

    async def retry_failed(self, run_id: str) -> list[str]:
        """Retry every ERRORED / NEXT_CREATED_ERROR state of a run; returns the new state ids."""
        graph = await self.run_graph(run_id)
        failed: Iterable[dict[str, Any]] = (
            n for n in graph["nodes"] if n["status"] in ("ERRORED", "NEXT_CREATED_ERROR")
        )
        return [(await self.retry_state(n["id"]))["id"] for n in failed]
