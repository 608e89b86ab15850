"""What every CLI command shares: settings, running async work, errors, output."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from ..client import Client
    from ..identity.bootstrap import TlsClient

T = TypeVar("T")

CORE = (
    "registry",
    "runtime",
    "store",
    "config",
    "broker",
    "events",
    "monitor",
    "sync",
    "auth",
    "token",
    "identity",
)

Output = Annotated[str, typer.Option("--output", "-o", help="table or json", metavar="table|json")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error on stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def server_address() -> str:
    """``MICRO_SERVER``, else the server of the current env (``micro env``), validated."""
    from .envs import server_for_cli

    try:
        return server_for_cli()
    except ValueError as exc:
        fail(str(exc))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; turn platform errors into one clear line and an exit code."""
    from ..errors import MicroError

    try:
        return asyncio.run(coro)
    except MicroError as err:
        if err.code == "unavailable" and "cannot connect" in err.detail and err.id in CORE:
            fail(
                f"cannot reach micro server at {server_address()}: is `micro server` running?"
                " (set MICRO_SERVER to point elsewhere)"
            )
        fail(f"{err.detail} ({err.code}, {err.status})" + (f" from {err.id}" if err.id else ""))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@asynccontextmanager
async def connect() -> AsyncIterator[Client]:
    """A client that resolves services through the server's registry, calling with the
    credential of the current env (:func:`micro.cli.envs.cli_credential`)."""
    from ..auth.rpc import RpcAuth
    from ..client import Client
    from ..registry.rpc import RpcRegistry
    from ..transport.client import ConnectionPool
    from .envs import cli_credential

    header: list[str | None] = [None]
    server = server_address()
    tls = _tls_client()
    ssl = tls.context if tls is not None else None
    registry = RpcRegistry(server, credentials=lambda: header[0], ssl=ssl)
    pool = ConnectionPool(ssl=ssl) if ssl is not None else None
    client = Client(registry, credentials=lambda: header[0], pool=pool)
    try:
        tokens = await cli_credential(RpcAuth(server, client=client))
        if tokens is not None:
            header[0] = f"Bearer {tokens.access_token}"
            if tls is not None:
                await _certificate(tls, client, server)
        yield client
    finally:
        await client.close()
        await registry.close()


B = TypeVar("B")


def run_with(make: Callable[[str, Client], B], work: Callable[[B], Awaitable[T]]) -> T:
    """Run ``work`` with the block client ``make(server address, client)`` over the CLI's
    authenticated connection (:func:`connect`), closing it afterwards."""

    async def go() -> T:
        async with connect() as client:
            block = make(server_address(), client)
            try:
                return await work(block)
            finally:
                close = getattr(block, "close", None)
                if close is not None:
                    await close()

    return run(go())


def _tls_client() -> TlsClient | None:
    """With MICRO_TLS=1: the CLI's TLS context (trusting the server's CA)."""
    from ..identity.bootstrap import TlsClient, ca_bundle
    from ..settings import Settings

    settings = Settings.from_env()
    if not settings.tls:
        return None
    try:
        return TlsClient(ca_bundle(settings.data_dir))
    except RuntimeError as exc:
        fail(str(exc))


async def _certificate(tls: TlsClient, client: Client, server: str) -> None:
    """A certificate for the CLI when its account may have one (administrators), so it can
    call services directly; without one it reaches the server only."""
    from ..errors import MicroError
    from ..identity.client import IdentityClient
    from ..identity.rpc import RpcIdentity

    try:
        tls.credentials = await IdentityClient(RpcIdentity(client, server), service="cli").obtain()
    except MicroError as err:
        if err.code not in ("forbidden", "unauthorized"):
            raise


def parse_pairs(pairs: list[str], what: str = "--metadata") -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}``, failing clearly on an item without ``=``."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"{what} {pair!r} is not KEY=VALUE")
        found[key] = value
    return found


def parse_seconds(text: str, what: str) -> float:
    """A duration argument (``90``, ``500ms``, ``30s``, ``5m``, ``2h``, ``1d``) in seconds."""
    from .durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        fail(f"{what}: {exc}")


def parse_json(text: str, what: str = "request") -> Any:
    """Parse a JSON argument, failing with a clear message."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON: {exc}")


def print_json(value: Any) -> None:
    """JSON on stdout: indented on a terminal, one line in a pipe."""
    indent = 2 if sys.stdout.isatty() else None
    typer.echo(json.dumps(value, indent=indent, ensure_ascii=False, default=str))


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], output: str) -> None:
    """Rows as a rich table, or as a JSON list of objects with ``--output json``."""
    if output == "json":
        print_json([dict(zip(columns, row, strict=True)) for row in rows])
        return
    if output != "table":
        fail(f"unknown output {output!r} (table, json)")
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in columns:
        table.add_column(col.upper())
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)
