"""The ``auth`` service over real RPC (micro.testing.serve) through its client RpcAuth:
every endpoint, called by an administrator, a plain account, an administrator of another
namespace, a service account and an anonymous caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import argon2
import jwt
import pytest

from micro import Service
from micro.auth import ADMIN, SERVICE, Resource, Rule
from micro.auth.core import INVALID_CREDENTIALS, REUSED, AuthCore
from micro.auth.handler import Auth
from micro.auth.rpc import RpcAuth
from micro.auth.verify import Verifier
from micro.context import Context
from micro.errors import MicroError
from micro.service.endpoint import HandlerFunc, Middleware, endpoints_of
from micro.store.memory import MemoryStore
from micro.testing import serve
from micro.testing.conformance.clock import FakeClock

pytestmark = pytest.mark.timeout(60)

SECRET = "correct horse battery"


def account_middleware(verifier: Verifier) -> Middleware:
    """What the real auth middleware does first: verify the bearer token, set ctx.account."""

    def wrap(call: HandlerFunc) -> HandlerFunc:
        async def handle(ctx: Context, req: Any) -> Any:
            header = ctx.metadata.get("authorization", "")
            if header:
                ctx.account = verifier.verify(header.removeprefix("Bearer "))
            return await call(ctx, req)

        return handle

    return wrap


@dataclass
class Env:
    core: AuthCore
    clock: FakeClock
    admin_password: str
    anonymous: RpcAuth
    admin: RpcAuth  # micro, scope admin
    alice: RpcAuth  # micro, plain user
    boss: RpcAuth  # tenant, scope admin
    ted: RpcAuth  # tenant, plain user
    robot: RpcAuth  # tenant, scope service


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    core = AuthCore(
        store, clock=clock, hasher=argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    password = await core.start()
    assert password is not None
    await core.create_account("alice", secret=SECRET)
    await core.create_account("boss", secret=SECRET, scopes=[ADMIN], namespace="tenant")
    await core.create_account("ted", secret=SECRET, namespace="tenant")
    await core.create_account(
        "robot", secret=SECRET, type="service", scopes=[SERVICE], namespace="tenant"
    )
    svc = Service("auth", middleware=[account_middleware(core.verifier())])
    svc.handler(Auth(core))
    async with serve(svc) as tc:
        anonymous = RpcAuth(client=tc.client)

        async def as_(id: str, namespace: str = "micro", secret: str = SECRET) -> RpcAuth:
            tokens = await anonymous.login(id, secret, namespace)
            return anonymous.with_token(tokens.access_token)

        yield Env(
            core,
            clock,
            password,
            anonymous,
            await as_("admin", secret=password),
            await as_("alice"),
            await as_("boss", "tenant"),
            await as_("ted", "tenant"),
            await as_("robot", "tenant"),
        )
    await core.close()
    await store.close()


async def error_of(awaitable: object) -> MicroError:
    with pytest.raises(MicroError) as err:
        await awaitable  # type: ignore[misc]
    return err.value


async def refused(awaitable: object, code: str) -> MicroError:
    err = await error_of(awaitable)
    assert err.code == code, err
    return err


def test_endpoints() -> None:
    eps = {ep.name: ep.public for ep in endpoints_of(Auth(AuthCore(MemoryStore())))}
    public = {"Auth.Token", "Auth.Exchange", "Auth.Jwks"}
    private = {
        f"Auth.{n}"
        for n in (
            "Revoke",
            "Inspect",
            "Generate",
            "List",
            "Delete",
            "SetSecret",
            "CreateKey",
            "ListKeys",
            "DeleteKey",
            "CreateRule",
            "DeleteRule",
            "ListRules",
            "RotateKeys",
        )
    }
    assert eps == {**dict.fromkeys(public, True), **dict.fromkeys(private, False)}


# -- public endpoints --------------------------------------------------------------------------


async def test_token_login_refresh_and_errors(env: Env) -> None:
    tokens = await env.anonymous.login("alice", SECRET)
    assert env.core.verifier().verify(tokens.access_token).sub == "alice"
    refreshed = await env.anonymous.refresh(tokens.refresh_token)
    assert refreshed.refresh_token != tokens.refresh_token
    err = await refused(env.anonymous.refresh(tokens.refresh_token), "unauthorized")
    assert (err.status, err.detail) == (401, REUSED)
    err = await refused(env.anonymous.login("alice", "wrong secret"), "unauthorized")
    assert err.detail == INVALID_CREDENTIALS
    err = await refused(env.anonymous.login("", ""), "bad_request")
    assert "refresh_token" in err.detail
    err = await refused(env.anonymous.login("alice", "x" * 5000), "bad_request")
    assert "secret" in err.detail
    for _ in range(5):
        await refused(env.anonymous.login("ted", "wrong secret", "tenant"), "unauthorized")
    err = await refused(env.anonymous.login("ted", SECRET, "tenant"), "too_many_requests")
    assert err.status == 429 and "ted" in err.detail


async def test_exchange_and_jwks_are_public(env: Env) -> None:
    _, api_key = await env.alice.create_key(name="laptop")
    tokens = await env.anonymous.exchange(api_key)
    assert tokens.refresh_token == "" and tokens.access_token
    assert env.core.verifier().verify(tokens.access_token).sub == "alice"
    await refused(env.anonymous.exchange("mk_nonsense"), "unauthorized")
    jwks = await env.anonymous.jwks()
    assert jwks == await env.core.jwks()
    kid = jwt.get_unverified_header(tokens.access_token)["kid"]
    assert kid in [k["kid"] for k in jwks["keys"]]
    assert Verifier(jwks, clock=env.clock).verify(tokens.access_token).sub == "alice"


# -- any account -------------------------------------------------------------------------------


async def test_inspect(env: Env) -> None:
    token = (await env.anonymous.login("ted", SECRET, "tenant")).access_token
    claims = await env.alice.inspect(token)
    assert (claims.sub, claims.namespace) == ("ted", "tenant")
    await refused(env.anonymous.inspect(token), "unauthorized")
    err = await refused(env.alice.inspect(token[:-4] + "AAAA"), "unauthorized")
    assert err.detail == "invalid token signature"


async def test_revoke_own_sessions_only(env: Env) -> None:
    alice_session = await env.anonymous.login("alice", SECRET)
    ted_session = await env.anonymous.login("ted", SECRET, "tenant")
    await refused(env.anonymous.revoke(alice_session.refresh_token), "unauthorized")
    await refused(env.ted.revoke(alice_session.refresh_token), "forbidden")
    await refused(env.boss.revoke(alice_session.refresh_token), "forbidden")  # other namespace
    await env.alice.revoke(alice_session.refresh_token)
    await refused(env.anonymous.refresh(alice_session.refresh_token), "unauthorized")
    await env.alice.revoke(alice_session.refresh_token)  # already gone: fine
    await env.boss.revoke(ted_session.refresh_token)  # the namespace's administrator may
    await refused(env.anonymous.refresh(ted_session.refresh_token), "unauthorized")
    other = await env.anonymous.login("ted", SECRET, "tenant")
    await env.admin.revoke(other.refresh_token)  # an administrator of micro may anywhere
    await refused(env.anonymous.refresh(other.refresh_token), "unauthorized")


async def test_api_keys_own_and_administered(env: Env) -> None:
    mine, _ = await env.alice.create_key(name="mine", ttl=3600)
    assert (mine.account, mine.namespace, mine.name) == ("alice", "micro", "mine")
    assert (mine.expires - mine.created) == 3600
    bob, _ = await env.admin.create_account("bob", secret=SECRET)
    bobs, _ = await env.admin.create_key(bob.id, name="bobs")
    await refused(env.alice.create_key("bob"), "forbidden")
    await refused(env.anonymous.create_key(), "unauthorized")
    assert await env.alice.list_keys() == [mine]  # only her own, even without a filter
    await refused(env.alice.list_keys(account_id="bob"), "forbidden")
    await refused(env.alice.list_keys("tenant"), "forbidden")
    assert {k.id for k in await env.admin.list_keys()} == {mine.id, bobs.id}
    assert await env.admin.list_keys(account_id="bob") == [bobs]
    await refused(env.alice.delete_key(bobs.id), "forbidden")
    await refused(env.ted.delete_key(mine.id, "micro"), "forbidden")
    await refused(env.ted.delete_key(mine.id), "not_found")  # his namespace has no such key
    await env.alice.delete_key(mine.id)
    await refused(env.alice.delete_key(mine.id), "not_found")
    await env.admin.delete_key(bobs.id)
    assert await env.admin.list_keys() == []
    # a tenant admin manages the keys of their namespace, not others'
    teds, _ = await env.boss.create_key("ted")
    assert teds.namespace == "tenant"
    await refused(env.boss.create_key("alice", namespace="micro"), "forbidden")
    assert await env.boss.list_keys() == [teds]


# -- administrators ----------------------------------------------------------------------------


async def test_accounts_need_an_administrator(env: Env) -> None:
    account, secret = await env.admin.create_account(
        "svc", type="service", scopes=["orders"], metadata={"a": "b"}, namespace="tenant"
    )
    assert (account.namespace, account.type, account.scopes) == ("tenant", "service", ["orders"])
    assert (await env.anonymous.login("svc", secret, "tenant")).access_token
    for caller in (env.alice, env.ted, env.robot):
        await refused(caller.create_account("x1", namespace="tenant"), "forbidden")
        await refused(caller.list_accounts("tenant"), "forbidden")
        await refused(caller.delete_account("svc", "tenant"), "forbidden")
        await refused(caller.set_secret("svc", "another secret", "tenant"), "forbidden")
    await refused(env.anonymous.list_accounts(), "unauthorized")
    # a tenant admin: their namespace (the default for them), not micro
    made, _ = await env.boss.create_account("tina")
    assert made.namespace == "tenant"
    assert [a.id for a in await env.boss.list_accounts()] == ["boss", "robot", "svc", "ted", "tina"]
    await refused(env.boss.list_accounts("micro"), "forbidden")
    await refused(env.boss.create_account("x2", namespace="micro"), "forbidden")
    await env.boss.set_secret("tina", "tinas new secret")
    assert (await env.anonymous.login("tina", "tinas new secret", "tenant")).access_token
    await env.boss.delete_account("tina")
    await refused(env.boss.delete_account("tina"), "not_found")
    dup = await refused(env.admin.create_account("alice"), "conflict")
    assert dup.status == 409
    await refused(env.admin.create_account("bad/id"), "bad_request")
    assert "alice" in [a.id for a in await env.admin.list_accounts()]


async def test_rules_need_an_administrator(env: Env) -> None:
    rule = Rule("orders", "orders", Resource("orders", "Orders.*"), "grant", 3)
    # the tenant got the default rules with its first account; its own rules add to them
    defaults = await env.boss.list_rules()
    await env.boss.create_rule(rule)
    assert await env.boss.list_rules() == sorted([*defaults, rule], key=lambda r: r.id)
    assert rule in await env.admin.list_rules("tenant")
    assert rule in await env.robot.list_rules()  # services load the rules they enforce
    await refused(env.robot.list_rules("micro"), "forbidden")
    await refused(env.ted.list_rules(), "forbidden")
    await refused(env.alice.create_rule(rule), "forbidden")
    await refused(env.boss.create_rule(rule), "conflict")
    await refused(env.boss.create_rule(rule, "micro"), "forbidden")
    await refused(env.ted.delete_rule("orders"), "forbidden")
    await refused(env.anonymous.list_rules("tenant"), "unauthorized")
    await env.boss.delete_rule("orders")
    await refused(env.boss.delete_rule("orders"), "not_found")
    assert await env.admin.list_rules("tenant") == defaults
    assert len(await env.admin.list_rules()) >= 1  # the default rules of micro


async def test_rotate_keys_needs_an_administrator_of_micro(env: Env) -> None:
    for caller in (env.boss, env.alice, env.robot):
        await refused(caller.rotate_keys(), "forbidden")
    await refused(env.anonymous.rotate_keys(), "unauthorized")
    kid = await env.admin.rotate_keys()
    assert kid in [k["kid"] for k in (await env.anonymous.jwks())["keys"]]
    token = (await env.anonymous.login("alice", SECRET)).access_token
    assert jwt.get_unverified_header(token)["kid"] == kid
    assert (await env.alice.inspect(token)).sub == "alice"
