"""Signing keys: Ed25519 keys that sign access tokens, and the JWKS that publishes them.

A :class:`SigningKey` is a key id (``kid``), its private key (PKCS#8 PEM), when it was made
and when it stopped signing (``retired``; ``0`` while it is the current key). A
:class:`KeyRing` holds the keys the auth service keeps:

- the **current** key — the newest key that is not retired — signs every new token
  (:meth:`KeyRing.sign`: a JWT with ``alg: EdDSA`` and the key's ``kid`` in its header);
- :meth:`KeyRing.rotate` makes a new current key and retires the previous one, which still
  *verifies*: it stays in the JWKS (:meth:`KeyRing.jwks`) until :meth:`KeyRing.prune` drops
  it, once every token it signed has expired (``keep_for`` = the longest token lifetime).

The JWKS holds only public keys (RFC 8037 ``OKP``/``Ed25519`` JWKs); private keys never leave
the ring. The loaded key objects are cached per ``kid``, so signing does not parse PEM.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from micro.auth import ID
from micro.errors import internal

__all__ = ["KeyRing", "SigningKey", "generate_key", "public_jwk"]


class SigningKey(msgspec.Struct, frozen=True):
    """One Ed25519 signing key, as the auth service persists it."""

    kid: str
    """Random, URL-safe key id (16 hex characters), the ``kid`` of the tokens it signs."""
    private_pem: str
    """PKCS#8 PEM of the Ed25519 private key."""
    created: float
    """When the key was made (Unix seconds)."""
    retired: float = 0.0
    """When it stopped signing (Unix seconds); ``0`` while it is the current key."""


def generate_key(now: float) -> SigningKey:
    """A new Ed25519 signing key with a random ``kid``, created at ``now``."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")
    return SigningKey(kid=secrets.token_hex(8), private_pem=pem, created=now)


def _load(key: SigningKey) -> Ed25519PrivateKey:
    try:
        private = serialization.load_pem_private_key(key.private_pem.encode("ascii"), None)
    except (ValueError, TypeError, UnicodeEncodeError) as e:
        raise internal(ID, f"signing key {key.kid!r} is not a valid PEM private key") from e
    if not isinstance(private, Ed25519PrivateKey):
        raise internal(ID, f"signing key {key.kid!r} is not an Ed25519 key")
    return private


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwk(kid: str, private: Ed25519PrivateKey) -> dict[str, str]:
    raw = private.public_key().public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(raw),
        "kid": kid,
        "alg": "EdDSA",
        "use": "sig",
    }


def public_jwk(key: SigningKey) -> dict[str, str]:
    """The public half of ``key`` as a JWK (RFC 8037):
    ``{"kty": "OKP", "crv": "Ed25519", "x": ..., "kid": ..., "alg": "EdDSA", "use": "sig"}``."""
    return _jwk(key.kid, _load(key))


class KeyRing:
    """The signing keys of the auth service: one current key signs, the others verify.

    ``keys`` must hold at least one key that is not retired; the newest such key (by
    ``created``) is the current one. Keys are kept in the order given (new keys are appended).
    """

    def __init__(
        self, keys: Sequence[SigningKey], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._keys: list[SigningKey] = list(keys)
        kids = [k.kid for k in self._keys]
        if len(set(kids)) != len(kids):
            raise internal(ID, "duplicate signing key ids in the key ring")
        self._loaded: dict[str, Ed25519PrivateKey] = {k.kid: _load(k) for k in self._keys}
        self._jwks: dict[str, Any] | None = None
        self._current = self._pick_current()

    def _pick_current(self) -> SigningKey:
        active = [k for k in self._keys if not k.retired]
        if not active:
            raise internal(ID, "the key ring has no current (unretired) signing key")
        return max(active, key=lambda k: k.created)

    @property
    def keys(self) -> list[SigningKey]:
        """Every kept key, current and retired (a copy: what the auth service persists)."""
        return list(self._keys)

    @property
    def current(self) -> SigningKey:
        """The key that signs new tokens."""
        return self._current

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A JWT of ``claims`` signed by the current key (``alg: EdDSA``, ``kid`` header)."""
        key = self._current
        return jwt.encode(
            dict(claims),
            self._loaded[key.kid],
            algorithm="EdDSA",
            headers={"kid": key.kid, "typ": "JWT"},
        )

    def jwks(self) -> dict[str, Any]:
        """The public keys of every kept key: ``{"keys": [jwk, ...]}``."""
        if self._jwks is None:
            self._jwks = {"keys": [_jwk(k.kid, self._loaded[k.kid]) for k in self._keys]}
        # Hand out copies so callers cannot change the cached set.
        return {"keys": [dict(k) for k in self._jwks["keys"]]}

    def rotate(self) -> SigningKey:
        """Make a new current key and retire the previous one (it still verifies). Returns
        the new key."""
        now = self._clock()
        old = self._current
        new = generate_key(now)
        while new.kid in self._loaded:  # pragma: no cover - 64 random bits colliding
            new = generate_key(now)
        self._keys = [
            msgspec.structs.replace(k, retired=now) if k.kid == old.kid else k for k in self._keys
        ]
        self._keys.append(new)
        self._loaded[new.kid] = _load(new)
        self._current = new
        self._jwks = None
        return new

    def prune(self, keep_for: float) -> list[SigningKey]:
        """Drop the keys retired more than ``keep_for`` seconds ago (``keep_for``: the
        longest access token lifetime, so no live token was signed by a dropped key).
        The current key is never dropped. Returns the dropped keys."""
        cutoff = self._clock() - keep_for
        dropped = [k for k in self._keys if k.retired and k.retired < cutoff]
        if dropped:
            gone = {k.kid for k in dropped}
            self._keys = [k for k in self._keys if k.kid not in gone]
            for kid in gone:
                self._loaded.pop(kid, None)
            self._jwks = None
        return dropped
