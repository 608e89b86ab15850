"""``Service``: a named, versioned set of typed handlers, served over RPC and registered."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from ..broker import Broker
from ..broker.subscriber import Subscriber, start_subscriber
from ..client import Client
from ..debug import Instrumentation, instrument
from ..profile import profile_named
from ..registry import EndpointInfo, Node, Registry, ServiceInfo
from ..settings import Settings
from ..transport.client import ConnectionPool, split_address
from ..transport.frames import DEFAULT_MAX_FRAME
from ..transport.server import Router, RpcServer
from .endpoint import Endpoint, Middleware, endpoints_of
from .process import configure_logging, run, serve_until_signal

__all__ = ["Service"]

log = logging.getLogger("micro.service")

if TYPE_CHECKING:
    from ..auth.guard import Guard
    from ..auth.session import Session
    from ..config import Config
    from ..config.scoped import ScopedConfig
    from ..events import Events
    from ..identity.bootstrap import TlsClient
    from ..identity.client import IdentityClient
    from ..store import Store
    from ..store.scoped import ScopedStore
    from ..sync import Sync

H = TypeVar("H")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # also a valid store table name
Hook = Callable[[], Awaitable[None]]


class Service:
    """A microservice.

    Build it with a name (and optionally a version and metadata), add handlers with
    :meth:`handler`, then :meth:`run` it (or ``await`` :meth:`start` / :meth:`stop`). The
    blocks it uses (registry, client, ...) are passed in or built from the settings; nothing
    is global, so several services can share one process.
    """

    def __init__(
        self,
        name: str,
        version: str | None = None,
        metadata: dict[str, str] | None = None,
        *,
        registry: Registry | None = None,
        client: Client | None = None,
        store: Store | None = None,
        config: Config | None = None,
        broker: Broker | None = None,
        events: Events | None = None,
        sync: Sync | None = None,
        settings: Settings | None = None,
        middleware: Sequence[Middleware] = (),
        address: str | None = None,
        register_ttl: float = 15.0,
        register_interval: float | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        auth: Guard | bool = True,
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"service name {name!r}: use letters, digits, '.', '_' and '-' (at most 128), "
                "starting with a letter or digit"
            )
        self.name = name
        # the runtime says which version it started (micro run/update --version)
        self.version = version or os.environ.get("MICRO_SERVICE_VERSION") or "latest"
        self.metadata = dict(metadata or {})
        self._settings = settings
        given = {
            "registry": registry,
            "store": store,
            "config": config,
            "broker": broker,
            "events": events,
            "sync": sync,
        }
        self._blocks: dict[str, object] = {k: v for k, v in given.items() if v is not None}
        self._made: list[str] = []  # blocks this service built, closed when it stops
        self._client = client
        # auth: True = when connected to a server (registry from the profile), verify
        # callers and log in with the credential found in the environment
        # (micro.auth.session); a Guard = use that one; False = no auth
        self._auth: Guard | bool = auth
        self.guard: Guard | None = None
        self.session: Session | None = None
        self._tls: TlsClient | None = None  # MICRO_TLS=1: see tls_client
        self._identity: IdentityClient | None = None  # renews this service's certificate
        self._server_ssl: ssl.SSLContext | None = None
        self._web_app: Any = None  # an ASGI app served beside the endpoints (web())
        self._web_url = ""
        self._web_stop: Callable[[], Awaitable[None]] | None = None
        self.debug: Instrumentation = instrument(name)
        self.middleware = [*self.debug.middleware, *middleware]
        self._address = address
        self.register_ttl = register_ttl
        self.register_interval = register_interval or register_ttl / 3
        self.max_frame = max_frame
        self.endpoints: dict[str, Endpoint] = {}
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self.server: RpcServer | None = None
        self.node_id = f"{name}-{uuid.uuid4()}"
        self._heartbeat: asyncio.Task[None] | None = None
        self._registered = False
        self._owns_server = False
        self._made_client = False
        self.subscribers: list[Subscriber] = []
        self._subscriber_tasks: list[asyncio.Task[None]] = []

    # -- building --------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """Settings given at construction, else read from the environment once."""
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    def _block(self, name: str) -> object:
        block = self._blocks.get(name)
        if block is None:
            factory = profile_named(self.settings.profile).factories[name]
            block = self._blocks[name] = factory(self)
            self._made.append(name)
        return block

    @property
    def registry(self) -> Registry:
        """The registry this service registers in and resolves names from."""
        return cast(Registry, self._block("registry"))

    @property
    def client(self) -> Client:
        """A client that resolves service names through :attr:`registry`."""
        if self._client is None:
            tls = self.tls_client
            self._client = Client(
                self.registry,
                max_frame=self.max_frame,
                credentials=self.auth_header,
                pool=ConnectionPool(self.max_frame, ssl=tls.context) if tls else None,
            )
            self._made_client = True
        return self._client

    @property
    def tls_client(self) -> TlsClient | None:
        """With ``MICRO_TLS=1``: the TLS context this service's calls use (the CA bundle,
        then its certificate once obtained)."""
        if self._tls is None and self.settings.tls:
            from ..identity.bootstrap import TlsClient, ca_bundle

            self._tls = TlsClient(ca_bundle(self.settings.data_dir))
        return self._tls

    def auth_header(self) -> str | None:
        """The ``authorization`` value this service's own calls carry (None: anonymous)."""
        return self.session.header() if self.session is not None else None

    @property
    def store(self) -> ScopedStore:
        """Key/value records in database = namespace, table = this service's name."""
        from ..store.scoped import ScopedStore

        return ScopedStore(cast("Store", self._block("store")), self.settings.namespace, self.name)

    @property
    def config(self) -> ScopedConfig:
        """The configuration document of this service's namespace."""
        from ..config.scoped import ScopedConfig

        return ScopedConfig(cast("Config", self._block("config")), self.settings.namespace)

    @property
    def broker(self) -> Broker:
        """Ephemeral publish/subscribe."""
        return cast("Broker", self._block("broker"))

    @property
    def events(self) -> Events:
        """Durable event streams."""
        return cast("Events", self._block("events"))

    @property
    def sync(self) -> Sync:
        """Locks with fencing tokens, leader election, maps, cron claims and task queues."""
        return cast("Sync", self._block("sync"))

    @overload
    def handler(self, handler: type[H], *, name: str | None = None) -> type[H]: ...

    @overload
    def handler(self, handler: H, *, name: str | None = None) -> H: ...

    @overload
    def handler(self, handler: None = None, *, name: str | None = None) -> Callable[[H], H]: ...

    def handler(self, handler: Any = None, *, name: str | None = None) -> Any:
        """Add a handler: a class (instantiated with no arguments) or an instance. Each of its
        public ``async def`` methods becomes the endpoint ``Handler.Method``. Usable as a
        decorator, with or without ``name=`` to override ``Handler``."""
        if handler is None:
            return lambda h: self.handler(h, name=name)
        instance = handler() if isinstance(handler, type) else handler
        for ep in endpoints_of(instance, name):
            if ep.name in self.endpoints:
                raise ValueError(f"endpoint {ep.name} is defined twice")
            self.endpoints[ep.name] = ep
        return handler

    def use(
        self,
        *,
        registry: Registry | None = None,
        client: Client | None = None,
        store: Store | None = None,
        config: Config | None = None,
        broker: Broker | None = None,
        events: Events | None = None,
        sync: Sync | None = None,
        settings: Settings | None = None,
        auth: Guard | bool | None = None,
    ) -> None:
        """Replace blocks before :meth:`start` (tests use it to run a service against
        in-process backends; ``auth=False`` turns auth off)."""
        if self.server is not None:
            raise RuntimeError("cannot change the blocks of a running service")
        given = {
            "registry": registry,
            "store": store,
            "config": config,
            "broker": broker,
            "events": events,
            "sync": sync,
        }
        for name, block in given.items():
            if block is not None:
                self._blocks[name] = block
                if name in self._made:
                    self._made.remove(name)
        if registry is not None and client is None and self._made_client:
            self._client, self._made_client = None, False
        if client is not None:
            self._client, self._made_client = client, False
        if settings is not None:
            self._settings = settings
        if auth is not None:
            self._auth = auth

    def subscribe(
        self, topic: str, group: str | None = None
    ) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., Awaitable[None]]]:
        """Decorate ``async def handler(msg: T)`` (or ``(ctx, msg: T)``) to receive the
        messages published on ``topic`` through :attr:`broker`, decoded into ``T``; with
        ``group``, the service's instances share the messages."""

        def register(func: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
            self.subscribers.append(Subscriber.of(topic, func, group=group))
            return func

        return register

    def web(self, app: Any) -> None:
        """Serve the ASGI ``app`` (FastAPI, Starlette, ...) beside the RPC endpoints while the
        service runs; the gateway reverse-proxies ``/web/{name}/...`` to it, WebSockets
        included (docs/gateway.md). Needs uvicorn (``pip install 'micro-py[web]'``)."""
        if self.server is not None:
            raise RuntimeError("add the web app before the service starts")
        self._web_app = app

    def on_start(self, hook: Hook) -> Hook:
        """Run ``hook`` after the server listens, before registering."""
        self._on_start.append(hook)
        return hook

    def on_stop(self, hook: Hook) -> Hook:
        """Run ``hook`` after in-flight calls drained and the service deregistered."""
        self._on_stop.append(hook)
        return hook

    def info(self) -> ServiceInfo:
        """What this service registers: endpoints with schemas, and its node when running."""
        endpoints = [
            EndpointInfo(
                name=ep.name,
                request=ep.request_schema,
                response=ep.response_schema,
                stream=ep.kind.value,
                metadata=_endpoint_metadata(ep),
            )
            for ep in self.endpoints.values()
        ]
        nodes = []
        if self.server is not None and self.server.address:
            node_meta = {"pid": str(os.getpid()), "host": socket.gethostname()}
            if self._web_url:
                node_meta["web"] = self._web_url
            nodes.append(Node(self.node_id, self.server.address, node_meta))
        return ServiceInfo(self.name, self.version, self.metadata, endpoints, nodes)

    # -- running ---------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` the service listens on (after :meth:`start`)."""
        return self.server.address if self.server is not None else ""

    async def start(self, server: RpcServer | None = None) -> None:
        """Listen (or join ``server``, a listener shared by several services), run the start
        hooks, register and begin heartbeats."""
        if not self.endpoints and not self.subscribers:
            raise RuntimeError(f"service {self.name} has no handlers and no subscribers")
        if "Debug.Health" not in self.endpoints:
            self.handler(self.debug.handler, name="Debug")
        await self._start_auth()
        guard = self.guard
        for ep in self.endpoints.values():
            if guard is None:
                ep.wrap(self.middleware)
            else:
                ep.wrap([guard.middleware(self.name, ep.name, ep.public), *self.middleware])
        if server is None:
            router = Router()
            for served in self._served_names():
                router.add(served, list(self.endpoints.values()))
            self.server = RpcServer(router, self.max_frame)
            host, port = split_address(self._address or self.settings.service_address)
            await self.server.start(host, port, ssl=self._server_ssl)
            self._owns_server = True
        else:
            for served in self._served_names():
                server.router.add(served, list(self.endpoints.values()))
            self.server = server
        if self._web_app is not None:
            from .web import serve_asgi

            web_host, _ = split_address(self.server.address)
            self._web_url, self._web_stop = await serve_asgi(self._web_app, web_host)
        for hook in self._on_start:
            await hook()
        self._subscriber_tasks = [await start_subscriber(self.broker, s) for s in self.subscribers]
        await self._register(first=True)
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        log.info("%s %s serving on %s", self.name, self.version, self.address)

    def _served_names(self) -> list[str]:
        """The names calls may address this service by: its name, and in a namespace other
        than ``micro`` also the registry's qualified ``namespace/name`` (what the gateway
        and the platform's own clients resolve and send)."""
        from ..auth.tenancy import qualified

        full = qualified(self.settings.namespace, self.name)
        return [self.name] if full == self.name else [self.name, full]

    async def _start_auth(self) -> None:
        """Log in with this service's credential and load what the guard needs."""
        if self._auth is False:
            return
        if self._auth is not True:
            self.guard = self._auth
            return
        if os.environ.get("MICRO_AUTH", "").lower() == "off":
            log.warning("%s: MICRO_AUTH=off: every caller may call every endpoint", self.name)
            return
        self.registry  # noqa: B018 (built from the profile unless given)
        if "registry" not in self._made:
            # blocks handed in (tests, embedded use): no server to log in to
            log.debug("%s: registry given, not connected to a server: auth off", self.name)
            return
        from ..auth.connect import connect_service

        self.session, self.guard = await connect_service(self.settings, self.client, self.name)
        await self.guard.start()  # loads the rules as this service (self.session is set)
        tls = self.tls_client
        if tls is not None:
            await self._obtain_certificate(tls)

    async def _obtain_certificate(self, tls: TlsClient) -> None:
        """MICRO_TLS=1: get this service's certificate (and keep renewing it)."""
        from ..identity.client import IdentityClient
        from ..identity.rpc import RpcIdentity

        if self.session is None or self.session.tokens is None:
            raise RuntimeError(
                f"{self.name}: MICRO_TLS=1 needs a working credential to obtain a certificate"
            )
        self._identity = IdentityClient(RpcIdentity(self.client, self.settings.server))
        credentials = await self._identity.start()
        tls.credentials = credentials
        self._server_ssl = credentials.server_context()

    async def _register(self, first: bool = False) -> None:
        try:
            await self.registry.register(self.info(), self.register_ttl)
        except Exception as exc:
            level = logging.WARNING if first or self._registered else logging.DEBUG
            log.log(level, "%s: cannot register (%s); retrying", self.name, exc)
            self._registered = False
        else:
            if not self._registered and not first:
                log.info("%s: registered again", self.name)
            self._registered = True

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.register_interval if self._registered else 1.0)
            await self._register()

    async def stop(self, grace: float = 10.0) -> None:
        """Refuse new calls, deregister, wait up to ``grace`` seconds for in-flight calls,
        run the stop hooks, close connections."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        tasks, self._subscriber_tasks = self._subscriber_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server = self.server
        if server is not None:
            if self._owns_server:
                server.draining = True  # new calls get "draining" and go to another node
            try:
                await asyncio.wait_for(self.registry.deregister(self.info()), 5.0)
            except Exception as exc:
                log.warning("%s: cannot deregister (%s)", self.name, exc)
            if self._owns_server:
                await server.stop(grace)
            else:
                for served in self._served_names():
                    server.router.remove(served)
        web_stop, self._web_stop, self._web_url = self._web_stop, None, ""
        if web_stop is not None:
            try:
                await web_stop()
            except Exception:
                log.exception("%s: stopping the web app failed", self.name)
        for hook in self._on_stop:
            try:
                await hook()
            except Exception:
                log.exception("%s: stop hook failed", self.name)
        if self._auth is True:  # made by _start_auth
            for part in (self._identity, self.guard, self.session):
                if part is not None:
                    await part.close()
            self.guard, self.session, self._identity = None, None, None
        made, self._made = self._made, []
        closing = {name: self._blocks.pop(name) for name in made}
        registry = closing.pop("registry", None)  # closed last: the client still uses it
        for name, block in reversed(closing.items()):
            await _close(block, f"{self.name}: {name}")
        if self._client is not None and self._made_client:
            await self._client.close()
            self._client = None
        if registry is not None:
            await _close(registry, f"{self.name}: registry")
        self.server = None

    async def serve(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then stop gracefully."""
        await serve_until_signal(self.start, self.stop, self.name)

    def run(self) -> None:
        """Run the service in this process until it is told to stop (the ``main`` of a
        service file)."""
        configure_logging(self.name)
        run(self.serve())


async def _close(block: object, what: str) -> None:
    close = getattr(block, "close", None)
    if close is None:
        return
    try:
        await close()
    except Exception as exc:
        log.warning("%s: close failed (%s)", what, exc)


def _endpoint_metadata(ep: Endpoint) -> dict[str, str]:
    meta: dict[str, str] = {}
    if ep.public:
        meta["public"] = "true"
    if ep.idempotent:
        meta["idempotent"] = "true"
    if ep.routes:  # explicit HTTP routes, read by the gateway: [["GET", "/users/{id}"], ...]
        meta["http"] = ep.routes_json()
    return meta
