"""The secrets key: from the environment, or generated once into the data dir (0600)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from micro.config.keys import KEY_ENV, Cipher, generate_key, load_key, parse_key
from micro.errors import MicroError


def test_the_environment_wins(tmp_path: Path) -> None:
    key = generate_key()
    assert load_key(tmp_path, {KEY_ENV: base64.b64encode(key).decode() + "\n"}) == key
    assert not (tmp_path / "config.key").exists()


@pytest.mark.parametrize(
    ("text", "why"),
    [("not base64!", "not valid base64"), (base64.b64encode(b"short").decode(), "5 bytes")],
)
def test_a_malformed_key_is_a_clear_error(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as err:
        load_key(tmp_path, {KEY_ENV: text})
    assert KEY_ENV in str(err.value) and "os.urandom(32)" in str(err.value)


def test_a_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_key(data_dir, {})
    path = data_dir / "config.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 32
    assert load_key(data_dir, {}) == first
    assert parse_key(path.read_text(), str(path)) == first


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_key(tmp_path, {})
    (tmp_path / "config.key").chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        load_key(tmp_path, {})


def test_a_corrupt_key_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.key"
    path.write_text("garbage")
    path.chmod(0o600)
    with pytest.raises(ValueError, match=r"config\.key"):
        load_key(tmp_path, {})


def test_ciphertexts_are_bound_to_key_and_place() -> None:
    cipher = Cipher(generate_key())
    blob = cipher.seal(b'"value"', b"ns\x00a.b")
    assert b"value" not in blob
    assert cipher.open(blob, b"ns\x00a.b") == b'"value"'
    assert cipher.seal(b'"value"', b"ns\x00a.b") != blob  # a fresh nonce each time
    for other, aad in [(cipher, b"ns\x00a.c"), (Cipher(generate_key()), b"ns\x00a.b")]:
        with pytest.raises(MicroError) as err:
            other.open(blob, aad)
        assert err.value.code == "internal"
    with pytest.raises(ValueError, match="32 bytes"):
        Cipher(b"short")
