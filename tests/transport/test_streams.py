"""Streaming calls in all three shapes: server, client and bidirectional."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from transport_support import (
    SERVICE,
    WAIT,
    Count,
    Empty,
    Greeting,
    Hello,
    Num,
    Probe,
    RawFactory,
    RecordingTransport,
    Total,
    error_of,
    request,
    within,
)

from micro import Client, Context, MicroError
from micro.service.endpoint import endpoints_of
from micro.transport.frames import PREFACE, Frame, FrameParser, Kind, encode_frame
from micro.transport.server import Router, RpcServer, ServerConnection

# -- server streaming ----------------------------------------------------------------------


async def test_server_stream_delivers_every_message_in_order(client: Client) -> None:
    stream = client.stream(SERVICE, "Echo.Count", Count(50), response_type=Num, timeout=WAIT)
    got = [num.value async for num in stream]
    assert got == list(range(50))


async def test_server_stream_on_the_wire_is_messages_then_end(raw: RawFactory) -> None:
    conn = await raw()
    await conn.send_frames(request(3, "Count", Count(2)))
    frames = [await conn.read_frame() for _ in range(3)]
    assert [(f.kind, f.id) for f in frames] == [
        (Kind.MESSAGE, 3), (Kind.MESSAGE, 3), (Kind.END, 3),
    ]
    assert [msgspec.msgpack.decode(f.body) for f in frames[:2]] == [{"value": 0}, {"value": 1}]


async def test_server_stream_error_mid_stream_follows_the_messages_sent(
    client: Client,
) -> None:
    got = []
    with pytest.raises(MicroError) as info:
        async for num in client.stream(SERVICE, "Echo.Count", Count(10, fail_at=3), timeout=WAIT):
            got.append(num["value"])
    assert got == [0, 1, 2]
    assert (info.value.code, info.value.detail) == ("bad_request", "refusing 3")


async def test_server_stream_with_an_invalid_request_fails_before_any_message(
    client: Client,
) -> None:
    with pytest.raises(MicroError) as info:
        async for _ in client.stream(SERVICE, "Echo.Count", {"n": "many"}, timeout=WAIT):
            pass
    assert info.value.status == 400
    assert "$.n" in info.value.detail


async def test_closing_a_server_stream_early_closes_the_generator(
    client: Client, probe: Probe
) -> None:
    async with client.stream(
        SERVICE, "Echo.Forever", Empty(), response_type=Num, timeout=WAIT
    ) as stream:
        assert [await stream.receive() for _ in range(3)] == [Num(0), Num(1), Num(2)]
    await probe.wait_exited("forever")
    assert await client.call(SERVICE, "Echo.Call", Hello("after"), response_type=Greeting)


async def test_breaking_out_of_a_server_stream_closes_the_generator(
    client: Client, probe: Probe
) -> None:
    stream = client.stream(SERVICE, "Echo.Forever", Empty(), response_type=Num, timeout=WAIT)
    async for num in stream:
        if num.value == 5:
            break
    await probe.wait_exited("forever")


async def test_server_stream_timeout_ends_the_stream_and_the_generator(
    client: Client, probe: Probe
) -> None:
    count = 0
    with pytest.raises(MicroError) as info:
        async for _ in client.stream(SERVICE, "Echo.Forever", Empty(), timeout=0.2):
            count += 1
    assert info.value.code == "timeout"
    assert count > 0
    await probe.wait_exited("forever")


async def test_server_stream_deadline_is_enforced_by_the_server(
    raw: RawFactory, probe: Probe
) -> None:
    conn = await raw()
    await conn.send_frames(request(4, "Forever", Empty(), timeout=100))
    while (frame := await conn.read_frame()).kind == Kind.MESSAGE:
        pass
    assert (frame.id, error_of(frame).code) == (4, "timeout")
    await probe.wait_exited("forever")


# -- client streaming ----------------------------------------------------------------------


async def test_client_stream_gets_one_response(client: Client) -> None:
    stream = client.stream(SERVICE, "Echo.Sum", response_type=Total)
    for i in range(1, 101):
        await stream.send(Num(i))
    assert await within(stream.response()) == Total(5050, 100)


async def test_client_stream_on_the_wire(raw: RawFactory) -> None:
    conn = await raw()
    await conn.send_frames(
        Frame(Kind.REQUEST, 2, service=SERVICE, endpoint="Echo.Sum"),
        *(Frame(Kind.MESSAGE, 2, msgspec.msgpack.encode(Num(v))) for v in (4, 5, 6)),
        Frame(Kind.END, 2),
    )
    frame = await conn.read_frame()
    assert (frame.kind, frame.id) == (Kind.RESPONSE, 2)
    assert msgspec.msgpack.decode(frame.body) == {"total": 15, "count": 3}


async def test_client_stream_handler_error_mid_stream(client: Client) -> None:
    stream = client.stream(SERVICE, "Echo.Sum", response_type=Total)
    for value in (1, 2, -7):
        await stream.send(Num(value))
    with pytest.raises(MicroError) as info:
        await within(stream.response())
    assert info.value.code == "bad_request"
    assert info.value.detail == "negative value -7 after 2 values"


async def test_client_stream_invalid_message_is_400_naming_the_field(client: Client) -> None:
    stream = client.stream(SERVICE, "Echo.Sum")
    await stream.send(Num(1))
    await stream.send({"value": "two"})
    with pytest.raises(MicroError) as info:
        await within(stream.response())
    assert info.value.status == 400
    assert "$.value" in info.value.detail


async def test_client_stream_of_no_messages(client: Client) -> None:
    stream = client.stream(SERVICE, "Echo.Sum", response_type=Total)
    assert await within(stream.response()) == Total(0, 0)


# -- bidirectional -------------------------------------------------------------------------


async def test_bidi_replies_interleave_with_requests(client: Client) -> None:
    async with client.stream(SERVICE, "Echo.Chat", response_type=Greeting) as stream:
        for name in ("ann", "bob", "cy"):
            await stream.send(Hello(name))
            assert await within(stream.receive()) == Greeting(f"Hi {name}")
        await stream.close_send()
        with pytest.raises(StopAsyncIteration):
            await within(stream.receive())


async def test_bidi_error_mid_stream(client: Client) -> None:
    stream = client.stream(SERVICE, "Echo.Chat", response_type=Greeting)
    await stream.send(Hello("ann"))
    await stream.send(Hello("boom"))
    await stream.send(Hello("never answered"))
    assert await within(stream.receive()) == Greeting("Hi ann")
    with pytest.raises(MicroError) as info:
        await within(stream.receive())
    assert (info.value.code, info.value.status) == ("conflict", 409)


async def test_many_streams_multiplex_on_one_connection(client: Client) -> None:
    async def chat(i: int) -> list[Greeting]:
        async with client.stream(SERVICE, "Echo.Chat", response_type=Greeting) as stream:
            replies = []
            for j in range(5):
                await stream.send(Hello(f"{i}.{j}"))
                replies.append(await stream.receive())
            return replies

    results = await within(asyncio.gather(*(chat(i) for i in range(20))))
    assert results == [[Greeting(f"Hi {i}.{j}") for j in range(5)] for i in range(20)]
    assert len(client.pool.conns) == 1


# -- flow control --------------------------------------------------------------------------


class Gated:
    """Reads its client stream only once the gate opens."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate

    async def sum(self, ctx: Context, nums: AsyncIterator[Num]) -> Total:
        await self.gate.wait()
        values = [num.value async for num in nums]
        return Total(sum(values), len(values))


async def test_a_stream_nobody_reads_pauses_the_socket_until_it_is_read() -> None:
    gate = asyncio.Event()
    router = Router()
    router.add("gated", endpoints_of(Gated(gate)))
    conn = ServerConnection(RpcServer(router))
    transport = RecordingTransport()
    conn.connection_made(transport)
    data = bytearray(PREFACE)
    encode_frame(Frame(Kind.REQUEST, 1, service="gated", endpoint="Gated.Sum"), data)
    for _ in range(300):
        encode_frame(Frame(Kind.MESSAGE, 1, msgspec.msgpack.encode(Num(1))), data)
    encode_frame(Frame(Kind.END, 1), data)

    conn.data_received(bytes(data))
    assert transport.paused  # over 256 messages queued unread: stop reading the socket

    gate.set()
    for _ in range(500):
        if transport.written:
            break
        await asyncio.sleep(0.01)
    (reply,) = FrameParser().feed(bytes(transport.written))
    assert msgspec.msgpack.decode(reply.body, type=Total) == Total(300, 300)
    assert not transport.paused  # the handler caught up: reading resumed
    assert transport.pauses == 1
    conn.connection_lost(None)
