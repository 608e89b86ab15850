"""``micro service --name NAME --endpoint URL``: register a plain HTTP application as a
service (the sidecar, :mod:`micro.sidecar`; see docs/proxy.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import fail

__all__ = ["register", "service"]


def service(
    name: Annotated[str, typer.Option("--name", help="the service name to register")],
    endpoint: Annotated[str, typer.Option("--endpoint", help="base URL of the HTTP application")],
    openapi: Annotated[
        str,
        typer.Option("--openapi", help="path of its OpenAPI document ('' for none)"),
    ] = "/openapi.json",
    address: Annotated[
        str | None, typer.Option("--address", help="RPC listen address (default: a free port)")
    ] = None,
) -> None:
    """Serve an HTTP application (any language) as service NAME: its OpenAPI operations
    become endpoints (else one endpoint NAME.Call)."""
    from urllib.parse import urlparse

    from ..service.process import configure_logging
    from ..sidecar import Sidecar

    url = urlparse(endpoint)
    if url.scheme not in ("http", "https") or not url.netloc:
        fail(f"--endpoint {endpoint!r} is not an http(s) URL")
    if openapi and not openapi.startswith("/"):
        fail(f"--openapi {openapi!r} must be a path starting with /")
    try:
        svc = Sidecar(name, endpoint, openapi=openapi or None, address=address)
    except ValueError as exc:
        fail(str(exc))
    configure_logging(name)
    try:
        svc.run()
    except (OSError, RuntimeError) as exc:
        fail(f"cannot start {name}: {exc}")


def register(app: typer.Typer) -> None:
    """Add ``micro service``."""
    app.command("service")(service)
