"""``micro publish``, ``micro consume`` and ``micro events ...`` against a real events
service (the commands run in a thread: each starts an event loop of its own)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from micro import Service
from micro.cli.events import register
from micro.events.handler import EventsHandler
from micro.events.memory import MemoryEvents
from micro.registry.memory import MemoryRegistry

Invoke = Callable[..., Coroutine[Any, Any, Result]]


@pytest.fixture
async def backend() -> AsyncIterator[MemoryEvents]:
    events = MemoryEvents(poll_interval=0.01)
    yield events
    await events.close()


@pytest.fixture
async def cli(backend: MemoryEvents) -> AsyncIterator[Invoke]:
    svc = Service("events", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(EventsHandler(backend), name="Events")
    await svc.start()
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    async def invoke(*args: str) -> Result:
        return await asyncio.to_thread(
            runner.invoke, app, list(args), env={"MICRO_SERVER": svc.address}
        )

    try:
        yield invoke
    finally:
        await svc.stop(grace=1.0)


def _lines(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


async def test_publish_then_read(cli: Invoke, backend: MemoryEvents) -> None:
    (ack,) = _lines(await cli("publish", "orders", '{"id": 1}', "--key", "c1", "-m", "a=b"))
    assert ack == {"topic": "orders", "sequence": 1, "duplicate": False}
    (dup,) = _lines(await cli("publish", "orders", '{"id": 1}', "--id", "x"))
    (again,) = _lines(await cli("publish", "orders", '{"id": 1}', "--id", "x"))
    assert (dup["sequence"], again["sequence"], again["duplicate"]) == (2, 2, True)
    (event, _) = _lines(await cli("events", "read", "orders"))
    assert (event["sequence"], event["body"], event["key"], event["metadata"]) == (
        1, {"id": 1}, "c1", {"a": "b"}
    )
    (second,) = _lines(await cli("events", "read", "orders", "--from", "2", "--limit", "5"))
    assert second["sequence"] == 2


async def test_publish_with_delay(cli: Invoke, backend: MemoryEvents) -> None:
    _lines(await cli("publish", "t", '"later"', "--delay", "1h"))
    consumer = await backend.consume("t", "g", start="first")
    assert await consumer.fetch(1, timeout=0.1) == []
    await consumer.close()


async def test_consume_prints_json_lines(cli: Invoke, backend: MemoryEvents) -> None:
    for i in range(3):
        await backend.publish("t", json.dumps({"n": i}).encode())
    await backend.publish("t", b"\xff\xfe")
    lines = _lines(await cli("consume", "t", "--from", "first", "--count", "2", "--manual"))
    assert [line["body"] for line in lines] == [{"n": 0}, {"n": 1}]
    rest = _lines(await cli("consume", "t", "--count", "5", "--wait", "0.3"))
    assert [line["sequence"] for line in rest] == [3, 4]
    assert rest[1]["body_base64"] == "//4="


async def test_consume_from_a_time(cli: Invoke, backend: MemoryEvents) -> None:
    await backend.publish("t", b'"old"')
    await asyncio.sleep(0.01)
    since = datetime.now().astimezone().isoformat()
    await backend.publish("t", b'"new"')
    lines = _lines(await cli("consume", "t", "-g", "timed", "--from", since, "-n", "1"))
    assert lines[0]["body"] == "new"


async def test_topics_and_retention(cli: Invoke, backend: MemoryEvents) -> None:
    await backend.publish("t", b"1")
    (info,) = _lines(await cli("events", "retention", "t", "--max-age", "2h"))
    assert info["retention"] == {"max_age": 7200.0}
    (row,) = json.loads((await cli("events", "topics", "-o", "json")).stdout)
    assert (row["topic"], row["count"], row["max_age"]) == ("t", 1, 7200.0)
    table = await cli("events", "topics")
    assert table.exit_code == 0 and "t" in table.stdout


async def test_bad_input_is_a_clear_error(cli: Invoke) -> None:
    cases = [
        (("publish", "t", "{not json"), "not valid JSON"),
        (("publish", "t", "1", "--delay", "soon"), "not a duration"),
        (("publish", "bad topic", "1"), "topic"),
        (("consume", "t", "--from", "yesterday"), "--from"),
        (("consume", "t", "--count", "0"), "--count"),
        (("events", "read", "missing"), "no topic"),
    ]
    for args, message in cases:
        result = await cli(*args)
        assert result.exit_code == 1, args
        assert message in result.stderr, (args, result.stderr)
