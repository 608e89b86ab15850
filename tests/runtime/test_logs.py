"""Reading a service's log: the last lines, and following new ones."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from micro import MicroError
from micro.runtime import ServiceSpec
from micro.runtime.local import LocalRuntime

from .runtime_support import SLEEPER, WAIT, log_lines, wait_log, wait_status, write_source

COUNTER = """
    import time
    for i in range(50):
        print("line", i)
    print("partial", end="", flush=True)
    time.sleep(3600)
"""


async def test_the_last_lines(runtime: LocalRuntime, sources: Path) -> None:
    await runtime.create(ServiceSpec("count", str(write_source(sources, "count", COUNTER))))
    await wait_log(runtime, "count", "partial")
    assert await log_lines(runtime, "count", lines=3) == ["line 48", "line 49", "partial"]
    assert await log_lines(runtime, "count", lines=0) == []
    everything = await log_lines(runtime, "count", lines=10_000)
    assert everything[0].startswith("[micro runtime ")
    assert everything[1:] == [f"line {i}" for i in range(50)] + ["partial"]


async def test_a_long_log_is_read_from_its_end(
    runtime: LocalRuntime, data_dir: Path, sources: Path
) -> None:
    await runtime.create(ServiceSpec("long", str(write_source(sources, "long", """
        import time
        for i in range(20000):
            print("entry", i, "." * 40)
        print("done", flush=True)
        time.sleep(3600)
    """))))
    await wait_log(runtime, "long", "done", timeout=WAIT)
    last = await log_lines(runtime, "long", lines=5)
    assert last == [f"entry {i} {'.' * 40}" for i in range(19996, 20000)] + ["done"]


async def test_negative_lines_are_refused(runtime: LocalRuntime, sources: Path) -> None:
    await runtime.create(ServiceSpec("neg", str(write_source(sources, "neg", SLEEPER))))
    with pytest.raises(MicroError) as info:
        await log_lines(runtime, "neg", lines=-1)
    assert info.value.code == "bad_request"


async def test_follow_yields_lines_printed_after_subscribing(
    runtime: LocalRuntime, sources: Path
) -> None:
    source = write_source(sources, "follow", """
        import os, time
        print("waiting", flush=True)
        while not os.path.exists("go"):
            time.sleep(0.02)
        print("after", flush=True)
        time.sleep(3600)
    """)
    await runtime.create(ServiceSpec("follow", str(source)))
    await wait_log(runtime, "follow", "waiting")

    lines = runtime.logs("follow", lines=1, follow=True)
    assert await asyncio.wait_for(anext(lines), WAIT) == "waiting"
    (source / "go").touch()
    assert await asyncio.wait_for(anext(lines), WAIT) == "after"

    # deleting the service ends the stream
    await runtime.delete("follow")
    rest = await asyncio.wait_for(_collect(lines), WAIT)
    assert "after" not in rest


async def test_follow_waits_for_a_log_that_does_not_exist_yet(
    runtime: LocalRuntime, data_dir: Path, sources: Path
) -> None:
    await runtime.create(ServiceSpec("later", str(write_source(sources, "later", SLEEPER))))
    await wait_status(runtime, "later")
    log = data_dir / "logs" / "later.log"
    log.rename(log.with_name("moved.log"))  # as if rotated away

    lines = runtime.logs("later", lines=10, follow=True)
    first = asyncio.ensure_future(anext(lines))
    await asyncio.sleep(0.3)
    assert not first.done()
    log.write_text("fresh line\n")
    assert await asyncio.wait_for(first, WAIT) == "fresh line"
    await lines.aclose()  # type: ignore[attr-defined]


async def _collect(lines: object) -> list[str]:
    return [line async for line in lines]  # type: ignore[attr-defined]
