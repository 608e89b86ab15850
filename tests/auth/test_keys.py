"""Signing keys and the key ring: generation, JWKs, signing, rotation and pruning."""

from __future__ import annotations

import base64
import json

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from micro.auth import ACCESS_TTL
from micro.auth.keys import KeyRing, SigningKey, generate_key, public_jwk
from micro.errors import MicroError

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _header(token: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(_b64(token.split(".")[0]))
    return result


def _decode(token: str, jwks: dict[str, object]) -> dict[str, object]:
    kid = _header(token)["kid"]
    keys = jwks["keys"]
    assert isinstance(keys, list)
    (jwk,) = [k for k in keys if k["kid"] == kid]
    result: dict[str, object] = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["EdDSA"])
    return result


def test_generate_key() -> None:
    key = generate_key(T0)
    assert len(key.kid) == 16
    int(key.kid, 16)  # hex
    assert key.created == T0
    assert key.retired == 0.0
    assert key.private_pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    private = serialization.load_pem_private_key(key.private_pem.encode(), None)
    assert isinstance(private, Ed25519PrivateKey)
    assert generate_key(T0).kid != key.kid


def test_signing_key_round_trips_through_json() -> None:
    key = msgspec.structs.replace(generate_key(T0), retired=T0 + 5)
    assert msgspec.json.decode(msgspec.json.encode(key), type=SigningKey) == key


def test_public_jwk_is_the_public_half_only() -> None:
    key = generate_key(T0)
    jwk = public_jwk(key)
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert jwk["kid"] == key.kid
    private = serialization.load_pem_private_key(key.private_pem.encode(), None)
    assert isinstance(private, Ed25519PrivateKey)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert "=" not in jwk["x"]
    assert _b64(jwk["x"]) == raw


def test_ring_needs_a_current_key() -> None:
    with pytest.raises(MicroError) as e:
        KeyRing([])
    assert e.value.status == 500
    assert e.value.detail == "the key ring has no current (unretired) signing key"
    retired = msgspec.structs.replace(generate_key(T0), retired=T0)
    with pytest.raises(MicroError) as e:
        KeyRing([retired])
    assert e.value.detail == "the key ring has no current (unretired) signing key"


def test_ring_refuses_bad_keys() -> None:
    key = generate_key(T0)
    with pytest.raises(MicroError) as e:
        KeyRing([key, key])
    assert e.value.detail == "duplicate signing key ids in the key ring"

    bad = SigningKey("bad", "not a pem", T0)
    with pytest.raises(MicroError) as e:
        KeyRing([bad])
    assert e.value.detail == "signing key 'bad' is not a valid PEM private key"

    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(MicroError) as e:
        KeyRing([SigningKey("rsa", rsa_pem, T0)])
    assert e.value.detail == "signing key 'rsa' is not an Ed25519 key"


def test_current_is_the_newest_unretired_key() -> None:
    old = generate_key(T0)
    newer = generate_key(T0 + 10)
    retired_newest = msgspec.structs.replace(generate_key(T0 + 20), retired=T0 + 30)
    ring = KeyRing([newer, retired_newest, old])
    assert ring.current == newer
    assert ring.keys == [newer, retired_newest, old]


def test_sign_makes_an_eddsa_jwt_with_the_kid() -> None:
    ring = KeyRing([generate_key(T0)])
    token = ring.sign({"sub": "alice", "n": 1})
    assert _header(token) == {"alg": "EdDSA", "kid": ring.current.kid, "typ": "JWT"}
    assert _decode(token, ring.jwks()) == {"sub": "alice", "n": 1}


def test_jwks_lists_every_kept_key_and_is_a_copy() -> None:
    ring = KeyRing([generate_key(T0)])
    jwks = ring.jwks()
    assert jwks == {"keys": [public_jwk(ring.current)]}
    jwks["keys"][0]["x"] = "tampered"
    jwks["keys"].clear()
    assert ring.jwks() == {"keys": [public_jwk(ring.current)]}


def test_rotate_retires_the_previous_key_which_still_verifies() -> None:
    clock = Clock()
    first = generate_key(T0)
    ring = KeyRing([first], clock=clock)
    old_token = ring.sign({"sub": "a"})
    clock.now += 100
    new = ring.rotate()
    assert ring.current == new
    assert new.created == clock.now
    assert new.retired == 0.0
    assert new.kid != first.kid
    assert ring.keys == [msgspec.structs.replace(first, retired=clock.now), new]
    jwks = ring.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [first.kid, new.kid]
    new_token = ring.sign({"sub": "b"})
    assert _header(new_token)["kid"] == new.kid
    assert _decode(old_token, jwks) == {"sub": "a"}
    assert _decode(new_token, jwks) == {"sub": "b"}


def test_prune_drops_only_keys_retired_long_enough() -> None:
    clock = Clock()
    ring = KeyRing([generate_key(T0)], clock=clock)
    first = ring.current
    clock.now += 10
    second = ring.rotate()  # first retired at T0+10
    clock.now += 10
    third = ring.rotate()  # second retired at T0+20
    assert ring.prune(ACCESS_TTL) == []  # nothing old enough
    clock.now = T0 + 10 + ACCESS_TTL
    assert ring.prune(ACCESS_TTL) == []  # exactly keep_for: kept
    clock.now += 1
    dropped = ring.prune(ACCESS_TTL)
    assert [k.kid for k in dropped] == [first.kid]
    assert [k.kid for k in ring.keys] == [second.kid, third.kid]
    assert [k["kid"] for k in ring.jwks()["keys"]] == [second.kid, third.kid]
    clock.now += 10 * ACCESS_TTL
    assert [k.kid for k in ring.prune(ACCESS_TTL)] == [second.kid]
    assert ring.keys == [third]  # the current key is never dropped
    assert ring.current == third
    assert _decode(ring.sign({"sub": "c"}), ring.jwks()) == {"sub": "c"}


def test_ring_rebuilt_from_persisted_keys_signs_and_publishes_the_same() -> None:
    clock = Clock()
    ring = KeyRing([generate_key(T0)], clock=clock)
    clock.now += 5
    ring.rotate()
    stored = msgspec.json.encode(ring.keys)
    again = KeyRing(msgspec.json.decode(stored, type=list[SigningKey]), clock=clock)
    assert again.current == ring.current
    assert again.jwks() == ring.jwks()
    assert _decode(again.sign({"sub": "x"}), ring.jwks()) == {"sub": "x"}
