"""Micro's path resolution rules."""

from __future__ import annotations

import pytest

from micro.errors import MicroError
from micro.gateway.resolve import resolve


@pytest.mark.parametrize(
    ("path", "service", "endpoint"),
    [
        ("/foo", "foo", "Foo.Call"),
        ("/foo/", "foo", "Foo.Call"),
        ("/foo/bar", "foo", "Foo.Bar"),
        ("/foo/bar/baz", "foo", "Bar.Baz"),
        ("/foo/bar/baz/qux", "foo.bar", "Baz.Qux"),
        ("/v1/foo", "v1.foo", "Foo.Call"),
        ("/v1/foo/bar", "v1.foo", "Foo.Bar"),
        ("/v1/foo/bar/baz", "v1.foo", "Bar.Baz"),
        ("/foo-bar/baz-qux", "foo-bar", "FooBar.BazQux"),
        ("/helloworld/say_hello", "helloworld", "Helloworld.SayHello"),
        ("/foo/other-handler/do-it", "foo", "OtherHandler.DoIt"),
    ],
)
def test_rules(path: str, service: str, endpoint: str) -> None:
    assert resolve(path) == (service, endpoint)


@pytest.mark.parametrize("path", ["/", "", "/foo/%00", "/../etc", "/foo/ba r"])
def test_unmappable_paths_are_bad_requests(path: str) -> None:
    with pytest.raises(MicroError) as info:
        resolve(path)
    assert info.value.status == 400
