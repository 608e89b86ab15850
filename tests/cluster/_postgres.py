"""A real PostgreSQL 15 for tests: Debian's binaries, 127.0.0.1, a free port, a temp dir.

The server itself is :class:`bench.servers.PostgresServer` (shared with ``python -m bench
store --cluster``); here a missing installation skips the test loudly, and the fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench import servers
from bench.servers import PG_BIN

__all__ = ["PG_BIN", "PostgresServer", "postgres_dsn", "postgres_server", "running_postgres"]


class PostgresServer(servers.PostgresServer):
    """:class:`bench.servers.PostgresServer`, skipping the test when PostgreSQL is not
    installed."""

    def __init__(self) -> None:
        try:
            super().__init__()
        except servers.Missing as exc:
            pytest.skip(str(exc))


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started :class:`PostgresServer`, removed at the end."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the session (skips loudly when it is not installed)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a fresh, empty database of the session's server, one per test module."""
    return postgres_server.create_database()
