"""Restart PostgreSQL, NATS and etcd in turn under a steady load of store writes, event
publishes and service calls through a cluster-profile `micro server`: the clients reconnect
by themselves, and afterwards every acknowledged write and event is there (counted)."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import msgspec
import pytest

from micro import Client, Context, MicroError, Service
from micro.events.rpc import RpcEvents
from micro.registry.rpc import RpcRegistry
from micro.server import MicroServer, ServerOptions
from micro.store.rpc import RpcStore
from micro.testing import admin_header, eventually

from ._etcd import EtcdProcess, etcd_binary
from ._nats import running_nats
from ._postgres import running_postgres


class Req(msgspec.Struct):
    n: int


class Resp(msgspec.Struct):
    n: int


async def test_engines_restart_in_turn_under_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = etcd_binary()
    if binary is None:
        pytest.skip("etcd not installed (/usr/bin/etcd): run scripts/install-servers")
    etcd = EtcdProcess(binary, tmp_path / "etcd")
    etcd.start()
    (tmp_path / "nats").mkdir()
    with running_postgres() as pg, running_nats(tmp_path / "nats") as nats:
        monkeypatch.setenv("MICRO_POSTGRES_DSN", pg.create_database())
        monkeypatch.setenv("MICRO_NATS_URL", nats.url)
        monkeypatch.setenv("MICRO_ETCD_ENDPOINTS", etcd.endpoint)
        monkeypatch.setenv("MICRO_CONFIG_SECRET_KEY", base64.b64encode(b"r" * 32).decode())
        server = MicroServer(
            ServerOptions(
                address="127.0.0.1:0",
                gateway=None,
                data_dir=tmp_path / "server",
                runtime=False,
                profile="cluster",
            )
        )
        await server.start()
        # auth stays on: tokens are verified locally and rules are cached, so calls go on
        # while PostgreSQL (which holds the accounts) restarts
        header = await admin_header(server)
        svc = Service(
            "counter",
            registry=RpcRegistry(server.address, credentials=lambda: header),
            register_interval=0.5,
        )

        @svc.handler
        class Counter:
            async def call(self, ctx: Context, req: Req) -> Resp:
                return Resp(req.n + 1)

        await svc.start()
        client = Client(
            RpcRegistry(server.address, credentials=lambda: header), credentials=lambda: header
        )
        store, events = RpcStore(server.address, client), RpcEvents(server.address, client)
        written: set[str] = set()
        published: set[int] = set()
        answered = 0
        stop = asyncio.Event()

        async def load(worker: int) -> None:
            nonlocal answered
            for i in range(1_000_000):
                if stop.is_set():
                    return
                try:
                    key = f"w{worker}-{i}"
                    await store.write(
                        "faults",
                        "t",
                        key,
                        b"x",
                    )
                    written.add(key)
                    ack = await events.publish("faults.events", key.encode())
                    published.add(ack.sequence)
                    resp = await client.call("counter", "Counter.Call", Req(i), response_type=Resp)
                    answered += resp.n == i + 1
                except MicroError:
                    await asyncio.sleep(0.05)  # an engine is down: not acknowledged, go on

        workers = [asyncio.ensure_future(load(w)) for w in range(8)]
        try:
            for engine in (pg, nats, etcd):
                floor = len(written) + 20
                await eventually(
                    lambda floor=floor: len(written) > floor, timeout=30, message="writes flowing"
                )
                await asyncio.to_thread(engine.stop)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(engine.start)
            # after the last restart everything flows again: writes, events and calls
            after = (len(written), len(published), answered)
            await eventually(
                lambda: (
                    len(written) > after[0] + 20
                    and len(published) > after[1] + 20
                    and answered > after[2] + 20
                ),
                timeout=60,
                message="load recovered after the restarts",
            )
        finally:
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)

        keys = set(await store.list_keys("faults", "t", limit=1_000_000))
        stored: set[int] = set()
        start = 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await events.read("faults.events", start=start, limit=1000)
            if not batch:
                break
            stored.update(e.sequence for e in batch)
            start = batch[-1].sequence + 1
        assert written <= keys, f"{len(written - keys)} acknowledged writes lost"
        assert published <= stored, f"{len(published - stored)} acknowledged events lost"
        await store.close()
        await events.close()
        await client.close()
        await svc.stop()
        await server.stop()
    etcd.stop()
