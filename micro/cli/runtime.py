"""``micro run|status|logs|kill|update``: services supervised by the server's runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import Output, connect, fail, print_json, print_table, run, server_address

if TYPE_CHECKING:
    from ..runtime import ServiceSpec
    from ..runtime.rpc import RpcRuntime


@asynccontextmanager
async def _runtime() -> AsyncIterator[RpcRuntime]:
    from ..runtime.rpc import RpcRuntime

    async with connect() as client:
        rt = RpcRuntime(server_address(), client=client)
        try:
            yield rt
        finally:
            await rt.close()


def _spec(
    path: str,
    name: str | None,
    version: str,
    env: list[str],
    instances: int,
    memory_mb: int | None,
    open_files: int | None,
) -> ServiceSpec:
    from ..runtime import MAX_INSTANCES, Limits, ServiceSpec

    if not 1 <= instances <= MAX_INSTANCES:
        fail(f"--instances must be 1 to {MAX_INSTANCES}")
    if (memory_mb is not None and memory_mb < 1) or (open_files is not None and open_files < 1):
        fail("--memory-mb and --open-files must be positive")

    source = Path(path).expanduser().resolve()
    repo, at, rev = path.rpartition("@")
    git = ""
    if at and repo and rev and not source.is_dir():  # PATH@branch, PATH@commit
        source = Path(repo).expanduser().resolve()
        git = f"@{rev}"
    if not source.is_dir():
        fail(f"{path} is not a directory")
    if not git and not (source / "main.py").is_file():
        fail(f"{source} has no main.py")
    variables: dict[str, str] = {}
    for pair in env:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--env {pair!r} is not KEY=VALUE")
        variables[key] = value
    return ServiceSpec(
        name=name or source.name.lower(),
        source=f"{source}{git}",
        version=version,
        env=variables,
        instances=instances,
        limits=Limits(memory_mb=memory_mb, open_files=open_files),
    )


Source = Annotated[
    str,
    typer.Argument(help="directory with a main.py, or a git repository as PATH@branch"),
]
Name = Annotated[str | None, typer.Option("--name", help="service name (default: directory name)")]
Version = Annotated[str, typer.Option("--version", help="version label")]
Env = Annotated[
    list[str],
    typer.Option(
        "--env", "-e", help="KEY=VALUE for the process (VALUE config:PATH: read from the config)"
    ),
]
Instances = Annotated[int, typer.Option("--instances", "-i", help="processes to run (1-32)")]
MemoryMb = Annotated[
    int | None, typer.Option("--memory-mb", help="address space limit per process (MiB)")
]
OpenFiles = Annotated[int | None, typer.Option("--open-files", help="open file limit per process")]


def run_service(
    path: Source,
    name: Name = None,
    version: Version = "latest",
    env: Env = [],  # noqa: B006 - typer reads the default, never mutates it
    instances: Instances = 1,
    memory_mb: MemoryMb = None,
    open_files: OpenFiles = None,
) -> None:
    """Run a service from a local directory, supervised by the server."""
    spec = _spec(path, name, version, env, instances, memory_mb, open_files)

    async def go() -> None:
        async with _runtime() as rt:
            await rt.create(spec)

    run(go())
    count = f" ({spec.instances} instances)" if spec.instances > 1 else ""
    typer.echo(f"started {spec.name} from {spec.source}{count}")


def update(
    path: Source,
    name: Name = None,
    version: Version = "latest",
    env: Env = [],  # noqa: B006
    instances: Annotated[
        int | None,
        typer.Option("--instances", "-i", help="processes to run (1-32; default: as many as now)"),
    ] = None,
    memory_mb: MemoryMb = None,
    open_files: OpenFiles = None,
) -> None:
    """Replace a service's processes, one at a time, by ones run from (new) source (the
    environment and limits are the ones given here, not the old ones)."""
    spec = _spec(path, name, version, env, instances or 1, memory_mb, open_files)

    async def go() -> None:
        async with _runtime() as rt:
            if instances is None:
                [current] = await rt.read(spec.name)
                count = len({i.index for i in current.instances}) or 1
                spec.instances = count
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
    """Show services run by the runtime: status, pid, restarts, uptime; with several
    instances, one more line per instance (json: an "instances" list per service)."""

    async def go() -> None:
        async with _runtime() as rt:
            found = await rt.read(name)
        if output == "json":
            import msgspec

            print_json([msgspec.to_builtins(s) for s in found])
            return
        rows: list[tuple[object, ...]] = []
        for s in found:
            count = len(s.instances) or 1
            label = s.name if count == 1 else f"{s.name} ({count})"
            rows.append(
                (label, s.version, s.source, s.status, s.pid, s.restarts, _uptime(s.uptime))
            )
            if count > 1:
                rows.extend(
                    (f"  #{i.index}", i.version, "", i.status, i.pid, i.restarts, _uptime(i.uptime))
                    for i in s.instances
                )
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
