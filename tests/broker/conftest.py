"""Fixtures for the broker tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from micro.broker.memory import MemoryBroker

from .broker_support import Hosted, host


@pytest.fixture
async def hosted() -> AsyncIterator[Hosted]:
    """A broker service whose memory broker buffers 4 messages per subscription."""
    running = await host(MemoryBroker(buffer=4))
    try:
        yield running
    finally:
        await running.backing.close()
        await running.service.stop(grace=1.0)
