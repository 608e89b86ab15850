"""ScopedStore: one table, typed values."""

from __future__ import annotations

import msgspec
import pytest

from micro import MicroError
from micro.store import DeleteOp, WriteOp
from micro.store.memory import MemoryStore
from micro.store.scoped import ScopedStore


class User(msgspec.Struct):
    name: str
    age: int = 0


@pytest.fixture
def backend() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def store(backend: MemoryStore) -> ScopedStore:
    return ScopedStore(backend, "ns", "users")


async def test_values_round_trip_by_type(store: ScopedStore, backend: MemoryStore) -> None:
    await store.write("raw", b"\x00\x01")
    await store.write("text", "héllo")
    await store.write("user", User("Alice", 30), ttl=60, metadata={"kind": "user"})
    await store.write("doc", {"a": [1, 2]})
    await store.write("n", 42)
    assert await store.value("raw", bytes) == b"\x00\x01"
    assert await store.value("text", str) == "héllo"
    assert await store.value("user", User) == User("Alice", 30)
    assert await store.value("doc", dict[str, list[int]]) == {"a": [1, 2]}
    assert await store.value("n", int) == 42
    (raw,) = await backend.read("ns", "users", "user")  # the scope is database ns, table users
    assert raw.value == b'{"name":"Alice","age":30}' and raw.metadata == {"kind": "user"}
    assert raw.expiry is not None


async def test_wrong_type_and_missing_key(store: ScopedStore) -> None:
    await store.write("text", "not json")
    with pytest.raises(MicroError) as info:
        await store.value("text", User)
    assert info.value.code == "bad_request" and "text" in info.value.detail
    await store.write("bin", b"\xff")
    with pytest.raises(MicroError):
        await store.value("bin", str)
    with pytest.raises(MicroError) as info:
        await store.read_one("missing")
    assert info.value.code == "not_found"
    with pytest.raises(MicroError) as info:
        await store.write("bad", object())
    assert info.value.code == "bad_request"


async def test_every_operation_is_scoped(store: ScopedStore, backend: MemoryStore) -> None:
    await backend.write("ns", "other", "a/1", b"elsewhere")
    first = await store.write("a/1", "one")
    await store.write("a/2", "two", if_absent=True)
    await store.write("a/1", "uno", etag=first.etag)
    assert [r.value for r in await store.read("a/", prefix=True, order="desc")] == [b"two", b"uno"]
    assert [r.key for r in await store.read_many(["a/2", "zz"])] == ["a/2"]
    assert await store.list_keys(prefix="a/", limit=1) == ["a/1"]
    written = await store.transact([WriteOp("b", b"b"), DeleteOp("a/2")])
    assert [r.key for r in written] == ["b"]
    await store.delete("b")
    assert await store.list_keys() == ["a/1"]
    assert (await backend.read("ns", "other", "a/1"))[0].value == b"elsewhere"
    assert repr(store) == "ScopedStore(ns/users)"
