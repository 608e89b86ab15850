"""SQLite specifics: durability across reopen, tokens never go back, group commit, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from micro.errors import MicroError
from micro.sync.sqlite import SqliteSync
from micro.testing.conformance.clock import FakeClock


async def test_state_survives_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    db = SqliteSync(tmp_path / "sync.db", clock)
    await db.start()
    for _ in range(3):
        await db.release(await db.acquire("jobs", 10))
    held = await db.acquire("jobs", 10, owner="a")
    await db.map_put("m", "k", b"v")
    task_id = await db.enqueue("q", b"job")
    await db.close()

    again = SqliteSync(tmp_path / "sync.db", clock)
    try:
        with pytest.raises(MicroError) as err:
            await again.acquire("jobs", 10)  # still held: the lease was persisted
        assert err.value.code == "conflict"
        await again.release(held)
        assert (await again.acquire("jobs", 10)).token == 5
        assert await again.map_get("m", "k") == (b"v", 1)
        task = await again.lease("q", "w", 10)
        assert task is not None and task.id == task_id
    finally:
        await again.close()


async def test_expired_lock_tokens_never_go_back(tmp_path: Path) -> None:
    clock = FakeClock()
    db = SqliteSync(tmp_path / "sync.db", clock)
    tokens = []
    for _ in range(5):
        tokens.append((await db.acquire("jobs", 1)).token)
        clock.advance(2)  # each holder dies without releasing
    await db.close()
    again = SqliteSync(tmp_path / "sync.db", clock)
    tokens.append((await again.acquire("jobs", 1)).token)
    await again.close()
    assert tokens == [1, 2, 3, 4, 5, 6]


async def test_concurrent_writes_share_transactions(tmp_path: Path) -> None:
    db = SqliteSync(tmp_path / "sync.db")
    await db.start()
    assert db._writer is not None
    before = db._writer.batches
    versions = await asyncio.gather(*(db.map_put("m", f"k{i}", b"x") for i in range(200)))
    assert versions == [1] * 200
    assert db._writer.batches - before < 50  # group commit: far fewer fsyncs than writes
    assert len(await db.map_list("m")) == 200
    await db.close()


async def test_conflict_in_a_batch_loses_nothing_else(tmp_path: Path) -> None:
    db = SqliteSync(tmp_path / "sync.db")
    await db.map_put("m", "k", b"v")
    results = await asyncio.gather(
        db.map_put("m", "k", b"bad", version=7),
        db.map_put("m", "other", b"ok"),
        return_exceptions=True,
    )
    assert isinstance(results[0], MicroError) and results[0].code == "conflict"
    assert results[1] == 1
    assert await db.map_get("m", "k") == (b"v", 1)
    await db.close()


async def test_unusable_path_and_closed_database(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    bad = SqliteSync(tmp_path / "dir.db")
    with pytest.raises(MicroError) as err:
        await bad.start()
    assert err.value.code == "internal" and err.value.status == 500
    await bad.close()
    db = SqliteSync(tmp_path / "sync.db")
    await db.start()
    await db.close()
    with pytest.raises(MicroError) as err:
        await db.map_list("m")
    assert err.value.code == "unavailable"
