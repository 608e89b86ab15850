"""AuthCore over a real store (memory and SQLite) on a fake clock: logins and lockout,
refresh rotation and reuse detection, signing key rotation, API keys, rules, first start,
and what the raw records may (not) contain."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import argon2
import jwt
import pytest

from micro.auth import ACCESS_TTL, ADMIN, ISSUER, REFRESH_TTL, Account, Resource, Rule
from micro.auth.core import (
    INVALID_CREDENTIALS,
    INVALID_KEY,
    KEYS_RELOAD,
    REUSED,
    SESSION_ENDED,
    AuthCore,
)
from micro.auth.rules import DEFAULT_RULES
from micro.auth.verify import Verifier
from micro.errors import MicroError
from micro.store import Store
from micro.store.memory import MemoryStore
from micro.store.sqlite import SqliteStore
from micro.testing.conformance.clock import FakeClock

pytestmark = pytest.mark.timeout(60)

SECRET = "correct horse battery"


def fast_hasher() -> argon2.PasswordHasher:
    return argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Store]:
    if request.param == "memory":
        backend: MemoryStore | SqliteStore = MemoryStore(clock=clock)
    else:
        backend = SqliteStore(tmp_path / "auth.db", clock=clock)
        await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def make_core(store: Store, clock: FakeClock) -> AuthCore:
    return AuthCore(store, clock=clock, hasher=fast_hasher())


@pytest.fixture
async def core(store: Store, clock: FakeClock) -> AsyncIterator[AuthCore]:
    auth = make_core(store, clock)
    await auth.start()
    try:
        yield auth
    finally:
        await auth.close()


@pytest.fixture
async def alice(core: AuthCore) -> Account:
    account, _ = await core.create_account(
        "alice", secret=SECRET, scopes=["orders"], metadata={"team": "blue"}
    )
    return account


async def error_of(awaitable: object) -> MicroError:
    with pytest.raises(MicroError) as err:
        await awaitable  # type: ignore[misc]
    return err.value


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


# -- logins ------------------------------------------------------------------------------------


async def test_login_gives_a_verifiable_access_token(
    core: AuthCore, alice: Account, clock: FakeClock
) -> None:
    tokens = await core.login("alice", SECRET)
    assert tokens.expiry == clock.now + ACCESS_TTL
    assert tokens.token_type == "Bearer" and tokens.refresh_token
    claims = core.verifier().verify(tokens.access_token, namespace="micro")
    assert (claims.sub, claims.namespace, claims.type) == ("alice", "micro", "user")
    assert claims.scopes == ["orders"] and claims.metadata == {"team": "blue"}
    assert claims.exp == tokens.expiry and claims.iat == clock.now and claims.jti
    payload = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert payload["iss"] == ISSUER and payload["nbf"] == payload["iat"]
    header = jwt.get_unverified_header(tokens.access_token)
    assert header["alg"] == "EdDSA" and header["kid"] in core.verifier().kids


async def test_wrong_secret_and_unknown_account_look_the_same(
    core: AuthCore, alice: Account
) -> None:
    wrong = await error_of(core.login("alice", "not the secret"))
    unknown = await error_of(core.login("bob", SECRET))
    other_namespace = await error_of(core.login("alice", SECRET, "tenant"))
    malformed = await error_of(core.login("../alice", SECRET))
    for err in (wrong, unknown, other_namespace, malformed):
        assert (err.code, err.status, err.detail) == ("unauthorized", 401, INVALID_CREDENTIALS)


async def test_lockout_after_max_failures_then_unlock(
    core: AuthCore, alice: Account, clock: FakeClock
) -> None:
    for _ in range(5):
        assert (await error_of(core.login("alice", "wrong secret"))).code == "unauthorized"
    locked = await error_of(core.login("alice", SECRET))  # even the right secret
    assert (locked.code, locked.status) == ("too_many_requests", 429)
    assert locked.detail == "too many failed logins for alice: locked for 900 s"
    clock.advance(899.5)
    assert (await error_of(core.login("alice", SECRET))).detail.endswith("locked for 1 s")
    clock.advance(0.5)
    assert (await core.login("alice", SECRET)).access_token
    # the success reset the count: four more failures do not lock
    for _ in range(4):
        await error_of(core.login("alice", "wrong secret"))
    assert (await core.login("alice", SECRET)).access_token


async def test_failures_outside_the_window_do_not_add_up(
    core: AuthCore, alice: Account, clock: FakeClock
) -> None:
    for _ in range(4):
        await error_of(core.login("alice", "wrong secret"))
    clock.advance(301)
    for _ in range(4):
        await error_of(core.login("alice", "wrong secret"))
    assert (await core.login("alice", SECRET)).access_token


async def test_unknown_accounts_lock_too(core: AuthCore) -> None:
    """Locking must not tell which ids exist."""
    for _ in range(5):
        assert (await error_of(core.login("ghost", "whatever1"))).code == "unauthorized"
    assert (await error_of(core.login("ghost", "whatever1"))).code == "too_many_requests"


async def test_failures_are_shared_by_servers_on_one_store(
    core: AuthCore, alice: Account, store: Store, clock: FakeClock
) -> None:
    other = make_core(store, clock)
    await other.start()
    for auth in (core, other, core, other, core):
        await error_of(auth.login("alice", "wrong secret"))
    assert (await error_of(other.login("alice", SECRET))).code == "too_many_requests"


# -- refresh tokens ----------------------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token(
    core: AuthCore, alice: Account, clock: FakeClock
) -> None:
    first = await core.login("alice", SECRET)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", first.refresh_token)
    clock.advance(60)
    second = await core.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.refresh_token.split(".")[0] == first.refresh_token.split(".")[0]  # family
    assert second.expiry == clock.now + ACCESS_TTL
    assert core.verifier().verify(second.access_token).sub == "alice"
    third = await core.refresh(second.refresh_token)
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)


async def test_reusing_a_refresh_token_revokes_the_family(core: AuthCore, alice: Account) -> None:
    first = await core.login("alice", SECRET)
    second = await core.refresh(first.refresh_token)
    other_session = await core.login("alice", SECRET)
    reused = await error_of(core.refresh(first.refresh_token))
    assert (reused.code, reused.detail) == ("unauthorized", REUSED)
    # the newest token of the family is refused too: thief and owner are both out
    assert (await error_of(core.refresh(second.refresh_token))).code == "unauthorized"
    # other sessions of the account go on
    assert (await core.refresh(other_session.refresh_token)).access_token


async def test_concurrent_refreshes_of_one_token_exactly_one_wins(
    core: AuthCore, alice: Account
) -> None:
    tokens = await core.login("alice", SECRET)
    results = await asyncio.gather(
        *(core.refresh(tokens.refresh_token) for _ in range(10)), return_exceptions=True
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1 and len(losses) == 9
    assert all(isinstance(e, MicroError) and e.code == "unauthorized" for e in losses)
    # the first loser revokes the family; later ones may find it already gone
    assert any(isinstance(e, MicroError) and e.detail == REUSED for e in losses)


async def test_refresh_fails_once_the_account_is_deleted(core: AuthCore, alice: Account) -> None:
    tokens = await core.login("alice", SECRET)
    await core.delete_account("alice")
    err = await error_of(core.refresh(tokens.refresh_token))
    assert (err.code, err.detail) == ("unauthorized", SESSION_ENDED)
    # an account created again with the same id does not inherit old sessions
    await core.create_account("alice", secret=SECRET)
    assert (await error_of(core.refresh(tokens.refresh_token))).code == "unauthorized"


async def test_changing_the_secret_ends_sessions(core: AuthCore, alice: Account) -> None:
    tokens = await core.login("alice", SECRET)
    await core.set_secret("alice", "a new long secret")
    assert (await error_of(core.refresh(tokens.refresh_token))).detail == SESSION_ENDED
    assert (await error_of(core.login("alice", SECRET))).detail == INVALID_CREDENTIALS
    assert (await core.login("alice", "a new long secret")).access_token


async def test_refresh_family_expires_without_use(
    core: AuthCore, alice: Account, clock: FakeClock
) -> None:
    tokens = await core.login("alice", SECRET)
    clock.advance(REFRESH_TTL - 10)
    kept = await core.refresh(tokens.refresh_token)  # use extends the family's life
    clock.advance(REFRESH_TTL - 10)
    unused = await core.refresh(kept.refresh_token)
    clock.advance(REFRESH_TTL + 1)
    assert (await error_of(core.refresh(unused.refresh_token))).code == "unauthorized"


async def test_revoke_ends_the_session(core: AuthCore, alice: Account) -> None:
    tokens = await core.login("alice", SECRET)
    assert await core.session_owner(tokens.refresh_token) == ("micro", "alice")
    await core.revoke(tokens.refresh_token)
    assert await core.session_owner(tokens.refresh_token) is None
    assert (await error_of(core.refresh(tokens.refresh_token))).code == "unauthorized"
    await core.revoke(tokens.refresh_token)  # again: nothing to do
    await core.revoke("garbage")


@pytest.mark.parametrize("token", ["", "nodot", ".x", "x.", "a.b.c", "a/b.c", "x" * 300])
async def test_malformed_refresh_tokens(core: AuthCore, token: str) -> None:
    assert (await error_of(core.refresh(token))).code == "unauthorized"


async def test_issue_without_a_secret(core: AuthCore, alice: Account, clock: FakeClock) -> None:
    tokens = await core.issue(alice, ttl=3600)
    assert tokens.expiry == clock.now + 3600 and tokens.refresh_token
    assert core.verifier().verify(tokens.access_token).scopes == ["orders"]
    assert (await core.refresh(tokens.refresh_token)).access_token
    # an account that is not stored gets an access token only
    runtime = Account("runner", "service", ["service"], namespace="micro")
    assert (await core.issue(runtime)).refresh_token == ""
    assert (await error_of(core.issue(alice, ttl=-1))).code == "bad_request"


# -- signing keys ------------------------------------------------------------------------------


async def test_rotation_keeps_old_tokens_valid_until_they_expire(
    core: AuthCore, alice: Account, clock: FakeClock
) -> None:
    before = await core.login("alice", SECRET)
    old_kid = kid_of(before.access_token)
    new_kid = await core.rotate_keys()
    assert new_kid != old_kid
    after = await core.login("alice", SECRET)
    assert kid_of(after.access_token) == new_kid
    outside = Verifier(await core.jwks(), clock=clock)  # what a service fetches
    for verifier in (outside, core.verifier()):
        assert verifier.verify(before.access_token).sub == "alice"
        assert verifier.verify(after.access_token).sub == "alice"
    clock.advance(ACCESS_TTL + 10)
    assert (await error_of_sync(outside, before.access_token)).detail == "token expired"
    # a later rotation drops the key retired longer ago than any token lives
    clock.advance(60)
    third = await core.rotate_keys()
    kids = [k["kid"] for k in (await core.jwks())["keys"]]
    assert old_kid not in kids and new_kid in kids and third in kids


async def error_of_sync(verifier: Verifier, token: str) -> MicroError:
    with pytest.raises(MicroError) as err:
        verifier.verify(token)
    return err.value


async def test_long_lived_tokens_keep_their_key(
    core: AuthCore, alice: Account, clock: FakeClock
) -> None:
    long = await core.issue(alice, ttl=7200)
    await core.rotate_keys()
    clock.advance(ACCESS_TTL + 120)
    await core.rotate_keys()  # must not drop the key that signed a live 2 h token
    assert Verifier(await core.jwks(), clock=clock).verify(long.access_token).sub == "alice"


async def test_rotation_reaches_other_servers(
    core: AuthCore, alice: Account, store: Store, clock: FakeClock
) -> None:
    other = make_core(store, clock)
    await other.start()
    assert await other.jwks() == await core.jwks()  # loaded, not created again
    new_kid = await core.rotate_keys()
    clock.advance(KEYS_RELOAD)
    assert new_kid in [k["kid"] for k in (await other.jwks())["keys"]]
    token = (await other.login("alice", SECRET)).access_token
    assert kid_of(token) == new_kid
    assert core.verifier().verify(token).sub == "alice"


# -- API keys ----------------------------------------------------------------------------------


async def test_api_key_lifecycle(core: AuthCore, alice: Account, clock: FakeClock) -> None:
    key, api_key = await core.create_key("alice", name="ci", ttl=3600)
    assert re.fullmatch(rf"mk_{key.id}_[A-Za-z0-9_-]{{43}}", api_key)
    assert (key.account, key.namespace, key.name) == ("alice", "micro", "ci")
    assert (key.created, key.expires) == (clock.now, clock.now + 3600)
    assert await core.list_keys() == [key]
    assert await core.list_keys(account_id="alice") == [key]
    assert await core.list_keys(account_id="bob") == []
    assert await core.list_keys("tenant") == []
    tokens = await core.exchange(api_key)
    assert tokens.refresh_token == ""
    assert core.verifier().verify(tokens.access_token).scopes == ["orders"]
    clock.advance(3600 - 60)
    assert (await core.exchange(api_key)).expiry == key.expires  # never outlives the key
    clock.advance(60)
    assert (await error_of(core.exchange(api_key))).detail == INVALID_KEY
    assert await core.list_keys() == []


async def test_api_key_delete_and_forgeries(core: AuthCore, alice: Account) -> None:
    key, api_key = await core.create_key("alice")
    assert key.expires == 0.0
    tampered = api_key[:-1] + ("A" if api_key[-1] != "A" else "B")
    for bad in (tampered, "", "mk_", "mk_zz_secret", api_key.replace("mk_", "xk_"), api_key + "="):
        assert (await error_of(core.exchange(bad))).detail == INVALID_KEY
    assert (await core.exchange(api_key)).access_token
    await core.delete_key(key.id)
    assert (await error_of(core.exchange(api_key))).detail == INVALID_KEY
    assert (await error_of(core.delete_key(key.id))).code == "not_found"
    assert (await error_of(core.create_key("nobody"))).code == "not_found"


async def test_deleting_an_account_deletes_its_keys(core: AuthCore, alice: Account) -> None:
    await core.create_account("bob", secret=SECRET)
    _, alice_key = await core.create_key("alice")
    bob_key, _ = await core.create_key("bob")
    await core.delete_account("alice")
    assert await core.list_keys() == [bob_key]
    assert (await error_of(core.exchange(alice_key))).code == "unauthorized"
    assert [a.id for a in await core.list_accounts()] == ["admin", "bob"]


# -- accounts ----------------------------------------------------------------------------------


async def test_account_crud_per_namespace(core: AuthCore, clock: FakeClock) -> None:
    account, secret = await core.create_account("svc", type="service", namespace="tenant")
    assert len(secret) >= 32 and account.created == clock.now
    assert await core.get_account("svc", "tenant") == account
    assert (await error_of(core.get_account("svc"))).code == "not_found"
    assert await core.list_accounts("tenant") == [account]
    assert (await core.login("svc", secret, "tenant")).access_token
    dup = await error_of(core.create_account("svc", namespace="tenant"))
    assert (dup.code, dup.status) == ("conflict", 409) and "svc" in dup.detail
    await core.create_account("svc")  # the same id in another namespace is another account
    await core.delete_account("svc", "tenant")
    assert await core.list_accounts("tenant") == []
    assert (await error_of(core.delete_account("svc", "tenant"))).code == "not_found"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": "a/b"}, "id"),
        ({"id": ""}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"namespace": "bad ns"}, "namespace"),
        ({"secret": "short"}, "secret"),
        ({"scopes": ["ok", "no spaces"]}, "scopes"),
        ({"scopes": "admin"}, "scopes"),
        ({"metadata": {"k": "v" * 3000}}, "metadata"),
        ({"type": "robot"}, "type"),
    ],
)
async def test_account_validation_names_the_field(
    core: AuthCore, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"id": "carol", **kwargs}
    err = await error_of(core.create_account(**args))  # type: ignore[arg-type]
    assert err.code == "bad_request" and err.detail.startswith(field)


# -- rules -------------------------------------------------------------------------------------


async def test_rules_crud_per_namespace(core: AuthCore) -> None:
    assert await core.list_rules() == sorted(DEFAULT_RULES, key=lambda r: r.id)
    assert await core.list_rules("tenant") == []
    rule = Rule("orders-read", "orders", Resource("orders", "Orders.Get"), "grant", 5)
    await core.create_rule(rule, "tenant")
    assert await core.list_rules("tenant") == [rule]
    dup = await error_of(core.create_rule(rule, "tenant"))
    assert dup.code == "conflict" and "orders-read" in dup.detail
    await core.create_rule(rule)  # the same id in another namespace
    await core.delete_rule("orders-read", "tenant")
    assert await core.list_rules("tenant") == []
    assert (await error_of(core.delete_rule("orders-read", "tenant"))).code == "not_found"
    assert rule in await core.list_rules()


async def test_a_namespace_gets_the_default_rules_with_its_first_account(
    core: AuthCore,
) -> None:
    assert await core.list_rules("acme") == []
    await core.create_account("boss", scopes=["admin"], namespace="acme")
    assert await core.list_rules("acme") == sorted(DEFAULT_RULES, key=lambda r: r.id)
    await core.delete_rule("service", "acme")  # a namespace's rules are then its own
    await core.create_account("second", namespace="acme")
    assert "service" not in {r.id for r in await core.list_rules("acme")}


@pytest.mark.parametrize(
    "rule",
    [
        Rule("bad id!", "x"),
        Rule("ok", "bad scope"),
        Rule("ok", "x", Resource("svc/evil", "*")),
        Rule("ok", "x", Resource("svc", "")),
        Rule("ok", "x", priority=10**9),
    ],
)
async def test_rule_validation(core: AuthCore, rule: Rule) -> None:
    assert (await error_of(core.create_rule(rule))).code == "bad_request"


# -- first start -------------------------------------------------------------------------------


async def test_start_creates_admin_once(store: Store, clock: FakeClock) -> None:
    first = make_core(store, clock)
    password = await first.start()
    assert password is not None and len(password) >= 24
    assert await first.start() is None
    second = make_core(store, clock)
    assert await second.start() is None
    admin = await second.get_account("admin")
    assert admin.scopes == [ADMIN]
    tokens = await second.login("admin", password)
    assert ADMIN in first.verifier().verify(tokens.access_token).scopes


async def test_concurrent_first_starts_agree(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    cores = [make_core(store, clock) for _ in range(4)]
    passwords = await asyncio.gather(*(c.start() for c in cores))
    created = [p for p in passwords if p is not None]
    assert len(created) == 1
    jwks = [await c.jwks() for c in cores]
    assert all(j == jwks[0] for j in jwks) and len(jwks[0]["keys"]) == 1
    assert len(await cores[1].list_rules()) == len(DEFAULT_RULES)
    token = (await cores[2].login("admin", created[0])).access_token
    assert cores[3].verifier().verify(token).sub == "admin"
    await store.close()


async def test_default_rules_are_not_recreated_when_some_exist(
    store: Store, clock: FakeClock
) -> None:
    auth = make_core(store, clock)
    await auth.start()
    await auth.delete_rule("health")
    await make_core(store, clock).start()
    assert "health" not in [r.id for r in await auth.list_rules()]


# -- records -----------------------------------------------------------------------------------


async def test_no_secret_in_the_raw_records(core: AuthCore, store: Store) -> None:
    _, generated = await core.create_account("gen")
    await core.create_account("alice", secret=SECRET)
    tokens = await core.login("alice", SECRET)
    rotated = await core.refresh(tokens.refresh_token)
    _, api_key = await core.create_key("alice", name="ci")
    await error_of(core.login("alice", "wrong secret"))
    keys = await store.list_keys("micro", "auth")
    assert {k.split("/")[0] for k in keys} >= {"account", "family", "key", "keyid", "rule"}
    records = await store.read_many("micro", "auth", keys)
    blob = b"".join(r.key.encode() + r.value for r in records)
    leaks = [
        generated,
        SECRET,
        tokens.refresh_token,
        rotated.refresh_token,
        rotated.refresh_token.split(".")[1],
        api_key,
        api_key[len("mk_") + 16 + 1 :],
        rotated.access_token,
    ]
    for leak in leaks:
        assert leak.encode() not in blob
    assert b"$argon2id$" in blob
