"""Gather the spans of one trace from every service node and assemble the tree."""

from __future__ import annotations

import asyncio
import logging

import msgspec

from ..client import Client
from ..errors import not_found
from ..registry import Registry
from . import Span
from .handler import check_trace_id
from .messages import TraceRequest, TraceResponse

__all__ = ["SpanNode", "TraceTree", "assemble", "collect_trace"]

log = logging.getLogger("micro.debug")

TRACE_ENDPOINT = "Debug.Trace"


class SpanNode(msgspec.Struct):
    """A span and the spans of the calls it made, by start time."""

    span: Span
    children: list[SpanNode] = []


class TraceTree(msgspec.Struct):
    """A trace: its roots (normally one; more when a parent span was not found, e.g. it was
    dropped from a full recorder or made by a caller that records no spans), and the nodes
    that could not be asked."""

    trace_id: str
    roots: list[SpanNode]
    spans: int
    unreachable: list[str] = []


def assemble(trace_id: str, spans: list[Span]) -> TraceTree:
    """Link ``spans`` (duplicates by span id dropped) into a tree by ``parent_id``."""
    by_id: dict[str, SpanNode] = {}
    for s in sorted(spans, key=lambda s: s.start):
        by_id.setdefault(s.span_id, SpanNode(s, []))
    roots: list[SpanNode] = []
    for node in by_id.values():
        parent = by_id.get(node.span.parent_id) if node.span.parent_id else None
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
    return TraceTree(trace_id, roots, len(by_id))


async def collect_trace(
    client: Client, registry: Registry, trace_id: str, timeout: float = 5.0
) -> TraceTree:
    """Ask ``Debug.Trace`` of every node of every service that serves it; ``not_found``
    when no node recorded a span of ``trace_id``. Nodes that fail are listed in
    ``unreachable``, not raised."""
    trace_id = check_trace_id(trace_id, "debug")
    targets = [
        (svc.name, node.address)
        for svc in await registry.list_services()
        if svc.endpoint(TRACE_ENDPOINT) is not None
        for node in svc.nodes
    ]
    targets = list(dict.fromkeys(targets))
    request = TraceRequest(trace_id)

    async def ask(name: str, address: str) -> list[Span]:
        reply = await client.call(
            name,
            TRACE_ENDPOINT,
            request,
            response_type=TraceResponse,
            address=address,
            timeout=timeout,
        )
        return list(reply.spans)

    results = await asyncio.gather(*(ask(n, a) for n, a in targets), return_exceptions=True)
    spans: list[Span] = []
    unreachable: list[str] = []
    for (name, address), result in zip(targets, results, strict=True):
        if isinstance(result, BaseException):
            log.debug("%s at %s: %s", name, address, result)
            unreachable.append(f"{name}@{address}")
        else:
            spans.extend(result)
    if not spans:
        raise not_found("debug", f"trace {trace_id} was not found on any service")
    tree = assemble(trace_id, spans)
    tree.unreachable = unreachable
    return tree
