"""``micro broker publish|subscribe``: ephemeral messages through the server's broker."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import connect, fail, parse_json, parse_pairs, run, server_address

if TYPE_CHECKING:
    from ..broker import Message
    from ..broker.rpc import RpcBroker

broker_app = typer.Typer(
    name="broker",
    help="Publish and subscribe to ephemeral messages (at most once, nothing stored).",
    no_args_is_help=True,
)


@asynccontextmanager
async def _broker() -> AsyncIterator[RpcBroker]:
    from ..broker.rpc import RpcBroker
    from ..errors import MicroError

    address = server_address()
    async with connect() as client:
        broker = RpcBroker(address, client=client)
        try:
            yield broker
        except MicroError as err:
            if err.code == "unavailable" and "cannot connect" in err.detail:
                fail(f"cannot reach micro server at {address}: is `micro server` running?")
            raise
        finally:
            await broker.close()


def message_json(message: Message) -> dict[str, Any]:
    """A message as printed by ``micro broker subscribe``: the body decoded from msgpack,
    or, when it is not msgpack, base64 under ``body_base64``."""
    import msgspec

    out: dict[str, Any] = {
        "id": message.id,
        "topic": message.topic,
        "timestamp": message.timestamp,
        "metadata": message.metadata,
    }
    try:
        out["body"] = msgspec.msgpack.decode(message.body)
    except msgspec.DecodeError:
        out["body_base64"] = base64.b64encode(message.body).decode("ascii")
    return out


@broker_app.command("publish")
def publish(
    topic: Annotated[str, typer.Argument(help="topic, e.g. orders.created")],
    body: Annotated[str, typer.Argument(help="message as JSON (sent msgpack-encoded)")],
    metadata: Annotated[
        list[str], typer.Option("--metadata", "-m", help="key=value carried with the message")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
) -> None:
    """Publish one message; print its id."""
    from ..broker.subscriber import encode_message

    payload = encode_message(parse_json(body, "message"))
    meta = parse_pairs(metadata)

    async def go() -> str:
        async with _broker() as broker:
            return await broker.publish(topic, payload, meta)

    typer.echo(run(go()))


@broker_app.command("subscribe")
def subscribe(
    topic: Annotated[str, typer.Argument(help="topic to listen to")],
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="queue group: share messages with it")
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", "-n", help="stop after this many messages")
    ] = None,
) -> None:
    """Print each message as a line of JSON, until Ctrl-C or ``--count`` messages."""
    if count is not None and count < 1:
        fail("--count must be 1 or more")

    async def go() -> int:
        received = 0
        async with _broker() as broker:
            sub = await broker.subscribe(topic, group)
            try:
                async for message in sub:
                    typer.echo(json.dumps(message_json(message), ensure_ascii=False, default=str))
                    received += 1
                    if count is not None and received >= count:
                        break
            finally:
                if sub.dropped:
                    typer.echo(f"{sub.dropped} message(s) dropped: reading too slowly", err=True)
                await sub.close()
        return received

    run(go())


def register(app: typer.Typer) -> None:
    """Attach ``micro broker ...`` to the ``micro`` application."""
    app.add_typer(broker_app, name="broker")


__all__ = ["broker_app", "message_json", "publish", "register", "subscribe"]
