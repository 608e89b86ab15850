"""The token contract, over every backend (memory store, SQLite store, RPC)."""

from __future__ import annotations

import asyncio
import base64
import math
import re

import msgspec
import pytest

from micro.errors import MicroError
from micro.token import MAX_TTL, TokenInfo, Tokens
from micro.token.store import UNKNOWN, hash_token

from .conftest import Setup

TOKEN = re.compile(r"mt_[A-Za-z0-9_-]{43}")


async def error_of(call: object) -> MicroError:
    """The MicroError the awaitable ``call`` raises."""
    assert asyncio.iscoroutine(call)
    with pytest.raises(MicroError) as err:
        await call
    return err.value


async def assert_unknown(tokens: Tokens, token: str, namespace: str = "micro") -> None:
    for use in (tokens.check, tokens.consume):
        err = await error_of(use(token, namespace=namespace))
        assert (err.code, err.status, err.detail) == ("not_found", 404, UNKNOWN)


async def test_issue_consume_once(setup: Setup) -> None:
    tokens, clock = setup.tokens, setup.clock
    token, info = await tokens.issue("invite", ttl=120, metadata={"email": "a@example.com"})
    assert TOKEN.fullmatch(token)
    assert info.scope == "invite" and info.metadata == {"email": "a@example.com"}
    assert (info.created, info.expires) == (clock.now, clock.now + 120)
    assert token not in info.id and info.id != hash_token(token)
    assert await tokens.check(token) == info
    assert await tokens.check(token, scope="invite") == info  # checking does not use it up
    assert await tokens.consume(token) == info
    await assert_unknown(tokens, token)
    assert await tokens.list() == []


async def test_default_ttl_is_an_hour(setup: Setup) -> None:
    _, info = await setup.tokens.issue("x")
    assert info.expires - info.created == 3600 and info.metadata == {}


async def test_unknown_tokens(setup: Setup) -> None:
    await assert_unknown(setup.tokens, "mt_" + "A" * 43)
    await assert_unknown(setup.tokens, "x" * 256)  # the longest accepted, merely unknown
    await assert_unknown(setup.tokens, "é ünïcode \U0001f600")


async def test_expiry_follows_the_clock(setup: Setup) -> None:
    tokens, clock = setup.tokens, setup.clock
    token, info = await tokens.issue("reset", ttl=60)
    short, _ = await tokens.issue("reset", ttl=10)
    clock.advance(59.5)
    assert await tokens.check(token) == info
    assert await tokens.list() == [info]
    await assert_unknown(tokens, short)
    clock.advance(0.5)  # exactly at `expires`: dead
    await assert_unknown(tokens, token)
    assert await tokens.list() == []
    assert (await error_of(tokens.revoke(info.id))).code == "not_found"


async def test_revoke(setup: Setup) -> None:
    tokens = setup.tokens
    token, info = await tokens.issue("invite")
    other, other_info = await tokens.issue("invite")
    await tokens.revoke(info.id)
    await assert_unknown(tokens, token)
    assert await tokens.list() == [other_info]
    err = await error_of(tokens.revoke(info.id))
    assert err.code == "not_found" and info.id in err.detail
    assert (await error_of(tokens.revoke("no-such-id"))).code == "not_found"
    await tokens.consume(other)
    assert (await error_of(tokens.revoke(other_info.id))).code == "not_found"


async def test_list_by_scope_oldest_first(setup: Setup) -> None:
    tokens, clock = setup.tokens, setup.clock
    issued: list[TokenInfo] = []
    for scope in ("invite", "reset", "invite"):
        issued.append((await tokens.issue(scope, metadata={"n": str(len(issued))}))[1])
        clock.advance(1)
    assert await tokens.list() == issued
    assert await tokens.list("invite") == [issued[0], issued[2]]
    assert await tokens.list("reset") == [issued[1]]
    assert await tokens.list("other") == []


async def test_scope_mismatch_does_not_consume(setup: Setup) -> None:
    tokens = setup.tokens
    token, info = await tokens.issue("invite")
    for use in (tokens.check, tokens.consume):
        err = await error_of(use(token, scope="reset"))
        assert (err.code, err.status) == ("forbidden", 403)
    assert await tokens.list() == [info]
    assert await tokens.consume(token, scope="invite") == info
    await assert_unknown(tokens, token)


async def test_fifty_concurrent_consumers_one_winner(setup: Setup) -> None:
    tokens = setup.tokens
    token, info = await tokens.issue("invite")
    results = await asyncio.gather(
        *(tokens.consume(token) for _ in range(50)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, TokenInfo)]
    losers = [r for r in results if isinstance(r, MicroError)]
    assert winners == [info]
    assert len(losers) == 49 and {(e.code, e.detail) for e in losers} == {("not_found", UNKNOWN)}


async def test_consume_racing_revoke_one_wins(setup: Setup) -> None:
    tokens = setup.tokens
    for _ in range(10):
        token, info = await tokens.issue("invite")
        consumed, revoked = await asyncio.gather(
            tokens.consume(token), tokens.revoke(info.id), return_exceptions=True
        )
        outcomes = [consumed, revoked]
        assert sum(isinstance(o, MicroError) for o in outcomes) == 1, outcomes
        assert all(o.code == "not_found" for o in outcomes if isinstance(o, MicroError))
        await assert_unknown(tokens, token)
    assert await tokens.list() == []


async def test_namespaces_are_apart(setup: Setup) -> None:
    tokens = setup.tokens
    token, info = await tokens.issue("invite", namespace="tenant-a")
    await assert_unknown(tokens, token)  # the default namespace
    await assert_unknown(tokens, token, namespace="tenant-b")
    assert await tokens.list(namespace="tenant-b") == []
    assert (await error_of(tokens.revoke(info.id, "tenant-b"))).code == "not_found"
    assert await tokens.list(namespace="tenant-a") == [info]
    assert await tokens.consume(token, namespace="tenant-a") == info


async def test_store_holds_no_usable_token(setup: Setup) -> None:
    tokens, store = setup.tokens, setup.store
    issued = [await tokens.issue("invite", metadata={"k": "v"}) for _ in range(5)]
    issued.append(await tokens.issue("reset", namespace="other"))
    consumed, _ = issued[0]
    await tokens.consume(consumed)
    dump = []
    for database in await store.list_databases():
        for table in await store.list_tables(database):
            keys = await store.list_keys(database, table)
            for record in await store.read_many(database, table, keys):
                dump.append(record.key.encode())
                dump.append(record.value)
                dump.append(msgspec.json.encode(record.metadata))
    raw = b"\n".join(dump)
    assert len(dump) == 3 * 2 * 5  # two records per live token: the store was really scanned
    for token, _ in issued:
        secret = token.removeprefix("mt_")
        assert token.encode() not in raw and secret.encode() not in raw
        assert base64.urlsafe_b64decode(secret + "=") not in raw
    for token, _ in issued[1:]:
        assert hash_token(token).encode() in raw  # what is stored instead


async def test_entropy(setup: Setup) -> None:
    tokens = setup.tokens
    issued: list[tuple[str, TokenInfo]] = []
    for _ in range(10):  # 1000 tokens, 100 at a time
        issued += await asyncio.gather(*(tokens.issue("bulk", ttl=60) for _ in range(100)))
    strings = [t for t, _ in issued]
    assert len(set(strings)) == 1000 and len({i.id for _, i in issued}) == 1000
    assert all(TOKEN.fullmatch(t) for t in strings)
    raw = [base64.urlsafe_b64decode(t.removeprefix("mt_") + "=") for t in strings]
    assert {len(r) for r in raw} == {32}  # 256 bits each
    bits = sum(bin(int.from_bytes(r)).count("1") for r in raw)
    assert abs(bits / (1000 * 256) - 0.5) < 0.01  # balanced bits: no stuck or constant bytes
    assert len(await tokens.list("bulk")) == 1000


@pytest.mark.parametrize(
    ("field", "scope", "ttl", "metadata"),
    [
        ("scope", "", 60.0, None),
        ("scope", "x" * 257, 60.0, None),
        ("scope", "in\nvite", 60.0, None),
        ("scope", "in\x85vite", 60.0, None),
        ("ttl", "ok", -1.0, None),
        ("ttl", "ok", 0.0, None),
        ("ttl", "ok", math.inf, None),
        ("ttl", "ok", math.nan, None),
        ("ttl", "ok", MAX_TTL + 1, None),
        ("metadata", "ok", 60.0, {"big": "x" * (16 * 1024)}),
    ],
)
async def test_bad_issue(
    setup: Setup, field: str, scope: str, ttl: float, metadata: dict[str, str] | None
) -> None:
    err = await error_of(setup.tokens.issue(scope, ttl=ttl, metadata=metadata))
    assert (err.code, err.status) == ("bad_request", 400) and field in err.detail, err
    assert await setup.tokens.list() == []


async def test_limits_are_inclusive(setup: Setup) -> None:
    tokens = setup.tokens
    meta = {"k": "x" * (16 * 1024 - 1)}  # exactly 16 KiB with the key
    token, info = await tokens.issue("s" * 256, ttl=MAX_TTL, metadata=meta)
    assert info.metadata == meta and info.expires - info.created == MAX_TTL
    assert await tokens.consume(token, scope="s" * 256) == info


async def test_bad_presented_values(setup: Setup) -> None:
    tokens = setup.tokens
    token, _ = await tokens.issue("invite")
    cases = [
        ("token", tokens.consume("x" * 257)),
        ("token", tokens.check(token + "x" * 300)),
        ("token", tokens.consume("")),
        ("scope", tokens.consume(token, scope="")),
        ("scope", tokens.list("bad\x00scope")),
        ("namespace", tokens.issue("invite", namespace="a/b")),
        ("namespace", tokens.consume(token, namespace="")),
        ("namespace", tokens.list(namespace="x" * 129)),
        ("id", tokens.revoke("a/b")),
        ("id", tokens.revoke("")),
    ]
    for field, call in cases:
        err = await error_of(call)
        assert err.code == "bad_request" and field in err.detail, (field, err)
    assert len(await tokens.list()) == 1  # none of it consumed the token
