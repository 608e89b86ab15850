"""``python -m bench store``: store reads and writes, in-process and over RPC.

Four things measured in one run, each with ``inflight`` workers looping call-await over
10,000 preloaded keys (100-byte values, in a random order):

- ``echo rpc``: the micro typed echo between two processes (``bench.transports.micro``),
  the ceiling of any RPC service;
- ``store rpc``: a server child hosting ``StoreHandler`` over a ``SqliteStore``, called with
  ``RpcStore``;
- ``store in-process``: ``SqliteStore`` used directly in this process;
- ``sqlite3 thread``: plain ``sqlite3`` on one thread (``run_in_executor``), WAL and
  ``synchronous=FULL``, each write its own transaction: what a service would do by hand.

With ``--cluster``, three more in the same run, on a throwaway PostgreSQL started on
127.0.0.1 (:mod:`bench.servers`; skipped with a message when PostgreSQL is not installed):

- ``postgres store rpc``: the server child hosting ``StoreHandler`` over a ``PostgresStore``;
- ``postgres store in-process``: ``PostgresStore`` used directly in this process;
- ``asyncpg pool``: asyncpg by hand, a pool of the store's size, one ``SELECT`` per read and
  one ``INSERT ... ON CONFLICT DO UPDATE`` per write (each its own transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import msgspec
import uvloop
from rich.console import Console
from rich.table import Table

from micro.store import Store, WriteOp

from . import procs, report, servers
from .load import Row, measure

__all__ = ["DESCRIPTION", "cluster_ratios", "main", "ratio"]

DESCRIPTION = (
    "store read/write: in-process, over RPC, vs sqlite3 in a thread and the RPC echo "
    "(--cluster: PostgreSQL too)"
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
KEYS = 10_000
VALUE = b"v" * 100
TARGET = 0.7  # store reads over RPC / RPC echo, at 32 in flight
STEP_TIMEOUT = 30.0
COLUMNS = ("case", "inflight", "ops_per_s", "p50_ms", "p99_ms")
PG_POOL = 10  # PostgresStore's default pool_max; the asyncpg baseline gets the same pool
PG_UPSERT = (
    "INSERT INTO kv (key, value) VALUES ($1, $2) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)

Call = Callable[[], Awaitable[Any]]


def _keys() -> Callable[[], str]:
    """Keys in a random order, drawn from a list made beforehand (cheap per call)."""
    keys = [f"key-{i:05d}" for i in range(KEYS)]
    random.shuffle(keys)
    return itertools.cycle(keys).__next__


async def preload(store: Store) -> None:
    """Write the benchmark's keys, 1,000 per transaction."""
    for start in range(0, KEYS, 1000):
        ops = [WriteOp(f"key-{i:05d}", VALUE) for i in range(start, start + 1000)]
        await store.transact("bench", "kv", ops)


def _store_calls(store: Store) -> tuple[Call, Call]:
    _key = _keys()

    async def read() -> Any:
        found = await store.read("bench", "kv", _key())
        # a read served from the store's cache never suspends; give the other workers (and
        # the benchmark's timer) their turn, as a service with other work would
        await asyncio.sleep(0)
        return found

    async def write() -> Any:
        return await store.write("bench", "kv", _key(), VALUE)

    return read, write


# -- the server child ------------------------------------------------------------------------


def _backend(where: str) -> Any:
    """A ``PostgresStore`` for a ``postgresql://`` DSN, else a ``SqliteStore`` at that path."""
    if where.startswith(("postgres://", "postgresql://")):
        from micro.store.postgres import PostgresStore

        return PostgresStore(where, pool_max=PG_POOL)
    from micro.store.sqlite import SqliteStore

    return SqliteStore(where)


async def _serve_child(where: str) -> None:
    from micro import Service
    from micro.registry.memory import MemoryRegistry
    from micro.store.handler import StoreHandler

    backend = _backend(where)
    await backend.start()
    await preload(backend)
    service = Service("store", registry=MemoryRegistry(), address="127.0.0.1:0")
    service.handler(StoreHandler(backend), name="Store")
    await service.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    loop.add_reader(sys.stdin.fileno(), done.set)  # the benchmark closed our stdin: it is gone
    print(f"READY {service.address}", flush=True)
    try:
        await asyncio.wait_for(done.wait(), 900)
    finally:
        loop.remove_reader(sys.stdin.fileno())
        await service.stop(grace=1.0)
        await backend.close()


# -- sqlite3 by hand -------------------------------------------------------------------------


class Direct:
    """sqlite3 on one thread: what the store is compared with."""

    def __init__(self, path: Path) -> None:
        self._key = _keys()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite3")
        self.conn = self.pool.submit(self._open, str(path)).result()

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        with conn:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO kv VALUES (?, ?)", ((f"key-{i:05d}", VALUE) for i in range(KEYS))
            )
        return conn

    def _get(self, key: str) -> Any:
        return self.conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()

    def _put(self, key: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, VALUE))

    async def read(self) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._get, self._key())

    async def write(self) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._put, self._key())

    def close(self) -> None:
        self.pool.submit(self.conn.close).result()
        self.pool.shutdown()


# -- asyncpg by hand ------------------------------------------------------------------------


class AsyncpgDirect:
    """asyncpg used by hand: what :class:`~micro.store.postgres.PostgresStore` is compared
    with. A pool of the store's size; one statement per call, each its own transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._key = _keys()
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str) -> AsyncpgDirect:
        """Connect, create table ``kv`` and preload the keys."""
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=PG_POOL)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("CREATE TABLE kv (key text PRIMARY KEY, value bytea NOT NULL)")
                await conn.executemany(
                    "INSERT INTO kv VALUES ($1, $2)",
                    [(f"key-{i:05d}", VALUE) for i in range(KEYS)],
                )
            await pool.execute("ANALYZE kv")
        except BaseException:
            pool.terminate()
            raise
        return cls(pool)

    async def read(self) -> Any:
        return await self.pool.fetchval("SELECT value FROM kv WHERE key = $1", self._key())

    async def write(self) -> Any:
        return await self.pool.execute(PG_UPSERT, self._key(), VALUE)

    async def close(self) -> None:
        await asyncio.wait_for(self.pool.close(), 10)


async def analyze(dsn: str) -> None:
    """``ANALYZE`` the database of ``dsn`` after the preload, as autovacuum would within a
    minute: without statistics PostgreSQL may plan a point read of the freshly filled
    ``micro_store_records`` on its ``rkey`` index, filtering every row of the table."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# -- running ---------------------------------------------------------------------------------


def _note(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


async def _measure(name: str, call: Call, args: argparse.Namespace) -> list[Row]:
    rows = []
    for inflight in args.inflight:
        _note(f"  {name}: {inflight} in flight ...", args.json)
        await asyncio.wait_for(call(), STEP_TIMEOUT)
        rows.append(await measure(name, call, inflight, args.duration, args.warmup))
    return rows


async def _echo(address: str, args: argparse.Namespace) -> list[Row]:
    from .transports import micro

    client = await micro.connect(address, 32)
    try:
        return await _measure("echo rpc", client.call, args)
    finally:
        await client.close()


async def _rpc(address: str, args: argparse.Namespace, label: str = "store") -> list[Row]:
    from micro.store.rpc import RpcStore

    store = RpcStore(address)
    try:
        read, write = _store_calls(store)
        return [
            *await _measure(f"read: {label} rpc", read, args),
            *await _measure(f"write: {label} rpc", write, args),
        ]
    finally:
        await store.close()


async def _in_process(where: str, args: argparse.Namespace, label: str = "store") -> list[Row]:
    store = _backend(where)
    try:
        await preload(store)
        if where.startswith(("postgres://", "postgresql://")):
            await analyze(where)
        read, write = _store_calls(store)
        return [
            *await _measure(f"read: {label} in-process", read, args),
            *await _measure(f"write: {label} in-process", write, args),
        ]
    finally:
        await store.close()


async def _direct(path: Path, args: argparse.Namespace) -> list[Row]:
    direct = await asyncio.to_thread(Direct, path)
    try:
        return [
            *await _measure("read: sqlite3 thread", direct.read, args),
            *await _measure("write: sqlite3 thread", direct.write, args),
        ]
    finally:
        await asyncio.to_thread(direct.close)


async def _asyncpg(dsn: str, args: argparse.Namespace) -> list[Row]:
    direct = await AsyncpgDirect.open(dsn)
    try:
        return [
            *await _measure("read: asyncpg pool", direct.read, args),
            *await _measure("write: asyncpg pool", direct.write, args),
        ]
    finally:
        await direct.close()


def _postgres(
    stack: contextlib.ExitStack, args: argparse.Namespace
) -> servers.PostgresServer | None:
    """A throwaway PostgreSQL, stopped when ``stack`` closes; None (after saying why) when
    it is not installed."""
    try:
        server = stack.enter_context(servers.running_postgres())
    except servers.Missing as exc:
        print(f"\n*** SKIPPED the postgres rows: {exc} ***\n", file=sys.stderr, flush=True)
        return None
    _note(f"PostgreSQL on 127.0.0.1:{server.port} (data in {server.root})", args.json)
    return server


def run(args: argparse.Namespace, data: Path) -> list[Row]:
    """Measure every case; ``data`` holds the database files. With ``args.cluster`` a
    throwaway PostgreSQL serves the postgres cases, removed before this returns."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        pg = _postgres(stack, args) if args.cluster else None
        with procs.spawn([sys.executable, "-m", "bench.serve", "micro"], env=env) as address:
            _note(f"echo server child on {address}", args.json)
            rows += uvloop.run(_echo(address, args))
        child = [sys.executable, "-m", "bench.store", "--serve-child", str(data / "rpc.db")]
        with procs.spawn(child, env=env) as address:
            _note(f"store server child on {address}", args.json)
            rows += uvloop.run(_rpc(address, args))
        if pg is not None:
            dsn = pg.create_database("bench_rpc")
            child = [sys.executable, "-m", "bench.store", "--serve-child", dsn]
            with procs.spawn(child, env=env) as address:  # READY once preloaded
                _note(f"postgres store server child on {address}", args.json)
                uvloop.run(analyze(dsn))
                rows += uvloop.run(_rpc(address, args, "postgres store"))
        rows += uvloop.run(_in_process(str(data / "in-process.db"), args))
        if pg is not None:
            dsn = pg.create_database("bench_store")
            rows += uvloop.run(_in_process(dsn, args, "postgres store"))
        rows += uvloop.run(_direct(data / "sqlite3.db", args))
        if pg is not None:
            rows += uvloop.run(_asyncpg(pg.create_database("bench_asyncpg"), args))
    return rows


def ratio(rows: Sequence[Row]) -> tuple[int, float] | None:
    """(inflight, store reads over RPC / echo) at 32 in flight, else the most measured."""
    counts = {r.inflight for r in rows}
    at = 32 if 32 in counts else max(counts, default=0)
    rate = {r.transport: r.calls_per_s for r in rows if r.inflight == at}
    if not rate.get("echo rpc") or "read: store rpc" not in rate:
        return None
    return at, round(rate["read: store rpc"] / rate["echo rpc"], 2)


def cluster_ratios(rows: Sequence[Row]) -> tuple[int, dict[str, float]]:
    """(inflight, ratios) at 32 in flight, else the most measured: ``"<op> <where>"`` (e.g.
    ``"read in-process"``) is postgres store / sqlite store, ``"<op> vs asyncpg"`` is
    ``PostgresStore`` in-process / hand-written asyncpg. Only pairs measured in ``rows``."""
    counts = {r.inflight for r in rows}
    at = 32 if 32 in counts else max(counts, default=0)
    rate = {r.transport: r.calls_per_s for r in rows if r.inflight == at}
    pairs: dict[str, tuple[str, str]] = {}
    for op in ("read", "write"):
        for where in ("in-process", "rpc"):
            pairs[f"{op} {where}"] = (f"{op}: postgres store {where}", f"{op}: store {where}")
        pairs[f"{op} vs asyncpg"] = (f"{op}: postgres store in-process", f"{op}: asyncpg pool")
    found = {
        name: round(rate[ours] / rate[other], 2)
        for name, (ours, other) in pairs.items()
        if rate.get(ours) and rate.get(other)
    }
    return at, found


def _verdict(rows: Sequence[Row]) -> list[str]:
    lines = []
    found = ratio(rows)
    if found is not None:
        at, value = found
        met = "met" if value >= TARGET else "NOT met"
        lines.append(
            f"at {at} in flight: store read over RPC / RPC echo = {value:.2f}x "
            f"(target >= {TARGET}x: {met})"
        )
    at, ratios = cluster_ratios(rows)
    for op in ("read", "write"):
        if f"{op} vs asyncpg" in ratios:
            lines.append(
                f"at {at} in flight: PostgresStore {op}s / hand-written asyncpg = "
                f"{ratios[f'{op} vs asyncpg']:.2f}x"
            )
    for where in ("in-process", "rpc"):
        for op in ("read", "write"):
            if f"{op} {where}" in ratios:
                lines.append(
                    f"at {at} in flight: {op}s {where}, postgres store / sqlite "
                    f"store = {ratios[f'{op} {where}']:.2f}x"
                )
    return lines


def _cells(row: Row) -> list[str]:
    return [
        row.transport,
        str(row.inflight),
        f"{row.calls_per_s:,.0f}",
        f"{row.p50_ms:.3f}",
        f"{row.p99_ms:.3f}",
    ]


def _print(rows: Sequence[Row]) -> None:
    table = Table(title="Store: reads and writes")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "case" else "right")
    for row in rows:
        table.add_row(*_cells(row))
    Console().print(table)


def _docs_body(rows: Sequence[Row], args: argparse.Namespace) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    verdict = "\n".join(f"- {line}" for line in _verdict(rows))
    inflight = ",".join(str(n) for n in args.inflight)
    cluster = " --cluster" if args.cluster else ""
    postgres = ""
    if any("postgres" in row.transport or "asyncpg" in row.transport for row in rows):
        postgres = f"""
The `postgres` and `asyncpg` rows ran against a throwaway PostgreSQL 15 on 127.0.0.1 in the
same run (`--cluster`; `fsync=on`, `synchronous_commit=on`, data on the same local disk):
`postgres store rpc` is the server child hosting `StoreHandler` over a `PostgresStore`,
`postgres store in-process` is `PostgresStore` in the benchmark process (pool of
{PG_POOL}), and `asyncpg pool` is asyncpg by hand with a pool of the same size: one
`SELECT value FROM kv WHERE key = $1` per read and one `INSERT ... ON CONFLICT (key) DO
UPDATE` per write, each its own transaction, on a plain `kv (key text PRIMARY KEY, value
bytea)` table. Every database is `ANALYZE`d after the preload, as autovacuum would do within
a minute (PostgresStore's point reads use the primary key with or without statistics since
schema 2). `PostgresStore` has no record cache: every read is a query. Each of its writes
and deletes is one statement (the key's advisory lock, the etag or create-only condition and
the upsert inside it), like the hand-written upsert; both are acknowledged after their
commit is flushed.
"""
    return f"""## Store: reads and writes

{chr(10).join(lines)}

{verdict}

Measured {datetime.date.today().isoformat()} on {report.machine()}; {args.duration:g} s timed
after {args.warmup:g} s of warm-up per case, database files on the local disk. Every case
reads or overwrites one of 10,000 preloaded keys with 100-byte values, in a random order.
`echo rpc` is the typed echo of `python -m bench rpc` (server child, `Client.call`), the
ceiling of any RPC service; `store rpc` is a server child hosting `StoreHandler` over a
`SqliteStore`, called through `RpcStore`; `store in-process` is `SqliteStore` in the
benchmark process; `sqlite3 thread` is the standard `sqlite3` module on one thread via
`run_in_executor`, WAL and `synchronous=FULL`, every write its own transaction. Store
point reads are answered from the store's write-through record cache once a key is hot
(all 10,000 are, after the preload), so an in-process read never suspends: each worker
yields to the loop once per read. Store writes are acknowledged after their group commit
(WAL, `synchronous=FULL`): durable across `kill -9`, like the `sqlite3 thread` writes.
{postgres}
Reproduce: `python -m bench store --duration {args.duration:g} --inflight {inflight}{cluster} \\
--write-docs` (add `--json` for machine-readable rows).
"""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line of ``python -m bench store``."""
    parser = argparse.ArgumentParser(prog="python -m bench store", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only a JSON list of rows")
    parser.add_argument("--duration", type=float, default=3.0, help="timed seconds per case")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per case")
    parser.add_argument(
        "--inflight",
        type=lambda t: [int(p) for p in t.split(",") if p.strip()],
        default=[1, 32],
        help="e.g. 1,32",
    )
    parser.add_argument("--dir", type=Path, help="where the database files go (default: temp)")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also PostgresStore (in-process and over RPC) and asyncpg by hand, on a "
        "throwaway PostgreSQL",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    args = parser.parse_args(list(argv))
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    if not args.inflight or any(n < 1 or n > 10_000 for n in args.inflight):
        parser.error("--inflight takes counts between 1 and 10000")
    return args


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; print rows as JSON or as a table with the verdict."""
    args = parse_args(argv)
    try:
        with (
            procs.sigterm_as_interrupt(),
            tempfile.TemporaryDirectory(prefix="bench-store-", dir=args.dir) as data,
        ):
            rows = run(args, Path(data))
    except KeyboardInterrupt:
        print("\ninterrupted; every child process and server has been stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps([msgspec.to_builtins(row) for row in rows]))
    else:
        _print(rows)
        for line in _verdict(rows):
            print(line)
    if args.write_docs and rows:
        report.write_section(DOCS, "store", _docs_body(rows, args))
        _note(f"wrote the store section of {DOCS}", args.json)
    return 0 if rows else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-child"] and len(sys.argv) == 3:
        uvloop.run(_serve_child(sys.argv[2]))
    else:
        sys.exit(main(sys.argv[1:]))
