"""``micro services`` and ``micro describe``: what the registry knows."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import Output, connect, print_json, print_table, run


def services(output: Output = "table") -> None:
    """List registered services with their versions, nodes and endpoints."""

    async def go() -> None:
        async with connect() as client:
            assert client.view is not None
            found = await client.view.registry.list_services()
        rows = [
            (
                s.name,
                s.version,
                len(s.nodes),
                ", ".join(n.address for n in s.nodes),
                len(s.endpoints),
            )
            for s in found
        ]
        print_table(["name", "version", "nodes", "addresses", "endpoints"], rows, output)

    run(go())


def describe(
    service: Annotated[str, typer.Argument(help="service name")],
    output: Output = "json",
) -> None:
    """Show a service's versions, nodes and endpoints with their JSON Schemas."""
    import msgspec

    async def go() -> None:
        async with connect() as client:
            assert client.view is not None
            found = await client.view.registry.get_service(service)
        if output == "json":
            print_json(msgspec.to_builtins(found))
            return
        rows = [
            (s.version, ep.name, ep.stream, ",".join(f"{k}={v}" for k, v in ep.metadata.items()))
            for s in found
            for ep in s.endpoints
        ]
        print_table(["version", "endpoint", "stream", "metadata"], rows, output)

    run(go())
