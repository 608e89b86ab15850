"""Validation at the edge, typed values, and the scoped view a service gets."""

from __future__ import annotations

import msgspec
import pytest

from micro.config import MAX_DEPTH, MAX_NESTING
from micro.config._paths import normalize, split_path
from micro.config.memory import MemoryConfig
from micro.config.scoped import ScopedConfig
from micro.config.values import Value
from micro.errors import MicroError


def test_paths_split_and_refuse_with_the_reason() -> None:
    assert split_path("") == ()
    assert split_path("svc.db-1.addr_2") == ("svc", "db-1", "addr_2")
    cases = {
        "a..b": "empty segment",
        "a b": "segment 'a b'",
        "x" * 513: "513 characters",
        ".".join(["a"] * (MAX_DEPTH + 1)): "deeper",
    }
    for path, why in cases.items():
        with pytest.raises(MicroError, match=why) as err:
            split_path(path)
        assert err.value.code == "bad_request"
    with pytest.raises(MicroError, match="string"):
        split_path(5)


def test_values_are_copied_checked_and_named_where_wrong() -> None:
    given = {"a": (1, 2), "l": [{"any key at all": 1}]}
    clean = normalize(given, ("root",))
    assert clean == {"a": [1, 2], "l": [{"any key at all": 1}]}  # keys inside lists are free
    assert clean["l"][0] is not given["l"][0]
    with pytest.raises(MicroError, match=r"key 'b c' at 'root\.a'"):
        normalize({"a": {"b c": 1}}, ("root",))
    with pytest.raises(MicroError, match="bytes, which is not JSON"):
        normalize({"a": b"raw"}, ())
    with pytest.raises(MicroError, match="non-string key"):
        normalize({1: "x"}, ())
    with pytest.raises(MicroError, match="not finite"):
        normalize([float("inf")], ())
    with pytest.raises(MicroError, match="segments"):
        normalize({"k": 1}, tuple(["a"] * MAX_DEPTH))


def test_deep_nesting_is_refused_without_recursing_to_a_crash() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(10_000):
        inner: list[object] = []
        node.append(inner)
        node = inner
    with pytest.raises(MicroError, match=f"deeper than {MAX_NESTING}"):
        normalize(deep, ())


def test_value_getters_and_sub_values() -> None:
    value = Value("svc", {"db": {"port": 5432, "ratio": 0.5}, "name": None})
    assert value.get("db.port").int() == 5432
    assert value.get("db.port").path == "svc.db.port"
    assert value.get("db.ratio").float() == 0.5
    assert value.get("db.port.deeper").int(1) == 1
    assert not value.get("name").exists
    assert Value("", None).dict() == {}
    assert "5432" in repr(value)


def test_scan_accepts_any_msgspec_type_and_names_the_mismatch() -> None:
    assert Value("ids", [1, 2]).scan(list[int]) == [1, 2]
    with pytest.raises(MicroError) as err:
        Value("ids", [1, "2"]).scan(list[int])
    assert err.value.code == "bad_request" and "$[1]" in err.value.detail

    class Limits(msgspec.Struct):
        burst: int

    with pytest.raises(MicroError, match=r"\$\.burst") as err:
        Value("limits", {"burst": "many"}).scan(Limits)
    assert "'limits'" in err.value.detail and "Limits" in err.value.detail


async def test_scoped_config_stays_in_its_namespace() -> None:
    backend = MemoryConfig()
    mine, theirs = ScopedConfig(backend, "mine"), ScopedConfig(backend, "theirs")
    await mine.set("a", {"b": 1})
    await mine.set("s", "x", secret=True)
    await theirs.set("a", 2)
    assert (await mine.get("a.b")).int() == 1
    assert (await mine.get("s")).str() == "[secret]"
    assert (await mine.get("s", secrets=True)).str() == "x"
    assert (await theirs.get()).dict() == {"a": 2}
    watcher = mine.watch("a")
    await theirs.set("a", 3)
    await mine.delete("a.b")
    change = await anext(watcher)
    assert (change.path, change.deleted) == ("a.b", True)
    assert await backend.get("mine") == {"a": {}, "s": "[secret]"}
    with pytest.raises(MicroError):
        ScopedConfig(backend, "bad namespace")
    assert "mine" in repr(mine)
