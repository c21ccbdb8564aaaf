from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import KEY, MAX_BODY, LiveServer

from exosphere_nb.engine.secrets import KEY_ENV_VAR
from exosphere_nb.server.app import create_app


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (KEY_ENV_VAR, "EXOSPHERE_API_KEY", "EXOSPHERE_STATE_MANAGER_URI", "EXOSPHERE_DB"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "state.duckdb"


@pytest.fixture
def live(db_file: Path) -> Iterator[LiveServer]:
    server = LiveServer(create_app(db_file, api_key=KEY, max_body_bytes=MAX_BODY)).start()
    yield server
    server.stop()


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, headers={"x-api-key": KEY}, timeout=15) as c:
        yield c


@pytest.fixture
def anon(live: LiveServer) -> Iterator[httpx.Client]:
    """A client that sends no key."""
    with httpx.Client(base_url=live.url, timeout=15) as c:
        yield c


@pytest.fixture(scope="module")
def shared_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for a whole module, for tests that do not care what others wrote."""
    db = tmp_path_factory.mktemp("shared") / "state.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(KEY_ENV_VAR, raising=False)
        server = LiveServer(create_app(db, api_key=KEY, max_body_bytes=MAX_BODY)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_client(shared_live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_live.url, headers={"x-api-key": KEY}, timeout=15) as c:
        yield c


@pytest.fixture(scope="module")
def shared_anon(shared_live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_live.url, timeout=15) as c:
        yield c
