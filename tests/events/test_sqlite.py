"""The SQLite log: durability across kill -9, state that survives a restart, group commit,
failures that lose nothing."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from micro import MicroError
from micro.events import Event
from micro.events.sqlite import SqliteEvents
from micro.testing.conformance.clock import FakeClock

from .support import receive, start_child

PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from micro.events.sqlite import SqliteEvents

    async def main():
        events = SqliteEvents(sys.argv[1])
        await events.start()
        counter = 0

        async def worker():
            nonlocal counter
            while True:
                counter += 1
                body = f"event-{counter}"
                ack = await events.publish("durable", body.encode())
                print(ack.sequence, body, flush=True)

        await asyncio.gather(*(worker() for _ in range(16)))

    asyncio.run(main())
    """
)


async def test_every_acknowledged_publish_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    acked: dict[int, str] = {}
    with start_child([sys.executable, "-c", PUBLISHER, str(path)]) as child:
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        while len(acked) < 2000 and time.monotonic() < deadline:
            line = await asyncio.to_thread(child.stdout.readline)
            if not line:
                break
            seq, body = line.decode().split()
            acked[int(seq)] = body
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert len(acked) >= 2000, "the publisher did not get going"
    events = SqliteEvents(path)
    try:
        stored = {e.sequence: e.body.decode() for e in await _read_all(events, "durable")}
    finally:
        await events.close()
    assert {seq: stored.get(seq) for seq in acked} == acked
    assert sorted(stored) == list(range(1, len(stored) + 1))  # no gaps


async def _read_all(events: SqliteEvents, topic: str) -> list[Event]:
    out: list[Event] = []
    start = 1
    while True:
        batch = await events.read(topic, start=start, limit=1000)
        if not batch:
            return out
        out += batch
        start = batch[-1].sequence + 1


async def test_group_state_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "events.db"
    events = SqliteEvents(path, clock=clock, poll_interval=0.01)
    for i in range(6):
        await events.publish("t", str(i).encode(), key="k" if i in (1, 2) else None)
    await events.publish("t", b"later", deliver_at=clock.now + 100)
    consumer = await events.consume("t", "g", start="first", auto_ack=False)
    one, two, four = await receive(consumer), await receive(consumer), await receive(consumer)
    assert (one.sequence, two.sequence, four.sequence) == (1, 2, 4)  # 3 waits behind 2
    await consumer.ack(one)
    await consumer.nack(four, delay=50)
    await events.publish("t", b"dup", message_id="m1")
    await events.retention("t", max_events=100)
    await events.close()  # two is in flight: it is delivered again after the restart

    events = SqliteEvents(path, clock=clock, poll_interval=0.01)
    try:
        assert (await events.publish("t", b"dup", message_id="m1")).duplicate
        (info,) = await events.topics()
        assert (info.last_sequence, info.count, info.retention.max_events) == (8, 8, 100)
        consumer = await events.consume("t", "g", auto_ack=False)
        got = [await receive(consumer) for _ in range(4)]
        assert [(e.sequence, e.deliveries) for e in got] == [(2, 2), (5, 1), (6, 1), (8, 1)]
        assert await consumer.fetch(10, timeout=0.1) == []  # 3 behind 2; 4 and 7 delayed
        await consumer.ack(got[0])
        three = await receive(consumer)
        assert three.sequence == 3
        for event in [three, *got[1:]]:
            await consumer.ack(event)
        clock.advance(100)
        later = [await receive(consumer) for _ in range(2)]
        assert [(e.sequence, e.deliveries) for e in later] == [(4, 2), (7, 1)]
    finally:
        await events.close()


async def test_concurrent_publishes_share_commits(tmp_path: Path) -> None:
    events = SqliteEvents(tmp_path / "events.db")
    try:
        acks = await asyncio.gather(*(events.publish("t", b"x" * 100) for _ in range(500)))
        assert sorted(a.sequence for a in acks) == list(range(1, 501))
        assert events.commits < 250, "publishes in flight together should share an fsync"
        assert [e.sequence for e in await events.read("t", start=480)] == list(range(480, 501))
    finally:
        await events.close()


async def test_a_failed_write_fails_its_publish_and_leaves_no_gap(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    events = SqliteEvents(path)
    await events.publish("t", b"first")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(  # a trigger that makes one body fail to store
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.body = x'dead' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    try:
        with pytest.raises(MicroError) as err:
            await events.publish("t", b"\xde\xad")
        assert err.value.status == 500 and "refused" in err.value.detail
        assert (await events.publish("t", b"second")).sequence == 2
        assert [e.body for e in await events.read("t")] == [b"first", b"second"]
    finally:
        await events.close()


async def test_a_second_process_cannot_open_the_log(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    events = SqliteEvents(path)
    await events.start()
    code = (
        "import asyncio, sys\n"
        "from micro.events.sqlite import SqliteEvents\n"
        "from micro import MicroError\n"
        "async def main():\n"
        "    try:\n"
        "        await SqliteEvents(sys.argv[1]).start()\n"
        "    except MicroError as err:\n"
        "        print(err.code)\n"
        "asyncio.run(main())\n"
    )
    try:
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", code, str(path)],
            capture_output=True, timeout=30, check=False,
        )
        assert result.stdout.decode().strip() == "conflict"
    finally:
        await events.close()


async def test_cold_reads_come_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    clock = FakeClock()
    events = SqliteEvents(path, clock=clock, cache_events=8)
    for i in range(40):
        await events.publish("t", str(i).encode())
        clock.advance(1)
    try:
        assert [e.body for e in await events.read("t", start=3, limit=3)] == [b"2", b"3", b"4"]
        assert [e.sequence for e in await events.read("t", start=clock.now - 35.5, limit=2)] == [
            6, 7
        ]
        consumer = await events.consume("t", "g", start="first")
        assert [e.sequence for e in await consumer.fetch(100)] == list(range(1, 41))
        await events.retention("t", max_bytes=20)
        assert await events.purge() == 30
        assert [e.sequence for e in await events.read("t")] == list(range(31, 41))
    finally:
        await events.close()


def test_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteEvents(tmp_path / "e.db", cache_events=0)
    with pytest.raises(ValueError):
        SqliteEvents(tmp_path / "e.db", poll_interval=0)
