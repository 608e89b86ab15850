"""Child processes of a benchmark: started, awaited until ready, always stopped.

Children run in their own session (a Ctrl-C at the terminal reaches only the benchmark,
which then stops them in order) and, on Linux, get SIGTERM if the benchmark dies, so that
no server outlives the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "background",
    "die_with_parent",
    "find_binary",
    "free_port",
    "sigterm_as_interrupt",
    "spawn",
    "stop",
    "wait_for_port",
]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: ask the kernel for SIGTERM when the parent goes away."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str) -> str | None:
    """``name`` from this interpreter's bin directory (the venv) or else from ``PATH``."""
    venv_bin = str(Path(sys.executable).parent)
    return shutil.which(name, path=os.pathsep.join([venv_bin, os.environ.get("PATH", "")]))


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"{proc.args!r} did not report ready within {timeout:.0f} s")
    line = proc.stdout.readline().decode().strip()
    if not line:
        raise RuntimeError(f"{proc.args!r} exited (code {proc.poll()}) before it was ready")
    return line


@contextlib.contextmanager
def spawn(
    argv: list[str],
    *,
    ready_prefix: str = "READY ",
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Run ``argv`` until the block ends; yield what follows ``ready_prefix`` on the first
    stdout line that starts with it. The child's stdin stays open as a lifeline: it may
    exit when it reads end-of-file there."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            line = _read_line(proc, max(0.0, deadline - time.monotonic()))
            if line.startswith(ready_prefix):
                break
        yield line[len(ready_prefix) :]
    finally:
        stop(proc)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`KeyboardInterrupt` as a Ctrl-C does, so
    the ``finally`` blocks stop every child and server (PostgreSQL's ``pg_ctl`` detaches it:
    it would not die with the benchmark). Main thread only."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def background(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output discarded) until the block ends."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        yield proc
    finally:
        stop(proc)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Return once 127.0.0.1:``port`` accepts connections; raise if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")
