"""The sync conformance suite: what every :class:`~micro.sync.Sync` backend must do.

Subclass :class:`SyncConformance` and provide two fixtures:

- ``sync``: the backend under test, empty, with the default limits of :mod:`micro.sync`;
- ``clock``: the :class:`~micro.testing.conformance.clock.FakeClock` the backing backend
  reads. Tests move it instead of sleeping for TTLs.
"""

from __future__ import annotations

from ._sync_data import DataCases
from ._sync_locks import LockCases, code_of

__all__ = ["SyncConformance", "code_of"]


class SyncConformance(LockCases, DataCases):
    """Every case a sync backend must pass: locks, elections, maps, queues."""
