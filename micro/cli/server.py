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
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="an origin browsers may call the gateway from"),
    ] = None,
    rate_per_ip: Annotated[
        float, typer.Option(help="gateway requests/s per client address (0: no limit)")
    ] = 100.0,
    rate_per_account: Annotated[
        float, typer.Option(help="gateway requests/s per account (0: no limit)")
    ] = 100.0,
    trust_forwarded: Annotated[
        bool, typer.Option("--trust-forwarded", help="client address from X-Forwarded-For")
    ] = False,
    metrics_public: Annotated[
        bool, typer.Option("--metrics-public", help="serve /metrics without an admin token")
    ] = False,
    gateway_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain: the gateway serves HTTPS")
    ] = None,
    gateway_key: Annotated[
        Path | None, typer.Option(help="PEM private key of --gateway-cert")
    ] = None,
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
        cors_origins=tuple(cors_origin or ()),
        rate_per_ip=rate_per_ip,
        rate_per_account=rate_per_account,
        trust_forwarded=trust_forwarded,
        metrics_public=metrics_public,
        gateway_cert=gateway_cert,
        gateway_key=gateway_key,
    )
    if (gateway_cert is None) != (gateway_key is None):
        fail("--gateway-cert and --gateway-key go together")
    configure_logging("server")
    try:
        run(MicroServer(options).serve())
    except (OSError, RuntimeError) as exc:
        fail(f"cannot start micro server: {exc}")
