"""Routes beyond upstream v0, under paths the official state manager does not use.

Clients find them in `GET /v0/capabilities` and fall back to plain v0 when they are missing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request, Security
from pydantic import TypeAdapter, ValidationError

from .._version import __version__
from ..engine.engine import Engine
from ..errors import ExosphereError
from ..models import RunStatus
from .auth import api_key_scheme
from .deps import EngineDep, durable
from .wire import MAX_PAGE, HeartbeatRequest, ReleaseRequest, ResultsRequest, StateResult, TimeBound

__all__ = ["EXTENSIONS", "global_router", "router"]

EXTENSIONS = ("heartbeat", "release", "cancel", "outputs", "summary", "runs", "state", "wait", "results")
MAX_WAIT_S = 300.0

_secured = [Security(api_key_scheme)]
router = APIRouter(prefix="/v0/namespace/{namespace}", dependencies=_secured, tags=["extensions"])
global_router = APIRouter(prefix="/v0", dependencies=_secured, tags=["extensions"])

_404 = {404: {"description": "Unknown run or state (or not in this namespace)"}}


@global_router.get("/capabilities", summary="Which extensions this server speaks (`extensions`), and its lease")
async def capabilities(engine: EngineDep) -> dict[str, Any]:
    return {"extensions": list(EXTENSIONS), "version": __version__, "api": "v0", "lease_ms": engine.lease_ms}


@router.post("/states/heartbeat", summary="Renew the leases of states still running; returns how many")
async def heartbeat(namespace: str, body: HeartbeatRequest, engine: EngineDep) -> dict[str, int]:
    renewed = engine.renew_leases(body.state_ids, body.lease_ms, namespace)
    return await durable(engine, {"renewed": renewed})


@router.post("/states/release", summary="Hand claimed states back (a stopping runtime): claimable again at once")
async def release(namespace: str, body: ReleaseRequest, engine: EngineDep) -> dict[str, int]:
    released = engine.release(dict.fromkeys(body.state_ids), namespace)
    return await durable(engine, {"released": released})


_result_item: TypeAdapter[Any] = TypeAdapter(StateResult)


def _apply_result(engine: Engine, namespace: str, item: dict[str, Any]) -> dict[str, Any]:
    """One item of POST /states/results, applied as its v0 route would; errors become the item's answer."""
    try:
        r = _result_item.validate_python(item)
    except ValidationError as exc:
        errors = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return {"state_id": item.get("state_id"), "status_code": 422, "detail": errors}
    try:
        if r.kind == "executed":
            res = engine.executed(r.state_id, r.outputs, namespace)
        elif r.kind == "errored":
            res = engine.errored(r.state_id, r.error, namespace)
        elif r.kind == "prune":
            res = engine.prune(r.state_id, r.data, namespace)
        else:
            res = engine.requeue_after(r.state_id, r.enqueue_after, namespace)
    except ExosphereError as exc:
        return {"state_id": r.state_id, "status_code": exc.status_code, "detail": exc.detail}
    return {"state_id": r.state_id, **res}


@router.post(
    "/states/results",
    summary="Report many claimed states' results at once; one answer per item, in order, after one commit",
)
async def report_results(namespace: str, body: ResultsRequest, engine: EngineDep) -> dict[str, Any]:
    """Each item is what the state's own v0 route (`executed`, `errored`, `prune`, `re-enqueue-after`) takes,
    plus `state_id` and `kind`; its answer is that route's body, or `{status_code, detail}` where that route
    would have answered with an error. Items apply independently, in order.
    """
    answers = [_apply_result(engine, namespace, item) for item in body.results]
    return await durable(engine, {"results": answers})


@router.get("/state/{state_id}", summary="One state, wherever it is", responses=_404)
async def get_state(namespace: str, state_id: str, engine: EngineDep) -> dict[str, Any]:
    return engine.get_state(state_id, namespace)


@router.get("/runs", summary="Runs, newest first, filtered (since/until: epoch ms or ISO-8601)")
async def list_runs(
    namespace: str,
    engine: EngineDep,
    graph_name: str | None = None,
    status: RunStatus | None = None,
    since: TimeBound | None = Query(None, description="Runs created at or after (epoch ms or ISO-8601)"),
    until: TimeBound | None = Query(None, description="Runs created before (epoch ms or ISO-8601)"),
    page: int = Query(1, ge=1, le=MAX_PAGE),
    size: int = Query(20, ge=1, le=MAX_PAGE),
) -> dict[str, Any]:
    await engine.committed()
    return engine.list_runs(
        namespace,
        page,
        size,
        graph_name=graph_name,
        status=status.value if status is not None else None,
        since_ms=since,
        until_ms=until,
    )


async def _summary(engine: Engine, namespace: str, run_id: str) -> dict[str, Any]:
    await engine.committed()
    return engine.run_summary(run_id, namespace)


@router.get("/runs/{run_id}/summary", summary="A run's status and state counts, per node", responses=_404)
async def run_summary(namespace: str, run_id: str, engine: EngineDep) -> dict[str, Any]:
    return await _summary(engine, namespace, run_id)


@router.get("/runs/{run_id}/outputs", summary="Outputs of a run's successful states per node, in branch order")
async def run_outputs(namespace: str, run_id: str, engine: EngineDep) -> dict[str, list[dict[str, Any]]]:
    await engine.committed()
    return engine.run_outputs(run_id, namespace)


@router.get(
    "/runs/{run_id}/wait",
    summary="Long-poll: the run's summary once nothing is pending, or after `timeout` seconds",
    responses=_404,
)
async def wait_run(
    namespace: str,
    run_id: str,
    request: Request,
    engine: EngineDep,
    timeout: float = Query(20.0, ge=0, le=MAX_WAIT_S, description="Seconds to wait at most"),
) -> dict[str, Any]:
    summary = await _summary(engine, namespace, run_id)
    if summary["status"] != "PENDING" or timeout == 0:
        return summary
    stopping: asyncio.Event = request.app.state.stopping
    waiter = asyncio.ensure_future(engine.wait_run(run_id))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((waiter, stop), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (waiter, stop):
            if fut.done():
                if not fut.cancelled():
                    fut.exception()  # retrieved: the summary below tells the outcome
            else:
                fut.cancel()
    return await _summary(engine, namespace, run_id)


@router.post("/runs/{run_id}/cancel", summary="Cancel a run: its CREATED and QUEUED states", responses=_404)
async def cancel_run(namespace: str, run_id: str, engine: EngineDep) -> dict[str, Any]:
    return await durable(engine, engine.cancel_run(run_id, namespace))
