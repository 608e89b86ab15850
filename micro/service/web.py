"""Serve an ASGI application (FastAPI, Starlette, ...) next to a service's RPC endpoints.

:func:`serve_asgi` runs the app with uvicorn on a free port and returns its base URL and a
function that stops it. A service that serves HTTP puts that URL into its node metadata
under ``web``; the gateway then reverse-proxies ``/web/{service}/...`` to it (see
:mod:`micro.gateway.webproxy`), WebSockets included.

uvicorn comes with the ``web`` extra (``pip install 'micro-py[web]'``). It runs inside the
service's event loop and leaves signal handling to the service: stopping is the service's
call. Its lifespan protocol runs (``lifespan="on"``): the app's startup runs before
:func:`serve_asgi` returns (a failing startup raises ``RuntimeError``), its shutdown when
stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Any

__all__ = ["serve_asgi"]

Stop = Callable[[], Awaitable[None]]


async def serve_asgi(
    app: Any,
    host: str = "127.0.0.1",
    *,
    port: int = 0,
    grace: int = 5,
) -> tuple[str, Stop]:
    """Start serving the ASGI ``app`` on ``host``:``port`` (0: a free port) and return
    ``(base URL, stop)``, e.g. ``("http://127.0.0.1:8123", stop)``. ``await stop()`` stops
    accepting connections, waits up to ``grace`` seconds for requests in progress (then
    cancels them) and runs the app's shutdown."""
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("serving HTTP needs uvicorn: pip install 'micro-py[web]'") from None

    class Server(uvicorn.Server):
        """A uvicorn server that leaves the process's signals alone and says when its
        startup is over."""

        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self.ready = asyncio.Event()
            self.failure: str | None = None

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield  # the service handles SIGINT and SIGTERM

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets)
            except SystemExit:  # uvicorn exits the process when startup fails
                self.failure = "the app's startup failed or the address is taken"
                self.should_exit = True
            finally:
                self.ready.set()

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_config=None,  # keep the process's logging as it is
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=grace,
    )
    server = Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    ready = asyncio.ensure_future(server.ready.wait())
    try:
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
        await asyncio.gather(ready, return_exceptions=True)
    if task.done() or server.failure is not None or not server.servers:
        await asyncio.gather(task, return_exceptions=True)
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError(f"the ASGI app did not start: {task.exception()}")
        raise RuntimeError(f"the ASGI app did not start: {server.failure or 'no listener'}")
    bound = server.servers[0].sockets[0].getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    url = f"http://{shown}:{bound[1]}"

    async def stop() -> None:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)

    return url, stop
