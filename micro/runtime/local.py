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
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from ..errors import bad_request, not_found, unavailable
from . import ServiceSpec, ServiceStatus, Status
from ._logs import read_log, rotate, write_note
from ._state import LAUNCHER, ServiceRecord, StateFile, signal_group, stop_orphan

__all__ = ["LocalRuntime"]

log = logging.getLogger("micro.runtime")

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_MAX_NAME = 100
_LOG_MAX_BYTES = 10 * 1024 * 1024


class _Service:
    """One service under supervision: its spec and what runs for it."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.status: Status = "starting"
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at: float | None = None
        self.started_mono = 0.0
        self.restarts = 0
        self.last_exit: int | None = None
        self.error = ""
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def snapshot(self) -> ServiceStatus:
        pid = self.pid()
        spec = self.spec
        return ServiceStatus(
            name=spec.name, version=spec.version, source=spec.source, status=self.status,
            pid=pid, restarts=self.restarts,
            started_at=self.started_at if pid is not None else None,
            uptime=time.monotonic() - self.started_mono if pid is not None else 0.0,
            last_exit=self.last_exit, error=self.error,
        )


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
        self.server = server
        self.python = python
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.log_max_bytes = log_max_bytes
        self.log_dir = self.data_dir / "logs"
        self._state = StateFile(self.data_dir / "runtime" / "services.json")
        self._services: dict[str, _Service] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._started = False
        self._closed = False

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the data dir, stop processes a killed server left behind, and run every
        service of the saved desired state."""
        if self._closed:
            raise unavailable("runtime", "the runtime is closed")
        if self._started:
            return
        self._state.lock()
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            records = self._state.load()
            await asyncio.gather(*(
                stop_orphan(r.pid, r.spec.source, self.stop_timeout) for r in records if r.pid
            ))
            self._services = {r.spec.name: _Service(r.spec) for r in records}
            self._save()
        except BaseException:
            self._state.unlock()
            raise
        self._started = True
        for svc in self._services.values():
            self._supervise(svc)
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
        await asyncio.gather(*(self._stop(svc) for svc in self._services.values()))
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
            if spec.name in self._services:
                from ..errors import conflict

                raise conflict("runtime", f"service {spec.name!r} already exists")
            svc = self._services[spec.name] = _Service(spec)
            try:
                self._save()
            except BaseException:
                del self._services[spec.name]
                raise
            self._supervise(svc)

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
            old = self._get(spec.name)
            await self._stop(old)
            svc = self._services[spec.name] = _Service(spec)
            self._save()
            self._supervise(svc)

    async def delete(self, name: str) -> None:
        """Forget the service and stop its process. Its log files stay in the data dir."""
        self._check_open()
        async with self._lock(name):
            svc = self._get(name)
            del self._services[name]
            self._save()
            await self._stop(svc)

    async def logs(self, name: str, lines: int = 100, follow: bool = False) -> AsyncIterator[str]:
        """The last ``lines`` lines of the service's log; with ``follow``, then every new
        line until the service is deleted or the runtime closes."""
        self._check_open()
        self._get(name)
        if lines < 0:
            raise bad_request("runtime", f"lines must not be negative, got {lines}")

        def alive() -> bool:
            return not self._closed and name in self._services

        async for line in read_log(self._log_path(name), lines, follow, alive):
            yield line

    # -- supervision -----------------------------------------------------------------------

    def _supervise(self, svc: _Service) -> None:
        svc.task = asyncio.get_running_loop().create_task(
            self._run(svc), name=f"micro.runtime:{svc.spec.name}"
        )

    async def _run(self, svc: _Service) -> None:
        """Keep ``svc`` running until it is told to stop."""
        delay = self.backoff_initial
        try:
            while not svc.stopping.is_set():
                try:
                    svc.proc = await self._spawn(svc)
                except OSError as exc:
                    svc.status, svc.error = "crashed", f"cannot start: {exc}"
                    self._note(svc, f"{svc.error}; retrying in {delay:g} s")
                else:
                    started = svc.started_mono = time.monotonic()
                    svc.started_at = time.time()
                    svc.status, svc.error = "running", ""
                    self._save_quietly()
                    code = await self._wait(svc, svc.proc)
                    svc.proc, svc.last_exit = None, code
                    if svc.stopping.is_set():
                        break
                    if time.monotonic() - started >= self.stable_after:
                        delay = self.backoff_initial
                    svc.status, svc.error = "backoff", _describe_exit(code)
                    self._save_quietly()
                    self._note(svc, f"{svc.error}; restarting in {delay:g} s")
                try:
                    await asyncio.wait_for(svc.stopping.wait(), delay)
                    break
                except TimeoutError:
                    pass
                delay = min(delay * 2, self.backoff_max)
                svc.restarts += 1
                svc.status = "starting"
        except asyncio.CancelledError:
            # The loop is going away without close(): do not leave the process behind.
            if svc.proc is not None and svc.proc.returncode is None:
                signal_group(svc.proc.pid, signal.SIGKILL)
            raise
        except Exception as exc:  # a bug here must not pass silently
            log.exception("runtime: supervisor of %s failed", svc.spec.name)
            svc.status, svc.error = "crashed", f"supervisor failed: {exc}"
            return
        svc.status, svc.error = "stopped", ""
        self._note(svc, "stopped")

    async def _spawn(self, svc: _Service) -> asyncio.subprocess.Process:
        spec = svc.spec
        main = Path(spec.source) / "main.py"
        if not main.is_file():
            raise FileNotFoundError(f"{main} does not exist")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        env["MICRO_SERVER"] = self.server
        env["MICRO_SERVICE_NAME"] = spec.name
        env["MICRO_RUNTIME_PARENT"] = str(os.getpid())  # see launch.py
        path = self._log_path(spec.name)
        rotate(path, self.log_max_bytes)
        with open(path, "ab", buffering=0) as out:
            write_note(out, f"starting {spec.name} {spec.version} from {spec.source}")
            return await asyncio.create_subprocess_exec(
                self.python, "-m", LAUNCHER, spec.source,
                cwd=spec.source, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )

    async def _wait(self, svc: _Service, proc: asyncio.subprocess.Process) -> int:
        """The exit code of ``proc``; when the service is told to stop meanwhile, stop the
        process first: SIGTERM, then SIGKILL after ``stop_timeout``."""
        exited = asyncio.ensure_future(proc.wait())
        stop = asyncio.ensure_future(svc.stopping.wait())
        try:
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not exited.done():
            signal_group(proc.pid, signal.SIGTERM)
            await asyncio.wait({exited}, timeout=self.stop_timeout)
            if not exited.done():
                self._note(svc, f"no exit {self.stop_timeout:g} s after SIGTERM; sending SIGKILL")
                signal_group(proc.pid, signal.SIGKILL)
        return await exited

    async def _stop(self, svc: _Service) -> None:
        """Stop supervising ``svc`` and wait for its process to end. Shielded: a cancelled
        caller does not leave the service half stopped."""
        svc.stopping.set()
        if svc.task is not None:
            await asyncio.shield(svc.task)
        svc.status = "stopped"

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise unavailable("runtime", "the runtime is closed")
        if not self._started:
            raise unavailable("runtime", "the runtime is not started (call start())")

    def _get(self, name: str) -> _Service:
        svc = self._services.get(name)
        if svc is None:
            raise not_found("runtime", f"service {name!r} does not exist")
        return svc

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _save(self) -> None:
        self._state.save([
            ServiceRecord(svc.spec, svc.pid()) for _, svc in sorted(self._services.items())
        ])

    def _save_quietly(self) -> None:
        """Record pids; a failure is logged, the service keeps running."""
        try:
            self._save()
        except Exception as exc:
            log.error("runtime: %s", exc)

    def _note(self, svc: _Service, text: str) -> None:
        try:
            with open(self._log_path(svc.spec.name), "ab", buffering=0) as out:
                write_note(out, text)
        except OSError as exc:
            log.warning("runtime: cannot write the log of %s: %s", svc.spec.name, exc)


def _validate(spec: ServiceSpec) -> None:
    """Raise ``bad_request`` naming what is wrong with ``spec``."""
    if len(spec.name) > _MAX_NAME or not _NAME.match(spec.name):
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


def _describe_exit(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown signal"
    return f"killed by signal {-code} ({name})"
