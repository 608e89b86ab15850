"""Environment values from the config, and per-process resource limits."""

from __future__ import annotations

from pathlib import Path

from micro.config.memory import MemoryConfig
from micro.runtime import Limits, ServiceSpec

from .runtime_support import make_runtime, wait_log, wait_status, write_source

PRINT_ENV = """
    import os, time
    print("DB", os.environ.get("DB"), "TOKEN", os.environ.get("TOKEN"), flush=True)
    time.sleep(3600)
"""


async def test_config_values_are_resolved_at_start(data_dir: Path, sources: Path) -> None:
    config = MemoryConfig(key=b"k" * 32)
    await config.set("micro", "db", {"url": "sqlite:///x", "pool": 3})
    await config.set("micro", "token", "s3cret", secret=True)
    source = write_source(sources, "env", PRINT_ENV)
    async with make_runtime(data_dir, config=config) as rt:
        await rt.create(ServiceSpec("env", str(source), env={
            "DB": "config:db", "TOKEN": "config:token",
        }))
        log = await wait_log(rt, "env", "DB ")
    line = next(line for line in log if line.startswith("DB "))
    assert line == 'DB {"url": "sqlite:///x", "pool": 3} TOKEN s3cret'


async def test_a_missing_config_path_keeps_the_process_from_starting(
    data_dir: Path, sources: Path
) -> None:
    config = MemoryConfig(key=b"k" * 32)
    source = write_source(sources, "env", PRINT_ENV)
    async with make_runtime(data_dir, config=config) as rt:
        await rt.create(ServiceSpec("env", str(source), env={"DB": "config:db.url"}))
        st = await wait_status(rt, "env", status_is="crashed")
        assert st.pid is None
        assert "config path 'db.url' (namespace 'micro') is not set" in st.error
        await wait_log(rt, "env", "DB=config:db.url: config path 'db.url'")
        # once the value exists, the next retry starts the process
        await config.set("micro", "db", {"url": "later"})
        await wait_log(rt, "env", "DB later")


async def test_without_a_config_backend_config_values_fail_clearly(
    data_dir: Path, sources: Path
) -> None:
    source = write_source(sources, "env", PRINT_ENV)
    async with make_runtime(data_dir) as rt:
        await rt.create(ServiceSpec("env", str(source), env={"DB": "config:db"}))
        st = await wait_status(rt, "env", status_is="crashed")
        assert "the runtime has no config to read it from" in st.error


async def test_a_service_over_its_open_file_limit_fails(data_dir: Path, sources: Path) -> None:
    source = write_source(sources, "files", """
        import os, resource, time
        print("NOFILE", resource.getrlimit(resource.RLIMIT_NOFILE), flush=True)
        held = []
        try:
            for i in range(100):
                held.append(open(os.devnull))
        except OSError as exc:
            print("FAILED after", len(held), exc.strerror, flush=True)
            raise SystemExit(7)
        print("opened all", flush=True)
        time.sleep(3600)
    """)
    async with make_runtime(data_dir) as rt:
        await rt.create(ServiceSpec("files", str(source), limits=Limits(open_files=20)))
        log = await wait_log(rt, "files", "FAILED after")
        st = await wait_status(rt, "files", status_is="backoff")
    assert "NOFILE (20, 20)" in log
    assert any("Too many open files" in line for line in log)
    assert not any("opened all" in line for line in log)
    assert st.last_exit == 7


async def test_a_memory_limit_caps_the_address_space(data_dir: Path, sources: Path) -> None:
    source = write_source(sources, "mem", """
        import time
        try:
            block = bytearray(600 * 1024 * 1024)
            print("allocated", flush=True)
        except MemoryError:
            print("MemoryError", flush=True)
        time.sleep(3600)
    """)
    async with make_runtime(data_dir) as rt:
        await rt.create(ServiceSpec("mem", str(source), limits=Limits(memory_mb=300)))
        log = await wait_log(rt, "mem", "MemoryError")
    assert not any("allocated" in line for line in log)
