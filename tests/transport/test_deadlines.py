"""Deadlines, CANCEL, and what a handler's own calls inherit from the call it serves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from transport_support import (
    SERVICE,
    WAIT,
    Empty,
    Front,
    Greeting,
    Hello,
    Probe,
    RawFactory,
    Seen,
    Sleep,
    error_of,
    request,
    within,
)

from micro import Client, Context, MicroError, Service
from micro.context import _current
from micro.registry.memory import MemoryRegistry
from micro.transport.frames import Frame, Kind


@pytest.fixture
async def front(registry: MemoryRegistry, service: Service) -> AsyncIterator[Service]:
    """A second service whose handlers call ``echo`` while serving a call."""
    svc = Service("front", registry=registry, address="127.0.0.1:0")
    svc.handler(Front(svc.client))
    await svc.start()
    yield svc
    await svc.stop(grace=1.0)


async def test_handler_sees_the_callers_deadline(client: Client) -> None:
    seen = await client.call(SERVICE, "Echo.Inspect", Empty(), timeout=3.0, response_type=Seen)
    assert seen.remaining is not None
    assert 2.0 < seen.remaining <= 3.0


async def test_no_timeout_on_the_wire_means_no_deadline(raw: RawFactory) -> None:
    conn = await raw()
    await conn.send_frames(request(1, "Inspect", Empty()))  # timeout field left at 0
    frame = await conn.read_frame()
    assert msgspec.msgpack.decode(frame.body, type=Seen).remaining is None


async def test_slow_handler_with_short_timeout_gets_timeout_and_is_cancelled(
    client: Client, probe: Probe
) -> None:
    started = time.monotonic()
    with pytest.raises(MicroError) as info:
        await client.call(SERVICE, "Echo.Slow", Sleep(30), timeout=0.2)
    assert (info.value.code, info.value.status) == ("timeout", 504)
    assert time.monotonic() - started < WAIT
    await probe.wait_exited("slow")
    assert "slow" in probe.cancelled


async def test_server_enforces_the_deadline_itself(raw: RawFactory, probe: Probe) -> None:
    """A client that never cancels still gets ERROR timeout once its deadline passes."""
    conn = await raw()
    await conn.send_frames(request(8, "Slow", Sleep(30), timeout=100))
    frame = await conn.read_frame()
    err = error_of(frame)
    assert (frame.id, err.code, err.status) == (8, "timeout", 504)
    await probe.wait_exited("slow")
    assert "slow" in probe.cancelled


async def test_cancelling_the_calling_task_cancels_the_handler(
    client: Client, probe: Probe
) -> None:
    call = asyncio.create_task(client.call(SERVICE, "Echo.Slow", Sleep(30)))
    await probe.wait_started("slow")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await probe.wait_exited("slow")
    assert "slow" in probe.cancelled
    # The connection is intact and reusable.
    assert await client.call(SERVICE, "Echo.Call", Hello("again"), response_type=Greeting)


async def test_cancel_frame_abandons_the_call_without_a_reply(
    raw: RawFactory, probe: Probe
) -> None:
    conn = await raw()
    await conn.send_frames(request(5, "Slow", Sleep(30)))
    await probe.wait_started("slow")
    await conn.send_frames(Frame(Kind.CANCEL, 5), Frame(Kind.PING, 6))
    await probe.wait_exited("slow")
    assert "slow" in probe.cancelled
    frame = await conn.read_frame()
    assert (frame.kind, frame.id) == (Kind.PONG, 6)  # nothing was sent for call 5


async def test_cancel_of_an_unknown_or_finished_call_is_ignored(raw: RawFactory) -> None:
    conn = await raw()
    await conn.send_frames(request(1, "Call", Hello("x")))
    assert (await conn.read_frame()).kind == Kind.RESPONSE
    await conn.send_frames(Frame(Kind.CANCEL, 1), Frame(Kind.CANCEL, 12345), Frame(Kind.PING, 2))
    assert ((frame := await conn.read_frame()).kind, frame.id) == (Kind.PONG, 2)


async def test_nested_call_inherits_deadline_and_metadata(client: Client, front: Service) -> None:
    seen = await client.call(
        "front", "Front.Relay", Empty(), timeout=2.0,
        metadata={"trace-id": "t-1", "namespace": "acme"}, response_type=Seen,
    )
    seen.metadata.pop("traceparent", None)  # the tracing middleware adds the span's own
    assert seen.metadata == {"trace-id": "t-1", "namespace": "acme"}
    assert seen.remaining is not None
    assert 1.0 < seen.remaining <= 2.0  # bounded by the edge's 2 s, not the client's 5 s


async def test_nested_call_times_out_with_the_callers_deadline(
    client: Client, front: Service, probe: Probe
) -> None:
    started = time.monotonic()
    with pytest.raises(MicroError) as info:
        await client.call("front", "Front.RelaySlow", Sleep(30), timeout=0.3)
    assert info.value.code == "timeout"
    assert time.monotonic() - started < WAIT
    await probe.wait_exited("slow")  # the innermost handler was cancelled too
    assert "slow" in probe.cancelled


def test_budget_takes_the_smaller_deadline_and_merges_metadata() -> None:
    client = Client(timeout=10.0)
    ctx = Context({"trace-id": "t-1", "user": "ann"}, time.monotonic() + 2.0)
    token = _current.set(ctx)
    try:
        wait, metadata = client._budget(None, {"user": "bob"}, "svc", "Svc.Call")
        assert 1.5 < wait <= 2.0
        assert metadata == {"trace-id": "t-1", "user": "bob"}  # explicit wins over inherited
        wait, metadata = client._budget(0.5, None, "svc", "Svc.Call")
        assert wait == 0.5
        assert metadata == {"trace-id": "t-1", "user": "ann"}
    finally:
        _current.reset(token)
    assert client._budget(None, None, "svc", "Svc.Call") == (10.0, None)


def test_budget_refuses_a_call_whose_deadline_already_passed() -> None:
    token = _current.set(Context({}, time.monotonic() - 0.1))
    try:
        with pytest.raises(MicroError) as info:
            Client()._budget(None, None, "svc", "Svc.Call")
        assert info.value.code == "timeout"
    finally:
        _current.reset(token)


async def test_handler_runs_with_its_context_as_current(client: Client, probe: Probe) -> None:
    await client.call(SERVICE, "Echo.Inspect", Empty(), metadata={"k": "v"})
    (ctx,) = probe.contexts
    assert ctx is not None
    assert (ctx.service, ctx.endpoint, ctx.metadata) == (SERVICE, "Echo.Inspect", {"k": "v"})
    assert _current.get() is None  # and it did not leak into the caller


async def test_a_cancelled_call_does_not_disturb_others_in_flight(
    client: Client, probe: Probe
) -> None:
    doomed = asyncio.create_task(client.call(SERVICE, "Echo.Slow", Sleep(30, "doomed")))
    kept = asyncio.create_task(
        client.call(SERVICE, "Echo.Slow", Sleep(0.2, "kept"), response_type=Greeting)
    )
    await probe.wait_started("doomed")
    await probe.wait_started("kept")
    doomed.cancel()
    assert await within(kept) == Greeting("slept 0.2")
    assert probe.cancelled == {"doomed"}


async def test_calls_cancelled_by_a_draining_server_are_answered(
    raw: RawFactory, service: Service, probe: Probe
) -> None:
    conn = await raw()
    await conn.send_frames(request(3, "Slow", Sleep(30)))
    await probe.wait_started("slow")
    assert service.server is not None
    await within(service.server.drain(grace=0.1))
    frame = await conn.read_frame()  # an answer, before the connection closes
    assert (frame.id, error_of(frame).status) == (3, 500)
    assert "slow" in probe.cancelled
