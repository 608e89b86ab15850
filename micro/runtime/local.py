"""The local runtime: each service is one or more supervised processes on this machine.

Each instance of a service runs as ``<python> -m micro.runtime.launch <source>`` in its
source directory, in a session of its own, with stdout and stderr appended to
``<data_dir>/logs/<name>.log`` (instance 0) or ``<name>.<index>.log``. A supervisor task per
instance restarts it whenever it exits (whatever the exit code: services
are meant to run until told to stop), waiting ``backoff_initial`` seconds, doubling up to
``backoff_max``, back to ``backoff_initial`` once a process stayed up ``stable_after``
seconds. The desired state and the pids of the running processes live in
``<data_dir>/runtime/services.json``.

Optional collaborators: a ``registry`` lets a rolling update wait until each new instance
has registered (a node whose metadata ``pid`` is the new process's pid); ``events`` gets
every status change on topic ``runtime.status``; ``config`` resolves ``config:PATH``
environment values.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from ..config import Config
from ..errors import MicroError, bad_request, conflict, not_found, unavailable
from ..events import Events
from ..registry import Registry
from . import ServiceSpec, ServiceStatus
from ._events import StatusEvents
from ._git import checkout
from ._group import Group
from ._logs import read_logs
from ._registry import is_registered, take_out
from ._spec import prepare, resolve_env
from ._state import ServiceRecord, StateFile, stop_orphan
from ._supervisor import Hooks, Options, SpawnError, Supervisor
from ._venv import Venvs

__all__ = ["LocalRuntime"]

log = logging.getLogger("micro.runtime")

_LOG_MAX_BYTES = 10 * 1024 * 1024


class LocalRuntime:
    """Runs services as local processes, supervised, with their desired state kept in
    ``data_dir`` so that a new runtime on the same directory brings them back.

    ``server`` is given to every service as ``MICRO_SERVER``; ``python`` is the interpreter
    that runs them (it must be able to import ``micro``). ``stop_timeout`` is how long a
    stopped service gets between SIGTERM and SIGKILL; a log over ``log_max_bytes`` is rotated
    when its service (re)starts. ``update_timeout`` bounds how long a rolling update waits
    for each new instance; without a ``registry``, a new instance counts as ready once it
    stayed up ``ready_after`` seconds. With a registry, an old instance is taken out of it
    ``drain_delay`` seconds before it is stopped, so that clients stop choosing it first.
    """

    def __init__(
        self,
        data_dir: Path,
        server: str,
        python: str = sys.executable,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        stable_after: float = 10.0,
        *,
        stop_timeout: float = 10.0,
        log_max_bytes: int = _LOG_MAX_BYTES,
        registry: Registry | None = None,
        events: Events | None = None,
        config: Config | None = None,
        update_timeout: float = 30.0,
        ready_after: float = 1.0,
        drain_delay: float = 1.0,
        credentials: Callable[[ServiceSpec], Awaitable[dict[str, str]]] | None = None,
    ) -> None:
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("backoff_initial must be positive and at most backoff_max")
        if stable_after < 0 or stop_timeout < 0 or log_max_bytes <= 0:
            raise ValueError("stable_after, stop_timeout and log_max_bytes must be positive")
        if update_timeout <= 0 or ready_after < 0 or drain_delay < 0:
            raise ValueError("update_timeout must be positive, ready_after and drain_delay not "
                             "negative")
        self.data_dir = Path(data_dir)
        self.options = Options(
            server=server, python=python, log_dir=self.data_dir / "logs",
            backoff_initial=backoff_initial, backoff_max=backoff_max, stable_after=stable_after,
            stop_timeout=stop_timeout, log_max_bytes=log_max_bytes,
            sources_dir=self.data_dir / "sources",
        )
        self._state = StateFile(self.data_dir / "runtime" / "services.json")
        self.registry = registry
        self.config = config
        self.update_timeout = update_timeout
        self.ready_after = ready_after
        self.drain_delay = drain_delay
        # the environment that logs a new process in (a service account: micro.auth)
        self._credentials = credentials
        self._events = StatusEvents(events)
        self._venvs = Venvs(self.data_dir / "venvs", python)
        self._hooks = Hooks(
            self._save_quietly, self._events.emit, self._resolve_env, self._venvs.python_for
        )
        self._services: dict[str, Group] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._start_lock = asyncio.Lock()
        self._started = False
        self._closed = False

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the data dir, stop processes a killed server left behind, and run every
        service of the saved desired state."""
        async with self._start_lock:
            if self._closed:
                raise unavailable("runtime", "the runtime is closed")
            if self._started:
                return
            self._state.lock()
            try:
                self.options.log_dir.mkdir(parents=True, exist_ok=True)
                records = self._state.load()
                for record in records:
                    await self._export(record.spec)
                self._services = {r.spec.name: self._supervisor(r.spec) for r in records}
                await asyncio.gather(*(self._stop_orphan(r) for r in records))
                self._save()
            except BaseException:
                self._state.unlock()
                raise
            self._started = True
            for svc in self._services.values():
                svc.start()
        if records:
            log.info("runtime: restored %d services from %s", len(records), self._state.path)

    async def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after ``stop_timeout``) but keep the
        desired state, so the services run again at the next :meth:`start`."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        await asyncio.gather(*(svc.stop() for svc in self._services.values()))
        try:
            self._save()  # the same services, without pids
        finally:
            self._state.unlock()
            await self._events.close()

    async def __aenter__(self) -> LocalRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the Runtime protocol --------------------------------------------------------------

    async def create(self, spec: ServiceSpec) -> None:
        """Run a new service; ``conflict`` if the name is taken."""
        self._check_open()
        spec = await self._prepare(spec)
        async with self._lock(spec.name):
            self._check_open()  # the runtime may have closed while this waited
            if spec.name in self._services:
                raise conflict("runtime", f"service {spec.name!r} already exists")
            svc = self._services[spec.name] = self._supervisor(spec)
            try:
                self._save()
            except BaseException:
                del self._services[spec.name]
                raise
            svc.start()

    async def read(self, name: str | None = None) -> list[ServiceStatus]:
        """The status of service ``name``, or of every service (sorted by name)."""
        self._check_open()
        if name is not None:
            return [self._get(name).snapshot()]
        return [self._services[n].snapshot() for n in sorted(self._services)]

    async def update(self, spec: ServiceSpec) -> None:
        """Rolling update: for each instance, start one from ``spec``, wait until it is
        ready (registered in the registry when there is one), then stop the old one. When a
        new instance is not ready within ``update_timeout`` (or exits first), it is
        stopped, the instances already replaced are brought back from the old spec, and
        ``unavailable`` says why; the service keeps its old spec."""
        self._check_open()
        self._get(spec.name)
        spec = await self._prepare(spec)
        async with self._lock(spec.name):
            self._check_open()
            group = self._get(spec.name)
            old = group.spec
            await group.roll(spec, self._ready, self.update_timeout, self._unregister)
            self._save()
            detail = f"{old.version} -> {spec.version}"
            self._events.publish(spec.name, None, "updated", None, detail)

    async def delete(self, name: str) -> None:
        """Forget the service and stop its process. Its log files stay in the data dir."""
        self._check_open()
        async with self._lock(name):
            self._check_open()
            svc = self._get(name)
            del self._services[name]
            self._save()
            await svc.stop()

    async def logs(self, name: str, lines: int = 100, follow: bool = False) -> AsyncIterator[str]:
        """The last ``lines`` lines of the service's log; with ``follow``, then every new
        line until the service is deleted or the runtime closes."""
        self._check_open()
        self._get(name)
        if lines < 0:
            raise bad_request("runtime", f"lines must not be negative, got {lines}")

        def alive() -> bool:
            return not self._closed and name in self._services

        paths = [self.options.log_path(name, i) for i in self._get(name).log_indexes()]
        async for line in read_logs(paths, lines, follow, alive):
            yield line

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise unavailable("runtime", "the runtime is closed")
        if not self._started:
            raise unavailable("runtime", "the runtime is not started (call start())")

    def _get(self, name: str) -> Group:
        svc = self._services.get(name)
        if svc is None:
            raise not_found("runtime", f"service {name!r} does not exist")
        return svc

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _stop_orphan(self, record: ServiceRecord) -> None:
        sources, timeout = record.all_sources(), self.options.stop_timeout
        for pid in record.all_pids():
            if await stop_orphan(pid, sources, timeout):
                self._services[record.spec.name].members[0].note(
                    f"stopped process {pid}, left running by a runtime that died"
                )

    def _supervisor(self, spec: ServiceSpec) -> Group:
        return Group(spec, self.options, self._hooks)

    async def _prepare(self, spec: ServiceSpec) -> ServiceSpec:
        return await prepare(spec, self.data_dir / "sources")

    async def _export(self, spec: ServiceSpec) -> None:
        """Export a restored git source again if its copy is gone (a failure is logged: the
        service then fails to start, with the reason in its log)."""
        try:
            await checkout(self.data_dir / "sources", spec.name, spec.source)
        except MicroError as exc:
            log.error("runtime: %s: %s", spec.name, exc.detail)

    async def _resolve_env(self, spec: ServiceSpec) -> dict[str, str]:
        env = await resolve_env(spec, self.config)
        if self._credentials is not None:
            try:
                env.update(await self._credentials(spec))
            except MicroError as exc:
                raise SpawnError(f"cannot create the service account: {exc.detail}") from None
        return env

    async def _ready(self, member: Supervisor) -> bool:
        """True once the new instance can take calls: registered, or up for a while."""
        pid = member.pid()
        if pid is None:
            return False
        if self.registry is None:
            return member.snapshot().uptime >= self.ready_after
        return await is_registered(self.registry, member.spec.name, pid)

    async def _unregister(self, member: Supervisor) -> None:
        """Take an old instance out of the registry and give clients ``drain_delay`` seconds
        to notice before it is stopped (it deregisters itself on SIGTERM, but clients may
        still be about to call it then)."""
        pid = member.pid()
        if self.registry is not None and pid is not None:
            if await take_out(self.registry, member.spec.name, pid):
                await asyncio.sleep(self.drain_delay)

    def _save(self) -> None:
        self._state.save([
            ServiceRecord(svc.spec, svc.pids(), svc.sources())
            for _, svc in sorted(self._services.items())
        ])

    def _save_quietly(self) -> None:
        """Record a new pid; a failure is logged and the service keeps running."""
        try:
            self._save()
        except Exception as exc:
            log.error("runtime: %s", exc)

