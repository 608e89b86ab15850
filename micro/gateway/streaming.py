"""Streaming endpoints through the gateway: WebSocket (every kind) and Server-Sent Events
(server streams).

The gateway resolves the path and authorizes the caller as for a unary call, then asks
:func:`is_streaming` for the endpoint's kind (from the registry) and hands streaming calls to
:func:`respond`, which picks the transport from the request:

**WebSocket** (``Upgrade: websocket``; every kind). Messages are JSON text (binary frames
holding JSON are accepted too).

- *server* streams: the first message the client sends is the request; each response is sent
  as one text message; the end of the stream closes the socket normally (1000).
- *client* and *bidi* streams: each client message is one request item. An **empty** text
  message (never valid JSON, so never a request) ends the request stream (the RPC
  ``close_send``); responses are sent as they come (bidi: both directions at once; client:
  the one response once the requests ended), then the socket closes with 1000.
- Errors: a last text message ``{"error": {id, code, detail, status}}``, then the close code
  1008 (policy violation) for 401 and 403, 1007 (invalid data) for a client message that is
  not JSON, 1011 for every other error.

**SSE** (``Accept: text/event-stream``; server streams only). The request is the query string
(GET, values as strings) or the JSON body (POST), as for unary calls. Each response is an
event ``data: <json>``; an error is ``event: error`` with ``data: {id, code, detail,
status}``, after which the response ends. While no response comes, a comment line
(``: keep-alive``) is sent every :data:`HEARTBEAT` seconds so proxies keep the connection.
An error raised before the stream opens (no node to call) is a plain JSON error response
with its status.

Any other request to a streaming endpoint gets 400. JSON messages are converted one by one
to and from the service's MessagePack (the streaming client speaks MessagePack only), so
values keep their JSON meaning (bytes travel as base64 strings in both directions, as with
the JSON codec of unary calls).

**Disconnects.** When the client goes away mid-stream (the WebSocket closes or breaks; the
SSE connection is found closed by a write or by the liveness check every second) the RPC
stream is abandoned: a CANCEL frame tells the service, whose handler sees
``asyncio.CancelledError``. Every task :func:`respond` starts ends before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSMsgType, web

from ..client import Stream
from ..errors import MicroError, bad_request
from ..service.endpoint import StreamKind

if TYPE_CHECKING:
    from . import Gateway

__all__ = [
    "END",
    "HEARTBEAT",
    "is_streaming",
    "respond",
    "wants_sse",
    "wants_websocket",
]

HEARTBEAT = 15.0
"""Seconds without a response after which an SSE stream gets a comment line."""

END = ""
"""The WebSocket text message that ends the request stream of client and bidi streams."""

ID = "gateway"
_LIVENESS = 1.0  # seconds between checks that an idle SSE client is still connected
_CLOSE_OK = 1000
_CLOSE_BAD_DATA = 1007
_CLOSE_POLICY = 1008
_CLOSE_ERROR = 1011
_json = msgspec.json.Encoder()
_decode_json = msgspec.json.Decoder()


class _BadMessage(Exception):
    """A client WebSocket message that is not JSON."""

    def __init__(self, error: MicroError) -> None:
        super().__init__(error.detail)
        self.error = error


def wants_websocket(request: web.BaseRequest) -> bool:
    """Whether ``request`` asks to upgrade to a WebSocket."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


def wants_sse(request: web.BaseRequest) -> bool:
    """Whether ``request`` accepts Server-Sent Events."""
    return "text/event-stream" in request.headers.get("Accept", "")


async def is_streaming(gateway: Gateway, service: str, endpoint: str) -> str | None:
    """The stream kind (``"server"``, ``"client"``, ``"bidi"``) of ``service`` (as stored,
    namespace included) / ``endpoint`` as the registry describes it, loading the service
    into the client's registry view if it is not there yet; ``None`` for unary endpoints and
    for endpoints (or services) the registry does not know, which take the unary path (and
    its errors)."""
    info = await gateway.lookup_endpoint(service, endpoint)
    if info is None or info.stream == StreamKind.UNARY:
        return None
    return info.stream


async def respond(
    gateway: Gateway,
    request: web.BaseRequest,
    service: str,
    endpoint: str,
    kind: str,
    metadata: dict[str, str],
    timeout: float | None,
    *,
    body: bytes | None = None,
    heartbeat: float = HEARTBEAT,
) -> web.StreamResponse:
    """Serve a call to the streaming endpoint ``service``/``endpoint`` of ``kind`` over a
    WebSocket or SSE (see the module docstring). ``metadata`` goes with the call (the
    caller's authorization included: the gateway has authorized the caller already);
    ``timeout`` bounds the whole stream (``None``: no bound). ``body``: the JSON request of
    an SSE call as the gateway made it (query or body, typed by its routes); read from the
    request when not given. Errors before the stream opens are ``gateway.error`` answers."""
    try:
        stream_kind = StreamKind(kind)
    except ValueError:
        return gateway.error(request, bad_request(ID, f"unknown stream kind {kind!r}"))
    if wants_websocket(request):
        return await _websocket(gateway, request, service, endpoint, stream_kind, metadata, timeout)
    if stream_kind is StreamKind.SERVER and wants_sse(request):
        return await _sse(gateway, request, service, endpoint, metadata, timeout, body, heartbeat)
    how = "open a WebSocket"
    if stream_kind is StreamKind.SERVER:
        how += " or send Accept: text/event-stream"
    return gateway.error(
        request, bad_request(ID, f"{endpoint} of {service} is a {stream_kind.value} stream: {how}")
    )


# -- WebSocket -----------------------------------------------------------------------------------


def _close_code(err: MicroError) -> int:
    return _CLOSE_POLICY if err.status in (401, 403) else _CLOSE_ERROR


def _parse(data: str | bytes) -> Any:
    try:
        return _decode_json.decode(data)
    except msgspec.DecodeError as exc:
        raise _BadMessage(bad_request(ID, f"a message is not JSON: {exc}")) from None


async def _websocket(
    gateway: Gateway,
    request: web.BaseRequest,
    service: str,
    endpoint: str,
    kind: StreamKind,
    metadata: dict[str, str],
    timeout: float | None,
) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=gateway.max_body)
    await ws.prepare(request)
    code, error = _CLOSE_OK, None
    stream: Stream | None = None
    try:
        first: Any = None
        if kind is StreamKind.SERVER:
            msg = await ws.receive(timeout=timeout)
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return ws  # the client left (or closed) before asking anything
            first = _parse(msg.data)
        stream = gateway.client.stream(service, endpoint, first, timeout=timeout, metadata=metadata)
        await stream.open()
        await _converse(ws, stream, kind)
    except _BadMessage as exc:
        code, error = _CLOSE_BAD_DATA, exc.error
    except MicroError as err:
        code, error = _close_code(err), err
    except (TimeoutError, _ClientGone, ConnectionResetError):
        pass  # nothing more to say: the client went away (or never spoke)
    finally:
        if stream is not None:
            await stream.close()  # a CANCEL frame unless the stream ended
    if error is not None and not ws.closed:
        with contextlib.suppress(ConnectionResetError):
            await ws.send_str(_json.encode({"error": error.to_dict()}).decode())
    await ws.close(code=code)
    return ws


class _ClientGone(Exception):
    """The WebSocket client closed or broke the connection mid-stream."""


async def _converse(ws: web.WebSocketResponse, stream: Stream, kind: StreamKind) -> None:
    """Relay responses to ``ws`` while reading its messages (requests for client and bidi
    streams; for all kinds, how the client notices a close); return when the RPC stream
    ended; raise what broke it."""
    reader = asyncio.ensure_future(_read(ws, stream, kind))
    writer = asyncio.ensure_future(_write(ws, stream))
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        if writer in done:
            writer.result()  # the stream ended, or its error
            return
        reader.result()  # a bad message or a failed send, if that is what ended it
        raise _ClientGone
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)


async def _read(ws: web.WebSocketResponse, stream: Stream, kind: StreamKind) -> None:
    """Feed the client's messages into the stream; return when the socket closes."""
    streaming = kind in (StreamKind.CLIENT, StreamKind.BIDI)
    ended = False
    async for msg in ws:  # ends at a CLOSE or CLOSING message
        if msg.type is WSMsgType.ERROR:
            return  # broken: the socket is closed
        if not streaming or ended:
            continue  # nothing more is expected: only the close matters
        if msg.type is WSMsgType.TEXT and msg.data == END:
            ended = True
            await stream.close_send()
        elif msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            await stream.send(_parse(msg.data))


async def _write(ws: web.WebSocketResponse, stream: Stream) -> None:
    """Send every response of the stream to the client."""
    async for item in stream:
        await ws.send_str(_json.encode(item).decode())


# -- Server-Sent Events --------------------------------------------------------------------------


async def _next(stream: Stream) -> tuple[bool, Any]:
    """``(True, response)``, or ``(False, None)`` at the end of the stream."""
    try:
        return True, await stream.receive()
    except StopAsyncIteration:
        return False, None


def _gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _sse(
    gateway: Gateway,
    request: web.BaseRequest,
    service: str,
    endpoint: str,
    metadata: dict[str, str],
    timeout: float | None,
    body: bytes | None,
    heartbeat: float,
) -> web.StreamResponse:
    try:
        if body is None:
            body = await gateway._body(request)
        first = _decode_json.decode(body) if body.strip() else {}
        stream = gateway.client.stream(service, endpoint, first, timeout=timeout, metadata=metadata)
        await stream.open()
    except msgspec.DecodeError as exc:
        return gateway.error(request, bad_request(ID, f"malformed request body: {exc}"))
    except MicroError as err:
        return gateway.error(request, err)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass events through as they come
        }
    )
    pending: asyncio.Future[tuple[bool, Any]] | None = None
    loop = asyncio.get_running_loop()
    try:
        await resp.prepare(request)
        last = loop.time()
        while True:
            if pending is None:
                pending = asyncio.ensure_future(_next(stream))
            done, _ = await asyncio.wait({pending}, timeout=min(heartbeat, _LIVENESS))
            if not done:
                if _gone(request):
                    return resp  # the client left; the finally clause cancels the call
                if loop.time() - last >= heartbeat:
                    await resp.write(b": keep-alive\n\n")
                    last = loop.time()
                continue
            task, pending = pending, None
            try:
                more, item = task.result()
            except MicroError as err:
                await resp.write(b"event: error\ndata: " + _json.encode(err.to_dict()) + b"\n\n")
                break
            if not more:
                break
            await resp.write(b"data: " + _json.encode(item) + b"\n\n")
            last = loop.time()
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client left while we wrote
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await stream.close()
    return resp
