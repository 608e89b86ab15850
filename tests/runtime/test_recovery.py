"""Desired state survives the runtime: services come back, orphans of a killed server go."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from micro import MicroError
from micro.runtime import ServiceSpec
from micro.testing import eventually

from .runtime_support import (
    SLEEPER,
    WAIT,
    alive,
    kill,
    make_runtime,
    wait_log,
    wait_status,
    write_source,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs /proc and PR_SET_PDEATHSIG (Linux)"
)

# A micro server reduced to its runtime: runs one service, prints its pid, waits forever.
SERVER = """
import asyncio, sys
from pathlib import Path
from micro.runtime import ServiceSpec
from micro.runtime.local import LocalRuntime

async def main() -> None:
    data_dir, name, source = sys.argv[1:]
    rt = LocalRuntime(Path(data_dir), server="127.0.0.1:1", backoff_initial=0.1)
    await rt.start()
    await rt.create(ServiceSpec(name, source))
    while True:
        [st] = await rt.read(name)
        if st.pid is not None:
            print(st.pid, flush=True)
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _saved(data_dir: Path) -> list[dict[str, Any]]:
    """The services recorded in the state file."""
    doc = json.loads((data_dir / "runtime" / "services.json").read_bytes())
    services: list[dict[str, Any]] = doc["services"]
    return services


async def test_close_keeps_the_desired_state_for_the_next_runtime(
    data_dir: Path, sources: Path
) -> None:
    source = str(write_source(sources, "keep", SLEEPER))
    async with make_runtime(data_dir) as first:
        await first.create(ServiceSpec("keep", source, version="7", env={"A": "1"}))
        await first.create(ServiceSpec("also", source))
        pids = [(await wait_status(first, n)).pid for n in ("keep", "also")]
        # sorted by name, with the pids of the running processes
        assert [r.get("pids") for r in _saved(data_dir)] == [[pid] for pid in pids[::-1]]
    assert not any(alive(pid or 0) for pid in pids)
    assert [r["spec"]["name"] for r in _saved(data_dir)] == ["also", "keep"]
    assert all("pids" not in r and "pid" not in r for r in _saved(data_dir))

    async with make_runtime(data_dir) as second:
        st = await wait_status(second, "keep")
        assert (st.version, st.source, st.restarts) == ("7", source, 0)
        assert st.pid not in pids
        await wait_status(second, "also")


async def test_two_runtimes_cannot_share_a_data_dir(data_dir: Path) -> None:
    async with make_runtime(data_dir):
        with pytest.raises(MicroError) as info:
            await make_runtime(data_dir).start()
        assert info.value.code == "conflict"
    async with make_runtime(data_dir):  # free again once the first one closed
        pass


async def test_an_unreadable_state_file_stops_the_start(data_dir: Path) -> None:
    (data_dir / "runtime").mkdir(parents=True)
    (data_dir / "runtime" / "services.json").write_text("{not json")
    with pytest.raises(MicroError) as info:
        await make_runtime(data_dir).start()
    assert info.value.code == "internal"
    assert "unreadable" in info.value.detail
    assert (data_dir / "runtime" / "services.json").read_text() == "{not json"  # kept


@pytest.fixture
async def server_proc() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Started server processes; killed at the end."""
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _kill_server(
    procs: list[asyncio.subprocess.Process], data_dir: Path, source: Path, ready: str = ""
) -> int:
    """Start a server process running ``source``, wait for ``ready`` in the service's log,
    SIGKILL the server; the service's pid."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, str(data_dir), "orphan", str(source),
        stdout=subprocess.PIPE,
    )
    procs.append(proc)
    assert proc.stdout is not None
    pid = int(await asyncio.wait_for(proc.stdout.readline(), WAIT))
    log = data_dir / "logs" / "orphan.log"
    await eventually(lambda: ready in log.read_text(), timeout=WAIT, message=repr(ready))
    proc.kill()
    await proc.wait()
    return pid


@linux_only
async def test_services_die_with_a_killed_server(
    server_proc: list[asyncio.subprocess.Process], data_dir: Path, sources: Path
) -> None:
    pid = await _kill_server(server_proc, data_dir, write_source(sources, "orphan", SLEEPER))
    await eventually(lambda: not alive(pid), timeout=WAIT, message="service gone")


@linux_only
async def test_an_orphan_of_a_killed_server_is_stopped_at_start(
    server_proc: list[asyncio.subprocess.Process], data_dir: Path, sources: Path
) -> None:
    source = write_source(sources, "orphan", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # survives PR_SET_PDEATHSIG
        print("ready", flush=True)
        time.sleep(3600)
    """)
    pid = await _kill_server(server_proc, data_dir, source, ready="ready")
    try:
        await asyncio.sleep(0.2)
        assert alive(pid), "the orphan should have outlived its server"
        async with make_runtime(data_dir, stop_timeout=0.3) as rt:
            assert not alive(pid)
            st = await wait_status(rt, "orphan")
            assert st.pid != pid
            await wait_log(rt, "orphan", f"stopped process {pid}, left running by a runtime")
    finally:
        kill(pid, signal.SIGKILL)


@linux_only
async def test_a_recorded_pid_of_another_program_is_left_alone(
    data_dir: Path, sources: Path
) -> None:
    source = write_source(sources, "svc", SLEEPER)
    other = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        (data_dir / "runtime").mkdir(parents=True)
        spec = {"name": "svc", "source": str(source)}
        (data_dir / "runtime" / "services.json").write_text(
            json.dumps({"services": [{"spec": spec, "pid": other.pid}]})
        )
        async with make_runtime(data_dir) as rt:
            await wait_status(rt, "svc")
            assert alive(other.pid)  # still running
    finally:
        other.kill()
        await other.wait()
