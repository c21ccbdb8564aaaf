"""The Exosphere v0 routes (spec/wire-api-v0.md): each one calls the engine, and nothing else.

Handlers are `async def` on purpose: they run on the server's event loop, where the engine lives.
Mutating routes answer once the engine's group commit holds the change.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Response, Security, status

from ..engine.engine import state_payload
from ..errors import NotFoundError
from .auth import api_key_scheme
from .deps import EngineDep, durable
from .wire import (
    MAX_PAGE,
    EnqueueRequest,
    ErroredRequest,
    ExecutedRequest,
    ManualRetryRequest,
    PruneRequest,
    ReEnqueueAfterRequest,
    RegisterNodesRequest,
    TriggerRequest,
    UpsertGraphRequest,
)

__all__ = ["global_router", "router"]

_secured = [Security(api_key_scheme)]
router = APIRouter(prefix="/v0/namespace/{namespace}", dependencies=_secured)
global_router = APIRouter(prefix="/v0", dependencies=_secured)

_404 = {404: {"description": "Unknown state, graph or run (or not in this namespace)"}}
_400 = {400: {"description": "The request cannot be applied (e.g. the state is not QUEUED)"}}


# -- nodes -------------------------------------------------------------------------------------


@router.put("/nodes/", tags=["nodes"], summary="Register a runtime's node classes")
async def register_nodes(namespace: str, body: RegisterNodesRequest, engine: EngineDep) -> dict[str, Any]:
    nodes = [n.model_dump(exclude_none=True) for n in body.nodes]
    return await durable(engine, engine.register_nodes(namespace, body.runtime_name, nodes))


@router.get("/nodes/", tags=["nodes"], summary="List the registered nodes")
async def list_nodes(namespace: str, engine: EngineDep) -> dict[str, Any]:
    return engine.list_nodes(namespace)


# -- graphs ------------------------------------------------------------------------------------


@router.put(
    "/graph/{graph_name}",
    status_code=status.HTTP_201_CREATED,
    tags=["graph"],
    summary="Create or replace a graph template (validated at once: VALID or INVALID)",
    responses={400: {"description": "The graph is malformed; `errors` lists every problem"}},
)
async def upsert_graph(namespace: str, graph_name: str, body: UpsertGraphRequest, engine: EngineDep) -> dict[str, Any]:
    result = engine.upsert_graph(
        namespace,
        graph_name,
        body.nodes,
        body.secrets,
        body.retry_policy,
        body.store_config,
        [t.value for t in body.triggers] if body.triggers is not None else None,
    )
    return await durable(engine, result)


@router.get("/graph/{graph_name}", tags=["graph"], summary="A graph template (secret names only)", responses=_404)
async def get_graph(namespace: str, graph_name: str, engine: EngineDep) -> dict[str, Any]:
    return engine.get_graph(namespace, graph_name)


@router.get("/graphs/", tags=["graph"], summary="List graph templates (never secret values)")
async def list_graphs(namespace: str, engine: EngineDep) -> dict[str, Any]:
    return engine.list_graphs(namespace)


@router.post(
    "/graph/{graph_name}/trigger",
    tags=["graph"],
    summary="Start a run",
    responses={**_404, 400: {"description": "The graph is not VALID, or inputs/store do not fit it"}},
)
async def trigger(namespace: str, graph_name: str, body: TriggerRequest, engine: EngineDep) -> dict[str, Any]:
    result = engine.trigger(namespace, graph_name, body.inputs, body.store, body.start_delay)
    return await durable(engine, result)


# -- states ------------------------------------------------------------------------------------


@router.post("/states/enqueue", tags=["state"], summary="Claim up to batch_size states of these nodes")
async def enqueue(namespace: str, body: EnqueueRequest, engine: EngineDep) -> dict[str, Any]:
    claimed = engine.claim(namespace, body.nodes, body.batch_size)
    await engine.committed()
    return {
        "count": len(claimed),
        "namespace": namespace,
        "status": "QUEUED",
        "states": [state_payload(s) for s in claimed],
    }


@router.post("/state/{state_id}/executed", tags=["state"], summary="Report a state's outputs", responses=_404 | _400)
async def executed(namespace: str, state_id: str, body: ExecutedRequest, engine: EngineDep) -> dict[str, Any]:
    return await durable(engine, engine.executed(state_id, body.outputs, namespace))


@router.post("/state/{state_id}/errored", tags=["state"], summary="Report a state's failure", responses=_404 | _400)
async def errored(namespace: str, state_id: str, body: ErroredRequest, engine: EngineDep) -> dict[str, Any]:
    return await durable(engine, engine.errored(state_id, body.error, namespace))


@router.post("/state/{state_id}/prune", tags=["state"], summary="End a state's branch", responses=_404 | _400)
async def prune(namespace: str, state_id: str, body: PruneRequest, engine: EngineDep) -> dict[str, Any]:
    return await durable(engine, engine.prune(state_id, body.data, namespace))


@router.post(
    "/state/{state_id}/re-enqueue-after",
    tags=["state"],
    summary="Hand a state back, claimable again after enqueue_after ms",
    responses=_404 | _400,
)
async def re_enqueue_after(
    namespace: str, state_id: str, body: ReEnqueueAfterRequest, engine: EngineDep
) -> dict[str, Any]:
    return await durable(engine, engine.requeue_after(state_id, body.enqueue_after, namespace))


@router.post(
    "/state/{state_id}/manual-retry",
    tags=["state"],
    summary="Retry a failed, pruned or cancelled state",
    responses={**_404, **_400, 409: {"description": "This fanout_id was already used in the run"}},
)
async def manual_retry(namespace: str, state_id: str, body: ManualRetryRequest, engine: EngineDep) -> dict[str, Any]:
    return await durable(engine, engine.manual_retry(state_id, body.fanout_id, namespace))


@router.get(
    "/state/{state_id}/secrets",
    tags=["state"],
    summary="The secrets a claimed state's node declares",
    responses=_404 | _400,
)
async def state_secrets(namespace: str, state_id: str, response: Response, engine: EngineDep) -> dict[str, Any]:
    response.headers["cache-control"] = "no-store"
    return engine.get_secrets(state_id, namespace)


@global_router.get(
    "/state/{state_id}/secrets",
    tags=["state"],
    summary="Secrets of a claimed state (path used by older official SDKs)",
    deprecated=True,
    responses=_404 | _400,
)
async def state_secrets_unscoped(state_id: str, response: Response, engine: EngineDep) -> dict[str, Any]:
    response.headers["cache-control"] = "no-store"
    return engine.get_secrets(state_id)


# -- runs --------------------------------------------------------------------------------------


@router.get("/runs/{page}/{size}", tags=["runs"], summary="Runs, newest first (page is 1-based)")
async def list_runs(
    namespace: str,
    engine: EngineDep,
    page: int = Path(..., ge=1, le=MAX_PAGE),
    size: int = Path(..., ge=1, le=MAX_PAGE),
) -> dict[str, Any]:
    await engine.committed()
    return engine.list_runs(namespace, page, size)


@router.get("/states/run/{run_id}/graph", tags=["runs"], summary="A run's states and edges (unknown run: zeros)")
async def run_graph(namespace: str, run_id: str, engine: EngineDep) -> dict[str, Any]:
    await engine.committed()
    return engine.run_graph(run_id, namespace)


@router.get(
    "/graph/{graph_name}/run/{run_id}/node/{state_id}",
    tags=["runs"],
    summary="One state of a run, with inputs, outputs and parents",
    responses=_404,
)
async def node_run_details(
    namespace: str, graph_name: str, run_id: str, state_id: str, engine: EngineDep
) -> dict[str, Any]:
    state = engine.get_state(state_id, namespace)
    if state["graph_name"] != graph_name or state["run_id"] != run_id:
        raise NotFoundError(f"state {state_id!r} not found in run {run_id!r} of graph {graph_name!r}")
    return state


@global_router.get("/namespaces", tags=["namespaces"], summary="Namespaces with graphs or nodes")
async def namespaces(engine: EngineDep) -> dict[str, Any]:
    return engine.namespaces()
