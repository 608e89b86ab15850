"""Watchers: bounded queues for slow readers (in process and over RPC), clean endings."""

from __future__ import annotations

import asyncio

import pytest

from micro.config import WATCH_BUFFER, WATCH_BYTES
from micro.config.memory import MemoryConfig
from micro.config.rpc import RpcConfig
from micro.errors import MicroError
from micro.testing import eventually
from micro.testing.conformance.config import next_changes

from .config_support import config_service


async def test_a_slow_watcher_is_ended_with_an_error_not_unbounded_memory() -> None:
    cfg = MemoryConfig()
    slow = cfg.watch("ns", "n")
    for i in range(WATCH_BUFFER + 10):
        await cfg.set("ns", "n", i)
    assert cfg.watchers() == 0  # dropped at once, no longer fed
    got = [c.value async for c in _until_error(slow)]
    assert got == list(range(WATCH_BUFFER))  # what was queued, then the error
    with pytest.raises(MicroError) as err:
        await anext(slow)
    assert err.value.code == "unavailable" and "watch again" in err.value.detail


async def _until_error(watcher: object) -> object:
    while True:
        try:
            yield await anext(watcher)  # type: ignore[call-overload]
        except MicroError:
            return


async def test_watchers_are_also_bounded_in_bytes() -> None:
    cfg = MemoryConfig()
    slow = cfg.watch("ns")
    big = "x" * (200 * 1024)
    writes = WATCH_BYTES // len(big) + 2
    for i in range(writes):
        await cfg.set("ns", f"k{i % 4}", big)
    with pytest.raises(MicroError) as err:
        for _ in range(writes):
            await anext(slow)
    assert err.value.code == "unavailable"


async def test_a_fast_watcher_is_not_affected_by_a_slow_one() -> None:
    cfg = MemoryConfig()
    slow = cfg.watch("ns")
    fast = cfg.watch("ns")
    seen = []
    for i in range(WATCH_BUFFER + 100):
        await cfg.set("ns", "n", i)
        seen.append((await anext(fast)).value)
    assert seen == list(range(WATCH_BUFFER + 100))
    await fast.aclose()  # type: ignore[attr-defined]
    await slow.aclose()  # type: ignore[attr-defined]


async def test_closing_the_backend_ends_watchers() -> None:
    cfg = MemoryConfig()
    watcher = cfg.watch("ns")
    waiting = asyncio.ensure_future(anext(watcher))
    await asyncio.sleep(0)
    await cfg.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 5)
    late = cfg.watch("ns")  # after close: already over
    assert [c async for c in late] == []


async def test_a_slow_rpc_watcher_is_ended_and_released_on_the_server() -> None:
    backend = MemoryConfig()
    svc = config_service(backend)
    await svc.start()
    reader, writer = RpcConfig(svc.address), RpcConfig(svc.address)
    try:
        slow = reader.watch("ns", "big")
        await reader.get("ns")  # the watch is live
        chunk = "x" * 1024
        for i in range(WATCH_BUFFER * 3):
            await writer.set("ns", "big", f"{i}:{chunk}")
            if not backend.watchers():  # the client gave up the stream
                break
        await eventually(lambda: not backend.watchers(), timeout=5, message="released")
        count = 0
        with pytest.raises(MicroError) as err:
            async for change in slow:
                assert change.value.startswith(f"{count}:")  # in order, none skipped
                count += 1
        assert err.value.code == "unavailable" and "watch again" in err.value.detail
        assert count == WATCH_BUFFER
    finally:
        await reader.close()
        await writer.close()
        await svc.stop(grace=1.0)


async def test_closing_an_rpc_watcher_releases_it_on_the_server() -> None:
    backend = MemoryConfig()
    svc = config_service(backend)
    await svc.start()
    client = RpcConfig(svc.address)
    try:
        watcher = client.watch("ns")
        await client.set("ns", "a", 1)
        assert [c.value for c in await next_changes(watcher, 1)] == [1]
        assert backend.watchers()
        await watcher.aclose()
        await eventually(lambda: not backend.watchers(), timeout=5, message="released")
        assert [c async for c in watcher] == []
    finally:
        await client.close()
        await svc.stop(grace=1.0)


async def test_an_rpc_watch_ends_when_the_server_goes() -> None:
    backend = MemoryConfig()
    svc = config_service(backend)
    await svc.start()
    client = RpcConfig(svc.address)
    try:
        watcher = client.watch("ns")
        await client.get("ns")
        await svc.stop(grace=0.5)
        await backend.close()
        ended: list[object] = []
        try:
            async for change in watcher:
                ended.append(change)
        except MicroError as err:
            ended.append(err.code)
        assert ended in ([], ["unavailable"], ["internal"])
    finally:
        await client.close()
