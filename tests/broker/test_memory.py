"""The memory broker's own promises: exact round robin, skipping full members, bounded
buffers under a flood, clean-up of topics, and refusing work once closed."""

from __future__ import annotations

import msgspec
import pytest

from micro import MicroError
from micro.broker import DEFAULT_BUFFER, DEFAULT_MAX_BODY, Broker, Message, Subscription
from micro.broker.memory import MemoryBroker, MemorySubscription
from micro.testing.conformance.clock import FakeClock


def drain(sub: MemorySubscription) -> list[bytes]:
    """What sits in a subscription's buffer, read without waiting."""
    return [m.body for m in list(sub._items)]


def test_satisfies_the_protocols() -> None:
    broker = MemoryBroker()
    assert isinstance(broker, Broker)
    assert (broker.buffer, broker.max_body) == (DEFAULT_BUFFER, DEFAULT_MAX_BODY)
    assert DEFAULT_MAX_BODY == 1024 * 1024


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="buffer"):
        MemoryBroker(buffer=0)
    with pytest.raises(ValueError, match="max_body"):
        MemoryBroker(max_body=-1)


async def test_subscriptions_satisfy_the_protocol() -> None:
    sub = await MemoryBroker().subscribe("t")
    assert isinstance(sub, Subscription)


async def test_a_queue_group_rotates_strictly() -> None:
    broker = MemoryBroker()
    members = [await broker.subscribe("t", "g") for _ in range(3)]
    for i in range(9):
        await broker.publish("t", bytes([i]))
    assert [drain(m) for m in members] == [
        [b"\x00", b"\x03", b"\x06"],
        [b"\x01", b"\x04", b"\x07"],
        [b"\x02", b"\x05", b"\x08"],
    ]


async def test_a_full_member_is_skipped_for_the_next_with_room() -> None:
    broker = MemoryBroker(buffer=2)
    a, b = await broker.subscribe("t", "g"), await broker.subscribe("t", "g")
    for i in range(4):  # a: 0 2, b: 1 3 -> both full
        await broker.publish("t", bytes([i]))
    await a.__anext__()  # a has room for one
    await broker.publish("t", b"\x04")  # b's turn, but b is full: goes to a
    assert (drain(a), drain(b)) == ([b"\x02", b"\x04"], [b"\x01", b"\x03"])
    assert (a.dropped, b.dropped) == (0, 0)


async def test_when_every_member_is_full_the_drop_counts_on_the_one_whose_turn_it_was() -> None:
    broker = MemoryBroker(buffer=1)
    a, b = await broker.subscribe("t", "g"), await broker.subscribe("t", "g")
    for i in range(5):  # 0 -> a, 1 -> b, then 2 (a's turn), 3 (b's), 4 (a's) are dropped
        await broker.publish("t", bytes([i]))
    assert (a.dropped, b.dropped) == (2, 1)
    assert (a.pending, b.pending) == (1, 1)


async def test_a_member_leaving_keeps_the_rotation_going() -> None:
    broker = MemoryBroker()
    a, b, c = [await broker.subscribe("t", "g") for _ in range(3)]
    await broker.publish("t", b"0")  # a
    await broker.publish("t", b"1")  # b; c is next
    await a.close()
    await broker.publish("t", b"2")
    await broker.publish("t", b"3")
    assert (drain(b), drain(c)) == ([b"1", b"3"], [b"2"])


async def test_a_flood_keeps_memory_bounded() -> None:
    broker = MemoryBroker(buffer=8)
    sub = await broker.subscribe("flood")
    for i in range(50_000):
        await broker.publish("flood", i.to_bytes(4, "big"))
    assert (sub.pending, sub.dropped) == (8, 50_000 - 8)
    assert drain(sub) == [i.to_bytes(4, "big") for i in range(8)]


async def test_topics_without_subscribers_are_forgotten() -> None:
    broker = MemoryBroker()
    subs = [await broker.subscribe(f"t{i}", "g" if i % 2 else None) for i in range(100)]
    assert len(broker.topics()) == 100
    assert broker.subscriber_count("t1") == 1 and broker.subscriber_count("none") == 0
    for sub in subs:
        await sub.close()
    assert (broker.topics(), broker.subscriber_count(), broker._topics) == ([], 0, {})


async def test_a_closed_broker_refuses_work_and_ends_readers() -> None:
    broker = MemoryBroker()
    sub = await broker.subscribe("t")
    await broker.publish("t", b"unread")
    await broker.close()
    assert sub.closed and sub.pending == 0
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()
    for attempt in (broker.publish("t", b"x"), broker.subscribe("t")):
        with pytest.raises(MicroError) as err:
            await attempt
        assert err.value.code == "unavailable"
    await sub.close()  # closing after the broker closed is harmless
    await broker.close()


async def test_bodies_of_bytes_like_types_are_accepted_and_others_refused() -> None:
    broker = MemoryBroker()
    sub = await broker.subscribe("t")
    await broker.publish("t", bytearray(b"ba"))  # type: ignore[arg-type]
    await broker.publish("t", memoryview(b"mv"))  # type: ignore[arg-type]
    assert [type(b) for b in drain(sub)] == [bytes, bytes] and drain(sub) == [b"ba", b"mv"]
    with pytest.raises(MicroError) as err:
        await broker.publish("t", "text")  # type: ignore[arg-type]
    assert err.value.status == 400 and "body" in err.value.detail
    with pytest.raises(MicroError):
        await broker.publish("t", b"x", {"k": 1})  # type: ignore[dict-item]
    with pytest.raises(MicroError):
        await broker.subscribe(1)  # type: ignore[arg-type]


async def test_messages_are_read_only_copies_stamped_by_the_clock() -> None:
    clock = FakeClock(100.0)
    broker = MemoryBroker(clock=clock)
    sub = await broker.subscribe("t")
    meta = {"k": "v"}
    await broker.publish("t", b"1", meta)
    clock.advance(5)
    await broker.publish("t", b"2")
    meta["k"] = "changed"
    first, second = await sub.__anext__(), await sub.__anext__()
    assert (first.metadata, first.timestamp, second.timestamp) == ({"k": "v"}, 100.0, 105.0)
    with pytest.raises(AttributeError):
        first.body = b"other"  # type: ignore[misc]
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(first), type=Message) == first


async def test_publishing_to_a_topic_nobody_listens_to_still_validates_and_returns_an_id() -> None:
    broker = MemoryBroker(max_body=4)
    assert await broker.publish("nobody", b"1234")
    with pytest.raises(MicroError) as err:
        await broker.publish("nobody", b"12345")
    assert err.value.code == "too_large"
    assert broker.topics() == []
