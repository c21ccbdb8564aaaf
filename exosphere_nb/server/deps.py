"""What route handlers get injected: the engine the app's lifespan started."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from ..engine.engine import Engine
from ..errors import ExosphereError

__all__ = ["EngineDep", "durable", "get_engine"]


class _NotRunning(ExosphereError):
    status_code = 503


async def get_engine(request: Request) -> Engine:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a thread hop per request
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise _NotRunning("the state manager is not running (the app's lifespan has not started its engine)")
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


async def durable(engine: Engine, result: Any) -> Any:
    """`result`, once everything the engine applied so far is committed: a response means durable."""
    await engine.committed()
    return result
