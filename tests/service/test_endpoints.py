"""Handler introspection: endpoint names, kinds, schemas, and the errors for bad handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
import pytest

from micro import Context, Service, idempotent, public
from micro.service.endpoint import StreamKind, camel_case, endpoints_of


class Req(msgspec.Struct):
    name: str
    count: int = 1


class Resp(msgspec.Struct):
    message: str


@dataclass
class DataReq:
    text: str


class Shapes:
    @public
    async def say_hello(self, ctx: Context, req: Req) -> Resp:
        return Resp(req.name)

    @idempotent
    async def from_dataclass(self, ctx: Context, req: DataReq) -> Resp:
        return Resp(req.text)

    async def watch(self, ctx: Context, req: Req) -> AsyncIterator[Resp]:
        yield Resp(req.name)

    async def upload(self, ctx: Context, stream: AsyncIterator[Req]) -> Resp:
        return Resp("".join([r.name async for r in stream]))

    async def chat(self, ctx: Context, stream: AsyncIterator[Req]) -> AsyncIterator[Resp]:
        async for r in stream:
            yield Resp(r.name)

    def helper(self) -> int:  # not async: not an endpoint
        return 1

    async def _private(self, ctx: Context, req: Req) -> Resp:  # underscore: not an endpoint
        return Resp("")


def test_camel_case() -> None:
    assert camel_case("call") == "Call"
    assert camel_case("say_hello") == "SayHello"
    assert camel_case("SayHello") == "SayHello"


def test_endpoint_names_kinds_and_flags() -> None:
    eps = {ep.name: ep for ep in endpoints_of(Shapes())}
    assert set(eps) == {
        "Shapes.SayHello",
        "Shapes.FromDataclass",
        "Shapes.Watch",
        "Shapes.Upload",
        "Shapes.Chat",
    }
    assert eps["Shapes.SayHello"].kind is StreamKind.UNARY
    assert eps["Shapes.Watch"].kind is StreamKind.SERVER
    assert eps["Shapes.Upload"].kind is StreamKind.CLIENT
    assert eps["Shapes.Chat"].kind is StreamKind.BIDI
    assert eps["Shapes.SayHello"].public and not eps["Shapes.SayHello"].idempotent
    assert eps["Shapes.FromDataclass"].idempotent
    assert eps["Shapes.Upload"].request_type is Req


def test_schemas_describe_request_fields() -> None:
    eps = {ep.name: ep for ep in endpoints_of(Shapes(), "Custom")}
    schema = eps["Custom.SayHello"].request_schema
    obj = schema["$defs"][schema["$ref"].split("/")[-1]]
    assert obj["properties"]["name"]["type"] == "string"
    assert obj["properties"]["count"] == {"type": "integer", "default": 1}
    assert obj["required"] == ["name"]


def test_decode_names_the_bad_field() -> None:
    (ep,) = [e for e in endpoints_of(Shapes()) if e.name == "Shapes.SayHello"]
    with pytest.raises(Exception, match=r"\$\.count"):
        ep.decode_request(b'{"name": "a", "count": "x"}', 1)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("async def call(self, ctx, req): ...", "type hints"),
        ("def call(self, ctx: Context, req: Req) -> Resp: ...", "no 'async def'"),
        ("async def call(self, req: Req) -> Resp: ...", r"\(ctx, request\)"),
        ("async def call(self, ctx: Context, req: object) -> Resp: ...", "JSON Schema"),
        (
            "async def call(self, ctx: Context, req: Req) -> AsyncIterator[Resp]:\n"
            "        return None",
            None,
        ),
    ],
)
def test_bad_handlers_are_refused_with_a_reason(source: str, match: str | None) -> None:
    namespace = {"Context": Context, "Req": Req, "Resp": Resp, "AsyncIterator": AsyncIterator}
    exec(f"class Bad:\n    {source}\n", namespace)
    if match is None:  # a coroutine that returns an async iterator streams too
        (ep,) = endpoints_of(namespace["Bad"]())
        assert ep.kind is StreamKind.SERVER
        return
    with pytest.raises(TypeError, match=match):
        endpoints_of(namespace["Bad"]())


def test_service_refuses_duplicate_endpoints_and_bad_names() -> None:
    svc = Service("dup")
    svc.handler(Shapes)
    with pytest.raises(ValueError, match="twice"):
        svc.handler(Shapes())
    with pytest.raises(ValueError):
        Service("bad name")
