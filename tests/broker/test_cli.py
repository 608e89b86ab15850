"""``micro broker publish|subscribe`` against an in-process broker service."""

from __future__ import annotations

import asyncio
import json

import typer
from typer.testing import CliRunner, Result

from micro.broker.subscriber import encode_message
from micro.cli.broker import register
from micro.testing import eventually

from .broker_support import Hosted


def app() -> typer.Typer:
    cli = typer.Typer()
    cli.command("noop")(lambda: None)  # a second command keeps `broker` a subcommand
    register(cli)
    return cli


async def invoke(address: str, *args: str) -> Result:
    """Run the CLI in a thread (it runs its own event loop) against ``address``."""
    return await asyncio.to_thread(
        CliRunner().invoke, app(), ["broker", *args], env={"MICRO_SERVER": address}
    )


async def test_publish_sends_msgpack_of_the_json_with_metadata(hosted: Hosted) -> None:
    sub = await hosted.backing.subscribe("orders.created")
    result = await invoke(
        hosted.address, "publish", "orders.created", '{"id": 1, "item": "tea"}', "-m", "k=v"
    )
    assert result.exit_code == 0, result.output
    message = await asyncio.wait_for(sub.__anext__(), 5)
    assert message.id == result.output.strip()
    assert (message.body, message.metadata) == (
        encode_message({"id": 1, "item": "tea"}),
        {"k": "v"},
    )


async def test_subscribe_prints_json_lines_and_stops_after_count(hosted: Hosted) -> None:
    run = asyncio.ensure_future(invoke(hosted.address, "subscribe", "t", "--group", "g", "-n", "2"))
    await eventually(lambda: hosted.backing.subscriber_count("t") == 1, timeout=20)
    await hosted.backing.publish("t", encode_message({"n": 1}), {"trace": "x"})
    await hosted.backing.publish("t", b"\xc1raw")
    result = await asyncio.wait_for(run, 20)
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.output.splitlines())
    assert (first["topic"], first["body"], first["metadata"]) == ("t", {"n": 1}, {"trace": "x"})
    assert second["body_base64"] == "wXJhdw=="
    await eventually(lambda: hosted.backing.subscriber_count() == 0, timeout=5)


async def test_bad_input_fails_with_a_clear_message(hosted: Hosted) -> None:
    cases = [
        (("publish", "t", "{not json"), "not valid JSON"),
        (("publish", "bad topic", "{}"), "topic"),
        (("publish", "t", "{}", "-m", "novalue"), "KEY=VALUE"),
        (("subscribe", "t", "-n", "0"), "--count"),
        (("subscribe", "a..b"), "topic"),
    ]
    for args, words in cases:
        result = await invoke(hosted.address, *args)
        assert result.exit_code != 0 and words in result.output, (args, result.output)


async def test_an_unreachable_server_is_named() -> None:
    result = await invoke("127.0.0.1:9", "publish", "t", "{}")
    assert result.exit_code == 1
    assert "cannot reach micro server at 127.0.0.1:9" in result.output
