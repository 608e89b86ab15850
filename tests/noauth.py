"""A ``micro_server`` fixture without auth, for tests of other parts (gateway mapping,
registry RPC, tracing, monitor, lifecycle) whose services are handed the server's registry
and so run without auth themselves. Import it into a test module to shadow the plugin's
fixture: ``from tests.noauth import micro_server``. Auth itself is tested in tests/auth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from micro.server import MicroServer
from micro.testing import start_server

__all__ = ["micro_server"]


@pytest_asyncio.fixture
async def micro_server(tmp_path: Path) -> AsyncIterator[MicroServer]:
    """A running in-process micro server with auth off."""
    server = await start_server(tmp_path / "micro-data", auth=False)
    try:
        yield server
    finally:
        await server.stop()
