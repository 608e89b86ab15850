"""Running as a process: the event loop, logging, and stopping on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["configure_logging", "run", "serve_until_signal"]

T = TypeVar("T")

log = logging.getLogger("micro.service")


def configure_logging(name: str) -> None:
    """Plain one-line logs on stderr (the runtime captures them per service);
    ``MICRO_LOG_LEVEL`` sets the level."""
    level = os.environ.get("MICRO_LOG_LEVEL", "INFO").upper()
    from ..debug.logs import configure_json_logging, wants_json

    if wants_json():
        configure_json_logging(name, level)
        return
    logging.basicConfig(
        level=level, format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s"
    )


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)  # type: ignore[no-any-return,unused-ignore]


async def serve_until_signal(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]], name: str
) -> None:
    """``start()``, wait for SIGTERM or SIGINT, then ``stop()`` (also when start fails)."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    try:
        await start()
        await signalled.wait()
        log.info("%s: stopping", name)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await stop()
