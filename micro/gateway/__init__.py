"""The API gateway: HTTP/JSON in front of the RPC services.

A request is routed, in order, by

1. an explicit route a service declared with :func:`micro.route` (``GET /users/{id}``), from
   the route table :mod:`micro.gateway.routes` keeps from the registry: path parameters and
   the query string are merged into the JSON body (path parameters win over body fields, the
   query only fills fields the body lacks), typed as the request's schema says;
2. Micro's path rules, :func:`micro.gateway.resolve.resolve` (``POST /greeter/say-hello`` ->
   ``greeter`` ``Greeter.SayHello``).

A path an explicit template matches, under another method and with no endpoint Micro's rules
would reach, answers ``405`` with ``Allow``. JSON is passed to the service as is (codec JSON)
unless parameters must be merged, so the gateway rarely re-encodes bodies; the service
validates them against its types. RPC errors become their HTTP status with the error as the
JSON body, ``{id, code, detail, status}``.

Before those, routes added with :meth:`Gateway.add_route` (``/health``, ``/metrics``, and
those the other gateway modules install: ``/openapi.json``, ``/docs``, ``POST
/events/{topic}``, ``/web/{service}/...``): exact paths looked up in a dict, templates by
their first segment. The gateway runs on aiohttp's low-level server (``web.Server``), with no
``web.Application``, router or middleware chain: its own dispatch does all of the above.

Around every request (every route, those other modules install too), in this order:

- **observation** — Prometheus metrics (:mod:`micro.gateway.metrics`, ``GET /metrics``) and a
  JSON access log line (:mod:`micro.gateway.accesslog`);
- **CORS** — :mod:`micro.gateway.cors`, for the configured ``cors_origins``;
- **rate limit per client IP** — :mod:`micro.gateway.ratelimit`, ``429`` with ``Retry-After``
  (``X-Forwarded-For`` is used only with ``trust_forwarded=True``; ``/health`` is exempt).

With a guard, callers are verified at the edge (``Authorization: Bearer`` with an access
token or an API key, or the ``micro-token`` cookie), limited per account, and checked against
the rules before the call; the service checks again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec
from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from ..auth import ADMIN, DEFAULT_NAMESPACE, Claims, Tokens
from ..auth.guard import Guard, bearer
from ..auth.session import API_KEY_PREFIX
from ..auth.tenancy import qualified
from ..client import Client
from ..debug import Instrumentation, instrument
from ..debug.trace import span
from ..errors import (
    MicroError,
    bad_request,
    forbidden,
    too_large,
    unauthorized,
)
from ..events import Events
from ..registry import EndpointInfo
from ..transport.client import split_address
from ..transport.frames import Codec
from . import streaming
from .accesslog import AccessRecord, access_enabled, log_access
from .cors import Cors
from .metrics import CONTENT_TYPE, UNKNOWN, GatewayMetrics
from .ratelimit import Buckets, retry_after
from .resolve import resolve
from .routes import Lookup, Route, RouteTable, coerce, field_schemas, path_segments

__all__ = ["Cleanup", "Gateway", "Handler", "HttpError"]

log = logging.getLogger("micro.gateway")

_JSON = "application/json"
_MAX_BODY = 4 * 1024 * 1024 - 4096
_FORWARDED_PREFIX = "micro-"
_COOKIE = "micro-token"
_UNARY = "unary"
_MAX_KEYS = 10_000
_QUERY_METHODS = ("GET", "DELETE", "HEAD")
_json = msgspec.json.Encoder()
_object = msgspec.json.Decoder(dict[str, Any])

_HEALTH = b'{"status":"ok"}'
_NOT_FOUND = Lookup()  # no route (read only)

Handler = Callable[[web.BaseRequest, dict[str, str]], Awaitable[web.StreamResponse]]
"""A route's handler (:meth:`Gateway.add_route`): the request and the parameters its path
template matched (``{}`` for an exact path)."""

Cleanup = Callable[[], Awaitable[None]]
"""A callback run when the gateway stops (:meth:`Gateway.on_stop`)."""

# what a request learns on its way, read back by the observation middleware
_SERVICE = web.RequestKey("service", str)
_ENDPOINT = web.RequestKey("endpoint", str)
_ACCOUNT = web.RequestKey("account", str)
_TRACE = web.RequestKey("trace_id", str)
_ERROR = web.RequestKey("error_code", str)
_KNOWN = web.RequestKey("known", bool)  # the registry knows the service and endpoint


class HttpError(MicroError):
    """A :class:`MicroError` answered with extra HTTP headers (``Allow``, ``Retry-After``)."""

    def __init__(
        self, id: str, code: str, detail: str, status: int, headers: dict[str, str]
    ) -> None:
        super().__init__(id, code, detail, status)
        self.headers = headers


class Gateway:
    """Serves HTTP on ``address`` and forwards calls through ``client``.

    ``cors_origins``: web origins allowed to call from a browser (``"*"``: any, without
    credentials). ``rate_per_ip`` / ``rate_per_account``: requests a second per client IP /
    per verified account, each with its ``burst``; 0 disables. ``trust_forwarded``: take the
    client IP from ``X-Forwarded-For`` (only behind a proxy that sets it). ``metrics_public``:
    serve ``/metrics`` to anyone (otherwise, with a guard, an admin of namespace ``micro``
    only). ``ssl``: serve HTTPS. ``clock``: the rate limiters' clock (tests).
    """

    def __init__(
        self,
        client: Client,
        address: str = "127.0.0.1:8080",
        timeout: float = 10.0,
        *,
        guard: Guard | None = None,
        exchange: Callable[[str], Awaitable[Tokens]] | None = None,
        cors_origins: Sequence[str] = (),
        rate_per_ip: float = 100.0,
        burst_per_ip: float = 200.0,
        rate_per_account: float = 100.0,
        burst_per_account: float = 200.0,
        trust_forwarded: bool = False,
        metrics_public: bool = False,
        max_body: int = _MAX_BODY,
        ssl: SSLContext | None = None,
        events: Events | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        # auth at the edge (the service checks again): who calls, may they call it
        self.guard = guard
        self._exchange = exchange
        self._keys: dict[str, Tokens] = {}  # sha256(API key) -> its current access token
        self.address = address
        self.timeout = timeout
        self.max_body = max_body
        self.ssl = ssl
        self.trust_forwarded = trust_forwarded
        self.metrics_public = metrics_public
        self.cors = Cors(cors_origins)
        self.ip_limit = Buckets(rate_per_ip, burst_per_ip, clock=clock)
        self.account_limit = Buckets(rate_per_account, burst_per_account, clock=clock)
        self.metrics = GatewayMetrics()
        self.routes = RouteTable(client.view.registry if client.view is not None else None)
        self.debug: Instrumentation = instrument("gateway")
        self._runner: web.ServerRunner | None = None
        # aiohttp's low-level server, routed here (no web.Application, router or middleware
        # chain): exact paths in a dict, templates by their first segment, the rest to RPC
        self._exact: dict[str, dict[str, Handler]] = {}
        self._templates: dict[str, list[_Template]] = {}
        self._cleanups: list[Cleanup] = []
        self.add_route("GET", "/health", self._health)
        self.add_route("GET", "/metrics", self._metrics)
        self._events_backend = events  # POST /events/{topic} publishes here (None: over RPC)
        self._install_extras()

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``method`` (``"*"``: any; ``"GET"`` also answers ``HEAD``) at ``path`` with
        ``handler(request, params)``, before the RPC routing.

        ``path`` is exact (``/health``) or a template of ``/``-separated segments whose first
        is literal: ``{name}`` matches one non-empty segment, a last ``{name*}`` the rest of
        the path (possibly empty, slashes included); ``params`` has their percent-decoded
        values. Templates are tried in the order added; a request no route takes (path or
        method) goes on to the RPC routing. Adding the same method and path again replaces
        the handler. Call it before :meth:`start`."""
        method = method.upper()
        if not path.startswith("/"):
            raise ValueError(f"route path {path!r} must start with /")
        if "{" not in path and "}" not in path:
            self._exact.setdefault(path, {})[method] = handler
            return
        template = _Template.parse(method, path, handler)
        group = self._templates.setdefault(template.parts[0], [])
        for i, known in enumerate(group):
            if known.method == method and known.path == path:
                group[i] = template
                return
        group.append(template)

    def on_stop(self, callback: Cleanup) -> None:
        """Run ``callback()`` when the gateway stops, after the last request is answered."""
        self._cleanups.append(callback)

    def _install_extras(self) -> None:
        """Routes of the other gateway modules, before the catch-all route: ``POST
        /events/{topic}``, ``/web/{service}/...`` and the OpenAPI document."""
        from . import events as _events
        from . import webproxy as _webproxy

        _events.install(self, self._events_backend)
        _webproxy.install(self)
        try:
            from . import openapi as _openapi
        except ImportError:  # pragma: no cover - present in a complete checkout
            return
        _openapi.install(self)

    @property
    def scheme(self) -> str:
        """``https`` with an SSL context, else ``http``."""
        return "https" if self.ssl is not None else "http"

    async def start(self) -> str:
        """Listen; returns the ``host:port`` bound (a port of 0 picks a free one)."""
        await self.routes.start()
        host, port = split_address(self.address)
        loop = asyncio.get_running_loop()
        max_body = self.max_body

        def make_request(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            # client_max_size bounds request.read() (413 beyond it)
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=max_body
            )

        handler = web.Server(self._serve, request_factory=make_request, access_log=None)
        self._runner = web.ServerRunner(handler, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=self.ssl)
        await site.start()
        server = site._server
        if server is not None and server.sockets:  # type: ignore[attr-defined]
            bound = server.sockets[0].getsockname()  # type: ignore[attr-defined]
            self.address = f"{bound[0]}:{bound[1]}"
        log.info("gateway listening on %s://%s", self.scheme, self.address)
        return self.address

    async def stop(self) -> None:
        """Stop listening and finish open requests."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            for callback in self._cleanups:
                await callback()
        await self.routes.stop()

    # -- dispatch ------------------------------------------------------------------------------

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request: metrics and the access log, around CORS, around the per-IP limit,
        around the routing."""
        started = time.perf_counter()
        status = 500
        try:
            headers = request.headers
            if "Origin" in headers or "Expect" in headers:
                response = await self._cross_origin(request)
            else:
                response = await self._route(request)  # one coroutine frame less
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self._record(request, status, time.perf_counter() - started)

    def _route(self, request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        """The per-IP rate limit, then the route: an exact path, a template, else RPC. Not a
        coroutine: it returns the handler's, so the chain a response resumes is shorter."""
        path = request.path
        if self.ip_limit.enabled and path != "/health":
            wait = self.ip_limit.take(self.remote(request))
            if wait > 0:
                return _ready(self.error(request, _limited("this address", wait)))
        exact = self._exact.get(path)
        if exact is not None:
            method = request.method
            handler = exact.get(method) or exact.get("*")
            if handler is None and method == "HEAD":
                handler = exact.get("GET")
            if handler is not None:
                return handler(request, {})
        if self._templates:
            slash = path.find("/", 1)
            group = self._templates.get(path[1:slash] if slash > 0 else path[1:])
            if group is not None:
                method = request.method
                segments = request.raw_path.split("?", 1)[0][1:].split("/")
                for template in group:
                    if not template.serves(method):
                        continue
                    params = template.match(segments)
                    if params is not None:
                        return template.handler(request, params)
        return self._handle(request)

    def _record(self, request: web.BaseRequest, status: int, seconds: float) -> None:
        service: str = request.get(_SERVICE, UNKNOWN)
        endpoint: str = request.get(_ENDPOINT, UNKNOWN)
        code: str | None = None
        if status >= 400:
            code = request.get(_ERROR) or f"http_{status}"
        known = request.get(_KNOWN)  # the registry's answer, if the RPC route asked it
        if known if known is not None else self._known(service, endpoint):
            self.metrics.observe(service, endpoint, status, seconds, code)
        else:
            self.metrics.observe(UNKNOWN, UNKNOWN, status, seconds, code)
        if access_enabled():
            log_access(
                AccessRecord(
                    method=request.method,
                    path=request.path,
                    status=status,
                    duration_ms=round(seconds * 1000, 3),
                    service=service,
                    endpoint=endpoint,
                    account=request.get(_ACCOUNT, UNKNOWN),
                    remote=self.remote(request),
                    trace_id=request.get(_TRACE, ""),
                )
            )

    async def _cross_origin(self, request: web.BaseRequest) -> web.StreamResponse:
        """``Expect: 100-continue``; CORS preflights; CORS headers for allowed origins."""
        if request.headers.get("Expect"):
            await _expect(request)
        origin = request.headers.get("Origin")
        if Cors.is_preflight(request.method, request.headers):
            assert origin is not None
            if not self.cors.allowed(origin):
                return self.error(request, forbidden("gateway", f"origin {origin} not allowed"))
            requested = request.headers.get("Access-Control-Request-Headers")
            return web.Response(status=204, headers=self.cors.preflight(origin, requested))
        if not origin or not self.cors.allowed(origin):
            return await self._route(request)
        try:
            response = await self._route(request)
        except web.HTTPException as exc:
            exc.headers.update(self.cors.response_headers(origin))
            raise
        if not response.prepared:  # a stream already sent its headers (see cors_headers)
            response.headers.update(self.cors.response_headers(origin))
        return response

    def cors_headers(self, request: web.BaseRequest) -> dict[str, str]:
        """The CORS headers for an answer to ``request`` (none for a disallowed origin), for
        handlers that prepare a streamed response themselves."""
        origin = request.headers.get("Origin")
        return self.cors.response_headers(origin) if origin and self.cors.allowed(origin) else {}

    def remote(self, request: web.BaseRequest) -> str:
        """The client's IP: the peer, or with ``trust_forwarded`` the last address in
        ``X-Forwarded-For`` (the one the trusted proxy appended)."""
        if self.trust_forwarded:
            forwarded = request.headers.get("X-Forwarded-For", "")
            hops = [h.strip() for h in forwarded.split(",") if h.strip()]
            if hops:
                return hops[-1]
        return request.remote or UNKNOWN

    def error(self, request: web.BaseRequest, err: MicroError) -> web.Response:
        """``err`` as a JSON answer with its status (and headers, for an :class:`HttpError`)."""
        request[_ERROR] = err.code
        headers = err.headers if isinstance(err, HttpError) else None
        return web.Response(
            body=_json.encode(err.to_dict()),
            status=err.status,
            content_type=_JSON,
            headers=headers,
        )

    # -- handlers ----------------------------------------------------------------------------

    async def _health(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        return web.Response(body=_HEALTH, content_type=_JSON)

    async def _metrics(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        """Prometheus metrics; with a guard, for an admin of namespace ``micro`` unless
        ``metrics_public``."""
        if self.guard is not None and not self.metrics_public:
            try:
                claims = await self.caller(request, {})
                if claims is None:
                    raise unauthorized("gateway", "/metrics requires an admin account")
                if claims.namespace != DEFAULT_NAMESPACE or ADMIN not in claims.scopes:
                    raise forbidden("gateway", f"/metrics is for admins; {claims.sub} is not one")
            except MicroError as err:
                return self.error(request, err)
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _stream(
        self,
        request: web.BaseRequest,
        service: str,
        endpoint: str,
        kind: str,
        route: Route | None,
        params: dict[str, str],
        metadata: dict[str, str],
    ) -> web.StreamResponse:
        # no default deadline for streams (the unary 10 s would cut long streams off)
        timeout = self._timeout(request) if "Micro-Timeout" in request.headers else None
        body = None
        if streaming.wants_sse(request) and not streaming.wants_websocket(request):
            body = await self._payload(request, service, endpoint, route, params)
        return await streaming.respond(
            self, request, service, endpoint, kind, metadata, timeout, body=body
        )

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        metadata = {
            low: v
            for k, v in request.headers.items()
            if (low := k.lower()).startswith(_FORWARDED_PREFIX)
        }
        try:
            claims: Claims | None = None
            if self.guard is not None:
                claims = await self.caller(request, metadata)
            elif auth := request.headers.get("Authorization"):
                metadata["authorization"] = auth
            namespace = claims.namespace if claims is not None else DEFAULT_NAMESPACE
            service, endpoint, route, params = self._target(request, namespace)
            request[_SERVICE], request[_ENDPOINT] = service, endpoint
            info = await self.lookup_endpoint(service, endpoint)
            request[_KNOWN] = info is not None
            if self.guard is not None:
                public = info is not None and info.metadata.get("public") == "true"
                self.guard.check(claims, service, endpoint, public)
            kind = info.stream if info is not None and info.stream != _UNARY else None
            if kind is not None:  # WebSocket or SSE, auth done (streaming.py)
                return await self._stream(request, service, endpoint, kind, route, params, metadata)
            body = await self._payload(request, service, endpoint, route, params)
            timeout = self._timeout(request)
            where = f"{request.method} {request.path}"
            parent = request.headers.get("traceparent")
            with span(self.debug.recorder, "gateway", where, parent) as sp:
                request[_TRACE] = sp.trace_id
                metadata["traceparent"] = sp.traceparent
                reply = await self.client.call_raw(
                    service, endpoint, body, codec=Codec.JSON, timeout=timeout, metadata=metadata
                )
        except MicroError as err:
            log.debug("%s %s -> %s", request.method, request.path, err)
            return self.error(request, err)
        return web.Response(body=reply, content_type=_JSON)

    def _target(
        self, request: web.BaseRequest, namespace: str
    ) -> tuple[str, str, Route | None, dict[str, str]]:
        """``(service, endpoint, route, path parameters)``: an explicit route of the caller's
        namespace, else Micro's path rules (the service qualified with the namespace)."""
        found = (
            self.routes.lookup(namespace, request.method, path_segments(request.raw_path))
            if self.routes.serves(namespace)
            else _NOT_FOUND
        )
        if found.route is not None:
            return found.route.service, found.route.endpoint, found.route, found.params
        try:
            service, endpoint = resolve(request.path[1:])
        except MicroError:
            if found.allow:
                raise _not_allowed(request, found.allow) from None
            raise
        service = qualified(namespace, service)
        if found.allow and self.endpoint_info(service, endpoint) is None:
            raise _not_allowed(request, found.allow)
        return service, endpoint, None, {}

    def endpoint_info(self, service: str, endpoint: str) -> EndpointInfo | None:
        """What the registry says of ``service`` (as stored) / ``endpoint``, if known."""
        info = self.routes.endpoint(service, endpoint)
        if info is None and self.client.view is not None:
            info = self.client.view.endpoint(service, endpoint)
        return info

    def _known(self, service: str, endpoint: str) -> bool:
        return service != UNKNOWN and self.endpoint_info(service, endpoint) is not None

    async def caller(self, request: web.BaseRequest, metadata: dict[str, str]) -> Claims | None:
        """The verified caller (``Authorization: Bearer`` with an access token or an API key,
        or the ``micro-token`` cookie), or ``None`` without credentials; puts the access token
        in ``metadata`` and applies the per-account rate limit. Needs a guard."""
        guard = self.guard
        assert guard is not None
        header = request.headers.get("Authorization") or request.cookies.get(_COOKIE, "")
        if not header:
            return None
        token = bearer(header)
        if token.startswith(API_KEY_PREFIX):
            token = await self._access_for(token)
        claims = await guard.verifier.verify_async(token)
        metadata["authorization"] = f"Bearer {token}"
        account = f"{claims.namespace}/{claims.sub}"
        request[_ACCOUNT] = account
        wait = self.account_limit.take(account)
        if wait > 0:
            raise _limited(f"account {account}", wait)
        return claims

    async def _authorize(
        self, request: web.BaseRequest, service: str, endpoint: str, metadata: dict[str, str]
    ) -> str:
        """Verify the caller (see :meth:`caller`), apply the rules and forward the access
        token; the service to call (a caller of namespace N reaches N's services)."""
        guard = self.guard
        assert guard is not None
        claims = await self.caller(request, metadata)
        if claims is not None:
            service = qualified(claims.namespace, service)
        guard.check(claims, service, endpoint, await self._public(service, endpoint))
        return service

    async def _public(self, service: str, endpoint: str) -> bool:
        """Whether the registry says ``service``/``endpoint`` is marked public."""
        info = await self.lookup_endpoint(service, endpoint)
        return info is not None and info.metadata.get("public") == "true"

    async def lookup_endpoint(self, service: str, endpoint: str) -> EndpointInfo | None:
        """The registry's record of ``service``/``endpoint``: from the watched cache, read
        from the registry only when the service is not cached yet."""
        info = self.endpoint_info(service, endpoint)
        view = self.client.view
        if info is None and view is not None and view.nodes(service) is None:
            try:
                await view.load(service)
            except MicroError:
                return None
            info = self.endpoint_info(service, endpoint)
        return info

    async def _access_for(self, api_key: str) -> str:
        """An access token for ``api_key``, exchanged once and reused until near expiry."""
        if self._exchange is None:
            raise unauthorized("gateway", "API keys are not accepted here")
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        tokens = self._keys.get(digest)
        if tokens is None or tokens.expiry - 30 <= time.time():
            tokens = await self._exchange(api_key)
            if len(self._keys) >= _MAX_KEYS:
                self._keys.clear()
            self._keys[digest] = tokens
        return tokens.access_token

    async def _payload(
        self,
        request: web.BaseRequest,
        service: str,
        endpoint: str,
        route: Route | None,
        params: dict[str, str],
    ) -> bytes:
        """The JSON request: the body; for GET, DELETE and HEAD the query string; with an
        explicit route, path parameters (winning) and the query (filling gaps) merged in.
        Values from the path and query are typed as the request schema says."""
        reads_query = request.method in _QUERY_METHODS
        if route is None and not reads_query:
            return await self._body(request)
        query = parse_qsl(request.query_string, keep_blank_values=True)
        info = self.endpoint_info(service, endpoint)
        schema = info.request if info is not None else {}
        fields = field_schemas(schema)
        merged: dict[str, Any] = {}
        if not reads_query:
            raw = await self._body(request)
            if not params and not query:
                return raw  # nothing to merge: pass the body on untouched
            if raw.strip():
                try:
                    merged = _object.decode(raw)
                except msgspec.DecodeError:
                    raise bad_request(
                        "gateway",
                        "the request body must be a JSON object to merge path "
                        "parameters and the query string into",
                    ) from None
        grouped: dict[str, list[str]] = {}
        for key, value in query:
            grouped.setdefault(key, []).append(value)
        for key, values in grouped.items():
            if key not in merged:
                merged[key] = coerce(fields.get(key), schema, values)
        for key, value in params.items():
            merged[key] = coerce(fields.get(key), schema, [value])
        return _json.encode(merged)

    async def _body(self, request: web.BaseRequest) -> bytes:
        if request.method in _QUERY_METHODS:
            return _json.encode(dict(parse_qsl(request.query_string, keep_blank_values=True)))
        limit = self.max_body
        if request.content_length is not None and request.content_length > limit:
            raise too_large("gateway", f"body over {limit} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large("gateway", f"body over {limit} bytes") from None
        head = body.lstrip()[:1]
        if not head or head in (b"{", b"["):
            return body  # JSON, whatever the Content-Type says (curl -d sends a form type)
        if request.content_type == "application/x-www-form-urlencoded":
            return _json.encode(dict(parse_qsl(body.decode("utf-8", "replace"))))
        raise bad_request("gateway", "the request body must be a JSON object")

    def _timeout(self, request: web.BaseRequest) -> float:
        header = request.headers.get("Micro-Timeout")
        if header is None:
            return self.timeout
        try:
            value = float(header)
        except ValueError:
            raise bad_request(
                "gateway", f"Micro-Timeout {header!r} is not a number of seconds"
            ) from None
        if not 0 < value <= 300:
            raise bad_request("gateway", "Micro-Timeout must be between 0 and 300 seconds")
        return value


def _limited(who: str, wait: float) -> HttpError:
    seconds = retry_after(wait)
    return HttpError(
        "gateway",
        "too_many_requests",
        f"too many requests from {who}; retry in {seconds} s",
        429,
        {"Retry-After": str(seconds)},
    )


def _not_allowed(request: web.BaseRequest, allow: list[str]) -> HttpError:
    return HttpError(
        "gateway",
        "method_not_allowed",
        f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allow)}",
        405,
        {"Allow": ", ".join(allow)},
    )


async def _ready(response: web.StreamResponse) -> web.StreamResponse:
    return response


async def _expect(request: web.BaseRequest) -> None:
    """What aiohttp's router did for ``Expect``: ``100 Continue`` (HTTP/1.1), else 417."""
    expect = request.headers.get("Expect", "")
    if request.version == HttpVersion11:
        if expect.lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer's own size starts after it
            await request.writer.drain()
        else:
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")


@dataclass(frozen=True, slots=True)
class _Template:
    """A path template of :meth:`Gateway.add_route`."""

    method: str
    path: str
    parts: tuple[str, ...]  # literal segments, or "{name}"
    tail: str | None  # the name of a last "{name*}"
    handler: Handler

    @classmethod
    def parse(cls, method: str, path: str, handler: Handler) -> _Template:
        parts = path[1:].split("/")
        tail = None
        last = parts[-1]
        if last.startswith("{") and last.endswith("*}"):
            tail = last[1:-2]
            parts.pop()
            if not tail.isidentifier():
                raise ValueError(f"bad parameter {last!r} in route {path!r}")
        if not parts or not parts[0] or "{" in parts[0] or "}" in parts[0]:
            raise ValueError(f"route {path!r} must start with a literal segment")
        for part in parts:
            literal = "{" not in part and "}" not in part
            if not literal and not (
                part.startswith("{") and part.endswith("}") and part[1:-1].isidentifier()
            ):
                raise ValueError(f"bad segment {part!r} in route {path!r}")
        return cls(method, path, tuple(parts), tail, handler)

    def serves(self, method: str) -> bool:
        own = self.method
        return own == "*" or own == method or (own == "GET" and method == "HEAD")

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The parameters, if the raw path ``segments`` match."""
        parts = self.parts
        count = len(parts)
        if len(segments) != count if self.tail is None else len(segments) <= count:
            return None
        params: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=False):
            if part.startswith("{"):
                if not segment:
                    return None
                params[part[1:-1]] = unquote(segment)
            elif unquote(segment) != part:
                return None
        if self.tail is not None:
            params[self.tail] = unquote("/".join(segments[count:]))
        return params
