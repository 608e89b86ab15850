"""``python -m bench gateway``: HTTP through the gateway to a service, beside FastAPI, and the
HTTP servers alone.

Every target is a server in child processes (:mod:`bench.gateway_targets`); the load comes
from this process, from the hand-written client of :mod:`bench.http_load` (keep-alive
connections, one request in flight on each, timed per request), the same for every target.
Targets:

``ceiling``
    A raw asyncio HTTP responder: what the load generator reaches on this machine.
``gateway``
    ``micro server`` (auth on) and a service process: ``POST /echo`` -> gateway -> RPC ->
    the typed ``Echo.Call``, marked ``@public`` (what a public API costs).
``gateway-auth``
    The same, to the private ``Echo.Private`` with a Bearer access token: verified at the
    gateway, forwarded, verified again by the service.
``fastapi``
    FastAPI + uvicorn (httptools, uvloop, one worker) serving the echo with a pydantic
    model directly.
``http-aiohttp``, ``http-uvicorn``, ``http-granian``
    The HTTP layer alone: one minimal JSON echo (msgspec) on aiohttp's server, as a raw ASGI
    app on uvicorn + httptools, and on granian (ASGI, one worker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import uvloop
from rich.console import Console
from rich.table import Table

from . import procs, report
from .http_load import drive, fetch, request_bytes
from .transports import MESSAGE

__all__ = ["DESCRIPTION", "TARGETS", "GatewayRow", "main", "parse_args", "ratios", "run"]

DESCRIPTION = "HTTP -> gateway -> RPC -> service vs FastAPI+uvicorn; the HTTP servers alone"

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
TARGETS: tuple[str, ...] = (
    "ceiling",
    "gateway",
    "gateway-auth",
    "fastapi",
    "http-aiohttp",
    "http-uvicorn",
    "http-granian",
)
"""Every target, in the order the benchmark runs and reports them."""
GATEWAY_OVER_FASTAPI = 1.5  # the target: the gateway path's requests/s over FastAPI's
CLEARLY_FASTER = 1.25  # an HTTP server this much faster than aiohttp is worth a move
READY_TIMEOUT = 30.0  # seconds for a target to answer its first request correctly
BODY = msgspec.json.encode({"message": MESSAGE})
COLUMNS = ("target", "concurrency", "requests_per_s", "p50_ms", "p99_ms")


class GatewayRow(msgspec.Struct):
    """One measured case; the field names are the keys of ``--json`` rows."""

    target: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float


class Unavailable(Exception):
    """The target cannot run on this machine (e.g. no ``granian``); skip it."""


class _Endpoint(msgspec.Struct):
    """Where a target answers the echo."""

    host: str
    port: int
    path: str = "/echo"
    headers: dict[str, str] = {}


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _counts(text: str) -> list[int]:
    return [int(part) for part in _names(text)]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line of ``python -m bench gateway``."""
    parser = argparse.ArgumentParser(prog="python -m bench gateway", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only a JSON list of rows")
    parser.add_argument("--duration", type=float, default=3.0, help="timed seconds per case")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per case")
    parser.add_argument(
        "--targets", type=_names, default=list(TARGETS), help=f"of {','.join(TARGETS)}"
    )
    parser.add_argument(
        "--concurrency", type=_counts, default=[1, 16, 64], help="connections, e.g. 1,16,64"
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    args = parser.parse_args(list(argv))
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown} (known: {', '.join(TARGETS)})")
    args.targets = [t for t in TARGETS if t in args.targets]
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    if not args.concurrency or any(n < 1 or n > 10_000 for n in args.concurrency):
        parser.error("--concurrency takes counts between 1 and 10000")
    return args


def _note(text: str, quiet: bool = False) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for name in list(env):  # the children are configured here, not by the caller's shell
        if name.startswith("MICRO_"):
            del env[name]
    return env


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _child(target: str, arg: str = "") -> list[str]:
    return [sys.executable, "-m", "bench.gateway_targets", target, arg]


@contextlib.contextmanager
def _started(group: str, wanted: Sequence[str]) -> Iterator[dict[str, _Endpoint]]:
    """Run the server(s) of ``group`` until the block ends; yield the endpoint of each
    target of the group in ``wanted``."""
    env = _env()
    if group == "gateway":
        with contextlib.ExitStack() as stack:
            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-gw-")))
            line = stack.enter_context(procs.spawn(_child("server", str(data)), env=env))
            gateway, rpc, token, secret = line.split()
            service_env = {
                **env,
                "MICRO_SERVER": rpc,
                "MICRO_DATA_DIR": str(data / "service"),
                "MICRO_AUTH_ID": "echo",
                "MICRO_AUTH_SECRET": secret,
            }
            stack.enter_context(procs.spawn(_child("echo-service"), env=service_env))
            host, port = _host_port(gateway)
            endpoints = {
                "gateway": _Endpoint(host, port, "/echo"),
                "gateway-auth": _Endpoint(
                    host, port, "/echo/private", {"Authorization": f"Bearer {token}"}
                ),
            }
            yield {name: endpoints[name] for name in wanted if name in endpoints}
    elif group == "http-granian":
        with _granian(env) as endpoint:
            yield {group: endpoint}
    else:
        with procs.spawn(_child(group), env=env) as address:
            yield {group: _Endpoint(*_host_port(address))}


@contextlib.contextmanager
def _granian(env: dict[str, str]) -> Iterator[_Endpoint]:
    """granian (ASGI, one worker, one runtime thread, uvloop) serving ``asgi_echo``."""
    binary = procs.find_binary("granian")
    if binary is None:
        raise Unavailable("granian is not installed")
    port = procs.free_port()
    argv = [binary, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", "1", "--runtime-threads", "1", "--loop", "uvloop", "--no-ws"]
    argv += ["--log-level", "warning", "bench.gateway_targets:asgi_echo"]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=procs.die_with_parent,
    )
    try:
        procs.wait_for_port(port, proc, READY_TIMEOUT)
        yield _Endpoint("127.0.0.1", port)
    finally:
        procs.stop(proc)


async def _ready(name: str, endpoint: _Endpoint, request: bytes) -> bytes:
    """Wait until ``endpoint`` answers the echo right (a service may still be registering);
    return the exact response body every request of the run must get."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    last = "no answer"
    while loop.time() < deadline:
        try:
            status, body = await fetch(endpoint.host, endpoint.port, request)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            status, body = 0, repr(exc).encode()
        if status == 200:
            echoed = msgspec.json.decode(body)
            if echoed != {"message": MESSAGE}:
                raise RuntimeError(f"{name} answered {echoed!r}, not the echo")
            return body
        last = f"{status} {body[:300]!r}"
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{name} did not answer the echo within {READY_TIMEOUT:.0f} s: {last}")


async def _measure(name: str, endpoint: _Endpoint, args: argparse.Namespace) -> list[GatewayRow]:
    request = request_bytes(endpoint.host, endpoint.port, endpoint.path, BODY, endpoint.headers)
    expected = await _ready(name, endpoint, request)
    rows: list[GatewayRow] = []
    for concurrency in args.concurrency:
        _note(f"  {name}: {concurrency} connections ...", args.json)
        measured = await drive(
            endpoint.host,
            endpoint.port,
            request,
            expected,
            concurrency,
            args.duration,
            args.warmup,
        )
        rows.append(
            GatewayRow(name, concurrency, measured.requests_per_s, measured.p50_ms, measured.p99_ms)
        )
    return rows


def _groups(targets: Sequence[str]) -> list[str]:
    """The server setups to start, in order: ``gateway`` serves both gateway targets."""
    groups: list[str] = []
    for target in targets:
        group = "gateway" if target.startswith("gateway") else target
        if group not in groups:
            groups.append(group)
    return groups


def run(args: argparse.Namespace) -> tuple[list[GatewayRow], list[str]]:
    """Measure every target asked for; return the rows and the targets that failed (a target
    that cannot run here is skipped with a note, not counted as failed)."""
    rows: list[GatewayRow] = []
    failed: list[str] = []
    for group in _groups(args.targets):
        names = [t for t in args.targets if t == group or t.startswith(f"{group}-")]
        current = ""
        try:
            with _started(group, names) as endpoints:
                for name, endpoint in endpoints.items():
                    current = name
                    _note(f"{name}: on {endpoint.host}:{endpoint.port}{endpoint.path}", args.json)
                    rows += uvloop.run(_measure(name, endpoint, args))
        except Unavailable as exc:
            print(f"\n*** SKIPPED {group}: {exc} ***\n", file=sys.stderr, flush=True)
        except Exception as exc:
            what = current or group
            print(f"*** FAILED {what}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            failed.append(what)
    return rows, failed


def _ratio_concurrency(rows: Sequence[GatewayRow]) -> int:
    counts = {r.concurrency for r in rows}
    return 64 if 64 in counts else max(counts, default=64)


def ratios(rows: Sequence[GatewayRow]) -> tuple[int, dict[str, float]]:
    """At 64 connections (else the most measured): each gateway target's requests/s over
    FastAPI's, each HTTP server's over aiohttp's, and the ceiling over the fastest server
    (how much headroom the load generator had)."""
    at = _ratio_concurrency(rows)
    rate = {r.target: r.requests_per_s for r in rows if r.concurrency == at}
    found: dict[str, float] = {}
    for name in ("gateway", "gateway-auth"):
        if rate.get(name) is not None and rate.get("fastapi"):
            found[f"{name}/fastapi"] = round(rate[name] / rate["fastapi"], 2)
    for name in ("http-uvicorn", "http-granian"):
        if rate.get(name) is not None and rate.get("http-aiohttp"):
            found[f"{name}/http-aiohttp"] = round(rate[name] / rate["http-aiohttp"], 2)
    others = [value for name, value in rate.items() if name != "ceiling" and value]
    if rate.get("ceiling") and others:
        found["ceiling/fastest"] = round(rate["ceiling"] / max(others), 2)
    return at, found


def _verdict(rows: Sequence[GatewayRow]) -> list[str]:
    at, found = ratios(rows)
    lines: list[str] = []
    for key, value in found.items():
        if key == "gateway/fastapi":
            ok = "met" if value >= GATEWAY_OVER_FASTAPI else "NOT met"
            lines.append(f"{key} = {value:.2f}x (target >= {GATEWAY_OVER_FASTAPI}x: {ok})")
        elif key == "ceiling/fastest":
            lines.append(f"load generator headroom: ceiling / fastest target = {value:.2f}x")
        else:
            lines.append(f"{key} = {value:.2f}x")
    for name in ("gateway", "gateway-auth"):
        row = next((r for r in rows if r.target == name and r.concurrency == at), None)
        if row is not None:
            lines.append(f"{name} p50 = {row.p50_ms:.3f} ms, p99 = {row.p99_ms:.3f} ms")
    return [f"at {at} connections: {line}" for line in lines]


def _cells(row: GatewayRow) -> list[str]:
    return [
        row.target,
        str(row.concurrency),
        f"{row.requests_per_s:,.0f}",
        f"{row.p50_ms:.3f}",
        f"{row.p99_ms:.3f}",
    ]


def print_table(rows: Sequence[GatewayRow], console: Console | None = None) -> None:
    """Print ``rows`` as a rich table."""
    table = Table(title="HTTP echo: gateway path, FastAPI, HTTP servers alone")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "target" else "right")
    for row in rows:
        table.add_row(*_cells(row))
    (console or Console()).print(table)


def markdown_table(rows: Sequence[GatewayRow]) -> str:
    """``rows`` as a GitHub markdown table with the ``--json`` column names."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def _decision(rows: Sequence[GatewayRow]) -> str:
    """The HTTP server choice: from the HTTP-layer rows, and an estimate of what the fastest
    candidate would bring end to end (the gateway row with aiohttp's cost per request swapped
    for the candidate's)."""
    at, found = ratios(rows)
    rate = {r.target: r.requests_per_s for r in rows if r.concurrency == at}
    candidates = {
        name.removeprefix("http-"): found[f"{name}/http-aiohttp"]
        for name in ("http-uvicorn", "http-granian")
        if f"{name}/http-aiohttp" in found
    }
    if not candidates:
        return "The HTTP-layer rows were not measured in this run: no decision is drawn."
    compared = ", ".join(f"{name} {value:.2f}x" for name, value in candidates.items())
    best, factor = max(candidates.items(), key=lambda item: item[1])
    gateway, aiohttp = rate.get("gateway"), rate.get("http-aiohttp")
    end_to_end = factor  # without a gateway row: the HTTP layer's ratio is all we know
    estimate = ""
    saved = 1 / aiohttp - 1 / rate[f"http-{best}"] if aiohttp else 0.0  # s per request
    if gateway and aiohttp and 1 / gateway > saved:  # else the rows contradict each other
        projected = 1 / (1 / gateway - saved)
        end_to_end = projected / gateway
        estimate = (
            f" End to end, swapping aiohttp's time per request for {best}'s in the gateway "
            f"path gives a rough estimate of {projected:,.0f} requests/s for `gateway`, "
            f"{end_to_end:.2f}x the {gateway:,.0f} measured: the rest of the path (routing, "
            "auth, the RPC hop, the service) does not change."
        )
    if end_to_end < CLEARLY_FASTER:
        verdict = (
            "**Decision: keep aiohttp.** No candidate is clearly faster end to "
            f"end (under the {CLEARLY_FASTER}x bar), so a move would buy little for the "
            "rewrite below."
        )
    else:
        verdict = (
            f"**Decision: keep aiohttp for now, but {best} is clearly faster** "
            f"(over the {CLEARLY_FASTER}x bar end to end): it is the server to move to when "
            "the gateway's throughput matters, at the cost below."
        )
    return f"""At {at} connections, requests/s over aiohttp's on the same minimal JSON echo:
{compared}; {best} is {factor:.2f}x aiohttp on the HTTP layer alone.{estimate} {verdict}

What moving would take: the gateway (`micro/gateway/`) is written against aiohttp's
`web.BaseRequest`/`web.Response` (on aiohttp's low-level server, with its own dispatch), and
its streaming endpoints use aiohttp's WebSocket and `StreamResponse` (Server-Sent Events);
`events.py`, `openapi.py` and `webproxy.py` add routes with `Gateway.add_route`. On ASGI
(uvicorn or granian) that becomes one `async def app(scope, receive, send)` with a small
router, reading the path,
headers, cookies, query and body (with its size limit) from the scope and the body messages,
WebSocket and SSE rewritten on ASGI messages, and `Gateway.start`/`stop` driving the server
(`uvicorn.Server` can serve an existing socket in the running loop, as this benchmark does;
granian runs its own worker processes, so the gateway's `Client`, guard and rate limits
would live in each worker, not in `micro server`'s process). Routing, auth and the RPC call
would not change, and the tests that speak HTTP to the gateway would check the move."""


def _docs_body(rows: Sequence[GatewayRow], args: argparse.Namespace) -> str:
    today = datetime.date.today().isoformat()
    verdict = "\n".join(f"- {line}" for line in _verdict(rows))
    targets = ",".join(args.targets)
    concurrency = ",".join(str(n) for n in args.concurrency)
    return f"""## Gateway: HTTP -> gateway -> RPC -> service, and the HTTP server

{markdown_table(rows)}

{verdict}

Measured {today} on {report.machine()}; {args.duration:g} s timed after {args.warmup:g} s of
warm-up per case. Every target runs in child processes; the load comes from the benchmark
process: `concurrency` HTTP/1.1 keep-alive connections, each sending `POST` with the JSON
body `{{"message": ...}}`, awaiting the whole response, then sending the next (no
pipelining); every request is timed with `time.perf_counter` (p50, p99) and every response
must be `200` with the echoed body. The client is hand-written (`bench/http_load.py`: a
protocol parsing the status line and `Content-Length`) because aiohttp's client costs more
CPU per request than the servers measured; `ceiling` is a raw asyncio responder that only
frames HTTP and echoes the body: what the generator reaches here.

`gateway` is `micro server` with auth on (as in production) and its gateway, and the echo
service in its own process, logged in with a service account: `POST /echo` -> gateway ->
RPC -> the typed `Echo.Call`, marked `@public`. `gateway-auth` calls the private
`Echo.Private` with `Authorization: Bearer <access token>` of a user whom a rule grants
`echo`/`Echo.*`: the gateway verifies the token (cached after the first request) and
applies the rules, then the service does too. `fastapi` is FastAPI + uvicorn (httptools,
uvloop, one worker) serving `POST /echo` with a pydantic model both ways, directly: no RPC
hop. The gateway runs as `micro server` builds it (metrics, access log, CORS, rate limits),
except that its per-IP and per-account rate limits are raised so high that they never
refuse: all the load comes from one address and one account. On 2 cores the gateway path
has two server processes (gateway and service) to FastAPI's one; both share the cores with
the load generator.

### The HTTP server

`http-aiohttp`, `http-uvicorn` and `http-granian` serve one minimal JSON echo (msgspec
decode and encode, no framework) on aiohttp's web server, as a raw ASGI app on uvicorn with
httptools and uvloop, and on granian (ASGI interface, one worker, one runtime thread,
uvloop): the HTTP layer alone, which is all a change of server would change. granian does
its HTTP parsing and I/O on a Rust thread beside the Python thread, so it can use more than
one core.

{_decision(rows)}

Reproduce: `python -m bench gateway --duration {args.duration:g} --targets {targets} \\
--concurrency {concurrency} --write-docs` (add `--json` for machine-readable rows).
"""


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; print rows as JSON or as a table with ratios."""
    args = parse_args(argv)
    try:
        with procs.sigterm_as_interrupt():
            rows, failed = run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; every child process has been stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps([msgspec.to_builtins(row) for row in rows]))
    else:
        print_table(rows)
        for line in _verdict(rows):
            print(line)
    if args.write_docs and rows:
        report.write_section(DOCS, "gateway", _docs_body(rows, args))
        _note(f"wrote the gateway section of {DOCS}", args.json)
    return 1 if failed or not rows else 0
