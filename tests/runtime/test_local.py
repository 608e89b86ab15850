"""The local runtime runs, restarts, stops and updates service processes."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
from pathlib import Path

from micro.runtime import ServiceSpec
from micro.runtime.local import LocalRuntime
from micro.testing import eventually

from .runtime_support import (
    SLEEPER,
    WAIT,
    alive,
    kill,
    log_lines,
    make_runtime,
    status,
    wait_log,
    wait_status,
    write_source,
)


async def test_create_runs_the_service_and_captures_its_output(
    runtime: LocalRuntime, sources: Path
) -> None:
    source = write_source(sources, "hello", SLEEPER)
    await runtime.create(ServiceSpec("hello", str(source), version="v1"))

    st = await wait_status(runtime, "hello")
    assert st.pid is not None and alive(st.pid)
    assert (st.version, st.source, st.restarts, st.last_exit) == ("v1", str(source), 0, None)
    assert st.started_at is not None and st.uptime >= 0
    log = await wait_log(runtime, "hello", "hello from hello")
    assert any("starting hello v1" in line for line in log)  # the runtime's own note
    assert [s.name for s in await runtime.read()] == ["hello"]


async def test_the_process_gets_its_environment(runtime: LocalRuntime, sources: Path) -> None:
    source = write_source(sources, "env", """
        import os, sys, time
        keys = ["MICRO_SERVER", "MICRO_SERVICE_NAME", "GREETING"]
        print("ENV", *[os.environ.get(k) for k in keys], os.getcwd(), sys.path[0], flush=True)
        time.sleep(3600)
    """)
    await runtime.create(ServiceSpec("env", str(source), env={"GREETING": "hi"}))
    log = await wait_log(runtime, "env", "ENV ")
    line = next(line for line in log if line.startswith("ENV "))
    assert line.split() == ["ENV", "127.0.0.1:18081", "env", "hi", str(source), str(source)]


async def test_a_killed_process_is_restarted(runtime: LocalRuntime, sources: Path) -> None:
    await runtime.create(ServiceSpec("victim", str(write_source(sources, "victim", SLEEPER))))
    first = await wait_status(runtime, "victim")
    assert first.pid is not None

    os.kill(first.pid, signal.SIGKILL)

    again = await wait_status(runtime, "victim", restarts=1, not_pid=first.pid)
    assert again.last_exit == -signal.SIGKILL
    assert again.error == ""
    log = await log_lines(runtime, "victim")
    assert any("killed by signal 9 (SIGKILL); restarting in 0.1 s" in line for line in log)


async def test_a_crash_loop_backs_off_longer_and_longer(data_dir: Path, sources: Path) -> None:
    source = write_source(sources, "crasher", """
        import time
        print("start", time.time(), flush=True)
        raise SystemExit(3)
    """)
    async with make_runtime(data_dir, backoff_initial=0.2, backoff_max=1.6) as rt:
        await rt.create(ServiceSpec("crasher", str(source)))
        st = await wait_status(rt, "crasher", status_is="backoff")
        assert (st.last_exit, st.error, st.pid) == (3, "exited with code 3", None)
        await eventually(
            lambda: _starts(rt, "crasher", 4), timeout=WAIT, message="four starts"
        )
        st = await status(rt, "crasher")
        assert st.restarts >= 3
        times = [float(line.split()[1]) for line in await log_lines(rt, "crasher")
                 if line.startswith("start ")]
        gaps = [b - a for a, b in itertools.pairwise(times)][:3]
        # waits of 0.2, 0.4 and 0.8 s, each plus the same start-up time
        assert gaps[0] < gaps[1] < gaps[2], gaps
        assert gaps[2] - gaps[0] > 0.4, gaps


async def _starts(rt: LocalRuntime, name: str, count: int) -> bool:
    lines = await log_lines(rt, name)
    return sum(line.startswith("start ") for line in lines) >= count


async def test_backoff_resets_after_a_stable_run(data_dir: Path, sources: Path) -> None:
    source = write_source(sources, "flaky", """
        import time
        print("start", time.time(), flush=True)
        time.sleep(0.4)
        raise SystemExit(1)
    """)
    async with make_runtime(
        data_dir, backoff_initial=0.2, backoff_max=10.0, stable_after=0.3
    ) as rt:
        await rt.create(ServiceSpec("flaky", str(source)))
        await eventually(lambda: _starts(rt, "flaky", 4), timeout=WAIT, message="four starts")
        log = await log_lines(rt, "flaky")
        assert sum("restarting in 0.2 s" in line for line in log) >= 3
        assert not any("restarting in 0.4 s" in line for line in log)


async def test_delete_stops_the_process_and_forgets_the_service(
    runtime: LocalRuntime, data_dir: Path, sources: Path
) -> None:
    await runtime.create(ServiceSpec("gone", str(write_source(sources, "gone", SLEEPER))))
    st = await wait_status(runtime, "gone")
    assert st.pid is not None

    await runtime.delete("gone")

    assert not alive(st.pid)
    assert await runtime.read() == []
    state = json.loads((data_dir / "runtime" / "services.json").read_bytes())
    assert state == {"services": []}


async def test_delete_kills_a_process_that_ignores_sigterm(
    data_dir: Path, sources: Path
) -> None:
    source = write_source(sources, "stubborn", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(3600)
    """)
    async with make_runtime(data_dir, stop_timeout=0.3) as rt:
        await rt.create(ServiceSpec("stubborn", str(source)))
        await wait_log(rt, "stubborn", "ready")
        st = await status(rt, "stubborn")
        assert st.pid is not None
        await rt.delete("stubborn")
        assert not alive(st.pid)
    log = (data_dir / "logs" / "stubborn.log").read_text()
    assert "sending SIGKILL" in log


async def test_update_restarts_from_the_new_source(
    runtime: LocalRuntime, sources: Path
) -> None:
    v1 = write_source(sources, "v1", 'import time\nprint("running v1", flush=True)\n'
                      "time.sleep(3600)\n")
    v2 = write_source(sources, "v2", 'import time\nprint("running v2", flush=True)\n'
                      "time.sleep(3600)\n")
    await runtime.create(ServiceSpec("app", str(v1), version="1"))
    first = await wait_status(runtime, "app")
    await wait_log(runtime, "app", "running v1")
    os.kill(first.pid or 0, signal.SIGKILL)
    first = await wait_status(runtime, "app", restarts=1, not_pid=first.pid)

    await runtime.update(ServiceSpec("app", str(v2), version="2"))

    st = await wait_status(runtime, "app", not_pid=first.pid)
    assert (st.version, st.source, st.restarts) == ("2", str(v2), 0)
    assert first.pid is not None and not alive(first.pid)
    await wait_log(runtime, "app", "running v2")


async def test_a_source_that_disappears_is_reported_as_crashed(
    runtime: LocalRuntime, sources: Path
) -> None:
    source = write_source(sources, "fragile", SLEEPER)
    await runtime.create(ServiceSpec("fragile", str(source)))
    st = await wait_status(runtime, "fragile")
    shutil.rmtree(source)
    kill(st.pid or 0, signal.SIGKILL)

    crashed = await wait_status(runtime, "fragile", status_is="crashed")
    assert "main.py does not exist" in crashed.error

    write_source(sources, "fragile", SLEEPER)  # it comes back by itself
    await wait_status(runtime, "fragile")


async def test_a_big_log_is_rotated_when_the_service_restarts(
    data_dir: Path, sources: Path
) -> None:
    source = write_source(sources, "chatty", """
        import time
        print("x" * 300, flush=True)
        time.sleep(3600)
    """)
    async with make_runtime(data_dir, log_max_bytes=200) as rt:
        await rt.create(ServiceSpec("chatty", str(source)))
        first = await wait_status(rt, "chatty")
        await wait_log(rt, "chatty", "x" * 300)
        os.kill(first.pid or 0, signal.SIGKILL)
        await wait_status(rt, "chatty", restarts=1, not_pid=first.pid)
        old = data_dir / "logs" / "chatty.log.1"
        await eventually(old.exists, timeout=WAIT, message="rotated log")
        assert "x" * 300 in old.read_text()
