"""The SQLite backend: durability (reopen, kill -9), secrets never on disk in clear, group
commit under concurrency without blocking the loop, failures that lose nothing."""

from __future__ import annotations

import asyncio
import base64
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from micro.config import MAX_DOCUMENT, MAX_VALUE
from micro.config.keys import generate_key
from micro.config.sqlite import SqliteConfig
from micro.errors import MicroError
from micro.testing.conformance.config import next_changes

SECRET = "PLAINTEXT-hunter2-7f3a9c"
MARKER = "VISIBLE-marker-51c2e0"


@pytest.fixture
def key() -> bytes:
    return generate_key()


@pytest.fixture
async def cfg(tmp_path: Path, key: bytes) -> AsyncIterator[SqliteConfig]:
    backend = SqliteConfig(tmp_path / "config.db", key)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def files_of(db: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in db.parent.glob(db.name + "*")}


async def test_documents_and_versions_survive_a_reopen(tmp_path: Path, key: bytes) -> None:
    db = tmp_path / "config.db"
    first = SqliteConfig(db, key)
    await first.set("ns", "svc", {"db": {"addr": "a"}, "n": 1})
    await first.set("ns", "svc.token", "t", secret=True)
    await first.delete("ns", "svc.n")
    await first.close()
    again = SqliteConfig(db, key)
    try:
        assert await again.get("ns", "", secrets=True) == {
            "svc": {"db": {"addr": "a"}, "token": "t"}
        }
        watcher = again.watch("ns")
        await again.set("ns", "svc.n", 2)
        (change,) = await next_changes(watcher, 1)
        assert change.version == 4  # three writes before the reopen
    finally:
        await again.close()


async def test_secrets_are_never_on_disk_in_clear(
    tmp_path: Path, key: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "config.db"
    backend = SqliteConfig(db, key)
    await backend.set("ns", "visible", MARKER)
    await backend.set("ns", "db.password", SECRET, secret=True)
    await backend.set("ns", "api", {"keys": [SECRET, SECRET + "2"]}, secret=True)
    assert await backend.get("ns", "db.password", secrets=True) == SECRET
    during = files_of(db)
    await backend.close()
    after = files_of(db)
    assert "config.db-wal" in during
    for files in (during, after):
        blob = b"".join(files.values())
        assert MARKER.encode() in blob  # the search would find it
        assert SECRET.encode() not in blob
        assert base64.b64encode(key) not in blob and key not in blob
    assert SECRET not in caplog.text


async def test_concurrent_writes_commit_together_without_blocking_the_loop(
    cfg: SqliteConfig,
) -> None:
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.ensure_future(ticker())
    watcher = cfg.watch("ns-0")
    started = time.perf_counter()
    await asyncio.gather(
        *(cfg.set(f"ns-{i % 4}", f"k{i}", {"i": i, "pad": "x" * 200}) for i in range(400))
    )
    elapsed = time.perf_counter() - started
    running = False
    await tick
    for n in range(4):
        doc = await cfg.get(f"ns-{n}")
        assert sorted(doc) == sorted(f"k{i}" for i in range(n, 400, 4))
    versions = [c.version for c in await next_changes(watcher, 100)]
    assert versions == list(range(1, 101))
    await watcher.aclose()  # type: ignore[attr-defined]
    assert max(gaps) < 0.25, f"the loop stalled for {max(gaps):.3f} s"
    assert elapsed < 20


async def test_a_failing_write_in_a_batch_fails_alone(cfg: SqliteConfig) -> None:
    chunk = "x" * (MAX_VALUE - 1024)
    chunks = MAX_DOCUMENT // len(chunk)  # as many as fit; one more does not
    for n in range(chunks):
        await cfg.set("full", f"c{n}", chunk)
    before = await cfg.get("full")
    results = await asyncio.gather(
        cfg.set("full", "one-too-many", chunk),
        cfg.set("full", "small", 1),
        cfg.set("other", "small", 2),
        return_exceptions=True,
    )
    assert isinstance(results[0], MicroError) and results[0].code == "too_large"
    assert results[1:] == [None, None]
    assert await cfg.get("full") == {**before, "small": 1}
    assert await cfg.get("other") == {"small": 2}


async def test_a_failed_transaction_is_rolled_back(cfg: SqliteConfig, tmp_path: Path) -> None:
    await cfg.set("ok", "before", 1)
    with sqlite3.connect(tmp_path / "config.db") as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON documents WHEN NEW.namespace = 'refused' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    watcher = cfg.watch("refused")
    with pytest.raises(MicroError) as err:
        await cfg.set("refused", "a", 1)
    assert err.value.code == "internal" and "refused by the test" in err.value.detail
    assert await cfg.get("refused") == {}
    with sqlite3.connect(tmp_path / "config.db") as conn:
        conn.execute("DROP TRIGGER refuse")
    await cfg.set("refused", "b", 2)  # the failed write left no trace
    assert await cfg.get("refused") == {"b": 2}
    (change,) = await next_changes(watcher, 1)
    assert (change.path, change.version) == ("b", 1)
    await cfg.set("ok", "after", 2)
    assert await cfg.get("ok") == {"before": 1, "after": 2}


async def test_a_different_key_cannot_reveal_secrets(tmp_path: Path, key: bytes) -> None:
    db = tmp_path / "config.db"
    first = SqliteConfig(db, key)
    await first.set("ns", "pw", "p", secret=True)
    await first.close()
    other = SqliteConfig(db, generate_key())
    try:
        assert await other.get("ns") == {"pw": "[secret]"}  # masked reads need no key
        with pytest.raises(MicroError) as err:
            await other.get("ns", "pw", secrets=True)
        assert err.value.code == "internal" and "MICRO_CONFIG_SECRET_KEY" in err.value.detail
    finally:
        await other.close()


async def test_unusable_files_and_closed_backends_give_clear_errors(
    tmp_path: Path, key: bytes
) -> None:
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(MicroError) as err:
        await SqliteConfig(tmp_path / "a-directory", key).start()
    assert err.value.code == "internal" and "a-directory" in err.value.detail
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(MicroError) as err:
        await SqliteConfig(newer, key).get("ns")
    assert "newer" in err.value.detail
    closed = SqliteConfig(tmp_path / "closed.db", key)
    await closed.set("ns", "a", 1)
    await closed.close()
    with pytest.raises(MicroError) as err:
        await closed.set("ns", "a", 2)
    assert err.value.code == "unavailable"


_WRITER = """
import asyncio, base64, sys
from micro.config.sqlite import SqliteConfig

async def main() -> None:
    cfg = SqliteConfig(sys.argv[1], base64.b64decode(sys.argv[2]))
    async def writer(task: int) -> None:
        i = 0
        while True:
            await cfg.set("durable", f"t{task}", i, secret=(task == 0))
            print(task, i, flush=True)
            i += 1
    await asyncio.gather(*(writer(t) for t in range(8)))

asyncio.run(main())
"""


def _spawn_writer(db: Path, key: bytes) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db), base64.b64encode(key).decode()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path, key: bytes) -> None:
    db = tmp_path / "config.db"
    proc = _spawn_writer(db, key)
    assert proc.stdout is not None
    acked: dict[int, int] = {}
    try:
        while sum(acked.values()) < 400:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line, "the writer died before it was killed"
            task, i = map(int, line.split())
            acked[task] = max(acked.get(task, -1), i)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, errors = await asyncio.to_thread(proc.communicate, None, 10)
    assert proc.returncode == -signal.SIGKILL, errors
    assert len(acked) == 8
    reopened = SqliteConfig(db, key)
    try:
        stored = await reopened.get("durable", "", secrets=True)
    finally:
        await reopened.close()
    for task, last in acked.items():
        assert stored[f"t{task}"] >= last, (task, stored, acked)
