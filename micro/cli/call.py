"""``micro call`` and ``micro stream``: call any endpoint with JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import connect, parse_json, parse_pairs, print_json, run

Metadata = Annotated[
    list[str], typer.Option("--metadata", "-m", help="key=value sent as call metadata")
]


def call(
    service: Annotated[str, typer.Argument(help="service name, e.g. helloworld")],
    endpoint: Annotated[str, typer.Argument(help="endpoint, e.g. Helloworld.Call")],
    request: Annotated[str, typer.Argument(help="request as JSON")] = "{}",
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 10.0,
    metadata: Metadata = [],  # noqa: B006 - typer reads the default, never mutates it
) -> None:
    """Call an endpoint with a JSON request and print the JSON response."""
    body = json.dumps(parse_json(request)).encode()
    print_json(
        json.loads(run(call_json(service, endpoint, body, timeout, parse_pairs(metadata) or None)))
    )


async def call_json(
    service: str, endpoint: str, body: bytes, timeout: float, metadata: dict[str, str] | None
) -> bytes:
    """One call with a JSON body through the server's registry; the JSON reply."""
    from ..transport.frames import Codec

    async with connect() as client:
        return await client.call_raw(
            service, endpoint, body, codec=Codec.JSON, timeout=timeout, metadata=metadata
        )


def stream(
    service: Annotated[str, typer.Argument(help="service name")],
    endpoint: Annotated[str, typer.Argument(help="a server-streaming endpoint")],
    request: Annotated[str, typer.Argument(help="request as JSON")] = "{}",
    metadata: Metadata = [],  # noqa: B006
) -> None:
    """Open a server stream and print each message as a line of JSON."""
    req = parse_json(request)

    async def go() -> None:
        async with connect() as client:
            async for message in client.stream(
                service, endpoint, req, metadata=parse_pairs(metadata) or None
            ):
                typer.echo(json.dumps(message, ensure_ascii=False, default=str))

    run(go())
