"""Four OS processes contend for one lock through a real server process (SyncHandler over
SqliteSync): fencing tokens increase in acquisition order and holdings never overlap; the
tokens survive a server restart."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from micro.sync.rpc import RpcSync

SCRIPT = str(Path(__file__).with_name("multiproc_support.py"))
ROOT = str(Path(__file__).parents[2])
PROCESSES, ROUNDS = 4, 25


@contextmanager
def server(db: Path, *, kill: bool = False) -> Iterator[str]:
    """A server process; its address. Stopped by closing its stdin, or with ``kill``, by
    SIGKILL."""
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "server", str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        yield address
    finally:
        assert proc.stdin is not None
        if kill:
            proc.kill()
        proc.stdin.close()
        try:
            assert proc.wait(timeout=15) == (-9 if kill else 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)


def test_processes_take_turns_with_increasing_tokens(tmp_path: Path) -> None:
    out = tmp_path / "holdings.txt"
    db = tmp_path / "sync.db"
    with server(db) as address:
        procs = [
            subprocess.Popen(
                [sys.executable, SCRIPT, "contend", address, str(out), str(ROUNDS)], cwd=ROOT
            )
            for _ in range(PROCESSES)
        ]
        try:
            assert [p.wait(timeout=120) for p in procs] == [0] * PROCESSES
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=5)
    holdings = sorted(tuple(int(x) for x in line.split()) for line in out.read_text().splitlines())
    assert len(holdings) == PROCESSES * ROUNDS
    by_start = sorted(holdings, key=lambda h: h[1])
    assert [h[0] for h in by_start] == list(range(1, PROCESSES * ROUNDS + 1))
    for before, after in itertools.pairwise(by_start):
        assert before[2] <= after[1], f"holdings {before} and {after} overlap"

    with server(db) as address:  # a restarted server goes on from the last token
        assert asyncio.run(first_token(address)) == PROCESSES * ROUNDS + 1


async def first_token(address: str) -> int:
    """The token of one acquisition of ``shared``."""
    sync = RpcSync(address)
    try:
        return (await sync.acquire("shared", 10)).token
    finally:
        await sync.close()


async def churn(address: str, rounds: int) -> int:
    """Acquire and release ``shared`` ``rounds`` times, then write a map key; the last token."""
    sync = RpcSync(address)
    try:
        token = 0
        for _ in range(rounds):
            lease = await sync.acquire("shared", 10)
            token = lease.token
            await sync.release(lease)
        await sync.map_put("m", "k", b"acknowledged")
        return token
    finally:
        await sync.close()


async def read_back(address: str) -> tuple[int, bytes]:
    """The next token of ``shared`` and the map key written by :func:`churn`."""
    sync = RpcSync(address)
    try:
        return (await sync.acquire("shared", 10)).token, (await sync.map_get("m", "k"))[0]
    finally:
        await sync.close()


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "sync.db"
    with server(db, kill=True) as address:
        assert asyncio.run(churn(address, 10)) == 10
    with server(db) as address:
        assert asyncio.run(read_back(address)) == (11, b"acknowledged")
