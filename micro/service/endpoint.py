"""Endpoints: a handler method plus its types, codecs, schemas and middleware, built once."""

from __future__ import annotations

import enum
import inspect
import re
import typing
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import msgspec

from ..context import Context
from ..errors import bad_request, internal
from ..transport.frames import Codec

__all__ = [
    "Endpoint",
    "HandlerFunc",
    "Middleware",
    "StreamKind",
    "camel_case",
    "endpoints_of",
    "idempotent",
    "public",
    "route",
]

HandlerFunc = Callable[[Context, Any], Awaitable[Any]]
"""What middleware wraps: ``(ctx, request) -> response``. For streaming endpoints the
request may be an inbound stream and the awaited result an async iterator of responses."""

Middleware = Callable[[HandlerFunc], HandlerFunc]
"""A function that wraps a handler, composed once when the service starts."""

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


class StreamKind(enum.StrEnum):
    """The shape of an endpoint's conversation."""

    UNARY = "unary"
    SERVER = "server"  # one request, a stream of responses
    CLIENT = "client"  # a stream of requests, one response
    BIDI = "bidi"  # streams both ways


def public(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a handler method as callable without credentials."""
    func.__micro_public__ = True  # type: ignore[attr-defined]
    return func


def idempotent(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a handler method as safe to re-send after a lost connection."""
    func.__micro_idempotent__ = True  # type: ignore[attr-defined]
    return func


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
"""The methods :func:`route` accepts."""

_TEMPLATE_SEGMENT = re.compile(r"^(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z0-9._~!$&'()*+,;=:@-]+)$")


def route(method: str, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Serve a handler method at an explicit HTTP route of the gateway, as well as at the
    path Micro's rules give it. ``path`` is a template whose whole segments may be
    parameters: ``@route("GET", "/users/{id}")``. The gateway merges path parameters (typed
    as the request's fields say) and the query string into the request. Stackable: each
    decorator adds one route. Raises ``ValueError`` for an unknown method or a bad template.
    """
    verb = method.upper()
    if verb not in HTTP_METHODS:
        raise ValueError(f"route method {method!r} is not one of {sorted(HTTP_METHODS)}")
    if not path.startswith("/"):
        raise ValueError(f"route path {path!r} must start with '/'")
    segments = [s for s in path.split("/") if s]
    names: list[str] = []
    for segment in segments:
        if not _TEMPLATE_SEGMENT.match(segment):
            raise ValueError(
                f"route path {path!r}: segment {segment!r} is neither a literal nor a {{param}}"
            )
        if segment.startswith("{"):
            names.append(segment[1:-1])
    if len(set(names)) != len(names):
        raise ValueError(f"route path {path!r} repeats a parameter")
    normalized = "/" + "/".join(segments)

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        routes: list[tuple[str, str]] = list(getattr(func, "__micro_routes__", ()))
        if (verb, normalized) not in routes:
            # decorators apply bottom-up: insert first so the list reads top to bottom
            routes.insert(0, (verb, normalized))
        func.__micro_routes__ = routes  # type: ignore[attr-defined]
        return func

    return mark


_CAMEL = re.compile(r"(?:^|_)([a-z0-9])")


def camel_case(name: str) -> str:
    """``say_hello`` -> ``SayHello``; names already in CamelCase are kept."""
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


def _stream_item(tp: Any) -> Any | None:
    """The item type of ``AsyncIterator[T]``-like annotations, else ``None``."""
    origin = typing.get_origin(tp)
    if origin in (AsyncIterator, AsyncIterable, typing.AsyncGenerator, AsyncIterable):
        return typing.get_args(tp)[0]
    if origin is not None and isinstance(origin, type) and issubclass(origin, AsyncIterator):
        return typing.get_args(tp)[0]
    return None


def _schema(tp: Any, where: str) -> dict[str, Any]:
    try:
        return msgspec.json.schema(tp)
    except TypeError as exc:
        raise TypeError(f"{where}: type {tp!r} cannot be described as JSON Schema: {exc}") from exc


class Endpoint:
    """One callable endpoint of a service: ``Handler.Method``."""

    __slots__ = (
        "_generator",
        "_json_decoder",
        "_msgpack_decoder",
        "call",
        "func",
        "idempotent",
        "kind",
        "name",
        "public",
        "request_schema",
        "request_type",
        "response_schema",
        "response_type",
        "routes",
    )

    def __init__(self, name: str, func: Callable[..., Any]) -> None:
        self.name = name
        self.func = func
        hints = typing.get_type_hints(func)
        params = [p for p in inspect.signature(func).parameters.values()]
        if len(params) != 2:
            raise TypeError(
                f"handler {name} must take (ctx, request); it takes {[p.name for p in params]}"
            )
        req_hint = hints.get(params[1].name)
        resp_hint = hints.get("return")
        if req_hint is None or resp_hint is None:
            raise TypeError(f"handler {name} needs type hints for its request and return value")
        is_gen = inspect.isasyncgenfunction(func)
        if not is_gen and not inspect.iscoroutinefunction(func):
            raise TypeError(f"handler {name} must be 'async def'")
        in_item = _stream_item(req_hint)
        out_item = _stream_item(resp_hint)
        if is_gen and out_item is None:
            raise TypeError(f"streaming handler {name} must be annotated -> AsyncIterator[T]")
        self._generator = is_gen
        if in_item is not None:
            self.kind = StreamKind.BIDI if out_item is not None else StreamKind.CLIENT
        else:
            self.kind = StreamKind.SERVER if out_item is not None else StreamKind.UNARY
        self.request_type: Any = in_item if in_item is not None else req_hint
        self.response_type: Any = out_item if out_item is not None else resp_hint
        self.public = bool(getattr(func, "__micro_public__", False))
        self.idempotent = bool(getattr(func, "__micro_idempotent__", False))
        self.routes: list[tuple[str, str]] = list(getattr(func, "__micro_routes__", ()))
        self.request_schema = _schema(self.request_type, f"request of {name}")
        self.response_schema = _schema(self.response_type, f"response of {name}")
        self._msgpack_decoder = msgspec.msgpack.Decoder(self.request_type)
        self._json_decoder = msgspec.json.Decoder(self.request_type)
        self.call: HandlerFunc = self._base()

    def routes_json(self) -> str:
        """The explicit HTTP routes as the registry metadata ``http`` holds them:
        ``[["GET","/users/{id}"]]``."""
        return _json_encoder.encode([list(r) for r in self.routes]).decode()

    def _base(self) -> HandlerFunc:
        func = self.func
        if not self._generator:  # a coroutine: awaiting it gives the response (or iterator)
            return typing.cast(HandlerFunc, func)

        async def open_stream(ctx: Context, request: Any) -> Any:
            return func(ctx, request)

        return open_stream

    def wrap(self, middleware: Sequence[Middleware]) -> None:
        """Compose ``middleware`` around the handler, first in the list outermost."""
        call = self._base()
        for mw in reversed(middleware):
            call = mw(call)
        self.call = call

    def decode_request(self, body: bytes, codec: int) -> Any:
        """Decode and validate a request body; a bad body is a 400 naming the field."""
        try:
            if codec == Codec.MSGPACK:
                return self._msgpack_decoder.decode(body)
            if codec == Codec.JSON:
                return self._json_decoder.decode(body or b"{}")
        except msgspec.ValidationError as exc:
            raise bad_request(self.name, f"invalid request: {exc}") from None
        except msgspec.DecodeError as exc:
            raise bad_request(self.name, f"malformed request body: {exc}") from None
        raise bad_request(self.name, f"unknown codec {codec}")

    def encode_response(self, value: Any, codec: int) -> bytes:
        """Encode a handler's result for the wire."""
        try:
            if codec == Codec.JSON:
                return _json_encoder.encode(value)
            return _msgpack_encoder.encode(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise internal(self.name, f"cannot encode response: {exc}") from exc


def endpoints_of(handler: object, name: str | None = None) -> list[Endpoint]:
    """The endpoints of a handler instance: every public ``async def`` method."""
    prefix = name or type(handler).__name__
    found: list[Endpoint] = []
    for attr in dir(type(handler)):
        if attr.startswith("_"):
            continue
        member = getattr(handler, attr)
        if not (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)):
            continue
        found.append(Endpoint(f"{prefix}.{camel_case(attr)}", member))
    if not found:
        raise TypeError(f"handler {prefix} has no 'async def' methods")
    return found
