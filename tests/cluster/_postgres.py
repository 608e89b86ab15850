"""A real PostgreSQL 15 for tests: Debian's binaries, 127.0.0.1, a free port, a temp dir.

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to
the ``postgres`` user (``runuser -u postgres --``) and lives in a temp dir it owns.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["PG_BIN", "PostgresServer", "postgres_dsn", "postgres_server", "running_postgres"]

PG_BIN = Path(os.environ.get("MICRO_PG_BIN", "/usr/lib/postgresql/15/bin"))
_TIMEOUT = 60.0
_names = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL cluster (``initdb`` once, trust auth on 127.0.0.1 only).

    :meth:`stop` then :meth:`start` is the same server (port, data) coming back.
    """

    def __init__(self) -> None:
        if not (PG_BIN / "postgres").exists():
            pytest.skip(f"PostgreSQL not installed ({PG_BIN}): run scripts/install-servers")
        self.root = Path(tempfile.mkdtemp(prefix="micro-pg-"))
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"
        self.port = _free_port()
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self.as_postgres, *args], capture_output=True, timeout=_TIMEOUT, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout!r} {done.stderr!r}")

    def start(self) -> None:
        """Start the server and wait (bounded) until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= "
            "-c fsync=on -c synchronous_commit=on -c max_connections=100"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"),
            "-o", options, "-w", "-t", str(int(_TIMEOUT)), "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast, or immediate = a crash)."""
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
            "-t", str(int(_TIMEOUT)), "stop",
        )

    def dsn(self, database: str = "postgres") -> str:
        """The URL of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "micro") -> str:
        """A new empty database; its DSN."""
        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        self._run(
            str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"',
        )
        return self.dsn(name)

    def remove(self) -> None:
        """Stop (if running) and delete the cluster."""
        subprocess.run(
            [*self.as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
             "-w", "-t", "30", "stop"],
            capture_output=True, timeout=_TIMEOUT, check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


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
