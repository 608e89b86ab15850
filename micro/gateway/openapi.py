"""OpenAPI 3.1 for the gateway, generated live from the registry, and a docs page.

:func:`document` turns registered services into an OpenAPI 3.1.0 document:

- every **unary** endpoint becomes ``POST`` at its canonical Micro path, :func:`path_of`
  (the inverse of :func:`micro.gateway.resolve.resolve`: ``foo`` / ``Foo.Bar`` ->
  ``/foo/bar``), with the request JSON Schema as the ``application/json`` body and the
  response schema as the ``200`` answer; the error answers (400, 404, 409, 413, 429, 500,
  503, 504, plus 401 and 403 when auth is on) share the ``MicroError`` schema
  ``{id, code, detail, status}``;
- **explicit routes** (endpoint metadata ``"http"``: JSON ``[["GET", "/users/{id}"]]``)
  become operations of their own, with ``{name}`` segments as path parameters (typed by the
  request's property of that name) and, for GET/DELETE/HEAD, the other request properties
  as query parameters;
- **streaming** endpoints are listed as path items without operations, marked
  ``x-micro-stream: server|client|bidi`` (served over WebSocket, and server streams over
  Server-Sent Events): they cannot be called as a plain POST, so they are not described as one;
- msgspec's ``$defs`` move to ``components/schemas`` as ``{service}.{Name}``; two different
  types of one service with the same name get ``{service}.{Name}2``, ...;
- ``security``: a bearer JWT (``Authorization: Bearer``, also taking ``mk_`` API keys) or the
  ``micro-token`` cookie; endpoints marked public get an empty requirement (``[]``). With
  ``auth=False`` (a gateway without a guard) no security is declared, since none is checked.

Which services: every registered service of the default namespace except those in
``exclude``, by default the core services (:data:`CORE_SERVICES`: registry, store, auth,
...), which are RPC APIs for the CLI and services, not the product's HTTP API; and of
those, every endpoint but the operators' ``Debug.*`` that every service has
(:data:`INTERNAL_HANDLERS`). Services of
other namespaces (stored as ``namespace/name``) are never listed. When a service runs at
several versions, the endpoint of the highest version wins (``latest`` ranks above numbers).

:func:`install` serves the document at ``GET /openapi.json`` (rebuilt from the registry at
most once a second) and a Swagger UI page at ``GET /docs``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from .. import __version__
from ..errors import MicroError, unavailable
from ..registry import EndpointInfo, ServiceInfo
from .resolve import resolve

if TYPE_CHECKING:
    from . import Gateway

__all__ = [
    "CORE_SERVICES",
    "DOCS_HTML",
    "INTERNAL_HANDLERS",
    "document",
    "install",
    "kebab",
    "path_of",
]

log = logging.getLogger("micro.gateway")

CORE_SERVICES: frozenset[str] = frozenset(
    {
        "auth",
        "broker",
        "config",
        "events",
        "gateway",
        "identity",
        "monitor",
        "registry",
        "runtime",
        "store",
        "sync",
        "token",
    }
)
"""The services ``micro server`` hosts itself; left out of the document by default."""

INTERNAL_HANDLERS: frozenset[str] = frozenset({"Debug"})
"""Handlers every service has for operators (``Debug.Health``, ``Debug.Stats``,
``Debug.Trace``); left out of the document by default."""

_JSON = "application/json"
_REF_PREFIX = "#/$defs/"
_COMPONENTS = "#/components/schemas/"
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]")
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z0-9]|$)|[A-Z]?[a-z0-9]+|[A-Z]+")
_PARAM = re.compile(r"\{([^{}]+)\}")
_STREAM_KINDS = ("server", "client", "bidi")
_QUERY_METHODS = ("get", "delete", "head")
_BODY_METHODS = ("post", "put", "patch")

_ERRORS: dict[str, tuple[str, str]] = {
    "400": ("BadRequest", "Invalid request: the detail names the field."),
    "401": ("Unauthorized", "No valid credentials, and the endpoint is not public."),
    "403": ("Forbidden", "The caller's account may not call this endpoint."),
    "404": ("NotFound", "Unknown service or endpoint, or a resource the service lacks."),
    "409": ("Conflict", "The request conflicts with the current state."),
    "413": ("TooLarge", "The body is over 4 MiB."),
    "429": ("TooManyRequests", "Rate limited: retry later."),
    "500": ("Internal", "The service failed."),
    "503": ("Unavailable", "No node of the service is reachable."),
    "504": ("Timeout", "The deadline passed (10 s, or the Micro-Timeout header)."),
}
_AUTH_ERRORS = ("401", "403")

MICRO_ERROR: dict[str, Any] = {
    "title": "MicroError",
    "description": "Every error: the service (or component) that raised it, a short "
    "machine-readable code, a human-readable detail and the HTTP status.",
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "status": {"type": "integer"},
    },
    "required": ["id", "code", "detail", "status"],
}


# -- paths -----------------------------------------------------------------------------------


def kebab(name: str) -> str:
    """``SayHello`` -> ``say-hello``, ``HTTPServer`` -> ``http-server`` (words, lower case)."""
    return "-".join(word.lower() for word in _WORDS.findall(name))


def _segments(name: str) -> list[str]:
    """Path segments that :func:`resolve` turns back into the CamelCase ``name``: the
    kebab form first, then with acronyms kept (``HTTP-server``), then the name with only
    its first letter lowered."""
    words = _WORDS.findall(name)
    acronyms = "-".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)
    found = []
    for seg in (kebab(name), acronyms, name[:1].lower() + name[1:]):
        if seg and seg not in found:
            found.append(seg)
    return found


def path_of(service: str, endpoint: str) -> str | None:
    """The canonical gateway path of ``service``'s ``endpoint`` (``Handler.Method``), such
    that ``resolve(path_of(s, e)) == (s, e)``; ``None`` when no path reaches it (a name the
    rules cannot produce, such as a lower-case method or a service of another namespace).

    ``foo``/``Foo.Bar`` -> ``/foo/bar``; ``foo``/``Bar.Baz`` -> ``/foo/bar/baz``;
    ``foo.bar``/``Baz.Qux`` -> ``/foo/bar/baz/qux``; ``v1.foo``/``Foo.Call`` -> ``/v1/foo/call``.
    """
    handler, dot, method = endpoint.partition(".")
    if not dot or not handler or not method or "." in method or "/" in service:
        return None
    base = "/" + "/".join(service.split("."))
    candidates = [f"{base}/{m}" for m in _segments(method)]
    candidates += [f"{base}/{h}/{m}" for h in _segments(handler) for m in _segments(method)]
    if method == "Call":
        candidates.append(base)
    for path in candidates:
        try:
            if resolve(path) == (service, endpoint):
                return path
        except MicroError:
            continue
    return None


# -- schemas ---------------------------------------------------------------------------------


class _Components:
    """``components/schemas`` being filled, one service's prefix at a time."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"MicroError": MICRO_ERROR}

    def _fits(self, name: str, body: Any) -> bool:
        return bool(self.schemas.get(name, body) == body)

    def add(self, schema: dict[str, Any], prefix: str) -> dict[str, Any]:
        """``schema`` (a msgspec JSON Schema, with its own ``$defs``) with its definitions
        moved into the components under ``{prefix}.{Name}`` and its ``$ref``s rewritten.
        A definition equal to one already stored reuses it; a different one of the same
        name gets the first free (or equal) ``{prefix}.{Name}N``."""
        schema = dict(schema)
        defs: dict[str, Any] = schema.pop("$defs", None) or {}
        bases = {d: _NAME_OK.sub("_", f"{prefix}.{d}") for d in defs}
        names = dict(bases)
        # a definition's content depends on the names of those it refers to: settle each
        # on its first fitting name, again until nothing moves (bounded: else fresh names)
        for _ in range(2 * len(defs) + 2):
            moved = False
            for d, body in defs.items():
                taken = {names[o] for o in defs if o != d}
                rewritten = _rewrite(body, names)
                n = 1
                name = bases[d]
                while name in taken or not self._fits(name, rewritten):
                    n += 1
                    name = f"{bases[d]}{n}"
                if name != names[d]:
                    names[d], moved = name, True
            if not moved:
                break
        else:
            for d in defs:
                n = 1
                while names[d] in self.schemas or list(names.values()).count(names[d]) > 1:
                    n += 1
                    names[d] = f"{bases[d]}{n}"
        for d, body in defs.items():
            self.schemas[names[d]] = _rewrite(body, names)
        out = _rewrite(schema, names)
        assert isinstance(out, dict)
        return out


def _rewrite(node: Any, names: dict[str, str]) -> Any:
    """A copy of ``node`` with ``#/$defs/X`` references pointing at the components."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_REF_PREFIX):
                target = value[len(_REF_PREFIX) :]
                out[key] = _COMPONENTS + names.get(target, _NAME_OK.sub("_", target))
            else:
                out[key] = _rewrite(value, names)
        return out
    if isinstance(node, list):
        return [_rewrite(item, names) for item in node]
    return node


def _object_of(schema: dict[str, Any]) -> dict[str, Any]:
    """The object schema a msgspec schema describes (following a top-level ``$ref`` into its
    own ``$defs``), or ``{}``."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        target = (schema.get("$defs") or {}).get(ref[len(_REF_PREFIX) :])
        return target if isinstance(target, dict) else {}
    return schema if schema.get("type") == "object" else {}


# -- the document ----------------------------------------------------------------------------


def _version_key(version: str) -> tuple[int, tuple[Any, ...]]:
    if version == "latest":
        return (1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.-]", version))
    return (0, parts)


def _merged(services: Iterable[ServiceInfo]) -> dict[str, dict[str, EndpointInfo]]:
    """Service name -> endpoint name -> endpoint, the highest version's winning."""
    by_name: dict[str, list[ServiceInfo]] = {}
    for svc in services:
        by_name.setdefault(svc.name, []).append(svc)
    merged: dict[str, dict[str, EndpointInfo]] = {}
    for name in sorted(by_name):
        endpoints: dict[str, EndpointInfo] = {}
        for svc in sorted(by_name[name], key=lambda s: _version_key(s.version), reverse=True):
            for ep in svc.endpoints:
                endpoints.setdefault(ep.name, ep)
        merged[name] = endpoints
    return merged


def _routes(ep: EndpointInfo) -> list[tuple[str, str]]:
    """The explicit ``(method, path)`` routes in ``ep``'s ``"http"`` metadata (bad ones
    skipped); a ``{name:regex}`` segment becomes ``{name}``."""
    raw = ep.metadata.get("http")
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except ValueError:
        return []
    routes = []
    for entry in entries if isinstance(entries, list) else []:
        if (
            isinstance(entry, list)
            and len(entry) == 2
            and all(isinstance(x, str) for x in entry)
            and entry[1].startswith("/")
            and entry[0].lower() in (*_QUERY_METHODS, *_BODY_METHODS)
        ):
            path = _PARAM.sub(lambda m: "{" + m.group(1).split(":", 1)[0] + "}", entry[1])
            routes.append((entry[0].lower(), path))
    return routes


class _Builder:
    def __init__(self, auth: bool) -> None:
        self.auth = auth
        self.components = _Components()
        self.paths: dict[str, dict[str, Any]] = {}
        self.operation_ids: set[str] = set()

    def _errors(self) -> dict[str, Any]:
        return {
            code: {"$ref": f"#/components/responses/{name}"}
            for code, (name, _) in _ERRORS.items()
            if self.auth or code not in _AUTH_ERRORS
        }

    def _operation_id(self, base: str) -> str:
        op_id, n = base, 1
        while op_id in self.operation_ids:
            n += 1
            op_id = f"{base}_{n}"
        self.operation_ids.add(op_id)
        return op_id

    def _operation(
        self, service: str, ep: EndpointInfo, request: dict[str, Any], response: dict[str, Any]
    ) -> dict[str, Any]:
        op: dict[str, Any] = {
            "tags": [service],
            "summary": ep.name,
            "operationId": self._operation_id(f"{service}.{ep.name}"),
            "responses": {
                "200": {
                    "description": f"The response of {ep.name}.",
                    "content": {_JSON: {"schema": response}},
                },
                **self._errors(),
            },
        }
        description = _object_of(ep.request).get("description")
        if isinstance(description, str):
            op["description"] = description
        if self.auth and ep.metadata.get("public") == "true":
            op["security"] = []  # public: no credentials needed
        return op

    def _add(self, path: str, method: str, op: dict[str, Any]) -> bool:
        item = self.paths.setdefault(path, {})
        if method in item or "x-micro-stream" in item:
            log.debug("openapi: %s %s is declared twice; keeping the first", method, path)
            return False
        item[method] = op
        return True

    def service(self, name: str, endpoints: dict[str, EndpointInfo]) -> None:
        for ep_name in sorted(endpoints):
            ep = endpoints[ep_name]
            request = self.components.add(ep.request, name)
            response = self.components.add(ep.response, name)
            path = path_of(name, ep.name)
            if ep.stream in _STREAM_KINDS:
                if path is not None and path not in self.paths:
                    self.paths[path] = _stream_item(name, ep, request, response)
                continue
            if ep.stream != "unary":
                continue
            required = bool(_object_of(ep.request).get("required"))
            if path is not None:
                op = self._operation(name, ep, request, response)
                op["requestBody"] = {
                    "required": required,
                    "content": {_JSON: {"schema": request}},
                }
                self._add(path, "post", op)
            for method, route in _routes(ep):
                self._route(name, ep, method, route, request, response, required)

    def _route(
        self,
        service: str,
        ep: EndpointInfo,
        method: str,
        route: str,
        request: dict[str, Any],
        response: dict[str, Any],
        required: bool,
    ) -> None:
        obj = _object_of(ep.request)
        props: dict[str, Any] = obj.get("properties") or {}
        needed = set(obj.get("required") or [])
        in_path = _PARAM.findall(route)
        # the property schemas, their $refs rewritten as the request's were (same names)
        typed: dict[str, Any] = (
            self.components.add(
                {"type": "object", "properties": props, "$defs": ep.request.get("$defs") or {}},
                service,
            ).get("properties")
            or {}
        )
        defs: dict[str, Any] = ep.request.get("$defs") or {}
        params: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": _path_schema(props.get(p), defs)}
            for p in in_path
        ]
        op = self._operation(service, ep, request, response)
        if method in _QUERY_METHODS:
            # the gateway types query values as the request's fields say: scalars, or
            # repeated values for an array of scalars; other fields cannot come this way
            params += [
                {"name": p, "in": "query", "required": p in needed, "schema": typed[p]}
                for p in props
                if p not in in_path and _scalar_or_list(props[p], defs)
            ]
            if method == "head":
                op["responses"]["200"] = {"description": f"{ep.name} would answer 200."}
        else:
            op["requestBody"] = {"required": required, "content": {_JSON: {"schema": request}}}
        if params:
            op["parameters"] = params
        op["x-micro-endpoint"] = f"{service} {ep.name}"
        self._add(route, method, op)

    def build(self, title: str, version: str, description: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": {path: self.paths[path] for path in sorted(self.paths)},
            "components": {
                "schemas": dict(sorted(self.components.schemas.items())),
                "responses": {
                    name: {
                        "description": text,
                        "content": {_JSON: {"schema": {"$ref": _COMPONENTS + "MicroError"}}},
                    }
                    for code, (name, text) in _ERRORS.items()
                    if self.auth or code not in _AUTH_ERRORS
                },
            },
        }
        if description:
            doc["info"]["description"] = description
        if self.auth:
            doc["components"]["securitySchemes"] = {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token (EdDSA JWT) or an API key (mk_...).",
                },
                "cookieAuth": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "micro-token",
                    "description": "The access token in the micro-token cookie.",
                },
            }
            doc["security"] = [{"bearerAuth": []}, {"cookieAuth": []}]
        return doc


def _deref(schema: Any, defs: dict[str, Any]) -> dict[str, Any]:
    for _ in range(8):
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if not (isinstance(ref, str) and ref.startswith(_REF_PREFIX)):
            return schema
        schema = defs.get(ref[len(_REF_PREFIX) :])
    return {}


def _kinds(schema: Any, defs: dict[str, Any]) -> set[str]:
    """The JSON types ``schema`` allows (``enum`` values counted by their type)."""
    node = _deref(schema, defs)
    kinds: set[str] = set()
    declared = node.get("type")
    if isinstance(declared, str):
        kinds.add(declared)
    elif isinstance(declared, list):
        kinds.update(t for t in declared if isinstance(t, str))
    for value in node.get("enum") or ():
        kinds.add(
            {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
                type(value), "object"
            )
        )
    for key in ("anyOf", "oneOf"):
        for option in node.get(key) or ():
            kinds |= _kinds(option, defs)
    return kinds


_SCALARS = {"string", "integer", "number", "boolean", "null"}


def _scalar_or_list(schema: Any, defs: dict[str, Any]) -> bool:
    kinds = _kinds(schema, defs)
    if not kinds:
        return False
    if kinds <= _SCALARS:
        return True
    node = _deref(schema, defs)
    return kinds <= _SCALARS | {"array"} and _kinds(node.get("items"), defs) <= _SCALARS - {"null"}


def _path_schema(schema: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """A path parameter's schema: the field's, when it is a plain integer, number, boolean
    or string (never empty: an empty segment does not match a route); else any string."""
    node = _deref(schema, defs)
    kind = node.get("type")
    if kind in ("integer", "number", "boolean") and "enum" not in node:
        return {k: v for k, v in node.items() if k not in ("default", "title", "description")}
    if kind == "string" and "enum" not in node:
        plain = {k: v for k, v in node.items() if k not in ("default", "title", "description")}
        plain["minLength"] = max(1, int(plain.get("minLength", 1)))
        return plain
    return {"type": "string", "minLength": 1}


def _stream_item(
    service: str, ep: EndpointInfo, request: dict[str, Any], response: dict[str, Any]
) -> dict[str, Any]:
    shape = {
        "server": "one request, then a stream of responses",
        "client": "a stream of requests, then one response",
        "bidi": "streams of requests and responses",
    }[ep.stream]
    transport = (
        "a WebSocket (Upgrade: websocket; the first message is the request, each response "
        "one JSON text message), or Server-Sent Events (Accept: text/event-stream; the "
        "request as the query string or JSON body, each response a data event)"
        if ep.stream == "server"
        else "a WebSocket (Upgrade: websocket; one JSON text message per request or "
        "response, an empty message ends the requests)"
    )
    return {
        "summary": f"{ep.name} (stream)",
        "description": f"Streaming endpoint {ep.name} of {service}: {shape}, over {transport}. "
        "Not callable as a plain POST.",
        "x-micro-stream": ep.stream,
        "x-micro-endpoint": f"{service} {ep.name}",
        "x-micro-request": request,
        "x-micro-response": response,
    }


def document(
    services: Sequence[ServiceInfo],
    *,
    title: str = "Micro API",
    version: str = __version__,
    description: str | None = None,
    exclude: Iterable[str] = CORE_SERVICES,
    exclude_handlers: Iterable[str] = INTERNAL_HANDLERS,
    auth: bool = True,
) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document of ``services`` (see the module docstring), leaving out
    the services named in ``exclude`` and the endpoints of the handlers in
    ``exclude_handlers``; ``auth`` says whether the gateway checks credentials (and so
    whether security and the 401/403 answers are declared)."""
    skip = set(exclude)
    skip_handlers = set(exclude_handlers)
    builder = _Builder(auth)
    chosen = [s for s in services if s.name not in skip and "/" not in s.name]
    for name, endpoints in _merged(chosen).items():
        kept = {e: ep for e, ep in endpoints.items() if e.partition(".")[0] not in skip_handlers}
        builder.service(name, kept)
    return builder.build(title, version, description)


# -- serving ---------------------------------------------------------------------------------

_DOCS_SCRIPT = (
    'window.ui = SwaggerUIBundle({url: "./openapi.json", dom_id: "#swagger-ui", '
    "validatorUrl: null, deepLinking: true});"
)
_CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"

DOCS_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API docs</title>
<link rel="stylesheet" href="{_CDN}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui">
<p>Interactive docs load Swagger UI from {_CDN}. The OpenAPI document itself:
<a href="./openapi.json">/openapi.json</a>.</p>
</div>
<script src="{_CDN}/swagger-ui-bundle.js" crossorigin="anonymous"></script>
<script>{_DOCS_SCRIPT}</script>
</body>
</html>
"""
"""The ``/docs`` page: Swagger UI (from a CDN) pointed at ``/openapi.json``."""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_DOCS_SCRIPT.encode()).digest()).decode()
_DOCS_CSP = (
    "default-src 'none'; "
    f"script-src https://cdn.jsdelivr.net 'sha256-{_SCRIPT_HASH}'; "
    "style-src https://cdn.jsdelivr.net 'unsafe-inline'; "
    "img-src 'self' data: https://cdn.jsdelivr.net; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class _Settings:
    """What :func:`install` was given."""

    title: str
    exclude: frozenset[str]
    exclude_handlers: frozenset[str]
    ttl: float
    clock: Callable[[], float]
    cache: tuple[float, bytes] | None = None


def install(
    gateway: Gateway,
    *,
    title: str = "Micro API",
    exclude: Iterable[str] = CORE_SERVICES,
    exclude_handlers: Iterable[str] = INTERNAL_HANDLERS,
    ttl: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Serve ``GET /openapi.json`` (the :func:`document` of the services in the gateway's
    registry, rebuilt at most every ``ttl`` seconds of ``clock``) and ``GET /docs`` on
    ``gateway``. Call it before ``gateway.start()``; calling it again only replaces the
    settings."""
    conf = _Settings(title, frozenset(exclude), frozenset(exclude_handlers), ttl, clock)

    async def openapi(request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        now = conf.clock()
        if conf.cache is None or now - conf.cache[0] >= conf.ttl:
            try:
                view = gateway.client.view
                if view is None:
                    raise unavailable("gateway", "the gateway has no registry to document")
                services = await view.registry.list_services()
            except MicroError as err:
                return web.Response(
                    body=_encoder.encode(err.to_dict()), status=err.status, content_type=_JSON
                )
            doc = document(
                services,
                title=conf.title,
                exclude=conf.exclude,
                exclude_handlers=conf.exclude_handlers,
                auth=gateway.guard is not None,
            )
            conf.cache = (now, _encoder.encode(doc))
        return web.Response(body=conf.cache[1], content_type=_JSON)

    async def docs(request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        return web.Response(
            text=DOCS_HTML,
            content_type="text/html",
            headers={"Content-Security-Policy": _DOCS_CSP, "X-Content-Type-Options": "nosniff"},
        )

    # adding them again replaces the handlers, and so the settings
    gateway.add_route("GET", "/openapi.json", openapi)
    gateway.add_route("GET", "/docs", docs)
