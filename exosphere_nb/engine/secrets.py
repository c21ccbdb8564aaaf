"""AES-GCM encryption of graph secrets at rest.

The key lives beside the database (`<db>.key`, mode 0600) unless EXOSPHERE_SECRETS_KEY holds one.
Losing the key file makes the stored secrets unreadable, which is the point: a copied database
alone reveals nothing.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from exosphere_nb.errors import ExosphereError

__all__ = ["KEY_ENV_VAR", "SecretBox"]

KEY_ENV_VAR = "EXOSPHERE_SECRETS_KEY"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16

_log = logging.getLogger(__name__)


class SecretBox:
    __slots__ = ("_aead", "_source")

    def __init__(self, key: bytes, source: str) -> None:
        # `source` says where the key came from, for error messages; it never holds key material.
        if len(key) != _KEY_BYTES:
            raise ExosphereError(f"secrets key from {source} must be {_KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self._source = source

    @classmethod
    def for_database(cls, db_path: str | os.PathLike[str] | None) -> SecretBox:
        env_key = os.environ.get(KEY_ENV_VAR, "").strip()
        if env_key:
            return cls(_decode_env_key(env_key), f"the {KEY_ENV_VAR} environment variable")
        path = os.fsdecode(db_path) if db_path is not None else ""
        if not path or path.startswith(":memory:"):
            return cls(os.urandom(_KEY_BYTES), "an ephemeral in-memory key")
        key_path = Path(path + ".key")
        return cls(_load_or_create(key_path), f"key file {str(key_path)!r}")

    def encrypt(self, plaintext: str, aad: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), aad.encode())

    def decrypt(self, blob: bytes, aad: str) -> str:
        blob = bytes(blob)
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise self._undecryptable(aad)
        try:
            plain = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad.encode())
        except InvalidTag:
            raise self._undecryptable(aad) from None  # the chained InvalidTag adds nothing
        return plain.decode()

    def _undecryptable(self, aad: str) -> ExosphereError:
        # aad is the secret's place (ns/graph/name), not the secret itself: safe and useful to name.
        return ExosphereError(
            f"secret {aad!r} cannot be decrypted with this key ({self._source}): the key differs from the "
            "one it was stored with, or the stored secret was altered; restore the original key or store "
            "the secret again"
        )

    def __repr__(self) -> str:
        return f"SecretBox(key from {self._source})"


def _decode_env_key(value: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        # Never echo the value: a near-miss may still be most of a real key.
        raise ExosphereError(f"{KEY_ENV_VAR} must be the base64 encoding of {_KEY_BYTES} bytes")
    return key


def _load_or_create(key_path: Path) -> bytes:
    try:
        return _read_key(key_path)
    except FileNotFoundError:
        pass
    key = os.urandom(_KEY_BYTES)
    # Write a private temp file, then hard-link it into place: the link appears with its full
    # content or not at all, so a process racing us never reads a half-written key, and O_EXCL
    # semantics of link() mean exactly one key wins.
    tmp = key_path.with_name(f".{key_path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    _write_private(tmp, base64.b64encode(key) + b"\n")
    try:
        os.link(tmp, key_path)
    except FileExistsError:
        return _read_key(key_path)
    except OSError:
        # No hard links on this filesystem: fall back to an exclusive create in place.
        try:
            _write_private(key_path, base64.b64encode(key) + b"\n")
        except FileExistsError:
            return _read_key(key_path)
    finally:
        tmp.unlink(missing_ok=True)
    return key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)  # a truncated key file would be read back as malformed forever
        raise
    os.close(fd)


def _read_key(key_path: Path) -> bytes:
    _tighten(key_path)
    raw = key_path.read_bytes()
    if len(raw) == _KEY_BYTES:
        return raw
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        raise ExosphereError(
            f"key file {str(key_path)!r} is malformed: expected {_KEY_BYTES} raw bytes or their base64 encoding"
        )
    return key


def _tighten(key_path: Path) -> None:
    if os.name != "posix":
        return
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        try:
            key_path.chmod(0o600)
        except OSError as exc:
            _log.warning("key file %s is readable by others (mode %o), could not tighten: %s", key_path, mode, exc)
        else:
            _log.warning("key file %s was readable by others (mode %o); tightened to 0600", key_path, mode)
