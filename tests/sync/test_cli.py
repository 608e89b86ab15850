"""``micro sync`` commands against a real sync service running on a thread of its own."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner, Result

from micro import Service
from micro.cli.sync import register, sync_app
from micro.registry.memory import MemoryRegistry
from micro.sync.handler import SyncHandler
from micro.sync.memory import MemorySync

WAIT = 10.0


@pytest.fixture
def address() -> Iterator[str]:
    """A sync service over memory, served by an event loop on another thread."""
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[str] = loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        svc = Service("sync", registry=MemoryRegistry(), address="127.0.0.1:0")
        svc.handler(SyncHandler(MemorySync()), name="Sync")
        await svc.start()
        ready.set_result(svc.address)
        await stop.wait()
        await svc.stop(grace=1.0)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(asyncio.wait_for(ready, WAIT), loop).result(WAIT)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(WAIT)
        loop.close()


def invoke(address: str, *args: str) -> Result:
    return CliRunner().invoke(sync_app, list(args), env={"MICRO_SERVER": address})


def ok(address: str, *args: str) -> str:
    result = invoke(address, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_locks_and_leader(address: str) -> None:
    lease = json.loads(ok(address, "acquire", "jobs", "--ttl", "1m", "--owner", "me"))
    assert (lease["name"], lease["owner"], lease["token"]) == ("jobs", "me", 1)
    held = invoke(address, "acquire", "jobs")
    assert held.exit_code == 1 and "held" in held.output and "conflict" in held.output
    stale = invoke(address, "release", "jobs", "--owner", "me", "--token", "7")
    assert stale.exit_code == 1 and "lost" in stale.output
    assert "released" in ok(address, "release", "jobs", "--owner", "me", "--token", "1")
    assert json.loads(ok(address, "acquire", "jobs"))["token"] == 2
    none = invoke(address, "leader", "db")
    assert none.exit_code == 1 and "no leader" in none.output
    assert "--ttl" in invoke(address, "acquire", "x", "--ttl", "soon").output


def test_maps(address: str) -> None:
    assert json.loads(ok(address, "map", "put", "m", "k", "v1"))["version"] == 1
    bad = invoke(address, "map", "put", "m", "k", "v2", "--version", "0")
    assert bad.exit_code == 1 and "conflict" in bad.output
    ok(address, "map", "put", "m", "k", "v2", "--version", "1")
    assert json.loads(ok(address, "map", "get", "m", "k")) == {
        "key": "k",
        "value": "v2",
        "version": 2,
    }
    rows = json.loads(ok(address, "map", "list", "m", "-o", "json"))
    assert rows == [{"key": "k", "value": "v2", "version": 2}]
    ok(address, "map", "delete", "m", "k", "--version", "2")
    assert "not_found" in invoke(address, "map", "get", "m", "k").output


def test_queues(address: str) -> None:
    task_id = ok(address, "enqueue", "q", "hello", "--delay", "5s").strip()
    assert task_id == "1"
    assert json.loads(ok(address, "dead", "q", "-o", "json")) == []
    assert "max-attempts" in invoke(address, "enqueue", "q", "x", "--max-attempts", "0").output


def test_register_adds_the_group() -> None:
    app = typer.Typer()
    register(app)
    assert [g.name for g in app.registered_groups] == ["sync"]
