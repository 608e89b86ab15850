"""Rolling updates against a real server: new instances take over without a failed call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from micro import MicroError
from micro.client import Client
from micro.runtime import ServiceSpec
from micro.runtime.local import LocalRuntime
from micro.server import MicroServer
from micro.testing import eventually, start_server

from .runtime_support import (
    SLEEPER,
    WAIT,
    alive,
    log_lines,
    make_runtime,
    wait_status,
    write_source,
)

VERSIONED = """
    import msgspec
    from micro import Context, Service

    class Req(msgspec.Struct):
        pass

    class Resp(msgspec.Struct):
        version: str

    service = Service("echo")

    @service.handler
    class Echo:
        async def version(self, ctx: Context, req: Req) -> Resp:
            return Resp(version="VERSION")

    if __name__ == "__main__":
        service.run()
"""


class Resp(msgspec.Struct):
    """What the test service answers."""

    version: str


@dataclass
class Cluster:
    """A real micro server and a runtime whose services register with it."""

    server: MicroServer
    runtime: LocalRuntime
    client: Client
    sources: Path

    def source(self, version: str) -> str:
        """A directory of the echo service answering ``version``."""
        return str(write_source(self.sources, version, VERSIONED.replace("VERSION", version)))

    async def call(self) -> str:
        resp = await self.client.call("echo", "Echo.Version", {}, response_type=Resp, timeout=5)
        return resp.version


@pytest.fixture
async def cluster(
    tmp_path: Path, sources: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    # the rolling logic is under test, not auth: this runtime is not the server's, so its
    # services have no service accounts; server and services run without auth
    monkeypatch.setenv("MICRO_AUTH", "off")
    server = await start_server(tmp_path / "server", gateway=False, auth=False)
    rt = make_runtime(
        tmp_path / "rt", server=server.address, registry=server.registry,
        events=server.events, update_timeout=10.0, drain_delay=0.3,
    )
    try:
        await rt.start()
        try:
            yield Cluster(server, rt, server.client, sources)
        finally:
            await rt.close()
    finally:
        await server.stop()


async def _registered(cluster: Cluster) -> set[str]:
    """The pids of the echo nodes in the registry."""
    try:
        found = await cluster.server.registry.get_service("echo")
    except MicroError:
        return set()
    return {n.metadata.get("pid", "") for s in found for n in s.nodes}


async def _wait_versions(cluster: Cluster, versions: set[str], count: int = 3) -> None:
    """Wait until ``count`` instances run and are all registered (and only they); then every
    call answers one of ``versions``."""

    async def settled() -> bool:
        [st] = await cluster.runtime.read("echo")
        pids = {str(i.pid) for i in st.instances if i.status == "running"}
        return len(pids) == count == len(st.instances) and await _registered(cluster) == pids

    await eventually(settled, timeout=WAIT, message=f"{count} instances registered")
    assert {await cluster.call() for _ in range(10)} == versions


async def test_a_rolling_update_loses_no_call(cluster: Cluster) -> None:
    rt = cluster.runtime
    await rt.create(ServiceSpec("echo", cluster.source("v1"), version="v1", instances=3))
    await _wait_versions(cluster, {"v1"})

    answers: list[str] = []
    failures: list[Exception] = []
    done = asyncio.Event()

    async def traffic() -> None:
        while not done.is_set():
            try:
                answers.append(await cluster.call())
            except Exception as exc:  # counted, asserted below
                failures.append(exc)
            await asyncio.sleep(0.002)

    callers = [asyncio.create_task(traffic()) for _ in range(4)]
    try:
        await rt.update(ServiceSpec("echo", cluster.source("v2"), version="v2", instances=3))
        await asyncio.sleep(0.3)
    finally:
        done.set()
        await asyncio.gather(*callers)

    assert failures == []
    assert "v1" in answers and "v2" in answers and answers[-1] == "v2"
    [st] = await rt.read("echo")
    assert st.version == "v2" and [i.version for i in st.instances] == ["v2"] * 3
    assert {await cluster.call() for _ in range(10)} == {"v2"}


async def test_an_update_can_change_the_number_of_instances(cluster: Cluster) -> None:
    rt = cluster.runtime
    await rt.create(ServiceSpec("echo", cluster.source("v1"), version="v1", instances=2))
    await _wait_versions(cluster, {"v1"}, count=2)
    await rt.update(ServiceSpec("echo", cluster.source("v2"), version="v2", instances=3))
    await _wait_versions(cluster, {"v2"}, count=3)
    await rt.update(ServiceSpec("echo", cluster.source("v3"), version="v3", instances=1))
    await _wait_versions(cluster, {"v3"}, count=1)


async def test_a_new_version_that_never_registers_is_rolled_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    rt = LocalRuntime(
        tmp_path / "rt2", server=cluster.server.address, registry=cluster.server.registry,
        update_timeout=1.0, backoff_initial=0.1, backoff_max=0.4, stop_timeout=3.0,
    )
    async with rt:
        await rt.create(ServiceSpec("echo", cluster.source("v1"), version="v1", instances=2))
        before = await wait_status(rt, "echo")
        await _wait_versions(Cluster(cluster.server, rt, cluster.client, cluster.sources),
                             {"v1"}, count=2)
        silent = write_source(cluster.sources, "silent", SLEEPER)  # runs, never registers

        with pytest.raises(MicroError) as info:
            await rt.update(ServiceSpec("echo", str(silent), version="v2", instances=2))

        assert info.value.code == "unavailable"
        assert "new instance 0 was not ready (registered) within 1 s" in info.value.detail
        assert "the old instances (v1) keep running" in info.value.detail
        [st] = await rt.read("echo")
        assert st.version == "v1" and [i.version for i in st.instances] == ["v1", "v1"]
        assert [i.pid for i in st.instances] == [i.pid for i in before.instances]
        assert {await cluster.call() for _ in range(10)} == {"v1"}
        assert any("stopped" in line for line in await log_lines(rt, "echo"))


async def test_a_failure_half_way_brings_the_replaced_instances_back(cluster: Cluster) -> None:
    rt = cluster.runtime
    await rt.create(ServiceSpec("echo", cluster.source("v1"), version="v1", instances=2))
    await _wait_versions(cluster, {"v1"}, count=2)
    # v2 works only as instance 0: instance 1 crashes at once
    crashy = VERSIONED.replace("VERSION", "v2").replace(
        "import msgspec", "import msgspec, os\n    if os.environ['MICRO_RUNTIME_INSTANCE'] != '0':"
        " raise SystemExit(5)", 1,
    )
    source = write_source(cluster.sources, "crashy", crashy)

    with pytest.raises(MicroError) as info:
        await rt.update(ServiceSpec("echo", str(source), version="v2", instances=2))

    assert "new instance 1 exited with code 5 before it became ready" in info.value.detail
    await _wait_versions(cluster, {"v1"}, count=2)
    [st] = await rt.read("echo")
    assert st.version == "v1" and [i.version for i in st.instances] == ["v1", "v1"]
    assert all(alive(i.pid or 0) for i in st.instances)


async def test_status_changes_are_published_as_events(cluster: Cluster) -> None:
    rt = cluster.runtime
    await rt.create(ServiceSpec("echo", cluster.source("v1"), version="v1"))
    await _wait_versions(cluster, {"v1"}, count=1)
    await rt.update(ServiceSpec("echo", cluster.source("v2"), version="v2"))
    await rt.delete("echo")
    assert cluster.server.events is not None

    async def statuses() -> list[dict[str, object]]:
        assert cluster.server.events is not None
        found = await cluster.server.events.read("runtime.status", limit=100)
        return [json.loads(e.body) for e in found]

    for _ in range(250):
        seen = await statuses()
        if [s["status"] for s in seen][-2:] == ["exited", "stopped"]:
            break
        await asyncio.sleep(0.02)
    kinds = [(s["instance"], s["status"]) for s in seen]
    assert kinds[0] == (0, "started") and (None, "updated") in kinds
    updated = next(s for s in seen if s["status"] == "updated")
    assert updated == {
        "service": "echo", "instance": None, "status": "updated", "pid": None,
        "detail": "v1 -> v2",
    }
    started = [s for s in seen if s["status"] == "started"]
    assert len(started) == 2 and all(isinstance(s["pid"], int) for s in started)
    exited = [s for s in seen if s["status"] == "exited"]
    assert [s["pid"] for s in exited] == [s["pid"] for s in started]
