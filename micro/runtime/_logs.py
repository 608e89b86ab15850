"""Service log files: rotation, a runtime note, the last lines, and following new ones."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO

__all__ = ["read_log", "read_logs", "rotate", "write_note"]

_BLOCK = 8192
_MAX_LINE = 64 * 1024  # a longer run of output without a newline is cut into lines


def rotate(path: Path, max_bytes: int) -> None:
    """Keep one old log: when ``path`` is over ``max_bytes``, it becomes ``<path>.1``."""
    try:
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def write_note(out: IO[bytes], text: str) -> None:
    """Append a line of the runtime's own (start, exit, restart) to a service's log."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    out.write(f"[micro runtime {stamp}] {text}\n".encode())
    out.flush()


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r")


def _tail(f: IO[bytes], lines: int) -> tuple[list[bytes], bytes]:
    """The last ``lines`` complete lines of ``f`` and the unfinished line after them; leaves
    ``f`` positioned at the end of what was read."""
    size = os.fstat(f.fileno()).st_size
    data = b""
    pos = size
    while lines > 0 and pos > 0 and data.count(b"\n") <= lines:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    f.seek(size)
    complete, _, pending = data.rpartition(b"\n")
    found = complete.split(b"\n") if complete or data.startswith(b"\n") else []
    if pos > 0 and found:
        found = found[1:]  # the first one may have started before the data read
    return found[-lines:] if lines > 0 else [], pending


def _open(path: Path) -> IO[bytes] | None:
    try:
        return open(path, "rb")  # closed by read_log
    except FileNotFoundError:
        return None


def _rotated(path: Path, f: IO[bytes]) -> bool:
    """True when ``path`` no longer names the file ``f`` reads (renamed or removed)."""
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return True


async def read_log(
    path: Path, lines: int, follow: bool, alive: Callable[[], bool], poll: float = 0.2
) -> AsyncIterator[str]:
    """The last ``lines`` lines of the log at ``path``; with ``follow``, then every line
    appended later (across rotations), until ``alive()`` turns false."""
    f = _open(path)
    pending = b""
    try:
        if f is not None:
            found, pending = _tail(f, lines)
            if not follow and pending:
                found = [*found, pending][-lines:] if lines > 0 else []
            for line in found:
                yield _decode(line)
        if not follow:
            return
        while True:
            last_round = not alive()  # read what was written before it ended, then stop
            if f is None:
                f = _open(path)
            while f is not None:
                chunk = f.read(_BLOCK)
                if chunk:
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for line in complete:
                        yield _decode(line)
                    if len(pending) > _MAX_LINE:
                        yield _decode(pending)
                        pending = b""
                elif _rotated(path, f):
                    f.close()
                    f = _open(path)
                else:
                    if os.fstat(f.fileno()).st_size < f.tell():
                        f.seek(0)  # truncated in place
                    break
            if last_round:
                if pending:
                    yield _decode(pending)
                return
            await asyncio.sleep(poll)
    finally:
        if f is not None:
            f.close()


async def read_logs(
    paths: list[Path], lines: int, follow: bool, alive: Callable[[], bool], poll: float = 0.2
) -> AsyncIterator[str]:
    """:func:`read_log` of one log; of several (the instances of a service), each line is
    prefixed with ``[INDEX] ``, its position in ``paths``: without ``follow`` the last
    ``lines`` lines of each log in turn, with it every new line as it comes from any log."""
    if len(paths) == 1:
        async for line in read_log(paths[0], lines, follow, alive, poll):
            yield line
        return
    if not follow:
        for index, path in enumerate(paths):
            async for line in read_log(path, lines, False, alive, poll):
                yield f"[{index}] {line}"
        return
    queue: asyncio.Queue[str | None] = asyncio.Queue(1000)

    async def pump(index: int, path: Path) -> None:
        try:
            async for line in read_log(path, lines, True, alive, poll):
                await queue.put(f"[{index}] {line}")
        finally:
            await queue.put(None)

    tasks = [asyncio.ensure_future(pump(i, path)) for i, path in enumerate(paths)]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
