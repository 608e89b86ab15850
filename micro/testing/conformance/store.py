"""The behaviour every :class:`~micro.store.Store` backend must show.

Subclass :class:`StoreConformance` in a test module and provide two fixtures: ``clock``, a
:class:`~micro.testing.conformance.clock.FakeClock`, and ``store``, the backend under test,
empty, reading time from that clock, with the default value limit (1 MiB)::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def clock(self) -> FakeClock:
            return FakeClock()

        @pytest.fixture
        async def store(self, clock: FakeClock) -> AsyncIterator[Store]:
            backend = MyStore(clock=clock)
            yield backend
            await backend.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from ...errors import MicroError
from ...store import (
    DEFAULT_MAX_VALUE,
    MAX_BULK,
    MAX_KEY,
    MAX_OPS,
    DeleteOp,
    Op,
    Store,
    WriteOp,
)
from .clock import FakeClock

__all__ = ["StoreConformance"]

DB, T = "db", "t"


async def fails(code: str, call: Awaitable[Any], *words: str) -> MicroError:
    """Await ``call``; it must raise a :class:`MicroError` with ``code`` whose detail
    mentions every one of ``words``."""
    with pytest.raises(MicroError) as info:
        await call
    err = info.value
    assert err.code == code, err
    for word in words:
        assert word in err.detail, (word, err.detail)
    return err


async def fill(store: Store, *keys: str, table: str = T) -> None:
    """Write each key with its own name as the value."""
    for key in keys:
        await store.write(DB, table, key, key.encode())


class StoreConformance:
    """Test cases run against every store backend (fixtures ``store`` and ``clock``)."""

    # -- single records --------------------------------------------------------------------

    async def test_write_then_read(self, store: Store) -> None:
        written = await store.write(DB, T, "k", b"\x00\xffbin", metadata={"type": "blob"})
        assert (written.key, written.value) == ("k", b"\x00\xffbin")
        assert written.metadata == {"type": "blob"}
        assert written.etag and written.expiry is None
        (got,) = await store.read(DB, T, "k")
        assert got == written

    async def test_empty_value_and_unicode_key(self, store: Store) -> None:
        await store.write(DB, T, "clé/日本/🙂", b"")
        (got,) = await store.read(DB, T, "clé/日本/🙂")
        assert (got.key, got.value, got.metadata) == ("clé/日本/🙂", b"", {})

    async def test_missing_key_is_not_found(self, store: Store) -> None:
        await fails("not_found", store.read(DB, T, "nope"), "nope")

    async def test_every_write_changes_the_etag(self, store: Store) -> None:
        etags = [(await store.write(DB, T, "k", str(i).encode())).etag for i in range(5)]
        await store.delete(DB, T, "k")
        etags.append((await store.write(DB, T, "k", b"again")).etag)
        assert len(set(etags)) == 6
        (got,) = await store.read(DB, T, "k")
        assert (got.value, got.etag) == (b"again", etags[-1])

    async def test_tables_and_databases_are_separate(self, store: Store) -> None:
        await store.write("a", "x", "k", b"ax")
        await store.write("a", "y", "k", b"ay")
        await store.write("b", "x", "k", b"bx")
        values = [
            (await store.read(db, t, "k"))[0].value
            for db, t in [("a", "x"), ("a", "y"), ("b", "x")]
        ]
        assert values == [b"ax", b"ay", b"bx"]
        await store.delete("a", "x", "k")
        assert (await store.read("a", "y", "k"))[0].value == b"ay"
        await fails("not_found", store.read("a", "x", "k"))

    async def test_delete(self, store: Store) -> None:
        await fill(store, "k")
        await store.delete(DB, T, "k")
        await fails("not_found", store.read(DB, T, "k"))
        await store.delete(DB, T, "k")  # absent is fine

    async def test_read_many_keeps_order_and_skips_absent(self, store: Store) -> None:
        await fill(store, "a", "b", "c")
        found = await store.read_many(DB, T, ["c", "zz", "a"])
        assert [(r.key, r.value) for r in found] == [("c", b"c"), ("a", b"a")]
        assert await store.read_many(DB, T, []) == []
        assert await store.read_many("other", T, ["a"]) == []

    # -- scans -----------------------------------------------------------------------------

    async def test_prefix_read_orders_pages(self, store: Store) -> None:
        await fill(store, "user/3", "user/1", "user/2", "users", "other/1", "use")
        keys = [r.key for r in await store.read(DB, T, "user/", prefix=True)]
        assert keys == ["user/1", "user/2", "user/3"]
        desc = await store.read(DB, T, "user/", prefix=True, order="desc")
        assert [r.key for r in desc] == ["user/3", "user/2", "user/1"]
        page = await store.read(DB, T, "user", prefix=True, limit=2, offset=1)
        assert [r.key for r in page] == ["user/2", "user/3"]
        assert [r.value for r in page] == [b"user/2", b"user/3"]
        assert await store.read(DB, T, "user", prefix=True, limit=0) == []
        assert await store.read(DB, T, "user", prefix=True, offset=10) == []
        assert await store.read(DB, T, "nothing", prefix=True) == []
        everything = await store.read(DB, T, "", prefix=True)
        assert len(everything) == 6

    async def test_suffix_and_both(self, store: Store) -> None:
        await fill(store, "a.json", "b.json", "a.txt", "json", "x/a.json")
        by_suffix = await store.read(DB, T, ".json", suffix=True, order="desc")
        assert [r.key for r in by_suffix] == ["x/a.json", "b.json", "a.json"]
        both = await store.read(DB, T, "a", prefix=True, suffix=True)
        assert both == []  # keys that start and end with "a"
        await fill(store, "aba")
        assert [r.key for r in await store.read(DB, T, "a", prefix=True, suffix=True)] == ["aba"]

    async def test_prefix_at_the_edges_of_unicode(self, store: Store) -> None:
        top = "\U0010ffff"
        await fill(store, f"a{top}", f"a{top}b", "b", "a\ud7ffz", "a\ue000")
        keys = [r.key for r in await store.read(DB, T, f"a{top}", prefix=True)]
        assert keys == [f"a{top}", f"a{top}b"]
        assert [r.key for r in await store.read(DB, T, "a\ud7ff", prefix=True)] == ["a\ud7ffz"]
        assert await store.list_keys(DB, T, prefix="a") == [
            "a\ud7ffz",
            "a\ue000",
            f"a{top}",
            f"a{top}b",
        ]

    async def test_list_keys(self, store: Store) -> None:
        await fill(store, "b/2", "a/1", "b/1", "c/1")
        assert await store.list_keys(DB, T) == ["a/1", "b/1", "b/2", "c/1"]
        assert await store.list_keys(DB, T, prefix="b/") == ["b/1", "b/2"]
        assert await store.list_keys(DB, T, suffix="/1", order="desc") == ["c/1", "b/1", "a/1"]
        assert await store.list_keys(DB, T, limit=2, offset=1) == ["b/1", "b/2"]
        assert await store.list_keys("empty", T) == []

    async def test_list_databases_and_tables(self, store: Store) -> None:
        assert await store.list_databases() == []
        await store.write("db2", "t1", "k", b"")
        await store.write("db1", "t2", "k", b"")
        await store.write("db1", "t1", "k", b"")
        assert await store.list_databases() == ["db1", "db2"]
        assert await store.list_tables("db1") == ["t1", "t2"]
        assert await store.list_tables("none") == []
        await store.delete("db1", "t2", "k")
        assert await store.list_tables("db1") == ["t1"]

    # -- expiry ----------------------------------------------------------------------------

    async def test_ttl_sets_expiry_and_expired_records_vanish(
        self, store: Store, clock: FakeClock
    ) -> None:
        record = await store.write(DB, T, "tmp/1", b"v", ttl=10)
        assert record.expiry == pytest.approx(clock.now + 10)
        await store.write(DB, "other", "keep", b"v")
        clock.advance(9.5)
        assert (await store.read(DB, T, "tmp/1"))[0].expiry == pytest.approx(record.expiry)
        clock.advance(0.5)  # the expiry instant itself is expired
        await fails("not_found", store.read(DB, T, "tmp/1"))
        assert await store.read(DB, T, "tmp/", prefix=True) == []
        assert await store.read_many(DB, T, ["tmp/1"]) == []
        assert await store.list_keys(DB, T) == []
        assert await store.list_tables(DB) == ["other"]

    async def test_a_write_without_ttl_clears_the_expiry(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.write(DB, T, "k", b"1", ttl=5)
        await store.write(DB, T, "k", b"2")
        clock.advance(60)
        assert (await store.read(DB, T, "k"))[0].value == b"2"

    async def test_an_expired_record_counts_as_absent(self, store: Store, clock: FakeClock) -> None:
        old = await store.write(DB, T, "k", b"old", ttl=1)
        clock.advance(2)
        await fails("conflict", store.write(DB, T, "k", b"x", etag=old.etag), "k")
        await fails("conflict", store.delete(DB, T, "k", etag=old.etag))
        created = await store.write(DB, T, "k", b"new", if_absent=True)
        assert (await store.read(DB, T, "k"))[0] == created

    # -- optimistic concurrency ------------------------------------------------------------

    async def test_write_with_etag(self, store: Store) -> None:
        first = await store.write(DB, T, "k", b"1")
        second = await store.write(DB, T, "k", b"2", etag=first.etag)
        err = await fails("conflict", store.write(DB, T, "k", b"3", etag=first.etag), "k")
        assert err.status == 409
        assert (await store.read(DB, T, "k"))[0] == second
        await fails("conflict", store.write(DB, T, "absent", b"x", etag=first.etag), "absent")
        await fails("not_found", store.read(DB, T, "absent"))

    async def test_write_if_absent(self, store: Store) -> None:
        created = await store.write(DB, T, "k", b"1", if_absent=True)
        await fails("conflict", store.write(DB, T, "k", b"2", if_absent=True), "exists")
        assert (await store.read(DB, T, "k"))[0] == created

    async def test_delete_with_etag(self, store: Store) -> None:
        first = await store.write(DB, T, "k", b"1")
        await store.write(DB, T, "k", b"2")
        await fails("conflict", store.delete(DB, T, "k", etag=first.etag))
        current = (await store.read(DB, T, "k"))[0]
        await store.delete(DB, T, "k", etag=current.etag)
        await fails("not_found", store.read(DB, T, "k"))

    async def test_concurrent_compare_and_set_loses_no_update(self, store: Store) -> None:
        await store.write(DB, T, "counter", b"0")

        async def increment() -> None:
            while True:
                (current,) = await store.read(DB, T, "counter")
                try:
                    await store.write(
                        DB, T, "counter", str(int(current.value) + 1).encode(), etag=current.etag
                    )
                    return
                except MicroError as err:
                    assert err.code == "conflict", err

        await asyncio.wait_for(asyncio.gather(*(increment() for _ in range(20))), 30)
        assert (await store.read(DB, T, "counter"))[0].value == b"20"

    async def test_concurrent_writes_all_land(self, store: Store) -> None:
        records = await asyncio.gather(
            *(store.write(DB, T, f"k{i:03}", str(i).encode()) for i in range(100))
        )
        assert len({r.etag for r in records}) == 100
        found = await store.read(DB, T, "k", prefix=True)
        assert [r.value for r in found] == [str(i).encode() for i in range(100)]

    # -- transactions ----------------------------------------------------------------------

    async def test_transaction_applies_everything(self, store: Store) -> None:
        old = await store.write(DB, T, "old", b"o")
        await fill(store, "gone")
        written = await store.transact(
            DB,
            T,
            [
                WriteOp("a", b"1", metadata={"m": "1"}, ttl=30),
                DeleteOp("gone"),
                WriteOp("old", b"new", etag=old.etag),
                WriteOp("b", b"2", if_absent=True),
            ],
        )
        assert [(r.key, r.value) for r in written] == [("a", b"1"), ("old", b"new"), ("b", b"2")]
        assert written[0].expiry is not None and written[0].metadata == {"m": "1"}
        assert await store.list_keys(DB, T) == ["a", "b", "old"]
        for record in written:
            assert (await store.read(DB, T, record.key))[0] == record

    async def test_transaction_conflict_applies_nothing(self, store: Store) -> None:
        first = await store.write(DB, T, "x", b"1")
        await store.write(DB, T, "x", b"2")
        await fill(store, "y")
        before = await store.read(DB, T, "", prefix=True)
        ops: list[Op] = [WriteOp("new", b"n"), DeleteOp("y"), WriteOp("x", b"3", etag=first.etag)]
        await fails("conflict", store.transact(DB, T, ops), "ops[2]", "'x'")
        create: list[Op] = [DeleteOp("y"), WriteOp("x", b"4", if_absent=True)]
        await fails("conflict", store.transact(DB, T, create), "ops[1]")
        assert await store.read(DB, T, "", prefix=True) == before

    async def test_transaction_ops_see_earlier_ops(self, store: Store) -> None:
        await fill(store, "x")
        await store.transact(DB, T, [DeleteOp("x"), WriteOp("x", b"again", if_absent=True)])
        assert (await store.read(DB, T, "x"))[0].value == b"again"
        await store.transact(DB, T, [WriteOp("y", b"1", if_absent=True), DeleteOp("y")])
        await fails("not_found", store.read(DB, T, "y"))
        assert await store.transact(DB, T, []) == []

    # -- limits and bad input --------------------------------------------------------------

    async def test_bad_names_and_keys(self, store: Store) -> None:
        cases: list[tuple[Awaitable[Any], str]] = [
            (store.write("bad name", T, "k", b""), "database"),
            (store.write(DB, "", "k", b""), "table"),
            (store.write("d" * 129, T, "k", b""), "database"),
            (store.read(DB, "t/x", "k"), "table"),
            (store.write(DB, T, "", b""), "key"),
            (store.read(DB, T, ""), "key"),
            (store.write(DB, T, "a\x00b", b""), "NUL"),
            (store.write(DB, T, "k" * (MAX_KEY + 1), b""), "1024"),
            (store.write(DB, T, "é" * 513, b""), "1024"),
            (store.delete(DB, T, ""), "key"),
            (store.list_tables("no way"), "database"),
            (store.read_many(DB, T, ["ok", ""]), "keys[1]"),
            (store.read(DB, T, "k", prefix=True, limit=-1), "limit"),
            (store.list_keys(DB, T, offset=-1), "offset"),
            (store.list_keys(DB, T, prefix="\x00"), "prefix"),
            (store.read(DB, T, "k", prefix=True, order="up"), "order"),  # type: ignore[arg-type]
        ]
        for call, word in cases:
            await fails("bad_request", call, word)
        await store.write(DB, T, "k" * MAX_KEY, b"max")
        assert await store.list_databases() == [DB]

    async def test_bad_writes_store_nothing(self, store: Store) -> None:
        cases: list[tuple[Awaitable[Any], str, str]] = [
            (store.write(DB, T, "k", b"x" * (DEFAULT_MAX_VALUE + 1)), "too_large", "value"),
            (store.write(DB, T, "k", b"", metadata={"m": "x" * 17000}), "too_large", "metadata"),
            (store.write(DB, T, "k", b"", metadata={"": "x"}), "bad_request", "metadata"),
            (store.write(DB, T, "k", b"", ttl=0), "bad_request", "ttl"),
            (store.write(DB, T, "k", b"", ttl=-5), "bad_request", "ttl"),
            (store.write(DB, T, "k", b"", etag="1", if_absent=True), "bad_request", "if_absent"),
            (store.read_many(DB, T, ["k"] * (MAX_BULK + 1)), "bad_request", "keys"),
            (store.transact(DB, T, [DeleteOp("k")] * (MAX_OPS + 1)), "bad_request", "ops"),
            (
                store.transact(DB, T, [WriteOp("a", b""), WriteOp("", b"")]),
                "bad_request",
                "ops[1].key",
            ),
            (store.transact(DB, T, [WriteOp("k", b"", ttl=-1)]), "bad_request", "ops[0].ttl"),
        ]
        for call, code, word in cases:
            await fails(code, call, word)
        assert await store.list_databases() == []
        await store.write(DB, T, "big", b"x" * DEFAULT_MAX_VALUE)
        assert len((await store.read(DB, T, "big"))[0].value) == DEFAULT_MAX_VALUE
