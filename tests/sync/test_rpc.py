"""RPC specifics: waiting calls outlive the client's default timeout; errors keep codes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from micro import Service
from micro.errors import MicroError
from micro.registry.memory import MemoryRegistry
from micro.service.endpoint import endpoints_of
from micro.sync.handler import SyncHandler
from micro.sync.memory import MemorySync
from micro.sync.rpc import RpcSync


@pytest.fixture
async def address() -> AsyncIterator[str]:
    svc = Service("sync", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(SyncHandler(MemorySync()), name="Sync")
    await svc.start()
    yield svc.address
    await svc.stop(grace=1.0)


async def test_wait_longer_than_client_timeout(address: str) -> None:
    holder, waiter = RpcSync(address), RpcSync(address, timeout=0.3)
    try:
        lease = await holder.acquire("jobs", 30)
        pending = asyncio.create_task(waiter.acquire("jobs", 30, wait=3))
        await asyncio.sleep(0.6)  # past the waiter's plain timeout
        await holder.release(lease)
        assert (await asyncio.wait_for(pending, 5)).token == lease.token + 1
    finally:
        await holder.close()
        await waiter.close()


def test_endpoint_names() -> None:
    names = {ep.name: ep.kind.value for ep in endpoints_of(SyncHandler(MemorySync()), "Sync")}
    assert names == {
        **{
            f"Sync.{n}": "unary"
            for n in (
                "Acquire",
                "Renew",
                "Release",
                "Campaign",
                "Resign",
                "Leader",
                "MapGet",
                "MapPut",
                "MapDelete",
                "MapList",
                "Enqueue",
                "Lease",
                "Ack",
                "Fail",
                "Dead",
            )
        },
        "Sync.Observe": "server",
    }


async def test_errors_keep_their_codes(address: str) -> None:
    sync = RpcSync(address)
    try:
        with pytest.raises(MicroError) as err:
            await sync.acquire("jobs", -5)
        assert err.value.code == "bad_request" and err.value.status == 400
        assert "ttl" in err.value.detail
    finally:
        await sync.close()
