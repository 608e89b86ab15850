"""Namespace isolation across registry, store, config, events, broker and sync.

The six core handlers run with ``tenancy=True`` as real services on loopback ports and are
called over RPC with the shipped clients. A test middleware stands in for the auth guard: it
sets ``ctx.account`` from the ``authorization`` value ``"test <id>@<namespace> <scopes>"``
the client sends (the guard would verify a token there), so calls are made as accounts of
``acme`` and ``globex``, as a ``micro`` admin, as a plain ``micro`` account and anonymously.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from micro import MicroError, Service
from micro.auth import ADMIN, Claims
from micro.auth.tenancy import NAME_SEP, Names, caller_namespace, check_same, qualified, split
from micro.broker import Message
from micro.broker.handler import BrokerHandler
from micro.broker.memory import MemoryBroker
from micro.broker.rpc import RpcBroker
from micro.client import Client
from micro.config.handler import ConfigHandler
from micro.config.memory import MemoryConfig
from micro.config.rpc import RpcConfig
from micro.context import Context
from micro.events import Event
from micro.events.handler import TOPIC_SEP, EventsHandler
from micro.events.memory import MemoryEvents
from micro.events.rpc import RpcEvents
from micro.registry import Event as RegistryEvent
from micro.registry import Node, ServiceInfo
from micro.registry.handler import RegistryHandler
from micro.registry.memory import MemoryRegistry
from micro.registry.rpc import RpcRegistry
from micro.store.handler import StoreHandler
from micro.store.memory import MemoryStore
from micro.store.rpc import RpcStore
from micro.sync import Lease
from micro.sync.handler import SyncHandler
from micro.sync.memory import MemorySync
from micro.sync.rpc import RpcSync
from micro.testing import eventually

pytestmark = pytest.mark.timeout(60)

HandlerFunc = Callable[[Context, Any], Awaitable[Any]]

ACME = "test alice@acme service"
GLOBEX = "test bob@globex service"
ADMIN_MICRO = f"test root@micro {ADMIN}"
PLAIN_MICRO = "test carol@micro service"


def _claims(header: str) -> Claims:
    """The account a test ``authorization`` value names."""
    kind, who, scopes = header.split(" ", 2)
    assert kind == "test", header
    sub, namespace = who.split("@")
    return Claims(sub=sub, namespace=namespace, scopes=scopes.split(","))


def as_account(call: HandlerFunc) -> HandlerFunc:
    """Test middleware in place of the auth guard: the caller's account from metadata."""

    async def with_account(ctx: Context, request: Any) -> Any:
        header = ctx.metadata.get("authorization")
        ctx.account = _claims(header) if header else None
        return await call(ctx, request)

    return with_account


@dataclass
class Caller:
    """The six services as one account sees them."""

    registry: RpcRegistry
    store: RpcStore
    config: RpcConfig
    events: RpcEvents
    broker: RpcBroker
    sync: RpcSync
    client: Client

    async def close(self) -> None:
        await self.registry.close()
        await self.store.close()
        await self.config.close()
        await self.events.close()
        await self.broker.close()
        await self.sync.close()
        await self.client.close()


@dataclass
class Platform:
    """The services under test, their backends and a way to call them as someone."""

    services: dict[str, Service]
    registry: MemoryRegistry
    store: MemoryStore
    config: MemoryConfig
    events: MemoryEvents
    broker: MemoryBroker
    sync: MemorySync
    callers: list[Caller] = field(default_factory=list)

    def caller(self, header: str | None) -> Caller:
        client = Client(credentials=lambda: header)
        caller = Caller(
            RpcRegistry(self.services["registry"].address, client=client),
            RpcStore(self.services["store"].address, client=client),
            RpcConfig(self.services["config"].address, client=client),
            RpcEvents(self.services["events"].address, client=client, prefetch=8),
            RpcBroker(self.services["broker"].address, client=client),
            RpcSync(self.services["sync"].address, client=client),
            client,
        )
        self.callers.append(caller)
        return caller


@pytest.fixture
async def platform() -> AsyncIterator[Platform]:
    registry = MemoryRegistry()
    store = MemoryStore()
    config = MemoryConfig()
    events = MemoryEvents(poll_interval=0.01, purge_interval=86400)
    broker = MemoryBroker()
    sync = MemorySync(clock=lambda: 1000.0)  # time stands still: no lease ever expires
    discovery = MemoryRegistry()  # where the services under test register themselves
    handlers: dict[str, Any] = {
        "registry": RegistryHandler(registry, tenancy=True),
        "store": StoreHandler(store, tenancy=True),
        "config": ConfigHandler(config, tenancy=True),
        "events": EventsHandler(events, tenancy=True),
        "broker": BrokerHandler(broker, tenancy=True),
        "sync": SyncHandler(sync, tenancy=True),
    }
    services: dict[str, Service] = {}
    plat = Platform(services, registry, store, config, events, broker, sync)
    try:
        for name, handler in handlers.items():
            svc = Service(
                name,
                registry=discovery,
                address="127.0.0.1:0",
                auth=False,
                middleware=[as_account],
            )
            svc.handler(handler, name=name.capitalize())
            await svc.start()
            services[name] = svc
        yield plat
    finally:
        for caller in plat.callers:
            await caller.close()
        for svc in services.values():
            await svc.stop(grace=1.0)
        for block in (sync, broker, events, config, store, registry, discovery):
            await block.close()


async def _refused(call: Awaitable[Any]) -> MicroError:
    with pytest.raises(MicroError) as err:
        await call
    return err.value


# -- the rule ------------------------------------------------------------------------------------


def _ctx(account: Claims | None) -> Context:
    ctx = Context(service="store")
    ctx.account = account
    return ctx


def test_caller_namespace_confines_all_but_micro_admins() -> None:
    assert caller_namespace(_ctx(_claims(ADMIN_MICRO))) is None
    assert caller_namespace(_ctx(_claims(PLAIN_MICRO))) == "micro"
    assert caller_namespace(_ctx(_claims(ACME))) == "acme"
    # an admin of another namespace is still confined to it
    assert caller_namespace(_ctx(_claims(f"test root@acme {ADMIN}"))) == "acme"
    assert caller_namespace(_ctx(None)) == "micro"
    assert caller_namespace(None) == "micro"


def test_check_same_names_both_namespaces() -> None:
    check_same(_ctx(_claims(ACME)), "acme", "database")
    check_same(_ctx(_claims(ADMIN_MICRO)), "globex", "database")
    with pytest.raises(MicroError) as err:
        check_same(_ctx(_claims(ACME)), "globex", "database")
    assert (err.value.status, err.value.id) == (403, "store")
    assert "'acme'" in err.value.detail and "'globex'" in err.value.detail


def test_qualified_names_round_trip() -> None:
    assert qualified("micro", "greeter") == "greeter"
    assert qualified("acme", "greeter") == "acme/greeter"
    assert split("acme/greeter") == ("acme", "greeter")
    assert split("greeter") == ("micro", "greeter")


def test_names_prefix_round_trip_and_keep_namespaces_apart() -> None:
    acme, micro = Names("acme", "broker", 20), Names("micro", "broker", 20)
    assert acme.stored("orders", "topic") == f"acme{NAME_SEP}orders"
    assert acme.shown(f"acme{NAME_SEP}orders") == "orders"
    assert micro.stored("orders", "topic") == "orders" and micro.shown("orders") == "orders"
    # another namespace's names, and micro's, are not acme's; prefixed names are not micro's
    assert acme.shown("orders") is None
    assert acme.shown(f"globex{NAME_SEP}orders") is None
    assert micro.shown(f"acme{NAME_SEP}orders") is None
    assert acme.show(f"globex{NAME_SEP}orders") == f"globex{NAME_SEP}orders"
    for bad in (f"a{NAME_SEP}b", "-lead", "x" * 15):
        with pytest.raises(MicroError) as err:
            acme.stored(bad, "topic")
        assert (err.value.status, err.value.id) == (400, "broker"), bad
    assert acme.stored("x" * 14, "topic") == f"acme{NAME_SEP}" + "x" * 14  # exactly 20
    # namespaces that end in '-' or contain '--' cannot reach each other's names
    tricky = [Names(n, "sync", 256) for n in ("a", "a-", f"a{NAME_SEP}b", "b", "micro")]
    names = ["x", "b", f"b{NAME_SEP}x", "-x", "x-", "b-"]
    stored: dict[str, tuple[str, str]] = {}
    for ns in tricky:
        for name in names:
            try:
                key = ns.stored(name, "name")
            except MicroError:
                continue
            assert key not in stored, (ns.namespace, name, stored.get(key))
            stored[key] = (ns.namespace, name)
            assert [o.namespace for o in tricky if o.shown(key) is not None] == [ns.namespace]


# -- store ---------------------------------------------------------------------------------------


async def test_store_confines_each_account_to_its_database(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    await acme.store.write("acme", "users", "u1", b"alice")
    await globex.store.write("globex", "users", "u1", b"bob")
    (record,) = await acme.store.read("acme", "users", "u1")
    assert record.value == b"alice"
    refusals = [
        await _refused(acme.store.read("globex", "users", "u1")),
        await _refused(acme.store.read_many("globex", "users", ["u1"])),
        await _refused(acme.store.write("globex", "users", "u2", b"x")),
        await _refused(acme.store.delete("globex", "users", "u1")),
        await _refused(acme.store.list_keys("globex", "users")),
        await _refused(acme.store.list_tables("globex")),
    ]
    assert {e.status for e in refusals} == {403}
    assert all("'acme'" in e.detail and "'globex'" in e.detail for e in refusals)
    assert await platform.store.list_keys("globex", "users") == ["u1"]  # untouched
    assert await acme.store.list_databases() == ["acme"]
    assert await globex.store.list_databases() == ["globex"]
    assert await acme.store.list_tables("acme") == ["users"]


async def test_store_micro_accounts_and_admins(platform: Platform) -> None:
    await platform.caller(ACME).store.write("acme", "t", "k", b"a")
    plain, admin = platform.caller(PLAIN_MICRO), platform.caller(ADMIN_MICRO)
    anonymous = platform.caller(None)
    await plain.store.write("micro", "t", "k", b"m")
    assert (await _refused(plain.store.read("acme", "t", "k"))).status == 403
    assert (await _refused(anonymous.store.list_keys("acme", "t"))).status == 403
    assert await plain.store.list_databases() == ["micro"]
    assert set(await admin.store.list_databases()) == {"acme", "micro"}
    (record,) = await admin.store.read("acme", "t", "k")
    assert record.value == b"a"


# -- config --------------------------------------------------------------------------------------


async def test_config_confines_each_account_to_its_namespace(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    await acme.config.set("acme", "db", {"host": "a.example"})
    await globex.config.set("globex", "db", {"host": "g.example"})
    assert await acme.config.get("acme", "db.host") == "a.example"
    refusals = [
        await _refused(acme.config.get("globex", "db")),
        await _refused(acme.config.set("globex", "db.host", "evil")),
        await _refused(acme.config.delete("globex", "db")),
    ]
    assert {e.status for e in refusals} == {403}
    watcher = acme.config.watch("globex", "db")
    err = await _refused(asyncio.wait_for(watcher.__anext__(), 10))
    assert err.status == 403
    assert await globex.config.get("globex", "db.host") == "g.example"
    admin = platform.caller(ADMIN_MICRO)
    assert await admin.config.get("globex", "db.host") == "g.example"


# -- events --------------------------------------------------------------------------------------


async def _next(consumer: Any) -> Event:
    event: Event = await asyncio.wait_for(consumer.__anext__(), 10)
    return event


async def test_events_topics_are_invisible_across_namespaces(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    ack = await acme.events.publish("orders", b"a1")
    assert (ack.topic, ack.sequence) == ("orders", 1)
    await globex.events.publish("orders", b"g1")
    await globex.events.publish("orders", b"g2")
    await globex.events.publish("secret", b"s")

    (mine,) = await acme.events.read("orders")
    assert (mine.topic, mine.sequence, mine.body) == ("orders", 1, b"a1")
    assert [e.body for e in await globex.events.read("orders")] == [b"g1", b"g2"]
    assert [t.name for t in await acme.events.topics()] == ["orders"]
    assert [t.name for t in await globex.events.topics()] == ["orders", "secret"]
    missing = await _refused(acme.events.read("secret"))
    assert missing.status == 404 and "'secret'" in missing.detail and "globex" not in missing.detail
    # stored names cannot be reached by spelling them out
    sneaky = await _refused(acme.events.read(f"globex{TOPIC_SEP}secret"))
    assert sneaky.status == 400

    # stored prefixed; an admin sees them as they are, a plain micro account sees none
    admin = platform.caller(ADMIN_MICRO)
    assert {t.name for t in await admin.events.topics()} == {
        f"acme{TOPIC_SEP}orders",
        f"globex{TOPIC_SEP}orders",
        f"globex{TOPIC_SEP}secret",
    }
    assert await platform.caller(PLAIN_MICRO).events.topics() == []


async def test_events_consume_round_trip_inside_a_namespace(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    await globex.events.publish("orders", b"g1")
    await acme.events.publish("orders", b"a1")
    consumer = await acme.events.consume("orders", "workers", start="first")
    first = await _next(consumer)
    assert (first.topic, first.sequence, first.body) == ("orders", 1, b"a1")
    await globex.events.publish("orders", b"g2")
    await acme.events.publish("orders", b"a2")
    second = await _next(consumer)  # globex's g2 never shows up here
    assert (second.topic, second.sequence, second.body) == ("orders", 2, b"a2")
    await consumer.close()

    # the same group name in globex is a group of globex's topic
    theirs = await globex.events.consume("orders", "workers", start="first")
    assert [(await _next(theirs)).body for _ in range(2)] == [b"g1", b"g2"]
    await theirs.close()


async def test_events_dead_letters_stay_in_the_namespace(platform: Platform) -> None:
    acme = platform.caller(ACME)
    await acme.events.publish("jobs", b"boom")
    consumer = await acme.events.consume(
        "jobs", "runners", start="first", auto_ack=False, max_deliver=1
    )
    event = await _next(consumer)
    await consumer.nack(event)  # the last allowed delivery failed: dead-lettered

    async def dead_lettered() -> bool:
        return "jobs.dead" in {t.name for t in await acme.events.topics()}

    await eventually(dead_lettered, timeout=10, message="the dead-letter topic")
    (dead,) = await acme.events.read("jobs.dead")
    assert (dead.topic, dead.body) == ("jobs.dead", b"boom")
    assert dead.metadata["dead_letter.topic"] == "jobs"
    assert dead.metadata["dead_letter.group"] == "runners"
    await consumer.close()
    assert f"acme{TOPIC_SEP}jobs.dead" in {t.name for t in await platform.events.topics()}

    # an explicit dead-letter topic is named in the namespace as well
    await acme.events.publish("mail", b"m")
    again = await acme.events.consume(
        "mail",
        "senders",
        start="first",
        auto_ack=False,
        max_deliver=1,
        dead_letter_topic="failed",
    )
    await again.nack(await _next(again))

    async def failed() -> bool:
        return "failed" in {t.name for t in await acme.events.topics()}

    await eventually(failed, timeout=10, message="the explicit dead-letter topic")
    await again.close()
    assert (await platform.caller(GLOBEX).events.topics()) == []


async def test_events_retention_and_purge_per_namespace(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    for body in (b"1", b"2", b"3"):
        await acme.events.publish("log", body)
        await globex.events.publish("log", body)
        await globex.events.publish("audit", body)
    info = await acme.events.retention("log", max_events=1)
    assert info.name == "log"
    await globex.events.retention("audit", max_events=2)
    # acme's purge applies retention everywhere but counts only what left acme's topics
    assert await acme.events.purge() == 2
    assert [e.body for e in await acme.events.read("log")] == [b"3"]
    assert [e.body for e in await globex.events.read("log")] == [b"1", b"2", b"3"]
    assert [e.body for e in await globex.events.read("audit")] == [b"2", b"3"]


async def test_events_topic_names_that_would_cross_namespaces_are_refused(
    platform: Platform,
) -> None:
    acme = platform.caller(ACME)
    for topic in (f"a{TOPIC_SEP}b", "-lead", "x" * 255):
        err = await _refused(acme.events.publish(topic, b"x"))
        assert err.status == 400, topic
    err = await _refused(acme.events.consume("ok", "g", dead_letter_topic=f"a{TOPIC_SEP}b"))
    assert err.status == 400
    # the longest name that still fits once prefixed works
    longest = "y" * (255 - len("acme") - len(TOPIC_SEP))
    assert (await acme.events.publish(longest, b"x")).topic == longest
    # an admin is not confined and may use any valid name
    admin = platform.caller(ADMIN_MICRO)
    assert (await admin.events.publish(f"a{TOPIC_SEP}b", b"x")).topic == f"a{TOPIC_SEP}b"


# -- registry ------------------------------------------------------------------------------------


def _greeter(node: str) -> ServiceInfo:
    return ServiceInfo("greeter", nodes=[Node(node, "127.0.0.1:1")])


async def test_registry_same_name_in_two_namespaces(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    await acme.registry.register(_greeter("a1"), ttl=60)
    await globex.registry.register(_greeter("g1"), ttl=60)
    (mine,) = await acme.registry.get_service("greeter")
    assert (mine.name, [n.id for n in mine.nodes]) == ("greeter", ["a1"])
    (theirs,) = await globex.registry.get_service("greeter")
    assert (theirs.name, [n.id for n in theirs.nodes]) == ("greeter", ["g1"])
    assert [(s.name, s.nodes[0].id) for s in await acme.registry.list_services()] == [
        ("greeter", "a1")
    ]

    admin = platform.caller(ADMIN_MICRO)
    assert {s.name for s in await admin.registry.list_services()} == {
        "acme/greeter",
        "globex/greeter",
    }
    (stored,) = await admin.registry.get_service(qualified("acme", "greeter"))
    assert [n.id for n in stored.nodes] == ["a1"]
    # callers of micro (anonymous ones too) see only micro's services
    assert await platform.caller(None).registry.list_services() == []
    missing = await _refused(platform.caller(PLAIN_MICRO).registry.get_service("greeter"))
    assert missing.status == 404 and "acme" not in missing.detail
    assert (await _refused(acme.registry.get_service("globex/greeter"))).status == 400

    # deregistering acme's greeter leaves globex's alone
    await acme.registry.deregister(_greeter("a1"))
    assert (await _refused(acme.registry.get_service("greeter"))).status == 404
    (left,) = await globex.registry.get_service("greeter")
    assert [n.id for n in left.nodes] == ["g1"]


async def test_registry_micro_services_stay_unprefixed(platform: Platform) -> None:
    plain = platform.caller(PLAIN_MICRO)
    await plain.registry.register(_greeter("m1"), ttl=60)
    (svc,) = await platform.registry.list_services()
    assert svc.name == "greeter"
    (seen,) = await platform.caller(None).registry.get_service("greeter")
    assert [n.id for n in seen.nodes] == ["m1"]
    assert await platform.caller(ACME).registry.list_services() == []


async def test_registry_watch_shows_only_own_namespace(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    seen: list[RegistryEvent] = []

    async def collect() -> None:
        async for event in acme.registry.watch():
            seen.append(event)

    task = asyncio.ensure_future(collect())
    try:
        marker = ServiceInfo("marker", nodes=[Node("mk", "127.0.0.1:2")])

        async def subscribed() -> bool:  # the watch starts when its stream opens
            await acme.registry.register(marker, ttl=60)
            await acme.registry.deregister(marker)
            return any(e.service.name == "marker" for e in seen)

        await eventually(subscribed, timeout=10, message="the watch")
        seen.clear()
        await globex.registry.register(_greeter("g1"), ttl=60)
        await acme.registry.register(_greeter("a1"), ttl=60)
        await acme.registry.register(marker, ttl=60)
        await eventually(
            lambda: any(e.service.name == "marker" for e in seen), timeout=10, message="marker"
        )
        # events arrive in order: globex's registration would have come before the marker
        shown = [(e.type, e.service.name, [n.id for n in e.service.nodes]) for e in seen]
        assert ("create", "greeter", ["a1"]) in shown
        assert all("g1" not in nodes for _, _, nodes in shown)
        assert all("/" not in name for _, name, _ in shown)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_registry_watch_of_one_service_maps_its_name(platform: Platform) -> None:
    globex, admin = platform.caller(GLOBEX), platform.caller(ADMIN_MICRO)
    theirs: list[RegistryEvent] = []
    everything: list[RegistryEvent] = []

    async def collect(watch: AsyncIterator[RegistryEvent], into: list[RegistryEvent]) -> None:
        async for event in watch:
            into.append(event)

    tasks = [
        asyncio.ensure_future(collect(globex.registry.watch("greeter"), theirs)),
        asyncio.ensure_future(collect(admin.registry.watch(), everything)),
    ]
    try:

        async def both_see() -> bool:
            await globex.registry.register(_greeter("g1"), ttl=60)
            await globex.registry.deregister(_greeter("g1"))
            return bool(theirs) and bool(everything)

        await eventually(both_see, timeout=10, message="the watches")
        assert {e.service.name for e in theirs} == {"greeter"}
        assert {e.service.name for e in everything} == {"globex/greeter"}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- broker --------------------------------------------------------------------------------------


async def _message(sub: Any) -> Message:
    message: Message = await asyncio.wait_for(sub.__anext__(), 10)
    return message


async def test_broker_same_topic_in_two_namespaces(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    plain, admin = platform.caller(PLAIN_MICRO), platform.caller(ADMIN_MICRO)
    mine = await acme.broker.subscribe("orders")
    theirs = await globex.broker.subscribe("orders")
    micros = await plain.broker.subscribe("orders")
    stored = await admin.broker.subscribe(f"acme{NAME_SEP}orders")

    await acme.broker.publish("orders", b"a1")
    got = await _message(mine)
    assert (got.topic, got.body) == ("orders", b"a1")
    seen = await _message(stored)  # an admin sees the stored name
    assert (seen.topic, seen.body) == (f"acme{NAME_SEP}orders", b"a1")

    await globex.broker.publish("orders", b"g1")
    await plain.broker.publish("orders", b"m1")
    await admin.broker.publish(f"acme{NAME_SEP}orders", b"a2")  # reaches acme's topic
    # publishes are delivered in call order: g1 and m1 would have come before a2
    got = await _message(mine)
    assert (got.topic, got.body) == ("orders", b"a2")
    got = await _message(theirs)
    assert (got.topic, got.body) == ("orders", b"g1")
    got = await _message(micros)
    assert (got.topic, got.body) == ("orders", b"m1")
    assert (await _message(stored)).body == b"a2"
    for sub in (mine, theirs, micros):
        assert sub.pending == 0


async def test_broker_queue_groups_are_per_namespace(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    mine = await acme.broker.subscribe("jobs", group="workers")
    theirs = await globex.broker.subscribe("jobs", group="workers")
    # one group per namespace: each message reaches its namespace's only member (one shared
    # group would deal them out round robin across both members instead)
    for n in range(3):
        await acme.broker.publish("jobs", f"a{n}".encode())
    for n in range(3):
        await globex.broker.publish("jobs", f"g{n}".encode())
    assert [(await _message(mine)).body for _ in range(3)] == [b"a0", b"a1", b"a2"]
    assert [(await _message(theirs)).body for _ in range(3)] == [b"g0", b"g1", b"g2"]


async def test_broker_topic_names_that_would_cross_namespaces_are_refused(
    platform: Platform,
) -> None:
    acme, plain = platform.caller(ACME), platform.caller(PLAIN_MICRO)
    for topic in (f"globex{NAME_SEP}orders", "-lead", "x" * 255, "bad..topic"):
        err = await _refused(acme.broker.publish(topic, b"x"))
        assert (err.status, err.id) == (400, "broker"), topic
        err = await _refused(acme.broker.subscribe(topic))
        assert err.status == 400, topic
    assert "acme" not in (await _refused(acme.broker.publish("-lead", b"x"))).detail
    assert (await _refused(plain.broker.subscribe(f"acme{NAME_SEP}orders"))).status == 400
    longest = "y" * (255 - len("acme") - len(NAME_SEP))
    sub = await acme.broker.subscribe(longest)
    await acme.broker.publish(longest, b"x")
    assert (await _message(sub)).topic == longest


# -- sync ----------------------------------------------------------------------------------------


async def test_sync_same_lock_in_two_namespaces(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    admin = platform.caller(ADMIN_MICRO)
    a1 = await acme.sync.acquire("jobs", 60, owner="alice")
    g1 = await globex.sync.acquire("jobs", 60, owner="bob")  # held by acme, yet free here
    assert (a1.name, a1.token, g1.name, g1.token) == ("jobs", 1, "jobs", 1)
    held = await _refused(acme.sync.acquire("jobs", 60))
    assert held.status == 409 and "'jobs'" in held.detail and NAME_SEP not in held.detail

    # tokens advance per namespace
    await acme.sync.release(await acme.sync.renew(a1, 30))
    a2 = await acme.sync.acquire("jobs", 60, owner="alice")
    assert (a2.name, a2.token) == ("jobs", 2)
    # globex's lease, handed in by acme, names acme's lock: refused, globex keeps its lock
    assert (await _refused(acme.sync.release(g1))).status == 409
    assert (await _refused(acme.sync.release(Lease("jobs", "bob", 2, 0.0)))).status == 409
    assert (await _refused(admin.sync.acquire(f"globex{NAME_SEP}jobs", 60))).status == 409
    await globex.sync.release(g1)

    # the admin sees the stored names; micro's lock of the same name is a third one
    stored = await admin.sync.acquire(f"globex{NAME_SEP}jobs", 60, owner="root")
    assert (stored.name, stored.token) == (f"globex{NAME_SEP}jobs", 2)
    plain = await platform.caller(PLAIN_MICRO).sync.acquire("jobs", 60)
    assert (plain.name, plain.token) == ("jobs", 1)
    for name in (f"acme{NAME_SEP}jobs", f"globex{NAME_SEP}jobs", "jobs"):  # all three held
        assert (await _refused(platform.sync.acquire(name, 60))).status == 409


async def test_sync_elections_per_namespace(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    admin = platform.caller(ADMIN_MICRO)
    a = await acme.sync.campaign("primary", "a", 60, timeout=0)
    g = await globex.sync.campaign("primary", "g", 60, timeout=0)
    assert (a.name, a.owner, g.name, g.owner) == ("election/primary", "a", "election/primary", "g")
    assert await acme.sync.leader("primary") == "a"
    assert await globex.sync.leader("primary") == "g"
    assert await platform.caller(PLAIN_MICRO).sync.leader("primary") is None
    assert await admin.sync.leader(f"acme{NAME_SEP}primary") == "a"
    # inside a namespace, the election still runs on the lock election/<name>
    held = await _refused(acme.sync.acquire("election/primary", 60))
    assert held.status == 409 and "'election/primary'" in held.detail
    lost = await _refused(acme.sync.campaign("primary", "a2", 60, timeout=0))
    assert lost.status == 409 and NAME_SEP not in lost.detail

    observed = acme.sync.observe("primary")
    assert await asyncio.wait_for(observed.__anext__(), 10) == "a"
    renewed = await acme.sync.renew(a, 30)
    assert renewed.name == "election/primary"
    await acme.sync.resign(renewed)
    assert await asyncio.wait_for(observed.__anext__(), 10) is None
    await observed.aclose()  # type: ignore[attr-defined]
    assert await globex.sync.leader("primary") == "g"


async def test_sync_maps_are_per_namespace(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    assert await acme.sync.map_put("settings", "mode", b"fast", version=0) == 1
    assert await globex.sync.map_put("settings", "mode", b"slow", version=0) == 1
    assert await acme.sync.map_get("settings", "mode") == (b"fast", 1)
    assert await globex.sync.map_get("settings", "mode") == (b"slow", 1)
    clash = await _refused(acme.sync.map_put("settings", "mode", b"x", version=5))
    assert clash.status == 409 and "'settings'" in clash.detail and "acme" not in clash.detail
    await globex.sync.map_delete("settings", "mode")
    assert [(e.key, e.value) for e in await acme.sync.map_list("settings")] == [("mode", b"fast")]
    assert await globex.sync.map_list("settings") == []
    missing = await _refused(platform.caller(PLAIN_MICRO).sync.map_get("settings", "mode"))
    assert missing.status == 404 and "acme" not in missing.detail
    admin = platform.caller(ADMIN_MICRO)
    assert await admin.sync.map_get(f"acme{NAME_SEP}settings", "mode") == (b"fast", 1)


async def test_sync_queues_are_per_namespace(platform: Platform) -> None:
    acme, globex = platform.caller(ACME), platform.caller(GLOBEX)
    await acme.sync.enqueue("jobs", b"a")
    await globex.sync.enqueue("jobs", b"g")
    mine = await acme.sync.lease("jobs", "w1", 60)
    theirs = await globex.sync.lease("jobs", "w1", 60)
    assert mine is not None and theirs is not None
    assert (mine.queue, mine.worker, mine.body) == ("jobs", "w1", b"a")
    assert (theirs.queue, theirs.worker, theirs.body) == ("jobs", "w1", b"g")
    assert await acme.sync.lease("jobs", "w2", 60) is None  # globex's task is not acme's
    # acme cannot settle globex's task, even naming its id and worker
    assert (await _refused(acme.sync.ack(theirs))).status == 409
    assert (await _refused(acme.sync.fail(theirs, "no"))).status == 409
    await globex.sync.ack(theirs)

    # dead letters stay in the namespace and show the caller's names
    await acme.sync.fail(mine, "boom")  # attempt 1 of 5: retried later
    await acme.sync.enqueue("mail", b"m", max_attempts=1)
    task = await acme.sync.lease("mail", "w1", 60)
    assert task is not None
    await acme.sync.fail(task, "bounced")
    (dead,) = await acme.sync.dead("mail")
    assert (dead.queue, dead.body, dead.error) == ("mail", b"m", "bounced")
    assert dead.worker == ""  # cleared when it failed
    assert await globex.sync.dead("mail") == []
    admin = platform.caller(ADMIN_MICRO)
    (stored,) = await admin.sync.dead(f"acme{NAME_SEP}mail")
    assert stored.queue == f"acme{NAME_SEP}mail"


async def test_sync_names_that_would_cross_namespaces_are_refused(platform: Platform) -> None:
    acme, plain = platform.caller(ACME), platform.caller(PLAIN_MICRO)
    for name in (f"globex{NAME_SEP}jobs", "-lead", "x" * 256, f"election/globex{NAME_SEP}x"):
        calls: list[Callable[[str], Awaitable[Any]]] = [
            lambda n: acme.sync.acquire(n, 60),
            lambda n: acme.sync.campaign(n, "c", 60, timeout=0),
            acme.sync.leader,
            lambda n: acme.sync.map_get(n, "k"),
            lambda n: acme.sync.map_put(n, "k", b"v"),
            acme.sync.map_list,
            lambda n: acme.sync.enqueue(n, b"x"),
            lambda n: acme.sync.lease(n, "w", 60),
            lambda n: acme.sync.lease("jobs", n, 60),
            acme.sync.dead,
        ]
        for call in calls:
            err = await _refused(call(name))
            assert (err.status, err.id) == (400, "sync"), name
    assert (await _refused(plain.sync.acquire(f"acme{NAME_SEP}jobs", 60))).status == 400
    # names may otherwise use any printable character, and the longest that fits works
    odd = "a/b c:d.é"
    assert (await acme.sync.acquire(odd, 60)).name == odd
    longest = "y" * (256 - len("acme") - len(NAME_SEP))
    assert (await acme.sync.acquire(longest, 60)).name == longest


# -- tenancy off ---------------------------------------------------------------------------------


async def test_tenancy_off_keeps_names_as_they_are() -> None:
    """Without the flag the handlers ignore the caller's namespace (in-process calls)."""
    events = MemoryEvents()
    registry = MemoryRegistry()
    store = MemoryStore()
    ctx = _ctx(_claims(ACME))
    try:
        from micro.events.messages import PublishRequest
        from micro.registry.messages import RegisterRequest
        from micro.store.messages import Empty as StoreEmpty
        from micro.store.messages import WriteRequest

        ack = await EventsHandler(events).publish(ctx, PublishRequest("orders", b"x"))
        assert ack.topic == "orders"
        assert [t.name for t in await events.topics()] == ["orders"]
        await RegistryHandler(registry).register(ctx, RegisterRequest(_greeter("a1")))
        assert [s.name for s in await registry.list_services()] == ["greeter"]
        handler = StoreHandler(store)
        await handler.write(ctx, WriteRequest("k", b"v", database="globex", table="t"))
        assert (await handler.databases(ctx, StoreEmpty())).databases == ["globex"]
    finally:
        await events.close()
        await registry.close()
        await store.close()


async def test_tenancy_off_keeps_broker_and_sync_names_as_they_are() -> None:
    broker, sync = MemoryBroker(), MemorySync(clock=lambda: 1000.0)
    ctx = _ctx(_claims(ACME))
    try:
        from micro.broker.messages import PublishRequest as BrokerPublish
        from micro.broker.messages import SubscribeRequest
        from micro.sync.messages import AcquireRequest, MapPutRequest

        sub = await broker.subscribe("orders")
        await BrokerHandler(broker).publish(ctx, BrokerPublish("orders", b"x"))
        assert (await _message(sub)).topic == "orders"
        stream = BrokerHandler(broker).subscribe(ctx, SubscribeRequest("jobs"))
        assert (await stream.__anext__()).message is None  # live
        await broker.publish("jobs", b"j")
        event = await stream.__anext__()
        assert event.message is not None and event.message.topic == "jobs"
        await stream.aclose()  # type: ignore[attr-defined]

        handler = SyncHandler(sync)
        lease = await handler.acquire(ctx, AcquireRequest("jobs", 60))
        assert lease.name == "jobs"
        assert (await sync.leader("x")) is None
        await handler.map_put(ctx, MapPutRequest("m", "k", b"v"))
        assert await sync.map_get("m", "k") == (b"v", 1)
        # the names a confined caller may not use are fine without tenancy
        assert (await handler.acquire(ctx, AcquireRequest("a--b", 60))).name == "a--b"
    finally:
        await broker.close()
        await sync.close()
