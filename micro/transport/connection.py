"""The part of a connection both ends share: framing, coalesced writes, backpressure."""

from __future__ import annotations

import abc
import asyncio
import logging

from .frames import DEFAULT_MAX_FRAME, Frame, FrameParser, ProtocolViolation, encode_frame

__all__ = ["FramedProtocol"]

log = logging.getLogger("micro.transport")


class FramedProtocol(asyncio.Protocol, metaclass=abc.ABCMeta):
    """An ``asyncio.Protocol`` that speaks frames.

    Frames sent while the protocol is handling received data, or within one turn of the
    event loop, are coalesced into a single ``transport.write`` (one syscall for many
    pipelined replies). Subclasses implement :meth:`frames_received` and
    :meth:`oversized_frame`.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self._parser = FrameParser(max_frame)
        self._out = bytearray()
        self._flush_pending = False
        self._dispatching = False
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False

    @property
    def max_frame(self) -> int:
        """The largest frame accepted or sent, in bytes."""
        return self._parser.max_frame

    # -- writing -----------------------------------------------------------------------------

    def send(self, frame: Frame) -> None:
        """Queue ``frame``; it is written at the end of this loop turn."""
        if self.closed:
            return
        encode_frame(frame, self._out)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Write what is queued once the current batch of work is done."""
        if not self._dispatching and not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write everything queued in one call."""
        self._flush_pending = False
        if self._out and self.transport is not None and not self.closed:
            self.transport.write(self._out)
            self._out = bytearray()

    async def drain(self) -> None:
        """Wait while the peer is not reading (the transport's buffer is over its limit)."""
        if self.closed:
            raise ConnectionResetError("connection closed")
        if not self._paused:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainers(None)

    def _wake_drainers(self, exc: BaseException | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    # -- reading -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        try:
            frames = parser.feed(data)
        except ProtocolViolation as exc:
            self.protocol_violation(str(exc))
            return
        self._dispatching = True
        try:
            if parser.oversized:  # interleave with the frames, in the order they came
                oversized, parser.oversized = parser.oversized, []
                done = 0
                for call_id, size, position in oversized:
                    if position > done:
                        self.frames_received(frames[done:position])
                        done = position
                    self.oversized_frame(call_id, size)
                frames = frames[done:]
            if frames:
                self.frames_received(frames)
        finally:
            self._dispatching = False
        self.flush()

    @abc.abstractmethod
    def frames_received(self, frames: list[Frame]) -> None:
        """Handle complete frames, in order."""
        ...

    @abc.abstractmethod
    def oversized_frame(self, call_id: int, size: int) -> None:
        """A frame over the size limit was skipped."""
        ...

    def protocol_violation(self, reason: str) -> None:
        """The peer sent garbage: log it and close this connection (only this one)."""
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.warning("closing connection from %s: %s", peer, reason)
        self.abort()

    def abort(self) -> None:
        """Close now, dropping anything unsent."""
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Flush what is queued, then close."""
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake_drainers(ConnectionResetError("connection lost"))
