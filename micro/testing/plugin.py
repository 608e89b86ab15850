"""The pytest plugin (registered as ``pytest11`` entry point ``micro``): fixtures.

``micro_registry``: a fresh :class:`~micro.registry.memory.MemoryRegistry`.
``micro_server``: a running in-process ``micro server`` (registry service and gateway on free
loopback ports, no runtime) with its state in a temporary directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ..registry.memory import MemoryRegistry
from ..server import MicroServer

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the async fixture needs pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]


@pytest.fixture
def micro_registry() -> MemoryRegistry:
    """An empty in-memory registry."""
    return MemoryRegistry()


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def micro_server(tmp_path: Path) -> AsyncIterator[MicroServer]:
        """A running in-process micro server."""
        from . import start_server

        server = await start_server(tmp_path / "micro-data")
        try:
            yield server
        finally:
            await server.stop()
