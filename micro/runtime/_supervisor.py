"""One service under supervision: its process, restarted with backoff until told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec

from . import InstanceStatus, ServiceSpec, Status
from ._git import run_dir
from ._logs import rotate, write_note
from ._state import LAUNCHER, signal_group

__all__ = ["Hooks", "Options", "SpawnError", "Supervisor", "describe_exit"]

log = logging.getLogger("micro.runtime")


@dataclass(frozen=True)
class Options:
    """How the local runtime runs and restarts processes (see ``LocalRuntime``)."""

    server: str
    python: str
    log_dir: Path
    backoff_initial: float
    backoff_max: float
    stable_after: float
    stop_timeout: float
    log_max_bytes: int
    sources_dir: Path | None = None

    def run_dir(self, spec: ServiceSpec) -> str:
        """The directory ``spec`` runs in (its source, or the export of a git source)."""
        if self.sources_dir is None:
            return spec.source
        return run_dir(self.sources_dir, spec.name, spec.source)

    def log_path(self, name: str, index: int = 0) -> Path:
        """Where instance ``index`` of service ``name`` writes its output: ``NAME.log`` for
        the first one, ``NAME.INDEX.log`` for the others."""
        return self.log_dir / (f"{name}.log" if index == 0 else f"{name}.{index}.log")


class SpawnError(Exception):
    """A process cannot be started for a reason of the spec (a missing config path, ...)."""


async def _no_env(spec: ServiceSpec) -> dict[str, str]:
    return dict(spec.env)


def _ignore(*args: object) -> None:
    pass


@dataclass(frozen=True)
class Hooks:
    """How a supervisor talks back to its runtime: ``on_change`` when its process changes
    (to record the pid), ``emit(supervisor, status, detail)`` on every status change, and
    ``resolve_env(spec)`` for the environment of a new process and ``python_for(source,
    log)`` for its interpreter (both may raise SpawnError; no python_for: Options.python)."""

    on_change: Callable[[], None] = _ignore
    emit: Callable[[Supervisor, str, str], None] = _ignore
    resolve_env: Callable[[ServiceSpec], Awaitable[dict[str, str]]] = _no_env
    python_for: Callable[[str, IO[bytes]], Awaitable[str]] | None = None


class Supervisor:
    """Runs one process (instance ``index``) of a service and starts it again whenever it
    exits (whatever the exit code: services are meant to run until told to stop)."""

    def __init__(
        self, spec: ServiceSpec, options: Options, hooks: Hooks = Hooks(), index: int = 0
    ) -> None:
        self.spec = spec
        self.options = options
        self.index = index
        self.hooks = hooks
        self.status: Status = "starting"
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at: float | None = None
        self.started_mono = 0.0
        self.restarts = 0
        self.last_exit: int | None = None
        self.error = ""
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def pid(self) -> int | None:
        """The pid of the running process, if there is one."""
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def snapshot(self) -> InstanceStatus:
        """The instance's status now."""
        pid = self.pid()
        return InstanceStatus(
            index=self.index, version=self.spec.version, status=self.status, pid=pid,
            restarts=self.restarts,
            uptime=time.monotonic() - self.started_mono if pid is not None else 0.0,
            last_exit=self.last_exit, error=self.error,
        )

    def started_wall(self) -> float | None:
        """When the running process started (wall-clock time), if one runs."""
        return self.started_at if self.pid() is not None else None

    def start(self) -> None:
        """Begin supervising (in a task of the running loop)."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"micro.runtime:{self.spec.name}@{self.index}"
        )

    async def stop(self) -> None:
        """Stop supervising and wait for the process to end (SIGTERM, then SIGKILL after
        ``stop_timeout``). Shielded: a cancelled caller does not leave it half stopped."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        self.status = "stopped"

    async def _run(self) -> None:
        opts = self.options
        delay = opts.backoff_initial
        try:
            while not self._stopping.is_set():
                try:
                    self.proc = await self._spawn()
                except (OSError, SpawnError) as exc:
                    self.status, self.error = "crashed", f"cannot start: {exc}"
                    self.note(f"{self.error}; retrying in {delay:g} s")
                    self._emit("crashed", self.error)
                else:
                    started = self.started_mono = time.monotonic()
                    self.started_at = time.time()
                    self.status, self.error = "running", ""
                    self.hooks.on_change()
                    self._emit("started", "")
                    code = await self._wait(self.proc)
                    self._emit("exited", describe_exit(code))  # with the pid of self.proc
                    self.proc, self.last_exit = None, code
                    if self._stopping.is_set():
                        break
                    if time.monotonic() - started >= opts.stable_after:
                        delay = opts.backoff_initial
                    self.status, self.error = "backoff", describe_exit(code)
                    self.hooks.on_change()
                    self.note(f"{self.error}; restarting in {delay:g} s")
                    self._emit("restarting", f"in {delay:g} s")
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                    break
                except TimeoutError:
                    pass
                delay = min(delay * 2, opts.backoff_max)
                self.restarts += 1
                self.status = "starting"
        except asyncio.CancelledError:
            self._kill()  # the loop is going away without stop(): leave no process behind
            raise
        except Exception as exc:  # a bug here must not pass silently
            log.exception("runtime: supervisor of %s failed", self.spec.name)
            self._kill()
            self.status, self.error = "crashed", f"supervisor failed: {exc}"
            return
        self.status, self.error = "stopped", ""
        self.note("stopped")
        self._emit("stopped", "")

    def _emit(self, status: str, detail: str) -> None:
        try:
            self.hooks.emit(self, status, detail)
        except Exception:
            log.exception("runtime: cannot report the status of %s", self.spec.name)

    async def _spawn(self) -> asyncio.subprocess.Process:
        spec, opts = self.spec, self.options
        source = opts.run_dir(spec)
        main = Path(source) / "main.py"
        if not main.is_file():
            raise FileNotFoundError(f"{main} does not exist")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **await self.hooks.resolve_env(spec)}
        env.setdefault("MICRO_LOG_FORMAT", "json")  # structured logs (micro.debug.logs)
        env["MICRO_SERVER"] = opts.server
        env["MICRO_SERVICE_NAME"] = spec.name
        env["MICRO_SERVICE_VERSION"] = spec.version
        env["MICRO_RUNTIME_INSTANCE"] = str(self.index)
        env["MICRO_RUNTIME_LIMITS"] = msgspec.json.encode(spec.limits).decode()
        env["MICRO_RUNTIME_PARENT"] = str(os.getpid())  # see launch.py
        out = self._open_log()
        try:
            python = opts.python
            if self.hooks.python_for is not None:
                python = await self.hooks.python_for(source, out)
            return await asyncio.create_subprocess_exec(
                python, "-m", LAUNCHER, source,
                cwd=source, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )
        finally:
            out.close()  # the child has its own copy

    def _open_log(self) -> IO[bytes]:
        """The service's log, rotated when too big, opened for the process to append to."""
        spec = self.spec
        path = self.options.log_path(spec.name, self.index)
        rotate(path, self.options.log_max_bytes)
        out = open(path, "ab", buffering=0)  # closed by _spawn
        try:
            write_note(out, self._tag(f"starting {spec.name} {spec.version} from {spec.source}"))
        except BaseException:
            out.close()
            raise
        return out

    async def _wait(self, proc: asyncio.subprocess.Process) -> int:
        """The exit code of ``proc``; when told to stop meanwhile, stop the process first."""
        timeout = self.options.stop_timeout
        exited = asyncio.ensure_future(proc.wait())
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                signal_group(proc.pid, signal.SIGTERM)
                await asyncio.wait({exited}, timeout=timeout)
            if not exited.done():
                self.note(f"still running {timeout:g} s after SIGTERM; sending SIGKILL")
                signal_group(proc.pid, signal.SIGKILL)
            return await exited
        except asyncio.CancelledError:
            exited.cancel()
            raise
        finally:
            stop.cancel()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            signal_group(self.proc.pid, signal.SIGKILL)

    def note(self, text: str) -> None:
        """Append a line of the runtime's own to the service's log."""
        name = self.spec.name
        try:
            with open(self.options.log_path(name, self.index), "ab", buffering=0) as out:
                write_note(out, self._tag(text))
        except OSError as exc:
            log.warning("runtime: cannot write the log of %s: %s", name, exc)

    def _tag(self, text: str) -> str:
        if self.index == 0 and self.spec.instances == 1:
            return text
        return f"instance {self.index} ({self.spec.version}): {text}"


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``killed by signal 9 (SIGKILL)``."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown signal"
    return f"killed by signal {-code} ({name})"
