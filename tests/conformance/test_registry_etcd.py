"""The registry conformance suite against a real etcd (``EtcdRegistry``).

etcd enforces TTLs with its own leases in real time, so ``expire`` here really sleeps and
the expiry cases (``test_a_node_expires_after_its_ttl``, ``test_heartbeats_keep_a_node_alive``)
use a 2 s TTL (etcd 3.4 grants at least ~1.5 s with default settings). Every other case
runs as is. Each test gets its own key prefix on one shared etcd.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from micro.registry.etcd import EtcdRegistry
from micro.testing.conformance.clock import FakeClock
from micro.testing.conformance.registry import Expire, RegistryConformance
from tests.cluster.conftest import etcd_endpoint  # noqa: F401 - the session etcd fixture


@pytest.fixture
def clock() -> FakeClock:
    """Unused by etcd (leases run on etcd's clock); the suite asks for it."""
    return FakeClock()


@pytest.fixture
async def registry(etcd_endpoint: str) -> AsyncIterator[EtcdRegistry]:
    """An empty etcd registry under a fresh prefix."""
    backend = EtcdRegistry([etcd_endpoint], prefix=f"/test-{uuid.uuid4().hex}/registry/")
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def expire() -> Expire:
    """Let time pass for real: etcd expires leases on its own clock."""

    async def run(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return run


class TestEtcdRegistry(RegistryConformance):
    """Every case of the suite, on etcd."""

    TTL = 2.0
