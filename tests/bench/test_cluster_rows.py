"""Smoke tests of the cluster rows of ``python -m bench store`` and ``python -m bench events``:
the PostgreSQL and NATS cases run (briefly) against real servers on 127.0.0.1 and produce
rows under the names the ratios and ``docs/benchmarks.md`` expect. No figure is asserted:
these are not timed tests."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from bench import events, report, store
from bench.load import Row
from tests.cluster._nats import nats_binary, running_nats
from tests.cluster._postgres import PostgresServer, postgres_server  # noqa: F401 (fixture)

SHORT = ["--duration", "0.2", "--warmup", "0", "--inflight", "1,2"]


def _row(case: str, inflight: int, rate: float) -> Row:
    return Row(case, inflight, rate, 0.1, 0.2)


def test_store_cluster_flag_and_ratios() -> None:
    assert store.parse_args(SHORT).cluster is False
    assert store.parse_args([*SHORT, "--cluster"]).cluster is True
    rows = [
        _row("echo rpc", 32, 100.0),
        _row("read: store rpc", 32, 80.0),
        _row("read: store in-process", 32, 1000.0),
        _row("read: postgres store in-process", 32, 50.0),
        _row("read: asyncpg pool", 32, 200.0),
        _row("write: store in-process", 1, 10.0),  # another inflight: ignored
        _row("write: postgres store in-process", 1, 5.0),
    ]
    assert store.cluster_ratios(rows) == (32, {"read in-process": 0.05, "read vs asyncpg": 0.25})
    lines = store._verdict(rows)
    assert "at 32 in flight: store read over RPC / RPC echo = 0.80x (target >= 0.7x: met)" in lines
    assert "at 32 in flight: PostgresStore reads / hand-written asyncpg = 0.25x" in lines
    assert "at 32 in flight: reads in-process, postgres store / sqlite store = 0.05x" in lines
    # without the cluster rows the section says nothing of PostgreSQL
    sqlite_only = rows[:3]
    assert store.cluster_ratios(sqlite_only) == (32, {})
    assert "postgres" not in store._docs_body(sqlite_only, store.parse_args(SHORT))


async def test_store_postgres_rows(postgres_server: PostgresServer) -> None:
    args = store.parse_args([*SHORT, "--cluster"])
    rows = await store._in_process(
        postgres_server.create_database("bench_test"), args, "postgres store"
    )
    rows += await store._asyncpg(postgres_server.create_database("bench_test"), args)
    assert [(r.transport, r.inflight) for r in rows] == [
        (f"{op}: {case}", n)
        for case in ("postgres store in-process", "asyncpg pool")
        for op in ("read", "write")
        for n in (1, 2)
    ]
    assert all(r.calls_per_s > 0 for r in rows)
    at, ratios = store.cluster_ratios(rows)
    assert at == 2 and set(ratios) == {"read vs asyncpg", "write vs asyncpg"}
    body = store._docs_body(rows, args)
    assert "| read: asyncpg pool | 2 |" in body
    assert "--inflight 1,2 --cluster" in body
    assert "PostgresStore reads / hand-written asyncpg" in body


async def test_asyncpg_baseline_writes_what_it_reads(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database("bench_test")
    direct = await store.AsyncpgDirect.open(dsn)
    try:
        assert await direct.read() == store.VALUE
        assert await direct.write() == "INSERT 0 1"
    finally:
        await direct.close()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM kv") == store.KEYS
    finally:
        await conn.close()


def test_events_cluster_flag_puts_nats_beside_jetstream() -> None:
    assert events.parse_args([]).backends == ["sqlite", "rpc", "jetstream"]
    assert events.parse_args(["--cluster"]).backends == ["sqlite", "rpc", "nats", "jetstream"]
    assert events.parse_args(["--cluster", "--backends", "sqlite"]).backends == [
        "sqlite",
        "nats",
    ]
    assert events.parse_args(["--cluster", "--backends", "nats"]).backends == ["nats"]


async def test_events_nats_rows(tmp_path: Path) -> None:
    args = events.parse_args(["--duration", "0.2", "--warmup", "0", "--cluster"])
    with running_nats(tmp_path) as server:
        rows = await events.run_backend("nats", server.url, tmp_path, args)
    assert [(r.backend, r.case, r.inflight) for r in rows] == [
        ("nats", "publish", 1),
        ("nats", "publish", events.PUBLISHERS),
        ("nats", "publish+consume", events.PUBLISHERS),
    ]
    assert all(r.ops_per_s > 0 for r in rows)
    peer = [events.Row("jetstream", r.case, r.inflight, r.ops_per_s * 2, 1.0, 2.0) for r in rows]
    assert "publish+consume, nats (NatsEvents) / jetstream (raw nats-py) = 0.50x" in (
        events.verdict(rows + peer)
    )
    section = events._docs_body(rows + peer, args)
    assert "`nats` is micro's `NatsEvents`" in section
    assert "python -m bench events --duration 0.2 --cluster --write-docs" in section
    only = events.parse_args(["--backends", "nats,jetstream"])
    assert "--duration 3 --backends nats,jetstream --write-docs" in events._docs_body(rows, only)
    doc = tmp_path / "benchmarks.md"
    report.write_section(doc, "events", section)
    assert "| nats | publish+consume | 64 |" in doc.read_text()


def test_missing_postgres_skips_the_rows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import contextlib

    from bench import servers

    monkeypatch.setattr(servers, "PG_BIN", Path("/nonexistent/pg/bin"))
    with contextlib.ExitStack() as stack:
        found = store._postgres(stack, argparse.Namespace(json=True))
    assert found is None
    assert "SKIPPED the postgres rows: PostgreSQL not installed" in capsys.readouterr().err


def test_events_command_line_runs_nats_on_its_own_server() -> None:
    """``python -m bench events --backends nats --json``: starts and stops its nats-server."""
    nats_binary()  # skips loudly when nats-server is missing
    env = dict(os.environ, PYTHONPATH=str(events.ROOT))
    argv = [sys.executable, "-m", "bench", "events", "--backends", "nats", "--json"]
    done = subprocess.run(
        [*argv, "--duration", "0.2", "--warmup", "0"],
        cwd=events.ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    rows = json.loads(done.stdout)
    assert [(r["backend"], r["case"]) for r in rows] == [
        ("nats", "publish"),
        ("nats", "publish"),
        ("nats", "publish+consume"),
    ]
