"""Acknowledged store writes and event publishes survive SIGKILL of the server.

The test writes and publishes through the real RPC clients against a real `micro server`
process, as fast as it can with many in flight, kills the server with SIGKILL in the middle,
restarts it on the same data dir and counts: every acknowledged write and event must be there.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

from micro.errors import MicroError
from micro.events.rpc import RpcEvents
from micro.store.rpc import RpcStore
from micro.testing import local_admin_client

from .conftest import ServerProcess

DB, TABLE, TOPIC = "durability", "writes", "durability.events"


async def _hammer(address: str, data: Path, stop_after: float) -> tuple[set[str], set[int]]:
    """Write and publish with 16 of each in flight until the server dies; return what was
    acknowledged."""
    async with local_admin_client(address, data) as client:
        return await _hammer_with(RpcStore(address, client), RpcEvents(address, client), stop_after)


async def _hammer_with(
    store: RpcStore, events: RpcEvents, stop_after: float
) -> tuple[set[str], set[int]]:
    written: set[str] = set()
    published: set[int] = set()
    deadline = time.monotonic() + stop_after

    async def writer(worker: int) -> None:
        for i in range(100_000):
            key = f"w{worker}-{i}"
            try:
                await store.write(DB, TABLE, key, key.encode())
            except MicroError:
                return
            written.add(key)
            if time.monotonic() > deadline:
                return

    async def publisher(worker: int) -> None:
        for i in range(100_000):
            try:
                ack = await events.publish(TOPIC, f"p{worker}-{i}".encode())
            except MicroError:
                return
            published.add(ack.sequence)
            if time.monotonic() > deadline:
                return

    try:
        await asyncio.gather(*(writer(w) for w in range(16)), *(publisher(w) for w in range(16)))
    finally:
        await store.close()
        await events.close()
    return written, published


async def _present(address: str, data: Path) -> tuple[set[str], set[int]]:
    async with local_admin_client(address, data) as client:
        return await _present_with(RpcStore(address, client), RpcEvents(address, client))


async def _present_with(store: RpcStore, events: RpcEvents) -> tuple[set[str], set[int]]:
    try:
        keys = set(await store.list_keys(DB, TABLE, limit=1_000_000))
        sequences: set[int] = set()
        start = 1
        while True:
            batch = await events.read(TOPIC, start=start, limit=1000)
            if not batch:
                break
            sequences.update(e.sequence for e in batch)
            start = batch[-1].sequence + 1
        return keys, sequences
    finally:
        await store.close()
        await events.close()


def test_acknowledged_writes_and_events_survive_sigkill(server: ServerProcess) -> None:
    address = f"127.0.0.1:{server.rpc_port}"
    assert server.proc is not None
    proc = server.proc

    def kill_soon() -> None:
        time.sleep(1.5)
        proc.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_soon)
    killer.start()
    written, published = asyncio.run(_hammer(address, server.data_dir, stop_after=30.0))
    killer.join()
    proc.wait(10)
    assert len(written) > 100 and len(published) > 100, (len(written), len(published))

    server.proc = None
    server.start()
    keys, sequences = asyncio.run(_present(address, server.data_dir))
    assert written <= keys, f"{len(written - keys)} acknowledged writes lost"
    assert published <= sequences, f"{len(published - sequences)} acknowledged events lost"
