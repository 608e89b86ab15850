"""``micro stats`` and ``micro trace``: what services report through their ``Debug`` handler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import Output, connect, fail, print_json, run

if TYPE_CHECKING:
    from ..debug import StatsSnapshot
    from ..debug.collect import SpanNode

__all__ = ["register", "stats", "trace"]


def stats(
    name: Annotated[str, typer.Argument(help="service name")],
    output: Output = "table",
) -> None:
    """Show a service's process figures and per-endpoint requests, errors and latencies,
    for each of its nodes."""
    import msgspec

    from ..debug import StatsSnapshot
    from ..debug.messages import Empty
    from ..registry import nodes_of

    if output not in ("table", "json"):
        fail(f"unknown output {output!r} (table, json)")

    async def go() -> list[tuple[str, StatsSnapshot]]:
        async with connect() as client:
            assert client.view is not None
            nodes = nodes_of(await client.view.registry.get_service(name))
            found = []
            for node in nodes:
                snap = await client.call(
                    name,
                    "Debug.Stats",
                    Empty(),
                    response_type=StatsSnapshot,
                    address=node.address,
                    timeout=5.0,
                )
                found.append((node.address, snap))
            return found

    found = run(go())
    if not found:
        fail(f"service {name} has no running node")
    if output == "json":
        print_json([{"node": a, **msgspec.to_builtins(s)} for a, s in found])
        return
    for address, snap in found:
        _print_stats(address, snap)


def _print_stats(address: str, snap: StatsSnapshot) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{snap.service}[/bold] @ {address}  uptime {snap.uptime:.0f}s  "
        f"rss {snap.memory_rss / 2**20:.1f} MiB  cpu {snap.cpu_user + snap.cpu_system:.2f}s  "
        f"threads {snap.threads}  gc {'/'.join(map(str, snap.gc_collections))}"
    )
    table = Table(box=None, header_style="bold")
    for col in ("ENDPOINT", "REQUESTS", "ERRORS", "4XX", "P50 MS", "P90 MS", "P99 MS"):
        table.add_column(col, justify="left" if col == "ENDPOINT" else "right")
    for ep in snap.endpoints:
        table.add_row(
            ep.name,
            str(ep.requests),
            str(ep.errors),
            str(ep.client_errors),
            f"{ep.p50_ms:.2f}",
            f"{ep.p90_ms:.2f}",
            f"{ep.p99_ms:.2f}",
        )
    console.print(table)


def trace(
    trace_id: Annotated[str, typer.Argument(help="32 hex digits, e.g. from a JSON log line")],
    output: Output = "table",
) -> None:
    """Show the calls of one trace as a tree: service, endpoint, duration."""
    import msgspec

    from ..debug.collect import collect_trace

    if output not in ("table", "json"):
        fail(f"unknown output {output!r} (table, json)")

    async def go() -> Any:
        async with connect() as client:
            assert client.view is not None
            return await collect_trace(client, client.view.registry, trace_id)

    tree = run(go())
    if output == "json":
        print_json(msgspec.to_builtins(tree))
        return
    from rich.console import Console
    from rich.tree import Tree

    root = Tree(f"[bold]trace {tree.trace_id}[/bold] ({tree.spans} spans)")
    for node in tree.roots:
        _add(root, node)
    console = Console()
    console.print(root)
    for where in tree.unreachable:
        console.print(f"[yellow]unreachable: {where}[/yellow]")


def _add(parent: Any, node: SpanNode) -> None:
    from rich.markup import escape

    s = node.span
    label = escape(f"{s.service} {s.endpoint} {s.duration * 1000:.2f}ms")
    if s.status != "ok":
        label += f" [red]{s.status}[/red]" + (f" {escape(s.error)}" if s.error else "")
    branch = parent.add(label)
    for child in node.children:
        _add(branch, child)


def register(app: typer.Typer) -> None:
    """Attach ``micro stats`` and ``micro trace`` to ``app``."""
    app.command("stats")(stats)
    app.command("trace")(trace)
