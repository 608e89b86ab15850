"""The registry conformance suite against memory and rpc (a real ``registry`` service
hosting a MemoryRegistry on the fake clock, called through ``RpcRegistry``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from micro import Service
from micro.registry import Registry
from micro.registry.handler import RegistryHandler
from micro.registry.memory import MemoryRegistry
from micro.registry.rpc import RpcRegistry
from micro.testing.conformance.clock import FakeClock
from micro.testing.conformance.registry import Expire, RegistryConformance


@pytest.fixture
def clock() -> FakeClock:
    """The time the memory registry reads."""
    return FakeClock()


@pytest.fixture
def memory(clock: FakeClock) -> MemoryRegistry:
    """The in-process registry every backend under test ends up in."""
    return MemoryRegistry(clock=clock)


@pytest.fixture(params=["memory", "rpc"])
async def registry(
    request: pytest.FixtureRequest, memory: MemoryRegistry
) -> AsyncIterator[Registry]:
    """An empty registry of each backend."""
    if request.param == "memory":
        yield memory
        await memory.close()
        return
    svc = Service("registry", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(RegistryHandler(memory), name="Registry")
    await svc.start()
    rpc = RpcRegistry(svc.address)
    try:
        yield rpc
    finally:
        await rpc.close()
        await svc.stop()
        await memory.close()


@pytest.fixture
def expire(clock: FakeClock, memory: MemoryRegistry) -> Expire:
    """Let time pass: move the fake clock, then reap (what the server does every second)."""

    async def run(seconds: float) -> None:
        clock.advance(seconds)
        memory.reap()

    return run


class TestRegistry(RegistryConformance):
    """Every case of the suite, on every backend."""
