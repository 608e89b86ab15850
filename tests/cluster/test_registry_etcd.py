"""EtcdRegistry against a real etcd: errors, restarts, a wiped etcd, settings."""

from __future__ import annotations

import shutil
import uuid

import msgspec
import pytest

from micro import Context, Service
from micro.errors import MicroError
from micro.registry import Event, Node, ServiceInfo
from micro.registry.etcd import EtcdRegistry
from micro.testing import eventually
from micro.testing.conformance.registry import Watching

from ._etcd import EtcdProcess, free_port


class Req(msgspec.Struct):
    """A request that is echoed."""

    text: str = ""


def _prefix() -> str:
    return f"/test-{uuid.uuid4().hex}/registry/"


async def _names(reg: EtcdRegistry) -> set[str] | None:
    try:
        return {s.name for s in await reg.list_services()}
    except MicroError:
        return None


async def test_no_etcd_is_unavailable() -> None:
    reg = EtcdRegistry(f"127.0.0.1:{free_port()}", prefix=_prefix(), timeout=2.0)
    try:
        with pytest.raises(MicroError) as info:
            await reg.get_service("greeter")
        assert info.value.code in ("unavailable", "timeout"), info.value
        with pytest.raises(MicroError) as info:
            await reg.register(ServiceInfo("greeter", nodes=[Node("n1", "h:1")]), ttl=5)
        assert info.value.code in ("unavailable", "timeout"), info.value
    finally:
        await reg.close()


@pytest.mark.parametrize(
    ("endpoints", "prefix", "word"),
    [([], "/p/", "endpoints"), (["nohost"], "/p/", "endpoints"), (["h:1"], "p", "prefix")],
)
def test_bad_settings_are_refused(endpoints: list[str], prefix: str, word: str) -> None:
    with pytest.raises(MicroError) as info:
        EtcdRegistry(endpoints, prefix=prefix)
    assert info.value.code == "bad_request"
    assert word in info.value.detail


async def test_keys_live_under_the_prefix_with_a_lease(etcd_endpoint: str) -> None:
    import aetcd  # type: ignore[import-untyped]

    prefix = _prefix()
    reg = EtcdRegistry(f"http://{etcd_endpoint}", prefix=prefix)
    host, port = etcd_endpoint.split(":")
    raw = aetcd.Client(host, int(port), timeout=5)
    try:
        await reg.register(ServiceInfo("greeter", nodes=[Node("n/1", "h:1")]), ttl=30)
        await reg.register(ServiceInfo("pinned", nodes=[Node("p1", "h:2")]), ttl=None)
        got = await raw.get(f"{prefix}greeter/latest/n%2F1".encode())
        assert got is not None and got.lease != 0
        info = await raw.get_lease_info(got.lease, keys=False)
        assert 0 < info.TTL <= 30
        pinned = await raw.get(f"{prefix}pinned/latest/p1".encode())
        assert pinned is not None and pinned.lease == 0
        await reg.deregister(ServiceInfo("greeter", nodes=[Node("n/1", "h:1")]))
        assert await raw.get(f"{prefix}greeter/latest/n%2F1".encode()) is None
        assert (await raw.get_lease_info(got.lease, keys=False)).TTL == -1  # revoked
    finally:
        await raw.close()
        await reg.close()


async def test_restart_recovers_by_itself(etcd_process: EtcdProcess) -> None:
    reg = EtcdRegistry(etcd_process.endpoint, prefix=_prefix(), timeout=2.0)
    watch = Watching(reg, "greeter")
    try:
        await watch.prime()
        await reg.register(ServiceInfo("greeter", nodes=[Node("n1", "h:1")]), ttl=30)
        await watch.wait(1)
        etcd_process.stop()
        with pytest.raises(MicroError) as info:
            await reg.get_service("greeter")
        assert info.value.code in ("unavailable", "timeout")
        etcd_process.start()
        await eventually(lambda: _names(reg), timeout=15, message="registry back")
        assert {s.name for s in await reg.list_services()} == {"greeter"}
        await reg.register(ServiceInfo("greeter", nodes=[Node("n2", "h:2")]), ttl=30)
        events: list[Event] = await watch.wait(2)
        assert [(e.type, {n.id for n in e.service.nodes}) for e in events] == [
            ("create", {"n1"}),
            ("update", {"n1", "n2"}),
        ]
    finally:
        await watch.close()
        await reg.close()


async def test_a_service_registers_again_after_etcd_lost_everything(
    etcd_process: EtcdProcess,
) -> None:
    reg = EtcdRegistry(etcd_process.endpoint, prefix=_prefix(), timeout=1.0)
    svc = Service("phoenix", address="127.0.0.1:0", register_ttl=2, register_interval=0.2)

    @svc.handler
    class Phoenix:
        async def echo(self, ctx: Context, req: Req) -> Req:
            return req

    svc.use(registry=reg)
    await svc.start()
    watcher = EtcdRegistry(etcd_process.endpoint, prefix=reg.settings.prefix, timeout=1.0)
    watch = Watching(watcher, "phoenix")
    try:
        await watch.prime()
        assert [n.address for n in (await reg.get_service("phoenix"))[0].nodes] == [svc.address]
        etcd_process.stop()
        shutil.rmtree(etcd_process.data_dir)  # a fresh etcd: keys and leases are gone
        etcd_process.start()

        async def back() -> bool:
            return await _names(reg) == {"phoenix"}

        await eventually(back, timeout=15, message="phoenix registered again")
        [info] = await reg.get_service("phoenix")
        assert info.endpoint("Phoenix.Echo") is not None
        # the watcher followed the new etcd too
        await reg.register(ServiceInfo("phoenix", nodes=[Node("n2", "h:2")]), ttl=30)
        await eventually(
            lambda: any("n2" in {n.id for n in e.service.nodes} for e in watch.events),
            timeout=15,
            message="watcher sees the new node",
        )
    finally:
        await svc.stop()
        await watch.close()
        await watcher.close()
        await reg.close()
