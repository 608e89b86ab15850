"""Runtime: run user services as supervised processes (Micro v3's ``micro run``).

The runtime keeps a *desired state*, the list of :class:`ServiceSpec` it was asked to run,
and makes reality follow it: each service runs as a process, a process that exits is
started again with exponential backoff, and the desired state survives a restart of the
server, so the services come back with it. :class:`ServiceStatus` reports what actually
runs. A service's stdout and stderr are its log, read with :meth:`Runtime.logs`.

Status of a service::

    starting ──► running ──(exits)──► backoff ──(delay)──► starting ...
        │
        └─(cannot even be spawned: source gone, ...)──► crashed ──(delay)──► starting ...
    stopped: not supervised (the runtime is closing or the service is being deleted)

Backends: :mod:`micro.runtime.local` (processes on this machine) and
:mod:`micro.runtime.rpc` (the client of the ``runtime`` service that ``micro server`` hosts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol, runtime_checkable

import msgspec

__all__ = [
    "MAX_INSTANCES", "InstanceStatus", "Limits", "Runtime", "ServiceSpec", "ServiceStatus",
    "Status",
]

MAX_INSTANCES = 32
"""The most processes one service may run (``ServiceSpec.instances``)."""

Status = Literal["starting", "running", "backoff", "crashed", "stopped"]
"""Where a service is in its life cycle (see the module docstring)."""


class Limits(msgspec.Struct, omit_defaults=True, frozen=True):
    """Resource limits of each process of a service, applied by the launcher before
    ``main.py`` runs: ``memory_mb`` caps its address space (``RLIMIT_AS``), ``open_files``
    the number of file descriptors it may hold (``RLIMIT_NOFILE``)."""

    memory_mb: int | None = None
    open_files: int | None = None


class ServiceSpec(msgspec.Struct, omit_defaults=True):
    """What to run: the service ``name`` (``^[a-z0-9][a-z0-9._-]*$``), ``source``, the
    absolute path of a directory holding ``main.py``, a ``version`` label, extra
    environment variables, how many ``instances`` (processes, 1 to :data:`MAX_INSTANCES`)
    and resource ``limits`` per process.

    An ``env`` value ``config:PATH`` is replaced, each time a process starts, by the value
    at ``PATH`` in the ``micro`` namespace of the runtime's config (secrets included; a
    value that is not a string is passed as JSON); a missing path keeps the process from
    starting."""

    name: str
    source: str
    version: str = "latest"
    env: dict[str, str] = {}
    instances: int = 1
    limits: Limits = Limits()


class InstanceStatus(msgspec.Struct):
    """One process of a service: its ``index`` (0 .. instances-1), the ``version`` it runs
    (during a rolling update, old and new ones coexist) and the fields of
    :class:`ServiceStatus` for that process alone."""

    index: int
    version: str
    status: Status
    pid: int | None = None
    restarts: int = 0
    uptime: float = 0.0
    last_exit: int | None = None
    error: str = ""


class ServiceStatus(msgspec.Struct):
    """What runs for one service.

    ``instances`` lists its processes. The other fields sum them up: ``status`` is
    ``running`` when every instance runs (otherwise the status of the first one that does
    not), ``restarts`` the sum of their restarts, ``last_exit`` and ``error`` those of the
    first instance that has one. ``pid``, ``started_at`` (wall-clock time) and ``uptime``
    (seconds) describe the first instance's process and are empty when there is none.
    Restarts count since the service was created or updated (or since the runtime started).
    ``last_exit`` is the exit code of the previous process (negative: killed by that signal).
    ``error`` says why the service is not running, when it is not.
    """

    name: str
    version: str
    source: str
    status: Status
    pid: int | None = None
    restarts: int = 0
    started_at: float | None = None
    uptime: float = 0.0
    last_exit: int | None = None
    error: str = ""
    instances: list[InstanceStatus] = []


@runtime_checkable
class Runtime(Protocol):
    """What every runtime backend provides."""

    async def create(self, spec: ServiceSpec) -> None:
        """Start running ``spec``; ``conflict`` if a service of that name exists,
        ``bad_request`` if the spec is invalid."""
        ...

    async def read(self, name: str | None = None) -> list[ServiceStatus]:
        """The status of one service (``not_found`` if unknown) or of all of them."""
        ...

    async def update(self, spec: ServiceSpec) -> None:
        """Replace the service's processes by ones run from ``spec``, one at a time (a
        rolling update); ``not_found`` if it does not exist, ``unavailable`` (the old
        processes kept) if a new one does not come up."""
        ...

    async def delete(self, name: str) -> None:
        """Stop the service and forget it; ``not_found`` if it does not exist."""
        ...

    def logs(self, name: str, lines: int = 100, follow: bool = False) -> AsyncIterator[str]:
        """The last ``lines`` lines of the service's log, then (``follow``) every new line
        until the service is deleted or the runtime closes."""
        ...

    async def start(self) -> None:
        """Bring the desired state back (services created before a restart run again)."""
        ...

    async def close(self) -> None:
        """Stop every process but keep the desired state for the next :meth:`start`."""
        ...
