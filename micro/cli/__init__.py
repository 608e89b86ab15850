"""The ``micro`` command line. One module per command group; heavy imports happen inside
commands so that ``micro --help`` stays instant."""

from __future__ import annotations

import re
import sys

import typer

__all__ = ["app", "main"]

_SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def build() -> typer.Typer:
    """The ``micro`` application with every command group attached."""
    from . import (
        auth,
        broker,
        call,
        config,
        debug,
        events,
        monitor,
        new,
        proxy,
        runtime,
        server,
        services,
        sidecar,
        store,
        sync,
        token,
    )

    cli = typer.Typer(
        name="micro",
        help="Micro for Python: run, call and manage microservices.\n\n"
        "Any registered service is a command too: micro SERVICE ENDPOINT --field value",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    cli.command("server")(server.server)
    cli.command("run")(runtime.run_service)
    cli.command("status")(runtime.status)
    cli.command("logs")(runtime.logs)
    cli.command("kill")(runtime.kill)
    cli.command("update")(runtime.update)
    cli.command("services")(services.services)
    cli.command("describe")(services.describe)
    cli.command("call")(call.call)
    cli.command("stream")(call.stream)
    cli.command("new")(new.new)
    broker.register(cli)
    config.register(cli)
    events.register(cli)
    store.register(cli)
    monitor.register(cli)
    sync.register(cli)
    auth.register(cli)
    token.register(cli)
    proxy.register(cli)  # micro proxy
    sidecar.register(cli)  # micro service --name N --endpoint URL
    debug.register(cli)
    return cli


def builtin(cli: typer.Typer) -> set[str]:
    """Names of the commands and groups the application defines (not service names)."""
    names = {c.name for c in cli.registered_commands} | {g.name for g in cli.registered_groups}
    return {n for n in names if isinstance(n, str)}


app = build()
BUILTIN = builtin(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``micro`` console script. A first word that is not a built-in
    command names a service: its commands are built from the registry."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] not in BUILTIN and _SERVICE_NAME.match(args[0]):
        from .dynamic import lookup

        service = lookup(args[0])
        if service is None:
            typer.echo(
                f"error: no command or service named {args[0]!r} "
                "(see `micro --help` and `micro services`)",
                err=True,
            )
            raise SystemExit(2)
        service(args=args[1:], prog_name=f"micro {args[0]}")
        return
    app(args=args, prog_name="micro")
