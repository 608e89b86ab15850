"""The ``token`` service on the wire, and what is particular to :class:`StoreTokens`."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from micro.context import Context
from micro.errors import MicroError
from micro.service.endpoint import endpoints_of
from micro.store.memory import MemoryStore
from micro.testing import ServiceTestClient, serve
from micro.testing.conformance.clock import FakeClock
from micro.token import Tokens
from micro.token.handler import TokenHandler
from micro.token.rpc import RpcTokens
from micro.token.store import UNKNOWN, StoreTokens

from .conftest import token_service


class PinnedNamespace(TokenHandler):
    """Acts in namespace ``pinned`` whatever the request says (as enforcement will)."""

    def _namespace(self, ctx: Context, requested: str) -> str:
        return "pinned"


@pytest.fixture
async def backend(clock: FakeClock) -> AsyncIterator[StoreTokens]:
    store = MemoryStore(clock=clock)
    yield StoreTokens(store, clock=clock)
    await store.close()


@pytest.fixture
async def client(backend: StoreTokens) -> AsyncIterator[ServiceTestClient]:
    async with serve(token_service(TokenHandler(backend))) as test_client:
        yield test_client


def test_endpoints() -> None:
    handler = TokenHandler(StoreTokens(MemoryStore()))
    found = {ep.name: (ep.kind.value, ep.idempotent) for ep in endpoints_of(handler, "Token")}
    assert found == {
        "Token.Issue": ("unary", False),
        "Token.Consume": ("unary", False),  # never retried: a retry could not tell it won
        "Token.Check": ("unary", True),
        "Token.Revoke": ("unary", False),
        "Token.List": ("unary", True),
    }


def test_backends_satisfy_the_protocol(backend: StoreTokens) -> None:
    assert isinstance(backend, Tokens)
    assert isinstance(RpcTokens(None), Tokens)  # type: ignore[arg-type]


async def test_plain_calls(client: ServiceTestClient) -> None:
    issued = await client.call("Token.Issue", {"scope": "invite", "metadata": {"a": "b"}})
    token, info = issued["token"], issued["info"]
    assert set(info) == {"id", "scope", "metadata", "created", "expires"}
    assert info["expires"] - info["created"] == 3600
    assert await client.call("Token.Check", {"token": token}) == info
    listed = await client.call("Token.List", {"scope": "invite"})
    assert listed == {"tokens": [info]} and token not in str(listed)
    assert await client.call("Token.Consume", {"token": token, "scope": "invite"}) == info
    with pytest.raises(MicroError) as err:
        await client.call("Token.Consume", {"token": token})
    assert (err.value.code, err.value.detail, err.value.id) == ("not_found", UNKNOWN, "token")


@pytest.mark.parametrize(
    ("endpoint", "request_body"),
    [
        ("Token.Issue", {"scope": 5}),
        ("Token.Issue", {}),
        ("Token.Issue", {"scope": "x", "ttl": "soon"}),
        ("Token.Issue", {"scope": "x", "metadata": {"n": 1}}),
        ("Token.Issue", {"scope": "x", "metadata": ["a"]}),
        ("Token.Issue", {"scope": "x", "namespace": None}),
        ("Token.Consume", {"token": 5}),
        ("Token.Consume", {}),
        ("Token.Check", {"token": ["mt_x"]}),
        ("Token.Check", {"token": "mt_x", "scope": 7}),
        ("Token.Revoke", {"id": 1}),
        ("Token.List", {"scope": {"a": 1}}),
        ("Token.List", [1, 2]),
    ],
)
async def test_wrong_types_are_bad_requests(
    client: ServiceTestClient, endpoint: str, request_body: Any
) -> None:
    with pytest.raises(MicroError) as err:
        await client.call(endpoint, request_body)
    assert (err.value.code, err.value.status) == ("bad_request", 400)


async def test_namespace_comes_from_the_handler_hook(backend: StoreTokens) -> None:
    async with serve(token_service(PinnedNamespace(backend))) as test_client:
        rpc = RpcTokens(test_client.client)
        token, info = await rpc.issue("invite", namespace="asked-for")
        assert await backend.list(namespace="pinned") == [info]
        assert await backend.list(namespace="asked-for") == []
        assert await rpc.list(namespace="anything") == [info]
        assert await rpc.consume(token, namespace="elsewhere") == info


async def test_own_clock_ends_a_token_the_store_still_holds(clock: FakeClock) -> None:
    store = MemoryStore(clock=FakeClock(clock.now))  # a store whose clock stands still
    tokens = StoreTokens(store, clock=clock)
    token, info = await tokens.issue("invite", ttl=30)
    clock.advance(30)
    assert await store.list_keys("micro", "tokens")  # the records are still there
    for use in (tokens.check, tokens.consume):
        with pytest.raises(MicroError) as err:
            await use(token)
        assert err.value.code == "not_found"
    assert await tokens.list() == []
    with pytest.raises(MicroError):
        await tokens.revoke(info.id)
    await tokens.close()  # does not close the store it was given
    assert len(await store.list_keys("micro", "tokens")) == 2
    await store.close()


async def test_database_and_table_are_the_callers(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    tokens = StoreTokens(store, database="app", table="invites", clock=clock)
    _, info = await tokens.issue("invite", namespace="ns")
    assert await store.list_databases() == ["app"]
    assert await store.list_tables("app") == ["invites"]
    assert f"ns/id/{info.id}" in await store.list_keys("app", "invites")
    await store.close()


async def test_issue_retries_a_taken_id(
    backend: StoreTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(["same", "same", "same", "fresh"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(ids))  # what StoreTokens draws
    _, first = await backend.issue("invite")
    _, second = await backend.issue("invite")  # "same" is taken: drawn twice, then "fresh"
    assert (first.id, second.id) == ("same", "fresh")
    ids = iter(["same"] * 3)
    with pytest.raises(MicroError) as err:
        await backend.issue("invite")
    assert (err.value.code, err.value.id) == ("internal", "token")
    assert {i.id for i in await backend.list()} == {"same", "fresh"}
