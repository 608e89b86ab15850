"""The broker over RPC: the server-side subscription lives exactly as long as the stream,
drops on either side are counted, and a broken connection is reported."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncGenerator, AsyncIterator

import msgspec
import pytest

from micro import Context, MicroError, Service
from micro.broker import Broker
from micro.broker.handler import BrokerHandler
from micro.broker.memory import MemoryBroker
from micro.broker.messages import SubscribeEvent, SubscribeRequest
from micro.broker.rpc import RpcBroker
from micro.context import _current
from micro.registry.memory import MemoryRegistry
from micro.testing import eventually

from .broker_support import Hosted


async def test_rpc_broker_satisfies_the_protocol(hosted: Hosted) -> None:
    client = RpcBroker(hosted.address)
    assert isinstance(client, Broker)
    with pytest.raises(ValueError):
        RpcBroker(hosted.address, buffer=0)
    with pytest.raises(MicroError) as err:
        await client.publish("t", "text")  # type: ignore[arg-type]
    assert err.value.status == 400
    await client.close()
    await client.close()  # idempotent


async def test_the_handler_reports_server_side_drops_with_the_next_message() -> None:
    backing = MemoryBroker(buffer=2)
    handler = BrokerHandler(backing)
    stream = handler.subscribe(Context(), SubscribeRequest("t"))
    assert isinstance(stream, AsyncGenerator)
    assert await anext(stream) == SubscribeEvent()  # live
    assert backing.subscriber_count() == 1
    for i in range(10):
        await backing.publish("t", bytes([i]))
    first: SubscribeEvent = await anext(stream)
    assert first.message is not None and (first.message.body, first.dropped) == (b"\x00", 8)
    await stream.aclose()
    assert backing.subscriber_count() == 0


async def test_drops_on_the_server_and_locally_add_up(hosted: Hosted) -> None:
    client = RpcBroker(hosted.address, buffer=3)
    try:
        sub = await client.subscribe("t")
        # published in one go on the server: the server-side buffer (4) overflows at once
        for i in range(100):
            await hosted.backing.publish("t", bytes([i]))
        await eventually(lambda: sub.pending + sub.dropped == 100, timeout=5)
        assert sub.pending == 3 and sub.dropped == 97
        assert [(await sub.__anext__()).body for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]
    finally:
        await client.close()
    await eventually(lambda: hosted.backing.subscriber_count() == 0, timeout=5)


async def test_a_dropped_connection_frees_the_server_side_subscription(hosted: Hosted) -> None:
    client = RpcBroker(hosted.address)
    try:
        sub = await client.subscribe("t", "g")
        assert hosted.backing.subscriber_count() == 1
        for conn in list(client._client.pool.conns.values()):
            assert conn.transport is not None
            conn.transport.abort()  # no CANCEL, no goodbye: the socket just goes
        await eventually(lambda: hosted.backing.subscriber_count() == 0, timeout=5)
        with pytest.raises(MicroError) as err:  # the break is reported once ...
            await asyncio.wait_for(sub.__anext__(), 5)
        assert err.value.code == "unavailable"
        with pytest.raises(StopAsyncIteration):  # ... then the subscription is over
            await sub.__anext__()
    finally:
        await client.close()


async def test_a_killed_subscriber_process_frees_its_subscription(hosted: Hosted) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio
        from micro.broker.rpc import RpcBroker

        async def main():
            sub = await RpcBroker({hosted.address!r}).subscribe("t", "workers")
            print("subscribed", flush=True)
            async for _ in sub:
                pass

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"subscribed"
        assert hosted.backing.subscriber_count("t") == 1
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        await eventually(lambda: hosted.backing.subscriber_count() == 0, timeout=5)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_subscription_outlives_the_deadline_of_the_call_that_opened_it(
    hosted: Hosted,
) -> None:
    client = RpcBroker(hosted.address)
    token = _current.set(Context.with_timeout(0.05, {"trace": "abc"}))
    try:
        sub = await client.subscribe("t")
    finally:
        _current.reset(token)
    try:
        await asyncio.sleep(0.2)  # well past that deadline
        await client.publish("t", b"later")
        assert (await asyncio.wait_for(sub.__anext__(), 5)).body == b"later"
    finally:
        await client.close()


async def test_a_stopped_server_ends_subscriptions_with_an_error(hosted: Hosted) -> None:
    client = RpcBroker(hosted.address)
    try:
        sub = await client.subscribe("t")
        await hosted.service.stop(grace=0.1)
        with pytest.raises(MicroError):
            await asyncio.wait_for(sub.__anext__(), 5)
        with pytest.raises(MicroError) as err:
            await client.subscribe("t")
        assert err.value.code == "unavailable"
    finally:
        await client.close()


async def test_a_server_side_close_ends_the_subscription_cleanly(hosted: Hosted) -> None:
    client = RpcBroker(hosted.address)
    try:
        sub = await client.subscribe("t")
        await hosted.backing.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(sub.__anext__(), 5)
    finally:
        await client.close()


class _Odd(msgspec.Struct):
    message: int | None = None


class _NotABroker:
    """Answers ``Broker.Subscribe`` with something that is not a message."""

    async def subscribe(self, ctx: Context, req: SubscribeRequest) -> AsyncIterator[_Odd]:
        yield _Odd()
        yield _Odd(5)
        await asyncio.sleep(30)


async def test_a_reply_that_is_not_a_message_is_reported() -> None:
    svc = Service("broker", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(_NotABroker(), name="Broker")
    await svc.start()
    client = RpcBroker(svc.address)
    try:
        sub = await client.subscribe("t")
        with pytest.raises(MicroError) as err:
            await asyncio.wait_for(sub.__anext__(), 5)
        assert err.value.code == "bad_request" and "SubscribeEvent" in err.value.detail
        with pytest.raises(StopAsyncIteration):
            await sub.__anext__()
    finally:
        await client.close()
        await svc.stop(grace=0.5)
