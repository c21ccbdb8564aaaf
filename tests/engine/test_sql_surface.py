"""User SQL: read-only SELECTs over the views, no file access (the secrets key file sits beside the DB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exosphere_nb.engine.engine import Engine
from exosphere_nb.errors import BadRequestError


@pytest.mark.parametrize(
    "sql",
    [
        "select * from read_blob('{key}')",
        "select * from read_text('{key}')",
        "select * from read_csv('{key}')",
        "copy (select 1) to '{out}'",
        "attach '{out}' as other",
        "select * from graph_secrets",
        "install httpfs",
    ],
)
async def test_sql_cannot_reach_files_or_secrets(engine: Engine, tmp_path: Path, sql: str) -> None:
    key_file = Path(engine.path + ".key")
    assert key_file.exists()
    with pytest.raises(BadRequestError):
        engine.store.query(sql.format(key=key_file, out=tmp_path / "leak.csv"))
    assert not (tmp_path / "leak.csv").exists()


async def test_sql_views_still_answer(engine: Engine) -> None:
    columns, rows = engine.store.query("select count(*) as n from states where status = ?", ["SUCCESS"])
    assert columns == ["n"] and rows == [(0,)]
