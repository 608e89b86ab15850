"""The config conformance suite: what every :class:`~micro.config.Config` backend must do.

Subclass :class:`ConfigConformance` in a test module and provide a ``config`` fixture (a
fresh, empty backend whose secrets are encrypted); override ``config_peer`` when the backend
can be reached by a second, independent client (over RPC: another connection), so that
watches are checked against writes from elsewhere. Tests are ``async`` (pytest-asyncio).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from ...config import MAX_VALUE, SECRET_MASK, Change, Config
from ...config.scoped import ScopedConfig
from ...errors import MicroError

__all__ = ["ConfigConformance", "DbSettings", "Defaults", "next_changes", "nothing_more"]

NS = "conformance"
_WAIT = 5.0


async def next_changes(watcher: AsyncIterator[Change], count: int) -> list[Change]:
    """The next ``count`` changes of ``watcher``, each awaited at most five seconds."""
    return [await asyncio.wait_for(anext(watcher), _WAIT) for _ in range(count)]


async def nothing_more(watcher: AsyncIterator[Change]) -> None:
    """Assert that no further change arrives at ``watcher`` within 0.2 seconds."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(watcher), 0.2)


async def close(watcher: AsyncIterator[Change]) -> None:
    """Close a watcher of any backend."""
    aclose = getattr(watcher, "aclose", None)
    if aclose is not None:
        await aclose()


class DbSettings(msgspec.Struct):
    """What a service might scan its database settings into."""

    addr: str
    port: int = 5432
    tags: list[str] = []


class Defaults(msgspec.Struct):
    """Settings whose fields all have defaults."""

    retries: int = 3
    verbose: bool = False


class ConfigConformance:
    """Behaviour every config backend shows."""

    @pytest.fixture
    def config_peer(self, config: Config) -> Config:
        """A second client of the same config (the same object unless overridden)."""
        return config

    # -- documents and paths ---------------------------------------------------------------------

    async def test_nested_set_and_get(self, config: Config) -> None:
        await config.set(NS, "svc.db.addr", "10.0.0.1:5432")
        assert await config.get(NS, "svc.db.addr") == "10.0.0.1:5432"
        assert await config.get(NS, "svc") == {"db": {"addr": "10.0.0.1:5432"}}
        assert await config.get(NS, "") == {"svc": {"db": {"addr": "10.0.0.1:5432"}}}
        assert await config.get(NS, "svc.db.port") is None
        assert await config.get(NS, "svc.db.addr.deeper") is None
        assert await config.get(NS, "nothing.here") is None
        assert await config.get("unknown-namespace") == {}

    async def test_values_keep_their_json_types(self, config: Config) -> None:
        value = {"i": 1, "f": 1.0, "b": True, "n": None, "s": "1", "l": [1, "a", {"k": [2.5]}]}
        await config.set(NS, "types", value)
        got = await config.get(NS, "types")
        assert got == value
        assert [type(got[k]) for k in ("i", "f", "b", "s")] == [int, float, bool, str]

    async def test_an_object_merges_leaf_by_leaf(self, config: Config) -> None:
        await config.set(NS, "svc", {"db": {"addr": "a", "port": 1}, "name": "n"})
        await config.set(NS, "svc", {"db": {"port": 2, "user": "u"}})
        await config.set(NS, "", {"other": True})
        assert await config.get(NS) == {
            "svc": {"db": {"addr": "a", "port": 2, "user": "u"}, "name": "n"},
            "other": True,
        }

    async def test_scalars_and_objects_replace_each_other(self, config: Config) -> None:
        await config.set(NS, "a", {"b": {"c": 1}})
        await config.set(NS, "a.b", 7)
        assert await config.get(NS, "a") == {"b": 7}
        await config.set(NS, "a.b", {"x": "y"})
        assert await config.get(NS, "a") == {"b": {"x": "y"}}
        await config.set(NS, "a.b.x.z", 1)  # a scalar on the way becomes an object
        assert await config.get(NS, "a.b") == {"x": {"z": 1}}
        await config.set(NS, "a", [1, 2])  # lists are values: they replace
        await config.set(NS, "a", [3])
        assert await config.get(NS, "a") == [3]
        await config.set(NS, "a", None)
        assert await config.get(NS) == {"a": None}

    async def test_delete(self, config: Config) -> None:
        await config.set(NS, "a", {"b": {"c": 1, "d": 2}, "e": 3})
        await config.delete(NS, "a.b.c")
        assert await config.get(NS, "a") == {"b": {"d": 2}, "e": 3}
        await config.delete(NS, "a.b")
        assert await config.get(NS, "a") == {"e": 3}
        await config.delete(NS, "a.missing.deeper")  # nothing there: nothing happens
        await config.delete(NS, "a.e.under-a-scalar")
        assert await config.get(NS, "a") == {"e": 3}
        await config.set("other-ns", "keep", 1)
        await config.delete(NS, "")
        assert await config.get(NS) == {}
        assert await config.get("other-ns") == {"keep": 1}

    async def test_reads_are_copies(self, config: Config) -> None:
        await config.set(NS, "a", {"list": [1, {"x": 1}], "obj": {"k": "v"}})
        got = await config.get(NS, "a")
        got["list"][1]["x"] = 99
        got["obj"]["k"] = "changed"
        given = {"v": [1]}
        await config.set(NS, "b", given)
        given["v"].append(2)
        assert await config.get(NS, "a") == {"list": [1, {"x": 1}], "obj": {"k": "v"}}
        assert await config.get(NS, "b") == {"v": [1]}

    async def test_bad_input_is_refused_and_loses_nothing(self, config: Config) -> None:
        await config.set(NS, "keep", {"me": 1})
        bad_paths = ["a..b", ".a", "a.", "a b", "a/b", "é", "x" * 129, ".".join(["a"] * 33)]
        for path in bad_paths:
            with pytest.raises(MicroError) as err:
                await config.set(NS, path, 1)
            assert err.value.code == "bad_request", path
            with pytest.raises(MicroError):
                await config.get(NS, path)
        for namespace in ["", "a b", "a.b", "n" * 129]:
            with pytest.raises(MicroError) as err:
                await config.get(namespace, "x")
            assert err.value.code == "bad_request"
        for value in [float("nan"), {"bad key": 1}, {"": 1}, 2**70]:
            with pytest.raises(MicroError) as err:
                await config.set(NS, "v", value)
            assert err.value.code == "bad_request"
        with pytest.raises(MicroError) as err:
            await config.set(NS, "", "the root must be an object")
        assert err.value.code == "bad_request"
        with pytest.raises(MicroError) as err:
            await config.set(NS, "big", "x" * (MAX_VALUE + 1))
        assert err.value.code == "too_large"
        assert await config.get(NS) == {"keep": {"me": 1}}

    # -- typed access ----------------------------------------------------------------------------

    async def test_typed_getters_with_defaults(self, config: Config) -> None:
        scoped = ScopedConfig(config, NS)
        await scoped.set("s", {"i": 5, "f": 2.5, "t": "x", "b": True, "l": [1], "d": {"k": 1}})
        assert (await scoped.get("s.i")).int(1) == 5
        assert (await scoped.get("s.i")).float() == 5.0
        assert (await scoped.get("s.f")).float(1.0) == 2.5
        assert (await scoped.get("s.t")).str("d") == "x"
        assert (await scoped.get("s.b")).bool() is True
        assert (await scoped.get("s.l")).list() == [1]
        assert (await scoped.get("s.d")).dict() == {"k": 1}
        assert (await scoped.get("s")).get("d.k").int() == 1
        missing = await scoped.get("s.missing")
        assert not missing.exists
        assert (missing.int(7), missing.str("dflt"), missing.bool(True)) == (7, "dflt", True)
        assert (missing.float(0.5), missing.list([0]), missing.dict({"a": 1})) == (
            0.5,
            [0],
            {"a": 1},
        )
        wrong = await scoped.get("s.t")  # a string is no number, list or bool
        assert (wrong.int(3), wrong.float(1.5), wrong.bool(True), wrong.list()) == (
            3,
            1.5,
            True,
            [],
        )
        assert (await scoped.get("s.b")).int(4) == 4  # booleans are not numbers
        assert (await scoped.get("s.f")).int(4) == 4  # nor are floats integers

    async def test_scan_into_a_struct(self, config: Config) -> None:
        scoped = ScopedConfig(config, NS)
        await scoped.set("db", {"addr": "localhost", "tags": ["a"]})
        got = (await scoped.get("db")).scan(DbSettings)
        assert got == DbSettings("localhost", 5432, ["a"])
        assert (await scoped.get("nothing")).scan(Defaults) == Defaults()
        await scoped.set("db.port", "not a number")
        with pytest.raises(MicroError) as err:
            (await scoped.get("db")).scan(DbSettings)
        assert err.value.code == "bad_request"
        assert "port" in err.value.detail
        with pytest.raises(MicroError) as err:
            (await scoped.get("nothing")).scan(DbSettings)
        assert "addr" in err.value.detail

    # -- secrets ---------------------------------------------------------------------------------

    async def test_secrets_are_masked_unless_revealed(self, config: Config) -> None:
        await config.set(NS, "db", {"addr": "localhost"})
        await config.set(NS, "db.password", "hunter2", secret=True)
        await config.set(NS, "api", {"key": "k-123", "ids": [1, 2]}, secret=True)
        assert await config.get(NS) == {
            "db": {"addr": "localhost", "password": SECRET_MASK},
            "api": {"key": SECRET_MASK, "ids": SECRET_MASK},
        }
        assert await config.get(NS, "db.password") == SECRET_MASK
        assert await config.get(NS, "db.password", secrets=True) == "hunter2"
        assert await config.get(NS, "", secrets=True) == {
            "db": {"addr": "localhost", "password": "hunter2"},
            "api": {"key": "k-123", "ids": [1, 2]},
        }
        scoped = ScopedConfig(config, NS)
        assert (await scoped.get("api.ids", secrets=True)).list() == [1, 2]

    async def test_writing_a_masked_read_back_keeps_the_secrets(self, config: Config) -> None:
        await config.set(NS, "db", {"addr": "a", "password": "hunter2"})
        await config.set(NS, "db.password", "hunter2", secret=True)
        masked = await config.get(NS, "db")
        masked["addr"] = "b"
        await config.set(NS, "db", masked)
        assert await config.get(NS, "db", secrets=True) == {"addr": "b", "password": "hunter2"}
        await config.set(NS, "db.password", "plain now")  # an ordinary write replaces it
        assert await config.get(NS, "db.password") == "plain now"

    # -- watch -----------------------------------------------------------------------------------

    async def test_watch_sees_rapid_changes_in_order(self, config: Config) -> None:
        await config.get(NS)  # any connection is up: nothing delays the writes below
        watcher = config.watch(NS, "counter")
        try:
            for i in range(20):  # written right after watch(): the watcher must see all
                await config.set(NS, "counter", i)
            changes = await next_changes(watcher, 20)
        finally:
            await close(watcher)
        assert [c.value for c in changes] == list(range(20))
        assert {c.path for c in changes} == {"counter"}
        versions = [c.version for c in changes]
        assert versions == sorted(set(versions))  # strictly increasing

    async def test_watch_sees_writes_from_another_client(
        self, config: Config, config_peer: Config
    ) -> None:
        watcher = config.watch(NS, "shared")
        try:
            await config.get(NS, "shared")  # once a later call returned, the watch is live
            for i in range(10):  # one after the other, as fast as they go
                await config_peer.set(NS, f"shared.k{i}", i)
            await config_peer.delete(NS, "shared.k3")
            changes = await next_changes(watcher, 11)
        finally:
            await close(watcher)
        assert [(c.path, c.value) for c in changes[:10]] == [(f"shared.k{i}", i) for i in range(10)]
        assert (changes[10].path, changes[10].deleted, changes[10].value) == (
            "shared.k3",
            True,
            None,
        )
        versions = [c.version for c in changes]
        assert versions == sorted(set(versions))

    async def test_watch_of_a_subtree_ignores_unrelated_paths(self, config: Config) -> None:
        await config.set(NS, "app", {"db": {"addr": "a"}, "cache": {"ttl": 1}})
        watcher = config.watch(NS, "app.db")
        try:
            await config.set(NS, "app.cache.ttl", 2)  # a sibling
            await config.set(NS, "other", 1)  # elsewhere
            await config.set("other-ns", "app.db.addr", "x")  # another namespace
            await config.set(NS, "app", {"cache": {"ttl": 3}})  # an ancestor, not touching it
            await config.set(NS, "app.db.addr", "b")  # under it
            await config.set(NS, "app", {"db": {"port": 1}})  # an ancestor changing it
            await config.set(NS, "app", "flat")  # an ancestor replacing it
            await config.delete(NS, "app")  # already gone: no change
            await config.set(NS, "app.db", {"addr": "c"})  # at it
            changes = await next_changes(watcher, 4)
            await nothing_more(watcher)
        finally:
            await close(watcher)
        assert [(c.path, c.value, c.deleted) for c in changes] == [
            ("app.db.addr", "b", False),
            ("app.db", {"addr": "b", "port": 1}, False),
            ("app.db", None, True),
            ("app.db", {"addr": "c"}, False),
        ]

    async def test_watch_masks_secrets(self, config: Config) -> None:
        watcher = config.watch(NS)
        try:
            await config.set(NS, "token", "s3cr3t", secret=True)
            await config.set(NS, "", {"plain": 1})
            changes = await next_changes(watcher, 2)
        finally:
            await close(watcher)
        assert (changes[0].path, changes[0].value) == ("token", SECRET_MASK)
        assert changes[1].value == {"token": SECRET_MASK, "plain": 1}
        assert "s3cr3t" not in repr(changes)

    async def test_closed_watcher_ends(self, config: Config) -> None:
        watcher = config.watch(NS, "x")
        await config.set(NS, "x", 1)
        assert [c.value for c in await next_changes(watcher, 1)] == [1]
        await close(watcher)
        await config.set(NS, "x", 2)
        rest: list[Any] = [c async for c in watcher]
        assert rest == []

    async def test_watch_refuses_bad_paths(self, config: Config) -> None:
        for path in ["a..b", "a b"]:
            with pytest.raises(MicroError) as err:
                config.watch(NS, path)
            assert err.value.code == "bad_request"
