"""``micro sync``: locks, leaders, maps and queues of the server's ``sync`` service.

``acquire``/``release`` a lock, show an election's ``leader``, ``map get|put|delete|list``,
``enqueue`` a task and list a queue's ``dead`` letters. Values and bodies are UTF-8 text
on the command line; values that are not UTF-8 print as base64.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from .common import (
    Output,
    fail,
    parse_seconds,
    print_json,
    print_table,
    run_with,
)

if TYPE_CHECKING:
    from ..sync.rpc import RpcSync

__all__ = ["register", "sync_app"]

T = TypeVar("T")

sync_app = typer.Typer(
    name="sync", help="Locks, leader elections, maps and task queues.", no_args_is_help=True
)
map_app = typer.Typer(name="map", help="Versioned maps with compare-and-set.", no_args_is_help=True)
sync_app.add_typer(map_app, name="map")

Version = Annotated[
    int | None, typer.Option("--version", min=0, help="only at this version (0: create only)")
]


def _run(work: Callable[[RpcSync], Awaitable[T]]) -> T:
    """Run ``work`` against the server's sync service."""
    from ..sync.rpc import RpcSync

    return run_with(RpcSync, work)


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


@sync_app.command()
def acquire(
    name: Annotated[str, typer.Argument(help="lock name")],
    ttl: Annotated[str, typer.Option("--ttl", help="how long to hold it (30s, 5m)")] = "30s",
    wait: Annotated[str, typer.Option("--wait", help="how long to wait for it")] = "0s",
    owner: Annotated[str | None, typer.Option("--owner", help="holder name")] = None,
) -> None:
    """Take a lock; prints the lease (name, owner, token, expires)."""
    secs, waiting = parse_seconds(ttl, "--ttl"), parse_seconds(wait, "--wait")
    lease = _run(lambda s: s.acquire(name, secs, wait=waiting, owner=owner))
    print_json(
        {"name": lease.name, "owner": lease.owner, "token": lease.token, "expires": lease.expires}
    )


@sync_app.command()
def release(
    name: Annotated[str, typer.Argument(help="lock name")],
    owner: Annotated[str, typer.Option("--owner", help="holder named in the lease")],
    token: Annotated[int, typer.Option("--token", help="token of the lease")],
) -> None:
    """Free a lock held by the lease (owner, token)."""
    from ..sync import Lease

    _run(lambda s: s.release(Lease(name, owner, token, 0.0)))
    typer.echo(f"released {name} (token {token})")


@sync_app.command()
def leader(election: Annotated[str, typer.Argument(help="election name")]) -> None:
    """Who leads an election (nothing printed, exit 1, when nobody does)."""
    who = _run(lambda s: s.leader(election))
    if who is None:
        fail(f"election {election!r} has no leader")
    typer.echo(who)


@map_app.command("get")
def map_get(map: str, key: str) -> None:
    """Print a key's value and version."""
    value, version = _run(lambda s: s.map_get(map, key))
    print_json({"key": key, "value": _text(value), "version": version})


@map_app.command("put")
def map_put(map: str, key: str, value: str, version: Version = None) -> None:
    """Set a key (compare-and-set with --version); prints the new version."""
    new = _run(lambda s: s.map_put(map, key, value.encode(), version=version))
    print_json({"key": key, "version": new})


@map_app.command("delete")
def map_delete(map: str, key: str, version: Version = None) -> None:
    """Delete a key (only at --version when given)."""
    _run(lambda s: s.map_delete(map, key, version))
    typer.echo(f"deleted {key}")


@map_app.command("list")
def map_list(map: str, output: Output = "table") -> None:
    """Every key of a map with its value and version."""
    entries = _run(lambda s: s.map_list(map))
    print_table(
        ["key", "value", "version"], [(e.key, _text(e.value), e.version) for e in entries], output
    )


@sync_app.command()
def enqueue(
    queue: str,
    body: str,
    delay: Annotated[str, typer.Option("--delay", help="due after (10s, 5m)")] = "0s",
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1)] = 5,
) -> None:
    """Add a task to a queue; prints its id."""
    after = parse_seconds(delay, "--delay")
    typer.echo(
        _run(lambda s: s.enqueue(queue, body.encode(), delay=after, max_attempts=max_attempts))
    )


@sync_app.command()
def dead(queue: str, output: Output = "table") -> None:
    """The dead-lettered tasks of a queue."""
    tasks = _run(lambda s: s.dead(queue))
    rows = [(t.id, t.attempt, t.error, _text(t.body)) for t in tasks]
    print_table(["id", "attempts", "error", "body"], rows, output)


def register(app: typer.Typer) -> None:
    """Attach ``micro sync`` to the root CLI."""
    app.add_typer(sync_app, name="sync")
