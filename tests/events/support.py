"""Helpers of the events tests."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator

from micro.events import Consumer, Event


async def receive(consumer: Consumer, timeout: float = 5.0) -> Event:
    """The next event of ``consumer``, failing the test after ``timeout`` seconds."""
    return await asyncio.wait_for(consumer.__anext__(), timeout)


@contextlib.contextmanager
def start_child(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with its stdout piped; it is killed at the end of the block."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
