"""The local runtime's desired state on disk, and the processes a dead server left behind."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import time
from collections.abc import Collection
from pathlib import Path
from typing import IO

import msgspec

from ..errors import conflict, internal
from . import ServiceSpec

__all__ = ["LAUNCHER", "ServiceRecord", "StateFile", "is_launcher", "signal_group", "stop_orphan"]

log = logging.getLogger("micro.runtime")

LAUNCHER = "micro.runtime.launch"
"""The module every service process runs; its name in a command line marks our processes."""


class ServiceRecord(msgspec.Struct, omit_defaults=True):
    """One service of the desired state, with the pids of its running processes (during a
    rolling update, old and new ones) and the sources they run. ``pid`` is only read: the
    single pid of files written before services had several instances."""

    spec: ServiceSpec
    pids: list[int] = []
    sources: list[str] = []
    pid: int | None = None

    def all_pids(self) -> list[int]:
        """Every pid recorded, in either format."""
        return [*self.pids, *([self.pid] if self.pid is not None else [])]

    def all_sources(self) -> list[str]:
        """Every source a recorded process may run."""
        return [self.spec.source, *self.sources]


class _State(msgspec.Struct):
    services: list[ServiceRecord] = []


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_State)


class StateFile:
    """``services.json``: read at start, replaced atomically on every change, and guarded by
    a lock file so that two runtimes never manage the same data dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[bytes] | None = None

    def lock(self) -> None:
        """Take the data dir for this runtime; ``conflict`` if another runtime holds it."""
        if self._lock is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path.parent / "lock", "ab")  # held open until unlock()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise conflict(
                "runtime", f"another runtime is managing {self.path.parent}"
            ) from None
        self._lock = handle

    def unlock(self) -> None:
        """Let another runtime take the data dir."""
        if self._lock is not None:
            self._lock.close()  # closing the file releases the flock
            self._lock = None

    def load(self) -> list[ServiceRecord]:
        """The saved services (none when nothing was saved yet)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise internal("runtime", f"cannot read {self.path}: {exc}") from exc
        try:
            return _decoder.decode(data).services
        except msgspec.DecodeError as exc:
            # Refuse to start rather than overwrite desired state nobody can read any more.
            raise internal(
                "runtime", f"{self.path} is unreadable ({exc}); fix or remove it"
            ) from exc

    def save(self, records: list[ServiceRecord]) -> None:
        """Replace the saved services: write a temporary file, fsync it, rename it over the
        old one and fsync the directory, so a crash leaves either the old or the new file."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "wb") as out:
                out.write(_encoder.encode(_State(records)))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise internal("runtime", f"cannot save {self.path}: {exc}") from exc


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group ``pid`` leads (a service and whatever it spawned),
    or to the process alone when it leads no group; a process already gone is ignored."""
    try:
        os.killpg(pid, sig)
        return
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        log.warning("cannot signal process group %d: %s", pid, exc)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        log.warning("cannot signal process %d: %s", pid, exc)


def is_launcher(pid: int, sources: Collection[str]) -> bool:
    """True when ``pid`` is alive and runs our launcher on ``source``. Reading the command
    line (rather than only probing the pid) tells a recycled pid and a zombie, whose command
    line is empty, from a live service (running any of ``sources``)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    args = [arg.decode(errors="replace") for arg in raw.split(b"\0")]
    return LAUNCHER in args and any(source in args for source in sources)


async def stop_orphan(pid: int, sources: Collection[str], timeout: float) -> bool:
    """Stop a service process left running by a server that died without stopping it:
    SIGTERM, up to ``timeout`` seconds of grace, then SIGKILL. True when there was one.
    Only Linux can tell our processes apart (through ``/proc``); elsewhere nothing is done."""
    if not is_launcher(pid, sources):
        return False
    log.warning("runtime: stopping orphaned service process %d (%s)", pid, ", ".join(sources))
    signal_group(pid, signal.SIGTERM)
    if await _gone(pid, sources, timeout):
        return True
    signal_group(pid, signal.SIGKILL)
    if not await _gone(pid, sources, 5.0):
        log.error("runtime: orphaned service process %d survived SIGKILL", pid)
    return True


async def _gone(pid: int, sources: Collection[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_launcher(pid, sources):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
