"""A service reaches every block through itself: store, config, broker, events."""

from __future__ import annotations

import asyncio

import msgspec

from micro import Context, Service
from micro.broker.subscriber import publish_message
from micro.testing import eventually, serve


class Note(msgspec.Struct):
    id: str
    text: str


class Saved(msgspec.Struct):
    etag: str
    greeting: str


def notes_service(received: list[Note]) -> Service:
    svc = Service("notes")

    @svc.handler
    class Notes:
        async def save(self, ctx: Context, note: Note) -> Saved:
            record = await svc.store.write(note.id, note)
            greeting = (await svc.config.get("notes.greeting")).str("hi")
            await svc.events.publish("notes.saved", note.id.encode(), key=note.id)
            return Saved(record.etag, greeting)

        async def load(self, ctx: Context, note: Note) -> Note:
            return await svc.store.value(note.id, Note)

    @svc.subscribe("notes.shared", group="notes")
    async def on_shared(msg: Note) -> None:
        received.append(msg)

    return svc


async def test_blocks_are_scoped_to_the_service_and_work_together() -> None:
    received: list[Note] = []
    svc = notes_service(received)
    async with serve(svc) as client:
        await svc.config.set("notes.greeting", "hello")
        saved = await client.call("Notes.Save", Note("n1", "first"), response_type=Saved)
        assert saved.greeting == "hello" and saved.etag
        assert await client.call("Notes.Load", Note("n1", ""), response_type=Note) == Note(
            "n1", "first"
        )
        # the store record lives in database = namespace, table = service name
        records = await svc.store.backend.read("micro", "notes", "n1")
        assert msgspec.json.decode(records[0].value, type=Note).text == "first"
        # the event is durable and readable
        (event,) = await svc.events.read("notes.saved")
        assert (event.body, event.key) == (b"n1", "n1")
        # locks with fencing tokens come from the sync block
        lease = await svc.sync.acquire("notes.compaction", ttl=5)
        assert lease.token >= 1
        await svc.sync.release(lease)
        # a typed subscriber receives what is published on its topic
        await publish_message(svc.broker, "notes.shared", Note("n2", "shared"))
        await eventually(lambda: received == [Note("n2", "shared")], timeout=5)


async def test_a_service_with_only_subscribers_starts_and_stops() -> None:
    svc = Service("listener")
    seen: list[bytes] = []

    @svc.subscribe("pings")
    async def on_ping(msg: bytes) -> None:
        seen.append(msg)

    async with serve(svc):
        await svc.broker.publish("pings", b"one")
        await eventually(lambda: seen == [b"one"], timeout=5)
    await asyncio.sleep(0)
    assert svc.server is None
