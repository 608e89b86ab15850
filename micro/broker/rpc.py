"""The broker as a client of the ``broker`` service hosted by ``micro server``.

Each subscription is one ``Broker.Subscribe`` stream. A reader task moves what arrives into
a bounded local buffer (``buffer=``), so a slow consumer costs bounded memory here too:
:attr:`RpcSubscription.dropped` counts messages dropped locally plus those the server-side
subscription dropped. Closing the subscription cancels the stream, which ends the
server-side subscription; so does a lost connection.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..client import Client, Stream
from ..context import _current, current_context
from ..errors import MicroError, bad_request, internal, timeout, unavailable
from . import DEFAULT_BUFFER, Message
from .messages import PublishRequest, PublishResponse, SubscribeEvent, SubscribeRequest

__all__ = ["RpcBroker", "RpcSubscription"]

SERVICE = "broker"


class RpcSubscription:
    """A subscription served by the broker service, read through a bounded local buffer."""

    def __init__(
        self, owner: RpcBroker, stream: Stream, topic: str, group: str | None, buffer: int
    ) -> None:
        self._owner = owner
        self._stream = stream
        self.topic = topic
        self.group = group
        self.buffer = buffer
        self._items: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._ended = False
        self._error: MicroError | None = None
        self._local_dropped = 0
        self._remote_dropped = 0
        self._reader = asyncio.get_running_loop().create_task(
            self._read(), name=f"broker subscription {topic}"
        )

    @property
    def dropped(self) -> int:
        """Messages lost to a full buffer, here or on the server."""
        return self._local_dropped + self._remote_dropped

    @property
    def pending(self) -> int:
        """Messages waiting in the local buffer."""
        return len(self._items)

    async def _read(self) -> None:
        try:
            async for event in self._stream:
                self._remote_dropped = event.dropped
                message = event.message
                if message is None:
                    continue
                if len(self._items) >= self.buffer:
                    self._local_dropped += 1
                    continue
                self._items.append(message)
                self._wake()
        except MicroError as err:
            self._error = err
        except Exception as exc:  # a reply that does not decode: the server is not a broker
            self._error = internal(SERVICE, f"subscription stream failed: {exc}")
        finally:
            self._ended = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> RpcSubscription:
        return self

    async def __anext__(self) -> Message:
        """The next message. When the stream broke (server gone, connection lost), its error
        is raised once; after that, and after a clean end or :meth:`close`, iteration stops."""
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            if self._ended:
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    async def close(self) -> None:
        """Cancel the stream (ending the server-side subscription) and drop unread messages."""
        if self._closed:
            return
        self._closed = True
        self._items.clear()
        self._wake()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._stream.close()
        self._owner._subscriptions.discard(self)

    def __repr__(self) -> str:
        return (
            f"RpcSubscription(topic={self.topic!r}, group={self.group!r}, "
            f"pending={len(self._items)}, dropped={self.dropped}, closed={self._closed})"
        )


class RpcBroker:
    """Talks to the broker service at ``address`` (``host:port`` of ``micro server``).

    ``timeout`` bounds a publish and the wait for a subscription to go live; ``buffer`` is
    each subscription's local buffer. A subscription outlives the call that opened it: it
    carries the metadata of the call being handled (if any) but not its deadline.
    """

    def __init__(
        self,
        address: str,
        client: Client | None = None,
        *,
        timeout: float = 5.0,
        buffer: int = DEFAULT_BUFFER,
    ) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer}")
        self.address = address
        self._client = client or Client()
        self._owns_client = client is None
        self._timeout = timeout
        self.buffer = buffer
        self._subscriptions: set[RpcSubscription] = set()

    async def publish(self, topic: str, body: bytes, metadata: dict[str, str] | None = None) -> str:
        """Publish through the server; return the message id."""
        if isinstance(body, bytearray | memoryview):
            body = bytes(body)
        if not isinstance(body, bytes):
            raise bad_request(SERVICE, f"body must be bytes, not {type(body).__name__}")
        resp = await self._client.call(
            SERVICE,
            "Broker.Publish",
            PublishRequest(topic, body, metadata or {}),
            address=self.address,
            timeout=self._timeout,
            response_type=PublishResponse,
        )
        return resp.id

    async def subscribe(self, topic: str, group: str | None = None) -> RpcSubscription:
        """Open a subscription stream; return once the server has subscribed."""
        ctx = current_context()
        metadata = dict(ctx.metadata) if ctx is not None and ctx.metadata else None
        stream = self._client.stream(
            SERVICE,
            "Broker.Subscribe",
            SubscribeRequest(topic, group),
            address=self.address,
            response_type=SubscribeEvent,
            metadata=metadata,
        )
        token = _current.set(None)  # do not inherit the deadline of the call being handled
        try:
            await stream.open()
            await asyncio.wait_for(stream.receive(), self._timeout)
        except StopAsyncIteration:
            await stream.close()
            raise unavailable(SERVICE, "the subscription ended before it started") from None
        except TimeoutError:
            await stream.close()
            raise timeout(SERVICE, f"no subscription within {self._timeout} s") from None
        except BaseException:
            await stream.close()
            raise
        finally:
            _current.reset(token)
        sub = RpcSubscription(self, stream, topic, group, self.buffer)
        self._subscriptions.add(sub)
        return sub

    async def close(self) -> None:
        """Close every subscription made here, then the connection (when owned)."""
        for sub in list(self._subscriptions):
            await sub.close()
        if self._owns_client:
            await self._client.close()
