"""The HTTP sidecar: a plain HTTP application (any language) registered as a micro service.

``Sidecar("legacy", "http://127.0.0.1:9000")`` is a :class:`~micro.Service` whose endpoints
forward to the application over HTTP (one shared :class:`aiohttp.ClientSession`):

- When the application serves an OpenAPI document (``openapi``, default ``/openapi.json``),
  each operation becomes an endpoint ``<Service>.<Name>``: ``Name`` is the CamelCase of the
  ``operationId`` (``get_user`` -> ``GetUser``), else of the method and path
  (``GET /users/{id}`` -> ``GetUsersId``). Its request schema lists the operation's path and
  query parameters plus the properties of its JSON request body; its response schema is the
  JSON schema of its 200/201 answer; its metadata ``http`` is ``[["GET", "/users/{id}"]]``
  (JSON), and GET/HEAD/PUT/DELETE endpoints are marked idempotent.
  A call fills the path parameters from the request's fields, sends the query parameters
  (and, for GET, HEAD and DELETE, every other field) in the query string and the remaining
  fields as the JSON body.
- Without one, a single endpoint ``<Service>.Call`` takes ``{method, path, query, headers,
  body}`` and answers ``{status, headers, body}`` (for any status).

The answer of an OpenAPI endpoint is the HTTP response's JSON body (``{}`` when empty, the
text as a JSON string when it is not JSON). An HTTP 4xx/5xx answer becomes a
:class:`~micro.errors.MicroError` with that status and the response body as its detail; an
application that cannot be reached is ``unavailable`` (503), one that does not answer before
the call's deadline ``timeout`` (504).

The sidecar is a service like any other: it logs in with the credential in its environment
and its endpoints are guarded by the platform's rules.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import msgspec

from ..context import Context
from ..errors import MicroError, bad_request, internal, timeout, unavailable
from ..registry import ServiceInfo
from ..service import Service
from ..service.endpoint import Endpoint
from ..transport.frames import DEFAULT_MAX_FRAME
from ..transport.server import RpcServer

__all__ = ["CallRequest", "CallResponse", "Route", "Sidecar", "handler_name", "routes_of"]

log = logging.getLogger("micro.sidecar")

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_NO_BODY = {"GET", "HEAD", "DELETE", "OPTIONS"}
_IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    429: "too_many_requests",
    500: "internal",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}
_PARAM = re.compile(r"\{([^}/]+)\}")
_WORDS = re.compile(r"[A-Za-z0-9]+")
_DETAIL_MAX = 4096


class CallRequest(msgspec.Struct, omit_defaults=True):
    """The request of ``<Service>.Call`` (no OpenAPI document): one HTTP request."""

    method: str = "GET"
    path: str = "/"
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    body: Any = None  # sent as JSON unless None


class CallResponse(msgspec.Struct):
    """The answer of ``<Service>.Call``: the HTTP response, its body parsed if JSON."""

    status: int
    headers: dict[str, str] = {}
    body: Any = None


class Route(msgspec.Struct, frozen=True):
    """One HTTP operation exposed as an endpoint."""

    endpoint: str  # Handler.Method
    method: str  # upper case
    path: str  # with {param} placeholders
    path_params: tuple[str, ...] = ()
    query_params: tuple[str, ...] = ()
    request_schema: dict[str, Any] = {}
    response_schema: dict[str, Any] = {}


def handler_name(service: str) -> str:
    """``legacy`` -> ``Legacy``; ``my-app`` -> ``MyApp`` (as the gateway maps paths)."""
    return "".join(w[:1].upper() + w[1:] for w in _WORDS.findall(service)) or "Handler"


def _camel(text: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in _WORDS.findall(text))


def _local_refs(schema: Any) -> Any:
    """OpenAPI ``#/components/schemas/X`` references as JSON Schema ``#/$defs/X``."""
    text = json.dumps(schema).replace('"#/components/schemas/', '"#/$defs/')
    return json.loads(text)


def _json_schema(content: Mapping[str, Any] | None) -> dict[str, Any]:
    if not content:
        return {}
    media: Any = content.get("application/json") or next(iter(content.values()), {})
    schema = media.get("schema", {}) if isinstance(media, Mapping) else {}
    return dict(schema) if isinstance(schema, Mapping) else {}


def routes_of(doc: Mapping[str, Any], service: str) -> list[Route]:
    """The endpoints of an OpenAPI 3 document (``paths`` with operations)."""
    prefix = handler_name(service)
    defs = _local_refs(doc.get("components", {}).get("schemas", {}))
    schemas: dict[str, Mapping[str, Any]] = {}
    routes: list[Route] = []
    seen: set[str] = set()
    for path, item in (doc.get("paths") or {}).items():
        if not isinstance(item, Mapping):
            continue
        shared = list(item.get("parameters", []))
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            name = _camel(op.get("operationId") or "") or _camel(f"{method} {path}")
            endpoint = f"{prefix}.{name}"
            if endpoint in seen:
                endpoint = f"{prefix}.{_camel(f'{method} {path}')}"
            if endpoint in seen:
                continue
            seen.add(endpoint)
            props: dict[str, Any] = {}
            required: list[str] = []
            in_path: list[str] = []
            in_query: list[str] = []
            for param in [*shared, *op.get("parameters", [])]:
                where, pname = param.get("in"), param.get("name")
                if not pname or where not in ("path", "query"):
                    continue
                (in_path if where == "path" else in_query).append(pname)
                props[pname] = param.get("schema", {})
                if param.get("required") or where == "path":
                    required.append(pname)
            body = _json_schema((op.get("requestBody") or {}).get("content"))
            if "$ref" in body:
                ref = str(body["$ref"]).rsplit("/", 1)[-1]
                schemas[ref] = body
                body = doc.get("components", {}).get("schemas", {}).get(ref, {})
            for pname, pschema in (body.get("properties") or {}).items():
                props.setdefault(pname, pschema)
            required += [r for r in body.get("required", []) if r not in required]
            request: dict[str, Any] = {"type": "object", "properties": props}
            if required:
                request["required"] = required
            answers = op.get("responses") or {}
            answer = answers.get("200") or answers.get("201") or {}
            response = _json_schema(answer.get("content") if isinstance(answer, Mapping) else None)
            request, response = _local_refs(request), _local_refs(response)
            if defs:
                request["$defs"] = defs
                if response:
                    response["$defs"] = defs
            routes.append(
                Route(
                    endpoint,
                    method.upper(),
                    path,
                    tuple(in_path) or tuple(_PARAM.findall(path)),
                    tuple(in_query),
                    request,
                    response,
                )
            )
    return routes


class Sidecar(Service):
    """A service whose endpoints are the routes of an HTTP application at ``endpoint``.

    ``openapi``: the path of its OpenAPI document (``None``: do not look for one, serve
    ``<Service>.Call``). Other keyword arguments go to :class:`~micro.Service`."""

    http_timeout: ClassVar[float] = 30.0  # per request, when the call has no deadline

    def __init__(
        self,
        name: str,
        endpoint: str,
        *,
        openapi: str | None = "/openapi.json",
        max_body: int = DEFAULT_MAX_FRAME - 1024,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        self.base = endpoint.rstrip("/")
        self.openapi = openapi
        self.max_body = max_body
        self.routes: dict[str, Route] = {}
        self.http: aiohttp.ClientSession | None = None
        self.on_stop(self._close_http)

    async def discover(self) -> list[Route]:
        """Read the OpenAPI document and build the endpoints (``<Service>.Call`` without
        one). Called by :meth:`start`; call it again before that to refresh."""
        session = self._session()
        routes: list[Route] = []
        if self.openapi is not None:
            url = self.base + self.openapi
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    if resp.status == 200:
                        routes = routes_of(await resp.json(content_type=None), self.name)
                    else:
                        log.info("%s: no OpenAPI document at %s (%s)", self.name, url, resp.status)
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                log.warning("%s: cannot read %s (%s)", self.name, url, exc)
        self.endpoints = {k: v for k, v in self.endpoints.items() if k.startswith("Debug.")}
        self.routes = {}
        if routes:
            for route in routes:
                self._add(route)
        else:
            self._add_call()
        return routes

    def _session(self) -> aiohttp.ClientSession:
        if self.http is None or self.http.closed:
            self.http = aiohttp.ClientSession()
        return self.http

    async def _close_http(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None

    def _add(self, route: Route) -> None:
        async def forward(ctx: Context, req: dict[str, Any]) -> Any:
            return await self._forward(ctx, route, req)

        ep = Endpoint(route.endpoint, forward)
        ep.request_schema = route.request_schema or ep.request_schema
        ep.response_schema = route.response_schema or ep.response_schema
        ep.idempotent = route.method in _IDEMPOTENT
        self.endpoints[route.endpoint] = ep
        self.routes[route.endpoint] = route

    def _add_call(self) -> None:
        async def call(ctx: Context, req: CallRequest) -> CallResponse:
            return await self._call(ctx, req)

        name = f"{handler_name(self.name)}.Call"
        self.endpoints[name] = Endpoint(name, call)

    async def start(self, server: RpcServer | None = None) -> None:
        """Read the application's routes, then start as a service."""
        if not self.routes and not any(not k.startswith("Debug.") for k in self.endpoints):
            await self.discover()
        await super().start(server)

    def info(self) -> ServiceInfo:
        """The registered entry, each endpoint's ``http`` route in its metadata."""
        info = super().info()
        for ep in info.endpoints:
            route = self.routes.get(ep.name)
            if route is not None:
                ep.metadata = {**ep.metadata, "http": json.dumps([[route.method, route.path]])}
        return info

    # -- forwarding --------------------------------------------------------------------------

    async def _forward(self, ctx: Context, route: Route, req: Mapping[str, Any]) -> Any:
        fields = dict(req)
        path = route.path
        for pname in route.path_params:
            if pname not in fields:
                raise bad_request(route.endpoint, f"missing path parameter {pname!r}")
            path = path.replace("{" + pname + "}", quote(_text(fields.pop(pname)), safe=""))
        query = {q: _text(fields.pop(q)) for q in route.query_params if q in fields}
        body: Any = None
        if route.method in _NO_BODY:
            query.update({k: _text(v) for k, v in fields.items() if v is not None})
        elif fields:
            body = fields
        status, headers, payload = await self._request(
            ctx, route.endpoint, route.method, path, query, {}, body
        )
        if status >= 400:
            raise _http_error(self.name, status, payload)
        return _parse(payload, headers)

    async def _call(self, ctx: Context, req: CallRequest) -> CallResponse:
        path = req.path if req.path.startswith("/") else "/" + req.path
        status, headers, payload = await self._request(
            ctx, "Call", req.method.upper(), path, req.query, req.headers, req.body
        )
        return CallResponse(status, headers, _parse(payload, headers))

    async def _request(
        self,
        ctx: Context,
        endpoint: str,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], bytes]:
        wait = self.http_timeout
        if ctx.deadline is not None:
            wait = max(0.001, min(wait, ctx.deadline - time.monotonic()))
        data = None if body is None else msgspec.json.encode(body)
        sent = dict(headers)
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        url = self.base + path
        try:
            async with self._session().request(
                method,
                url,
                params=dict(query) or None,
                data=data,
                headers=sent,
                timeout=aiohttp.ClientTimeout(total=wait),
                allow_redirects=False,
            ) as resp:
                payload = await resp.content.read(self.max_body + 1)
                if len(payload) > self.max_body:
                    raise internal(self.name, f"{method} {path}: response body too large")
                return resp.status, {k: v for k, v in resp.headers.items()}, payload
        except TimeoutError:
            raise timeout(self.name, f"{method} {path}: the application did not answer") from None
        except aiohttp.ClientError as exc:
            raise unavailable(self.name, f"{method} {url}: {exc}") from None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _parse(payload: bytes, headers: Mapping[str, str]) -> Any:
    """A body as JSON when it is JSON, else its text."""
    if not payload.strip():
        return {}
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return payload.decode("utf-8", "replace")


def _http_error(service: str, status: int, payload: bytes) -> MicroError:
    code = _CODES.get(status, "bad_request" if status < 500 else "internal")
    detail = payload.decode("utf-8", "replace")[:_DETAIL_MAX] or f"HTTP {status}"
    return MicroError(service, code, detail, status)
