from __future__ import annotations

import base64
import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exosphere_nb.engine.secrets import KEY_ENV_VAR, SecretBox
from exosphere_nb.errors import ExosphereError

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
AAD = "ns/graph/api_key"
SECRET = "sk-very-secret-value"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "exo.duckdb"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip(db: Path) -> None:
    box = SecretBox.for_database(db)
    blob = box.encrypt(SECRET, AAD)
    assert isinstance(blob, bytes)
    assert SECRET.encode() not in blob
    assert box.decrypt(blob, AAD) == SECRET


def test_unicode_and_empty_secrets(db: Path) -> None:
    box = SecretBox.for_database(db)
    for value in ["", "päss wörd ✓", "x" * 10_000]:
        assert box.decrypt(box.encrypt(value, AAD), AAD) == value


def test_nonce_is_random(db: Path) -> None:
    box = SecretBox.for_database(db)
    a, b = box.encrypt(SECRET, AAD), box.encrypt(SECRET, AAD)
    assert a != b
    assert a[:12] != b[:12]


@posix_only
def test_key_file_created_private(db: Path) -> None:
    SecretBox.for_database(db)
    key_file = Path(f"{db}.key")
    assert key_file.exists()
    assert _mode(key_file) == 0o600
    assert len(base64.b64decode(key_file.read_bytes().strip(), validate=True)) == 32
    assert [p.name for p in db.parent.iterdir()] == [key_file.name]  # no temp files left behind


@posix_only
def test_key_file_private_despite_lax_umask(db: Path) -> None:
    old = os.umask(0)
    try:
        SecretBox.for_database(db)
    finally:
        os.umask(old)
    assert _mode(Path(f"{db}.key")) == 0o600


def test_key_file_is_reused(db: Path) -> None:
    blob = SecretBox.for_database(db).encrypt(SECRET, AAD)
    key_before = Path(f"{db}.key").read_bytes()
    assert SecretBox.for_database(str(db)).decrypt(blob, AAD) == SECRET
    assert Path(f"{db}.key").read_bytes() == key_before


def test_raw_key_file_is_accepted(db: Path) -> None:
    key = os.urandom(32)
    Path(f"{db}.key").write_bytes(key)
    os.chmod(f"{db}.key", 0o600)
    blob = SecretBox.for_database(db).encrypt(SECRET, AAD)
    Path(f"{db}.key").write_text(base64.b64encode(key).decode())
    assert SecretBox.for_database(db).decrypt(blob, AAD) == SECRET


def test_malformed_key_file(db: Path) -> None:
    Path(f"{db}.key").write_text("not a key")
    with pytest.raises(ExosphereError, match="is malformed"):
        SecretBox.for_database(db)


@posix_only
def test_readable_key_file_is_tightened(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    SecretBox.for_database(db)
    key_file = Path(f"{db}.key")
    os.chmod(key_file, 0o644)
    with caplog.at_level(logging.WARNING):
        SecretBox.for_database(db)
    assert _mode(key_file) == 0o600
    assert "tightened" in caplog.text


def _assert_clear_failure(exc: pytest.ExceptionInfo[ExosphereError], key_source: str) -> None:
    message = str(exc.value)
    assert "cannot be decrypted with this key" in message
    assert key_source in message
    assert SECRET not in message
    assert exc.value.__cause__ is None


def test_tampered_blob_fails_clearly(db: Path) -> None:
    box = SecretBox.for_database(db)
    blob = bytearray(box.encrypt(SECRET, AAD))
    blob[-1] ^= 1
    with pytest.raises(ExosphereError) as exc:
        box.decrypt(bytes(blob), AAD)
    _assert_clear_failure(exc, f"{db}.key")


def test_truncated_blob_fails_clearly(db: Path) -> None:
    box = SecretBox.for_database(db)
    with pytest.raises(ExosphereError) as exc:
        box.decrypt(b"short", AAD)
    _assert_clear_failure(exc, f"{db}.key")


def test_different_aad_fails(db: Path) -> None:
    box = SecretBox.for_database(db)
    blob = box.encrypt(SECRET, AAD)
    with pytest.raises(ExosphereError) as exc:
        box.decrypt(blob, "ns/other-graph/api_key")
    _assert_clear_failure(exc, f"{db}.key")


def test_wrong_key_fails(tmp_path: Path, db: Path) -> None:
    blob = SecretBox.for_database(db).encrypt(SECRET, AAD)
    other = tmp_path / "other.duckdb"
    with pytest.raises(ExosphereError) as exc:
        SecretBox.for_database(other).decrypt(blob, AAD)
    _assert_clear_failure(exc, f"{other}.key")


def test_replaced_key_file_fails(db: Path) -> None:
    blob = SecretBox.for_database(db).encrypt(SECRET, AAD)
    Path(f"{db}.key").unlink()
    with pytest.raises(ExosphereError, match="cannot be decrypted with this key"):
        SecretBox.for_database(db).decrypt(blob, AAD)


def test_env_var_overrides_key_file(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV_VAR, base64.b64encode(os.urandom(32)).decode())
    blob = SecretBox.for_database(db).encrypt(SECRET, AAD)
    assert not Path(f"{db}.key").exists()
    # any database, even in-memory, opens it while the variable holds the key
    assert SecretBox.for_database(tmp_path / "elsewhere.duckdb").decrypt(blob, AAD) == SECRET
    assert SecretBox.for_database(":memory:").decrypt(blob, AAD) == SECRET
    monkeypatch.delenv(KEY_ENV_VAR)
    with pytest.raises(ExosphereError) as exc:
        SecretBox.for_database(db).decrypt(blob, AAD)
    _assert_clear_failure(exc, f"{db}.key")


def test_env_var_key_error_names_the_variable(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV_VAR, base64.b64encode(os.urandom(32)).decode())
    box = SecretBox.for_database(db)
    with pytest.raises(ExosphereError, match=KEY_ENV_VAR):
        box.decrypt(box.encrypt(SECRET, AAD), "other")


@pytest.mark.parametrize("value", ["not base64!!", base64.b64encode(b"too short").decode()])
def test_bad_env_var_is_rejected_without_echo(value: str, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV_VAR, value)
    with pytest.raises(ExosphereError) as exc:
        SecretBox.for_database(db)
    assert KEY_ENV_VAR in str(exc.value)
    assert value not in str(exc.value)


def test_repr_has_no_key(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = SecretBox.for_database(db)
    key = base64.b64decode(Path(f"{db}.key").read_bytes().strip())
    text = repr(box)
    assert str(Path(f"{db}.key")) in text
    assert base64.b64encode(key).decode() not in text
    assert key.hex() not in text
    env_key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv(KEY_ENV_VAR, env_key)
    assert env_key not in repr(SecretBox.for_database(db))


@pytest.mark.parametrize("db_path", [":memory:", None, ""])
def test_in_memory_uses_ephemeral_key(db_path: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    box = SecretBox.for_database(db_path)
    assert box.decrypt(box.encrypt(SECRET, AAD), AAD) == SECRET
    assert list(tmp_path.iterdir()) == []  # no key file anywhere
    with pytest.raises(ExosphereError, match="ephemeral"):
        SecretBox.for_database(db_path).decrypt(box.encrypt(SECRET, AAD), AAD)


def test_concurrent_creation_agrees_on_one_key(db: Path) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        boxes = list(pool.map(lambda _: SecretBox.for_database(db), range(16)))
    blob = boxes[0].encrypt(SECRET, AAD)
    assert all(box.decrypt(blob, AAD) == SECRET for box in boxes)
    assert [p.name for p in db.parent.iterdir()] == [f"{db.name}.key"]


def test_filesystem_without_hard_links(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(src: object, dst: object) -> None:
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_link)
    blob = SecretBox.for_database(db).encrypt(SECRET, AAD)
    assert SecretBox.for_database(db).decrypt(blob, AAD) == SECRET
    assert [p.name for p in db.parent.iterdir()] == [f"{db.name}.key"]
