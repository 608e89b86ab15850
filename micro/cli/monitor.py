"""``micro monitor checks|add|remove|history`` and ``micro health``: the server's monitor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from .common import (
    Output,
    fail,
    parse_json,
    parse_seconds,
    print_table,
    run_with,
)

if TYPE_CHECKING:
    from ..monitor import Check
    from ..monitor.rpc import RpcMonitor

__all__ = ["health", "monitor_app", "register"]

T = TypeVar("T")

monitor_app = typer.Typer(
    name="monitor",
    help="User-defined health checks run by the server's monitor.",
    no_args_is_help=True,
)


def _run(work: Callable[[RpcMonitor], Awaitable[T]]) -> T:
    """Run ``work`` against the server's monitor service."""
    from ..monitor.rpc import RpcMonitor

    return run_with(RpcMonitor, work)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).isoformat(timespec="seconds")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@monitor_app.command("checks")
def checks(output: Output = "table") -> None:
    """List the checks with their latest result."""
    rows: list[list[Any]] = []
    for status in _run(lambda m: m.checks()):
        check, last = status.check, status.last
        target = check.target.url or f"{check.target.service} {check.target.endpoint}"
        rows.append(
            [
                check.name,
                check.kind,
                target,
                check.interval,
                None if last is None else ("ok" if last.ok else "FAIL"),
                None if last is None else _ms(last.latency_ms),
                None if last is None else (last.time if output == "json" else _when(last.time)),
                "" if last is None else last.detail,
            ]
        )
    columns = ["name", "kind", "target", "interval", "result", "latency_ms", "time", "detail"]
    print_table(columns, rows, output)


def _build(
    name: str,
    request: str | None,
    rpc: tuple[str, str] | None,
    http: str | None,
    expect_status: int | None,
    expect_field: str | None,
    equals: str | None,
    max_latency_ms: float | None,
    every: str,
    timeout: str,
) -> Check:
    import msgspec

    from ..monitor import Check, Expect, Target

    if (rpc is None) == (http is None):
        fail("give exactly one of --rpc SERVICE ENDPOINT or --http URL")
    if http is not None and request is not None:
        fail("a request body is only for --rpc checks")
    if equals is not None and expect_field is None:
        fail("--equals needs --expect-field")
    if rpc is not None:
        body = None if request is None else parse_json(request)
        target = Target(service=rpc[0], endpoint=rpc[1], request=body)
    else:
        target = Target(url=http or "")
    expect = Expect(
        status=expect_status,
        field=expect_field,
        equals=msgspec.UNSET if equals is None else parse_json(equals, "--equals"),
        max_latency_ms=max_latency_ms,
    )
    return Check(
        name=name,
        kind="rpc" if rpc is not None else "http",
        target=target,
        interval=parse_seconds(every, "--every"),
        timeout=parse_seconds(timeout, "--timeout"),
        expect=expect,
    )


@monitor_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="check name")],
    request: Annotated[str | None, typer.Argument(help="JSON request (--rpc)")] = None,
    rpc: Annotated[
        tuple[str, str] | None,
        typer.Option("--rpc", metavar="SERVICE ENDPOINT", help="call an RPC endpoint"),
    ] = None,
    http: Annotated[str | None, typer.Option("--http", metavar="URL", help="GET a URL")] = None,
    expect_status: Annotated[
        int | None, typer.Option("--expect-status", help="required status (HTTP, or RPC error)")
    ] = None,
    expect_field: Annotated[
        str | None, typer.Option("--expect-field", help="dotted path that must exist")
    ] = None,
    equals: Annotated[
        str | None, typer.Option("--equals", metavar="JSON", help="value of --expect-field")
    ] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option("--max-latency-ms", help="slowest passing call")
    ] = None,
    every: Annotated[str, typer.Option("--every", help="interval (10s, 1m, ...)")] = "10s",
    timeout: Annotated[str, typer.Option("--timeout", help="per run (5s, 500ms, ...)")] = "5s",
) -> None:
    """Add a check: --rpc SERVICE ENDPOINT [JSON] or --http URL, with expectations."""
    check = _build(
        name,
        request,
        rpc,
        http,
        expect_status,
        expect_field,
        equals,
        max_latency_ms,
        every,
        timeout,
    )
    _run(lambda m: m.add(check))
    typer.echo(f"added check {name} (every {check.interval:g}s)")


@monitor_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="check name")]) -> None:
    """Remove a check and its history."""
    _run(lambda m: m.remove(name))
    typer.echo(f"removed check {name}")


@monitor_app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="check name")],
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="newest N results")] = 20,
    output: Output = "table",
) -> None:
    """A check's newest results, newest first."""
    results = _run(lambda m: m.history(name, limit))
    rows = [
        [r.time if output == "json" else _when(r.time), r.ok, _ms(r.latency_ms), r.detail]
        for r in results
    ]
    print_table(["time", "ok", "latency_ms", "detail"], rows, output)


def health(output: Output = "table") -> None:
    """Every registered node as the monitor sees it: state and last probe latency."""
    nodes = _run(lambda m: m.health())
    rows = [
        [
            n.service,
            n.version,
            n.node,
            n.address,
            n.state,
            _ms(n.latency_ms),
            n.failures,
            n.checked if output == "json" else _when(n.checked),
            n.error,
        ]
        for n in nodes
    ]
    columns = [
        "service",
        "version",
        "node",
        "address",
        "state",
        "latency_ms",
        "failures",
        "checked",
        "error",
    ]
    print_table(columns, rows, output)


def register(app: typer.Typer) -> None:
    """Attach ``micro monitor ...`` and ``micro health`` to ``app``."""
    app.add_typer(monitor_app, name="monitor")
    app.command("health")(health)
