"""SQLite store specifics: group commit, purge, cache coherence, lifecycle, bad files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from micro import MicroError
from micro.store import DeleteOp, Record, WriteOp
from micro.store._cache import MISS, RecordCache
from micro.store.sqlite import SqliteStore
from micro.testing import eventually
from micro.testing.conformance.clock import FakeClock


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    return count


async def test_concurrent_writes_share_commits(sqlite: SqliteStore) -> None:
    records = await asyncio.gather(*(sqlite.write("db", "t", f"k{i}", b"v") for i in range(300)))
    assert len({r.etag for r in records}) == 300
    writer = sqlite._engine._writer
    assert writer is not None
    assert writer.batches < 150, writer.batches  # one transaction (one fsync) per batch
    assert len(await sqlite.list_keys("db", "t")) == 300


async def test_a_failing_write_fails_alone_in_its_batch(sqlite: SqliteStore) -> None:
    await sqlite.write("db", "t", "taken", b"1")
    results = await asyncio.gather(
        sqlite.write("db", "t", "a", b"a"),
        sqlite.write("db", "t", "taken", b"2", if_absent=True),
        sqlite.transact("db", "t", [WriteOp("b", b"b"), DeleteOp("taken", etag="nope")]),
        sqlite.write("db", "t", "c", b"c"),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["Record", "MicroError", "MicroError", "Record"]
    assert await sqlite.list_keys("db", "t") == ["a", "c", "taken"]


async def test_purge_deletes_expired_rows(sqlite: SqliteStore, clock: FakeClock) -> None:
    for i in range(5):
        await sqlite.write("db", "t", f"tmp{i}", b"", ttl=10 + i)
        await sqlite.write("db", "t", f"keep{i}", b"")
    assert await sqlite.purge() == 0
    clock.advance(12)
    assert await sqlite.purge() == 3
    clock.advance(10)
    assert await sqlite.purge() == 2
    assert _rows(sqlite.path) == 5


async def test_expired_records_are_purged_in_the_background(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = SqliteStore(tmp_path / "s.db", clock=clock, purge_interval=0.02)
    try:
        await store.write("db", "t", "tmp", b"", ttl=1)
        clock.advance(2)
        await eventually(lambda: _rows(store.path) == 0, timeout=5, message="purged")
    finally:
        await store.close()


async def test_the_cache_follows_every_write(sqlite: SqliteStore) -> None:
    with pytest.raises(MicroError):
        await sqlite.read("db", "t", "k")  # now cached as absent
    await sqlite.write("db", "t", "k", b"1")
    assert (await sqlite.read("db", "t", "k"))[0].value == b"1"
    await sqlite.transact("db", "t", [WriteOp("k", b"2"), WriteOp("j", b"j")])
    assert [r.value for r in await sqlite.read_many("db", "t", ["k", "j", "x"])] == [b"2", b"j"]
    await sqlite.transact("db", "t", [DeleteOp("k")])
    with pytest.raises(MicroError):
        await sqlite.read("db", "t", "k")
    await sqlite.write("db", "t", "j", b"3")
    await sqlite.delete("db", "t", "j")
    assert await sqlite.read_many("db", "t", ["j"]) == []


async def test_returned_records_are_copies(sqlite: SqliteStore) -> None:
    await sqlite.write("db", "t", "k", b"v", metadata={"a": "1"})
    (got,) = await sqlite.read("db", "t", "k")
    got.metadata["a"] = "changed"
    got.etag = "forged"
    (again,) = await sqlite.read("db", "t", "k")
    assert (again.metadata, again.etag != "forged") == ({"a": "1"}, True)


async def test_without_a_cache(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", cache_bytes=0)
    try:
        await store.write("db", "t", "k", b"v")
        assert (await store.read("db", "t", "k"))[0].value == b"v"
        assert len(store._cache) == 0
    finally:
        await store.close()


def test_a_read_never_caches_an_answer_older_than_a_write() -> None:
    cache = RecordCache(10_000)
    key = ("db", "t", "k")
    sent_at = cache.epoch  # a read leaves for the database ...
    cache.written([(key, Record("k", b"new", etag="2"))])  # ... a write comes back first
    cache.fill(key, Record("k", b"old", etag="1"), sent_at)  # ... then the stale answer
    got = cache.get(key)
    assert isinstance(got, Record) and got.value == b"new"
    cache.fill(("db", "t", "other"), None, cache.epoch)
    assert cache.get(("db", "t", "other")) is None
    assert cache.get(("db", "t", "unknown")) is MISS


def test_the_cache_stays_within_its_bytes() -> None:
    cache = RecordCache(5_000)
    for i in range(100):
        cache.written([(("db", "t", f"k{i}"), Record(f"k{i}", b"x" * 100))])
    assert 0 < len(cache) < 20
    assert cache.get(("db", "t", "k99")) is not MISS
    assert cache.get(("db", "t", "k0")) is MISS
    cache.written([(("db", "t", "huge"), Record("huge", b"x" * 10_000))])
    assert cache.get(("db", "t", "huge")) is MISS


async def test_operations_start_the_store_and_fail_after_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "lazy" / "s.db")
    first = await asyncio.gather(*(store.write("db", "t", f"k{i}", b"") for i in range(5)))
    assert len(first) == 5
    await store.close()
    for call in (store.read("db", "t", "k1"), store.write("db", "t", "k", b""), store.purge()):
        with pytest.raises(MicroError) as info:
            await call
        assert info.value.code == "unavailable"


async def test_one_store_per_file(sqlite: SqliteStore) -> None:
    other = SqliteStore(sqlite.path)
    with pytest.raises(MicroError) as info:
        await other.start()
    assert info.value.code == "conflict" and str(sqlite.path) in info.value.detail
    await other.close()
    assert (await sqlite.write("db", "t", "still", b"fine")).etag


@pytest.mark.parametrize("kind", ["directory", "garbage"])
async def test_a_file_that_is_not_a_store_is_refused_clearly(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "store.db"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"this is not a database, " * 100)
    store = SqliteStore(path)
    with pytest.raises(MicroError) as info:
        await store.write("db", "t", "k", b"")
    assert info.value.code == "internal"
    assert "cannot open store" in info.value.detail and str(path) in info.value.detail
    await store.close()
    if kind == "garbage":
        assert path.read_bytes().startswith(b"this is not a database")
