"""``micro store`` commands against a real store service running on a thread of its own."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from micro import Service
from micro.cli.durations import parse_duration
from micro.cli.store import register, store_app
from micro.registry.memory import MemoryRegistry
from micro.store.handler import StoreHandler
from micro.store.sqlite import SqliteStore

WAIT = 10.0


@pytest.fixture
def address(tmp_path: Path) -> Iterator[str]:
    """A store service over SQLite, served by an event loop on another thread."""
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[str] = loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        store = SqliteStore(tmp_path / "store.db")
        svc = Service("store", registry=MemoryRegistry(), address="127.0.0.1:0")
        svc.handler(StoreHandler(store), name="Store")
        await svc.start()
        ready.set_result(svc.address)
        await stop.wait()
        await svc.stop(grace=1.0)
        await store.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(asyncio.wait_for(ready, WAIT), loop).result(WAIT)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(WAIT)
        loop.close()


def invoke(address: str, *args: str, stdin: bytes | None = None) -> Result:
    env = {"MICRO_SERVER": address, "MICRO_NAMESPACE": None}
    return CliRunner().invoke(store_app, list(args), env=env, input=stdin)


def ok(address: str, *args: str, stdin: bytes | None = None) -> Result:
    result = invoke(address, *args, stdin=stdin)
    assert result.exit_code == 0, result.output
    return result


def test_write_read_list_delete(address: str) -> None:
    written = ok(address, "write", "user/1", "Alice", "--ttl", "5m", "-m", "kind=user")
    assert "wrote user/1 in micro/default (etag" in written.stdout
    ok(address, "write", "user/2", "Bob")
    ok(address, "write", "other", "x")

    rows = json.loads(ok(address, "read", "user/", "--prefix", "-o", "json").stdout)
    assert [(r["key"], r["value"], r["encoding"]) for r in rows] == [
        ("user/1", "Alice", "utf-8"), ("user/2", "Bob", "utf-8")
    ]
    assert rows[0]["metadata"] == {"kind": "user"} and rows[0]["expiry"] > 0
    assert rows[1]["expiry"] is None and rows[1]["etag"]
    table = ok(address, "read", "user/1").stdout
    assert "Alice" in table and "kind=user" in table
    assert ok(address, "read", "user/1", "--raw").stdout == "Alice"
    desc = ok(address, "list", "--prefix", "user", "--order", "desc", "-o", "json").stdout
    assert json.loads(desc) == [{"key": "user/2"}, {"key": "user/1"}]
    paged = ok(address, "list", "--limit", "1", "--offset", "1", "-o", "json").stdout
    assert json.loads(paged) == [{"key": "user/1"}]

    assert "deleted user/1" in ok(address, "delete", "user/1").stdout
    missing = invoke(address, "read", "user/1")
    assert missing.exit_code == 1 and "not found" in missing.output


def test_databases_tables_and_binary_values(address: str) -> None:
    ok(address, "write", "k", "-", "--database", "app", "--table", "blobs", stdin=b"\xff\x00")
    ok(address, "write", "k", "v", "-d", "app", "-t", "texts")
    assert json.loads(ok(address, "databases", "-o", "json").stdout) == [{"database": "app"}]
    tables = json.loads(ok(address, "tables", "-d", "app", "-o", "json").stdout)
    assert tables == [{"table": "blobs"}, {"table": "texts"}]
    (row,) = json.loads(ok(address, "read", "k", "-d", "app", "-t", "blobs", "-o", "json").stdout)
    assert (row["encoding"], base64.b64decode(row["value"])) == ("base64", b"\xff\x00")
    assert "2 bytes" in ok(address, "read", "k", "-d", "app", "-t", "blobs").stdout


def test_conditional_writes_and_deletes(address: str) -> None:
    first = json.loads(ok(address, "write", "k", "1", "-o", "json").stdout)
    ok(address, "write", "k", "2", "--etag", first["etag"])
    stale = invoke(address, "write", "k", "3", "--etag", first["etag"])
    assert stale.exit_code == 1 and "conflict" in stale.output
    exists = invoke(address, "write", "k", "4", "--if-absent")
    assert exists.exit_code == 1 and "already exists" in exists.output
    refused = invoke(address, "delete", "k", "--etag", first["etag"])
    assert refused.exit_code == 1 and "conflict" in refused.output
    assert ok(address, "read", "k", "--raw").stdout == "2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("write", "k", "v", "--ttl", "soon"), "not a duration"),
        (("write", "k", "v", "--ttl", "0"), "ttl must be a positive"),
        (("write", "k", "v", "-m", "novalue"), "KEY=VALUE"),
        (("read",), "give a KEY"),
        (("read", "k", "--prefix", "--raw"), "--raw"),
        (("read", "k", "--prefix", "--order", "up"), "--order"),
        (("list", "--limit", "-1"), "Invalid value for '--limit'"),
        (("write", "bad\x00key", "v"), "NUL"),
        (("tables", "-d", "no spaces"), "database"),
    ],
)
def test_bad_input_gets_one_clear_line(address: str, args: tuple[str, ...], message: str) -> None:
    result = invoke(address, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert json.loads(ok(address, "databases", "-o", "json").stdout) == []


def test_an_unreachable_server_is_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed below: nothing listens there
    result = invoke(f"127.0.0.1:{port}", "databases")
    assert result.exit_code == 1
    assert f"cannot reach micro server at 127.0.0.1:{port}" in result.output


def test_register_adds_the_store_group() -> None:
    app = typer.Typer()

    @app.command()
    def other() -> None:
        """Another command, so that store stays a group."""

    register(app)
    result = CliRunner().invoke(app, ["store", "--help"])
    assert result.exit_code == 0
    for command in ("read", "write", "delete", "list", "databases", "tables"):
        assert command in result.output


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0),
     ("500ms", 0.5), ("1.5s", 1.5), (" 2H ", 7200.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "-5", "1e999", "5 m s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
