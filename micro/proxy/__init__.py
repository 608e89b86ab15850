"""``micro proxy``: one authenticated address that forwards calls to every service.

A :class:`Proxy` is an :class:`~micro.transport.server.RpcServer` whose router has no
endpoints of its own, only a fallback: a call to *any* ``service``/``endpoint`` is forwarded
to a node of ``service`` resolved in the registry (through the given
:class:`~micro.client.Client`), with

- the request body passed through untouched, in the caller's codec (msgpack or JSON);
- the caller's metadata (its ``authorization`` included, never the proxy's own) and the
  caller's deadline (the remaining time travels with the forwarded call);
- unary, server-, client- and bidirectional streaming calls; the stream kind is read from
  the endpoint's registry entry (an endpoint the proxy has not seen yet is treated as unary
  until its service's entry is loaded, which happens on that first call).

The ``registry`` service is forwarded like any other, except that the node addresses in
the answers of ``Registry.GetService``, ``Registry.ListServices`` and ``Registry.Watch``
are rewritten to the proxy's own address: a client pointed at the proxy
(``MICRO_SERVER=<proxy>``) then sends every call through it.

Authentication: with a :class:`~micro.auth.verify.Verifier` (keys fetched from the
server's ``Auth.Jwks``), every call must carry a valid access token, except the login
endpoints (``Auth.Token``, ``Auth.Exchange``, ``Auth.Jwks``), the registry reads and
``Debug.Health``, which stay as public as on the server. A bad token is refused (401) even
there. The services behind the proxy still apply their rules to the forwarded token.
Listen with mutual TLS by passing ``ssl=`` to :meth:`Proxy.start`.

Namespaces (see :mod:`micro.auth.tenancy`): services are resolved *as the caller*. A call
to service ``S`` by a caller confined to namespace ``N`` (its verified token says so) goes
to a node of the registry's ``qualified(N, S)``, found by reading the registry with the
caller's own token (so the registry's tenancy decides what it may see); the node is called
by the name it serves, ``S``. A confined caller may not name a service with ``/``.
Unrestricted callers (admins of ``micro``) reach every service by its stored name
(``acme/greeter``), anonymous ones and callers of ``micro`` the services of ``micro``. The
platform's own services (:data:`PLATFORM_SERVICES`: ``registry``, ``auth``, ``store``...)
are the same for every namespace and never qualified. Nodes of other namespaces are cached
for ``resolve_ttl`` seconds (and refreshed from the registry answers and watches the proxy
forwards to their callers); those of ``micro`` come from the proxy's own watched view.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from ssl import SSLContext
from typing import Any, TypeVar, cast

import msgspec

from ..auth import ADMIN, DEFAULT_NAMESPACE, Claims
from ..auth.guard import bearer
from ..auth.tenancy import SEP, caller_namespace, qualified, split
from ..auth.verify import Verifier
from ..client import Client
from ..context import Context
from ..errors import MicroError, bad_request, unauthorized, unavailable
from ..registry import Event, Node, ServiceInfo
from ..registry.messages import GetServiceRequest, ServicesResponse
from ..service.endpoint import Endpoint, StreamKind
from ..transport.client import ClientConnection, ConnectionLost, split_address
from ..transport.frames import DEFAULT_MAX_FRAME, Codec, Frame, Kind
from ..transport.server import Router, RpcServer, ServerConnection
from ..transport.streams import InboundStream

__all__ = ["PLATFORM_SERVICES", "PUBLIC_ENDPOINTS", "Proxy", "ProxyEndpoint"]

log = logging.getLogger("micro.proxy")

PUBLIC_ENDPOINTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("auth", "Auth.Token"),
        ("auth", "Auth.Exchange"),
        ("auth", "Auth.Jwks"),
        ("registry", "Registry.GetService"),
        ("registry", "Registry.ListServices"),
        ("registry", "Registry.Watch"),
        ("*", "Debug.Health"),
    }
)
"""``(service, endpoint)`` pairs callable through the proxy without a token (``*``: any
service)."""

PLATFORM_SERVICES: frozenset[str] = frozenset(
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
"""The services ``micro server`` hosts itself: the same for callers of every namespace, so
never qualified with the caller's namespace."""

_REWRITTEN = {"Registry.GetService", "Registry.ListServices", "Registry.Watch"}
_KINDS = {k.value: k for k in StreamKind}

T = TypeVar("T")

Raw = tuple[bytes, int]
"""A message as it travels through the proxy: its encoded body and codec."""


class ProxyEndpoint(Endpoint):
    """An endpoint that forwards raw bodies: what the proxy's router answers with."""

    def __init__(self, proxy: Proxy, service: str, name: str, kind: StreamKind) -> None:
        # Not Endpoint.__init__: nothing is typed here, bodies pass through encoded.
        self.name = name
        self.kind = kind
        self.public = proxy.is_public(service, name)
        self.idempotent = False
        self.request_type = Any
        self.response_type = Any
        self.request_schema = {}
        self.response_schema = {}
        self._generator = False
        self.call = proxy._forwarder(service, name, kind)
        self.func = self.call

    def decode_request(self, body: bytes, codec: int) -> Raw:
        """The body stays encoded; its codec goes with it."""
        if codec != Codec.MSGPACK and codec != Codec.JSON:
            raise bad_request(self.name, f"unknown codec {codec}")
        return body, codec

    def encode_response(self, value: Any, codec: int) -> bytes:
        """Answers are already encoded in the caller's codec."""
        return bytes(value)


class _Tenant:
    """What the proxy knows of one service of another namespace (by its stored name): its
    versions as the registry showed them to a caller of that namespace, until ``expires``."""

    __slots__ = ("expires", "versions")

    def __init__(self, expires: float, versions: dict[str, ServiceInfo]) -> None:
        self.expires = expires
        self.versions = versions

    def nodes(self) -> list[Node]:
        return [n for svc in self.versions.values() for n in svc.nodes]


class _ProxyConnection(ServerConnection):
    """A connection to the proxy: shows the router's fallback the metadata of the request
    it is routing (the stream kind of ``S`` depends on the caller's namespace)."""

    def _request(self, frame: Frame) -> None:
        proxy = cast("Proxy", self.server)
        proxy._routing = frame.metadata
        try:
            super()._request(frame)
        finally:
            proxy._routing = None


class Proxy(RpcServer):
    """Forwards every call it receives to the service named in it (see the module doc).

    ``client`` resolves services in the registry and makes the forwarded calls; its own
    credentials are never used for them. ``address`` is where :meth:`start` listens
    (``host:port``, port 0 for a free one); ``advertise`` the address written into registry
    answers (default: the address bound). ``verifier``: require valid tokens (None: no
    auth, for servers without it). ``platform``: the services never qualified with the
    caller's namespace. ``resolve_ttl``: how long nodes of another namespace's service are
    reused before the registry is read again (``clock``: monotonic seconds, for tests)."""

    def __init__(
        self,
        client: Client,
        *,
        address: str = "127.0.0.1:8082",
        advertise: str | None = None,
        verifier: Verifier | None = None,
        public: Iterable[tuple[str, str]] = PUBLIC_ENDPOINTS,
        platform: Iterable[str] = PLATFORM_SERVICES,
        resolve_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        router = Router()
        router.fallback = self._endpoint
        super().__init__(router, max_frame)
        self.client = client
        self.listen = address
        self.advertise = advertise
        self.verifier = verifier
        self.public = frozenset(public)
        self.platform = frozenset(platform)
        self.resolve_ttl = resolve_ttl
        self.clock = clock
        self._endpoints: dict[tuple[str, str], ProxyEndpoint] = {}
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._kinds: dict[tuple[str, str], StreamKind] = {}
        self._tenants: dict[str, _Tenant] = {}
        self._watch: asyncio.Task[None] | None = None
        self._routing: dict[str, str] | None = None  # metadata of the request being routed
        self.forwarded_total = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(
        self, host: str | None = None, port: int | None = None, ssl: SSLContext | None = None
    ) -> str:
        """Learn the endpoints' stream kinds from the registry (and keep watching it), then
        listen on ``address`` (or ``host``/``port``); return the ``host:port`` bound."""
        default_host, default_port = split_address(self.listen)
        view = self.client.view
        if view is not None:
            try:
                self._learn(await view.registry.list_services())
            except (MicroError, OSError) as exc:
                log.warning("proxy: cannot list the services yet (%s)", exc)
            self._watch = asyncio.get_running_loop().create_task(self._follow())
        bound = await self._listen(
            default_host if host is None else host,
            default_port if port is None else port,
            ssl,
        )
        if self.advertise is None:
            self.advertise = bound
        log.info("micro proxy: listening on %s", bound)
        return bound

    async def _listen(self, host: str, port: int, ssl: SSLContext | None) -> str:
        """:meth:`RpcServer.start`, with connections that show the fallback the caller."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ProxyConnection(self), host, port, reuse_address=True, ssl=ssl
        )
        self.tls = ssl is not None
        sock_host, sock_port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{sock_host}:{sock_port}"
        return self.address

    def _learn(self, services: Iterable[ServiceInfo], key: str | None = None) -> None:
        """Remember the stream kinds of ``services``' endpoints, under ``key`` (the stored
        name) or, by default, each service's own name."""
        for svc in services:
            for ep in svc.endpoints:
                self._kinds[(key or svc.name, ep.name)] = _KINDS.get(ep.stream, StreamKind.UNARY)
        if len(self._kinds) > 100_000:  # names come from registrations: keep it bounded
            self._kinds.clear()

    async def _follow(self) -> None:
        """Keep :attr:`_kinds` current from the registry's watch (restarted on failure)."""
        view = self.client.view
        assert view is not None
        pause = 0.5
        while True:
            try:
                async for event in view.registry.watch():
                    if event.type != "delete":
                        self._learn([event.service])
                    pause = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("proxy: registry watch broke (%s); again in %.1f s", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)

    async def stop(self, grace: float = 10.0) -> None:
        """Drain and close the listener (the client is the caller's to close)."""
        await super().stop(grace)
        tasks = list(self._loading.values())
        if self._watch is not None:
            tasks.append(self._watch)
            self._watch = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- routing -----------------------------------------------------------------------------

    def is_public(self, service: str, endpoint: str) -> bool:
        """Whether ``service``/``endpoint`` may be called through the proxy without a token."""
        return (service, endpoint) in self.public or ("*", endpoint) in self.public

    def stored_name(self, service: str, claims: Claims | None) -> str:
        """The registry name a call to ``service`` by the caller of ``claims`` goes to:
        ``qualified(namespace, service)`` for a caller confined to a namespace, ``service``
        itself for unrestricted and anonymous callers and for the platform's services.
        ``bad_request`` for a confined caller naming a service with ``/``."""
        if self.verifier is None or claims is None or service in self.platform:
            return service
        if claims.namespace == DEFAULT_NAMESPACE and ADMIN in claims.scopes:
            return service  # unrestricted: names as stored
        if SEP in service:
            raise bad_request(service, f"service name {service!r} must not contain {SEP!r}")
        return qualified(claims.namespace, service)

    def _route(self, ctx: Context, service: str) -> str:
        """The stored name of ``service`` for the (verified) caller of ``ctx``."""
        return self.stored_name(service, ctx.account)

    def _peek(self, service: str) -> tuple[str, str]:
        """For the router's fallback, which has no context: the stored name of ``service``
        for the caller of the request being routed (its token verified without I/O; not
        verifiable yet: the name as given, the handler verifies it properly) and that
        caller's ``authorization``."""
        metadata = self._routing or {}
        header = metadata.get("authorization", "")
        if self.verifier is None or not header:
            return service, header
        try:
            return self.stored_name(service, self.verifier.verify(bearer(header))), header
        except MicroError:
            return service, header

    def _endpoint(self, service: str, endpoint: str) -> Endpoint | None:
        """The router's fallback: a forwarder of the right stream kind."""
        stored, header = self._peek(service)
        kind = self._kind(stored, endpoint, header)
        key = (service, endpoint)
        ep = self._endpoints.get(key)
        if ep is None or ep.kind is not kind:
            if len(self._endpoints) > 10_000:  # names come from callers: keep the map bounded
                self._endpoints.clear()
            ep = self._endpoints[key] = ProxyEndpoint(self, service, endpoint, kind)
        return ep

    def _kind(self, stored: str, endpoint: str, header: str) -> StreamKind:
        if stored == "registry" and endpoint == "Registry.Watch":
            return StreamKind.SERVER
        kind = self._kinds.get((stored, endpoint))
        if kind is not None:
            return kind
        view = self.client.view
        if view is None:
            return StreamKind.UNARY
        if SEP in stored:
            tenant = self._tenants.get(stored)
            if tenant is not None:
                for svc in tenant.versions.values():
                    info = svc.endpoint(endpoint)
                    if info is not None:
                        return _KINDS.get(info.stream, StreamKind.UNARY)
        else:
            info = view.endpoint(stored, endpoint)
            if info is not None:
                return _KINDS.get(info.stream, StreamKind.UNARY)
        known = self._tenants.get(stored) if SEP in stored else view.nodes(stored)
        if known is None and stored not in self._loading and len(self._loading) < 1_000:
            # not seen yet: load it (as this caller) so the next call knows its kind
            task = asyncio.get_running_loop().create_task(
                self._load(stored, header), context=contextvars.Context()
            )
            self._loading[stored] = task
        return StreamKind.UNARY

    @staticmethod
    async def _detached(coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` outside the call being handled. A call made while handling one
        inherits its metadata, the caller's token included: the proxy's own registry view
        must never be filled with what the registry shows one caller (its namespace's
        services under their plain names), so it reads as the proxy."""
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        return await task

    async def _ensure(self, stored: str) -> list[Node]:
        """The nodes of ``stored`` (a service of ``micro``) in the proxy's view, read from
        the registry as the proxy when not cached; ``unavailable`` if there are none."""
        view = self.client.view
        if view is None:
            raise unavailable(stored, "the proxy's client has no registry")
        nodes = view.nodes(stored)
        if nodes is None:
            nodes = await self._detached(view.load(stored))
        if not nodes:
            raise unavailable(stored, f"no live node of {stored!r}")
        return nodes

    async def _load(self, stored: str, header: str) -> None:
        try:
            if SEP not in stored:
                if self.client.view is not None:
                    self._learn(await self.client.view.registry.get_service(stored))
            elif header:
                await self._fetch(stored, header, as_stored=False)
        except (MicroError, OSError) as exc:
            log.debug("proxy: cannot load %s (%s)", stored, exc)
        finally:
            self._loading.pop(stored, None)

    async def _check(self, ctx: Context, service: str, endpoint: str) -> None:
        """Refuse a call without a valid token unless the endpoint is public here."""
        if self.verifier is None:
            return
        header = ctx.metadata.get("authorization")
        if header:
            ctx.account = await self.verifier.verify_async(bearer(header))
        elif not self.is_public(service, endpoint):
            raise unauthorized(service, f"{endpoint}: the proxy needs a token (log in first)")

    def _metadata(self, ctx: Context) -> dict[str, str]:
        """The caller's metadata, with its own authorization (empty: anonymous), so the
        client never adds the proxy's credentials."""
        metadata = dict(ctx.metadata)
        metadata.setdefault("authorization", "")
        return metadata

    # -- services of other namespaces ----------------------------------------------------------

    async def _fetch(self, stored: str, header: str, *, as_stored: bool) -> list[Node]:
        """Read ``stored`` from the registry with the caller's ``header``: by its stored name
        when the caller is unrestricted (``as_stored``), else by the name the caller knows it
        by (the registry qualifies it again). Cached for :attr:`resolve_ttl` seconds."""
        name = stored if as_stored else split(stored)[1]
        resp = await self._detached(
            self.client.call(
                "registry",
                "Registry.GetService",
                GetServiceRequest(name),
                address=(await self._ensure("registry"))[0].address,
                metadata={"authorization": header},
                response_type=ServicesResponse,
            )
        )
        return self._remember(stored, resp.services)

    def _remember(self, stored: str, services: list[ServiceInfo]) -> list[Node]:
        if len(self._tenants) > 10_000:  # names come from callers: keep the map bounded
            self._tenants.clear()
        tenant = _Tenant(self.clock() + self.resolve_ttl, {svc.version: svc for svc in services})
        self._tenants[stored] = tenant
        self._learn(services, stored)
        return tenant.nodes()

    async def _tenant_nodes(self, ctx: Context, stored: str) -> list[Node]:
        tenant = self._tenants.get(stored)
        if tenant is not None and tenant.expires > self.clock():
            nodes = tenant.nodes()
            if nodes:
                return nodes
        header = ctx.metadata.get("authorization", "")
        return await self._fetch(stored, header, as_stored=caller_namespace(ctx) is None)

    async def _address(self, ctx: Context, stored: str) -> str:
        """A node of ``stored`` to which a connection is open (refusing nodes skipped)."""
        if SEP not in stored:
            address = await self._pick(stored)
            try:
                await self.client.pool.get(address)
            except OSError as exc:
                raise unavailable(stored, str(exc)) from None
            return address
        nodes = await self._tenant_nodes(ctx, stored)
        tried: list[str] = []
        while nodes:
            address = self.client.select(stored, nodes).address
            try:
                await self.client.pool.get(address)
            except OSError:
                tried.append(address)
                self._evict(stored, address)
                nodes = [n for n in nodes if n.address not in tried]
                continue
            return address
        detail = f"no live node of {split(stored)[1]!r}"
        if tried:
            detail += f" (could not reach {', '.join(tried)})"
        raise unavailable(split(stored)[1], detail)

    def _evict(self, stored: str, address: str) -> None:
        tenant = self._tenants.get(stored)
        if tenant is None:
            return
        for version, svc in list(tenant.versions.items()):
            kept = [n for n in svc.nodes if n.address != address]
            tenant.versions[version] = msgspec.structs.replace(svc, nodes=kept)

    # -- forwarding --------------------------------------------------------------------------

    def _forwarder(self, service: str, endpoint: str, kind: StreamKind) -> Any:
        rewrite = service == "registry" and endpoint in _REWRITTEN
        if kind is StreamKind.UNARY:

            async def unary(ctx: Context, request: Raw) -> bytes:
                await self._check(ctx, service, endpoint)
                stored = self._route(ctx, service)
                body, codec = request
                self.forwarded_total += 1
                metadata = self._metadata(ctx)
                if SEP not in stored:
                    # resolved as the proxy first: call_raw then finds it cached
                    await self._ensure(stored)
                    reply = await self.client.call_raw(
                        stored, endpoint, body, codec=codec, metadata=metadata
                    )
                else:  # another namespace's: its node serves it by its own name
                    address = await self._address(ctx, stored)
                    reply = await self.client.call_raw(
                        split(stored)[1],
                        endpoint,
                        body,
                        codec=codec,
                        metadata=metadata,
                        address=address,
                    )
                return self._rewrite_services(ctx, reply, codec) if rewrite else reply

            return unary

        if kind is StreamKind.SERVER:

            async def server_stream(ctx: Context, request: Raw) -> AsyncIterator[bytes]:
                await self._check(ctx, service, endpoint)
                body, codec = request
                upstream = await self._open(ctx, service, endpoint, body, codec)
                return self._relay(upstream, codec, ctx if rewrite else None)

            return server_stream

        async def client_stream(ctx: Context, inbound: InboundStream[Raw]) -> Any:
            await self._check(ctx, service, endpoint)
            # the call's codec: the server decodes its messages with partial(..., codec=N)
            codec = getattr(inbound.decode, "keywords", {}).get("codec", Codec.MSGPACK)
            upstream = await self._open(ctx, service, endpoint, b"", codec)
            pump = asyncio.get_running_loop().create_task(upstream.pump(inbound))
            if kind is StreamKind.CLIENT:
                try:
                    async for reply in upstream.replies:
                        upstream.finished = True
                        return reply
                    raise unavailable(service, f"{endpoint} ended without a response")
                finally:
                    pump.cancel()
                    upstream.close()
            return self._relay(upstream, 0, None, pump)

        return client_stream

    async def _open(
        self,
        ctx: Context,
        service: str,
        endpoint: str,
        body: bytes,
        codec: int,
    ) -> _Upstream:
        """Open the streaming call upstream (REQUEST sent, replies queued)."""
        from ..client.budget import inherit

        stored = self._route(ctx, service)
        wait, metadata = inherit(None, self._metadata(ctx), service, endpoint)
        address = await self._address(ctx, stored)
        try:
            conn = await self.client.pool.get(address)
        except OSError as exc:
            raise unavailable(service, str(exc)) from None
        call_id = conn.next_id()
        replies: InboundStream[bytes] = InboundStream(bytes)
        ms = 0 if wait is None else max(1, int(wait * 1000))
        name = split(stored)[1]  # the name its node serves it by
        try:
            conn.open_stream(
                Frame(Kind.REQUEST, call_id, body, codec, None, name, endpoint, metadata, ms),
                replies,
            )
        except ConnectionLost as exc:
            raise unavailable(service, str(exc)) from None
        self.forwarded_total += 1
        return _Upstream(conn, call_id, replies)

    async def _pick(self, service: str) -> str:
        return self.client.select(service, await self._ensure(service)).address

    async def _relay(
        self,
        upstream: _Upstream,
        codec: int,
        rewrite: Context | None,
        pump: asyncio.Task[None] | None = None,
    ) -> AsyncIterator[bytes]:
        """The upstream stream's messages; ``rewrite``: registry events, shown to the
        caller of that context."""
        try:
            async for reply in upstream.replies:
                yield self._rewrite_event(rewrite, reply, codec) if rewrite else reply
            upstream.finished = True
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            upstream.close()

    # -- registry answers --------------------------------------------------------------------

    def _stored_of(self, ctx: Context, shown: str) -> str:
        """The stored name of a service the registry showed the caller of ``ctx`` as
        ``shown`` (it shows a confined caller its namespace's services unprefixed)."""
        if self.verifier is None:
            return shown
        namespace = caller_namespace(ctx)
        return shown if namespace is None else qualified(namespace, shown)

    def _here(self, service: ServiceInfo) -> ServiceInfo:
        address = self.advertise or self.address
        nodes = [msgspec.structs.replace(n, address=address) for n in service.nodes]
        return msgspec.structs.replace(service, nodes=nodes)

    def _rewrite_services(self, ctx: Context, body: bytes, codec: int) -> bytes:
        """A ``GetService``/``ListServices`` answer with the proxy as every node; what it
        says of other namespaces' services (the caller's) is remembered on the way."""
        resp = _decode(body, codec, ServicesResponse)
        by_name: dict[str, list[ServiceInfo]] = {}
        for svc in resp.services:
            by_name.setdefault(self._stored_of(ctx, svc.name), []).append(svc)
        for stored, versions in by_name.items():
            if SEP in stored:
                self._remember(stored, versions)
            else:
                self._learn(versions, stored)
        return _encode(ServicesResponse([self._here(s) for s in resp.services]), codec)

    def _rewrite_event(self, ctx: Context, body: bytes, codec: int) -> bytes:
        event = _decode(body, codec, Event)
        svc = event.service
        stored = self._stored_of(ctx, svc.name)
        tenant = self._tenants.get(stored) if SEP in stored else None
        if event.type == "delete":
            if tenant is not None:
                tenant.versions.pop(svc.version, None)
        else:
            self._learn([svc], stored)
            if tenant is not None:
                tenant.versions[svc.version] = svc
        return _encode(Event(event.type, self._here(svc)), codec)


class _Upstream:
    """A streaming call the proxy opened to a service."""

    def __init__(self, conn: ClientConnection, call_id: int, replies: InboundStream[bytes]) -> None:
        self.conn = conn
        self.call_id = call_id
        self.replies = replies
        self.finished = False

    async def pump(self, inbound: InboundStream[Raw]) -> None:
        """Send the caller's messages on, then END."""
        conn = self.conn
        try:
            async for body, codec in inbound:
                conn.send(Frame(Kind.MESSAGE, self.call_id, body, codec))
                await conn.drain()
            conn.send(Frame(Kind.END, self.call_id))
        except (MicroError, ConnectionResetError, ConnectionLost) as exc:
            self.replies.fail(
                exc if isinstance(exc, MicroError) else unavailable("proxy", str(exc))
            )

    def close(self) -> None:
        """Cancel the upstream call unless it finished."""
        if not self.finished:
            self.finished = True
            self.conn.forget(self.call_id)


def _decode(body: bytes, codec: int, tp: type[Any]) -> Any:
    if codec == Codec.JSON:
        return msgspec.json.decode(body, type=tp)
    return msgspec.msgpack.decode(body, type=tp)


def _encode(value: Any, codec: int) -> bytes:
    if codec == Codec.JSON:
        return msgspec.json.encode(value)
    return msgspec.msgpack.encode(value)
