"""Explicit HTTP routes: the route table the gateway builds from the registry.

A service declares routes with :func:`micro.route` (``@route("GET", "/users/{id}")``); each
endpoint's routes travel in its registry metadata under ``http`` as JSON
(``[["GET","/users/{id}"]]``). :class:`RouteTable` lists the registry once and then follows its
watch stream, so a service registered later is routable without restarting the gateway (if
the watch breaks, the table is read afresh with backoff).

Matching, done before Micro's path rules:

- A template's segments are literals or whole-segment parameters ``{name}``; a request path
  matches a template with as many segments (empty segments ignored, each segment
  percent-decoded before comparing).
- Among the templates a path matches, literal segments beat parameters, leftmost first
  (``/users/me`` before ``/users/{id}``), then the earliest registered service.
- Routes are per namespace: a service stored as ``acme/users`` serves its routes to callers of
  namespace ``acme`` only; unprefixed services to namespace ``micro`` (and to everyone when
  auth is off).
- Two services declaring the same method and template (parameter names aside): the service
  registered first keeps it and a warning is logged; the other keeps its other routes.

:func:`coerce` types path parameters and query values as the endpoint's request schema says
(``"42"`` becomes ``42`` for an integer field); values that do not parse are passed as strings
so the service's validation names the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import msgspec

from ..auth.tenancy import split
from ..registry import EndpointInfo, Event, Registry, ServiceInfo

__all__ = ["Lookup", "Route", "RouteTable", "coerce", "field_schemas", "path_segments"]

log = logging.getLogger("micro.gateway")

_routes_decoder = msgspec.json.Decoder(list[tuple[str, str]])
_MAX_BACKOFF = 5.0
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")


@dataclass(frozen=True, slots=True)
class Route:
    """One explicit route: ``method template`` served by ``service``'s ``endpoint``."""

    method: str
    template: str
    service: str  # as stored in the registry (``ns/name`` outside namespace micro)
    endpoint: str
    segments: tuple[str, ...]  # literals, and parameter names in braces
    seq: int  # when the service was first seen: lower wins conflicts

    @property
    def shape(self) -> tuple[str, ...]:
        """The template with parameter names erased: two routes of one shape conflict."""
        return tuple("{}" if s.startswith("{") else s for s in self.segments)

    @property
    def rank(self) -> tuple[tuple[int, ...], int]:
        """Sort key: literals before parameters, leftmost first; then first registered."""
        return tuple(1 if s.startswith("{") else 0 for s in self.segments), self.seq

    def bind(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters when ``segments`` match this template, else ``None``."""
        params: dict[str, str] = {}
        for want, got in zip(self.segments, segments, strict=True):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


@dataclass(slots=True)
class Lookup:
    """The outcome of :meth:`RouteTable.lookup`: the route and its parameters, or the
    methods the path accepts (non-empty when a template matched but no method did)."""

    route: Route | None = None
    params: dict[str, str] = field(default_factory=dict)
    allow: list[str] = field(default_factory=list)


def path_segments(raw_path: str) -> list[str]:
    """The percent-decoded, non-empty segments of a raw (still encoded) request path."""
    return [unquote(s) if "%" in s else s for s in raw_path.split("?", 1)[0].split("/") if s]


class RouteTable:
    """Routes of every registered service, kept current from ``registry``'s watch."""

    def __init__(self, registry: Registry | None) -> None:
        self.registry = registry
        self._versions: dict[str, dict[str, ServiceInfo]] = {}  # stored name -> version -> info
        self._seq: dict[str, int] = {}
        self._counter = itertools.count()
        self._by_ns: dict[str, dict[int, list[Route]]] = {}  # ns -> segment count -> routes
        self._routes: dict[str, frozenset[tuple[str, str, str]]] = {}  # service -> routes
        self._warned: set[tuple[str, str, tuple[str, ...], str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._changed = asyncio.Event()  # set (and replaced) on every change of the routes

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, wait: float = 5.0) -> None:
        """Read the registry and follow its changes; waits up to ``wait`` seconds for the
        first read (the table fills in the background if the registry is slow)."""
        if self.registry is None or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._follow(self.registry))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loaded.wait(), wait)

    async def stop(self) -> None:
        """Stop following the registry."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _follow(self, registry: Registry) -> None:
        delay = 0.1
        while True:
            watch = registry.watch()  # subscribe first, so nothing between list and watch is lost
            try:
                self.load(await registry.list_services())
                self._loaded.set()
                async for event in watch:
                    self.apply(event)
                    delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("gateway routes: registry watch broke (%s); reading again", exc)
            finally:
                close = getattr(watch, "aclose", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        await close()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _MAX_BACKOFF)

    # -- updates ---------------------------------------------------------------------------

    def load(self, services: Iterable[ServiceInfo]) -> None:
        """Replace the table with ``services`` (every version of every service)."""
        versions: dict[str, dict[str, ServiceInfo]] = {}
        for svc in services:
            versions.setdefault(svc.name, {})[svc.version] = svc
        for name in sorted(versions.keys() - self._seq.keys()):
            self._seq[name] = next(self._counter)
        for name in self._seq.keys() - versions.keys():
            del self._seq[name]
        self._versions = versions
        self._rebuild()

    def apply(self, event: Event) -> None:
        """Fold one registry change into the table."""
        svc = event.service
        if event.type == "delete":
            versions = self._versions.get(svc.name)
            if versions is None:
                return
            versions.pop(svc.version, None)
            if not versions:
                del self._versions[svc.name]
                self._seq.pop(svc.name, None)
        else:
            if svc.name not in self._seq:
                self._seq[svc.name] = next(self._counter)
            self._versions.setdefault(svc.name, {})[svc.version] = svc
        routes = self._declared(svc.name)
        if routes != self._routes.get(svc.name, frozenset()):
            self._rebuild()

    def _declared(self, service: str) -> frozenset[tuple[str, str, str]]:
        """``(method, template, endpoint)`` declared by any live version of ``service``."""
        found: set[tuple[str, str, str]] = set()
        for info in self._versions.get(service, {}).values():
            for ep in info.endpoints:
                raw = ep.metadata.get("http")
                if not raw:
                    continue
                try:
                    pairs = _routes_decoder.decode(raw)
                except msgspec.DecodeError:
                    log.warning("gateway routes: %s %s has invalid http metadata", service, ep.name)
                    continue
                found.update((method.upper(), template, ep.name) for method, template in pairs)
        return frozenset(found)

    def _rebuild(self) -> None:
        declared = {name: self._declared(name) for name in self._versions}
        self._routes = {name: routes for name, routes in declared.items() if routes}
        owners: dict[tuple[str, str, tuple[str, ...]], Route] = {}
        order = sorted(self._routes, key=lambda n: self._seq.get(n, 0))
        for name in order:
            for method, template, endpoint in sorted(self._routes[name]):
                segments = tuple(s for s in template.split("/") if s)
                route = Route(method, template, name, endpoint, segments, self._seq.get(name, 0))
                namespace = split(name)[0]
                key = (namespace, method, route.shape)
                owner = owners.get(key)
                if owner is None:
                    owners[key] = route
                    continue
                warned = (*key, name)
                if warned not in self._warned:
                    self._warned.add(warned)
                    log.warning(
                        "gateway routes: %s %s of %s (%s) conflicts with %s of %s (%s), "
                        "registered first; ignoring it",
                        method,
                        template,
                        name,
                        endpoint,
                        owner.template,
                        owner.service,
                        owner.endpoint,
                    )
        by_ns: dict[str, dict[int, list[Route]]] = {}
        for (namespace, _, _), route in owners.items():
            by_ns.setdefault(namespace, {}).setdefault(len(route.segments), []).append(route)
        for groups in by_ns.values():
            for routes in groups.values():
                routes.sort(key=lambda r: r.rank)
        self._by_ns = by_ns
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_until(self, predicate: Callable[[RouteTable], bool]) -> None:
        """Return once ``predicate(self)`` holds, checking after each change of the routes
        (bound it with a timeout)."""
        while not predicate(self):
            await self._changed.wait()

    # -- queries ---------------------------------------------------------------------------

    def serves(self, namespace: str) -> bool:
        """Whether namespace ``namespace`` has any route (else :meth:`lookup` finds none)."""
        return namespace in self._by_ns

    def lookup(self, namespace: str, method: str, segments: list[str]) -> Lookup:
        """The route of namespace ``namespace`` serving ``method`` at ``segments``."""
        allow: list[str] = []
        for route in self._by_ns.get(namespace, {}).get(len(segments), ()):
            params = route.bind(segments)
            if params is None:
                continue
            if route.method == method:
                return Lookup(route, params)
            if route.method not in allow:
                allow.append(route.method)
        return Lookup(allow=sorted(allow))

    def routes(self) -> list[Route]:
        """Every route served, in matching order per namespace."""
        return [
            route
            for groups in self._by_ns.values()
            for routes in groups.values()
            for route in routes
        ]

    def endpoint(self, service: str, endpoint: str) -> EndpointInfo | None:
        """What the registry says of ``service`` (stored name) / ``endpoint``."""
        for info in self._versions.get(service, {}).values():
            found = info.endpoint(endpoint)
            if found is not None:
                return found
        return None


def field_schemas(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The properties of a request's JSON Schema (``$ref`` to ``$defs`` followed)."""
    resolved = _deref(schema, schema)
    props = resolved.get("properties")
    if not isinstance(props, dict):
        return {}
    return {k: _deref(v, schema) for k, v in props.items() if isinstance(v, dict)}


def _deref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    for _ in range(8):  # a chain of references, never a cycle worth following further
        ref = node.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            return node
        target = root.get("$defs", {}).get(ref[len("#/$defs/") :])
        if not isinstance(target, dict):
            return node
        node = target
    return node


def _types(schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """The JSON types a (dereferenced) field schema allows, ``null`` last."""
    kinds: list[str] = []
    declared = schema.get("type")
    if isinstance(declared, str):
        kinds.append(declared)
    elif isinstance(declared, list):
        kinds.extend(t for t in declared if isinstance(t, str))
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key, ()):
            if isinstance(option, dict):
                kinds.extend(_types(_deref(option, root), root))
    return sorted(set(kinds), key=lambda t: t == "null")


def coerce(schema: dict[str, Any] | None, root: dict[str, Any], values: list[str]) -> Any:
    """``values`` (one, or repeated in a query string) typed as ``schema`` says: integer,
    number, boolean, or an array of them; anything else (or a value that does not parse)
    stays a string. Without a schema, the last value as a string."""
    if schema is None:
        return values[-1]
    kinds = _types(schema, root)
    if "array" in kinds:
        items = schema.get("items")
        item = _deref(items, root) if isinstance(items, dict) else None
        return [coerce(item, root, [v]) for v in values]
    value = values[-1]
    for kind in kinds:
        if kind == "integer":
            if _INTEGER.fullmatch(value):
                return int(value)
        elif kind == "number":
            try:
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number):
                return number
        elif kind == "boolean":
            lowered = value.lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0"):
                return False
    return value
