"""The platform over mutual TLS (MICRO_TLS=1), run for real: server process, a service
started by the runtime (which obtains its certificate from the identity service), the CLI
and the gateway; plain TCP and certificate-less clients refused where a certificate is
required."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from micro.errors import MicroError
from micro.identity.bootstrap import trust_context
from micro.registry.rpc import RpcRegistry
from micro.transport.client import connect

from .conftest import ServerProcess, run_server, wait_for
from .test_quickstart import HELLO, callable_as, http_post, service_names


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from run_server(tmp_path, MICRO_TLS="1")


def _node_address(server: ServerProcess) -> str:
    (info,) = [s for s in server.micro_json("services") if s["name"] == "helloworld"]
    return str(info["addresses"]).split(",")[0].strip()


async def _refused(address: str, ssl: object | None) -> str:
    try:
        conn = await connect(address, ssl=ssl)  # type: ignore[arg-type]
    except OSError as exc:
        return str(exc)
    conn.abort()
    return ""


async def _plain_registry_call(address: str) -> str:
    registry = RpcRegistry(address)
    try:
        await asyncio.wait_for(registry.list_services(), 10)
    except (MicroError, OSError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        await registry.close()
    return ""


def test_the_platform_runs_over_mutual_tls(tls_server: ServerProcess) -> None:
    server = tls_server
    started = server.micro("run", HELLO)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: "helloworld" in service_names(server), what="helloworld listed")
    # the CLI (an administrator: it gets a certificate) calls the service directly over mTLS
    out = wait_for(
        lambda: server.micro("call", "helloworld", "Helloworld.Call", '{"name": "T"}').stdout,
        what="a call over mTLS",
    )
    assert '"Hello T"' in out
    assert '"Hello A"' in callable_as(server, "helloworld", "Helloworld.Call", '{"name": "A"}')
    # the gateway reaches it with the server's certificate
    assert http_post(f"{server.gateway}/helloworld/call", '{"name": "G"}') == (
        200,
        {"message": "Hello G"},
    )
    # the service's listener requires a certificate from the platform's CA
    node = _node_address(server)
    bundle = (server.data_dir / "ca" / "root.pem").read_bytes()
    assert "refused this client's certificate" in asyncio.run(
        _refused(node, trust_context(bundle))  # TLS, but no client certificate
    )
    # plain TCP to the server's TLS listener gets nowhere
    assert asyncio.run(_plain_registry_call(f"127.0.0.1:{server.rpc_port}"))
    # and the service never crash-looped getting its certificate
    (row,) = [r for r in server.micro_json("status") if r["name"] == "helloworld"]
    assert row["status"] == "running", row
