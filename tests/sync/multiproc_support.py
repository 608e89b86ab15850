"""Processes for the multi-process lock test, run as ``python multiproc_support.py ...``.

- ``server DB``: hosts ``Sync`` over ``SqliteSync(DB)`` on 127.0.0.1, prints its address,
  serves until stdin closes.
- ``contend ADDRESS OUT N``: acquires lock ``shared`` N times; for each holding appends
  ``token start end`` (monotonic ns, inside the holding) to OUT.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time


async def server(db: str) -> None:
    from micro import Service
    from micro.registry.memory import MemoryRegistry
    from micro.sync.handler import SyncHandler
    from micro.sync.sqlite import SqliteSync

    backend = SqliteSync(db)
    await backend.start()
    svc = Service("sync", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(SyncHandler(backend), name="Sync")
    await svc.start()
    print(svc.address, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await svc.stop(grace=1.0)
    await backend.close()


async def contend(address: str, out: str, rounds: int) -> None:
    from micro.sync.rpc import RpcSync

    sync = RpcSync(address)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for _ in range(rounds):
            lease = await sync.acquire("shared", 10, wait=60)
            start = time.monotonic_ns()
            await asyncio.sleep(0.001)
            end = time.monotonic_ns()
            os.write(fd, f"{lease.token} {start} {end}\n".encode())
            await sync.release(lease)
    finally:
        os.close(fd)
        await sync.close()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(server(sys.argv[2]))
    else:
        asyncio.run(contend(sys.argv[2], sys.argv[3], int(sys.argv[4])))
