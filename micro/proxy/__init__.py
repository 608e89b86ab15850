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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from ssl import SSLContext
from typing import Any

import msgspec

from ..auth.guard import bearer
from ..auth.verify import Verifier
from ..client import Client
from ..context import Context
from ..errors import MicroError, bad_request, unauthorized, unavailable
from ..registry import Event, Node, ServiceInfo
from ..registry.messages import ServicesResponse
from ..service.endpoint import Endpoint, StreamKind
from ..transport.client import ClientConnection, ConnectionLost, split_address
from ..transport.frames import DEFAULT_MAX_FRAME, Codec, Frame, Kind
from ..transport.server import Router, RpcServer
from ..transport.streams import InboundStream

__all__ = ["PUBLIC_ENDPOINTS", "Proxy", "ProxyEndpoint"]

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

_REWRITTEN = {"Registry.GetService", "Registry.ListServices", "Registry.Watch"}
_KINDS = {k.value: k for k in StreamKind}

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


class Proxy(RpcServer):
    """Forwards every call it receives to the service named in it (see the module doc).

    ``client`` resolves services in the registry and makes the forwarded calls; its own
    credentials are never used for them. ``address`` is where :meth:`start` listens
    (``host:port``, port 0 for a free one); ``advertise`` the address written into registry
    answers (default: the address bound). ``verifier``: require valid tokens (None: no
    auth, for servers without it)."""

    def __init__(
        self,
        client: Client,
        *,
        address: str = "127.0.0.1:8082",
        advertise: str | None = None,
        verifier: Verifier | None = None,
        public: Iterable[tuple[str, str]] = PUBLIC_ENDPOINTS,
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
        self._endpoints: dict[tuple[str, str], ProxyEndpoint] = {}
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._kinds: dict[tuple[str, str], StreamKind] = {}
        self._watch: asyncio.Task[None] | None = None
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
        bound = await super().start(
            default_host if host is None else host,
            default_port if port is None else port,
            ssl=ssl,
        )
        if self.advertise is None:
            self.advertise = bound
        log.info("micro proxy: listening on %s", bound)
        return bound

    def _learn(self, services: Iterable[ServiceInfo]) -> None:
        for svc in services:
            for ep in svc.endpoints:
                self._kinds[(svc.name, ep.name)] = _KINDS.get(ep.stream, StreamKind.UNARY)

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

    def _endpoint(self, service: str, endpoint: str) -> Endpoint | None:
        """The router's fallback: a forwarder of the right stream kind."""
        kind = self._kind(service, endpoint)
        key = (service, endpoint)
        ep = self._endpoints.get(key)
        if ep is None or ep.kind is not kind:
            if len(self._endpoints) > 10_000:  # names come from callers: keep the map bounded
                self._endpoints.clear()
            ep = self._endpoints[key] = ProxyEndpoint(self, service, endpoint, kind)
        return ep

    def _kind(self, service: str, endpoint: str) -> StreamKind:
        if service == "registry" and endpoint == "Registry.Watch":
            return StreamKind.SERVER
        kind = self._kinds.get((service, endpoint))
        if kind is not None:
            return kind
        view = self.client.view
        if view is None:
            return StreamKind.UNARY
        info = view.endpoint(service, endpoint)
        if info is not None:
            return _KINDS.get(info.stream, StreamKind.UNARY)
        if view.nodes(service) is None and service not in self._loading:
            # not seen yet: load it so the next call knows its kind
            task = asyncio.get_running_loop().create_task(self._load(service))
            self._loading[service] = task
        return StreamKind.UNARY

    async def _load(self, service: str) -> None:
        try:
            if self.client.view is not None:
                self._learn(await self.client.view.registry.get_service(service))
        except (MicroError, OSError) as exc:
            log.debug("proxy: cannot load %s (%s)", service, exc)
        finally:
            self._loading.pop(service, None)

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

    # -- forwarding --------------------------------------------------------------------------

    def _forwarder(self, service: str, endpoint: str, kind: StreamKind) -> Any:
        rewrite = service == "registry" and endpoint in _REWRITTEN
        if kind is StreamKind.UNARY:

            async def unary(ctx: Context, request: Raw) -> bytes:
                await self._check(ctx, service, endpoint)
                body, codec = request
                self.forwarded_total += 1
                reply = await self.client.call_raw(
                    service, endpoint, body, codec=codec, metadata=self._metadata(ctx)
                )
                return self._rewrite_services(reply, codec) if rewrite else reply

            return unary

        if kind is StreamKind.SERVER:

            async def server_stream(ctx: Context, request: Raw) -> AsyncIterator[bytes]:
                await self._check(ctx, service, endpoint)
                body, codec = request
                upstream = await self._open(ctx, service, endpoint, body, codec)
                return self._relay(upstream, codec, rewrite)

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
            return self._relay(upstream, 0, False, pump)

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

        wait, metadata = inherit(None, self._metadata(ctx), service, endpoint)
        client = self.client
        address = await self._pick(service)
        try:
            conn = await client.pool.get(address)
        except OSError as exc:
            raise unavailable(service, str(exc)) from None
        call_id = conn.next_id()
        replies: InboundStream[bytes] = InboundStream(bytes)
        ms = 0 if wait is None else max(1, int(wait * 1000))
        try:
            conn.open_stream(
                Frame(Kind.REQUEST, call_id, body, codec, None, service, endpoint, metadata, ms),
                replies,
            )
        except ConnectionLost as exc:
            raise unavailable(service, str(exc)) from None
        self.forwarded_total += 1
        return _Upstream(conn, call_id, replies)

    async def _pick(self, service: str) -> str:
        view = self.client.view
        if view is None:
            raise unavailable(service, "the proxy's client has no registry")
        nodes: list[Node] | None = view.nodes(service)
        if not nodes:
            nodes = await view.load(service)
        if not nodes:
            raise unavailable(service, f"no live node of {service!r}")
        return self.client.select(service, nodes).address

    async def _relay(
        self,
        upstream: _Upstream,
        codec: int,
        rewrite: bool,
        pump: asyncio.Task[None] | None = None,
    ) -> AsyncIterator[bytes]:
        try:
            async for reply in upstream.replies:
                yield self._rewrite_event(reply, codec) if rewrite else reply
            upstream.finished = True
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            upstream.close()

    # -- registry answers --------------------------------------------------------------------

    def _here(self, service: ServiceInfo) -> ServiceInfo:
        address = self.advertise or self.address
        nodes = [msgspec.structs.replace(n, address=address) for n in service.nodes]
        return msgspec.structs.replace(service, nodes=nodes)

    def _rewrite_services(self, body: bytes, codec: int) -> bytes:
        resp = _decode(body, codec, ServicesResponse)
        return _encode(ServicesResponse([self._here(s) for s in resp.services]), codec)

    def _rewrite_event(self, body: bytes, codec: int) -> bytes:
        event = _decode(body, codec, Event)
        return _encode(Event(event.type, self._here(event.service)), codec)


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
