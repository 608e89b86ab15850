"""Memory store specifics: purge on demand and in the background, copies, odd input."""

from __future__ import annotations

import pytest

from micro import MicroError
from micro.store.memory import MemoryStore
from micro.testing import eventually
from micro.testing.conformance.clock import FakeClock


async def test_purge_drops_expired_records(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await store.write("db", "t", "tmp", b"", ttl=5)
    await store.write("db", "gone", "tmp", b"", ttl=5)
    await store.write("db", "t", "keep", b"")
    assert await store.purge() == 0
    clock.advance(5)
    assert await store.purge() == 2
    assert await store.list_tables("db") == ["t"]


async def test_background_purge_runs_between_start_and_close(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock, purge_interval=0.01)
    await store.start()
    try:
        await store.write("db", "t", "tmp", b"", ttl=1)
        clock.advance(2)
        await eventually(lambda: not store._tables, timeout=5, message="purged")
    finally:
        await store.close()
    assert store._purger is None


async def test_returned_records_are_copies() -> None:
    store = MemoryStore()
    written = await store.write("db", "t", "k", b"v", metadata={"a": "1"})
    written.metadata["a"] = "changed"
    (got,) = await store.read("db", "t", "k")
    got.metadata["b"] = "added"
    assert (await store.read("db", "t", "k"))[0].metadata == {"a": "1"}


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda s: s.write("db", "t", "bad\ud800", b""), "UTF-8"),
        (lambda s: s.write("db", "t", "k", "text"), "bytes"),
        (lambda s: s.write("db", "t", "k", b"", ttl=float("inf")), "ttl"),
        (lambda s: s.write("db", "t", "k", b"", ttl=True), "ttl"),
        (lambda s: s.write("db", "t", "k", b"", metadata={"k": 1}), "metadata"),
        (lambda s: s.transact("db", "t", ["not an op"]), "ops[0]"),
        (lambda s: s.read("db", "t", "k", limit=1.5, prefix=True), "limit"),
    ],
)
async def test_odd_input_is_refused(call: object, word: str) -> None:
    store = MemoryStore()
    with pytest.raises(MicroError) as info:
        await call(store)  # type: ignore[operator]
    assert info.value.code == "bad_request" and word in info.value.detail
    assert await store.list_databases() == []


async def test_a_bytearray_value_is_stored_as_bytes() -> None:
    store = MemoryStore()
    await store.write("db", "t", "k", bytearray(b"abc"))  # type: ignore[arg-type]
    (got,) = await store.read("db", "t", "k")
    assert got.value == b"abc" and isinstance(got.value, bytes)
