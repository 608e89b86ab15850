"""The server children of ``python -m bench gateway``: ``python -m bench.gateway_targets
<target> [arg]``.

Each starts one server on a free port of 127.0.0.1, prints ``READY <host:port> ...`` and
serves until SIGTERM, SIGINT, end-of-file on stdin (the benchmark went away) or
``--lifetime`` seconds. Targets:

``ceiling``
    The raw asyncio responder of :mod:`bench.http_load` (the generator's ceiling).
``http-aiohttp`` / ``http-uvicorn``
    The same minimal JSON echo on aiohttp's web server, and as a raw ASGI app (no framework)
    on uvicorn with httptools. ``http-granian`` serves :func:`asgi_echo` too, from the
    ``granian`` command (the benchmark starts it).
``fastapi``
    FastAPI + uvicorn (httptools, uvloop, one worker): ``POST /echo`` with a pydantic model.
``server``
    ``micro server`` (auth on, as in production; runtime off) with its gateway, state in the
    directory ``arg``. Creates the service account ``echo`` and a user ``bench`` whom a rule
    lets call ``echo``'s ``Echo.*``; prints ``READY <gateway> <rpc> <bench's access token>
    <echo's secret>``.
``echo-service``
    The typed echo as a service of that server (``MICRO_SERVER``, ``MICRO_AUTH_ID``,
    ``MICRO_AUTH_SECRET`` in the environment): ``Echo.Call`` is ``@public``, ``Echo.Private``
    is not. Prints ``READY <its address>``.

Every HTTP echo answers ``{"message": ...}`` for a body ``{"message": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from micro import Context, Service, public

from .http_load import serve_ceiling
from .transports.micro import EchoRequest, EchoResponse

__all__ = ["TARGETS", "EchoMessage", "asgi_echo", "main"]

TARGETS: tuple[str, ...] = (
    "ceiling",
    "http-aiohttp",
    "http-uvicorn",
    "fastapi",
    "server",
    "echo-service",
)
BENCH_USER = "bench"
BENCH_SCOPE = "bench-echo"
_UNLIMITED = 1e12  # requests a second (and burst) of the gateway's rate limits here

Stop = Callable[[], Awaitable[Any]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class EchoMessage(msgspec.Struct):
    """The JSON body both ways: ``{"message": ...}``."""

    message: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(EchoMessage)
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _echo_body(body: bytes) -> bytes | None:
    """The echo of a JSON body, or None when it is not ``{"message": str}``."""
    try:
        return _encoder.encode(_decoder.decode(body))
    except msgspec.DecodeError:
        return None


async def asgi_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """The minimal JSON echo as a raw ASGI app (any path, any method)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    out = _echo_body(body)
    status = 200 if out is not None else 400
    out = out if out is not None else b'{"detail":"expected {\\"message\\": str}"}'
    headers = [*_JSON_HEADERS, (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": out})


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _serve_ceiling(arg: str) -> tuple[str, Stop, asyncio.Future[Any] | None]:
    server = await serve_ceiling()
    host, port = server.sockets[0].getsockname()[:2]

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return f"{host}:{port}", stop, None


async def _serve_aiohttp(arg: str) -> tuple[str, Stop, asyncio.Future[Any] | None]:
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        out = _echo_body(await request.read())
        if out is None:
            raise web.HTTPBadRequest(text="expected {'message': str}")
        return web.Response(body=out, content_type="application/json")

    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"{host}:{port}", runner.cleanup, None


async def _serve_uvicorn(app: Any) -> tuple[str, Stop, asyncio.Future[Any] | None]:
    """``app`` on uvicorn with httptools, in this process's (uvloop) event loop."""
    import uvicorn

    config = uvicorn.Config(
        app,
        http="httptools",
        loop="none",
        ws="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    sock = _listening_socket()
    host, port = sock.getsockname()[:2]
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)

    async def stop() -> None:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()

    return f"{host}:{port}", stop, task


async def _serve_http_uvicorn(arg: str) -> tuple[str, Stop, asyncio.Future[Any] | None]:
    return await _serve_uvicorn(asgi_echo)


async def _serve_fastapi(arg: str) -> tuple[str, Stop, asyncio.Future[Any] | None]:
    from .gateway_fastapi import app

    return await _serve_uvicorn(app)


async def _serve_server(arg: str) -> tuple[str, Stop, asyncio.Future[Any] | None]:
    from micro.auth import SERVICE, Resource, Rule
    from micro.gateway.ratelimit import Buckets
    from micro.server import MicroServer, ServerOptions

    server = MicroServer(
        ServerOptions(
            address="127.0.0.1:0",
            gateway="127.0.0.1:0",
            data_dir=Path(arg),
            runtime=False,
            auth=True,
        )
    )
    said = io.StringIO()  # the first admin password is printed once: keep it off the run
    try:
        with contextlib.redirect_stderr(said):
            await server.start()
    except BaseException:
        sys.stderr.write(said.getvalue())
        raise
    auth, guard, gateway = server.auth, server.guard, server.gateway
    assert auth is not None and guard is not None and gateway is not None
    # all the load comes from one address and one account: the default limits (100/s)
    # would measure the limiter's 429s. Limits so high they never refuse keep its cost.
    gateway.ip_limit = Buckets(_UNLIMITED, _UNLIMITED)
    gateway.account_limit = Buckets(_UNLIMITED, _UNLIMITED)
    _, echo_secret = await auth.create_account("echo", type="service", scopes=[SERVICE])
    user_secret = secrets.token_urlsafe(24)
    await auth.create_account(BENCH_USER, secret=user_secret, scopes=[BENCH_SCOPE])
    await auth.create_rule(Rule(BENCH_SCOPE, BENCH_SCOPE, Resource("echo", "Echo.*")))
    await guard.reload()
    tokens = await auth.login(BENCH_USER, user_secret)
    extra = f"{server.address} {tokens.access_token} {echo_secret}"
    return f"{gateway.address} {extra}", server.stop, None


class Echo:
    """The handler of ``echo``: ``Echo.Call`` (public) and ``Echo.Private``."""

    @public
    async def call(self, ctx: Context, req: EchoRequest) -> EchoResponse:
        """Answer with the request's message; anyone may call."""
        return EchoResponse(req.message)

    async def private(self, ctx: Context, req: EchoRequest) -> EchoResponse:
        """Answer with the request's message; callers need a rule."""
        return EchoResponse(req.message)


async def _serve_echo_service(arg: str) -> tuple[str, Stop, asyncio.Future[Any] | None]:
    service = Service("echo")
    service.handler(Echo)
    await service.start()
    return service.address, service.stop, None


_SERVE: dict[str, Callable[[str], Awaitable[tuple[str, Stop, asyncio.Future[Any] | None]]]] = {
    "ceiling": _serve_ceiling,
    "http-aiohttp": _serve_aiohttp,
    "http-uvicorn": _serve_http_uvicorn,
    "fastapi": _serve_fastapi,
    "server": _serve_server,
    "echo-service": _serve_echo_service,
}


async def _serve(target: str, arg: str, lifetime: float) -> None:
    address, stop, ended = await _SERVE[target](arg)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    stdin = sys.stdin.fileno()

    def on_stdin() -> None:
        with contextlib.suppress(OSError):
            if os.read(stdin, 4096):
                return
        loop.remove_reader(stdin)
        done.set()

    loop.add_reader(stdin, on_stdin)
    print(f"READY {address}", flush=True)
    waiting: list[asyncio.Future[Any]] = [asyncio.ensure_future(done.wait())]
    if ended is not None:  # uvicorn handles SIGTERM itself: its end is ours
        waiting.append(ended)
    try:
        finished, _ = await asyncio.wait(
            waiting, timeout=lifetime, return_when=asyncio.FIRST_COMPLETED
        )
        if not finished:
            print(f"{target}: lifetime of {lifetime:.0f} s is over", file=sys.stderr)
    finally:
        waiting[0].cancel()
        loop.remove_reader(stdin)
        await asyncio.wait_for(stop(), 10)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_targets", description=__doc__)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("arg", nargs="?", default="")
    parser.add_argument("--lifetime", type=float, default=900.0, help="seconds (default 900)")
    args = parser.parse_args(argv)
    uvloop.run(_serve(args.target, args.arg, args.lifetime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
