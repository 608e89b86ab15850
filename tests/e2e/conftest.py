"""A real ``micro server`` process and a way to run the real ``micro`` CLI against it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MICRO = [sys.executable, "-m", "micro.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, subprocess.CalledProcessError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout} s (last: {last!r})")


@dataclass
class ServerProcess:
    """``micro server`` in a child process, with the CLI pointed at it."""

    data_dir: Path
    rpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MICRO_SERVER=f"127.0.0.1:{self.rpc_port}",
            MICRO_DATA_DIR=str(self.data_dir),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        log = open(self.data_dir / "server.out", "ab")
        self.proc = subprocess.Popen(
            [
                *MICRO,
                "server",
                "--address",
                f"127.0.0.1:{self.rpc_port}",
                "--gateway",
                f"127.0.0.1:{self.http_port}",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )
        log.close()
        wait_for(lambda: self.micro("services", "-o", "json").returncode == 0, what="server up")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def micro(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the CLI; never raises on a non-zero exit."""
        return subprocess.run(
            [*MICRO, *args],
            env=self.env,
            cwd=cwd or REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def micro_json(self, *args: str) -> Any:
        result = self.micro(*args, "-o", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def log(self) -> str:
        path = self.data_dir / "server.out"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from run_server(tmp_path)


def run_server(tmp_path: Path, **extra_env: str) -> Iterator[ServerProcess]:
    """A started server process (``extra_env`` added to its and the CLI's environment),
    stopped afterwards with everything its runtime started."""
    data = tmp_path / "data"
    data.mkdir()
    srv = ServerProcess(data, extra_env=extra_env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        # anything the runtime started must be gone with the server
        for pid in _runtime_pids(data):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _runtime_pids(data: Path) -> list[int]:
    state = data / "runtime" / "services.json"
    if not state.exists():
        return []
    try:
        doc = json.loads(state.read_text())
    except ValueError:
        return []
    items = doc.get("services", doc) if isinstance(doc, dict) else doc
    pids = []
    for item in items if isinstance(items, list) else items.values():
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("pid"), int):  # the format before several instances
            pids.append(item["pid"])
        pids.extend(pid for pid in item.get("pids", []) if isinstance(pid, int))
    return pids
