"""Test helpers, part of the public API: run services in-process and call them.

Three lines test a handler::

    async def test_call():
        async with serve(service) as client:
            resp = await client.call("Helloworld.Call", {"name": "Alice"})
        assert resp["message"] == "Hello Alice"

``serve`` starts the given services on free loopback ports against an in-process registry
and yields a :class:`ServiceTestClient` bound to the first one; the calls go over the real
RPC protocol. For tests that need the whole server (registry service, gateway, runtime),
use :func:`start_server` or the ``micro_server`` pytest fixture.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..broker import Broker
from ..client import Client, Stream
from ..config import Config
from ..events import Events
from ..registry import Registry
from ..registry.memory import MemoryRegistry
from ..server import MicroServer, ServerOptions
from ..service import Service
from ..settings import Settings
from ..store import Store
from ..sync import Sync

__all__ = [
    "ServiceTestClient",
    "admin_client",
    "admin_header",
    "eventually",
    "local_admin_client",
    "serve",
    "start_server",
]

T = TypeVar("T")


class ServiceTestClient:
    """Calls one service by endpoint name; ``client`` reaches any other service too."""

    def __init__(self, service: Service, client: Client) -> None:
        self.service = service
        self.client = client

    async def call(
        self,
        endpoint: str,
        request: Any = None,
        *,
        response_type: Any = None,
        timeout: float | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Any:
        """Call ``endpoint`` (``"Handler.Method"``) of the service under test."""
        return await self.client.call(
            self.service.name,
            endpoint,
            request,
            response_type=response_type,
            timeout=timeout,
            metadata=metadata,
        )

    def stream(
        self,
        endpoint: str,
        request: Any = None,
        *,
        response_type: Any = None,
        timeout: float | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Stream:
        """Open a streaming call to ``endpoint`` of the service under test."""
        return self.client.stream(
            self.service.name,
            endpoint,
            request,
            response_type=response_type,
            timeout=timeout,
            metadata=metadata,
        )


@asynccontextmanager
async def serve(
    *services: Service,
    registry: Registry | None = None,
    store: Store | None = None,
    config: Config | None = None,
    broker: Broker | None = None,
    events: Events | None = None,
    sync: Sync | None = None,
) -> AsyncIterator[ServiceTestClient]:
    """Start ``services`` on 127.0.0.1 with in-memory blocks shared between them (registry,
    store, config, broker, events, sync: pass your own to override); yield a client bound to the
    first; stop them all and close the blocks afterwards."""
    if not services:
        raise ValueError("serve() needs at least one service")
    from ..broker.memory import MemoryBroker
    from ..config.memory import MemoryConfig
    from ..events.memory import MemoryEvents
    from ..store.memory import MemoryStore
    from ..sync.memory import MemorySync

    made: list[Any] = []

    def default(given: T | None, build: Callable[[], T]) -> T:
        if given is not None:
            return given
        block = build()
        made.append(block)
        return block

    blocks: dict[str, Any] = {
        "registry": default(registry, MemoryRegistry),
        "store": default(store, MemoryStore),
        "config": default(config, MemoryConfig),
        "broker": default(broker, MemoryBroker),
        "events": default(events, MemoryEvents),
        "sync": default(sync, MemorySync),
    }
    settings = Settings(service_address="127.0.0.1:0")
    started: list[Service] = []
    client = Client(blocks["registry"])
    try:
        for svc in services:
            svc.use(settings=settings, **blocks)
            await svc.start()
            started.append(svc)
        yield ServiceTestClient(services[0], client)
    finally:
        await client.close()
        for svc in reversed(started):
            await svc.stop(grace=1.0)
        for block in reversed(made):
            await block.close()


async def start_server(
    data_dir: Path, *, gateway: bool = True, runtime: bool = False, auth: bool = True
) -> MicroServer:
    """A started :class:`MicroServer` on free loopback ports, state in ``data_dir``.
    Stop it with ``await server.stop()``. With auth on (the default, as in production), call
    it through :func:`admin_client`; ``auth=False`` is for tests of other parts only."""
    server = MicroServer(
        ServerOptions(
            address="127.0.0.1:0",
            gateway="127.0.0.1:0" if gateway else None,
            data_dir=data_dir,
            runtime=runtime,
            auth=auth,
        )
    )
    await server.start()
    return server


async def admin_header(server: MicroServer) -> str:
    """An ``authorization`` value of the server's ``admin`` account (valid 15 minutes)."""
    if server.auth is None:
        raise RuntimeError("this server runs without auth")
    tokens = await server.auth.issue(await server.auth.get_account("admin"))
    return f"Bearer {tokens.access_token}"


@asynccontextmanager
async def local_admin_client(address: str, data_dir: Path) -> AsyncIterator[Client]:
    """A client of the server at ``address`` calling with the local admin credential that
    server keeps in ``data_dir`` (for a server running in another process)."""
    from ..auth.rpc import RpcAuth
    from ..auth.session import read_local_credential
    from ..registry.rpc import RpcRegistry

    credential = read_local_credential(data_dir)
    if credential is None:
        raise RuntimeError(f"no local credential in {data_dir}")
    header: list[str | None] = [None]
    registry = RpcRegistry(address, credentials=lambda: header[0])
    client = Client(registry, credentials=lambda: header[0])
    try:
        tokens = await RpcAuth(address, client=client).exchange(credential.api_key)
        header[0] = f"Bearer {tokens.access_token}"
        yield client
    finally:
        await client.close()
        await registry.close()


@asynccontextmanager
async def admin_client(server: MicroServer) -> AsyncIterator[Client]:
    """A client of ``server`` calling as its ``admin`` account (anonymous without auth)."""
    from ..registry.rpc import RpcRegistry

    header = await admin_header(server) if server.auth is not None else None
    registry = RpcRegistry(server.address, credentials=lambda: header)
    client = Client(registry, credentials=lambda: header)
    try:
        yield client
    finally:
        await client.close()
        await registry.close()


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> None:
    """Wait until ``condition()`` (sync or async) is true; ``AssertionError`` after
    ``timeout`` seconds. For tests of things that happen in the background."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(interval)
    raise AssertionError(f"{message} not met within {timeout} s")
