"""``micro store read|write|delete|list|databases|tables``: records in the server's store.

Every command takes ``--database`` (default ``$MICRO_NAMESPACE``, else ``micro``: the
database of that namespace's services) and ``--table`` (default ``default``; a service's own
records are in the table named after the service).
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from .common import (
    Output,
    fail,
    parse_pairs,
    parse_seconds,
    print_json,
    print_table,
    run_with,
)

if TYPE_CHECKING:
    from ..store import Record
    from ..store.rpc import RpcStore

__all__ = ["register", "store_app"]

T = TypeVar("T")

store_app = typer.Typer(
    name="store",
    help="Read and write records of the store (databases, tables, keys, values).",
    no_args_is_help=True,
)

Database = Annotated[
    str,
    typer.Option("--database", "-d", envvar="MICRO_NAMESPACE", help="database (the namespace)"),
]
Table = Annotated[str, typer.Option("--table", "-t", help="table (a service's name)")]
Limit = Annotated[int | None, typer.Option("--limit", "-l", min=0, help="at most N")]
Offset = Annotated[int, typer.Option("--offset", min=0, help="skip the first N")]
OrderOption = Annotated[str, typer.Option("--order", help="by key: asc or desc")]
Etag = Annotated[str | None, typer.Option("--etag", help="only if the record still has it")]


def _run(work: Callable[[RpcStore], Awaitable[T]]) -> T:
    """Run ``work`` against the server's store service."""
    from ..store.rpc import RpcStore

    return run_with(RpcStore, work)


def _order(order: str) -> Any:
    if order not in ("asc", "desc"):
        fail(f"--order must be asc or desc, not {order!r}")
    return order


def _text(value: bytes) -> tuple[str, str]:
    """A value for people: (text, encoding), UTF-8 when it decodes, else base64."""
    try:
        return value.decode(), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode(), "base64"


def _when(expiry: float | None) -> str:
    return "" if expiry is None else datetime.fromtimestamp(expiry).isoformat(" ", "seconds")


def _show(records: list[Record], output: str) -> None:
    if output == "json":
        print_json(
            [
                {
                    "key": r.key,
                    "value": text,
                    "encoding": encoding,
                    "metadata": r.metadata,
                    "expiry": r.expiry,
                    "etag": r.etag,
                }
                for r in records
                for text, encoding in [_text(r.value)]
            ]
        )
        return
    rows = []
    for r in records:
        text, encoding = _text(r.value)
        shown = text if encoding == "utf-8" else f"<{len(r.value)} bytes, base64 {text[:40]}>"
        meta = ",".join(f"{k}={v}" for k, v in sorted(r.metadata.items()))
        rows.append((r.key, shown, meta, _when(r.expiry), r.etag))
    print_table(["key", "value", "metadata", "expires", "etag"], rows, output)


@store_app.command("read")
def read(
    key: Annotated[str, typer.Argument(help="the key, or the prefix/suffix to match")] = "",
    prefix: Annotated[bool, typer.Option("--prefix", help="every key starting with KEY")] = False,
    suffix: Annotated[bool, typer.Option("--suffix", help="every key ending with KEY")] = False,
    limit: Limit = None,
    offset: Offset = 0,
    order: OrderOption = "asc",
    raw: Annotated[bool, typer.Option("--raw", help="print only the value bytes")] = False,
    database: Database = "micro",
    table: Table = "default",
    output: Output = "table",
) -> None:
    """Show the record KEY, or with --prefix/--suffix every record that matches."""
    if not key and not (prefix or suffix):
        fail("give a KEY, or --prefix/--suffix (an empty one matches every key)")
    if raw and (prefix or suffix):
        fail("--raw prints one value: it does not go with --prefix or --suffix")
    by = _order(order)
    records = _run(
        lambda store: store.read(
            database, table, key, prefix=prefix, suffix=suffix, limit=limit, offset=offset, order=by
        )
    )
    if raw:
        sys.stdout.buffer.write(records[0].value)
        sys.stdout.flush()
        return
    _show(records, output)


@store_app.command("write")
def write(
    key: Annotated[str, typer.Argument(help="the key")],
    value: Annotated[str, typer.Argument(help="the value (UTF-8); - reads bytes from stdin")],
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="expire after: 90 (seconds), 30s, 5m, 2h, 1d")
    ] = None,
    metadata: Annotated[
        list[str], typer.Option("--metadata", "-m", help="KEY=VALUE, repeatable")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    etag: Etag = None,
    if_absent: Annotated[
        bool, typer.Option("--if-absent", help="only if no record has this key")
    ] = False,
    database: Database = "micro",
    table: Table = "default",
    output: Output = "table",
) -> None:
    """Write VALUE under KEY (replacing the record)."""
    seconds = parse_seconds(ttl, "--ttl") if ttl is not None else None
    data = sys.stdin.buffer.read() if value == "-" else value.encode()
    meta = parse_pairs(metadata)
    record = _run(
        lambda store: store.write(
            database, table, key, data, metadata=meta, ttl=seconds, etag=etag, if_absent=if_absent
        )
    )
    if output == "json":
        print_json({"key": record.key, "etag": record.etag, "expiry": record.expiry})
        return
    expires = f", expires {_when(record.expiry)}" if record.expiry is not None else ""
    typer.echo(f"wrote {key} in {database}/{table} (etag {record.etag}{expires})")


@store_app.command("delete")
def delete(
    key: Annotated[str, typer.Argument(help="the key")],
    etag: Etag = None,
    database: Database = "micro",
    table: Table = "default",
) -> None:
    """Delete the record KEY (nothing happens when there is none)."""
    _run(lambda store: store.delete(database, table, key, etag=etag))
    typer.echo(f"deleted {key} from {database}/{table}")


@store_app.command("list")
def list_keys(
    prefix: Annotated[str, typer.Option("--prefix", help="keys starting with this")] = "",
    suffix: Annotated[str, typer.Option("--suffix", help="keys ending with this")] = "",
    limit: Limit = None,
    offset: Offset = 0,
    order: OrderOption = "asc",
    database: Database = "micro",
    table: Table = "default",
    output: Output = "table",
) -> None:
    """List the keys of a table."""
    by = _order(order)
    keys = _run(
        lambda store: store.list_keys(
            database, table, prefix=prefix, suffix=suffix, limit=limit, offset=offset, order=by
        )
    )
    print_table(["key"], [(k,) for k in keys], output)


@store_app.command("databases")
def databases(output: Output = "table") -> None:
    """List the databases that hold records."""
    names = _run(lambda store: store.list_databases())
    print_table(["database"], [(n,) for n in names], output)


@store_app.command("tables")
def tables(database: Database = "micro", output: Output = "table") -> None:
    """List the tables of a database that hold records."""
    names = _run(lambda store: store.list_tables(database))
    print_table(["table"], [(n,) for n in names], output)


def register(app: typer.Typer) -> None:
    """Attach ``micro store ...`` to the ``micro`` application."""
    app.add_typer(store_app, name="store")
