"""The key that encrypts config secrets at rest, and the cipher built from it.

The key is 32 random bytes, given as base64 in ``MICRO_CONFIG_SECRET_KEY`` or, when that is
unset, kept in ``<data_dir>/config.key`` (generated on first use, mode 0600). Losing the key
loses the secrets: back it up with the data dir, or set the variable.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import internal

__all__ = ["KEY_ENV", "KEY_FILE", "Cipher", "generate_key", "load_key", "parse_key"]

KEY_ENV = "MICRO_CONFIG_SECRET_KEY"
KEY_FILE = "config.key"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_HOW = (
    "generate one with: "
    'python -c "import os,base64; print(base64.b64encode(os.urandom(32)).decode())"'
)


def generate_key() -> bytes:
    """32 fresh random bytes."""
    return AESGCM.generate_key(bit_length=256)


def parse_key(text: str, source: str = KEY_ENV) -> bytes:
    """The key in ``text`` (base64 of 32 bytes); ``ValueError`` naming ``source`` if not."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{source} is not valid base64; {_HOW}") from None
    if len(key) != _KEY_BYTES:
        raise ValueError(f"{source} decodes to {len(key)} bytes, not {_KEY_BYTES}; {_HOW}")
    return key


def load_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The secrets key: from ``MICRO_CONFIG_SECRET_KEY`` when set, else from
    ``data_dir/config.key``, which is created (mode 0600) the first time. Raises
    ``ValueError`` for a malformed key or a key file others can read."""
    env = os.environ if environ is None else environ
    text = env.get(KEY_ENV)
    if text:
        return parse_key(text, KEY_ENV)
    path = data_dir / KEY_FILE
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read_key_file(path)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    _sync_dir(data_dir)
    return key


def _read_key_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ValueError(f"{path} is readable by others (mode {mode:04o}); chmod 600 {path}")
    return parse_key(path.read_text(), str(path))


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Cipher:
    """AES-GCM with a random 96-bit nonce per message; ``aad`` binds a ciphertext to where
    it belongs (namespace and path), so it cannot be moved elsewhere unnoticed."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise ValueError(f"the config secret key must be {_KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """``nonce + ciphertext + tag``."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of ``blob``; ``internal`` if the key or the place is wrong."""
        try:
            return self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
        except InvalidTag:
            raise internal(
                "config",
                f"a secret cannot be decrypted: is {KEY_ENV} (or {KEY_FILE}) the key it was "
                "stored with?",
            ) from None
