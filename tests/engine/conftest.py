from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import MakeEngine

from exosphere_nb.engine.engine import Engine
from exosphere_nb.engine.secrets import KEY_ENV_VAR


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.duckdb"


@pytest.fixture
async def make_engine(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeEngine]:
    """Open (and start) engines on the test's DuckDB file; every one is closed at teardown."""
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    engines: list[Engine] = []

    async def make(path: Path | str | None = None, **kw: Any) -> Engine:
        engine = Engine(str(path or db_path), **kw)
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in reversed(engines):
        await engine.close()


@pytest.fixture
async def engine(make_engine: MakeEngine) -> Engine:
    return await make_engine()
