"""Explicit HTTP routes: declared with @route, carried in the registry, served by the gateway
before Micro's path rules (path parameters typed, query merged, 405 with Allow, conflicts,
late registration, namespaces)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from micro import Context, Service, route
from micro.gateway import Gateway
from micro.gateway.routes import RouteTable, coerce, field_schemas
from micro.registry import EndpointInfo, Event, Node, ServiceInfo
from micro.server import MicroServer
from tests.noauth import micro_server  # noqa: F401 (auth off: not what these test)


class GetUser(msgspec.Struct):
    id: int
    verbose: bool = False
    tags: list[str] = []
    score: float | None = None


class User(msgspec.Struct):
    id: int
    name: str = ""
    verbose: bool = False
    tags: list[str] = []
    score: float | None = None
    via: str = ""


class Update(msgspec.Struct):
    id: int
    name: str


class Create(msgspec.Struct):
    org: str
    name: str
    limit: int = 0


class Empty(msgspec.Struct):
    pass


def users() -> Service:
    svc = Service("users")

    @svc.handler
    class Users:
        @route("GET", "/users/{id}")
        async def get(self, ctx: Context, req: GetUser) -> User:
            return User(req.id, "", req.verbose, req.tags, req.score, via="get")

        @route("GET", "/users/me")
        async def me(self, ctx: Context, req: Empty) -> User:
            return User(0, "me", via="me")

        @route("PUT", "/users/{id}")
        @route("PATCH", "/users/{id}")
        async def update(self, ctx: Context, req: Update) -> User:
            return User(req.id, req.name, via="update")

        @route("POST", "/orgs/{org}/users")
        async def create(self, ctx: Context, req: Create) -> dict[str, Any]:
            return {"org": req.org, "name": req.name, "limit": req.limit}

    return svc


@pytest.fixture
async def gateway(micro_server: MicroServer) -> AsyncIterator[str]:
    svc = users()
    svc.use(registry=micro_server.registry)
    await svc.start()
    try:
        assert micro_server.gateway is not None
        await until_routed(micro_server.gateway, "users")
        yield f"http://{micro_server.gateway.address}"
    finally:
        await svc.stop()


async def until_routed(gateway: Gateway, service: str, present: bool = True) -> None:
    """Wait (bounded) until the gateway's route table has followed the registry's watch."""
    async with asyncio.timeout(5):
        await gateway.routes.wait_until(
            lambda table: any(r.service == service for r in table.routes()) == present
        )


async def send(method: str, url: str, body: str | None = None) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.request(method, url, data=body) as r:
        return r.status, await r.json(content_type=None), dict(r.headers)


def test_route_decorator_records_routes_in_registry_metadata() -> None:
    svc = users()
    info = svc.info()
    get = info.endpoint("Users.Get")
    update = info.endpoint("Users.Update")
    assert get is not None and update is not None
    assert get.metadata["http"] == '[["GET","/users/{id}"]]'
    # stacked decorators: listed top to bottom
    assert msgspec.json.decode(update.metadata["http"]) == [
        ["PUT", "/users/{id}"],
        ["PATCH", "/users/{id}"],
    ]
    debug = info.endpoint("Debug.Health")
    assert debug is None or "http" not in debug.metadata


@pytest.mark.parametrize(
    ("method", "path", "words"),
    [
        ("FETCH", "/x", "method"),
        ("GET", "x", "start with"),
        ("GET", "/a/{id}/b/{id}", "repeats"),
        ("GET", "/a/{1x}", "neither"),
        ("GET", "/a/x{id}", "neither"),
    ],
)
def test_route_decorator_refuses_bad_templates(method: str, path: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        route(method, path)


async def test_path_params_are_typed_and_query_merged(gateway: str) -> None:
    status, body, _ = await send("GET", f"{gateway}/users/42?verbose=true&tags=a&tags=b&score=1.5")
    assert status == 200
    assert body == {
        "id": 42,
        "name": "",
        "verbose": True,
        "tags": ["a", "b"],
        "score": 1.5,
        "via": "get",
    }


async def test_literal_segments_win_over_parameters(gateway: str) -> None:
    status, body, _ = await send("GET", f"{gateway}/users/me")
    assert (status, body["via"]) == (200, "me")


async def test_a_parameter_that_does_not_parse_is_a_400_naming_the_field(gateway: str) -> None:
    status, body, _ = await send("GET", f"{gateway}/users/abc")
    assert status == 400 and "$.id" in body["detail"]


async def test_percent_encoded_segments_are_decoded(gateway: str) -> None:
    status, body, _ = await send("POST", f"{gateway}/orgs/acme%20inc/users", '{"name": "x"}')
    assert (status, body) == (200, {"org": "acme inc", "name": "x", "limit": 0})


async def test_path_params_win_over_body_and_query_fills_missing(gateway: str) -> None:
    status, body, _ = await send("PUT", f"{gateway}/users/7", '{"id": 99, "name": "body"}')
    assert (status, body["id"], body["name"]) == (200, 7, "body")
    status, body, _ = await send("PATCH", f"{gateway}/users/7?name=query", "{}")
    assert (status, body["id"], body["name"]) == (200, 7, "query")
    status, body, _ = await send("PUT", f"{gateway}/users/7?name=query", '{"name": "body"}')
    assert body["name"] == "body"
    status, body, _ = await send("POST", f"{gateway}/orgs/acme/users?limit=3", '{"name": "n"}')
    assert (status, body) == (200, {"org": "acme", "name": "n", "limit": 3})
    status, body, _ = await send("PUT", f"{gateway}/users/7", "[1, 2]")
    assert status == 400 and "JSON object" in body["detail"]


async def test_method_mismatch_is_405_with_allow(gateway: str) -> None:
    status, body, headers = await send("DELETE", f"{gateway}/users/7")
    assert status == 405 and body["code"] == "method_not_allowed"
    assert headers["Allow"] == "GET, PATCH, PUT"


async def test_micro_path_rules_still_reach_endpoints_a_template_shadows(gateway: str) -> None:
    # /users/get matches /users/{id} (GET, PUT, PATCH); POST falls back to Micro's rules,
    # which name an endpoint the registry knows: users Users.Get
    status, body, _ = await send("POST", f"{gateway}/users/get", '{"id": 5}')
    assert (status, body["id"], body["via"]) == (200, 5, "get")
    # and a path no template matches is Micro's as before
    status, body, _ = await send("POST", f"{gateway}/users/users/me", "{}")
    assert (status, body["via"]) == (200, "me")


async def test_late_registration_and_conflicts(
    micro_server: MicroServer, gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert micro_server.gateway is not None
    late = Service("people")

    @late.handler
    class People:
        @route("GET", "/users/{uid}")  # same shape as users' GET /users/{id}: users keeps it
        async def find(self, ctx: Context, req: Empty) -> dict[str, str]:
            return {"via": "people"}

        @route("GET", "/people")
        async def list(self, ctx: Context, req: Empty) -> dict[str, str]:
            return {"via": "people list"}

    late.use(registry=micro_server.registry)
    with caplog.at_level(logging.WARNING, "micro.gateway"):
        await late.start()
        try:
            await until_routed(micro_server.gateway, "people")
            assert (await send("GET", f"{gateway}/people"))[1] == {"via": "people list"}
            assert (await send("GET", f"{gateway}/users/3"))[1]["via"] == "get"
            assert "conflicts" in caplog.text and "/users/{uid}" in caplog.text
        finally:
            await late.stop()
    await until_routed(micro_server.gateway, "people", present=False)
    status, _, _ = await send("GET", f"{gateway}/people")
    assert status == 404  # Micro's rules: service people is gone


# -- the table alone ---------------------------------------------------------------------------


def _info(name: str, routes: dict[str, str], version: str = "latest") -> ServiceInfo:
    return ServiceInfo(
        name,
        version,
        endpoints=[EndpointInfo(ep, metadata={"http": http}) for ep, http in routes.items()],
        nodes=[Node(f"{name}-1", "127.0.0.1:9")],
    )


def test_routes_belong_to_their_namespace() -> None:
    table = RouteTable(None)
    table.load([_info("acme/shop", {"Shop.List": '[["GET","/items"]]'})])
    found = table.lookup("acme", "GET", ["items"])
    assert found.route is not None and found.route.service == "acme/shop"
    assert table.lookup("micro", "GET", ["items"]).route is None


def test_first_registered_wins_and_the_next_takes_over_when_it_goes() -> None:
    table = RouteTable(None)
    first = _info("a", {"A.Get": '[["GET","/x/{id}"]]'})
    second = _info("b", {"B.Get": '[["GET","/x/{key}"]]'})
    table.apply(Event("create", first))
    table.apply(Event("create", second))
    table.apply(Event("update", first))  # heartbeats keep the first one first
    found = table.lookup("micro", "GET", ["x", "1"])
    assert found.route is not None and found.route.service == "a"
    table.apply(Event("delete", first))
    found = table.lookup("micro", "GET", ["x", "1"])
    assert found.route is not None and (found.route.service, found.params) == ("b", {"key": "1"})


def test_invalid_http_metadata_is_skipped() -> None:
    table = RouteTable(None)
    table.load([_info("a", {"A.Bad": "not json", "A.Good": '[["get","/ok"]]'})])
    assert [(r.method, r.template) for r in table.routes()] == [("GET", "/ok")]


def test_coerce_follows_the_schema() -> None:
    schema = msgspec.json.schema(GetUser)
    fields = field_schemas(schema)
    assert coerce(fields["id"], schema, ["42"]) == 42
    assert coerce(fields["id"], schema, ["4x"]) == "4x"  # left for the service to name
    assert coerce(fields["verbose"], schema, ["0"]) is False
    assert coerce(fields["tags"], schema, ["a", "b"]) == ["a", "b"]
    assert coerce(fields["score"], schema, ["2"]) == 2.0
    assert coerce(fields["score"], schema, ["nan"]) == "nan"
    assert coerce(None, schema, ["a", "b"]) == "b"


async def test_query_of_a_micro_path_get_is_typed_too(gateway: str) -> None:
    status, body, _ = await send("GET", f"{gateway}/users/users/get?id=5&verbose=1")
    assert (status, body["id"], body["verbose"], body["via"]) == (200, 5, True, "get")
