"""The events conformance suite against :class:`~micro.events.nats.NatsEvents` on a real
JetStream (``tests/cluster/conftest.py`` starts nats-server with ``sync_interval: always``).

JetStream enforces ack wait, nak delays and the de-duplication window with its own clock, so
the cases that move the fake clock past one of those run here again with small real
durations (``real`` fixture, :func:`time.time`); see :class:`TestNatsEvents`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable

import pytest

from micro.errors import MicroError
from micro.events.nats import NatsEvents
from micro.testing.conformance.clock import FakeClock
from micro.testing.conformance.events import (
    DEDUPE_WINDOW,
    MAX_BODY,
    EventsConformance,
    nothing,
    receive,
)
from tests.cluster._nats import NatsServer
from tests.cluster.conftest import nats_server  # noqa: F401 - the fixture


@pytest.fixture
def clock() -> FakeClock:
    """The clock the backend stamps events with."""
    return FakeClock()


def _isolated(server: NatsServer, **settings: object) -> NatsEvents:
    token = os.urandom(5).hex()
    return NatsEvents(
        [server.url],
        max_body=MAX_BODY,
        stream_prefix=f"T{token}",
        subject_prefix=f"test.{token}",
        **settings,  # type: ignore[arg-type]
    )


@pytest.fixture
async def events(nats_server: NatsServer, clock: FakeClock) -> AsyncIterator[NatsEvents]:
    """A NATS events backend on fresh streams (its own prefixes) of the session's server."""
    backend = _isolated(nats_server, clock=clock, dedupe_window=DEDUPE_WINDOW)
    try:
        yield backend
    finally:
        await backend.close()


REAL_WINDOW = 1.0
"""The de-duplication window of the ``real`` backend, in real seconds."""


@pytest.fixture
async def real(nats_server: NatsServer) -> AsyncIterator[NatsEvents]:
    """A NATS events backend on the real clock with a 1 s de-duplication window."""
    backend = _isolated(nats_server, clock=time.time, dedupe_window=REAL_WINDOW)
    try:
        yield backend
    finally:
        await backend.close()


async def _status(call: Awaitable[object]) -> tuple[int, str]:
    with pytest.raises(MicroError) as err:
        await call
    return err.value.status, err.value.detail


class TestNatsEvents(EventsConformance):
    """Every events conformance case on JetStream."""

    # JetStream runs ack wait, nak delay and the de-duplication window on its own clock: the
    # cases that move the fake clock past one of them run with small real durations instead.

    async def test_nack_with_delay(self, real: NatsEvents) -> None:  # type: ignore[override]
        await real.publish("t", b"x")
        consumer = await real.consume("t", "g", start="first", auto_ack=False)
        await consumer.nack(await receive(consumer), delay=0.6)
        assert await nothing(consumer, 0.3)
        assert (await receive(consumer)).deliveries == 2
        await consumer.close()

    async def test_redelivery_after_ack_wait(  # type: ignore[override]
        self, real: NatsEvents
    ) -> None:
        await real.publish("t", b"x")
        consumer = await real.consume("t", "g", start="first", auto_ack=False, ack_wait=1)
        late = await receive(consumer)
        assert await nothing(consumer, 0.5)
        again = await receive(consumer)
        assert (again.sequence, again.deliveries) == (1, 2)
        assert (await _status(consumer.ack(late)))[0] == 404
        await consumer.ack(again)
        assert await nothing(consumer, 1.5)
        await consumer.close()

    async def test_key_waits_behind_an_earlier_event(  # type: ignore[override]
        self, real: NatsEvents
    ) -> None:
        await real.publish("t", b"k1", key="k")
        await real.publish("t", b"k2", key="k")
        await real.publish("t", b"free")
        consumer = await real.consume("t", "g", start="first", auto_ack=False)
        first, free = await receive(consumer), await receive(consumer)
        assert (first.sequence, free.sequence) == (1, 3)
        await consumer.nack(first, delay=0.6)
        await consumer.ack(free)
        assert await nothing(consumer, 0.3)
        again = await receive(consumer)
        assert (again.sequence, again.deliveries) == (1, 2)
        assert await nothing(consumer)
        await consumer.ack(again)
        assert (await receive(consumer)).sequence == 2
        await consumer.close()

    async def test_dedupe_within_the_window(  # type: ignore[override]
        self, real: NatsEvents
    ) -> None:
        first = await real.publish("t", b"a", message_id="m1")
        again = await real.publish("t", b"b", message_id="m1")
        other = await real.publish("u", b"c", message_id="m1")
        assert (first.sequence, first.duplicate) == (1, False)
        assert (again.sequence, again.duplicate) == (1, True)
        assert (other.sequence, other.duplicate) == (1, False)
        concurrent = await asyncio.gather(
            *(real.publish("t", b"c", message_id="m2") for _ in range(5))
        )
        assert {a.sequence for a in concurrent} == {2}
        assert sum(not a.duplicate for a in concurrent) == 1
        assert (await real.publish("t", b"d", message_id="m1")).duplicate
        await asyncio.sleep(REAL_WINDOW + 0.5)
        late = await real.publish("t", b"e", message_id="m1")
        assert (late.sequence, late.duplicate) == (3, False)
        assert [e.body for e in await real.read("t")] == [b"a", b"c", b"e"]

    async def test_delayed_delivery(self, real: NatsEvents) -> None:  # type: ignore[override]
        consumer = await real.consume("t", "g", start="first")
        await real.publish("t", b"later", deliver_at=time.time() + 0.6)
        await real.publish("t", b"now")
        assert (await receive(consumer)).body == b"now"
        assert await nothing(consumer, 0.3)
        event = await receive(consumer)
        assert (event.sequence, event.body) == (1, b"later")
        await consumer.close()
