"""EtcdSync as a cluster shares it: two backends ("two servers") on one real etcd.

The single-backend behaviour is the conformance suite (tests/conformance/test_sync_etcd.py);
here two EtcdSync objects with the same prefix race each other, so every guarantee comes
from etcd's transactions and not from one process's event loop. Both read one FakeClock
(servers with synchronised clocks). Also: etcd stopped and restarted under a backend, and
names that percent-encoding must keep apart.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable

import pytest

from micro.errors import MicroError
from micro.sync import MAX_VALUE, Lease, Task
from micro.sync.etcd import EtcdSync
from micro.testing import eventually
from micro.testing.conformance.clock import FakeClock

from ._etcd import EtcdProcess


async def code_of(call: Awaitable[object]) -> tuple[str, str]:
    """The error code and detail ``call`` fails with."""
    with pytest.raises(MicroError) as err:
        await call
    return err.value.code, err.value.detail


@pytest.fixture
def clock() -> FakeClock:
    """The clock both servers read."""
    return FakeClock()


@pytest.fixture
async def pair(etcd_endpoint: str, clock: FakeClock) -> AsyncIterator[tuple[EtcdSync, EtcdSync]]:
    """Two backends with their own connections on one prefix of the session etcd."""
    prefix = f"/test-{uuid.uuid4().hex}/sync/"
    a = EtcdSync(etcd_endpoint, prefix=prefix, clock=clock)
    b = EtcdSync([etcd_endpoint], prefix=prefix, clock=clock)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_one_lock_holder_at_a_time_across_servers(
    pair: tuple[EtcdSync, EtcdSync],
) -> None:
    a, b = pair
    racers = [(a if i % 2 else b).acquire("jobs", 30, owner=f"w{i}") for i in range(12)]
    results = await asyncio.wait_for(asyncio.gather(*racers, return_exceptions=True), 30)
    won = [r for r in results if isinstance(r, Lease)]
    lost = [r for r in results if isinstance(r, MicroError) and r.code == "conflict"]
    assert (len(won), len(lost)) == (1, 11)
    assert won[0].token == 1
    # neither server lets anyone else take it while it is held
    assert (await code_of(b.acquire("jobs", 30)))[0] == "conflict"
    assert (await code_of(a.acquire("jobs", 30)))[0] == "conflict"
    await (b if int(won[0].owner[1:]) % 2 else a).release(won[0])
    assert (await b.acquire("jobs", 30)).token == 2


async def test_tokens_increase_across_servers(pair: tuple[EtcdSync, EtcdSync]) -> None:
    a, b = pair
    tokens = []
    for i in range(6):
        taker, releaser = (a, b) if i % 2 else (b, a)
        lease = await taker.acquire("jobs", 30, owner=f"o{i}")
        tokens.append(lease.token)
        # a lease taken through one server is renewed and released through the other
        lease = await releaser.renew(lease, 30)
        await releaser.release(lease)
        assert (await code_of(taker.release(lease)))[0] == "conflict"  # already released
    assert tokens == [1, 2, 3, 4, 5, 6]


async def test_expiry_is_decided_by_the_shared_clock(
    pair: tuple[EtcdSync, EtcdSync], clock: FakeClock
) -> None:
    a, b = pair
    old = await a.acquire("jobs", 10, owner="a")
    clock.advance(10.5)
    new = await b.acquire("jobs", 10, owner="b")
    assert new.token == old.token + 1
    assert (await code_of(a.renew(old, 10)))[0] == "conflict"
    await a.release(new)


async def test_waiter_on_one_server_gets_a_lock_released_on_the_other(
    pair: tuple[EtcdSync, EtcdSync],
) -> None:
    a, b = pair
    held = await a.acquire("jobs", 30, owner="a")
    waiter = asyncio.create_task(b.acquire("jobs", 30, owner="b", wait=10))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await a.release(held)  # b learns of it by polling etcd
    lease = await asyncio.wait_for(waiter, 10)
    assert (lease.owner, lease.token) == ("b", held.token + 1)


async def test_election_seen_from_the_other_server(pair: tuple[EtcdSync, EtcdSync]) -> None:
    a, b = pair
    seen: list[str | None] = []
    stream = b.observe("db")

    async def watch() -> None:
        async for leader in stream:
            seen.append(leader)
            if len(seen) == 3:
                return

    watcher = asyncio.create_task(watch())
    await eventually(lambda: seen == [None], timeout=5, message="first leader seen")
    first = await a.campaign("db", "n1", 30)
    await eventually(lambda: seen == [None, "n1"], timeout=5, message="n1 seen")
    second = asyncio.create_task(b.campaign("db", "n2", 30, timeout=10))
    await asyncio.sleep(0.2)
    assert not second.done() and await b.leader("db") == "n1"
    await a.resign(first)
    lease = await asyncio.wait_for(second, 10)
    assert lease.owner == "n2" and lease.token == first.token + 1
    await asyncio.wait_for(watcher, 10)
    # "n2" follows at once; polling may or may not catch the instant with no leader
    assert seen[:2] == [None, "n1"] and seen[2] in (None, "n2")
    await stream.aclose()  # type: ignore[attr-defined]


async def test_map_compare_and_set_race_has_one_winner(pair: tuple[EtcdSync, EtcdSync]) -> None:
    a, b = pair
    puts = [(a if i % 2 else b).map_put("m", "k", f"v{i}".encode(), version=0) for i in range(10)]
    results = await asyncio.wait_for(asyncio.gather(*puts, return_exceptions=True), 30)
    assert sorted(r for r in results if isinstance(r, int)) == [1]
    assert sum(isinstance(r, MicroError) and r.code == "conflict" for r in results) == 9
    value, version = await b.map_get("m", "k")
    assert version == 1 and value == f"v{results.index(1)}".encode()


async def test_concurrent_increments_are_not_lost(pair: tuple[EtcdSync, EtcdSync]) -> None:
    a, b = pair
    await a.map_put("counters", "n", b"0")

    async def increment(sync: EtcdSync) -> int:
        tries = 0
        while True:
            tries += 1
            value, version = await sync.map_get("counters", "n")
            try:
                await sync.map_put("counters", "n", b"%d" % (int(value) + 1), version=version)
            except MicroError as err:
                assert err.code == "conflict", err
                continue
            return tries

    tries = await asyncio.wait_for(
        asyncio.gather(*(increment(a if i % 2 else b) for i in range(16))), 60
    )
    assert await a.map_get("counters", "n") == (b"16", 17)
    assert sum(tries) >= 16


async def test_two_workers_never_lease_the_same_task(pair: tuple[EtcdSync, EtcdSync]) -> None:
    a, b = pair
    enqueued = await asyncio.wait_for(
        asyncio.gather(*((a if i % 2 else b).enqueue("q", b"%d" % i) for i in range(30))), 30
    )
    assert len(set(enqueued)) == 30  # concurrent inserts through both servers: unique ids
    leased: list[tuple[str, Task]] = []

    async def work(sync: EtcdSync, name: str) -> None:
        while (task := await sync.lease("q", name, 60)) is not None:
            leased.append((name, task))
            await sync.ack(task)

    workers = [work(a, "a1"), work(a, "a2"), work(b, "b1"), work(b, "b2")]
    await asyncio.wait_for(asyncio.gather(*workers), 60)
    ids = [task.id for _, task in leased]
    assert sorted(ids, key=int) == sorted(enqueued, key=int)  # each task once, none lost
    assert all(task.attempt == 1 for _, task in leased)
    assert await a.lease("q", "late", 60) is None and await b.dead("q") == []


async def test_expired_task_lease_moves_to_a_worker_on_the_other_server(
    pair: tuple[EtcdSync, EtcdSync], clock: FakeClock
) -> None:
    a, b = pair
    task_id = await a.enqueue("q", b"job", max_attempts=2)
    first = await a.lease("q", "a1", 5)
    assert first is not None and await b.lease("q", "b1", 5) is None
    clock.advance(6)
    again = await b.lease("q", "b1", 5)
    assert again is not None and (again.id, again.attempt) == (task_id, 2)
    assert (await code_of(a.ack(first)))[0] == "conflict"
    await b.fail(again, "boom")
    dead = await a.dead("q")
    assert [(t.id, t.attempt, t.error) for t in dead] == [(task_id, 2, "boom")]


async def test_names_stay_apart(pair: tuple[EtcdSync, EtcdSync]) -> None:
    a, b = pair
    await a.map_put("a/b", "c", b"1")
    await a.map_put("a", "b/c", b"2")
    await a.map_put("a%2Fb", "c", b"3")
    assert [(e.key, e.value) for e in await b.map_list("a")] == [("b/c", b"2")]
    assert [(e.key, e.value) for e in await b.map_list("a/b")] == [("c", b"1")]
    assert [(e.key, e.value) for e in await b.map_list("a%2Fb")] == [("c", b"3")]
    assert (await b.acquire("q/x", 5)).token == 1 and (await b.acquire("q%2Fx", 5)).token == 1
    await a.enqueue("q/x", b"slash")
    await a.enqueue("q", b"plain")
    task = await b.lease("q", "w", 5)
    assert task is not None and task.body == b"plain" and task.queue == "q"
    assert await b.lease("q", "w", 5) is None


async def test_etcd_restart_fails_calls_then_works_again(etcd_process: EtcdProcess) -> None:
    sync = EtcdSync(etcd_process.endpoint, timeout=2.0)
    try:
        first = await sync.acquire("jobs", 300, owner="a")
        await sync.map_put("m", "k", b"kept")
        etcd_process.stop()
        code, _ = await code_of(sync.renew(first, 300))
        assert code in ("unavailable", "timeout")
        assert (await code_of(sync.map_get("m", "k")))[0] in ("unavailable", "timeout")
        etcd_process.start()

        async def renewed() -> bool:
            try:
                await sync.renew(first, 300)
            except MicroError as err:
                assert err.code in ("unavailable", "timeout"), err  # the lease survives
                return False
            return True

        await eventually(renewed, timeout=15, message="reconnected")
        assert await sync.map_get("m", "k") == (b"kept", 1)
        await sync.release(first)
        second = await sync.acquire("jobs", 300, owner="b")
        assert second.token == first.token + 1  # tokens kept in etcd's data dir
    finally:
        await sync.close()


async def test_unreachable_etcd_is_unavailable() -> None:
    from ._etcd import free_port

    sync = EtcdSync(f"127.0.0.1:{free_port()}", timeout=1.0)
    try:
        assert (await code_of(sync.leader("db")))[0] in ("unavailable", "timeout")
    finally:
        await sync.close()


async def test_close_ends_observers(etcd_endpoint: str) -> None:
    sync = EtcdSync(etcd_endpoint, prefix=f"/test-{uuid.uuid4().hex}/sync/")
    seen: list[str | None] = []

    async def watch() -> None:
        async for leader in sync.observe("db"):
            seen.append(leader)

    watcher = asyncio.create_task(watch())
    await eventually(lambda: seen == [None], timeout=5, message="first leader seen")
    await sync.close()
    await asyncio.wait_for(watcher, 5)


async def test_many_expired_last_attempts_are_dead_lettered_in_one_call(
    pair: tuple[EtcdSync, EtcdSync], clock: FakeClock
) -> None:
    # One lease call moves them all to dead/: more keys than one etcd transaction may
    # touch (--max-txn-ops, 128 by default), so EtcdSync commits them in batches.
    a, b = pair
    count = 100
    ids = await asyncio.wait_for(
        asyncio.gather(*(a.enqueue("q", b"%d" % i, max_attempts=1) for i in range(count))), 60
    )
    for _ in range(count):
        assert await b.lease("q", "crashed", 5) is not None
    fresh = await a.enqueue("q", b"fresh", delay=10)
    clock.advance(10)
    task = await b.lease("q", "w", 5)
    assert task is not None and task.id == fresh
    dead = await a.dead("q")
    assert [t.id for t in dead] == sorted(ids, key=int)  # oldest first
    assert all(t.error == "lease of worker 'crashed' expired" for t in dead)


async def test_queues_of_large_bodies(pair: tuple[EtcdSync, EtcdSync]) -> None:
    # Six 1 MiB bodies: more than one gRPC answer may carry (4 MiB), so bodies live apart
    # from the rows a lease scans.
    a, b = pair
    bodies = [bytes([i]) * MAX_VALUE for i in range(6)]
    ids = [await a.enqueue("big", body, max_attempts=1) for body in bodies]
    for task_id, body in zip(ids, bodies, strict=True):
        task = await b.lease("big", "w", 30)
        assert task is not None and (task.id, task.body) == (task_id, body)
        await (a if int(task_id) % 2 else b).fail(task, "too big")
    dead = await a.dead("big")
    assert [(t.id, t.body) for t in dead] == list(zip(ids, bodies, strict=True))
    await a.map_put("m", "k", bodies[0])
    assert await b.map_get("m", "k") == (bodies[0], 1)
