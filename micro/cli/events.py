"""``micro publish|consume`` and ``micro events read|topics|retention``: durable events
through the server's ``events`` service."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    Output,
    connect,
    fail,
    parse_json,
    parse_pairs,
    parse_seconds,
    print_table,
    run,
    server_address,
)

if TYPE_CHECKING:
    from ..events import Event, Start
    from ..events.rpc import RpcEvents

events_app = typer.Typer(
    name="events",
    help="Durable event streams: history, topics and retention (see also publish, consume).",
    no_args_is_help=True,
)


@asynccontextmanager
async def _events() -> AsyncIterator[RpcEvents]:
    from ..errors import MicroError
    from ..events.rpc import RpcEvents

    address = server_address()
    async with connect() as client:
        events = RpcEvents(address, client=client)
        try:
            yield events
        except MicroError as err:
            if err.code == "unavailable" and "cannot connect" in err.detail:
                fail(f"cannot reach micro server at {address}: is `micro server` running?")
            raise
        finally:
            await events.close()


def parse_start(text: str) -> Start:
    """``first``, ``new``, a sequence number or an ISO 8601 time (local time unless it
    names a zone)."""
    if text in ("first", "new"):
        return text  # type: ignore[return-value]
    if text.isdigit():
        return int(text)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        fail(f"--from {text!r}: use first, new, a sequence number or an ISO 8601 time")


def event_json(event: Event) -> dict[str, Any]:
    """An event as printed: ``body`` is the decoded JSON, or the text under ``body_text``,
    or base64 under ``body_base64`` when it is neither."""
    out: dict[str, Any] = {
        "topic": event.topic,
        "sequence": event.sequence,
        "timestamp": event.timestamp,
        "time": datetime.fromtimestamp(event.timestamp).astimezone().isoformat(),
    }
    if event.key is not None:
        out["key"] = event.key
    if event.metadata:
        out["metadata"] = event.metadata
    if event.deliveries:
        out["deliveries"] = event.deliveries
    try:
        out["body"] = json.loads(event.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        try:
            out["body_text"] = event.body.decode()
        except UnicodeDecodeError:
            import base64

            out["body_base64"] = base64.b64encode(event.body).decode()
    return out


def _print_event(event: Event) -> None:
    typer.echo(json.dumps(event_json(event), ensure_ascii=False))
    sys.stdout.flush()


Key = Annotated[str | None, typer.Option("--key", "-k", help="ordering key")]
MessageId = Annotated[
    str | None, typer.Option("--id", help="message id: a repeat within 2 minutes is a no-op")
]
Delay = Annotated[
    str | None, typer.Option("--delay", help="deliver no earlier than this from now (5s, 1m)")
]
Metadata = Annotated[list[str], typer.Option("--metadata", "-m", help="key=value metadata")]
From = Annotated[
    str | None,
    typer.Option("--from", help="first, new, a sequence or an ISO 8601 time"),
]


def publish(
    topic: Annotated[str, typer.Argument(help="topic, e.g. orders")],
    body: Annotated[str, typer.Argument(help="the event as JSON")],
    key: Key = None,
    message_id: MessageId = None,
    delay: Delay = None,
    metadata: Metadata = [],  # noqa: B006 - typer reads the default, never mutates it
) -> None:
    """Append a JSON event to a topic; prints the acknowledgement once it is durable."""
    import time

    parse_json(body, "event")
    deliver_at = time.time() + parse_seconds(delay, "--delay") if delay is not None else None

    async def go() -> dict[str, Any]:
        async with _events() as events:
            ack = await events.publish(
                topic,
                body.encode(),
                metadata=parse_pairs(metadata),
                key=key,
                message_id=message_id,
                deliver_at=deliver_at,
            )
        return {"topic": ack.topic, "sequence": ack.sequence, "duplicate": ack.duplicate}

    typer.echo(json.dumps(run(go())))


def consume(
    topic: Annotated[str, typer.Argument(help="topic to consume")],
    group: Annotated[str, typer.Option("--group", "-g", help="consumer group")] = "cli",
    start: From = None,
    count: Annotated[int | None, typer.Option("--count", "-n", help="stop after N events")] = None,
    manual: Annotated[
        bool, typer.Option("--manual", help="ack each event after printing it")
    ] = False,
    wait: Annotated[
        float | None, typer.Option("--wait", help="stop after this many seconds without events")
    ] = None,
) -> None:
    """Print a group's events as JSON lines (a new group starts at --from, default new)."""
    if count is not None and count < 1:
        fail("--count must be at least 1")
    begin: Start = parse_start(start) if start is not None else "new"

    async def go() -> None:
        async with _events() as events:
            consumer = await events.consume(topic, group, start=begin, auto_ack=not manual)
            seen = 0
            try:
                while count is None or seen < count:
                    want = 1 if count is None else min(count - seen, 100)
                    batch = await consumer.fetch(want, wait)
                    if not batch:
                        return
                    for event in batch:
                        _print_event(event)
                        if manual:
                            await consumer.ack(event)
                    seen += len(batch)
            finally:
                await consumer.close()

    run(go())


@events_app.command("read")
def read(
    topic: Annotated[str, typer.Argument(help="topic to read")],
    start: From = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="most events to print")] = 100,
) -> None:
    """Print stored events of a topic as JSON lines (from the oldest unless --from)."""
    begin: Start = parse_start(start) if start is not None else "first"

    async def go() -> list[Event]:
        async with _events() as events:
            return await events.read(topic, start=begin, limit=limit)

    for event in run(go()):
        _print_event(event)


@events_app.command("topics")
def topics(output: Output = "table") -> None:
    """List topics with their stored range, size and retention."""

    async def go() -> list[list[Any]]:
        async with _events() as events:
            found = await events.topics()
        return [
            [
                t.name,
                t.first_sequence,
                t.last_sequence,
                t.count,
                t.bytes,
                t.retention.max_age,
                t.retention.max_events,
                t.retention.max_bytes,
            ]
            for t in found
        ]

    columns = ["topic", "first", "last", "count", "bytes", "max_age", "max_events", "max_bytes"]
    print_table(columns, run(go()), output)


@events_app.command("retention")
def retention(
    topic: Annotated[str, typer.Argument(help="topic")],
    max_age: Annotated[str | None, typer.Option(help="keep events this long (1h, 7d)")] = None,
    max_events: Annotated[int | None, typer.Option(help="keep this many events")] = None,
    max_bytes: Annotated[int | None, typer.Option(help="keep this many body bytes")] = None,
) -> None:
    """Set how long a topic keeps events (no limit given: keep everything)."""
    age = parse_seconds(max_age, "--max-age") if max_age is not None else None

    async def go() -> dict[str, Any]:
        async with _events() as events:
            info = await events.retention(
                topic, max_age=age, max_events=max_events, max_bytes=max_bytes
            )
        return {"topic": info.name, "count": info.count, "retention": info.retention}

    result = run(go())
    import msgspec

    typer.echo(json.dumps(msgspec.to_builtins(result)))


def register(app: typer.Typer) -> None:
    """Attach ``publish``, ``consume`` and the ``events`` group to the ``micro`` app."""
    app.command("publish")(publish)
    app.command("consume")(consume)
    app.add_typer(events_app, name="events")
