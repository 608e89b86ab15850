"""Helpers for the config tests: a config service served from a thread of its own, for tests
that run synchronous code (the CLI) or another process against it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from micro import Service
from micro.config import Config
from micro.config.handler import ConfigHandler
from micro.registry.memory import MemoryRegistry


def config_service(backend: Config) -> Service:
    """A ``config`` service hosting ``backend`` on a free loopback port."""
    svc = Service("config", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(ConfigHandler(backend), name="Config")
    return svc


@contextmanager
def threaded_server(backend: Config) -> Iterator[str]:
    """Serve ``backend`` from an event loop in a background thread; yield its address."""
    loop = asyncio.new_event_loop()
    svc = config_service(backend)
    started = threading.Event()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(svc.start(), loop).result(10)
        started.set()
        yield svc.address
    finally:
        if started.is_set():
            asyncio.run_coroutine_threadsafe(svc.stop(grace=1.0), loop).result(10)
        asyncio.run_coroutine_threadsafe(backend.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
