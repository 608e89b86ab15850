"""Streaming endpoints through the gateway: WebSocket (server, client, bidi) and SSE, errors,
and clients that leave mid-stream (the RPC is cancelled, no task stays behind)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from aiohttp import WSMsgType, web

from micro import Context, Service, conflict
from micro.errors import MicroError, unauthorized
from micro.gateway import Gateway
from micro.gateway import streaming as streaming_module
from micro.gateway.resolve import resolve
from micro.gateway.streaming import END, is_streaming, respond
from micro.server import MicroServer
from micro.testing import eventually
from tests.noauth import micro_server  # noqa: F401 (auth off: not what these test)


class Count(msgspec.Struct):
    n: int = 3
    label: str = "n"


class Num(msgspec.Struct):
    n: int
    label: str = "n"


class Text(msgspec.Struct):
    text: str


class Probe:
    """What the service's handlers saw, shared with the test."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()


def streamer(probe: Probe) -> Service:
    svc = Service("streamer")

    @svc.handler
    class Streamer:
        async def count(self, ctx: Context, req: Count) -> AsyncIterator[Num]:
            for i in range(req.n):
                yield Num(i, req.label)

        async def fail(self, ctx: Context, req: Count) -> AsyncIterator[Num]:
            yield Num(0)
            yield Num(1)
            raise conflict("streamer", "number two exists")

        async def refuse(self, ctx: Context, req: Count) -> AsyncIterator[Num]:
            raise unauthorized("streamer", "who are you?")
            yield Num(0)  # pragma: no cover

        async def forever(self, ctx: Context, req: Count) -> AsyncIterator[Num]:
            yield Num(0)
            probe.started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                probe.cancelled.set()
                raise
            yield Num(1)  # pragma: no cover

        async def quiet(self, ctx: Context, req: Count) -> AsyncIterator[Num]:
            probe.started.set()
            await probe.release.wait()
            yield Num(7)

        async def echo(self, ctx: Context, req: AsyncIterator[Text]) -> AsyncIterator[Text]:
            async for msg in req:
                yield Text(msg.text.upper())

        async def sum(self, ctx: Context, req: AsyncIterator[Num]) -> Num:
            total = 0
            async for msg in req:
                total += msg.n
            return Num(total, "sum")

        async def hello(self, ctx: Context, req: Text) -> Text:
            return Text(f"hello {req.text}")

    return svc


def _error(err: MicroError) -> web.Response:
    return web.json_response(err.to_dict(), status=err.status)


def wire(gateway: Gateway, prefix: str, heartbeat: float = streaming_module.HEARTBEAT) -> None:
    """What the gateway's request handler does for streaming endpoints (until the lead wires
    respond() into Gateway._handle): resolve, authorize, ask the kind, respond."""

    async def handle(request: web.BaseRequest, params: dict[str, str]) -> web.StreamResponse:
        try:
            service, endpoint = resolve(params["path"])
            metadata = {
                k.lower(): v for k, v in request.headers.items() if k.lower().startswith("micro-")
            }
            if gateway.guard is not None:
                service = await gateway._authorize(request, service, endpoint, metadata)
        except MicroError as err:
            return _error(err)
        kind = await is_streaming(gateway, service, endpoint)
        if kind is None:
            return _error(MicroError("test", "unary", "unary: not for this route", 418))
        return await respond(
            gateway, request, service, endpoint, kind, metadata, None, heartbeat=heartbeat
        )

    gateway.add_route("*", f"/{prefix}/{{path*}}", handle)


@pytest.fixture
async def probe() -> Probe:
    return Probe()


@pytest.fixture
async def url(micro_server: MicroServer, probe: Probe) -> AsyncIterator[str]:
    svc = streamer(probe)
    svc.use(registry=micro_server.registry)
    await svc.start()
    gateway = Gateway(micro_server.client, "127.0.0.1:0", guard=micro_server.guard)
    wire(gateway, "s")
    wire(gateway, "beat", heartbeat=0.05)
    address = await gateway.start()
    try:
        yield f"http://{address}"
    finally:
        await gateway.stop()
        await svc.stop(grace=1.0)


async def read_ws(ws: aiohttp.ClientWebSocketResponse) -> list[object]:
    """Every text message (as JSON) until the server closes."""
    got: list[object] = []
    async for msg in ws:
        assert msg.type is WSMsgType.TEXT
        got.append(msgspec.json.decode(msg.data))
    return got


async def sse_events(resp: aiohttp.ClientResponse) -> list[tuple[str, object]]:
    """``(event type, data)`` of every event until the response ends; comments skipped."""
    events: list[tuple[str, object]] = []
    kind = "message"
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((kind, msgspec.json.decode(line[len("data: ") :])))
            kind = "message"
    return events


def streaming_tasks() -> list[asyncio.Task[object]]:
    """Tasks running code of micro.gateway.streaming."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and code.co_filename == streaming_module.__file__:
            found.append(task)
    return found


# -- WebSocket -----------------------------------------------------------------------------------


async def test_websocket_server_stream(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/s/streamer/count") as ws:
        await ws.send_json({"n": 3, "label": "x"})
        assert await read_ws(ws) == [{"n": i, "label": "x"} for i in range(3)]
        assert ws.close_code == 1000


async def test_websocket_bidi_stream_runs_both_ways_at_once(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/s/streamer/echo") as ws:
        for word in ("one", "two", "three"):
            await ws.send_json({"text": word})
            # each answer comes before the next request is sent: both directions are live
            assert await ws.receive_json(timeout=10) == {"text": word.upper()}
        await ws.send_str(END)
        assert await read_ws(ws) == []
        assert ws.close_code == 1000


async def test_websocket_client_stream(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/s/streamer/sum") as ws:
        for n in (1, 2, 3):
            await ws.send_json({"n": n})
        await ws.send_str(END)
        assert await read_ws(ws) == [{"n": 6, "label": "sum"}]
        assert ws.close_code == 1000


async def test_websocket_error_is_a_last_message_then_1011(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/s/streamer/fail") as ws:
        await ws.send_json({})
        got = await read_ws(ws)
        assert got[:2] == [{"n": 0, "label": "n"}, {"n": 1, "label": "n"}]
        assert got[2] == {
            "error": {
                "id": "streamer",
                "code": "conflict",
                "detail": "number two exists",
                "status": 409,
            }
        }
        assert len(got) == 3
        assert ws.close_code == 1011


async def test_websocket_auth_error_closes_with_1008(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/s/streamer/refuse") as ws:
        await ws.send_json({})
        got = await read_ws(ws)
        assert len(got) == 1 and isinstance(got[0], dict)
        assert got[0]["error"]["status"] == 401
        assert ws.close_code == 1008


async def test_websocket_message_that_is_not_json_closes_with_1007(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/s/streamer/echo") as ws:
        await ws.send_str("{not json")
        got = await read_ws(ws)
        assert len(got) == 1 and isinstance(got[0], dict)
        assert got[0]["error"]["code"] == "bad_request"
        assert "JSON" in got[0]["error"]["detail"]
        assert ws.close_code == 1007


async def test_websocket_invalid_request_is_the_services_400(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/s/streamer/count") as ws:
        await ws.send_json({"n": "three"})
        got = await read_ws(ws)
        assert len(got) == 1 and isinstance(got[0], dict)
        assert got[0]["error"]["status"] == 400 and "$.n" in got[0]["error"]["detail"]
        assert ws.close_code == 1011


async def test_websocket_client_leaving_cancels_the_call(url: str, probe: Probe) -> None:
    async with aiohttp.ClientSession() as http:
        # a full stream first, so that connections and the registry watch exist already
        async with http.ws_connect(f"{url}/s/streamer/count") as ws:
            await ws.send_json({"n": 1})
            await read_ws(ws)
        before = len(asyncio.all_tasks())
        async with http.ws_connect(f"{url}/s/streamer/forever") as ws:
            await ws.send_json({})
            assert await ws.receive_json(timeout=10) == {"n": 0, "label": "n"}
            await asyncio.wait_for(probe.started.wait(), 10)
            assert streaming_tasks()  # the relay is running
        # the client closed its socket mid-stream
        await asyncio.wait_for(probe.cancelled.wait(), 10)
    await eventually(lambda: not streaming_tasks(), message="the relay tasks ended")
    await eventually(lambda: len(asyncio.all_tasks()) <= before, message="no task left behind")


async def test_websocket_client_vanishing_cancels_the_call(url: str, probe: Probe) -> None:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"{url}/s/streamer/forever")
    await ws.send_json({})
    assert await ws.receive_json(timeout=10) == {"n": 0, "label": "n"}
    await http.close()  # the connection drops without a closing handshake
    await asyncio.wait_for(probe.cancelled.wait(), 10)
    await eventually(lambda: not streaming_tasks(), message="the relay tasks ended")


# -- Server-Sent Events --------------------------------------------------------------------------

SSE = {"Accept": "text/event-stream"}


async def test_sse_server_stream_from_query_and_from_body(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/s/streamer/count?label=q", headers=SSE) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            assert resp.headers["Cache-Control"] == "no-cache"
            assert await sse_events(resp) == [("message", {"n": i, "label": "q"}) for i in range(3)]
        async with http.post(f"{url}/s/streamer/count", json={"n": 2}, headers=SSE) as resp:
            assert await sse_events(resp) == [("message", {"n": i, "label": "n"}) for i in range(2)]


async def test_sse_error_event_ends_the_stream(url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/s/streamer/fail", json={}, headers=SSE) as resp,
    ):
        assert resp.status == 200
        assert await sse_events(resp) == [
            ("message", {"n": 0, "label": "n"}),
            ("message", {"n": 1, "label": "n"}),
            (
                "error",
                {
                    "id": "streamer",
                    "code": "conflict",
                    "detail": "number two exists",
                    "status": 409,
                },
            ),
        ]


async def test_sse_bad_body_is_400(url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/s/streamer/count", data="{oops", headers=SSE) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["code"] == "bad_request"


async def test_sse_heartbeat_while_idle(url: str, probe: Probe) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/beat/streamer/quiet", headers=SSE) as resp,
    ):
        assert resp.status == 200
        # the handler waits for release; the gateway keeps the connection alive meanwhile
        line = await asyncio.wait_for(resp.content.readline(), 10)
        assert line == b": keep-alive\n"
        probe.release.set()
        assert ("message", {"n": 7, "label": "n"}) in await sse_events(resp)


async def test_sse_client_leaving_cancels_the_call(url: str, probe: Probe) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/s/streamer/forever", headers=SSE) as resp:
            assert await resp.content.readline() == b'data: {"n":0,"label":"n"}\n'
            await asyncio.wait_for(probe.started.wait(), 10)
            resp.close()  # drop the connection mid-stream
        await asyncio.wait_for(probe.cancelled.wait(), 10)
    await eventually(lambda: not streaming_tasks(), message="the SSE tasks ended")


async def test_sse_is_for_server_streams_only_and_plain_http_is_400(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/s/streamer/echo", headers=SSE) as resp:
            assert resp.status == 400
            body = await resp.json()
            assert "bidi stream" in body["detail"] and "WebSocket" in body["detail"]
        async with http.post(f"{url}/s/streamer/count", json={}) as resp:
            assert resp.status == 400
            assert "text/event-stream" in (await resp.json())["detail"]


async def test_is_streaming_reads_the_kind_from_the_registry(
    micro_server: MicroServer, url: str
) -> None:
    gateway = Gateway(micro_server.client, "127.0.0.1:0")
    assert await is_streaming(gateway, "streamer", "Streamer.Count") == "server"
    assert await is_streaming(gateway, "streamer", "Streamer.Sum") == "client"
    assert await is_streaming(gateway, "streamer", "Streamer.Echo") == "bidi"
    assert await is_streaming(gateway, "streamer", "Streamer.Hello") is None
    assert await is_streaming(gateway, "streamer", "Streamer.Nothing") is None
    assert await is_streaming(gateway, "nobody", "Nobody.Call") is None
