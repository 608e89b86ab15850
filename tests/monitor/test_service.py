"""The ``monitor`` RPC service through :class:`RpcMonitor`, and the CLI through typer."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import typer
from typer.testing import CliRunner, Result

from micro import MicroError, Service
from micro.cli.monitor import register
from micro.client import Client
from micro.monitor import Check, Expect, Target
from micro.monitor.handler import MonitorHandler
from micro.monitor.monitor import Monitor
from micro.monitor.rpc import RpcMonitor
from micro.registry.memory import MemoryRegistry
from micro.testing import eventually

from .support import target_service

WAIT = 10.0


class Hosted:
    """A monitor hosted as service ``monitor`` next to a ``target`` service."""

    def __init__(self, interval: float) -> None:
        self.registry = MemoryRegistry()
        self.client = Client(self.registry)
        self.monitor = Monitor(self.registry, self.client, interval=interval)
        self.service = Service("monitor", registry=self.registry, address="127.0.0.1:0")
        self.service.handler(MonitorHandler(self.monitor), name="Monitor")
        self.target = target_service(self.registry)

    async def start(self) -> None:
        await self.target.start()
        await self.service.start()
        await self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.close()
        await self.service.stop(grace=0.5)
        await self.target.stop(grace=0.5)
        await self.client.close()


@pytest_asyncio.fixture
async def hosted() -> AsyncIterator[Hosted]:
    h = Hosted(interval=0.1)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def test_rpc_client_adds_lists_reads_history_and_removes(hosted: Hosted) -> None:
    rpc = RpcMonitor(hosted.service.address)
    try:
        check = Check(
            "status",
            "rpc",
            Target("target", "Target.Status"),
            0.1,
            2.0,
            Expect(field="info.version", equals="1.2"),
        )
        await rpc.add(check)

        async def ran_twice() -> bool:
            return len(await rpc.history("status", 5)) >= 2

        await eventually(ran_twice, timeout=5, message="two runs")
        (status,) = await rpc.checks()
        assert status.check == check and status.last is not None and status.last.ok
        history = await rpc.history("status", 5)
        assert all(r.ok for r in history) and history[0].time >= history[-1].time
        nodes = await rpc.health()
        assert {n.service for n in nodes} == {"monitor", "target"}
        assert all(n.state == "up" and n.latency_ms is not None for n in nodes)
        await rpc.remove("status")
        assert await rpc.checks() == []
        with pytest.raises(MicroError) as info:
            await rpc.history("status")
        assert info.value.code == "not_found"
    finally:
        await rpc.close()


async def test_bad_input_over_rpc_is_bad_request(hosted: Hosted) -> None:
    rpc = RpcMonitor(hosted.service.address)
    try:
        for check, word in [
            (Check("x", "smtp", Target(url="http://a/")), "kind"),
            (Check("x", "http", Target(url="http://a/"), interval=-1), "interval"),
            (Check("x", "http", Target(url="nope")), "target.url"),
        ]:
            with pytest.raises(MicroError) as info:
                await rpc.add(check)
            assert info.value.code == "bad_request" and word in info.value.detail
        with pytest.raises(MicroError) as info:
            await rpc.history("../etc", 5)
        assert info.value.code == "bad_request"
        raw = hosted.client
        with pytest.raises(MicroError) as info:
            await raw.call("monitor", "Monitor.Add", {"check": {"name": "x", "kind": "rpc"}})
        assert info.value.code == "bad_request" and "target" in info.value.detail
        assert await rpc.checks() == []
    finally:
        await rpc.close()


# -- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def address() -> Iterator[str]:
    """The hosted monitor, on an event loop of its own thread."""
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[str] = loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        h = Hosted(interval=0.1)
        await h.start()
        ready.set_result(h.service.address)
        await stop.wait()
        await h.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(asyncio.wait_for(ready, WAIT), loop).result(WAIT)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(WAIT)
        loop.close()


def app() -> typer.Typer:
    cli = typer.Typer()

    @cli.callback()
    def main() -> None:
        """Test root."""

    register(cli)
    return cli


def invoke(address: str, *args: str) -> Result:
    return CliRunner().invoke(app(), list(args), env={"MICRO_SERVER": address})


def ok(address: str, *args: str) -> Result:
    result = invoke(address, *args)
    assert result.exit_code == 0, result.output
    return result


def wait_for_runs(address: str, name: str, runs: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + WAIT
    while True:
        rows: list[dict[str, object]] = json.loads(
            ok(address, "monitor", "history", name, "-n", "10", "-o", "json").stdout
        )
        if len(rows) >= runs or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_cli_add_checks_history_remove_and_health(address: str) -> None:
    added = ok(
        address,
        "monitor",
        "add",
        "greet",
        "--rpc",
        "target",
        "Target.Status",
        '{"name": "ann"}',
        "--expect-field",
        "greeting",
        "--equals",
        '"hello ann"',
        "--every",
        "100ms",
    )
    assert "added check greet (every 0.1s)" in added.stdout
    ok(
        address,
        "monitor",
        "add",
        "web",
        "--http",
        "http://127.0.0.1:1/",
        "--expect-status",
        "200",
        "--max-latency-ms",
        "500",
        "--every",
        "1m",
        "--timeout",
        "1s",
    )
    rows = wait_for_runs(address, "greet", 2)
    assert len(rows) >= 2 and all(r["ok"] is True for r in rows)
    assert wait_for_runs(address, "web", 1)[0]["ok"] is False

    listed = json.loads(ok(address, "monitor", "checks", "-o", "json").stdout)
    assert [(c["name"], c["kind"], c["result"]) for c in listed] == [
        ("greet", "rpc", "ok"),
        ("web", "http", "FAIL"),
    ]
    table = ok(address, "monitor", "checks").stdout
    assert "greet" in table and "FAIL" in table
    assert (
        len(json.loads(ok(address, "monitor", "history", "greet", "-n", "1", "-o", "json").stdout))
        == 1
    )

    nodes = json.loads(ok(address, "health", "-o", "json").stdout)
    assert {n["service"] for n in nodes} == {"monitor", "target"}
    assert all(n["state"] == "up" for n in nodes)
    assert "target" in ok(address, "health").stdout

    assert "removed check web" in ok(address, "monitor", "remove", "web").stdout
    gone = invoke(address, "monitor", "remove", "web")
    assert gone.exit_code == 1 and "no check named 'web'" in gone.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x"], "exactly one of --rpc"),
        (["x", "--rpc", "s", "A.B", "--http", "http://a/"], "exactly one of --rpc"),
        (["x", "{", "--rpc", "s", "A.B"], "request is not valid JSON"),
        (["x", "{}", "--http", "http://a/"], "only for --rpc"),
        (["x", "--http", "http://a/", "--equals", "1"], "--equals needs --expect-field"),
        (["x", "--http", "http://a/", "--every", "-5s"], "--every"),
        (["x", "--http", "http://a/", "--every", "0s"], "interval"),
        (["x", "--http", "gopher://a/"], "target.url"),
        (["x y", "--http", "http://a/"], "name"),
    ],
)
def test_cli_refuses_bad_checks(address: str, args: list[str], message: str) -> None:
    result = invoke(address, "monitor", "add", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert json.loads(ok(address, "monitor", "checks", "-o", "json").stdout) == []
