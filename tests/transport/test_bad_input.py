"""Bad input on raw sockets: the offending connection gets a clear answer or is closed, and
the server goes on serving everyone else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest
from transport_support import (
    SERVICE,
    Empty,
    Hello,
    Num,
    Probe,
    RawConnection,
    RawFactory,
    Sleep,
    assert_serving,
    error_of,
    request,
    within,
)

from micro import Service
from micro.transport.client import ConnectionLost, connect
from micro.transport.frames import DEFAULT_MAX_FRAME, PREFACE, Frame, Kind, encode_frame


def framed(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def oversized_request(call_id: int, size: int = DEFAULT_MAX_FRAME + 1) -> bytes:
    """A well-formed REQUEST frame whose payload is ``size`` bytes or a little more."""
    out = bytearray()
    encode_frame(request(call_id, "Call", b"\xc4" + b"x" * size), out)
    return bytes(out)


async def connections_of(service: Service, count: int) -> None:
    """Wait until the server holds ``count`` connections."""
    assert service.server is not None
    for _ in range(500):
        if len(service.server.connections) == count:
            return
        await asyncio.sleep(0.01)
    assert len(service.server.connections) == count


async def test_http_request_gets_a_plain_400_and_the_connection_closes(
    raw: RawFactory, service: Service
) -> None:
    conn = await raw(preface=False)
    await conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    reply = await conn.read_to_eof()
    assert reply.startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert b"micro RPC protocol" in reply
    await assert_serving(service)


@pytest.mark.parametrize("preface", [b"MCR2", b"mcr1", b"\x00\x00\x00\x10", b"M\x00"])
async def test_wrong_preface_is_refused(
    raw: RawFactory, service: Service, preface: bytes
) -> None:
    conn = await raw(preface=False)
    await conn.send(preface)
    assert (await conn.read_to_eof()).startswith(b"HTTP/1.0 400")
    await assert_serving(service)


async def test_preface_and_frames_may_arrive_byte_by_byte(raw: RawFactory) -> None:
    conn = await raw(preface=False)
    out = bytearray(PREFACE)
    encode_frame(request(1, "Call", Hello("slowly")), out)
    for i in range(len(out)):
        await conn.send(out[i : i + 1])
    frame = await conn.read_frame()
    assert msgspec.msgpack.decode(frame.body) == {"message": "Hello slowly"}


@pytest.mark.parametrize(
    "garbage",
    [
        framed(b"\xc1\xc1\xc1\xc1"),  # 0xc1 is never valid msgpack
        framed(b""),  # a zero-length frame
        framed(msgspec.msgpack.encode({"kind": 1, "id": 1})),  # msgpack, but not a frame
        framed(msgspec.msgpack.encode([1, "one"])),  # a frame with a string id
        b"\xff" * 64,  # 4 GiB announced, no frame array behind it
        bytes(range(256)) * 300,  # announces 66051 bytes (sent in full) that are not msgpack
    ],
    ids=["invalid-msgpack", "empty", "map", "string-id", "ff-bytes", "byte-ramp"],
)
async def test_garbage_after_the_preface_closes_the_connection(
    raw: RawFactory, service: Service, garbage: bytes
) -> None:
    conn = await raw()
    await conn.send(garbage)
    assert await conn.read_to_eof() == b""  # closed without a reply
    await connections_of(service, 0)
    await assert_serving(service)


async def test_garbage_on_one_connection_does_not_disturb_calls_on_another(
    raw: RawFactory, probe: Probe
) -> None:
    good, bad = await raw(), await raw()
    await good.send_frames(request(1, "Slow", Sleep(0.2)))
    await probe.wait_started("slow")
    await bad.send(framed(b"\xc1"))
    assert await bad.read_to_eof() == b""
    frame = await good.read_frame()
    assert (frame.kind, frame.id) == (Kind.RESPONSE, 1)


async def test_oversized_frame_is_refused_and_skipped_on_a_connection_that_survives(
    raw: RawFactory, service: Service
) -> None:
    conn = await raw()
    big = oversized_request(41)
    # The refusal comes as soon as the frame's head is seen, before its payload is sent:
    # the server skips the payload instead of buffering it.
    await conn.send(big[: 64 * 1024])
    frame = await conn.read_frame()
    err = error_of(frame)
    assert (frame.id, err.code, err.status) == (41, "too_large", 413)
    assert f"limit of {DEFAULT_MAX_FRAME} bytes" in err.detail
    assert service.server is not None
    (server_side,) = service.server.connections
    assert server_side._parser.buffered < 1024

    await conn.send(big[64 * 1024 :])
    await conn.send_frames(request(42, "Call", Hello("same connection")))
    frame = await conn.read_frame()
    assert (frame.kind, frame.id) == (Kind.RESPONSE, 42)
    assert msgspec.msgpack.decode(frame.body) == {"message": "Hello same connection"}


async def test_oversized_frame_between_normal_frames_spoils_only_its_call(
    raw: RawFactory,
) -> None:
    # Replies to different calls may come in any order (docs/protocol.md); what matters is
    # that the calls before and after the oversized frame are answered normally.
    conn = await raw()
    out = bytearray()
    encode_frame(request(1, "Call", Hello("before")), out)
    out += oversized_request(2)
    encode_frame(request(3, "Call", Hello("after")), out)
    await conn.send(bytes(out))
    frames = [await conn.read_frame() for _ in range(3)]
    assert sorted((f.id, f.kind) for f in frames) == [
        (1, Kind.RESPONSE), (2, Kind.ERROR), (3, Kind.RESPONSE),
    ]


async def test_oversized_stream_message_ends_the_call_with_one_error(
    raw: RawFactory, probe: Probe
) -> None:
    conn = await raw()
    big = bytearray()
    encode_frame(Frame(Kind.MESSAGE, 7, b"\xc4" + b"n" * DEFAULT_MAX_FRAME), big)
    out = bytearray()
    encode_frame(Frame(Kind.REQUEST, 7, service=SERVICE, endpoint="Echo.Sum"), out)
    encode_frame(Frame(Kind.MESSAGE, 7, msgspec.msgpack.encode(Num(1))), out)
    await conn.send(bytes(out + big))
    frame = await conn.read_frame()
    assert (frame.id, error_of(frame).code) == (7, "too_large")

    # The call is over: nothing more is sent for id 7, and id 7 may be used again.
    await conn.send_frames(Frame(Kind.END, 7), Frame(Kind.PING, 8), request(7, "Call", Hello("x")))
    assert [(f.kind, f.id) for f in (await conn.read_frame(), await conn.read_frame())] == [
        (Kind.PONG, 8), (Kind.RESPONSE, 7),
    ]


async def test_truncated_frame_then_disconnect(raw: RawFactory, service: Service) -> None:
    conn = await raw()
    out = bytearray()
    encode_frame(request(1, "Call", Hello("cut short")), out)
    await conn.send(bytes(out[: len(out) // 2]))
    await connections_of(service, 1)
    await conn.close()
    await connections_of(service, 0)
    await assert_serving(service)


async def test_client_disconnecting_mid_call_cancels_the_handler(
    raw: RawFactory, service: Service, probe: Probe
) -> None:
    other = await raw()
    await other.send_frames(request(1, "Slow", Sleep(0.3, "other")))
    leaving = await raw()
    await leaving.send_frames(request(1, "Slow", Sleep(30, "leaving")))
    await probe.wait_started("leaving")
    await probe.wait_started("other")

    await leaving.close()

    await probe.wait_exited("leaving")
    assert probe.cancelled == {"leaving"}
    frame = await other.read_frame()  # the other connection's call completes normally
    assert (frame.kind, frame.id) == (Kind.RESPONSE, 1)
    await assert_serving(service)


async def test_disconnect_mid_server_stream_closes_the_generator(
    raw: RawFactory, service: Service, probe: Probe
) -> None:
    conn = await raw()
    await conn.send_frames(request(1, "Forever", Empty()))
    assert (await conn.read_frame()).kind == Kind.MESSAGE
    await conn.close()
    await probe.wait_exited("forever")
    await assert_serving(service)


async def test_invalid_request_body_inside_a_valid_frame_is_a_400_not_a_disconnect(
    raw: RawFactory,
) -> None:
    conn = await raw()
    await conn.send_frames(request(1, "Call", b"\xc1\xc1"), request(2, "Call", Hello("ok")))
    first, second = await conn.read_frame(), await conn.read_frame()
    assert (first.id, error_of(first).status) == (1, 400)
    assert (second.kind, second.id) == (Kind.RESPONSE, 2)


async def test_unknown_codec_is_a_400(raw: RawFactory) -> None:
    conn = await raw()
    await conn.send_frames(request(1, "Call", Hello("x"), codec=9))
    frame = await conn.read_frame()
    assert (error_of(frame).status, error_of(frame).detail) == (400, "unknown codec 9")




# -- the client side: a misbehaving server ---------------------------------------------------


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[[Callable[[Frame], bytes]], Awaitable[str]]]:
    """Start a fake micro server that answers each request frame with ``answer(frame)``."""
    servers: list[asyncio.Server] = []

    async def start(answer: Callable[[Frame], bytes]) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert await reader.readexactly(4) == PREFACE
            conn = RawConnection(reader, writer)
            try:
                while True:
                    writer.write(answer(await conn.read_frame()))
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        host, port = server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    yield start
    for server in servers:
        server.close()


async def test_client_skips_an_oversized_reply_and_keeps_the_connection(
    fake_server: Callable[[Callable[[Frame], bytes]], Awaitable[str]],
) -> None:
    def answer(frame: Frame) -> bytes:
        out = bytearray()
        encode_frame(Frame(Kind.RESPONSE, frame.id, frame.body * 1000), out)
        return bytes(out)

    conn = await within(connect(await fake_server(answer), max_frame=1024))
    try:
        big = await within(conn.request("svc", "S.Call", b"\xa3abc", 0, None, 5.0)[1])
        small = await within(conn.request("svc", "S.Call", b"\xc0", 0, None, 5.0)[1])
    finally:
        conn.close()
    assert big.error is not None and big.error.code == "too_large"
    assert (small.kind, small.body) == (Kind.RESPONSE, b"\xc0" * 1000)


async def test_client_closes_on_garbage_from_the_server_and_fails_its_calls(
    fake_server: Callable[[Callable[[Frame], bytes]], Awaitable[str]],
) -> None:
    conn = await within(connect(await fake_server(lambda frame: framed(b"\xc1"))))
    with pytest.raises(ConnectionLost):
        await within(conn.request("svc", "S.Call", b"\xc0", 0, None, 5.0)[1])
    assert conn.closed
