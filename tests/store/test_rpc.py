"""The store service: StoreHandler served over RPC, used through RpcStore and plain JSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from micro import Client, MicroError, Service
from micro.store import Store, WriteOp
from micro.store.memory import MemoryStore
from micro.store.rpc import RpcStore
from micro.store.scoped import ScopedStore
from micro.store.sqlite import SqliteStore
from micro.transport.frames import Codec


@pytest.fixture
async def rpc(service: Service) -> AsyncIterator[RpcStore]:
    store = RpcStore(service.address)
    try:
        yield store
    finally:
        await store.close()


def test_every_backend_implements_the_protocol(tmp_path: Path) -> None:
    for backend in (MemoryStore(), SqliteStore(tmp_path / "s.db"), RpcStore("127.0.0.1:1")):
        assert isinstance(backend, Store)


def test_endpoints_and_idempotent_reads(service: Service) -> None:
    endpoints = {  # every service also serves Debug.* (micro.debug)
        ep.name: ep for ep in service.endpoints.values() if not ep.name.startswith("Debug.")
    }
    assert sorted(endpoints) == [
        "Store.Databases", "Store.Delete", "Store.List", "Store.Read", "Store.ReadMany",
        "Store.Tables", "Store.Transact", "Store.Write",
    ]
    safe = sorted(name for name, ep in endpoints.items() if ep.idempotent)
    assert safe == ["Store.Databases", "Store.List", "Store.Read", "Store.ReadMany", "Store.Tables"]


async def test_errors_keep_their_code_and_detail(rpc: RpcStore) -> None:
    await rpc.write("db", "t", "x", b"1")
    with pytest.raises(MicroError) as info:
        await rpc.transact("db", "t", [WriteOp("y", b""), WriteOp("x", b"", if_absent=True)])
    assert (info.value.code, info.value.status, info.value.id) == ("conflict", 409, "store")
    assert "ops[1]" in info.value.detail
    with pytest.raises(MicroError) as info:
        await rpc.read("db", "t", "k", prefix=True, order="sideways")  # type: ignore[arg-type]
    assert info.value.code == "bad_request" and "order" in info.value.detail


async def test_json_callers_send_values_as_base64(service: Service) -> None:
    """What the gateway does: JSON bodies, bytes as base64, defaults for database/table."""
    async with Client() as client:
        body = json.dumps({"key": "k", "value": "aGVsbG8=", "ttl": 30}).encode()
        written = json.loads(await client.call_raw(
            "store", "Store.Write", body, codec=Codec.JSON, address=service.address
        ))
        assert written["etag"] and written["expiry"] > 0
        reply = json.loads(await client.call_raw(
            "store", "Store.Read", b'{"key": "k"}', codec=Codec.JSON, address=service.address
        ))
    (record,) = reply["records"]
    assert (record["key"], record["value"], record["etag"]) == ("k", "aGVsbG8=", written["etag"])


async def test_a_scoped_store_over_rpc(rpc: RpcStore, service: Service) -> None:
    class Note(msgspec.Struct):
        text: str

    notes = ScopedStore(rpc, "micro", "notes")
    await notes.write("n1", Note("remember"))
    assert await notes.value("n1", Note) == Note("remember")
    assert await rpc.list_tables("micro") == ["notes"]


async def test_a_value_over_the_frame_limit_is_refused(rpc: RpcStore) -> None:
    with pytest.raises(MicroError) as info:
        await rpc.write("db", "t", "k", b"x" * (5 * 1024 * 1024))
    assert info.value.code == "too_large"
    assert await rpc.list_databases() == []
