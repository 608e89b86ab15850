"""SQLite store: acknowledged writes survive kill -9; data and etags survive a reopen."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from micro.store.sqlite import SqliteStore

ACKS = 300
WAIT = 30.0

WRITER = """
import asyncio, sys
from micro.store.sqlite import SqliteStore

async def main(path):
    store = SqliteStore(path)
    await store.start()
    print("ready", flush=True)
    n = 0

    async def writer(lane):
        nonlocal n
        i = 0
        while True:
            key = f"{lane}-{i:06d}"
            record = await store.write("db", "t", key, key.encode() * 10)
            print(key, record.etag, flush=True)  # acknowledged: must survive
            i += 1

    await asyncio.gather(*(writer(lane) for lane in range(8)))

asyncio.run(main(sys.argv[1]))
"""


def _lines(proc: subprocess.Popen[bytes], count: int) -> list[str]:
    """Read ``count`` lines of the child's stdout, within WAIT seconds."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + WAIT
    while len(lines) < count:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"the writer child printed {len(lines)} lines in {WAIT} s"
        line = proc.stdout.readline().decode().strip()
        assert line, f"the writer child exited early (code {proc.poll()})"
        lines.append(line)
    return lines


def _write_then_kill(path: Path) -> list[list[str]]:
    """Run the writer child until it acknowledged ACKS writes, SIGKILL it, return them."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert _lines(proc, 1) == ["ready"]
        acked = [line.split() for line in _lines(proc, ACKS)]
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: more writes are in flight
        proc.wait(WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    acked = await asyncio.to_thread(_write_then_kill, path)
    store = SqliteStore(path)  # the dead child's lock is gone with it
    try:
        found = await store.read_many("db", "t", [key for key, _ in acked[:1000]])
        assert len(found) == ACKS
        for record, (key, etag) in zip(found, acked, strict=True):
            assert (record.key, record.etag, record.value) == (key, etag, key.encode() * 10)
        after = await store.write("db", "t", "after", b"x")
        etags = {int(r.etag) for r in await store.read("db", "t", "", prefix=True)}
        assert int(after.etag) == max(etags)  # the counter went on from where it was
    finally:
        await store.close()


async def test_data_and_etags_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    first = await store.write("db", "t", "k", b"v", metadata={"m": "1"}, ttl=3600)
    gone = await store.write("db", "t", "gone", b"x")
    await store.delete("db", "t", "gone")
    await store.close()

    store = SqliteStore(path)
    try:
        assert (await store.read("db", "t", "k"))[0] == first
        again = await store.write("db", "t", "gone", b"x")
        assert int(again.etag) > int(gone.etag)  # never reused, even after the delete
        assert await store.list_databases() == ["db"]
    finally:
        await store.close()
