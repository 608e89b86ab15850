"""A small target service for the monitor tests."""

from __future__ import annotations

import asyncio

import msgspec

from micro import Context, Service, not_found
from micro.registry import Registry
from micro.registry.memory import MemoryRegistry


class StatusRequest(msgspec.Struct):
    name: str = "world"
    delay: float = 0.0


class Info(msgspec.Struct):
    version: str
    healthy: bool
    count: int


class StatusResponse(msgspec.Struct):
    greeting: str
    info: Info
    tags: list[str]


class Target:
    """``Target.Status`` answers a nested document; ``Target.Missing`` is always 404."""

    async def status(self, ctx: Context, req: StatusRequest) -> StatusResponse:
        if req.delay:
            await asyncio.sleep(req.delay)
        return StatusResponse(f"hello {req.name}", Info("1.2", True, 3), ["a", "b"])

    async def missing(self, ctx: Context, req: StatusRequest) -> StatusResponse:
        raise not_found("target", f"no {req.name}")


def target_service(registry: Registry | None = None, address: str = "127.0.0.1:0") -> Service:
    """A ``target`` service (not started)."""
    svc = Service("target", registry=registry or MemoryRegistry(), address=address)
    svc.handler(Target(), name="Target")
    return svc
