"""``micro token`` commands against a real token service running on a thread of its own."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from micro.registry.memory import MemoryRegistry
from micro.store.memory import MemoryStore
from micro.token.handler import TokenHandler
from micro.token.store import UNKNOWN, StoreTokens

from .conftest import token_service

WAIT = 10.0


@pytest.fixture
def address() -> Iterator[str]:
    """A token service over a memory store, served by an event loop on another thread."""
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[str] = loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        store = MemoryStore()
        svc = token_service(
            TokenHandler(StoreTokens(store)), registry=MemoryRegistry(), address="127.0.0.1:0"
        )
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


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credential or env of the machine running the tests: anonymous calls."""
    monkeypatch.setenv("MICRO_DATA_DIR", str(tmp_path / "micro"))
    for name in ("MICRO_API_KEY", "MICRO_AUTH_ID", "MICRO_AUTH_SECRET", "MICRO_ENV"):
        monkeypatch.delenv(name, raising=False)


def invoke(address: str, *args: str) -> Result:
    from micro.cli.token import token_app

    env = {"MICRO_SERVER": address, "COLUMNS": "200"}  # wide enough for whole ids in tables
    return CliRunner().invoke(token_app, list(args), env=env)


def ok(address: str, *args: str) -> str:
    result = invoke(address, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_issue_check_consume(address: str) -> None:
    issued = json.loads(
        ok(address, "issue", "invite", "--ttl", "2h", "--meta", "email=a@b.c", "--meta", "n=1")
    )
    token = issued.pop("token")
    assert token.startswith("mt_") and len(token) == 46
    assert issued["scope"] == "invite" and issued["metadata"] == {"email": "a@b.c", "n": "1"}
    assert issued["expires"] - issued["created"] == 7200
    assert json.loads(ok(address, "check", token)) == issued
    wrong = invoke(address, "consume", token, "--scope", "reset")
    assert wrong.exit_code == 1 and "forbidden" in wrong.output
    assert json.loads(ok(address, "consume", token, "--scope", "invite")) == issued
    again = invoke(address, "consume", token)
    assert again.exit_code == 1 and UNKNOWN in again.output and "not_found" in again.output


def test_list_and_revoke(address: str) -> None:
    first = json.loads(ok(address, "issue", "invite"))
    second = json.loads(ok(address, "issue", "reset", "--ttl", "30m"))
    listed = json.loads(ok(address, "list", "-o", "json"))
    assert {i["id"] for i in listed} == {first["id"], second["id"]}
    assert first["token"] not in str(listed)
    only = json.loads(ok(address, "list", "--scope", "reset", "-o", "json"))
    assert [i["id"] for i in only] == [second["id"]]
    table = ok(address, "list")
    assert first["id"] in table and "invite" in table and first["token"] not in table
    assert f"revoked {first['id']}" in ok(address, "revoke", first["id"])
    missing = invoke(address, "revoke", first["id"])
    assert missing.exit_code == 1 and "not_found" in missing.output
    assert [i["id"] for i in json.loads(ok(address, "list", "-o", "json"))] == [second["id"]]


def test_bad_arguments(address: str) -> None:
    assert "--ttl" in invoke(address, "issue", "x", "--ttl", "soon").output
    assert "--meta" in invoke(address, "issue", "x", "--meta", "novalue").output
    bad = invoke(address, "issue", "x", "--ttl", "400d")
    assert bad.exit_code == 1 and "ttl" in bad.output and "bad_request" in bad.output


def test_register_adds_the_group() -> None:
    from micro.cli.token import register

    app = typer.Typer()
    register(app)
    assert [g.name for g in app.registered_groups] == ["token"]
