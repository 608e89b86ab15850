"""Config as a client of the ``config`` service hosted by ``micro server``."""

from __future__ import annotations

import asyncio
from typing import Any

from ..client import Client
from ..errors import MicroError, internal, unavailable
from . import Change
from ._paths import check_namespace, normalize, split_path
from ._watch import Watcher, size_of
from .messages import (
    DeleteRequest,
    Empty,
    GetRequest,
    GetResponse,
    SetRequest,
    WatchEvent,
    WatchRequest,
)

__all__ = ["RpcConfig", "RpcWatcher"]

SERVICE = "config"


class RpcConfig:
    """Talks to the config service at ``address`` (``host:port`` of ``micro server``).

    A watch opens its stream at once; every later call through this client waits (at most
    ``timeout``) until the server has subscribed it, so a write made after ``watch()`` here,
    or anywhere once such a call returned, is seen by the watcher. Close watchers with
    ``aclose()`` (:meth:`close` closes those still open); one left unread is ended once it
    falls :data:`~micro.config.WATCH_BUFFER` changes behind.
    """

    def __init__(self, address: str, client: Client | None = None, timeout: float = 5.0) -> None:
        self.address = address
        self._client = client or Client()
        self._owns_client = client is None
        self._timeout = timeout
        self._subscribing: set[asyncio.Future[None]] = set()
        self._watchers: set[RpcWatcher] = set()

    async def _settled(self) -> None:
        if self._subscribing:
            await asyncio.wait(list(self._subscribing), timeout=self._timeout)

    async def get(self, namespace: str, path: str = "", secrets: bool = False) -> Any:
        """A copy of the value at ``path`` (``None`` if absent)."""
        await self._settled()
        resp = await self._client.call(
            SERVICE,
            "Config.Get",
            GetRequest(path, namespace, secrets),
            address=self.address,
            timeout=self._timeout,
            response_type=GetResponse,
        )
        return resp.value

    async def set(self, namespace: str, path: str, value: Any, secret: bool = False) -> None:
        """Merge an object into ``path``, or replace it with any other value (checked here
        first, so what cannot be sent gets the same error as on the server)."""
        check_namespace(namespace)
        value = normalize(value, split_path(path))
        await self._settled()
        await self._client.call(
            SERVICE,
            "Config.Set",
            SetRequest(path, value, namespace, secret),
            address=self.address,
            timeout=self._timeout,
            response_type=Empty,
        )

    async def delete(self, namespace: str, path: str) -> None:
        """Remove the value at ``path``."""
        await self._settled()
        await self._client.call(
            SERVICE,
            "Config.Delete",
            DeleteRequest(path, namespace),
            address=self.address,
            timeout=self._timeout,
            response_type=Empty,
        )

    def watch(self, namespace: str, path: str = "") -> RpcWatcher:
        """Every change at or under ``path`` from now on, streamed from the server. Must be
        called with an event loop running."""
        check_namespace(namespace)
        split_path(path)
        return RpcWatcher(self, namespace, path)

    async def close(self) -> None:
        """Close open watchers and the connection to the server."""
        for watcher in list(self._watchers):
            await watcher.aclose()
        if self._owns_client:
            await self._client.close()


class RpcWatcher:
    """A watch stream; iterate it for :class:`~micro.config.Change` records. A task reads the
    stream as it arrives into a bounded queue: a reader that falls more than
    :data:`~micro.config.WATCH_BUFFER` changes behind is ended with ``unavailable``, as in
    process, instead of letting the client buffer grow."""

    def __init__(self, owner: RpcConfig, namespace: str, path: str) -> None:
        loop = asyncio.get_running_loop()
        self._owner = owner
        self._stream = owner._client.stream(
            SERVICE,
            "Config.Watch",
            WatchRequest(path, namespace),
            address=owner.address,
            response_type=WatchEvent,
        )
        self._queue = Watcher(split_path(path))
        self._ready: asyncio.Future[None] = loop.create_future()
        owner._subscribing.add(self._ready)
        self._ready.add_done_callback(owner._subscribing.discard)
        owner._watchers.add(self)
        self._pump = loop.create_task(self._read())

    async def _read(self) -> None:
        queue = self._queue
        try:
            await self._subscribe()
            self._ready.set_result(None)
            while not queue.closed:
                event: WatchEvent = await self._stream.receive()
                if event.change is not None:
                    queue.push(event.change, size_of(event.change))
        except StopAsyncIteration:
            queue.end()
        except MicroError as err:
            queue.fail(err)
        except Exception as exc:
            queue.fail(internal("config", f"the watch stream failed: {type(exc).__name__}: {exc}"))
        finally:
            if not self._ready.done():
                self._ready.set_result(None)
            self._owner._watchers.discard(self)
            await self._stream.close()

    async def _subscribe(self) -> None:
        try:
            first = await asyncio.wait_for(self._stream.receive(), self._owner._timeout)
        except StopAsyncIteration:
            raise unavailable("config", "the watch stream ended before it started") from None
        except TimeoutError:
            raise unavailable("config", "the server did not start the watch in time") from None
        if not first.ready:
            raise internal("config", "the watch stream did not start with its ready mark")

    def __aiter__(self) -> RpcWatcher:
        return self

    async def __anext__(self) -> Change:
        return await self._queue.__anext__()

    async def aclose(self) -> None:
        """Stop watching; a reader waiting for the next change gets the end."""
        await self._queue.aclose()
        self._pump.cancel()
        if not self._ready.done():
            self._ready.cancel()
        self._owner._watchers.discard(self)
        await self._stream.close()
