"""OpenAPI 3.1 from the registry: path inverse, schema components, the served document and
/docs, and schemathesis run against a live gateway with the example services."""

from __future__ import annotations

import asyncio
import enum
import importlib.util
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import aiohttp
import hypothesis
import msgspec
import pytest
from hypothesis import strategies as st

from micro import Context, Service, conflict, public, route
from micro.client import Client
from micro.errors import MicroError
from micro.gateway import Gateway
from micro.gateway.openapi import CORE_SERVICES, document, install, kebab, path_of
from micro.gateway.resolve import resolve
from micro.registry import EndpointInfo, Node, ServiceInfo
from micro.server import MicroServer
from micro.testing import start_server

ROOT = Path(__file__).resolve().parents[2]


# -- path_of is the inverse of resolve ---------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "endpoint", "path"),
    [
        ("foo", "Foo.Bar", "/foo/bar"),
        ("foo", "Foo.Call", "/foo/call"),
        ("foo", "Bar.Baz", "/foo/bar/baz"),
        ("foo", "Bar.Call", "/foo/bar/call"),
        ("foo.bar", "Baz.Qux", "/foo/bar/baz/qux"),
        ("foo.bar", "Bar.Qux", "/foo/bar/bar/qux"),
        ("a.b.c", "Baz.Qux", "/a/b/c/baz/qux"),
        ("go.micro.srv.greeter", "Say.Hello", "/go/micro/srv/greeter/say/hello"),
        ("v1.foo", "Foo.Call", "/v1/foo/call"),
        ("v1.foo", "Foo.Bar", "/v1/foo/bar"),
        ("v1.foo", "Bar.Baz", "/v1/foo/bar/baz"),
        ("v2", "V2.Call", "/v2"),
        ("foo-bar", "FooBar.BazQux", "/foo-bar/baz-qux"),
        ("foo_bar", "FooBar.Go", "/foo_bar/go"),
        ("helloworld", "Helloworld.SayHello", "/helloworld/say-hello"),
        ("foo", "OtherHandler.DoIt", "/foo/other-handler/do-it"),
        ("foo", "Foo.HTTPServer", "/foo/HTTP-server"),
        ("foo", "Foo.GetV2", "/foo/get-v2"),
        ("foo", "Foo.ABC", "/foo/ABC"),
        ("Foo", "Foo.Bar", "/Foo/bar"),
        ("foo", "Foo.Get2Things", "/foo/get2-things"),
    ],
)
def test_path_of_every_shape(service: str, endpoint: str, path: str) -> None:
    assert path_of(service, endpoint) == path
    assert resolve(path) == (service, endpoint)


@pytest.mark.parametrize(
    ("service", "endpoint"),
    [
        ("foo", "Foo.lower"),  # the rules always capitalise
        ("foo", "NoDot"),
        ("foo", "A.B.C"),
        ("v1.foo.bar", "Baz.Qux"),  # the version rule takes two segments only
        ("acme/greeter", "Greeter.Call"),  # another namespace's service
        ("foo", "Foo.Bär"),  # not a valid path segment
        ("", "Foo.Bar"),
        ("foo..bar", "Baz.Qux"),
    ],
)
def test_path_of_is_none_when_no_path_reaches_it(service: str, endpoint: str) -> None:
    assert path_of(service, endpoint) is None


_SEG = st.from_regex(r"[a-z][a-z0-9]{0,5}(-[a-z0-9]{1,4})?", fullmatch=True)
_CAMEL = st.from_regex(r"([A-Z][a-z0-9]{0,4}|[A-Z]{2,3}){1,3}", fullmatch=True)


@hypothesis.settings(max_examples=300, deadline=None, derandomize=True, database=None)
@hypothesis.given(
    service=st.lists(_SEG, min_size=1, max_size=4).map(".".join),
    handler=_CAMEL,
    method=_CAMEL,
)
def test_path_of_round_trips(service: str, handler: str, method: str) -> None:
    endpoint = f"{handler}.{method}"
    path = path_of(service, endpoint)
    first = service.split(".")[0]
    versioned = first[:1] == "v" and first[1:].isdigit()
    if not versioned or service.count(".") <= 1:
        assert path is not None, (service, endpoint)
    if path is not None:
        assert resolve(path) == (service, endpoint)


def test_kebab() -> None:
    assert kebab("SayHello") == "say-hello"
    assert kebab("HTTPServer") == "http-server"
    assert kebab("Call") == "call"
    assert kebab("GetV2") == "get-v2"


# -- the document from registry entries ------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 3


class Address(msgspec.Struct):
    """Where someone lives."""

    street: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    city: str
    zip: str | None = None


class Person(msgspec.Struct):
    """Someone to describe."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    age: Annotated[int, msgspec.Meta(ge=0, le=150)]
    color: Color = Color.RED
    level: Level = Level.LOW
    tags: Annotated[list[str], msgspec.Meta(max_length=5)] = []
    address: Address | None = None
    friends: Annotated[list[Address], msgspec.Meta(max_length=3)] = []
    score: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None


class Profile(msgspec.Struct):
    person: Person
    summary: str
    flags: dict[str, bool]


class Request(msgspec.Struct):
    """A people request (another service has a different ``Request``)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class Reply(msgspec.Struct):
    message: str
    count: int


class ItemRequest(msgspec.Struct):
    id: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    verbose: bool = False
    fields: list[str] = []


class Item(msgspec.Struct):
    id: int
    name: str
    fields: list[str] = []


def people() -> Service:
    """A richer service: nested Structs, enums, optionals, lists, bounded integers, a
    public and a private endpoint, a 409, a stream and an explicit route."""
    svc = Service("people")

    class People:
        async def describe(self, ctx: Context, req: Person) -> Profile:
            where = f" from {req.address.city}" if req.address else ""
            return Profile(
                person=req,
                summary=f"{req.name}, {req.age}{where}",
                flags={"adult": req.age >= 18, "friendly": bool(req.friends)},
            )

        @public
        async def hello(self, ctx: Context, req: Request) -> Reply:
            return Reply(message=f"hello {req.name}", count=len(req.name))

        async def claim(self, ctx: Context, req: Request) -> Reply:
            if req.name.startswith("a"):
                raise conflict("people", f"{req.name} is taken")
            return Reply(message=f"claimed {req.name}", count=1)

        @route("GET", "/items/{id}")
        async def item(self, ctx: Context, req: ItemRequest) -> Item:
            return Item(id=req.id, name=f"item {req.id}", fields=req.fields if req.verbose else [])

        async def watch(self, ctx: Context, req: Request) -> AsyncIterator[Reply]:
            yield Reply(message=req.name, count=1)

    svc.handler(People)

    class Admin:
        async def reset(self, ctx: Context, req: Request) -> Reply:
            return Reply(message=f"reset {req.name}", count=0)

    svc.handler(Admin)
    return svc


class ShopRequest(msgspec.Struct):
    """A shop request: same name as people's, different fields."""

    sku: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}-[0-9]{3}$")]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=99)] = 1


ShopRequest.__name__ = "Request"  # the same $defs name as people's Request


class Quote(msgspec.Struct):
    sku: str
    total: int


def shop() -> Service:
    """A versioned service name: its paths start with /v1/shop."""
    svc = Service("v1.shop")

    class Shop:
        async def quote(self, ctx: Context, req: ShopRequest) -> Quote:
            return Quote(sku=req.sku, total=req.quantity * 250)

    svc.handler(Shop)
    return svc


def load_helloworld() -> ModuleType:
    """A fresh copy of examples/helloworld/main.py (its Service is a module global)."""
    spec = importlib.util.spec_from_file_location(
        "helloworld_example", ROOT / "examples" / "helloworld" / "main.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def pointer(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def validate(doc: dict[str, Any]) -> None:
    """The document is valid OpenAPI 3.1 and every $ref points at something."""
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)
    text = json.dumps(doc)
    assert "$defs" not in text
    for ref in refs(doc):
        assert pointer(doc, ref) is not None


def local_infos() -> list[ServiceInfo]:
    hello = load_helloworld().service
    return [hello.info(), people().info(), shop().info()]


def test_document_of_the_example_services_is_valid_openapi() -> None:
    doc = document(local_infos())
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    assert {
        "/helloworld/call",
        "/people/describe",
        "/people/hello",
        "/people/claim",
        "/people/item",
        "/people/admin/reset",
        "/v1/shop/quote",
    } <= set(paths)
    op = paths["/people/describe"]["post"]
    body = op["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/people.Person"
    }
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/people.Profile"
    }
    for code in ("400", "401", "403", "404", "409", "429", "500", "503", "504"):
        assert op["responses"][code]["$ref"].startswith("#/components/responses/")
        response = pointer(doc, op["responses"][code]["$ref"])
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/MicroError"
        }
    assert doc["components"]["schemas"]["MicroError"]["required"] == [
        "id",
        "code",
        "detail",
        "status",
    ]
    person = doc["components"]["schemas"]["people.Person"]
    assert person["properties"]["age"] == {"type": "integer", "minimum": 0, "maximum": 150}
    assert person["properties"]["address"]["anyOf"][0] == {
        "$ref": "#/components/schemas/people.Address"
    }
    assert person["properties"]["color"]["$ref"] == "#/components/schemas/people.Color"
    assert doc["components"]["schemas"]["people.Level"]["enum"] == [1, 3]


def test_same_type_names_in_two_services_do_not_collide() -> None:
    doc = document(local_infos())
    schemas = doc["components"]["schemas"]
    assert schemas["people.Request"]["properties"].keys() == {"name"}
    assert schemas["v1.shop.Request"]["properties"].keys() == {"sku", "quantity"}
    quote = doc["paths"]["/v1/shop/quote"]["post"]
    assert quote["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/v1.shop.Request"
    }


def outer(inner_props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What msgspec.json.schema gives for ``Outer`` holding an ``Inner``."""
    return {
        "$ref": "#/$defs/Outer",
        "$defs": {
            "Outer": {
                "title": "Outer",
                "type": "object",
                "properties": {"inner": {"$ref": "#/$defs/Inner"}, **extra},
                "required": ["inner"],
            },
            "Inner": {"title": "Inner", "type": "object", "properties": inner_props},
        },
    }


def test_two_types_of_one_name_in_one_service_get_distinct_names() -> None:
    first = outer({"a": {"type": "integer"}})
    second = outer({"b": {"type": "string"}}, extra={"type": "boolean"})
    info = ServiceInfo(
        "svc",
        endpoints=[
            EndpointInfo("Svc.One", request=first, response=first),
            EndpointInfo("Svc.Two", request=second, response=first),
            EndpointInfo("Svc.Three", request=second, response=second),
        ],
    )
    doc = document([info])
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert schemas["svc.Inner"]["properties"].keys() == {"a"}
    assert schemas["svc.Inner2"]["properties"].keys() == {"b"}
    # the second Outer points at the renamed Inner, not at the first one
    assert schemas["svc.Outer2"]["properties"]["inner"] == {
        "$ref": "#/components/schemas/svc.Inner2"
    }
    assert schemas["svc.Outer"]["properties"]["inner"] == {"$ref": "#/components/schemas/svc.Inner"}
    two = doc["paths"]["/svc/two"]["post"]
    assert two["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/svc.Outer2"
    }
    # identical definitions are shared, not copied
    three = doc["paths"]["/svc/three"]["post"]
    assert three["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/svc.Outer2"
    }
    assert sorted(n for n in schemas if n.startswith("svc.")) == [
        "svc.Inner",
        "svc.Inner2",
        "svc.Outer",
        "svc.Outer2",
    ]


def tree(value_type: str) -> dict[str, Any]:
    """What msgspec.json.schema gives for a recursive ``Tree`` Struct."""
    return {
        "$ref": "#/$defs/Tree",
        "$defs": {
            "Tree": {
                "title": "Tree",
                "type": "object",
                "properties": {
                    "value": {"type": value_type},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}},
                },
                "required": ["value"],
            }
        },
    }


def test_recursive_types_of_one_name_keep_their_own_references() -> None:
    info = ServiceInfo(
        "forest",
        endpoints=[
            EndpointInfo("Forest.Ints", request=tree("integer"), response=tree("integer")),
            EndpointInfo("Forest.Strs", request=tree("string"), response=tree("string")),
        ],
    )
    doc = document([info])
    validate(doc)
    schemas = doc["components"]["schemas"]
    ints, strs = schemas["forest.Tree"], schemas["forest.Tree2"]
    assert ints["properties"]["value"] == {"type": "integer"}
    assert ints["properties"]["children"]["items"] == {"$ref": "#/components/schemas/forest.Tree"}
    assert strs["properties"]["value"] == {"type": "string"}
    assert strs["properties"]["children"]["items"] == {"$ref": "#/components/schemas/forest.Tree2"}


def test_streams_are_marked_not_operations() -> None:
    doc = document(local_infos())
    item = doc["paths"]["/helloworld/stream"]
    assert item["x-micro-stream"] == "server"
    assert not {"get", "post", "put", "patch", "delete", "head"} & item.keys()
    assert item["x-micro-request"] == {"$ref": "#/components/schemas/helloworld.StreamRequest"}
    assert doc["paths"]["/people/watch"]["x-micro-stream"] == "server"
    for kind in ("client", "bidi"):
        info = ServiceInfo("s", endpoints=[EndpointInfo("S.Go", stream=kind)])
        assert document([info])["paths"]["/s/go"]["x-micro-stream"] == kind


def test_security_public_and_auth_off() -> None:
    doc = document(local_infos())
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["cookieAuth"]["in"] == "cookie"
    assert schemes["cookieAuth"]["name"] == "micro-token"
    assert doc["security"] == [{"bearerAuth": []}, {"cookieAuth": []}]
    assert doc["paths"]["/people/hello"]["post"]["security"] == []
    assert doc["paths"]["/helloworld/call"]["post"]["security"] == []
    assert "security" not in doc["paths"]["/people/describe"]["post"]
    assert "401" in doc["paths"]["/people/describe"]["post"]["responses"]

    off = document(local_infos(), auth=False)
    validate(off)
    assert "security" not in off and "securitySchemes" not in off["components"]
    op = off["paths"]["/people/describe"]["post"]
    assert "security" not in op and not {"401", "403"} & op["responses"].keys()


def test_which_services_are_listed() -> None:
    infos = [
        ServiceInfo("registry", endpoints=[EndpointInfo("Registry.ListServices")]),
        ServiceInfo("store", endpoints=[EndpointInfo("Store.Read")]),
        ServiceInfo("acme/greeter", endpoints=[EndpointInfo("Greeter.Call")]),
        ServiceInfo("greeter", endpoints=[EndpointInfo("Greeter.Call")]),
    ]
    assert {"registry", "store"} <= CORE_SERVICES
    assert set(document(infos)["paths"]) == {"/greeter/call"}
    everything = document(infos, exclude=())
    assert set(everything["paths"]) == {
        "/greeter/call",
        "/registry/list-services",
        "/store/read",
    }


def test_the_highest_version_wins_and_endpoints_of_all_versions_are_listed() -> None:
    old = {"type": "object", "properties": {"old": {"type": "string"}}}
    new = {"type": "object", "properties": {"new": {"type": "string"}}}
    infos = [
        ServiceInfo("svc", "1.10.0", endpoints=[EndpointInfo("Svc.A", request=new)]),
        ServiceInfo(
            "svc",
            "1.9.0",
            endpoints=[EndpointInfo("Svc.A", request=old), EndpointInfo("Svc.B")],
        ),
    ]
    doc = document(infos)
    body = doc["paths"]["/svc/a"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == new
    assert "/svc/b" in doc["paths"]


def test_explicit_routes_from_metadata() -> None:
    schema = msgspec.json.schema(ItemRequest)
    response = msgspec.json.schema(Item)
    info = ServiceInfo(
        "items",
        endpoints=[
            EndpointInfo(
                "Items.Get",
                request=schema,
                response=response,
                metadata={"http": '[["GET", "/items/{id}"], ["PUT", "/items/{id}"]]'},
            ),
            EndpointInfo("Items.Bad", metadata={"http": "not json"}),
        ],
    )
    doc = document([info])
    validate(doc)
    get = doc["paths"]["/items/{id}"]["get"]
    params = {(p["name"], p["in"]): p for p in get["parameters"]}
    assert params["id", "path"]["required"] is True
    assert params["id", "path"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000000}
    assert params["verbose", "query"]["schema"] == {"type": "boolean", "default": False}
    assert params["fields", "query"]["schema"]["type"] == "array"
    assert "requestBody" not in get
    put = doc["paths"]["/items/{id}"]["put"]
    assert [p["name"] for p in put["parameters"]] == ["id"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/items.ItemRequest"
    }
    assert (
        get["operationId"]
        != put["operationId"]
        != doc["paths"]["/items/get"]["post"]["operationId"]
    )
    assert "/items/bad" in doc["paths"]  # bad metadata: only its Micro path


# -- served by a live gateway, and schemathesis against it -----------------------------------


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[MicroServer, str]]:
    """A server without auth, the example services, and a gateway with /openapi.json."""
    server = await start_server(tmp_path / "data", gateway=False, auth=False)
    services = [load_helloworld().service, people(), shop()]
    client = Client(server.registry)
    gateway = Gateway(client, "127.0.0.1:0")
    install(gateway)
    started: list[Service] = []
    try:
        for svc in services:
            svc.use(registry=server.registry)
            await svc.start()
            started.append(svc)
        await gateway.start()
        yield server, f"http://{gateway.address}"
    finally:
        await gateway.stop()
        await client.close()
        for svc in reversed(started):
            await svc.stop(grace=1.0)
        await server.stop()


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, r.content_type, await r.text()


async def test_openapi_json_and_docs_are_served(live: tuple[MicroServer, str]) -> None:
    _, base = live
    status, ctype, text = await get(f"{base}/openapi.json")
    assert (status, ctype) == (200, "application/json")
    doc = json.loads(text)
    validate(doc)
    assert "/helloworld/call" in doc["paths"] and "/v1/shop/quote" in doc["paths"]
    assert not any(p.startswith("/registry") or p.startswith("/store") for p in doc["paths"])
    assert "security" not in doc  # this gateway checks no credentials
    status, ctype, html = await get(f"{base}/docs")
    assert (status, ctype) == (200, "text/html")
    assert "openapi.json" in html and "SwaggerUIBundle" in html


async def test_the_document_follows_the_registry(tmp_path: Path) -> None:
    server = await start_server(tmp_path / "data", gateway=False, auth=False)
    client = Client(server.registry)
    now = [100.0]
    gateway = Gateway(client, "127.0.0.1:0")
    install(gateway, clock=lambda: now[0])
    await gateway.start()
    try:
        base = f"http://{gateway.address}"
        assert "/v1/shop/quote" not in json.loads((await get(f"{base}/openapi.json"))[2])["paths"]
        await server.registry.register(
            ServiceInfo(
                "v1.shop",
                endpoints=shop().info().endpoints,
                nodes=[Node("n1", "127.0.0.1:9")],
            ),
            ttl=60,
        )
        # cached for a second of the clock
        assert "/v1/shop/quote" not in json.loads((await get(f"{base}/openapi.json"))[2])["paths"]
        now[0] += 1.0
        assert "/v1/shop/quote" in json.loads((await get(f"{base}/openapi.json"))[2])["paths"]
    finally:
        await gateway.stop()
        await client.close()
        await server.stop()


def fuzz(base: str, doc: dict[str, Any], modes: list[Any]) -> tuple[list[str], dict[str, set[int]]]:
    """Run schemathesis on every operation of ``doc`` against ``base``: the failures, and
    the statuses each operation answered to valid (positive) requests."""
    import schemathesis
    from schemathesis.core.result import Ok

    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1
        for mode in modes:
            try:
                fuzz_one(base, operation, mode, statuses.setdefault(operation.label, set()))
            except Exception as exc:  # collected, so one report names every failure
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 6, operations
    return failures, statuses


def fuzz_one(base: str, operation: Any, mode: Any, statuses: set[int]) -> None:
    """Up to 25 derandomized examples of ``operation`` in ``mode``, each response checked:
    no 5xx, a documented status and content type, a body conforming to the schema, and
    invalid requests refused."""
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]

    @hypothesis.settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=base, timeout=10)
        if mode == GenerationMode.POSITIVE:
            statuses.add(response.status_code)
        case.validate_response(response, checks=checks)

    run()


@pytest.mark.timeout(90)
async def test_schemathesis_finds_no_server_error_nor_schema_violation(
    live: tuple[MicroServer, str],
) -> None:
    from schemathesis import GenerationMode

    _, base = live
    doc = json.loads((await get(f"{base}/openapi.json"))[2])
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    failures, statuses = await asyncio.wait_for(asyncio.to_thread(fuzz, base, doc, modes), 75)
    # no failure, and not vacuous: every operation served valid requests (no auth: 200s)
    served = all(200 in got for got in statuses.values())
    assert not failures and served, "\n\n".join([*failures, f"statuses: {statuses}"])


async def test_with_auth_401_is_documented_and_answered(tmp_path: Path) -> None:
    server = await start_server(tmp_path / "data", gateway=False, auth=True)
    svc = people()
    client = Client(server.registry)
    gateway = Gateway(client, "127.0.0.1:0", guard=server.guard)
    install(gateway)
    try:
        svc.use(registry=server.registry, auth=server.guard)
        await svc.start()
        await gateway.start()
        base = f"http://{gateway.address}"
        doc = json.loads((await get(f"{base}/openapi.json"))[2])
        validate(doc)
        assert "bearerAuth" in doc["components"]["securitySchemes"]
        private = doc["paths"]["/people/describe"]["post"]
        assert "security" not in private  # the document-wide requirement applies
        assert doc["paths"]["/people/hello"]["post"]["security"] == []
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/people/describe", json={"name": "a", "age": 1}) as r:
                assert r.status == 401
                error = await r.json()
            async with http.post(f"{base}/people/hello", json={"name": "bo"}) as r:
                assert r.status == 200
                assert await r.json() == {"message": "hello bo", "count": 2}
        # the 401 answer is the documented MicroError
        documented = pointer(doc, private["responses"]["401"]["$ref"])
        schema = pointer(doc, documented["content"]["application/json"]["schema"]["$ref"])
        assert set(error) == set(schema["required"]) and error["status"] == 401
    finally:
        await gateway.stop()
        await client.close()
        await svc.stop(grace=1.0)
        await server.stop()


def test_resolve_rejects_what_path_of_refuses() -> None:
    with pytest.raises(MicroError):
        resolve("/foo/Bär")


async def test_every_answer_is_a_micro_error_even_for_a_newline_in_the_path(
    live: tuple[MicroServer, str],
) -> None:
    _, base = live
    async with aiohttp.ClientSession() as http:
        for path in ("/items/%0A%0A", "/people/%0A"):
            async with http.post(f"{base}{path}", data="{}") as r:
                # /items/{id} is a GET route: a POST there is 405; elsewhere 400
                assert r.content_type == "application/json", path
                body = await r.json()
                assert (r.status, body["status"]) in ((400, 400), (405, 405)), (path, body)
