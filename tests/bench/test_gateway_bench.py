"""``python -m bench gateway``: the load generator's checks, the ratios and the decision text,
and a very short run of the whole benchmark producing rows under the ``--json`` keys. No
figure is asserted: these are not timed tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gateway
from bench.gateway import GatewayRow
from bench.http_load import drive, fetch, request_bytes, serve_ceiling

ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"message":"hi"}'


async def test_drive_against_the_ceiling_counts_checked_responses() -> None:
    server = await serve_ceiling()
    host, port = server.sockets[0].getsockname()[:2]
    try:
        request = request_bytes(host, port, "/echo", BODY, {"Authorization": "Bearer x"})
        assert await fetch(host, port, request) == (200, BODY)
        measured = await asyncio.wait_for(
            drive(host, port, request, BODY, concurrency=3, duration=0.2, warmup=0.05), 10
        )
    finally:
        server.close()
        await server.wait_closed()
    assert measured.requests > 0
    assert measured.requests_per_s > 0
    assert 0 < measured.p50_ms <= measured.p99_ms


async def test_drive_fails_on_a_wrong_body() -> None:
    server = await serve_ceiling()
    host, port = server.sockets[0].getsockname()[:2]
    try:
        request = request_bytes(host, port, "/echo", BODY)
        with pytest.raises(Exception, match="unexpected body"):
            await asyncio.wait_for(
                drive(host, port, request, b'{"message":"no"}', 2, duration=0.2, warmup=0), 10
            )
    finally:
        server.close()
        await server.wait_closed()


class _Refuser(asyncio.Protocol):
    """Answers every request with a 503 (the body of a failing server)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(  # type: ignore[attr-defined]
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
        )


async def test_drive_fails_on_a_status_other_than_200() -> None:
    server = await asyncio.get_running_loop().create_server(_Refuser, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        request = request_bytes(host, port, "/echo", BODY)
        with pytest.raises(Exception, match="503"):
            await asyncio.wait_for(drive(host, port, request, BODY, 2, 0.2, 0), 10)
    finally:
        server.close()
        await server.wait_closed()


def _rows(rates: dict[str, float], concurrency: int = 64) -> list[GatewayRow]:
    return [GatewayRow(name, concurrency, rate, 1.0, 2.0) for name, rate in rates.items()]


def test_ratios_verdict_and_decision() -> None:
    rows = _rows(
        {
            "ceiling": 40_000.0,
            "gateway": 6_000.0,
            "gateway-auth": 5_000.0,
            "fastapi": 3_000.0,
            "http-aiohttp": 10_000.0,
            "http-uvicorn": 11_000.0,
            "http-granian": 20_000.0,
        }
    )
    rows += _rows({"gateway": 1.0, "fastapi": 1_000.0}, concurrency=1)  # not the ratio's
    at, found = gateway.ratios(rows)
    assert at == 64
    assert found == {
        "gateway/fastapi": 2.0,
        "gateway-auth/fastapi": 1.67,
        "http-uvicorn/http-aiohttp": 1.1,
        "http-granian/http-aiohttp": 2.0,
        "ceiling/fastest": 2.0,
    }
    lines = gateway._verdict(rows)
    assert "at 64 connections: gateway/fastapi = 2.00x (target >= 1.5x: met)" in lines
    assert "at 64 connections: gateway p50 = 1.000 ms, p99 = 2.000 ms" in lines
    decision = gateway._decision(rows)
    assert "granian is 2.00x aiohttp on the HTTP layer alone" in decision
    # 1/6000 - (1/10000 - 1/20000) s per request: 8,571 requests/s, 1.43x the gateway's
    assert "estimate of 8,571 requests/s for `gateway`, 1.43x the 6,000" in decision
    assert "but granian is clearly faster" in decision
    # the same HTTP layer ratio in front of a slow gateway path: not worth a move
    slow_path = [r for r in rows if r.target != "gateway"] + _rows({"gateway": 1_000.0})
    assert "**Decision: keep aiohttp.**" in gateway._decision(slow_path)
    slower = _rows({"gateway": 1_000.0, "fastapi": 1_000.0, "http-aiohttp": 10_000.0})
    slower += _rows({"http-uvicorn": 11_000.0, "http-granian": 9_000.0})
    assert "gateway/fastapi = 1.00x (target >= 1.5x: NOT met)" in gateway._verdict(slower)[0]
    assert "**Decision: keep aiohttp.**" in gateway._decision(slower)
    body = gateway._docs_body(rows, gateway.parse_args([]))
    assert "| gateway-auth | 64 | 5,000 | 1.000 | 2.000 |" in body
    assert "--targets ceiling,gateway" in body


def test_arguments() -> None:
    args = gateway.parse_args(["--targets", "fastapi,gateway", "--concurrency", "1,4"])
    assert args.targets == ["gateway", "fastapi"]  # in the benchmark's order
    assert args.concurrency == [1, 4]
    assert gateway.parse_args([]).concurrency == [1, 16, 64]
    with pytest.raises(SystemExit):
        gateway.parse_args(["--targets", "nginx"])


def test_short_run_produces_every_row() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRO_")}
    argv = [sys.executable, "-m", "bench", "gateway", "--json", "--duration", "0.5"]
    argv += ["--warmup", "0.1", "--concurrency", "4"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=40)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert {tuple(sorted(row)) for row in rows} == {
        ("concurrency", "p50_ms", "p99_ms", "requests_per_s", "target")
    }
    assert [row["target"] for row in rows] == list(gateway.TARGETS)
    for row in rows:
        assert row["concurrency"] == 4
        assert row["requests_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
