"""Frames of the micro RPC protocol: the envelope, its kinds, and incremental parsing.

The full specification is ``docs/protocol.md``. In short: after an 4-byte preface (``MCR1``)
sent by the client, each direction is a sequence of frames, each a 4-byte big-endian length
followed by that many bytes of a msgpack array ``[kind, id, body, codec, error, service,
endpoint, metadata, timeout]`` (trailing defaults omitted).
"""

from __future__ import annotations

import enum
from typing import Any, Final

import msgspec

from ..errors import WireError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "PREFACE",
    "Codec",
    "Frame",
    "FrameParser",
    "Kind",
    "ProtocolViolation",
    "encode_frame",
    "encode_parts",
]

PREFACE: Final = b"MCR1"
DEFAULT_MAX_FRAME: Final = 4 * 1024 * 1024
_HEADER: Final = 4


class Kind(enum.IntEnum):
    """What a frame means. Ids are chosen by the client, unique per connection."""

    REQUEST = 1  # client -> server: open a call (unary body, or stream start)
    RESPONSE = 2  # server -> client: the unary result; ends the call
    ERROR = 3  # either way: the call failed; ends the call (id 0: the connection failed)
    MESSAGE = 4  # either way: one stream message
    END = 5  # either way: no more stream messages from this side
    CANCEL = 6  # client -> server: abandon the call
    PING = 7  # either way: liveness probe; answered by PONG with the same id
    PONG = 8


class Codec(enum.IntEnum):
    """How a frame's body is encoded."""

    MSGPACK = 0
    JSON = 1


class Frame(msgspec.Struct, array_like=True, omit_defaults=True):
    """One protocol frame. Field order is the wire order; trailing defaults are omitted."""

    kind: int
    id: int
    body: bytes = b""
    codec: int = 0
    error: WireError | None = None
    service: str = ""
    endpoint: str = ""
    metadata: dict[str, str] | None = None
    timeout: int = 0  # milliseconds the caller still waits; 0 means no deadline


class ProtocolViolation(Exception):
    """The peer sent bytes that are not a valid frame; the connection must close."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


_DEFAULTS: Final = (b"", 0, None, "", "", None, 0)  # of the fields after kind and id


def encode_parts(parts: tuple[Any, ...], out: bytearray) -> int:
    """Append a frame given as a tuple of its leading fields in wire order, e.g.
    ``(Kind.RESPONSE, id, body, codec)``; return the payload size. The hot paths use this:
    a tuple is cheaper to build than a :class:`Frame`, and fields left off are defaults."""
    start = len(out)
    out += b"\x00\x00\x00\x00"
    _encoder.encode_into(parts, out, start + _HEADER)
    size = len(out) - start - _HEADER
    out[start : start + _HEADER] = size.to_bytes(_HEADER, "big")
    return size


def encode_frame(frame: Frame, out: bytearray) -> int:
    """Append ``frame`` (length prefix included, trailing defaults left off) to ``out``;
    return the payload size."""
    fields = (
        frame.body, frame.codec, frame.error, frame.service, frame.endpoint, frame.metadata,
        frame.timeout,
    )
    n = len(fields)
    while n and fields[n - 1] == _DEFAULTS[n - 1]:
        n -= 1
    return encode_parts((frame.kind, frame.id, *fields[:n]), out)


def _peek_id(head: bytes) -> int | None:
    """Read ``[kind, id, ...`` from the first bytes of a frame without decoding the rest.

    Used for frames over the size limit, so that the sender can be told which call was
    refused while the oversized payload is skipped instead of buffered. msgspec has no
    partial decoding, hence these few lines of msgpack by hand.
    """
    if len(head) < 3 or not (0x91 <= head[0] <= 0x9F or head[0] in (0xDC, 0xDD)):
        return None
    pos = 1 if head[0] <= 0x9F else (3 if head[0] == 0xDC else 5)
    if pos + 2 > len(head) or head[pos] > 0x7F:  # kind is a positive fixint
        return None
    pos += 1
    tag = head[pos]
    if tag <= 0x7F:
        return tag
    widths = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
    width = widths.get(tag)
    if width is None or pos + 1 + width > len(head):
        return None
    return int.from_bytes(head[pos + 1 : pos + 1 + width], "big")


class FrameParser:
    """Turns a byte stream into frames, bounded in memory by ``max_frame``.

    ``feed`` returns complete frames; an oversized frame is skipped (never buffered) and
    reported through ``oversized`` as ``(call id, size, position)``, where ``position`` is
    how many of the frames returned by the same ``feed`` came before it (so the receiver
    can handle everything in wire order); bytes that do not form a frame raise
    :class:`ProtocolViolation`.
    """

    __slots__ = ("_buf", "_skip", "max_frame", "oversized")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = bytearray()
        self._skip = 0
        self.max_frame = max_frame
        self.oversized: list[tuple[int, int, int]] = []

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data``; return the frames it completes."""
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        view = memoryview(buf)
        try:
            while end - pos >= _HEADER:
                size = int.from_bytes(view[pos : pos + _HEADER], "big")
                if size > self.max_frame:
                    head = bytes(view[pos + _HEADER : pos + _HEADER + 16])
                    if len(head) < min(16, size):
                        break  # wait for enough of the frame to read its id
                    call_id = _peek_id(head)
                    if call_id is None:
                        raise ProtocolViolation(f"frame of {size} bytes is not a valid frame")
                    self.oversized.append((call_id, size, len(frames)))
                    available = end - pos - _HEADER
                    if available >= size:
                        pos += _HEADER + size
                        continue
                    self._skip = size - available
                    pos = end
                    break
                if end - pos - _HEADER < size:
                    break
                try:
                    frames.append(_decoder.decode(view[pos + _HEADER : pos + _HEADER + size]))
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise ProtocolViolation(f"malformed frame: {exc}") from None
                pos += _HEADER + size
        finally:
            view.release()
        if pos:
            del buf[:pos]
        return frames
