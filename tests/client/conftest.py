from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# the live-server helper lives with the server tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from http_client_helpers import Served

from exosphere_nb.engine.secrets import KEY_ENV_VAR


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (KEY_ENV_VAR, "EXOSPHERE_API_KEY", "EXOSPHERE_STATE_MANAGER_URI", "EXOSPHERE_DB"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start servers (each on its own database); every one is stopped at teardown."""
    started: list[Served] = []

    def make(start: bool = True, db: Path | None = None, **kw: Any) -> Served:
        served = Served(db or tmp_path / f"state-{len(started)}.duckdb", **kw)
        started.append(served)
        return served.start() if start else served

    yield make
    for served in started:
        served.stop()
