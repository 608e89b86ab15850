"""``micro server``: run the core services and the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import fail


def server(
    address: Annotated[
        str, typer.Option(help="RPC listen address", envvar="MICRO_SERVER")
    ] = "127.0.0.1:8081",
    gateway: Annotated[
        str, typer.Option(help="HTTP gateway listen address", envvar="MICRO_GATEWAY")
    ] = "127.0.0.1:8080",
    no_gateway: Annotated[
        bool, typer.Option("--no-gateway", help="run without the gateway")
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="state directory (default: ~/.micro)", envvar="MICRO_DATA_DIR"),
    ] = None,
    no_runtime: Annotated[
        bool, typer.Option("--no-runtime", help="do not supervise services")
    ] = False,
    tls: Annotated[
        bool | None,
        typer.Option(
            "--tls/--no-tls", help="mutual TLS for RPC (default: MICRO_TLS)", show_default=False
        ),
    ] = None,
) -> None:
    """Run micro server: registry and runtime on RPC, the API gateway on HTTP."""
    from ..server import MicroServer, ServerOptions
    from ..service.process import configure_logging, run
    from ..settings import Settings

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        fail(str(exc))
    options = ServerOptions(
        address=address,
        gateway=None if no_gateway else gateway,
        data_dir=(data_dir or settings.data_dir).expanduser().resolve(),
        runtime=not no_runtime,
        tls=settings.tls if tls is None else tls,
    )
    configure_logging("server")
    try:
        run(MicroServer(options).serve())
    except (OSError, RuntimeError) as exc:
        fail(f"cannot start micro server: {exc}")
