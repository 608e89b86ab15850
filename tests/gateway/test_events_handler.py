"""``POST /events/{topic}``: the body becomes an event, consumable from the events backend;
topics are checked, Idempotency-Key dedupes, auth and tenancy apply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from micro.auth import SERVICE
from micro.events import Events
from micro.events.memory import MemoryEvents
from micro.gateway import Gateway
from micro.server import MicroServer
from micro.testing import admin_header, start_server
from tests.noauth import micro_server  # noqa: F401 (auth off: not what most of these test)


async def gateway_for(server: MicroServer, events: Events | None = None) -> Gateway:
    gateway = Gateway(server.client, "127.0.0.1:0", guard=server.guard, events=events)
    await gateway.start()
    return gateway


@pytest.fixture
async def url(micro_server: MicroServer) -> AsyncIterator[str]:
    gateway = await gateway_for(micro_server)
    try:
        yield f"http://{gateway.address}"
    finally:
        await gateway.stop()


async def post(
    url: str, body: bytes | str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def test_post_publishes_the_body_and_a_group_consumes_it(
    micro_server: MicroServer, url: str
) -> None:
    status, body = await post(f"{url}/events/orders", '{"item": "tea", "qty": 2}')
    assert status == 201
    assert body["topic"] == "orders" and body["sequence"] == 1 and body["duplicate"] is False
    assert isinstance(body["id"], str) and body["id"]
    status, body = await post(f"{url}/events/orders", "[1, 2, 3]")
    assert (status, body["sequence"]) == (201, 2)
    assert (await post(f"{url}/events/orders", '"just a string"'))[0] == 201

    consumer = await micro_server.events.consume("orders", "billing", start="first")
    try:
        events = await consumer.fetch(10, timeout=10)
    finally:
        await consumer.close()
    assert [e.body for e in events] == [
        b'{"item": "tea", "qty": 2}',
        b"[1, 2, 3]",
        b'"just a string"',
    ]
    assert events[0].metadata["content-type"] == "application/json"


async def test_idempotency_key_dedupes(micro_server: MicroServer, url: str) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await post(f"{url}/events/orders", '{"n": 1}', headers)
    again = await post(f"{url}/events/orders", '{"n": 1}', headers)
    assert first == (201, {"topic": "orders", "sequence": 1, "id": "order-42", "duplicate": False})
    assert again == (201, {"topic": "orders", "sequence": 1, "id": "order-42", "duplicate": True})
    assert len(await micro_server.events.read("orders")) == 1


@pytest.mark.parametrize(
    ("path", "body", "status", "word"),
    [
        ("/events/bad%20topic", "{}", 400, "topic"),
        ("/events/" + "t" * 256, "{}", 400, "topic"),
        ("/events/fine", "not json", 400, "JSON"),
        ("/events/fine", "", 400, "empty"),
    ],
)
async def test_bad_topic_or_body_is_400(
    url: str, path: str, body: str, status: int, word: str
) -> None:
    got_status, got = await post(url + path, body)
    assert got_status == status
    assert got["status"] == status and word in str(got["detail"])


async def test_other_methods_and_longer_paths_reach_the_generic_route(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        # two segments, GET: the generic route, which calls the events service's
        # Events.Orders (there is none)
        async with http.get(f"{url}/events/orders") as r:
            assert r.status == 404 and "Events.Orders" in (await r.json())["detail"]
        # /events/events/topics calls the events service's Events.Topics through the gateway
        async with http.post(f"{url}/events/events/topics", data="{}") as r:
            assert r.status == 200 and "topics" in await r.json()


async def test_over_the_backend_limit_is_413(micro_server: MicroServer) -> None:
    events = MemoryEvents(max_body=64)
    gateway = await gateway_for(micro_server, events)
    try:
        status, body = await post(
            f"http://{gateway.address}/events/big", '{"x": "' + "y" * 100 + '"}'
        )
        assert status == 413 and body["code"] == "too_large"
        status, body = await post(f"http://{gateway.address}/events/small", "{}")
        assert (status, body["sequence"]) == (201, 1)
        assert [e.body for e in await events.read("small")] == [b"{}"]
    finally:
        await gateway.stop()
        await events.close()


@pytest.fixture
async def secure(tmp_path: Path) -> AsyncIterator[MicroServer]:
    server = await start_server(tmp_path / "secure", auth=True)
    try:
        yield server
    finally:
        await server.stop()


async def test_auth_anonymous_is_401_and_an_admin_publishes(secure: MicroServer) -> None:
    gateway = await gateway_for(secure)
    url = f"http://{gateway.address}/events/audit"
    try:
        status, body = await post(url, '{"who": "nobody"}')
        assert status == 401 and body["code"] == "unauthorized"
        status, body = await post(url, '{"who": "x"}', {"Authorization": "Bearer not-a-token"})
        assert status == 401
        status, body = await post(
            url, '{"who": "admin"}', {"Authorization": await admin_header(secure)}
        )
        assert (status, body["sequence"]) == (201, 1)
        assert [e.body for e in await secure.events.read("audit")] == [b'{"who": "admin"}']
    finally:
        await gateway.stop()


@pytest.mark.parametrize("local", [False, True])
async def test_a_namespaced_caller_publishes_into_its_namespace(
    secure: MicroServer, local: bool
) -> None:
    account, _ = await secure.auth.create_account("worker", namespace="acme", scopes=[SERVICE])
    token = (await secure.auth.issue(account)).access_token
    gateway = await gateway_for(secure, secure.events if local else None)
    try:
        status, body = await post(
            f"http://{gateway.address}/events/jobs",
            '{"job": 1}',
            {"Authorization": f"Bearer {token}"},
        )
        # the caller sees its own name for the topic; the backend stores it in acme's space
        assert (status, body["topic"], body["sequence"]) == (201, "jobs", 1)
        assert [e.body for e in await secure.events.read("acme--jobs")] == [b'{"job": 1}']
        assert "jobs" not in {t.name for t in await secure.events.topics()}
        status, body = await post(
            f"http://{gateway.address}/events/a--b", "{}", {"Authorization": f"Bearer {token}"}
        )
        assert status == 400 and "--" in str(body["detail"])
    finally:
        await gateway.stop()
