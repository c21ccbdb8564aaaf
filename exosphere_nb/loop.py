"""The process's one background event loop, on a daemon thread.

Engines, runtimes and cron live on it, so runs progress while a notebook runs other cells (even
blocking ones) and between cells. Other threads reach it through thread-safe futures.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["background_loop", "in_background_loop", "run_on_loop", "run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_shutdown_hooks: list[Any] = []


def background_loop() -> asyncio.AbstractEventLoop:
    """The background loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed() or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=run, name="exosphere-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
        return _loop


def in_background_loop() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine on the background loop and wait for it from any other thread."""
    if in_background_loop():
        coro.close()
        raise RuntimeError("run_sync() called on the exosphere background loop: await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coro, background_loop()).result(timeout)


async def run_on_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Await a coroutine that must run on the background loop, from whatever loop the caller is on."""
    if in_background_loop():
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, background_loop()))


def on_shutdown(coro_fn: Any) -> None:
    """Register an async callable run on the loop when the interpreter exits (engines commit there)."""
    _shutdown_hooks.append(coro_fn)


@atexit.register
def _shutdown() -> None:
    if _loop is None or _loop.is_closed() or not _shutdown_hooks:
        return

    async def run_hooks() -> None:
        for hook in reversed(_shutdown_hooks):
            try:
                await hook()
            except Exception:  # exiting anyway: one hook's failure must not stop the others
                pass

    try:
        asyncio.run_coroutine_threadsafe(run_hooks(), _loop).result(10)
    except Exception:
        pass
