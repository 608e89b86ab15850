"""Shared pieces of the identity tests: certificates, servers on 127.0.0.1, a stand-in guard.

Every wait is bounded (``WAIT`` seconds), so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import msgspec

from micro import Context
from micro.auth import ADMIN, SERVICE, Claims
from micro.identity.ca import CertificateAuthority
from micro.identity.client import make_csr
from micro.identity.tls import Credentials, Material
from micro.service.endpoint import HandlerFunc, endpoints_of
from micro.transport.server import Router, RpcServer

T = TypeVar("T")

WAIT = 5.0


async def within(aw: Awaitable[T], seconds: float = WAIT) -> T:
    """Await ``aw``, failing the test instead of hanging when it takes too long."""
    return await asyncio.wait_for(aw, seconds)


def issue(
    ca: CertificateAuthority,
    service: str,
    namespace: str = "micro",
    ttl: float = 3600.0,
    trust: Sequence[CertificateAuthority] = (),
) -> Credentials:
    """Credentials for ``spiffe://<namespace>/<service>`` from ``ca``, trusting ``ca`` and
    the CAs of ``trust`` (their roots and CRLs)."""
    key, csr = make_csr()
    chain = ca.sign(csr, namespace=namespace, service=service, ttl=ttl)
    cas = [ca, *trust]
    bundle = b"".join(c.bundle_pem() for c in cas)
    crl = b"".join(c.crl_pem() for c in cas)
    return Credentials(Material(chain, key, bundle, crl))


class Hello(msgspec.Struct):
    name: str


class Reply(msgspec.Struct):
    message: str
    identity: str


class Greeter:
    """Answers with the caller's mTLS identity."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def hello(self, ctx: Context, req: Hello) -> Reply:
        self.seen.append(ctx.identity)
        return Reply(f"Hello {req.name}", ctx.identity)


# A stand-in for the auth guard: the token in ``authorization`` names a set of verified claims.
ACCOUNTS: dict[str, Claims] = {
    "admin-token": Claims(sub="admin", namespace="micro", type="user", scopes=[ADMIN]),
    "greeter-token": Claims(sub="greeter", namespace="micro", type="service", scopes=[SERVICE]),
    "acme-token": Claims(sub="billing", namespace="acme", type="service", scopes=[SERVICE]),
    "user-token": Claims(sub="alice", namespace="micro", type="user"),
}


def accounts_middleware(call: HandlerFunc) -> HandlerFunc:
    """Set ``ctx.account`` from the caller's token, as the auth guard does."""

    async def with_account(ctx: Context, request: Any) -> Any:
        ctx.account = ACCOUNTS.get(ctx.metadata.get("authorization", ""))
        return await call(ctx, request)

    return with_account


async def serve(
    handlers: Sequence[tuple[str, str, object]],
    ssl: Any = None,
    middleware: Sequence[Any] = (),
) -> RpcServer:
    """An RPC server on a free port of 127.0.0.1 serving ``(service, handler name,
    handler)`` triples."""
    router = Router()
    for service, name, handler in handlers:
        endpoints = endpoints_of(handler, name)
        for ep in endpoints:
            ep.wrap(list(middleware))
        router.add(service, endpoints)
    server = RpcServer(router)
    await server.start("127.0.0.1", 0, ssl=ssl)
    return server
