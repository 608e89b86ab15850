"""EtcdLocks (sync locks on etcd) against a real etcd: fencing tokens, TTL, waits, restarts.

Tokens are etcd create revisions: strictly increasing per name, not consecutive. Expiry
runs on etcd's clock, so the expiry cases sleep (2 s leases, etcd's minimum)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable

import pytest

from micro.errors import MicroError
from micro.sync.etcd import EtcdLocks
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
    """The clock ``Lease.expires`` is computed from."""
    return FakeClock()


@pytest.fixture
async def locks(etcd_endpoint: str, clock: FakeClock) -> AsyncIterator[EtcdLocks]:
    """Locks under a fresh prefix of the session etcd."""
    backend = EtcdLocks(etcd_endpoint, prefix=f"/test-{uuid.uuid4().hex}/sync/", clock=clock)
    try:
        yield backend
    finally:
        await backend.close()


async def test_acquire_gives_lease_with_token(locks: EtcdLocks, clock: FakeClock) -> None:
    lease = await locks.acquire("jobs", 10, owner="a")
    assert (lease.name, lease.owner) == ("jobs", "a")
    assert lease.token > 0
    assert lease.expires == pytest.approx(clock.now + 10)


async def test_held_lock_conflicts_and_tokens_increase(locks: EtcdLocks) -> None:
    first = await locks.acquire("jobs", 10, owner="a")
    code, detail = await code_of(locks.acquire("jobs", 10, owner="b"))
    assert code == "conflict" and "jobs" in detail
    await locks.release(first)
    second = await locks.acquire("jobs", 10, owner="b")
    assert second.token > first.token
    other = await locks.acquire("other/lock", 10)
    assert other.token > second.token and other.owner  # owner generated
    assert (await code_of(locks.release(first)))[0] == "conflict"  # released: stale


async def test_only_one_of_many_concurrent_acquirers_wins(locks: EtcdLocks) -> None:
    results = await asyncio.gather(
        *(locks.acquire("race", 10, owner=f"w{i}") for i in range(10)), return_exceptions=True
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, MicroError) and r.code == "conflict"]
    assert (len(won), len(lost)) == (1, 9)


async def test_renew_extends_past_the_first_ttl(locks: EtcdLocks, clock: FakeClock) -> None:
    lease = await locks.acquire("jobs", 2, owner="a")
    await asyncio.sleep(1.2)
    clock.advance(1.2)
    renewed = await locks.renew(lease, 2)
    assert renewed.token == lease.token
    assert renewed.expires == pytest.approx(clock.now + 2)
    await asyncio.sleep(1.2)  # past the first lease, within the renewed one
    assert (await code_of(locks.acquire("jobs", 2)))[0] == "conflict"
    await locks.release(renewed)
    assert (await locks.acquire("jobs", 2)).token > lease.token


async def test_expired_lease_is_stale(locks: EtcdLocks) -> None:
    old = await locks.acquire("jobs", 2, owner="a")
    new = await locks.acquire("jobs", 2, owner="b", wait=10)  # free once etcd expires it
    assert new.token > old.token
    assert (await code_of(locks.renew(old, 2)))[0] == "conflict"
    assert (await code_of(locks.release(old)))[0] == "conflict"
    await locks.release(new)


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
async def test_bad_ttl(locks: EtcdLocks, ttl: float) -> None:
    code, detail = await code_of(locks.acquire("jobs", ttl))
    assert code == "bad_request" and "ttl" in detail


async def test_bad_names_and_wait(locks: EtcdLocks) -> None:
    code, detail = await code_of(locks.acquire("", 5))
    assert code == "bad_request" and "name" in detail
    code, detail = await code_of(locks.acquire("x" * 1000, 5))
    assert code == "bad_request" and "name" in detail
    code, detail = await code_of(locks.acquire("jobs", 5, wait=-1))
    assert code == "bad_request" and "wait" in detail
    held = await locks.acquire("jobs", 5)
    assert (await code_of(locks.renew(held, 0)))[0] == "bad_request"
    await locks.release(held)  # bad input lost nothing: the lease is still live


async def test_wait_gets_released_lock(locks: EtcdLocks) -> None:
    held = await locks.acquire("jobs", 10, owner="a")
    waiter = asyncio.create_task(locks.acquire("jobs", 10, owner="b", wait=5))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await locks.release(held)
    lease = await asyncio.wait_for(waiter, 5)
    assert lease.owner == "b" and lease.token > held.token


async def test_wait_is_bounded(locks: EtcdLocks) -> None:
    await locks.acquire("jobs", 10, owner="a")
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await code_of(locks.acquire("jobs", 10, wait=0.3)))[0] == "conflict"
    assert 0.25 <= loop.time() - start < 3


async def test_tokens_keep_growing_across_an_etcd_restart(etcd_process: EtcdProcess) -> None:
    locks = EtcdLocks(etcd_process.endpoint, timeout=2.0)
    try:
        first = await locks.acquire("jobs", 30, owner="a")
        etcd_process.stop()
        code, _ = await code_of(locks.renew(first, 30))
        assert code in ("unavailable", "timeout")
        etcd_process.start()

        async def renewed() -> bool:
            try:
                await locks.renew(first, 30)
            except MicroError as err:
                assert err.code != "conflict", err  # the lease must survive the restart
                return False
            return True

        await eventually(renewed, timeout=15, message="reconnected")
        await locks.release(first)
        second = await locks.acquire("jobs", 30, owner="b")
        assert second.token > first.token
    finally:
        await locks.close()
