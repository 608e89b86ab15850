"""Local access-token verification: every attack refused with its precise reason, key
rotation, JWKS refetching and the verified-token cache (all on a fake clock)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from micro.auth import ACCESS_TTL, ISSUER, MAX_TOKEN, Claims
from micro.auth.keys import KeyRing, generate_key
from micro.auth.verify import Verifier, parse_jwks
from micro.errors import MicroError

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode())


def claims(now: float = T0, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "alice",
        "namespace": "micro",
        "type": "user",
        "scopes": ["admin"],
        "metadata": {"team": "a"},
        "exp": now + ACCESS_TTL,
        "iat": now,
        "iss": ISSUER,
        "jti": "j1",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


class Env:
    def __init__(self) -> None:
        self.clock = Clock()
        self.ring = KeyRing([generate_key(T0)], clock=self.clock)
        self.verifier = Verifier(self.ring.jwks(), clock=self.clock)

    @property
    def kid(self) -> str:
        return self.ring.current.kid

    def token(self, **changes: Any) -> str:
        return self.ring.sign(claims(self.clock.now, **changes))

    def refused(self, token: str, namespace: str | None = None) -> str:
        with pytest.raises(MicroError) as e:
            self.verifier.verify(token, namespace=namespace)
        assert (e.value.id, e.value.code, e.value.status) == ("auth", "unauthorized", 401)
        return e.value.detail


@pytest.fixture
def env() -> Env:
    return Env()


# -- the happy path --------------------------------------------------------------------------


def test_valid_token_gives_its_claims(env: Env) -> None:
    got = env.verifier.verify(env.token())
    assert got == Claims(
        sub="alice",
        namespace="micro",
        type="user",
        scopes=["admin"],
        metadata={"team": "a"},
        exp=T0 + ACCESS_TTL,
        iat=T0,
        jti="j1",
    )
    assert env.verifier.verify(env.token(), namespace="micro") == got


def test_leeway_allows_small_clock_skew(env: Env) -> None:
    token = env.token(exp=T0 + 10, iat=T0 + 4, nbf=T0 + 4)
    assert env.verifier.verify(token).sub == "alice"  # iat/nbf 4 s ahead: within 5 s
    env.clock.now = T0 + 15  # exp 5 s past: within leeway
    assert env.verifier.verify(env.token(exp=T0 + 10, iat=T0)).sub == "alice"


# -- attacks, each with its exact reason -----------------------------------------------------


def test_alg_none(env: Env) -> None:
    header = b64json({"alg": "none", "typ": "JWT", "kid": env.kid})
    token = f"{header}.{b64json(claims())}."
    assert env.refused(token) == "token algorithm must be EdDSA, not 'none'"


def test_hs256_signed_with_the_public_key_key_confusion(env: Env) -> None:
    jwk = env.ring.jwks()["keys"][0]
    header = b64json({"alg": "HS256", "typ": "JWT", "kid": env.kid})
    signing_input = f"{header}.{b64json(claims())}"
    for secret in (base64.urlsafe_b64decode(jwk["x"] + "="), jwk["x"].encode()):
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{b64(sig)}"
        assert env.refused(token) == "token algorithm must be EdDSA, not 'HS256'"


def test_rs256(env: Env) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": env.kid})
    assert env.refused(token) == "token algorithm must be EdDSA, not 'RS256'"


def test_missing_or_absurd_alg(env: Env) -> None:
    body = b64json(claims())
    no_alg = f"{b64json({'kid': env.kid})}.{body}.c2ln"
    assert env.refused(no_alg) == "token algorithm must be EdDSA, not another"
    long_alg = f"{b64json({'alg': 'E' * 100, 'kid': env.kid})}.{body}.c2ln"
    assert env.refused(long_alg) == "token algorithm must be EdDSA, not another"
    lower = f"{b64json({'alg': 'eddsa', 'kid': env.kid})}.{body}.c2ln"
    assert env.refused(lower) == "token algorithm must be EdDSA, not 'eddsa'"


def test_foreign_ed25519_key_with_a_known_kid(env: Env) -> None:
    foreign = Ed25519PrivateKey.generate()
    token = jwt.encode(claims(), foreign, algorithm="EdDSA", headers={"kid": env.kid})
    assert env.refused(token) == "invalid token signature"


def test_unknown_kid(env: Env) -> None:
    other = KeyRing([generate_key(T0)])
    assert env.refused(other.sign(claims())) == "token signed by an unknown key"


def test_missing_or_non_string_kid(env: Env) -> None:
    key = serialization.load_pem_private_key(env.ring.current.private_pem.encode(), None)
    assert isinstance(key, Ed25519PrivateKey)
    no_kid = jwt.encode(claims(), key, algorithm="EdDSA")
    assert env.refused(no_kid) == "token signed by an unknown key"
    signing_input = f"{b64json({'alg': 'EdDSA', 'kid': 7})}.{b64json(claims())}"
    number_kid = f"{signing_input}.{b64(key.sign(signing_input.encode()))}"
    assert env.refused(number_kid) == "token signed by an unknown key"


def test_expired(env: Env) -> None:
    token = env.token(exp=T0 - 6)
    assert env.refused(token) == "token expired"


def test_expires_with_the_clock(env: Env) -> None:
    token = env.token()
    env.clock.now = T0 + ACCESS_TTL + 5.5
    assert env.refused(token) == "token expired"


def test_nbf_in_the_future(env: Env) -> None:
    assert env.refused(env.token(nbf=T0 + 60)) == "token not yet valid"


def test_iat_in_the_future(env: Env) -> None:
    assert env.refused(env.token(iat=T0 + 60)) == "token not yet valid"


def test_wrong_or_missing_issuer(env: Env) -> None:
    assert env.refused(env.token(iss="evil")) == "token issuer must be 'micro'"
    assert env.refused(env.token(iss=None)) == "token issuer must be 'micro'"


@pytest.mark.parametrize("name", ["sub", "namespace", "exp", "iat"])
def test_missing_claim(env: Env, name: str) -> None:
    assert env.refused(env.token(**{name: None})) == f"token has no {name!r} claim"


def test_namespace_mismatch(env: Env) -> None:
    token = env.token(namespace="tenant-a")
    assert (
        env.refused(token, namespace="tenant-b") == "token is for namespace tenant-a, not tenant-b"
    )
    assert env.verifier.verify(token).namespace == "tenant-a"


def test_oversized(env: Env) -> None:
    assert env.refused("a" * (MAX_TOKEN + 1)) == "token is too long"
    big = env.token(metadata={"pad": "x" * MAX_TOKEN})  # genuinely signed, still refused
    assert len(big) > MAX_TOKEN
    assert env.refused(big) == "token is too long"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.$$$.%%%",
        "eyJ.eyJ.sig",  # not JSON
        f"{b64(b'not json')}.{b64json({})}.c2ln",
        f"{b64json(['alg', 'EdDSA'])}.{b64json({})}.c2ln",  # header not an object
        f"{b64(bytes([0xFF, 0xFE]))}.{b64json({})}.c2ln",  # not UTF-8
        "a b.c d.e f",
        ".payload.sig",
    ],
)
def test_malformed_strings(env: Env, token: str) -> None:
    assert env.refused(token) == "malformed token"


def test_four_segment_token(env: Env) -> None:
    assert env.refused(env.token() + ".extra") == "malformed token"


def test_payload_not_a_json_object(env: Env) -> None:
    key = serialization.load_pem_private_key(env.ring.current.private_pem.encode(), None)
    assert isinstance(key, Ed25519PrivateKey)
    headers = {"kid": env.kid}
    for payload in (b"garbage", b"[1, 2]", b'"text"'):
        token = jwt.api_jws.encode(payload, key, algorithm="EdDSA", headers=headers)
        assert env.refused(token) == "malformed token"


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"scopes": "admin"}, "malformed token: Expected `array`, got `str` - at `$.scopes`"),
        ({"exp": "soon"}, "malformed token: Expected `float`, got `str` - at `$.exp`"),
        ({"exp": True}, "malformed token: Expected `float`, got `bool` - at `$.exp`"),
        ({"sub": 42}, "malformed token: Expected `str`, got `int` - at `$.sub`"),
        (
            {"metadata": {"k": 1}},
            "malformed token: Expected `str`, got `int` - at `$.metadata[...]`",
        ),
        ({"nbf": "later"}, "malformed token: 'nbf' must be a finite number"),
        ({"nbf": True}, "malformed token: 'nbf' must be a finite number"),
        ({"exp": float("inf")}, "malformed token: 'exp' must be a finite number"),
        ({"sub": ""}, "malformed token: empty 'sub' or 'namespace'"),
        ({"namespace": ""}, "malformed token: empty 'sub' or 'namespace'"),
    ],
)
def test_wrong_claim_types(env: Env, changes: dict[str, Any], detail: str) -> None:
    assert env.refused(env.token(**changes)) == detail


def test_tampered_payload(env: Env) -> None:
    header, payload, sig = env.token().split(".")
    forged = b64json(claims(sub="root", scopes=["admin"]))
    assert env.refused(f"{header}.{forged}.{sig}") == "invalid token signature"
    # Flip one byte of the encoded payload (a middle character: all six bits count).
    mid = len(payload) // 2
    flipped = payload[:mid] + ("A" if payload[mid] != "A" else "B") + payload[mid + 1 :]
    assert env.refused(f"{header}.{flipped}.{sig}") == "invalid token signature"


def test_tampered_or_missing_signature(env: Env) -> None:
    header, payload, sig = env.token().split(".")
    mid = len(sig) // 2
    flipped = sig[:mid] + ("A" if sig[mid] != "A" else "B") + sig[mid + 1 :]
    assert env.refused(f"{header}.{payload}.{flipped}") == "invalid token signature"
    assert env.refused(f"{header}.{payload}.") == "invalid token signature"


def test_a_failure_does_not_poison_a_valid_token(env: Env) -> None:
    token = env.token()
    assert env.refused(token, namespace="other") == "token is for namespace micro, not other"
    assert env.verifier.verify(token).sub == "alice"


# -- key rotation ----------------------------------------------------------------------------


def test_retired_key_verifies_until_pruned(env: Env) -> None:
    old = env.ring.sign(claims(exp=T0 + 10 * ACCESS_TTL))
    assert env.verifier.verify(old).sub == "alice"  # now cached too
    env.ring.rotate()
    new = env.token()
    assert env.refused(new) == "token signed by an unknown key"  # JWKS not updated yet
    env.verifier.update(env.ring.jwks())
    assert env.verifier.verify(old).sub == "alice"
    assert env.verifier.verify(new).sub == "alice"
    env.clock.now += ACCESS_TTL + 1
    assert len(env.ring.prune(ACCESS_TTL)) == 1
    env.verifier.update(env.ring.jwks())
    assert env.refused(old) == "token signed by an unknown key"  # the cache forgot it too
    assert env.verifier.kids == [env.kid]


def test_parse_jwks() -> None:
    ring = KeyRing([generate_key(T0)])
    jwk = ring.jwks()["keys"][0]
    other = [{"kty": "RSA", "kid": "r", "n": "x", "e": "AQAB"}, {**jwk, "kid": "enc", "use": "enc"}]
    assert list(parse_jwks({"keys": [*other, jwk]})) == [jwk["kid"]]
    assert parse_jwks({"keys": []}) == {}
    bad: list[Mapping[str, Any]] = [
        {},
        {"keys": "no"},
        {"keys": ["no"]},
        {"keys": [{**jwk, "x": 5}]},
        {"keys": [{**jwk, "x": b64(b"short")}]},
    ]
    for jwks in bad:
        with pytest.raises(MicroError) as e:
            parse_jwks(jwks)
        assert e.value.code == "bad_request"
        assert e.value.detail.startswith("invalid JWKS: ")


# -- refetching the JWKS on an unknown key ---------------------------------------------------


class Fetcher:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def __call__(self) -> Mapping[str, Any]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.ring.jwks()


async def test_verify_async_refetches_at_most_once_per_interval(env: Env) -> None:
    fetch = Fetcher(env.ring)
    verifier = Verifier(clock=env.clock, fetch=fetch, refetch_interval=30)
    token = env.token()
    with pytest.raises(MicroError) as e:
        verifier.verify(token)  # the synchronous path never fetches
    assert e.value.detail == "token signed by an unknown key"
    assert fetch.calls == 0

    assert (await verifier.verify_async(token)).sub == "alice"
    assert fetch.calls == 1
    assert (await verifier.verify_async(token)).sub == "alice"  # known now: no fetch
    assert fetch.calls == 1

    env.ring.rotate()
    rotated = env.token()
    env.clock.now += 29
    for _ in range(3):  # too soon to fetch again
        with pytest.raises(MicroError) as e:
            await verifier.verify_async(rotated)
        assert e.value.detail == "token signed by an unknown key"
    assert fetch.calls == 1

    env.clock.now += 1
    assert (await verifier.verify_async(rotated)).sub == "alice"
    assert fetch.calls == 2

    stranger = KeyRing([generate_key(T0)]).sign(claims(env.clock.now))
    env.clock.now += 30
    with pytest.raises(MicroError) as e:  # fetched, retried once, still unknown
        await verifier.verify_async(stranger)
    assert e.value.detail == "token signed by an unknown key"
    assert fetch.calls == 3
    with pytest.raises(MicroError):
        await verifier.verify_async(stranger)
    assert fetch.calls == 3


async def test_verify_async_does_not_fetch_for_other_failures(env: Env) -> None:
    fetch = Fetcher(env.ring)
    verifier = Verifier(env.ring.jwks(), clock=env.clock, fetch=fetch)
    with pytest.raises(MicroError) as e:
        await verifier.verify_async(env.token(exp=T0 - 60))
    assert e.value.detail == "token expired"
    with pytest.raises(MicroError) as e:
        await verifier.verify_async("junk")
    assert e.value.detail == "malformed token"
    assert fetch.calls == 0


async def test_concurrent_unknown_keys_share_one_fetch(env: Env) -> None:
    fetch = Fetcher(env.ring)
    fetch.gate = asyncio.Event()
    verifier = Verifier(clock=env.clock, fetch=fetch)
    token = env.token()
    tasks = [asyncio.create_task(verifier.verify_async(token)) for _ in range(5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    fetch.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert [c.sub for c in results] == ["alice"] * 5
    assert fetch.calls == 1


async def test_fetch_failure_is_unavailable(env: Env) -> None:
    fetch = Fetcher(env.ring)
    fetch.fail = ConnectionError("refused")
    verifier = Verifier(clock=env.clock, fetch=fetch)
    with pytest.raises(MicroError) as e:
        await verifier.verify_async(env.token())
    assert (e.value.code, e.value.detail) == (
        "unavailable",
        "cannot fetch the token signing keys: refused",
    )
    # The interval still applies after a failure; later the fetch works again.
    fetch.fail = None
    with pytest.raises(MicroError) as e:
        await verifier.verify_async(env.token())
    assert e.value.detail == "token signed by an unknown key"
    env.clock.now += 30
    assert (await verifier.verify_async(env.token())).sub == "alice"
    assert fetch.calls == 2


# -- the cache -------------------------------------------------------------------------------


def test_cached_token_still_expires_with_the_clock(env: Env) -> None:
    token = env.token(exp=T0 + 60)
    first = env.verifier.verify(token)
    assert env.verifier.cached == 1
    env.clock.now = T0 + 65  # exp + leeway: still valid
    assert env.verifier.verify(token) is first  # served from the cache
    env.clock.now = T0 + 65.5
    assert env.refused(token) == "token expired"
    assert env.verifier.cached == 0


def test_cached_token_still_checks_the_namespace(env: Env) -> None:
    token = env.token()
    env.verifier.verify(token)
    assert env.refused(token, namespace="x") == "token is for namespace micro, not x"


def test_failures_are_not_cached(env: Env) -> None:
    token = env.token(nbf=T0 + 60)
    assert env.refused(token) == "token not yet valid"
    assert env.verifier.cached == 0
    env.clock.now = T0 + 60
    assert env.verifier.verify(token).sub == "alice"
    assert env.verifier.cached == 1


def test_cache_is_bounded() -> None:
    clock = Clock()
    ring = KeyRing([generate_key(T0)], clock=clock)
    verifier = Verifier(ring.jwks(), clock=clock, cache_size=3)
    tokens = [ring.sign(claims(jti=str(i))) for i in range(10)]
    for token in tokens:
        verifier.verify(token)
    assert verifier.cached == 3
    assert [verifier.verify(t).jti for t in tokens] == [str(i) for i in range(10)]
    assert verifier.cached == 3
    assert Verifier(ring.jwks(), clock=clock, cache_size=0).verify(tokens[0]).jti == "0"
