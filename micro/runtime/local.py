"""The local runtime: each service is a supervised process on this machine.

A service runs as ``<python> -m micro.runtime.launch <source>`` in its source directory, in
a session of its own, with stdout and stderr appended to ``<data_dir>/logs/<name>.log``. A
supervisor task per service restarts it whenever it exits (whatever the exit code: services
are meant to run until told to stop), waiting ``backoff_initial`` seconds, doubling up to
``backoff_max``, back to ``backoff_initial`` once a process stayed up ``stable_after``
seconds. The desired state and the pids of the running processes live in
``<data_dir>/runtime/services.json``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from ..errors import bad_request, conflict, not_found, unavailable
from . import ServiceSpec, ServiceStatus
from ._logs import read_log
from ._state import ServiceRecord, StateFile, stop_orphan
from ._supervisor import Options, Supervisor

__all__ = ["LocalRuntime"]

log = logging.getLogger("micro.runtime")

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_MAX_NAME = 100
_LOG_MAX_BYTES = 10 * 1024 * 1024


class LocalRuntime:
    """Runs services as local processes, supervised, with their desired state kept in
    ``data_dir`` so that a new runtime on the same directory brings them back.

    ``server`` is given to every service as ``MICRO_SERVER``; ``python`` is the interpreter
    that runs them (it must be able to import ``micro``). ``stop_timeout`` is how long a
    stopped service gets between SIGTERM and SIGKILL; a log over ``log_max_bytes`` is rotated
    when its service (re)starts.
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
    ) -> None:
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("backoff_initial must be positive and at most backoff_max")
        if stable_after < 0 or stop_timeout < 0 or log_max_bytes <= 0:
            raise ValueError("stable_after, stop_timeout and log_max_bytes must be positive")
        self.data_dir = Path(data_dir)
        self.options = Options(
            server=server, python=python, log_dir=self.data_dir / "logs",
            backoff_initial=backoff_initial, backoff_max=backoff_max, stable_after=stable_after,
            stop_timeout=stop_timeout, log_max_bytes=log_max_bytes,
        )
        self._state = StateFile(self.data_dir / "runtime" / "services.json")
        self._services: dict[str, Supervisor] = {}
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
                self._services = {r.spec.name: self._supervisor(r.spec) for r in records}
                await asyncio.gather(*(self._stop_orphan(r) for r in records if r.pid))
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

    async def __aenter__(self) -> LocalRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the Runtime protocol --------------------------------------------------------------

    async def create(self, spec: ServiceSpec) -> None:
        """Run a new service; ``conflict`` if the name is taken."""
        self._check_open()
        _validate(spec)
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
        """Stop the service's process and start it again from ``spec`` (its restart count
        starts again from zero)."""
        self._check_open()
        _validate(spec)
        async with self._lock(spec.name):
            self._check_open()
            old = self._get(spec.name)
            await old.stop()
            self._check_open()  # closed meanwhile: do not start anything any more
            svc = self._services[spec.name] = self._supervisor(spec)
            self._save()
            svc.start()

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

        async for line in read_log(self.options.log_path(name), lines, follow, alive):
            yield line

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise unavailable("runtime", "the runtime is closed")
        if not self._started:
            raise unavailable("runtime", "the runtime is not started (call start())")

    def _get(self, name: str) -> Supervisor:
        svc = self._services.get(name)
        if svc is None:
            raise not_found("runtime", f"service {name!r} does not exist")
        return svc

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _stop_orphan(self, record: ServiceRecord) -> None:
        assert record.pid is not None
        if await stop_orphan(record.pid, record.spec.source, self.options.stop_timeout):
            self._services[record.spec.name].note(
                f"stopped process {record.pid}, left running by a runtime that died"
            )

    def _supervisor(self, spec: ServiceSpec) -> Supervisor:
        return Supervisor(spec, self.options, self._save_quietly)

    def _save(self) -> None:
        self._state.save([
            ServiceRecord(svc.spec, svc.pid()) for _, svc in sorted(self._services.items())
        ])

    def _save_quietly(self) -> None:
        """Record a new pid; a failure is logged and the service keeps running."""
        try:
            self._save()
        except Exception as exc:
            log.error("runtime: %s", exc)


def _validate(spec: ServiceSpec) -> None:
    """Raise ``bad_request`` naming what is wrong with ``spec``."""
    if len(spec.name) > _MAX_NAME or not _NAME.fullmatch(spec.name):
        raise bad_request(
            "runtime",
            f"service name {spec.name!r} is invalid: use lowercase letters, digits, '.', '_' "
            f"and '-', starting with a letter or digit, at most {_MAX_NAME} characters",
        )
    if not spec.version or "\n" in spec.version:
        raise bad_request("runtime", f"version {spec.version!r} is invalid")
    source = Path(spec.source)
    if not source.is_absolute():
        raise bad_request("runtime", f"source {spec.source!r} must be an absolute path")
    if not source.is_dir():
        raise bad_request("runtime", f"source {spec.source!r} is not a directory")
    if not (source / "main.py").is_file():
        raise bad_request("runtime", f"source {spec.source!r} has no main.py")
    for key, value in spec.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise bad_request("runtime", f"environment variable {key!r} is invalid")

