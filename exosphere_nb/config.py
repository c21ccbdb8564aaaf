"""Where the state manager is: explicit arguments, then the environment, then a `.env` file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

URI_ENV = "EXOSPHERE_STATE_MANAGER_URI"
KEY_ENV = "EXOSPHERE_API_KEY"
DB_ENV = "EXOSPHERE_DB"
DEFAULT_DB = ".exosphere/state.duckdb"

__all__ = ["Target", "resolve_target"]


@dataclass(frozen=True)
class Target:
    """An embedded DuckDB state manager (`db`) or a remote one over HTTP (`uri` + `key`)."""

    db: str | None = None
    uri: str | None = None
    key: str | None = None

    @property
    def embedded(self) -> bool:
        return self.uri is None


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    env_file = Path.cwd() / ".env"
    if env_file.is_file():
        from dotenv import dotenv_values

        return dotenv_values(env_file).get(name) or None
    return None


def resolve_db(db: str | os.PathLike[str] | None = None) -> str:
    value = str(db) if db is not None else (_env(DB_ENV) or DEFAULT_DB)
    if value == ":memory:":
        return value
    return str(Path(value).expanduser().resolve())


def resolve_target(state_manager_uri: str | None = None, key: str | None = None) -> Target:
    """`None` -> env/.env -> embedded default. `duckdb://PATH` or `:memory:` pick an embedded database."""
    uri = state_manager_uri if state_manager_uri is not None else _env(URI_ENV)
    if uri is None or uri in ("", "embedded"):
        return Target(db=resolve_db())
    if uri == ":memory:" or uri == "duckdb://:memory:":
        return Target(db=":memory:")
    if uri.startswith("duckdb://"):
        return Target(db=resolve_db(uri[len("duckdb://") :]))
    if uri.startswith(("http://", "https://")):
        return Target(uri=uri.rstrip("/"), key=key if key is not None else _env(KEY_ENV))
    raise ValueError(
        f"state_manager_uri {uri!r} is not understood: use http(s)://host:port for a remote state manager, "
        "duckdb://PATH or ':memory:' for an embedded one, or nothing for the default embedded database"
    )
