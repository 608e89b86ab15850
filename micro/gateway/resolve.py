"""Micro's rules for turning an HTTP path into a service and an endpoint.

=========================  ================  ==============
path                       service           endpoint
=========================  ================  ==============
``/foo``                   ``foo``           ``Foo.Call``
``/foo/bar``               ``foo``           ``Foo.Bar``
``/foo/bar/baz``           ``foo``           ``Bar.Baz``
``/foo/bar/baz/qux``       ``foo.bar``       ``Baz.Qux``
``/v1/foo``                ``v1.foo``        ``Foo.Call``
``/v1/foo/bar``            ``v1.foo``        ``Foo.Bar``
``/v1/foo/bar/baz``        ``v1.foo``        ``Bar.Baz``
``/foo-bar/baz-qux``       ``foo-bar``       ``FooBar.BazQux``
=========================  ================  ==============

Hyphenated (or underscored) segments become CamelCase in endpoint names; service names keep
them.
"""

from __future__ import annotations

import re

from ..errors import MicroError, bad_request

__all__ = ["resolve"]

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^v[0-9]+$")


def _camel(segment: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", segment) if part)


_CACHE: dict[str, tuple[str, str]] = {}
_CACHE_SIZE = 4096


def resolve(path: str) -> tuple[str, str]:
    """``(service, endpoint)`` for a request path; ``bad_request`` when it cannot map.
    Answers are cached (paths repeat: the rules are pure)."""
    found = _CACHE.get(path)
    if found is not None:
        return found
    found = _resolve(path)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    _CACHE[path] = found
    return found


def _resolve(path: str) -> tuple[str, str]:
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise bad_request("gateway", "no service in the path: use /{service}/{endpoint}")
    for part in parts:
        if not _SEGMENT.match(part):
            raise bad_request("gateway", f"invalid path segment {part!r}")
    if _VERSION.match(parts[0]) and len(parts) >= 2:
        service = f"{parts[0]}.{parts[1]}"
        rest = parts[2:]
        handler = _camel(parts[1])
    else:
        if len(parts) > 3:
            return ".".join(parts[:-2]), f"{_camel(parts[-2])}.{_camel(parts[-1])}"
        service = parts[0]
        rest = parts[1:]
        handler = _camel(parts[0])
    if not rest:
        return service, f"{handler}.Call"
    if len(rest) == 1:
        return service, f"{handler}.{_camel(rest[0])}"
    if len(rest) == 2:
        return service, f"{_camel(rest[0])}.{_camel(rest[1])}"
    raise MicroError("gateway", "not_found", f"path {path!r} has too many segments", 404)
