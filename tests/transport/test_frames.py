"""FrameParser and encode_frame: the byte level of the protocol, no sockets."""

from __future__ import annotations

import msgspec
import pytest

from micro.errors import not_found
from micro.transport.frames import (
    DEFAULT_MAX_FRAME,
    Frame,
    FrameParser,
    Kind,
    ProtocolViolation,
    encode_frame,
)


def encode(*frames: Frame) -> bytes:
    out = bytearray()
    for frame in frames:
        encode_frame(frame, out)
    return bytes(out)


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


REQUEST = Frame(
    Kind.REQUEST, 1, b"\x81\xa4name\xa5Alice", 0, None, "helloworld", "Helloworld.Call",
    {"trace-id": "abc"}, 5000,
)
RESPONSE = Frame(Kind.RESPONSE, 1, b"\x81\xa7message\xabHello Alice")
ERROR = Frame(Kind.ERROR, 2, error=not_found("helloworld", "no such thing").to_wire())


def test_encode_frame_prefixes_the_big_endian_payload_length() -> None:
    out = bytearray(b"already here")
    size = encode_frame(RESPONSE, out)
    assert out[:12] == b"already here"
    assert int.from_bytes(out[12:16], "big") == size == len(out) - 16
    assert msgspec.msgpack.decode(out[16:], type=Frame) == RESPONSE


def test_frame_is_a_msgpack_array_in_wire_order() -> None:
    payload = encode(REQUEST)[4:]
    assert msgspec.msgpack.decode(payload) == [
        1, 1, REQUEST.body, 0, None, "helloworld", "Helloworld.Call", {"trace-id": "abc"}, 5000,
    ]


def test_short_arrays_take_defaults_and_extra_trailing_elements_are_ignored() -> None:
    parser = FrameParser()
    short = msgspec.msgpack.encode([Kind.END, 9])
    longer = msgspec.msgpack.encode([Kind.PING, 4, b"", 0, None, "", "", None, 0, "future"])
    data = b"".join(len(p).to_bytes(4, "big") + p for p in (short, longer))
    assert parser.feed(data) == [Frame(Kind.END, 9), Frame(Kind.PING, 4)]


def test_error_frames_carry_the_error_map() -> None:
    (frame,) = FrameParser().feed(encode(ERROR))
    error = frame.error
    assert error is not None
    assert (error.id, error.code, error.detail, error.status) == (
        "helloworld", "not_found", "no such thing", 404,
    )


def test_several_frames_in_one_feed() -> None:
    parser = FrameParser()
    assert parser.feed(encode(REQUEST, RESPONSE, ERROR)) == [REQUEST, RESPONSE, ERROR]
    assert parser.buffered == 0


def test_frames_fed_one_byte_at_a_time() -> None:
    parser = FrameParser()
    data = encode(REQUEST, RESPONSE)
    got: list[Frame] = []
    for i in range(len(data)):
        got += parser.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert got in ([], [REQUEST])  # nothing appears before its last byte arrives
    assert got == [REQUEST, RESPONSE]
    assert parser.buffered == 0


def test_a_feed_can_end_a_frame_and_start_the_next() -> None:
    parser = FrameParser()
    first, second = encode(REQUEST), encode(RESPONSE)
    assert parser.feed(first + second[:3]) == [REQUEST]
    assert parser.buffered == 3
    assert parser.feed(second[3:]) == [RESPONSE]


@pytest.mark.parametrize("call_id", [5, 200, 70_000, 2**33])
def test_oversized_frame_is_reported_with_its_id_and_skipped(call_id: int) -> None:
    parser = FrameParser(max_frame=100)
    big = Frame(Kind.REQUEST, call_id, b"x" * 1000, service="s", endpoint="e")
    data = encode(big, RESPONSE)
    assert parser.feed(data) == [RESPONSE]
    size = len(data) - len(encode(RESPONSE)) - 4
    assert parser.oversized == [(call_id, size, 0)]
    assert parser.buffered == 0


def test_oversized_frame_is_skipped_across_feeds_without_buffering() -> None:
    parser = FrameParser(max_frame=100)
    big = encode(Frame(Kind.MESSAGE, 7, b"y" * 10_000))
    data = encode(REQUEST) + big + encode(RESPONSE)
    got: list[Frame] = []
    for piece in chunks(data, 7):
        got += parser.feed(piece)
        assert parser.buffered <= len(encode(REQUEST))  # never the oversized payload
    assert got == [REQUEST, RESPONSE]
    assert parser.oversized == [(7, len(big) - 4, 0)]


def test_oversized_frame_waits_for_enough_bytes_to_read_the_id() -> None:
    parser = FrameParser(max_frame=100)
    big = encode(Frame(Kind.REQUEST, 300, b"z" * 500))
    assert parser.feed(big[:6]) == []  # length and two bytes of the array: id unknown yet
    assert parser.oversized == []
    assert parser.feed(big[6:]) == []
    assert parser.oversized == [(300, len(big) - 4, 0)]
    assert parser.feed(encode(RESPONSE)) == [RESPONSE]


def test_oversized_frame_position_keeps_wire_order_within_one_feed() -> None:
    parser = FrameParser(max_frame=100)
    big = encode(Frame(Kind.REQUEST, 2, b"x" * 500))
    frames = parser.feed(encode(REQUEST, RESPONSE) + big + encode(ERROR) + big)
    assert frames == [REQUEST, RESPONSE, ERROR]
    # The first oversized frame came after two returned frames, the second after three.
    assert parser.oversized == [(2, len(big) - 4, 2), (2, len(big) - 4, 3)]


def test_default_limit_is_four_mebibytes() -> None:
    parser = FrameParser()
    assert parser.max_frame == DEFAULT_MAX_FRAME == 4 * 1024 * 1024
    at_limit = Frame(Kind.MESSAGE, 1, b"a" * (DEFAULT_MAX_FRAME - 16))
    data = encode(at_limit)
    assert len(data) - 4 <= DEFAULT_MAX_FRAME
    assert parser.feed(data) == [at_limit]


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # a zero-length frame
        b"\xc1\xc1\xc1",  # 0xc1 is never valid msgpack
        msgspec.msgpack.encode({"kind": 1, "id": 1}),  # a map, not an array
        msgspec.msgpack.encode([1]),  # too short: no id
        msgspec.msgpack.encode([1, "one"]),  # id is not an integer
        msgspec.msgpack.encode([1, 1, "text body"]),  # body must be bin, not str
        msgspec.msgpack.encode([1, 1, b"", 0, None, "s", "e", {"k": 1}]),  # metadata value
    ],
    ids=["empty", "invalid-msgpack", "map", "too-short", "str-id", "str-body", "int-metadata"],
)
def test_undecodable_frames_are_protocol_violations(payload: bytes) -> None:
    parser = FrameParser()
    with pytest.raises(ProtocolViolation):
        parser.feed(len(payload).to_bytes(4, "big") + payload)


def test_oversized_garbage_is_a_protocol_violation() -> None:
    parser = FrameParser(max_frame=100)
    with pytest.raises(ProtocolViolation):
        parser.feed(b"\xff" * 64)  # 4 GiB announced, and no frame array after it


def test_the_byte_level_example_of_docs_protocol_md() -> None:
    """docs/protocol.md §13 shows these bytes; keep the document true."""
    request = Frame(
        Kind.REQUEST, 1, msgspec.msgpack.encode({"name": "Alice"}), 0, None,
        "helloworld", "Helloworld.Call", None, 5000,
    )
    response = Frame(Kind.RESPONSE, 1, msgspec.msgpack.encode({"message": "Hello Alice"}))
    assert encode(request).hex(" ") == (
        "00 00 00 32 99 01 01 c4 0c 81 a4 6e 61 6d 65 a5 41 6c 69 63 65 00 c0 "
        "aa 68 65 6c 6c 6f 77 6f 72 6c 64 af 48 65 6c 6c 6f 77 6f 72 6c 64 2e 43 61 6c 6c "
        "c0 cd 13 88"
    )
    assert encode(response).hex(" ") == (
        "00 00 00 1a 93 02 01 c4 15 81 a7 6d 65 73 73 61 67 65 ab 48 65 6c 6c 6f 20 41 6c "
        "69 63 65"
    )
    full = bytes.fromhex("00000020 990201c415") + response.body + bytes.fromhex("00c0a0a0c000")
    assert FrameParser().feed(full) == [response]
