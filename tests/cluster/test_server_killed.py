"""Two `micro server` processes on the same engines: SIGKILL one in the middle of a stream
of acknowledged store writes and event publishes; the other has every one of them."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from micro.errors import MicroError
from micro.testing import local_admin_client
from tests.e2e.conftest import free_port
from tests.e2e.test_durability import _hammer, _present


def _start(env: dict[str, str], data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    data.mkdir()
    with open(data / "server.log", "wb") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "micro.cli",
                "server",
                "--no-runtime",
                "--address",
                f"127.0.0.1:{port}",
                "--gateway",
                f"127.0.0.1:{free_port()}",
                "--data-dir",
                str(data),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    return proc, f"127.0.0.1:{port}"


async def _up(address: str, data: Path) -> None:
    """Wait (bounded) until the server answers and its engines take a write and a publish."""
    from micro.events.rpc import RpcEvents
    from micro.store.rpc import RpcStore

    for _ in range(300):
        try:
            async with local_admin_client(address, data) as client:
                await client.view.registry.list_services()  # type: ignore[union-attr]
                await RpcStore(address, client).write("warmup", "t", "k", b"v")
                await RpcEvents(address, client).publish("warmup.events", b"v")
                return
        except (MicroError, RuntimeError):  # RuntimeError: no local credential yet
            await asyncio.sleep(0.1)
    raise AssertionError(f"server at {address} did not come up")


@pytest.fixture
def cluster_env(postgres_dsn: str, nats_url: str, etcd_endpoint: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MICRO_PROFILE="cluster",
        MICRO_POSTGRES_DSN=postgres_dsn,
        MICRO_NATS_URL=nats_url,
        MICRO_ETCD_ENDPOINTS=etcd_endpoint,
        MICRO_CONFIG_SECRET_KEY=base64.b64encode(b"s" * 32).decode(),
    )
    return env


def test_killing_one_server_loses_nothing_acknowledged(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    a, a_address = _start(cluster_env, tmp_path / "a")
    b, b_address = _start(cluster_env, tmp_path / "b")
    try:
        asyncio.run(_up(a_address, tmp_path / "a"))
        asyncio.run(_up(b_address, tmp_path / "b"))

        def kill_soon() -> None:
            time.sleep(1.5)
            a.send_signal(signal.SIGKILL)

        killer = threading.Thread(target=kill_soon)
        killer.start()
        written, published = asyncio.run(_hammer(a_address, tmp_path / "a", stop_after=30.0))
        killer.join()
        a.wait(10)
        assert len(written) > 50 and len(published) > 50, (len(written), len(published))

        keys, sequences = asyncio.run(
            _present(b_address, tmp_path / "b")
        )  # read through the survivor
        assert written <= keys, f"{len(written - keys)} acknowledged writes lost"
        assert published <= sequences, f"{len(published - sequences)} acknowledged events lost"
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
