"""Request and response types of the ``sync`` RPC service."""

from __future__ import annotations

import msgspec

from . import MAX_ATTEMPTS, MAX_WAIT, Lease, MapEntry, Task

__all__ = [
    "AcquireRequest",
    "CampaignRequest",
    "DeadResponse",
    "Empty",
    "EnqueueRequest",
    "EnqueueResponse",
    "FailRequest",
    "LeaderResponse",
    "LeaseRequest",
    "LeaseResponse",
    "MapGetResponse",
    "MapKeyRequest",
    "MapListResponse",
    "MapPutRequest",
    "MapRequest",
    "NameRequest",
    "QueueRequest",
    "RenewRequest",
    "TaskRequest",
    "VersionResponse",
]


class Empty(msgspec.Struct):
    """No fields."""


class AcquireRequest(msgspec.Struct):
    """Take lock ``name`` for ``ttl`` s, waiting up to ``wait`` s."""

    name: str
    ttl: float
    wait: float = 0.0
    owner: str | None = None


class RenewRequest(msgspec.Struct):
    """Extend ``lease`` to ``ttl`` s from now."""

    lease: Lease
    ttl: float


class CampaignRequest(msgspec.Struct):
    """Wait up to ``timeout`` s to lead ``election``."""

    election: str
    candidate: str
    ttl: float
    timeout: float = MAX_WAIT


class NameRequest(msgspec.Struct):
    """Names an election."""

    name: str


class LeaderResponse(msgspec.Struct):
    """The leader, if any."""

    leader: str | None = None


class MapRequest(msgspec.Struct):
    """Names a map."""

    map: str


class MapKeyRequest(msgspec.Struct):
    """A key of a map, optionally at a version."""

    map: str
    key: str
    version: int | None = None


class MapGetResponse(msgspec.Struct):
    """A value and its version."""

    value: bytes
    version: int


class MapPutRequest(msgspec.Struct):
    """Set a key, compare-and-set at ``version`` when given."""

    map: str
    key: str
    value: bytes
    version: int | None = None


class VersionResponse(msgspec.Struct):
    """The version just written."""

    version: int


class MapListResponse(msgspec.Struct):
    """Entries of a map."""

    entries: list[MapEntry] = []


class EnqueueRequest(msgspec.Struct):
    """Add a task to ``queue``."""

    queue: str
    body: bytes
    delay: float = 0.0
    max_attempts: int = MAX_ATTEMPTS


class EnqueueResponse(msgspec.Struct):
    """The new task's id."""

    id: str


class LeaseRequest(msgspec.Struct):
    """Lease the next due task of ``queue``."""

    queue: str
    worker: str
    lease_time: float


class LeaseResponse(msgspec.Struct):
    """The leased task, if one was due."""

    task: Task | None = None


class TaskRequest(msgspec.Struct):
    """Names a leased task."""

    task: Task


class FailRequest(msgspec.Struct):
    """A leased task that failed, and why."""

    task: Task
    error: str = ""


class QueueRequest(msgspec.Struct):
    """Names a queue."""

    queue: str


class DeadResponse(msgspec.Struct):
    """Dead-lettered tasks."""

    tasks: list[Task] = []
