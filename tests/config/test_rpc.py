"""The config service over RPC: raw requests checked on the server, defaults, failures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from micro import Client, Service
from micro.config.memory import MemoryConfig
from micro.config.rpc import RpcConfig
from micro.errors import MicroError
from micro.testing.conformance.config import next_changes

from .config_support import config_service


@pytest.fixture
async def served() -> AsyncIterator[tuple[Service, MemoryConfig]]:
    backend = MemoryConfig()
    svc = config_service(backend)
    await svc.start()
    try:
        yield svc, backend
    finally:
        await svc.stop(grace=1.0)
        await backend.close()


async def test_the_server_checks_raw_requests(served: tuple[Service, MemoryConfig]) -> None:
    svc, backend = served
    async with Client() as client:

        async def call(endpoint: str, body: dict[str, object]) -> MicroError:
            with pytest.raises(MicroError) as err:
                await client.call("config", endpoint, body, address=svc.address)
            return err.value

        assert (
            await call("Config.Set", {"path": "a", "value": float("nan")})
        ).code == "bad_request"
        assert (await call("Config.Set", {"path": "a b", "value": 1})).code == "bad_request"
        assert (await call("Config.Set", {"path": 5, "value": 1})).code == "bad_request"
        assert (await call("Config.Set", {"path": "a"})).code == "bad_request"  # no value
        assert (await call("Config.Get", {"namespace": "a.b"})).code == "bad_request"
        big = {"path": "a", "value": "x" * (300 * 1024)}
        assert (await call("Config.Set", big)).code == "too_large"
        await client.call("config", "Config.Set", {"path": "x", "value": [1]}, address=svc.address)
        got = await client.call("config", "Config.Get", {"path": "x"}, address=svc.address)
    assert got == {"value": [1]}
    assert await backend.get("micro") == {"x": [1]}  # the default namespace


async def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = RpcConfig(f"127.0.0.1:{port}")
    try:
        with pytest.raises(MicroError) as err:
            await cfg.get("ns")
        assert err.value.code == "unavailable"
        watcher = cfg.watch("ns")
        with pytest.raises(MicroError) as err:
            await asyncio.wait_for(anext(watcher), 5)
        assert err.value.code == "unavailable"
    finally:
        await cfg.close()


async def test_closing_the_client_ends_its_watchers(served: tuple[Service, MemoryConfig]) -> None:
    svc, _ = served
    cfg = RpcConfig(svc.address)
    watcher = cfg.watch("ns")
    await cfg.set("ns", "a", 1)
    assert [c.value for c in await next_changes(watcher, 1)] == [1]
    waiting = asyncio.ensure_future(anext(watcher))
    await asyncio.sleep(0.01)
    await cfg.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 5)


async def test_values_are_checked_before_they_are_sent() -> None:
    cfg = RpcConfig("127.0.0.1:1")  # never reached: the value is refused first
    try:
        with pytest.raises(MicroError, match="64 bits"):
            await cfg.set("ns", "a", 2**70)
        with pytest.raises(MicroError, match="not JSON"):
            await cfg.set("ns", "a", {1, 2})
    finally:
        await cfg.close()
