"""The sync conformance suite against a real etcd (``EtcdSync``).

Time is the suite's :class:`FakeClock` exactly as for the memory and SQLite backends: lock
expiry, task due times and leases are decided by the injected clock, not by etcd leases, so
nothing sleeps for a TTL. Each test gets its own key prefix on one shared etcd.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from micro.sync.etcd import EtcdSync
from micro.testing.conformance.clock import FakeClock
from micro.testing.conformance.sync import SyncConformance
from tests.cluster.conftest import etcd_endpoint  # noqa: F401 - the session etcd fixture


@pytest.fixture
def clock() -> FakeClock:
    """The clock every time-based decision of the backend reads."""
    return FakeClock()


@pytest.fixture
async def sync(etcd_endpoint: str, clock: FakeClock) -> AsyncIterator[EtcdSync]:
    """An empty EtcdSync under a fresh prefix."""
    backend = EtcdSync([etcd_endpoint], prefix=f"/test-{uuid.uuid4().hex}/sync/", clock=clock)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


class TestEtcdSync(SyncConformance):
    """Every case of the suite, on etcd."""
