"""Conformance cases for sync maps and task queues (see :mod:`.sync`)."""

from __future__ import annotations

import pytest

from ...sync import BACKOFF_BASE, MAX_VALUE, Sync
from ._sync_locks import code_of
from .clock import FakeClock

__all__ = ["DataCases"]


class DataCases:
    """Maps with compare-and-set; queues with retries and dead letters."""

    async def test_map_put_get_versions(self, sync: Sync) -> None:
        assert (await code_of(sync.map_get("m", "k")))[0] == "not_found"
        assert await sync.map_put("m", "k", b"one") == 1
        assert await sync.map_put("m", "k", b"two") == 2
        assert await sync.map_get("m", "k") == (b"two", 2)

    async def test_map_compare_and_set(self, sync: Sync) -> None:
        assert await sync.map_put("m", "k", b"a", version=0) == 1
        code, detail = await code_of(sync.map_put("m", "k", b"b", version=0))
        assert code == "conflict" and "version 1" in detail
        assert (await code_of(sync.map_put("m", "k", b"b", version=5)))[0] == "conflict"
        assert await sync.map_put("m", "k", b"b", version=1) == 2
        assert await sync.map_get("m", "k") == (b"b", 2)
        assert (await code_of(sync.map_put("m", "new", b"x", version=3)))[0] == "conflict"

    async def test_map_delete_and_list(self, sync: Sync) -> None:
        for key in ("b", "a", "c"):
            await sync.map_put("m", key, key.encode())
        await sync.map_put("other", "z", b"z")
        assert [(e.key, e.value, e.version) for e in await sync.map_list("m")] == [
            ("a", b"a", 1),
            ("b", b"b", 1),
            ("c", b"c", 1),
        ]
        assert (await code_of(sync.map_delete("m", "a", version=2)))[0] == "conflict"
        await sync.map_delete("m", "a", version=1)
        await sync.map_delete("m", "b")
        assert [e.key for e in await sync.map_list("m")] == ["c"]
        assert (await code_of(sync.map_delete("m", "a")))[0] == "not_found"
        assert await sync.map_list("empty") == []

    async def test_map_bad_input(self, sync: Sync) -> None:
        code, detail = await code_of(sync.map_put("m", "k", b"x" * (MAX_VALUE + 1)))
        assert code == "too_large" and "value" in detail
        code, detail = await code_of(sync.map_put("m", "", b"x"))
        assert code == "bad_request" and "key" in detail
        code, detail = await code_of(sync.map_put("m", "k", b"x", version=-1))
        assert code == "bad_request" and "version" in detail
        assert await sync.map_list("m") == []

    # -- queues --------------------------------------------------------------------------

    async def test_enqueue_lease_ack(self, sync: Sync, clock: FakeClock) -> None:
        ids = [await sync.enqueue("q", f"t{i}".encode()) for i in range(3)]
        assert len(set(ids)) == 3
        task = await sync.lease("q", "w1", 30)
        assert task is not None and (task.id, task.body, task.attempt) == (ids[0], b"t0", 1)
        assert task.worker == "w1" and task.lease_expires == pytest.approx(clock.now + 30)
        second = await sync.lease("q", "w2", 30)
        assert second is not None and second.id == ids[1]  # one worker per task
        await sync.ack(task)
        assert (await code_of(sync.ack(task)))[0] == "conflict"
        third = await sync.lease("q", "w1", 30)
        assert third is not None and third.id == ids[2]
        assert await sync.lease("q", "w1", 30) is None

    async def test_delay(self, sync: Sync, clock: FakeClock) -> None:
        await sync.enqueue("q", b"later", delay=10)
        assert await sync.lease("q", "w", 30) is None
        clock.advance(10)
        task = await sync.lease("q", "w", 30)
        assert task is not None and task.body == b"later"

    async def test_expired_lease_is_redelivered(self, sync: Sync, clock: FakeClock) -> None:
        await sync.enqueue("q", b"job")
        first = await sync.lease("q", "w1", 5)
        assert first is not None and await sync.lease("q", "w2", 5) is None
        clock.advance(6)
        again = await sync.lease("q", "w2", 5)
        assert again is not None and (again.id, again.attempt, again.worker) == (
            first.id,
            2,
            "w2",
        )
        assert (await code_of(sync.ack(first)))[0] == "conflict"  # the stale worker
        await sync.ack(again)

    async def test_fail_backs_off_then_dead_letters(self, sync: Sync, clock: FakeClock) -> None:
        task_id = await sync.enqueue("q", b"job", max_attempts=3)
        for attempt in (1, 2, 3):
            task = await sync.lease("q", "w", 30)
            assert task is not None and (task.id, task.attempt) == (task_id, attempt)
            await sync.fail(task, f"boom {attempt}")
            if attempt < 3:
                backoff = BACKOFF_BASE * 2 ** (attempt - 1)
                clock.advance(backoff - 0.01)
                assert await sync.lease("q", "w", 30) is None
                clock.advance(0.01)
        clock.advance(1000)
        assert await sync.lease("q", "w", 30) is None
        dead = await sync.dead("q")
        assert [(t.id, t.attempt, t.error, t.body) for t in dead] == [
            (task_id, 3, "boom 3", b"job"),
        ]
        assert await sync.dead("other") == []

    async def test_queue_bad_input(self, sync: Sync) -> None:
        assert (await code_of(sync.enqueue("q", b"x", delay=-1)))[0] == "bad_request"
        assert (await code_of(sync.enqueue("q", b"x", max_attempts=0)))[0] == "bad_request"
        code, detail = await code_of(sync.lease("q", "w", 0))
        assert code == "bad_request" and "lease_time" in detail
        assert (await code_of(sync.enqueue("q", b"x" * (MAX_VALUE + 1))))[0] == "too_large"
        assert await sync.lease("q", "w", 5) is None  # nothing was queued
