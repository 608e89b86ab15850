"""aiohttp on both ends: ``POST /echo`` with a JSON body over HTTP/1.1 keep-alive."""

from __future__ import annotations

import aiohttp
import msgspec
from aiohttp import web

from . import MESSAGE, Stop, no_broker

__all__ = ["NAME", "broker", "connect", "serve"]

NAME = "aiohttp"
broker = no_broker


class EchoMessage(msgspec.Struct):
    """The JSON body both ways: ``{"message": ...}``."""

    message: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(EchoMessage)
_JSON = {"Content-Type": "application/json"}


async def _echo(request: web.Request) -> web.Response:
    try:
        message = _decoder.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.Response(body=_encoder.encode(message), headers=_JSON)


async def serve(arg: str) -> tuple[str, Stop]:
    """Start an aiohttp web server (no access log) on a free port of 127.0.0.1."""
    app = web.Application()
    app.router.add_post("/echo", _echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"{host}:{port}", runner.cleanup


class AiohttpEcho:
    """A session whose keep-alive pool holds one connection per call in flight."""

    expected = MESSAGE

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.body = _encoder.encode(EchoMessage(MESSAGE))

    async def call(self) -> str:
        """One echo."""
        async with self.session.post(self.url, data=self.body, headers=_JSON) as response:
            response.raise_for_status()
            return _decoder.decode(await response.read()).message

    async def close(self) -> None:
        """Close the session and its connections."""
        await self.session.close()


async def connect(address: str, inflight: int) -> AiohttpEcho:
    """A session sized to ``inflight`` keep-alive connections."""
    connector = aiohttp.TCPConnector(limit=inflight, limit_per_host=inflight)
    session = aiohttp.ClientSession(connector=connector)
    return AiohttpEcho(session, f"http://{address}/echo")
