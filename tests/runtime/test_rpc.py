"""The runtime service: ``RuntimeHandler`` served over RPC, used through ``RpcRuntime``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from micro import MicroError, Service
from micro.registry.memory import MemoryRegistry
from micro.runtime import Runtime, ServiceSpec
from micro.runtime.handler import RuntimeHandler
from micro.runtime.local import LocalRuntime
from micro.runtime.rpc import RpcRuntime
from micro.testing import eventually

from .runtime_support import SLEEPER, WAIT, alive, wait_log, wait_status, write_source


@pytest.fixture
async def rpc(runtime: LocalRuntime) -> AsyncIterator[RpcRuntime]:
    svc = Service("runtime", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(RuntimeHandler(runtime), name="Runtime")
    await svc.start()
    client = RpcRuntime(svc.address)
    try:
        yield client
    finally:
        await client.close()
        await svc.stop()


def test_both_backends_implement_the_protocol(runtime: LocalRuntime) -> None:
    assert isinstance(runtime, Runtime)
    assert isinstance(RpcRuntime("127.0.0.1:1"), Runtime)


async def test_create_read_logs_delete_over_rpc(rpc: RpcRuntime, sources: Path) -> None:
    source = write_source(sources, "remote", SLEEPER)
    await rpc.create(ServiceSpec("remote", str(source), version="3", env={"X": "1"}))

    st = await wait_status(rpc, "remote")
    assert (st.name, st.version, st.source) == ("remote", "3", str(source))
    assert st.pid is not None and alive(st.pid)
    assert [s.name for s in await rpc.read()] == ["remote"]
    await wait_log(rpc, "remote", "hello from remote")

    await rpc.delete("remote")
    assert not alive(st.pid)
    assert await rpc.read() == []


async def test_update_over_rpc(rpc: RpcRuntime, sources: Path) -> None:
    await rpc.create(ServiceSpec("up", str(write_source(sources, "a", SLEEPER))))
    first = await wait_status(rpc, "up")
    await rpc.update(ServiceSpec("up", str(write_source(sources, "b", SLEEPER)), version="2"))
    st = await wait_status(rpc, "up", not_pid=first.pid)
    assert st.version == "2"


async def test_errors_cross_the_wire(rpc: RpcRuntime, sources: Path) -> None:
    source = str(write_source(sources, "s", SLEEPER))
    await rpc.create(ServiceSpec("dup", source))
    cases = [
        (rpc.create(ServiceSpec("dup", source)), "conflict"),
        (rpc.create(ServiceSpec("Bad Name", source)), "bad_request"),
        (rpc.read("ghost"), "not_found"),
        (rpc.delete("ghost"), "not_found"),
        (_drain(rpc.logs("ghost")), "not_found"),
    ]
    for call, code in cases:
        with pytest.raises(MicroError) as info:
            await call
        assert info.value.code == code, info.value


async def test_follow_logs_over_rpc_until_the_caller_stops(
    rpc: RpcRuntime, data_dir: Path, sources: Path
) -> None:
    source = write_source(sources, "tail", """
        import os, time
        print("waiting", flush=True)
        while not os.path.exists("go"):
            time.sleep(0.02)
        print("after", flush=True)
        time.sleep(3600)
    """)
    await rpc.create(ServiceSpec("tail", str(source)))
    await wait_log(rpc, "tail", "waiting")
    lines = rpc.logs("tail", lines=1, follow=True)
    assert await asyncio.wait_for(anext(lines), WAIT) == "waiting"
    (source / "go").touch()
    assert await asyncio.wait_for(anext(lines), WAIT) == "after"
    log = data_dir / "logs" / "tail.log"
    assert _readers(log) == 1  # the server follows the file
    await lines.aclose()  # type: ignore[attr-defined]
    await eventually(lambda: _readers(log) == 0, timeout=WAIT, message="server stops following")
    # the server is still fine
    assert [s.name for s in await rpc.read()] == ["tail"]


def _readers(path: Path) -> int:
    """How many open files of this process (where the server runs) read ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:
            pass
    return count


async def _drain(lines: AsyncIterator[str]) -> None:
    async for _ in lines:
        pass
