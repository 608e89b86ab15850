"""The transports the RPC benchmark compares, one module each.

Every module provides the same four things:

``NAME``
    The name used on the command line and in the result rows.
``broker() -> ContextManager[str]``
    Anything the server needs outside itself (NATS: a ``nats-server``), run in the
    benchmark process for the whole transport; yields the argument passed to ``serve``.
``serve(arg) -> (address, stop)``
    In the server child: start an echo server on 127.0.0.1; return the address a client
    connects to and a coroutine function that stops the server.
``connect(address, inflight) -> EchoClient``
    In the benchmark process: a client ready to make ``inflight`` concurrent calls.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Awaitable, Callable, Iterator
from types import ModuleType
from typing import Any, Protocol

__all__ = [
    "DEFAULT",
    "MESSAGE",
    "NAMES",
    "EchoClient",
    "Stop",
    "Unavailable",
    "load",
    "no_broker",
]

NAMES: tuple[str, ...] = ("micro", "micro-auth", "micro-tls", "grpc", "aiohttp", "nats", "bare")
"""Every transport, in the order the benchmark runs and reports them."""

DEFAULT: tuple[str, ...] = ("micro", "grpc", "aiohttp", "nats", "bare")
"""What runs when none are named (``micro-auth`` and ``micro-tls`` join with ``python -m
bench rpc --auth`` / ``--tls``)."""

MESSAGE = "hello from the micro benchmark"
"""What every echo call sends and expects back."""

Stop = Callable[[], Awaitable[Any]]
"""Stops a server started by ``serve``."""


class Unavailable(Exception):
    """The transport cannot run on this machine (e.g. no ``nats-server``); skip it."""


class EchoClient(Protocol):
    """One client of an echo server."""

    expected: Any
    """What :meth:`call` returns when the echo is right."""

    async def call(self) -> Any:
        """One echo round trip; returns the echoed message."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@contextlib.contextmanager
def no_broker() -> Iterator[str]:
    """The ``broker`` of transports that need nothing outside the server."""
    yield ""


def load(name: str) -> ModuleType:
    """The module of transport ``name``."""
    if name not in NAMES:
        raise ValueError(f"unknown transport {name!r} (known: {', '.join(NAMES)})")
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
