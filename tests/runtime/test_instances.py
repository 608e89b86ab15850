"""Several instances of one service: each its own process, log and restarts."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pytest

from micro import MicroError
from micro.runtime import Limits, ServiceSpec
from micro.runtime.local import LocalRuntime
from micro.testing import eventually

from .runtime_support import SLEEPER, alive, log_lines, make_runtime, wait_status, write_source

INSTANCE = """
    import os, time
    print("instance", os.environ["MICRO_RUNTIME_INSTANCE"], flush=True)
    time.sleep(3600)
"""


async def test_three_instances_run_as_three_processes(
    runtime: LocalRuntime, data_dir: Path, sources: Path
) -> None:
    source = write_source(sources, "multi", INSTANCE)
    await runtime.create(ServiceSpec("multi", str(source), version="v1", instances=3))

    st = await wait_status(runtime, "multi")
    assert [i.index for i in st.instances] == [0, 1, 2]
    pids = [i.pid for i in st.instances]
    assert all(pid is not None and alive(pid) for pid in pids) and len(set(pids)) == 3
    assert st.pid == pids[0] and st.restarts == 0
    assert {i.version for i in st.instances} == {"v1"}
    # each instance has its own log file; logs() shows them all, tagged with the index
    assert (data_dir / "logs" / "multi.log").exists()
    assert (data_dir / "logs" / "multi.2.log").exists()

    async def every_instance_printed() -> bool:
        lines = await log_lines(runtime, "multi")
        return all(f"[{i}] instance {i}" in lines for i in range(3))

    await eventually(every_instance_printed, message="a line from every instance")
    saved = json.loads((data_dir / "runtime" / "services.json").read_bytes())
    assert sorted(saved["services"][0]["pids"]) == sorted(p for p in pids if p is not None)


async def test_one_killed_instance_is_restarted_alone(
    runtime: LocalRuntime, sources: Path
) -> None:
    source = write_source(sources, "multi", SLEEPER)
    await runtime.create(ServiceSpec("multi", str(source), instances=2))
    first = await wait_status(runtime, "multi")
    victim, other = first.instances[1].pid, first.instances[0].pid
    assert victim is not None and other is not None

    os.kill(victim, signal.SIGKILL)

    async def restarted() -> bool:
        [st] = await runtime.read("multi")
        return st.status == "running" and st.instances[1].pid not in (None, victim)

    await eventually(restarted, message="instance 1 restarted")
    [st] = await runtime.read("multi")
    assert st.restarts == 1 and [i.restarts for i in st.instances] == [0, 1]
    assert st.instances[0].pid == other  # untouched
    assert st.instances[1].last_exit == -signal.SIGKILL


async def test_follow_merges_the_logs_of_all_instances(
    runtime: LocalRuntime, sources: Path
) -> None:
    source = write_source(sources, "multi", INSTANCE)
    await runtime.create(ServiceSpec("multi", str(source), instances=2))
    seen: set[str] = set()
    lines = cast(AsyncGenerator[str, None], runtime.logs("multi", lines=0, follow=True))
    try:
        async for line in lines:
            seen.add(line)
            if {"[0] instance 0", "[1] instance 1"} <= seen:
                break
    finally:
        await lines.aclose()
    assert {"[0] instance 0", "[1] instance 1"} <= seen


async def test_delete_stops_every_instance(runtime: LocalRuntime, sources: Path) -> None:
    await runtime.create(
        ServiceSpec("multi", str(write_source(sources, "multi", SLEEPER)), instances=3)
    )
    st = await wait_status(runtime, "multi")
    await runtime.delete("multi")
    assert not any(alive(i.pid or 0) for i in st.instances)


@pytest.mark.parametrize(
    ("field", "spec_args"),
    [
        ("instances must be 1 to 32, got 0", {"instances": 0}),
        ("instances must be 1 to 32, got 33", {"instances": 33}),
        ("limits.memory_mb", {"limits": Limits(memory_mb=0)}),
        ("limits.open_files", {"limits": Limits(open_files=-1)}),
        ("config: needs a path", {"env": {"A": "config:"}}),
    ],
)
async def test_bad_instances_and_limits_are_refused(
    runtime: LocalRuntime, sources: Path, field: str, spec_args: dict[str, object]
) -> None:
    source = str(write_source(sources, "bad", SLEEPER))
    with pytest.raises(MicroError) as info:
        await runtime.create(ServiceSpec("bad", source, **spec_args))  # type: ignore[arg-type]
    assert info.value.code == "bad_request" and field in info.value.detail
    assert await runtime.read() == []


async def test_instances_come_back_with_the_next_runtime(data_dir: Path, sources: Path) -> None:
    source = str(write_source(sources, "multi", SLEEPER))
    async with make_runtime(data_dir) as first:
        await first.create(ServiceSpec("multi", source, instances=3))
        before = await wait_status(first, "multi")
    assert not any(alive(i.pid or 0) for i in before.instances)
    async with make_runtime(data_dir) as second:
        after = await wait_status(second, "multi")
        assert len(after.instances) == 3
        assert not {i.pid for i in after.instances} & {i.pid for i in before.instances}
