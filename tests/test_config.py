"""Where the state manager is: explicit argument > environment > `.env` in the working directory > default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel
from sdk_helpers import DB_ENV, KEY_ENV, URI_ENV

from exosphere_nb import BadRequestError, BaseNode, Runtime, StateManager
from exosphere_nb.config import DEFAULT_DB, Target, resolve_target


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No EXOSPHERE_* variables, and a working directory of our own (no stray `.env`)."""
    for name in (URI_ENV, KEY_ENV, DB_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_env(tmp_path: Path, **values: str) -> None:
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))


class Node(BaseNode):
    class Inputs(BaseModel):
        x: str

    async def execute(self) -> None:
        return None


# -- resolution order ------------------------------------------------------------------------------


def test_default_is_the_embedded_database_under_the_working_directory(tmp_path: Path) -> None:
    target = resolve_target()
    assert target.embedded
    assert target.db == str((tmp_path / DEFAULT_DB).resolve())
    assert target.uri is None and target.key is None


def test_env_file_is_used_when_the_environment_is_silent(tmp_path: Path) -> None:
    write_env(tmp_path, **{URI_ENV: "http://from-dotenv:8000", KEY_ENV: "dotenv-key"})
    target = resolve_target()
    assert target == Target(uri="http://from-dotenv:8000", key="dotenv-key")
    assert not target.embedded


def test_environment_wins_over_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_env(tmp_path, **{URI_ENV: "http://from-dotenv:8000", KEY_ENV: "dotenv-key"})
    monkeypatch.setenv(URI_ENV, "http://from-shell:9000")
    monkeypatch.setenv(KEY_ENV, "shell-key")
    assert resolve_target() == Target(uri="http://from-shell:9000", key="shell-key")


def test_environment_and_env_file_combine_per_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_env(tmp_path, **{URI_ENV: "http://from-dotenv:8000", KEY_ENV: "dotenv-key"})
    monkeypatch.setenv(URI_ENV, "http://from-shell:9000")
    assert resolve_target() == Target(uri="http://from-shell:9000", key="dotenv-key")


def test_explicit_arguments_win_over_everything(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_env(tmp_path, **{URI_ENV: "http://from-dotenv:8000", KEY_ENV: "dotenv-key"})
    monkeypatch.setenv(URI_ENV, "http://from-shell:9000")
    monkeypatch.setenv(KEY_ENV, "shell-key")
    assert resolve_target("http://explicit:1234", "explicit-key") == Target(
        uri="http://explicit:1234", key="explicit-key"
    )
    # an explicit embedded database wins over a remote one in the environment
    explicit = resolve_target(f"duckdb://{tmp_path / 'mine.duckdb'}")
    assert explicit.embedded and explicit.db == str((tmp_path / "mine.duckdb").resolve())


def test_env_file_can_select_an_embedded_database(tmp_path: Path) -> None:
    write_env(tmp_path, **{URI_ENV: "duckdb://data/state.duckdb"})
    assert resolve_target() == Target(db=str((tmp_path / "data" / "state.duckdb").resolve()))


def test_state_manager_and_runtime_use_the_env_file(tmp_path: Path) -> None:
    write_env(tmp_path, **{URI_ENV: "duckdb://from-dotenv.duckdb"})
    expected = str((tmp_path / "from-dotenv.duckdb").resolve())
    assert expected in repr(StateManager("ns"))
    assert expected in repr(Runtime(namespace="ns", name="rt", nodes=[Node]))


# -- URI forms -----------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", [":memory:", "duckdb://:memory:"])
def test_in_memory(uri: str) -> None:
    assert resolve_target(uri) == Target(db=":memory:")


def test_duckdb_paths_are_resolved_against_the_working_directory(tmp_path: Path) -> None:
    assert resolve_target("duckdb://rel/state.duckdb").db == str((tmp_path / "rel" / "state.duckdb").resolve())
    absolute = tmp_path / "abs.duckdb"
    assert resolve_target(f"duckdb://{absolute}").db == str(absolute.resolve())


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://localhost:8000", "http://localhost:8000"),
        ("https://sm.example.com/", "https://sm.example.com"),
    ],
)
def test_http_uris_are_remote(uri: str, expected: str) -> None:
    target = resolve_target(uri, "k")
    assert not target.embedded
    assert target.uri == expected and target.key == "k" and target.db is None


@pytest.mark.parametrize("uri", ["ftp://host/x", "localhost:8000", "sqlite:///state.db"])
def test_a_bad_uri_scheme_is_a_clear_value_error(uri: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve_target(uri)
    message = str(info.value)
    assert repr(uri) in message
    assert "http" in message and "duckdb://" in message


def test_a_bad_uri_is_refused_by_state_manager_and_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="ftp://host"):
        StateManager("ns", state_manager_uri="ftp://host")
    monkeypatch.setenv(URI_ENV, "ftp://host")
    with pytest.raises(ValueError, match="ftp://host"):
        Runtime(namespace="ns", name="rt", nodes=[Node])


# -- keys ----------------------------------------------------------------------------------------


def test_remote_runtime_without_a_key_fails_at_construction() -> None:
    with pytest.raises(BadRequestError) as info:
        Runtime(namespace="ns", name="rt", nodes=[Node], state_manager_uri="http://localhost:8000")
    assert KEY_ENV in str(info.value)


def test_remote_runtime_takes_its_key_from_the_environment_or_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_env(tmp_path, **{KEY_ENV: "dotenv-key"})
    runtime = Runtime(namespace="ns", name="rt", nodes=[Node], state_manager_uri="http://localhost:8000")
    assert runtime._target.key == "dotenv-key"
    monkeypatch.setenv(KEY_ENV, "shell-key")
    runtime = Runtime(namespace="ns", name="rt", nodes=[Node], state_manager_uri="http://localhost:8000")
    assert runtime._target.key == "shell-key"


def test_state_manager_for_a_remote_uri_is_built_without_contacting_it() -> None:
    manager = StateManager("ns", state_manager_uri="http://127.0.0.1:9/", key="k")
    assert "http://127.0.0.1:9" in repr(manager)


def test_embedded_needs_no_key() -> None:
    runtime = Runtime(namespace="ns", name="rt", nodes=[Node], state_manager_uri=":memory:")
    assert runtime._target.embedded and runtime._target.key is None
