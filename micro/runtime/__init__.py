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

__all__ = ["Runtime", "ServiceSpec", "ServiceStatus", "Status"]

Status = Literal["starting", "running", "backoff", "crashed", "stopped"]
"""Where a service is in its life cycle (see the module docstring)."""


class ServiceSpec(msgspec.Struct, omit_defaults=True):
    """What to run: the service ``name`` (``^[a-z0-9][a-z0-9._-]*$``), ``source``, the
    absolute path of a directory holding ``main.py``, a ``version`` label and extra
    environment variables."""

    name: str
    source: str
    version: str = "latest"
    env: dict[str, str] = {}


class ServiceStatus(msgspec.Struct):
    """What runs for one service.

    ``pid``, ``started_at`` (wall-clock time) and ``uptime`` (seconds) describe the current
    process and are empty when there is none. ``restarts`` counts restarts since the service
    was created or updated (or since the runtime started). ``last_exit`` is the exit code of
    the previous process (negative: killed by that signal). ``error`` says why the service is
    not running, when it is not.
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
        """Restart the service ``spec.name`` with a new source, version and env;
        ``not_found`` if it does not exist."""
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
