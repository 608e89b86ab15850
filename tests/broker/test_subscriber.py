"""Typed subscribers: how a service's ``@service.subscribe`` handlers are declared and run."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import msgspec
import pytest

from micro import Context, MicroError
from micro.broker import Message
from micro.broker.memory import MemoryBroker
from micro.broker.rpc import RpcBroker
from micro.broker.subscriber import (
    Subscriber,
    encode_message,
    publish_message,
    run_subscriber,
    start_subscriber,
)
from micro.context import current_context
from micro.testing import eventually

from .broker_support import host


class Order(msgspec.Struct):
    id: int
    item: str


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_typed_handler_gets_decoded_messages_and_a_context() -> None:
    broker = MemoryBroker()
    seen: list[tuple[Order, dict[str, str], str, bool]] = []

    async def on_order(ctx: Context, order: Order) -> None:
        seen.append((order, ctx.metadata, ctx.endpoint, current_context() is ctx))

    sub = Subscriber.of("orders.created", on_order)
    assert (sub.topic, sub.group, sub.type, sub.takes_context) == (
        "orders.created",
        None,
        Order,
        True,
    )
    task = asyncio.ensure_future(run_subscriber(broker, sub))
    await eventually(lambda: broker.subscriber_count() == 1)
    await publish_message(broker, "orders.created", Order(1, "tea"), {"trace": "t1"})
    await eventually(lambda: len(seen) == 1)
    assert seen == [(Order(1, "tea"), {"trace": "t1"}, "orders.created", True)]
    assert current_context() is None  # not leaked out of the handler
    await stop(task)
    assert broker.subscriber_count() == 0  # cancelling the task frees the subscription


async def test_handlers_without_context_and_with_raw_types() -> None:
    broker = MemoryBroker()
    got: list[Any] = []

    async def plain(order: Order) -> None:
        got.append(order)

    async def raw(body: bytes) -> None:
        got.append(body)

    async def whole(ctx: Context, message: Message) -> None:
        got.append(message.metadata)

    subs = [Subscriber.of("t", f) for f in (plain, raw, whole)]
    assert [s.takes_context for s in subs] == [False, False, True]
    tasks = [await start_subscriber(broker, s) for s in subs]
    body = encode_message({"id": 2, "item": "pen"})
    await broker.publish("t", body, {"k": "v"})  # live as soon as start_subscriber returned
    await eventually(lambda: len(got) == 3)
    assert sorted(map(repr, got)) == sorted(map(repr, [Order(2, "pen"), body, {"k": "v"}]))
    for task in tasks:
        await stop(task)


async def test_bad_messages_and_failing_handlers_are_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker()
    handled: list[int] = []

    async def on_order(order: Order) -> None:
        if order.item == "boom":
            raise RuntimeError("handler blew up")
        handled.append(order.id)

    task = await start_subscriber(broker, Subscriber.of("orders", on_order))
    with caplog.at_level(logging.WARNING, logger="micro.broker"):
        garbage = await broker.publish("orders", b"\xc1 not msgpack")
        wrong = await broker.publish("orders", encode_message({"id": "x", "item": 1}))
        boom = await broker.publish("orders", encode_message(Order(3, "boom")))
        await broker.publish("orders", encode_message(Order(4, "ok")))
        await eventually(lambda: handled == [4])
    await stop(task)
    text = caplog.text
    for message_id in (garbage, wrong, boom):
        assert message_id in text
    assert text.count("orders") >= 3 and "handler blew up" in text


async def test_a_queue_group_of_subscribers_shares_the_work() -> None:
    broker = MemoryBroker()
    counts = {"a": 0, "b": 0}

    def worker(name: str) -> Any:
        async def handle(order: Order) -> None:
            counts[name] += 1

        return handle

    tasks = [
        await start_subscriber(broker, Subscriber.of("jobs", worker(n), group="workers"))
        for n in counts
    ]
    for i in range(10):
        await publish_message(broker, "jobs", Order(i, "job"))
        await asyncio.sleep(0)
    await eventually(lambda: sum(counts.values()) == 10)
    assert counts == {"a": 5, "b": 5}
    for task in tasks:
        await stop(task)


def test_declaration_errors_are_caught_early() -> None:
    async def ok(order: Order) -> None: ...

    def sync(order: Order) -> None: ...

    async def too_many(ctx: Context, order: Order, extra: int) -> None: ...

    async def untyped(order):  # type: ignore[no-untyped-def]
        ...

    async def undecodable(ctx: Context, value: asyncio.Lock) -> None: ...

    with pytest.raises(ValueError, match="topic"):
        Subscriber.of("bad topic", ok)
    with pytest.raises(ValueError, match="group"):
        Subscriber.of("t", ok, group="")
    cases: list[tuple[Any, str]] = [
        (sync, "async def"),
        (too_many, "must take"),
        (untyped, "type hint"),
        (undecodable, "cannot decode"),
    ]
    for func, words in cases:
        with pytest.raises(TypeError, match=words):
            Subscriber.of("t", func)


async def test_an_invalid_registration_fails_the_run() -> None:
    async def ok(order: Order) -> None: ...

    with pytest.raises(MicroError) as err:
        await run_subscriber(MemoryBroker(), Subscriber("bad topic", None, ok, Order, False))
    assert err.value.code == "bad_request"


async def test_the_subscriber_comes_back_after_the_broker_service_restarts() -> None:
    got: list[int] = []

    async def on_order(order: Order) -> None:
        got.append(order.id)

    first = await host(MemoryBroker())
    address = first.address
    client = RpcBroker(address)
    task = await start_subscriber(client, Subscriber.of("orders", on_order))
    second = None
    try:
        await client.publish("orders", encode_message(Order(1, "before")))
        await eventually(lambda: got == [1])
        await first.backing.close()
        await first.service.stop(grace=0.5)
        second = await host(MemoryBroker(), address)  # same port, fresh broker
        await eventually(lambda: second.backing.subscriber_count() == 1, timeout=15)
        await client.publish("orders", encode_message(Order(2, "after")))
        await eventually(lambda: got == [1, 2])
    finally:
        await stop(task)
        await client.close()
        if second is not None:
            await second.backing.close()
            await second.service.stop(grace=0.5)
        await first.service.stop(grace=0.5)


async def test_a_subscriber_started_while_the_broker_is_down_subscribes_when_it_comes_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on (yet)
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    got: list[int] = []

    async def on_order(order: Order) -> None:
        got.append(order.id)

    client = RpcBroker(address)
    with caplog.at_level(logging.WARNING, logger="micro.broker"):
        task = await start_subscriber(client, Subscriber.of("orders", on_order))
    assert "cannot subscribe yet" in caplog.text and not task.done()
    hosted = await host(MemoryBroker(), address)
    try:
        await eventually(lambda: hosted.backing.subscriber_count() == 1, timeout=15)
        await client.publish("orders", encode_message(Order(7, "late")))
        await eventually(lambda: got == [7])
    finally:
        await stop(task)
        await client.close()
        await hosted.backing.close()
        await hosted.service.stop(grace=0.5)


async def test_a_subscriber_that_falls_behind_says_so(caplog: pytest.LogCaptureFixture) -> None:
    broker = MemoryBroker(buffer=2)
    release = asyncio.Event()
    handled: list[int] = []

    async def slow(order: Order) -> None:
        await release.wait()
        handled.append(order.id)

    task = await start_subscriber(broker, Subscriber.of("busy", slow))
    with caplog.at_level(logging.WARNING, logger="micro.broker"):
        await publish_message(broker, "busy", Order(0, "first"))
        await asyncio.sleep(0.01)  # the handler holds message 0
        for i in range(1, 10):
            await publish_message(broker, "busy", Order(i, "more"))
        release.set()
        await eventually(lambda: handled == [0, 1, 2])
    await stop(task)
    assert "subscriber of busy is too slow: 7 message(s) dropped" in caplog.text
