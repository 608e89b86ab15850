"""The config conformance suite against every backend: memory, SQLite, and RPC (a real
``config`` service over SQLite, called through :class:`RpcConfig`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from micro import Service
from micro.config import Config
from micro.config.handler import ConfigHandler
from micro.config.keys import generate_key
from micro.config.memory import MemoryConfig
from micro.config.rpc import RpcConfig
from micro.config.sqlite import SqliteConfig
from micro.registry.memory import MemoryRegistry
from micro.testing.conformance.config import ConfigConformance


@pytest.fixture(params=["memory", "sqlite", "rpc"])
async def config(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Config]:
    """A fresh backend of each kind."""
    key = generate_key()
    if request.param == "memory":
        memory = MemoryConfig(key)
        yield memory
        await memory.close()
        return
    sqlite = SqliteConfig(tmp_path / "config.db", key)
    if request.param == "sqlite":
        yield sqlite
        await sqlite.close()
        return
    svc = Service("config", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(ConfigHandler(sqlite), name="Config")
    await svc.start()
    client = RpcConfig(svc.address)
    try:
        yield client
    finally:
        await client.close()
        await svc.stop(grace=1.0)
        await sqlite.close()


class TestConfig(ConfigConformance):
    """Every conformance case, on every backend."""

    @pytest.fixture
    async def config_peer(self, config: Config) -> AsyncIterator[Config]:
        """Over RPC, a second client on its own connection; else the backend itself."""
        if not isinstance(config, RpcConfig):
            yield config
            return
        peer = RpcConfig(config.address)
        try:
            yield peer
        finally:
            await peer.close()
