"""Conformance cases for sync locks and leader election (see :mod:`.sync`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from ...errors import MicroError
from ...sync import Sync
from .clock import FakeClock

__all__ = ["LockCases", "code_of"]


async def code_of(call: Awaitable[object]) -> tuple[str, str]:
    """The error code and detail ``call`` fails with (fails the test if it succeeds)."""
    with pytest.raises(MicroError) as err:
        await call
    return err.value.code, err.value.detail


class LockCases:
    """Locks with TTL and fencing tokens; elections."""

    async def test_acquire_gives_lease_with_token(self, sync: Sync, clock: FakeClock) -> None:
        lease = await sync.acquire("jobs", 10, owner="a")
        assert (lease.name, lease.owner, lease.token) == ("jobs", "a", 1)
        assert lease.expires == pytest.approx(clock.now + 10)

    async def test_held_lock_conflicts_and_tokens_increase(self, sync: Sync) -> None:
        first = await sync.acquire("jobs", 10, owner="a")
        code, detail = await code_of(sync.acquire("jobs", 10, owner="b"))
        assert code == "conflict" and "jobs" in detail
        await sync.release(first)
        second = await sync.acquire("jobs", 10, owner="b")
        assert second.token == first.token + 1
        other = await sync.acquire("other", 10)
        assert other.token == 1 and other.owner  # tokens count per lock; owner generated

    async def test_expired_lease_is_stale(self, sync: Sync, clock: FakeClock) -> None:
        old = await sync.acquire("jobs", 5, owner="a")
        clock.advance(5.5)
        new = await sync.acquire("jobs", 5, owner="b")
        assert new.token == old.token + 1
        assert (await code_of(sync.renew(old, 5)))[0] == "conflict"
        assert (await code_of(sync.release(old)))[0] == "conflict"
        await sync.release(new)

    async def test_expired_unclaimed_lease_cannot_renew(self, sync: Sync, clock: FakeClock) -> None:
        lease = await sync.acquire("jobs", 5)
        clock.advance(6)
        assert (await code_of(sync.renew(lease, 5)))[0] == "conflict"
        assert (await code_of(sync.release(lease)))[0] == "conflict"

    async def test_renew_extends(self, sync: Sync, clock: FakeClock) -> None:
        lease = await sync.acquire("jobs", 5, owner="a")
        clock.advance(4)
        renewed = await sync.renew(lease, 5)
        assert renewed.token == lease.token and renewed.expires == pytest.approx(clock.now + 5)
        clock.advance(4)  # past the first expiry, within the renewed one
        assert (await code_of(sync.acquire("jobs", 5)))[0] == "conflict"
        await sync.release(renewed)

    @pytest.mark.parametrize("ttl", [0, -1, float("nan")])
    async def test_bad_ttl(self, sync: Sync, ttl: float) -> None:
        code, detail = await code_of(sync.acquire("jobs", ttl))
        assert code == "bad_request" and "ttl" in detail

    async def test_bad_names(self, sync: Sync) -> None:
        code, detail = await code_of(sync.acquire("", 5))
        assert code == "bad_request" and "name" in detail
        code, detail = await code_of(sync.acquire("x" * 1000, 5))
        assert code == "bad_request" and "name" in detail
        assert (await code_of(sync.acquire("jobs", 5, wait=-1)))[0] == "bad_request"

    async def test_wait_gets_released_lock(self, sync: Sync) -> None:
        held = await sync.acquire("jobs", 10, owner="a")
        waiter = asyncio.create_task(sync.acquire("jobs", 10, owner="b", wait=5))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await sync.release(held)
        lease = await asyncio.wait_for(waiter, 5)
        assert (lease.owner, lease.token) == ("b", held.token + 1)

    async def test_wait_gets_expired_lock(self, sync: Sync, clock: FakeClock) -> None:
        await sync.acquire("jobs", 10, owner="a")
        waiter = asyncio.create_task(sync.acquire("jobs", 10, owner="b", wait=5))
        await asyncio.sleep(0.1)
        clock.advance(11)
        assert (await asyncio.wait_for(waiter, 5)).owner == "b"

    async def test_wait_is_bounded(self, sync: Sync) -> None:
        await sync.acquire("jobs", 10, owner="a")
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert (await code_of(sync.acquire("jobs", 10, wait=0.2)))[0] == "conflict"
        assert 0.15 <= loop.time() - start < 3

    # -- elections -----------------------------------------------------------------------

    async def test_campaign_and_resign(self, sync: Sync) -> None:
        assert await sync.leader("db") is None
        lease = await sync.campaign("db", "n1", 10)
        assert lease.owner == "n1" and await sync.leader("db") == "n1"
        assert (await code_of(sync.campaign("db", "n2", 10, timeout=0.1)))[0] == "conflict"
        await sync.resign(lease)
        assert await sync.leader("db") is None

    async def test_campaign_waits_for_leader_to_go(self, sync: Sync, clock: FakeClock) -> None:
        first = await sync.campaign("db", "n1", 10)
        second = asyncio.create_task(sync.campaign("db", "n2", 10, timeout=5))
        await asyncio.sleep(0.1)
        assert not second.done()
        clock.advance(11)  # n1 stopped renewing
        lease = await asyncio.wait_for(second, 5)
        assert lease.token > first.token and await sync.leader("db") == "n2"

    async def test_observe_sees_changes(self, sync: Sync) -> None:
        seen: list[str | None] = []
        stream = sync.observe("db")

        async def watch(count: int) -> None:
            async for leader in stream:
                seen.append(leader)
                if len(seen) == count:
                    return

        watcher = asyncio.create_task(watch(3))
        await asyncio.sleep(0.2)
        lease = await sync.campaign("db", "n1", 10)
        await asyncio.sleep(0.2)
        await sync.resign(lease)
        await asyncio.wait_for(watcher, 5)
        assert seen == [None, "n1", None]
        await stream.aclose()  # type: ignore[attr-defined]
