"""Unary calls over real sockets: multiplexing, pipelining, codecs, errors, PING."""

from __future__ import annotations

import asyncio
import json
import time

import msgspec
import pytest
from transport_support import (
    SERVICE,
    WAIT,
    Echo,
    Empty,
    Failure,
    Greeting,
    Hello,
    Probe,
    RawFactory,
    RecordingTransport,
    Sleep,
    error_of,
    request,
    within,
)

from micro import Client, MicroError, Service
from micro.registry.memory import MemoryRegistry
from micro.transport.frames import PREFACE, Codec, Frame, FrameParser, Kind, encode_frame
from micro.transport.server import ServerConnection


async def test_unary_call_round_trip(client: Client) -> None:
    reply = await client.call(SERVICE, "Echo.Call", Hello("Alice"), response_type=Greeting)
    assert reply == Greeting("Hello Alice")


async def test_many_concurrent_calls_share_one_connection(
    client: Client, service: Service
) -> None:
    names = [f"caller-{i}" for i in range(300)]
    endpoints = ["Echo.Call", "Echo.Later"]  # answered eagerly, and from a Task

    replies = await within(
        asyncio.gather(
            *(
                client.call(SERVICE, endpoints[i % 2], Hello(name), response_type=Greeting)
                for i, name in enumerate(names)
            )
        )
    )

    expected = [
        Greeting(f"Hello {name}" if i % 2 == 0 else f"Later {name}")
        for i, name in enumerate(names)
    ]
    assert replies == expected
    assert len(client.pool.conns) == 1
    assert service.server is not None and len(service.server.connections) == 1


async def test_pipelined_requests_are_answered_by_id_in_completion_order(raw: RawFactory) -> None:
    conn = await raw()
    # Slow calls first, so their replies come last: ids, not order, match replies to calls.
    frames = [request(1000 + i, "Slow", Sleep(0.05 + i * 0.01, f"s{i}")) for i in range(5)]
    frames += [request(i, "Call", Hello(f"n{i}")) for i in range(1, 41)]
    await conn.send_frames(*frames)

    replies = {}
    order = []
    for _ in range(len(frames)):
        frame = await conn.read_frame()
        assert frame.kind == Kind.RESPONSE
        replies[frame.id] = msgspec.msgpack.decode(frame.body)
        order.append(frame.id)

    assert replies == {
        **{1000 + i: {"message": f"slept {0.05 + i * 0.01}"} for i in range(5)},
        **{i: {"message": f"Hello n{i}"} for i in range(1, 41)},
    }
    assert order[:40] == list(range(1, 41))  # the quick ones did not wait for the slow ones


async def test_replies_to_one_read_are_coalesced_into_one_write(service: Service) -> None:
    """Replies to the calls of one chunk of input leave in one write."""
    assert service.server is not None
    conn = ServerConnection(service.server)
    transport = RecordingTransport()
    conn.connection_made(transport)
    data = bytearray(PREFACE)
    for i in range(1, 21):
        encode_frame(request(i, "Call", Hello(f"n{i}")), data)
    conn.data_received(bytes(data))
    for _ in range(3):  # on Python 3.11 the handlers' Tasks run on the next loop turn
        await asyncio.sleep(0)

    assert len(transport.writes) == 1
    replies = FrameParser().feed(transport.writes[0])
    assert [f.id for f in replies] == list(range(1, 21))
    assert all(f.kind == Kind.RESPONSE for f in replies)
    conn.connection_lost(None)


async def test_context_variables_set_by_one_call_do_not_leak_into_the_next(
    raw: RawFactory,
) -> None:
    conn = await raw()
    await conn.send_frames(request(1, "Remember", Hello("alice")))
    first = await conn.read_frame()
    await conn.send_frames(request(2, "Remember", Hello("bob")))
    second = await conn.read_frame()
    assert msgspec.msgpack.decode(first.body) == {"message": "nobody"}
    assert msgspec.msgpack.decode(second.body) == {"message": "nobody"}  # not "alice"


async def test_json_codec_request_gets_a_json_response(client: Client) -> None:
    body = await client.call_raw(SERVICE, "Echo.Call", b'{"name": "Jo"}', codec=Codec.JSON)
    assert json.loads(body) == {"message": "Hello Jo"}


async def test_json_codec_on_the_wire_marks_the_response_codec(raw: RawFactory) -> None:
    conn = await raw()
    await conn.send_frames(request(5, "Call", b'{"name": "Jo"}', codec=Codec.JSON))
    frame = await conn.read_frame()
    assert (frame.kind, frame.id, frame.codec) == (Kind.RESPONSE, 5, Codec.JSON)
    assert json.loads(frame.body) == {"message": "Hello Jo"}


async def test_micro_error_from_a_handler_arrives_intact(client: Client) -> None:
    with pytest.raises(MicroError) as info:
        await client.call(SERVICE, "Echo.Fail", Failure("micro"))
    err = info.value
    assert (err.id, err.code, err.detail, err.status) == (
        "echo-custom", "conflict", "version 3 is not version 4", 409,
    )


async def test_plain_exception_becomes_internal_500(client: Client) -> None:
    with pytest.raises(MicroError) as info:
        await client.call(SERVICE, "Echo.Fail", Failure("plain"))
    err = info.value
    assert (err.code, err.status, err.id) == ("internal", 500, "Echo.Fail")
    assert "ValueError: something broke" in err.detail


async def test_internal_error_on_the_wire_relies_on_the_error_map_defaults(
    raw: RawFactory,
) -> None:
    conn = await raw()
    await conn.send_frames(request(3, "Fail", Failure("plain")))
    frame = await conn.read_frame()
    payload = msgspec.msgpack.encode(frame)
    # code "internal" and status 500 are the defaults of the error map, so they are omitted
    assert msgspec.msgpack.decode(payload)[4] == {
        "id": "Echo.Fail", "detail": "ValueError: something broke",
    }
    assert (error_of(frame).code, error_of(frame).status) == ("internal", 500)


async def test_cancelled_error_raised_without_suspending_fails_only_that_call(
    raw: RawFactory,
) -> None:
    """It must not escape the eager step into data_received, which would kill the
    connection and every other call multiplexed on it."""
    conn = await raw()
    await conn.send_frames(request(1, "CancelledNow", Empty()), request(2, "Call", Hello("n")))
    first, second = await conn.read_frame(), await conn.read_frame()
    assert (first.id, error_of(first).code, error_of(first).status) == (1, "internal", 500)
    assert (second.kind, second.id) == (Kind.RESPONSE, 2)


async def test_cancelled_error_raised_by_a_suspended_handler_is_answered(
    client: Client,
) -> None:
    """Nobody cancelled the call, so the caller must get an answer, not wait for its
    deadline."""
    started = time.monotonic()
    with pytest.raises(MicroError) as info:
        await client.call(SERVICE, "Echo.CancelledLater", Empty(), timeout=WAIT)
    assert (info.value.code, info.value.status) == ("internal", 500)
    assert time.monotonic() - started < WAIT / 2


async def test_cancelled_error_raised_mid_stream_ends_the_stream_with_an_error(
    client: Client,
) -> None:
    got = []
    with pytest.raises(MicroError) as info:
        async for num in client.stream(SERVICE, "Echo.CancelledMidStream", Empty(), timeout=WAIT):
            got.append(num)
    assert got == [{"value": 0}]
    assert info.value.status == 500


async def test_handler_may_use_asyncio_timeout_before_its_first_await(client: Client) -> None:
    assert await client.call(SERVICE, "Echo.Bounded", Empty()) == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": 42}, "$.name"), ({}, "name"), ({"name": ["x"]}, "$.name")],
    ids=["wrong-type", "missing", "list"],
)
async def test_validation_error_is_400_naming_the_field(
    client: Client, body: dict[str, object], field: str
) -> None:
    with pytest.raises(MicroError) as info:
        await client.call(SERVICE, "Echo.Call", body)
    assert (info.value.code, info.value.status) == ("bad_request", 400)
    assert field in info.value.detail


async def test_malformed_body_is_400(client: Client) -> None:
    with pytest.raises(MicroError) as info:
        await client.call_raw(SERVICE, "Echo.Call", b"\xc1")
    assert (info.value.code, info.value.status) == ("bad_request", 400)
    assert "malformed" in info.value.detail


async def test_unknown_endpoint_is_404(client: Client) -> None:
    with pytest.raises(MicroError) as info:
        await client.call(SERVICE, "Echo.Nope", {})
    assert (info.value.code, info.value.status) == ("not_found", 404)
    assert "Echo.Nope" in info.value.detail


async def test_unknown_service_at_the_server_is_404(client: Client, service: Service) -> None:
    with pytest.raises(MicroError) as info:
        await client.call("ghost", "Ghost.Call", {}, address=service.address)
    assert (info.value.code, info.value.status) == ("not_found", 404)
    assert "ghost" in info.value.detail


async def test_unknown_service_in_the_registry_is_404(client: Client) -> None:
    with pytest.raises(MicroError) as info:
        await client.call("ghost", "Ghost.Call", {})
    assert (info.value.code, info.value.status) == ("not_found", 404)


async def test_ping_is_answered_by_pong_with_the_same_id(raw: RawFactory) -> None:
    conn = await raw()
    await conn.send_frames(Frame(Kind.PING, 77), Frame(Kind.PING, 0))
    assert [(f.kind, f.id) for f in (await conn.read_frame(), await conn.read_frame())] == [
        (Kind.PONG, 77), (Kind.PONG, 0),
    ]


async def test_unexpected_frame_kind_is_an_error_for_that_id_only(raw: RawFactory) -> None:
    conn = await raw()
    await conn.send_frames(
        Frame(Kind.RESPONSE, 4, b"\xa1x"), Frame(99, 5), request(6, "Call", Hello("after"))
    )
    first, second, third = [await conn.read_frame() for _ in range(3)]
    assert (first.id, error_of(first).code) == (4, "bad_request")
    assert (second.id, error_of(second).code) == (5, "bad_request")
    assert (third.kind, third.id) == (Kind.RESPONSE, 6)


async def test_a_call_id_still_in_use_is_refused(raw: RawFactory) -> None:
    conn = await raw()
    await conn.send_frames(request(9, "Slow", Sleep(0.1)), request(9, "Call", Hello("dup")))
    refused = await conn.read_frame()
    assert refused.id == 9 and error_of(refused).code == "bad_request"
    assert "in use" in error_of(refused).detail
    answered = await conn.read_frame()
    assert (answered.kind, answered.id) == (Kind.RESPONSE, 9)
    assert msgspec.msgpack.decode(answered.body) == {"message": "slept 0.1"}


async def test_ids_may_be_reused_after_the_call_ended(raw: RawFactory) -> None:
    conn = await raw()
    for name in ("first", "second"):
        await conn.send_frames(request(1, "Call", Hello(name)))
        frame = await conn.read_frame()
        assert msgspec.msgpack.decode(frame.body) == {"message": f"Hello {name}"}


async def test_draining_server_refuses_with_503_and_the_client_retries_elsewhere(
    registry: MemoryRegistry, client: Client, service: Service
) -> None:
    other = Service(SERVICE, registry=registry, address="127.0.0.1:0")
    other.handler(Echo(Probe()))
    await other.start()
    try:
        assert service.server is not None
        service.server.draining = True

        with pytest.raises(MicroError) as info:
            await client.call(SERVICE, "Echo.Call", Hello("x"), address=service.address)
        assert (info.value.code, info.value.status) == ("draining", 503)

        # Through the registry, the refused calls go to the other node: none fails.
        for i in range(6):
            reply = await client.call(SERVICE, "Echo.Call", Hello(f"r{i}"), response_type=Greeting)
            assert reply == Greeting(f"Hello r{i}")
    finally:
        await other.stop(grace=1.0)
