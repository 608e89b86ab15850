"""Handlers, messages and raw-socket helpers shared by the transport tests.

Every wait in these tests is bounded (``WAIT`` seconds), so a regression fails instead of
hanging the run.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from micro import Client, Context, MicroError, Service, bad_request, conflict, current_context
from micro.transport.frames import Frame, Kind, encode_frame

T = TypeVar("T")

WAIT = 5.0
SERVICE = "echo"
CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="nobody")


async def within(aw: Awaitable[T], seconds: float = WAIT) -> T:
    """Await ``aw``, failing the test instead of hanging when it takes too long."""
    return await asyncio.wait_for(aw, seconds)


# -- messages ------------------------------------------------------------------------------


class Hello(msgspec.Struct):
    name: str


class Greeting(msgspec.Struct):
    message: str


class Sleep(msgspec.Struct):
    seconds: float
    tag: str = ""


class Empty(msgspec.Struct):
    pass


class Seen(msgspec.Struct):
    """What a handler saw of its context."""

    remaining: float | None
    metadata: dict[str, str]


class Failure(msgspec.Struct):
    kind: str  # "micro" | "plain"


class Count(msgspec.Struct):
    n: int
    fail_at: int = -1


class Num(msgspec.Struct):
    value: int


class Total(msgspec.Struct):
    total: int
    count: int


# -- handlers ------------------------------------------------------------------------------


@dataclass
class Probe:
    """What the handlers report back to the test: started, cancelled, exited."""

    started: dict[str, asyncio.Event] = field(default_factory=dict)
    exited: dict[str, asyncio.Event] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    contexts: list[Context | None] = field(default_factory=list)

    def event(self, table: dict[str, asyncio.Event], key: str) -> asyncio.Event:
        return table.setdefault(key, asyncio.Event())

    async def wait_started(self, key: str) -> None:
        await within(self.event(self.started, key).wait())

    async def wait_exited(self, key: str) -> None:
        await within(self.event(self.exited, key).wait())


class Echo:
    """Every endpoint shape, plus slow and failing ones."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def call(self, ctx: Context, req: Hello) -> Greeting:
        return Greeting(f"Hello {req.name}")

    async def later(self, ctx: Context, req: Hello) -> Greeting:
        """Answers after suspending once (runs in a Task, not eagerly)."""
        await asyncio.sleep(0)
        return Greeting(f"Later {req.name}")

    async def slow(self, ctx: Context, req: Sleep) -> Greeting:
        key = req.tag or "slow"
        self.probe.event(self.probe.started, key).set()
        try:
            await asyncio.sleep(req.seconds)
        except asyncio.CancelledError:
            self.probe.cancelled.add(key)
            raise
        finally:
            self.probe.event(self.probe.exited, key).set()
        return Greeting(f"slept {req.seconds}")

    async def inspect(self, ctx: Context, req: Empty) -> Seen:
        self.probe.contexts.append(current_context())
        return Seen(ctx.remaining(), dict(ctx.metadata))

    async def fail(self, ctx: Context, req: Failure) -> Greeting:
        if req.kind == "micro":
            raise conflict("echo-custom", "version 3 is not version 4")
        raise ValueError("something broke")

    async def remember(self, ctx: Context, req: Hello) -> Greeting:
        """Sets a context variable before any await; answers what it found there."""
        found = CALLER.get()
        CALLER.set(req.name)
        return Greeting(found)

    async def cancelled_now(self, ctx: Context, req: Empty) -> Empty:
        """Raises CancelledError without suspending (awaits an already-cancelled future)."""
        return await _cancelled_future()

    async def cancelled_later(self, ctx: Context, req: Empty) -> Empty:
        """Raises CancelledError itself, after suspending once: nobody cancelled it."""
        await asyncio.sleep(0)
        return await _cancelled_future()

    async def cancelled_mid_stream(self, ctx: Context, req: Empty) -> AsyncIterator[Num]:
        yield Num(0)
        await _cancelled_future()

    async def bounded(self, ctx: Context, req: Empty) -> Empty:
        """Uses asyncio.timeout before its first suspension, as handlers commonly do."""
        async with asyncio.timeout(ctx.remaining()):
            await asyncio.sleep(0)
        return Empty()

    async def count(self, ctx: Context, req: Count) -> AsyncIterator[Num]:
        for i in range(req.n):
            if i == req.fail_at:
                raise bad_request(SERVICE, f"refusing {i}")
            yield Num(i)

    async def forever(self, ctx: Context, req: Empty) -> AsyncIterator[Num]:
        i = 0
        self.probe.event(self.probe.started, "forever").set()
        try:
            while True:
                yield Num(i)
                i += 1
                await asyncio.sleep(0.001)
        finally:
            self.probe.event(self.probe.exited, "forever").set()

    async def sum(self, ctx: Context, nums: AsyncIterator[Num]) -> Total:
        total = count = 0
        async for num in nums:
            if num.value < 0:
                raise bad_request(SERVICE, f"negative value {num.value} after {count} values")
            total += num.value
            count += 1
        return Total(total, count)

    async def chat(self, ctx: Context, hellos: AsyncIterator[Hello]) -> AsyncIterator[Greeting]:
        async for hello in hellos:
            if hello.name == "boom":
                raise conflict(SERVICE, "chat exploded")
            yield Greeting(f"Hi {hello.name}")


def _cancelled_future() -> asyncio.Future[Empty]:
    fut: asyncio.Future[Empty] = asyncio.get_running_loop().create_future()
    fut.cancel()
    return fut


class Front:
    """Calls the echo service while handling a call: deadlines and metadata must follow."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def relay(self, ctx: Context, req: Empty) -> Seen:
        return await self.client.call(SERVICE, "Echo.Inspect", Empty(), response_type=Seen)

    async def relay_slow(self, ctx: Context, req: Sleep) -> Greeting:
        return await self.client.call(SERVICE, "Echo.Slow", req, response_type=Greeting)


# -- raw sockets ---------------------------------------------------------------------------


class RawConnection:
    """A bare TCP connection that speaks (or deliberately fails to speak) the protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await within(self.writer.drain())

    async def send_frames(self, *frames: Frame) -> None:
        out = bytearray()
        for frame in frames:
            encode_frame(frame, out)
        await self.send(bytes(out))

    async def read_frame(self) -> Frame:
        header = await within(self.reader.readexactly(4))
        body = await within(self.reader.readexactly(int.from_bytes(header, "big")))
        return msgspec.msgpack.decode(body, type=Frame)

    async def read_to_eof(self) -> bytes:
        """Everything until the server closes; an abort (RST) counts as closed too."""
        try:
            return await within(self.reader.read())
        except ConnectionResetError:
            return b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await within(self.writer.wait_closed())
        except (ConnectionResetError, BrokenPipeError):
            pass


class RecordingTransport(asyncio.Transport):
    """A stand-in socket for driving a connection by hand: records writes and pauses."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.pauses = 0
        self.writes: list[bytes] = []

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default


RawFactory = Callable[..., Awaitable[RawConnection]]
"""The ``raw`` fixture: ``await raw()`` opens a connection (``preface=False``: without MCR1)."""


def request(call_id: int, endpoint: str, message: Any, **fields: Any) -> Frame:
    """A REQUEST frame for ``Echo.<endpoint>`` with a msgpack body."""
    body = msgspec.msgpack.encode(message) if not isinstance(message, bytes) else message
    return Frame(
        Kind.REQUEST, call_id, body, service=SERVICE, endpoint=f"Echo.{endpoint}", **fields
    )


def error_of(frame: Frame) -> MicroError:
    """The error an ERROR frame carries."""
    assert frame.kind == Kind.ERROR, frame
    assert frame.error is not None
    return MicroError.from_wire(frame.error)


async def assert_serving(service: Service, name: str = "still here") -> None:
    """A normal call on a fresh connection succeeds: the server survived the test."""
    async with Client(timeout=WAIT) as fresh:
        reply = await fresh.call(
            SERVICE, "Echo.Call", Hello(name), response_type=Greeting, address=service.address
        )
    assert reply == Greeting(f"Hello {name}")
