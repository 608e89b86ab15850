"""A reconnecting aetcd client shared by the etcd backends: errors become micro errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aetcd  # type: ignore[import-untyped]
import aetcd.exceptions  # type: ignore[import-untyped]

from ..errors import MicroError, bad_request, internal, timeout, unavailable

__all__ = ["EtcdConnection", "EtcdSettings"]

log = logging.getLogger("micro.etcd")

T = TypeVar("T")


@dataclass(frozen=True)
class EtcdSettings:
    """Where etcd is: ``endpoints`` (``host:port``, an ``http://`` scheme is accepted and
    dropped), the key ``prefix`` and the per-call ``timeout`` in seconds."""

    endpoints: tuple[str, ...]
    prefix: str
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise bad_request("etcd", "endpoints: at least one host:port is required")
        for endpoint in self.endpoints:
            host, port = _split(endpoint)
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise bad_request("etcd", f"endpoints: {endpoint!r} is not host:port")
        if not self.prefix.startswith("/") or not self.prefix.endswith("/"):
            raise bad_request("etcd", f"prefix must start and end with '/', got {self.prefix!r}")
        if self.timeout <= 0:
            raise bad_request("etcd", f"timeout must be positive, got {self.timeout}")


def _split(endpoint: str) -> tuple[str, str]:
    bare = endpoint.removeprefix("http://")
    host, _, port = bare.rpartition(":")
    return host, port


class EtcdConnection:
    """One aetcd client at a time. A call that fails for connection reasons drops the client
    (the next call connects again, to the next endpoint) and raises ``unavailable``."""

    def __init__(self, settings: EtcdSettings, service: str) -> None:
        self.settings = settings
        self._service = service
        self._client: Any = None
        self._index = 0
        self._lock = asyncio.Lock()

    @property
    def endpoint(self) -> str:
        """The endpoint in use (or tried next)."""
        return self.settings.endpoints[self._index]

    async def client(self) -> Any:
        """The connected aetcd client, connecting first if needed."""
        async with self._lock:
            if self._client is None:
                host, port = _split(self.endpoint)
                client = aetcd.Client(host, int(port), timeout=self.settings.timeout)
                await self.call_raw(client.connect)
                self._client = client
            return self._client

    async def drop(self, client: Any) -> None:
        """Forget ``client`` (if still current) and move to the next endpoint."""
        if client is None or client is not self._client:
            return
        self._client = None
        self._index = (self._index + 1) % len(self.settings.endpoints)
        try:
            await asyncio.wait_for(client.close(), self.settings.timeout)
        except Exception as exc:  # a broken connection may not close cleanly: it is dropped
            log.debug("etcd: closing a dropped connection failed (%s)", exc)

    async def call_raw(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` converting aetcd errors (no reconnect bookkeeping)."""
        try:
            return await asyncio.wait_for(fn(), self.settings.timeout)
        except MicroError:
            raise
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # grpc cancels the calls in flight when another task closes the broken channel
            raise unavailable(self._service, f"etcd {self.endpoint}: connection closed") from exc
        except (TimeoutError, aetcd.exceptions.ConnectionTimeoutError) as exc:
            raise timeout(self._service, f"etcd {self.endpoint}: no answer in time") from exc
        except (aetcd.exceptions.ConnectionFailedError, OSError) as exc:
            raise unavailable(self._service, f"etcd {self.endpoint}: {exc}") from exc
        except aetcd.exceptions.ClientError as exc:
            raise internal(self._service, f"etcd {self.endpoint}: {exc!r}") from exc

    async def call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Await ``fn(client)``; on a connection failure drop the client and raise."""
        client = await self.client()
        try:
            return await self.call_raw(lambda: fn(client))
        except MicroError as exc:
            if exc.code in ("unavailable", "timeout"):
                await self.drop(client)
            raise

    async def close(self) -> None:
        """Close the client."""
        await self.drop(self._client)
