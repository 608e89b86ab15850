"""``python -m bench rpc``: a typed echo RPC between two processes, per transport.

For each transport the server runs in a child process (``python -m bench.serve``) and the
load comes from this process, both on uvloop, over 127.0.0.1. Each case runs ``inflight``
workers looping call-await: a warm-up, then ``--duration`` seconds timed per call.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import msgspec
import uvloop

from . import procs, report
from .load import Row, measure
from .transports import DEFAULT, NAMES, Unavailable, load

__all__ = ["DESCRIPTION", "main", "ratios", "run"]

DESCRIPTION = "typed echo RPC between two processes: micro vs grpc, aiohttp, nats, bare asyncio"

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
TARGETS = {
    "micro/grpc": 8.0,
    "micro/bare": 0.4,
    "micro-auth/micro": 0.8,
    "micro-tls/micro": 0.5,
}
P99_TARGET_MS = 2.0
STEP_TIMEOUT = 10.0  # seconds for a client to connect, make its first call, or close


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _counts(text: str) -> list[int]:
    return [int(part) for part in _names(text)]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line of ``python -m bench rpc``."""
    parser = argparse.ArgumentParser(prog="python -m bench rpc", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only a JSON list of rows")
    parser.add_argument("--duration", type=float, default=3.0, help="timed seconds per case")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per case")
    parser.add_argument(
        "--transports", type=_names, default=list(DEFAULT), help=f"of {','.join(NAMES)}"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="also run micro over mutual TLS (micro-tls) and report micro-tls/micro",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="also run micro with token verification and rules (micro-auth): micro-auth/micro",
    )
    parser.add_argument("--inflight", type=_counts, default=[1, 32], help="e.g. 1,32")
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="write cProfile stats of both sides to DIR (slows every call down)",
    )
    args = parser.parse_args(list(argv))
    extra = {"micro-tls"} if args.tls else set()
    extra |= {"micro-auth"} if args.auth else set()
    if extra:  # right after micro, and micro to compare with
        wanted = set(args.transports) | {"micro"} | extra
        args.transports = [t for t in NAMES if t in wanted]
    unknown = [t for t in args.transports if t not in NAMES]
    if unknown:
        parser.error(f"unknown transports {unknown} (known: {', '.join(NAMES)})")
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    if not args.inflight or any(n < 1 or n > 10_000 for n in args.inflight):
        parser.error("--inflight takes counts between 1 and 10000")
    return args


def _note(text: str, quiet: bool = False) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


async def _run_transport(module: ModuleType, address: str, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for inflight in args.inflight:
        _note(f"  {module.NAME}: {inflight} in flight ...", args.json)
        client = await asyncio.wait_for(module.connect(address, inflight), STEP_TIMEOUT)
        try:
            echoed = await asyncio.wait_for(client.call(), STEP_TIMEOUT)
            if echoed != client.expected:
                raise RuntimeError(f"echo returned {echoed!r}, expected {client.expected!r}")
            profiler = cProfile.Profile() if args.profile else None
            if profiler is not None:
                profiler.enable()
            row = await measure(module.NAME, client.call, inflight, args.duration, args.warmup)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile / f"{module.NAME}-{inflight}-client.prof")
        finally:
            await asyncio.wait_for(client.close(), STEP_TIMEOUT)
            _raise_if_interrupted()
        rows.append(row)
    return rows


def _raise_if_interrupted() -> None:
    """Re-raise a Ctrl-C that library code swallowed (nats-py's close does): the runner
    cancelled this task, so end it cancelled and the runner raises KeyboardInterrupt."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def run(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    """Measure every transport asked for; return the rows and the transports that failed
    (a transport that cannot run here is skipped with a note, not counted as failed)."""
    rows: list[Row] = []
    failed: list[str] = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("BENCH_PROFILE", None)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    for name in args.transports:
        module = load(name)
        if args.profile:
            env["BENCH_PROFILE"] = str(args.profile / f"{name}-server.prof")
        try:
            with module.broker() as arg:
                child = [sys.executable, "-m", "bench.serve", name, arg]
                with procs.spawn(child, env=env) as address:
                    _note(f"{name}: server child on {address}", args.json)
                    rows += uvloop.run(_run_transport(module, address, args))
        except Unavailable as exc:
            print(f"\n*** SKIPPED {name}: {exc} ***\n", file=sys.stderr, flush=True)
        except Exception as exc:
            print(f"*** FAILED {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
    return rows, failed


def ratios(rows: Sequence[Row]) -> dict[str, float]:
    """micro's calls/s over grpc's and bare's, and micro-tls's over micro's, at 32 in flight
    (else the most measured)."""
    at = _ratio_inflight(rows)
    rate = {r.transport: r.calls_per_s for r in rows if r.inflight == at}
    micro = rate.get("micro")
    found = {
        f"micro/{peer}": round(micro / rate[peer], 2)
        for peer in ("grpc", "bare")
        if micro is not None and rate.get(peer)
    }
    authed = rate.get("micro-auth")
    if authed is not None and micro:
        found["micro-auth/micro"] = round(authed / micro, 2)
    tls = rate.get("micro-tls")
    if tls is not None and micro:
        found["micro-tls/micro"] = round(tls / micro, 2)
    return found


def _ratio_inflight(rows: Sequence[Row]) -> int:
    counts = {r.inflight for r in rows}
    return 32 if 32 in counts else max(counts, default=32)


def _verdict(rows: Sequence[Row], found: dict[str, float]) -> list[str]:
    at = _ratio_inflight(rows)
    lines = [
        f"{key} = {value:.2f}x (target >= {TARGETS[key]}x: "
        f"{'met' if value >= TARGETS[key] else 'NOT met'})"
        for key, value in found.items()
    ]
    micro = next((r for r in rows if r.transport == "micro" and r.inflight == at), None)
    if micro is not None:
        ok = "met" if micro.p99_ms < P99_TARGET_MS else "NOT met"
        lines.append(f"micro p99 = {micro.p99_ms:.3f} ms (target < {P99_TARGET_MS} ms: {ok})")
    return [f"at {at} in flight: " + line for line in lines]


def _docs_body(rows: Sequence[Row], args: argparse.Namespace) -> str:
    found = ratios(rows)
    today = datetime.date.today().isoformat()
    verdict = "\n".join(f"- {line}" for line in _verdict(rows, found))
    transports = ",".join(args.transports)
    inflight = ",".join(str(n) for n in args.inflight)
    return f"""## RPC: typed echo between two processes

{report.markdown_table(rows)}

{verdict}

Measured {today} on {report.machine()}; {args.duration:g} s timed after {args.warmup:g} s of
warm-up per case. The server runs in a child process and the load generator in the
benchmark process, both on uvloop, over 127.0.0.1; `inflight` workers each loop
call-await, and every call is timed with `time.perf_counter` (p50, p99). `micro` is a
`Service` with a typed handler called through `Client.call(..., response_type=...)`, the
name resolved in a `MemoryRegistry`; `grpc` is a grpcio asyncio generic handler echoing
bytes; `aiohttp` is `POST /echo` with a JSON body over keep-alive connections; `nats` is
nats-py request-reply through a local `nats-server`; `bare` is framed msgpack on a plain
`asyncio.Protocol`, pipelined, with no framework: the ceiling; `micro-tls` (with `--tls`)
is the `micro` case over mutual TLS (ECDSA P-256 certificates from a throwaway CA, both
ends verifying the chain and the CRL).

Reproduce: `python -m bench rpc --duration {args.duration:g} --transports {transports} \\
--inflight {inflight} --write-docs` (add `--json` for machine-readable rows, `--tls` for
micro over mutual TLS).
"""


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; print rows as JSON or as a table with ratios."""
    args = parse_args(argv)
    try:
        rows, failed = run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; every child process has been stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps([msgspec.to_builtins(row) for row in rows]))
    else:
        report.print_table(rows, "RPC echo between two processes")
        for line in _verdict(rows, ratios(rows)):
            print(line)
    if args.write_docs and rows:
        report.write_section(DOCS, "rpc", _docs_body(rows, args))
        _note(f"wrote the rpc section of {DOCS}", args.json)
    return 1 if failed or not rows else 0
