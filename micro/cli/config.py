"""``micro config get|set|delete|watch``: the config documents kept by the server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from .common import connect, fail, print_json, run, server_address

if TYPE_CHECKING:
    from ..config.rpc import RpcConfig

T = TypeVar("T")

config_app = typer.Typer(
    name="config",
    help="Read, write and watch configuration (one JSON document per namespace).",
    no_args_is_help=True,
)

Path = Annotated[str, typer.Argument(help="dot path, e.g. svc.db.addr", show_default=False)]
Namespace = Annotated[
    str,
    typer.Option("--namespace", "-n", envvar="MICRO_NAMESPACE", help="namespace of the document"),
]


@asynccontextmanager
async def _config() -> AsyncIterator[RpcConfig]:
    from ..config.rpc import RpcConfig

    async with connect() as client:
        cfg = RpcConfig(server_address(), client=client)
        try:
            yield cfg
        finally:
            await cfg.close()


def _run(work: Callable[[RpcConfig], Awaitable[T]]) -> T:
    """Run ``work`` against the server; an unreachable server gets a one-line hint."""
    from ..errors import MicroError

    async def go() -> T:
        async with _config() as cfg:
            try:
                return await work(cfg)
            except MicroError as err:
                if err.code == "unavailable" and "cannot connect" in err.detail:
                    fail(
                        f"cannot reach micro server at {server_address()}: is `micro server` "
                        "running? (set MICRO_SERVER to point elsewhere)"
                    )
                raise

    return run(go())


def parse_value(text: str) -> Any:
    """``text`` as JSON when it is valid JSON, else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@config_app.command("get")
def get(
    path: Annotated[str, typer.Argument(help="dot path (default: the whole document)")] = "",
    namespace: Namespace = "micro",
    secrets: Annotated[
        bool, typer.Option("--secrets", help="show secret values instead of [secret]")
    ] = False,
) -> None:
    """Print the value at PATH as JSON (null when nothing is there)."""
    print_json(_run(lambda cfg: cfg.get(namespace, path, secrets)))


@config_app.command("set")
def set_(
    path: Path,
    value: Annotated[str, typer.Argument(help="JSON, or else taken as a string")],
    namespace: Namespace = "micro",
    secret: Annotated[
        bool, typer.Option("--secret", help="encrypt it at rest and mask it in reads")
    ] = False,
) -> None:
    """Set PATH to VALUE; a JSON object merges into what is there."""
    parsed = parse_value(value)
    _run(lambda cfg: cfg.set(namespace, path, parsed, secret))


@config_app.command("delete")
def delete(path: Path, namespace: Namespace = "micro") -> None:
    """Delete the value at PATH."""
    _run(lambda cfg: cfg.delete(namespace, path))


@config_app.command("watch")
def watch(
    path: Annotated[str, typer.Argument(help="dot path (default: the whole document)")] = "",
    namespace: Namespace = "micro",
) -> None:
    """Print each change at or under PATH as a JSON line, until Ctrl-C."""
    import msgspec

    async def follow(cfg: RpcConfig) -> None:
        watcher = cfg.watch(namespace, path)
        try:
            async for change in watcher:
                typer.echo(json.dumps(msgspec.to_builtins(change), ensure_ascii=False))
        finally:
            await watcher.aclose()

    _run(follow)


def register(app: typer.Typer) -> None:
    """Attach ``micro config ...`` to ``app``."""
    app.add_typer(config_app, name="config")


__all__ = ["config_app", "delete", "get", "parse_value", "register", "set_", "watch"]
