"""Fixtures of the token tests: a fake clock and one suite's backends.

``setup`` runs each test of the suite over :class:`StoreTokens` on a memory store, on a
SQLite store, and over :class:`RpcTokens` calling the ``token`` service (hosting
:class:`TokenHandler` over a memory store) through the real RPC protocol.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from micro import Service
from micro.store import Store
from micro.store.memory import MemoryStore
from micro.store.sqlite import SqliteStore
from micro.testing import serve
from micro.testing.conformance.clock import FakeClock
from micro.token import Tokens
from micro.token.handler import TokenHandler
from micro.token.rpc import RpcTokens
from micro.token.store import StoreTokens


def token_service(handler: TokenHandler, **options: Any) -> Service:
    """The ``token`` service hosting ``handler`` (``options`` go to :class:`Service`), with
    platform auth off where the service supports it: these tests exercise tokens, not the
    callers' credentials."""
    svc = Service("token", **options)
    svc.handler(handler, name="Token")
    if "auth" in inspect.signature(svc.use).parameters:
        svc.use(auth=False)
    return svc


@dataclass
class Setup:
    """The backend under test, the store holding its records, and the clock of both."""

    tokens: Tokens
    store: Store
    clock: FakeClock
    kind: str


@pytest.fixture
def clock() -> FakeClock:
    """Time that moves only when a test moves it."""
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "rpc"])
async def setup(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Setup]:
    """One backend of the suite (see the module docstring)."""
    kind: str = request.param
    if kind == "sqlite":
        sqlite = SqliteStore(tmp_path / "store.db", clock=clock)
        await sqlite.start()
        try:
            yield Setup(StoreTokens(sqlite, clock=clock), sqlite, clock, kind)
        finally:
            await sqlite.close()
        return
    memory = MemoryStore(clock=clock)
    if kind == "memory":
        try:
            yield Setup(StoreTokens(memory, clock=clock), memory, clock, kind)
        finally:
            await memory.close()
        return
    svc = token_service(TokenHandler(StoreTokens(memory, clock=clock)))
    async with serve(svc) as test_client:
        rpc = RpcTokens(test_client.client)
        try:
            yield Setup(rpc, memory, clock, kind)
        finally:
            await rpc.close()
    await memory.close()
