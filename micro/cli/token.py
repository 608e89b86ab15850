"""``micro token``: one-time tokens of the server's ``token`` service.

``issue`` a token for a scope (printed once, with its public id), ``consume`` it (exactly
once) or ``check`` it without using it up, ``revoke`` one by id, ``list`` the live ones.
Info prints as JSON: ``{id, scope, metadata, created, expires}`` (Unix seconds).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from .common import (
    Output,
    parse_pairs,
    parse_seconds,
    print_json,
    print_table,
    run_with,
)

if TYPE_CHECKING:
    from ..token import TokenInfo
    from ..token.rpc import RpcTokens

__all__ = ["register", "token_app"]

T = TypeVar("T")

token_app = typer.Typer(
    name="token", help="One-time tokens: issue, consume, check, revoke, list.", no_args_is_help=True
)

Scope = Annotated[str | None, typer.Option("--scope", help="only if the token is for this scope")]


def _run(work: Callable[[RpcTokens], Awaitable[T]]) -> T:
    """Run ``work`` against the server's token service."""
    from ..token.rpc import RpcTokens

    return run_with(lambda address, client: RpcTokens(client, address=address), work)


def _info(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "scope": info.scope,
        "metadata": info.metadata,
        "created": info.created,
        "expires": info.expires,
    }


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).isoformat(" ", "seconds")


@token_app.command()
def issue(
    scope: Annotated[str, typer.Argument(help="what the token is good for")],
    ttl: Annotated[str, typer.Option("--ttl", help="how long it lives (30m, 1h, 7d)")] = "1h",
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="KEY=VALUE metadata (repeatable)")
    ] = None,
) -> None:
    """Issue a token; prints it (the only time it is shown) with its info."""
    seconds = parse_seconds(ttl, "--ttl")
    metadata = parse_pairs(meta or [], "--meta")
    token, info = _run(lambda t: t.issue(scope, ttl=seconds, metadata=metadata))
    print_json({"token": token, **_info(info)})


@token_app.command()
def consume(token: Annotated[str, typer.Argument(help="the token")], scope: Scope = None) -> None:
    """Use a token up (exactly once); prints its info."""
    print_json(_info(_run(lambda t: t.consume(token, scope=scope))))


@token_app.command()
def check(token: Annotated[str, typer.Argument(help="the token")], scope: Scope = None) -> None:
    """Show a usable token's info without using it up."""
    print_json(_info(_run(lambda t: t.check(token, scope=scope))))


@token_app.command()
def revoke(id: Annotated[str, typer.Argument(help="the token's public id")]) -> None:
    """Delete a token by its id."""
    _run(lambda t: t.revoke(id))
    typer.echo(f"revoked {id}")


@token_app.command("list")
def list_tokens(
    scope: Annotated[str | None, typer.Option("--scope", help="only this scope")] = None,
    output: Output = "table",
) -> None:
    """The live tokens (never the token strings), oldest first."""
    infos = _run(lambda t: t.list(scope))
    if output == "json":
        print_json([_info(i) for i in infos])
        return
    rows = [
        (
            i.id,
            i.scope,
            _when(i.created),
            _when(i.expires),
            ",".join(f"{k}={v}" for k, v in i.metadata.items()),
        )
        for i in infos
    ]
    print_table(["id", "scope", "created", "expires", "metadata"], rows, output)


def register(app: typer.Typer) -> None:
    """Attach ``micro token`` to the root CLI."""
    app.add_typer(token_app, name="token")
