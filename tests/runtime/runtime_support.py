"""Helpers for the runtime tests: service sources, process probes, status polling."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

from micro.runtime import Runtime, ServiceStatus
from micro.runtime.local import LocalRuntime
from micro.testing import eventually

SLEEPER = """
    import os, sys, time
    print("hello from", os.environ.get("MICRO_SERVICE_NAME"), flush=True)
    while True:
        time.sleep(0.1)
"""

WAIT = 15.0  # overall deadline of any wait in these tests


def make_runtime(data_dir: Path, **options: Any) -> LocalRuntime:
    """A runtime with quick restarts, for tests."""
    settings: dict[str, Any] = {
        "server": "127.0.0.1:18081", "backoff_initial": 0.1, "backoff_max": 0.4,
        "stable_after": 5.0, "stop_timeout": 3.0,
    }
    settings.update(options)
    return LocalRuntime(data_dir, **settings)


def write_source(root: Path, name: str, code: str) -> Path:
    """A service directory ``root/name`` whose main.py is ``code``."""
    source = root / name
    source.mkdir(parents=True, exist_ok=True)
    (source / "main.py").write_text(textwrap.dedent(code))
    return source


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def status(rt: Runtime, name: str) -> ServiceStatus:
    """The status of one service."""
    [found] = await rt.read(name)
    return found


async def wait_status(
    rt: Runtime, name: str, *, status_is: str = "running", restarts: int | None = None,
    not_pid: int | None = None, timeout: float = WAIT,
) -> ServiceStatus:
    """Wait until the service has the given status (and restart count, and a pid other than
    ``not_pid``); return that status."""
    seen: list[ServiceStatus] = []

    async def check() -> bool:
        st = await status(rt, name)
        seen[:] = [st]
        return (
            st.status == status_is
            and (restarts is None or st.restarts == restarts)
            and (status_is != "running" or (st.pid is not None and st.pid != not_pid))
        )

    try:
        await eventually(check, timeout=timeout, message=f"{name} {status_is}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {seen}") from None
    return seen[0]


async def log_lines(rt: Runtime, name: str, lines: int = 1000) -> list[str]:
    """The service's log as it is now."""
    return [line async for line in rt.logs(name, lines=lines)]


async def wait_log(rt: Runtime, name: str, text: str, timeout: float = WAIT) -> list[str]:
    """Wait until a line of the log contains ``text``; return the log."""
    found: list[str] = []

    async def check() -> bool:
        found[:] = await log_lines(rt, name)
        return any(text in line for line in found)

    try:
        await eventually(check, timeout=timeout, message=f"{text!r} in the log of {name}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; log: {found}") from None
    return found


def kill(pid: int, sig: int) -> None:
    """Signal a process that may already be gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
