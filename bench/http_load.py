"""A minimal HTTP/1.1 load generator for one fixed request, and the responder that bounds it.

Why hand-written: the generator must be faster than every server it measures, or the rows
measure the generator. aiohttp's client spends more CPU per request than the servers under
test (it builds a request object, a response object, a header multidict and a stream reader
for every call), so against the fastest targets it would saturate first. This client only
handles the one response shape the benchmark needs: a status line, headers with a
``Content-Length`` (no chunked encoding), then exactly that many body bytes. Each connection
is an :class:`asyncio.Protocol` that sends the next request from ``data_received`` as soon as
the previous response is complete, so a round trip costs two syscalls and a few slices, with
no task switch.

Semantics: ``concurrency`` keep-alive connections, each with exactly one request in flight
(request, await the whole response, next request: no pipelining). A warm-up runs unrecorded,
then for ``duration`` seconds every completed request's latency is taken with
:func:`time.perf_counter` from the write of its request to the last byte of its response.
Every response must be ``200`` with the body the first response had (the benchmark checks
that one against the expected echo), else the run fails.

:func:`serve_ceiling` is the trivial raw asyncio HTTP responder the generator is verified
against: what it reaches is the most this generator can show on the machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

import msgspec

from .load import percentile

__all__ = [
    "CONNECT_TIMEOUT",
    "Measured",
    "drive",
    "fetch",
    "request_bytes",
    "serve_ceiling",
]

CONNECT_TIMEOUT = 10.0  # seconds to open every connection, or to drain them at the end
_HEAD_END = b"\r\n\r\n"
_LENGTH = b"\r\ncontent-length:"


class Measured(msgspec.Struct):
    """What one load run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int


def request_bytes(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    """The bytes of ``POST path`` with a JSON ``body`` on a keep-alive connection."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _ResponseError(Exception):
    """A response that is not the expected one, or a connection lost mid-run."""


def _response_length(head: bytes) -> int:
    """The byte length of the body announced in ``head`` (status line and headers)."""
    at = head.lower().find(_LENGTH)
    if at < 0:
        raise _ResponseError(f"no Content-Length in the response head {head[:200]!r}")
    end = head.find(b"\r\n", at + 2)
    return int(head[at + len(_LENGTH) : end if end >= 0 else len(head)].strip())


class _Run:
    """State shared by the connections of one load run."""

    __slots__ = ("error", "expected", "idle", "latencies", "recording", "running")

    def __init__(self, expected: bytes) -> None:
        self.expected = expected
        self.running = True
        self.recording = False
        self.latencies: list[float] = []
        self.error: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.idle = 0  # connections that stopped after the end of the run

    def fail(self, exc: Exception) -> None:
        self.running = False
        if not self.error.done():
            self.error.set_exception(exc)


class _Connection(asyncio.Protocol):
    """One keep-alive connection with one request in flight at a time."""

    def __init__(self, request: bytes, run: _Run, clock: Callable[[], float]) -> None:
        self.request = request
        self.run = run
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.need = -1  # bytes of the whole response once its head is parsed
        self.started = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def fire(self) -> None:
        """Send the request and start its clock."""
        assert self.transport is not None
        self.busy = True
        self.started = self.clock()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if self.need < 0:
            end = buffer.find(_HEAD_END)
            if end < 0:
                self.buffer = buffer
                return
            head = buffer[:end]
            try:
                if head[9:12] != b"200":
                    raise _ResponseError(f"status {head[:200]!r}: {buffer[end + 4 :][:300]!r}")
                self.need = end + 4 + _response_length(head)
            except (_ResponseError, ValueError) as exc:
                self._fail(exc)
                return
        if len(buffer) < self.need:
            self.buffer = buffer
            return
        if len(buffer) > self.need:
            self._fail(_ResponseError(f"{len(buffer) - self.need} bytes after the response"))
            return
        elapsed = self.clock() - self.started
        run = self.run
        if buffer[-len(run.expected) :] != run.expected:
            self._fail(_ResponseError(f"unexpected body {buffer[-len(run.expected) :]!r}"))
            return
        self.buffer = b""
        self.need = -1
        self.busy = False
        if run.recording:
            run.latencies.append(elapsed)
        if run.running:
            self.fire()
        else:
            run.idle += 1

    def _fail(self, exc: Exception) -> None:
        self.busy = False
        self.run.fail(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy or self.run.running:
            self.run.fail(_ResponseError(f"the server closed a connection ({exc})"))


async def fetch(host: str, port: int, request: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """One request on a fresh connection: its status and body (for checks before a run)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(_HEAD_END), timeout)
        length = _response_length(head[:-4])
        body = await asyncio.wait_for(reader.readexactly(length), timeout)
        return int(head[9:12]), body
    finally:
        writer.close()


async def _wait_unless_failed(run: _Run, seconds: float) -> None:
    done, _ = await asyncio.wait([run.error], timeout=seconds)
    if done:
        run.error.result()


async def drive(
    host: str,
    port: int,
    request: bytes,
    expected_body: bytes,
    concurrency: int,
    duration: float,
    warmup: float,
) -> Measured:
    """Load ``host:port`` with ``request`` on ``concurrency`` connections for ``warmup``
    seconds unrecorded then ``duration`` seconds recorded. Raises if a response is not
    ``200`` with ``expected_body`` or a connection is lost."""
    if not expected_body:
        raise ValueError("drive() checks every response body: expected_body is empty")
    loop = asyncio.get_running_loop()
    run = _Run(expected_body)
    clock = time.perf_counter
    connections: list[_Connection] = []
    try:
        for _ in range(concurrency):
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(request, run, clock), host, port),
                CONNECT_TIMEOUT,
            )
            connections.append(protocol)
        for connection in connections:
            connection.fire()
        await _wait_unless_failed(run, warmup)
        run.recording = True
        started = clock()
        await _wait_unless_failed(run, duration)
        run.recording = False
        elapsed = clock() - started
        run.running = False
        deadline = loop.time() + CONNECT_TIMEOUT
        while run.idle < concurrency and not run.error.done():  # the last responses
            if loop.time() > deadline:
                raise TimeoutError(f"{concurrency - run.idle} responses never came")
            await asyncio.sleep(0.005)
        if run.error.done():
            run.error.result()
    finally:
        run.running = False
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
        if run.error.done() and not run.error.cancelled():
            run.error.exception()  # retrieved (raised above when it happened in the run)
    latencies = sorted(run.latencies)
    return Measured(
        requests_per_s=round(len(latencies) / elapsed, 1),
        p50_ms=round(percentile(latencies, 0.50) * 1000, 3),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
        requests=len(latencies),
    )


class _Responder(asyncio.Protocol):
    """The ceiling: parses request framing (head, ``Content-Length``) and echoes the body as
    ``application/json``, nothing else (no routing, no JSON decoding)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while True:
            end = buffer.find(_HEAD_END)
            if end < 0:
                break
            try:
                length = _response_length(buffer[:end])  # the same header rule both ways
            except (_ResponseError, ValueError):
                length = 0
            total = end + 4 + length
            if len(buffer) < total:
                break
            body = buffer[end + 4 : total]
            buffer = buffer[total:]
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        self.buffer = buffer


async def serve_ceiling(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Start the ceiling responder; the caller closes the returned server."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(_Responder, host, port)
