"""``micro run|status|logs|kill|update``: services supervised by the server's runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import Output, fail, print_table, run, server_address

if TYPE_CHECKING:
    from ..runtime import ServiceSpec
    from ..runtime.rpc import RpcRuntime


@asynccontextmanager
async def _runtime() -> AsyncIterator[RpcRuntime]:
    from ..runtime.rpc import RpcRuntime

    rt = RpcRuntime(server_address())
    try:
        yield rt
    finally:
        await rt.close()


def _spec(path: str, name: str | None, version: str, env: list[str]) -> ServiceSpec:
    from ..runtime import ServiceSpec

    source = Path(path).expanduser().resolve()
    if not source.is_dir():
        fail(f"{path} is not a directory")
    if not (source / "main.py").is_file():
        fail(f"{source} has no main.py")
    variables: dict[str, str] = {}
    for pair in env:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--env {pair!r} is not KEY=VALUE")
        variables[key] = value
    return ServiceSpec(
        name=name or source.name.lower(), source=str(source), version=version, env=variables
    )


Name = Annotated[str | None, typer.Option("--name", help="service name (default: directory name)")]
Version = Annotated[str, typer.Option("--version", help="version label")]
Env = Annotated[list[str], typer.Option("--env", "-e", help="KEY=VALUE for the process")]


def run_service(
    path: Annotated[str, typer.Argument(help="directory with a main.py")],
    name: Name = None,
    version: Version = "latest",
    env: Env = [],  # noqa: B006 - typer reads the default, never mutates it
) -> None:
    """Run a service from a local directory, supervised by the server."""
    spec = _spec(path, name, version, env)

    async def go() -> None:
        async with _runtime() as rt:
            await rt.create(spec)

    run(go())
    typer.echo(f"started {spec.name} from {spec.source}")


def update(
    path: Annotated[str, typer.Argument(help="directory with a main.py")],
    name: Name = None,
    version: Version = "latest",
    env: Env = [],  # noqa: B006
) -> None:
    """Restart a running service from (new) source."""
    spec = _spec(path, name, version, env)

    async def go() -> None:
        async with _runtime() as rt:
            await rt.update(spec)

    run(go())
    typer.echo(f"updated {spec.name}")


def kill(name: Annotated[str, typer.Argument(help="service name")]) -> None:
    """Stop a service and forget it."""

    async def go() -> None:
        async with _runtime() as rt:
            await rt.delete(name)

    run(go())
    typer.echo(f"stopped {name}")


def _uptime(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{sec:02d}s" if minutes else f"{sec}s")
    )


def status(
    name: Annotated[str | None, typer.Argument(help="one service (default: all)")] = None,
    output: Output = "table",
) -> None:
    """Show services run by the runtime: status, pid, restarts, uptime."""

    async def go() -> None:
        async with _runtime() as rt:
            found = await rt.read(name)
        rows = [
            (
                s.name,
                s.version,
                s.source,
                s.status,
                s.pid,
                s.restarts,
                _uptime(s.uptime) if output == "table" else round(s.uptime, 3),
            )
            for s in found
        ]
        print_table(
            ["name", "version", "source", "status", "pid", "restarts", "uptime"], rows, output
        )

    run(go())


def logs(
    name: Annotated[str, typer.Argument(help="service name")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="lines of history")] = 100,
) -> None:
    """Print a service's logs."""
    if lines < 0:
        fail("--lines must be 0 or more")

    async def go() -> None:
        async with _runtime() as rt:
            async for line in rt.logs(name, lines=lines, follow=follow):
                typer.echo(line.rstrip("\n"))

    run(go())


__all__ = ["kill", "logs", "run_service", "status", "update"]
