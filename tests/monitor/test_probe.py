"""The PING/PONG probe against real servers, a dead port and a server that never answers."""

from __future__ import annotations

import asyncio
import socket

import pytest

from micro.monitor.probe import probe

from .support import target_service


async def test_probe_measures_a_round_trip_to_a_live_service() -> None:
    svc = target_service()
    await svc.start()
    try:
        seconds = await probe(svc.address, timeout=2.0)
    finally:
        await svc.stop(grace=1.0)
    assert 0 < seconds < 2.0


async def test_probe_of_a_closed_port_raises_oserror() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OSError):
        await probe(f"127.0.0.1:{port}", timeout=2.0)


async def test_probe_of_a_server_that_never_pongs_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)  # takes the preface and PING, answers nothing
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await probe(f"127.0.0.1:{port}", timeout=0.2)
        assert loop.time() - start < 2.0
    finally:
        server.close()


async def test_probe_of_a_server_that_hangs_up_raises_oserror() -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4)
        writer.close()

    server = await asyncio.start_server(rude, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(OSError):
            await probe(f"127.0.0.1:{port}", timeout=2.0)
    finally:
        server.close()


async def test_probe_rejects_an_address_without_a_port() -> None:
    with pytest.raises(ValueError):
        await probe("localhost", timeout=1.0)
