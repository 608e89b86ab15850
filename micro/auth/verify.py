"""Local verification of access tokens against the auth service's public keys (JWKS).

A :class:`Verifier` knows a set of Ed25519 public keys (a JWKS, see
:meth:`micro.auth.keys.KeyRing.jwks`) and turns an access token into its
:class:`~micro.auth.Claims` without any I/O, or refuses it with ``unauthorized`` (401) and a
detail that says precisely why. The checks, in order:

1. longer than :data:`~micro.auth.MAX_TOKEN` characters: ``token is too long`` (nothing is
   parsed);
2. not three base64url segments, or a header that is not a JSON object: ``malformed token``;
3. a header ``alg`` other than ``EdDSA`` (``none``, ``HS256`` — key confusion —, ``RS256``,
   ...): ``token algorithm must be EdDSA, not '<alg>'``;
4. no ``kid``, or one not in the JWKS: ``token signed by an unknown key``;
5. a signature that does not verify: ``invalid token signature``;
6. a payload that is not a JSON object, or claims of the wrong type: ``malformed token``
   (with what is wrong);
7. a missing ``sub``, ``namespace``, ``exp`` or ``iat`` claim: ``token has no '<name>' claim``;
8. ``iss`` other than :data:`~micro.auth.ISSUER`: ``token issuer must be 'micro'``;
9. ``exp`` in the past (beyond ``leeway`` seconds): ``token expired``; ``nbf`` or ``iat`` in
   the future (beyond ``leeway``): ``token not yet valid``;
10. a ``namespace`` argument that differs from the token's:
    ``token is for namespace X, not Y``.

Time comes from the injectable ``clock``. Tokens that verified are cached (a bounded LRU of
token string to claims); a cached token is only checked again for expiry and namespace, so
a repeated token costs a dictionary lookup. Failures are never cached. :meth:`Verifier.update`
replaces the keys and forgets cached tokens signed by keys no longer present.

:meth:`Verifier.verify_async` also handles key rotation: when a token names an unknown
``kid`` and a ``fetch`` coroutine was given, it fetches the JWKS again (at most once every
``refetch_interval`` seconds, concurrent callers sharing one fetch) and retries once.

Returned claims are shared with the cache: treat them as read-only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from micro.auth import ID, ISSUER, MAX_TOKEN, Claims
from micro.errors import MicroError, bad_request, unauthorized, unavailable

__all__ = [
    "ALGORITHM",
    "EXPIRED",
    "INVALID_SIGNATURE",
    "MALFORMED",
    "NOT_YET_VALID",
    "TOO_LONG",
    "UNKNOWN_KEY",
    "Verifier",
    "parse_jwks",
]

ALGORITHM = "EdDSA"
"""The only accepted token algorithm."""

TOO_LONG = "token is too long"
MALFORMED = "malformed token"
UNKNOWN_KEY = "token signed by an unknown key"
INVALID_SIGNATURE = "invalid token signature"
EXPIRED = "token expired"
NOT_YET_VALID = "token not yet valid"

_REQUIRED = ("sub", "namespace", "exp", "iat")
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_OPTIONS: jwt.types.Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_iss": False,
    "verify_aud": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parse_jwks(jwks: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 signing keys of a JWKS, by ``kid``. Keys of other types or uses are
    skipped; a JWKS that is not ``{"keys": [...]}`` or an Ed25519 key with a bad ``x``
    raises ``bad_request``."""
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(entries, list):
        raise bad_request(ID, "invalid JWKS: expected an object with a 'keys' list")
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise bad_request(ID, "invalid JWKS: every key must be an object")
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
            continue
        kid, x = entry.get("kid"), entry.get("x")
        if not isinstance(kid, str) or not kid or not isinstance(x, str):
            raise bad_request(ID, "invalid JWKS: an Ed25519 key needs string 'kid' and 'x'")
        try:
            keys[kid] = Ed25519PublicKey.from_public_bytes(_b64decode(x))
        except (ValueError, binascii.Error) as e:
            raise bad_request(ID, f"invalid JWKS: key {kid!r} has a bad 'x'") from e
    return keys


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Verifier:
    """Verifies access tokens locally against a JWKS."""

    def __init__(
        self,
        jwks: Mapping[str, Any] | None = None,
        *,
        fetch: Callable[[], Awaitable[Mapping[str, Any]]] | None = None,
        clock: Callable[[], float] = time.time,
        leeway: float = 5.0,
        refetch_interval: float = 30.0,
        cache_size: int = 10_000,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._leeway = leeway
        self._refetch_interval = refetch_interval
        self._cache_size = max(0, cache_size)
        # token -> (claims, exp + leeway, kid)
        self._cache: OrderedDict[str, tuple[Claims, float, str]] = OrderedDict()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._last_fetch: float | None = None
        self._inflight: asyncio.Future[None] | None = None
        if jwks is not None:
            self.update(jwks)

    @property
    def kids(self) -> list[str]:
        """The ids of the known keys."""
        return list(self._keys)

    @property
    def cached(self) -> int:
        """How many verified tokens the cache holds."""
        return len(self._cache)

    def update(self, jwks: Mapping[str, Any]) -> None:
        """Replace the known keys with those of ``jwks``; cached tokens signed by keys that
        are gone are forgotten."""
        keys = parse_jwks(jwks)
        self._keys = keys
        stale = [t for t, (_, _, kid) in self._cache.items() if kid not in keys]
        for token in stale:
            del self._cache[token]

    def verify(self, token: str, *, namespace: str | None = None) -> Claims:
        """The claims of ``token``, or ``unauthorized`` saying why it is refused. Synchronous,
        no I/O; ``namespace``, when given, must be the token's."""
        if len(token) > MAX_TOKEN:
            raise unauthorized(ID, TOO_LONG)
        hit = self._cache.get(token)
        if hit is not None:
            claims, expires, _ = hit
            if self._clock() > expires:
                del self._cache[token]
                raise unauthorized(ID, EXPIRED)
            self._cache.move_to_end(token)
        else:
            claims = self._verify_full(token)
        if namespace is not None and namespace != claims.namespace:
            raise unauthorized(ID, f"token is for namespace {claims.namespace}, not {namespace}")
        return claims

    async def verify_async(self, token: str, *, namespace: str | None = None) -> Claims:
        """Like :meth:`verify`, but a token signed by an unknown key makes it fetch the JWKS
        again (when ``fetch`` was given and the last fetch is at least ``refetch_interval``
        seconds old) and retry once."""
        try:
            return self.verify(token, namespace=namespace)
        except MicroError as e:
            if e.detail != UNKNOWN_KEY or self._fetch is None:
                raise
            if not await self._refetch():
                raise
        return self.verify(token, namespace=namespace)

    async def _refetch(self) -> bool:
        """Fetch the JWKS (or join the fetch in flight). False when one was fetched too
        recently to try again."""
        inflight = self._inflight
        if inflight is None:
            now = self._clock()
            if self._last_fetch is not None and now - self._last_fetch < self._refetch_interval:
                return False
            self._last_fetch = now
            inflight = asyncio.ensure_future(self._do_fetch())
            # Retrieve the outcome even when every waiter was cancelled.
            inflight.add_done_callback(_consume)
            self._inflight = inflight
        await asyncio.shield(inflight)
        return True

    async def _do_fetch(self) -> None:
        assert self._fetch is not None
        try:
            jwks = await self._fetch()
            self.update(jwks)
        except MicroError:
            raise
        except Exception as e:
            raise unavailable(ID, f"cannot fetch the token signing keys: {e}") from e
        finally:
            self._inflight = None

    def _verify_full(self, token: str) -> Claims:
        if not _SHAPE.fullmatch(token):
            raise unauthorized(ID, MALFORMED)
        try:
            header = msgspec.json.decode(_b64decode(token[: token.index(".")]))
        except (msgspec.DecodeError, binascii.Error, ValueError):
            raise unauthorized(ID, MALFORMED) from None
        if not isinstance(header, dict):
            raise unauthorized(ID, MALFORMED)
        alg = header.get("alg")
        if alg != ALGORITHM:
            shown = repr(alg) if isinstance(alg, str) and len(alg) <= 32 else "another"
            raise unauthorized(ID, f"token algorithm must be {ALGORITHM}, not {shown}")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or not isinstance(kid, str):
            raise unauthorized(ID, UNKNOWN_KEY)
        try:
            payload = jwt.decode(token, key, algorithms=[ALGORITHM], options=_OPTIONS)
        except jwt.InvalidSignatureError:
            raise unauthorized(ID, INVALID_SIGNATURE) from None
        except jwt.InvalidAlgorithmError:  # pragma: no cover - the header was checked
            raise unauthorized(ID, f"token algorithm must be {ALGORITHM}") from None
        except jwt.PyJWTError:
            raise unauthorized(ID, MALFORMED) from None
        claims = self._check_claims(payload)
        if self._cache_size:
            self._cache[token] = (claims, claims.exp + self._leeway, kid)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return claims

    def _check_claims(self, payload: dict[str, Any]) -> Claims:
        for name in _REQUIRED:
            if name not in payload:
                raise unauthorized(ID, f"token has no {name!r} claim")
        try:
            claims = msgspec.convert(payload, Claims)
        except msgspec.ValidationError as e:
            raise unauthorized(ID, f"{MALFORMED}: {e}") from None
        nbf = payload.get("nbf")
        for name, value in (("exp", payload["exp"]), ("iat", payload["iat"]), ("nbf", nbf)):
            if (value is not None or name != "nbf") and not _number(value):
                raise unauthorized(ID, f"{MALFORMED}: {name!r} must be a finite number")
        if not claims.sub or not claims.namespace:
            raise unauthorized(ID, f"{MALFORMED}: empty 'sub' or 'namespace'")
        if payload.get("iss") != ISSUER:
            raise unauthorized(ID, f"token issuer must be {ISSUER!r}")
        now = self._clock()
        if now > claims.exp + self._leeway:
            raise unauthorized(ID, EXPIRED)
        if claims.iat > now + self._leeway or (nbf is not None and nbf > now + self._leeway):
            raise unauthorized(ID, NOT_YET_VALID)
        return claims


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
