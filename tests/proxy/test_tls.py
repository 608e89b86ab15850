"""``micro proxy`` with ``MICRO_TLS=1``, run for real: a TLS ``micro server`` process with
helloworld started by its runtime, the proxy as a process of its own (it logs in with the API
key in its environment, obtains the certificate of ``proxy`` and listens with mutual TLS),
an administrator's client with a certificate calling helloworld through it, and clients
without a certificate refused by the proxy."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from micro.auth.rpc import RpcAuth
from micro.auth.session import read_local_credential
from micro.client import Client
from micro.errors import MicroError
from micro.identity.bootstrap import TlsClient, trust_context
from micro.identity.client import IdentityClient
from micro.identity.rpc import RpcIdentity
from micro.registry.rpc import RpcRegistry
from micro.transport.client import ConnectionPool, connect
from tests.e2e.conftest import MICRO, ServerProcess, free_port, run_server, wait_for
from tests.e2e.test_quickstart import HELLO, service_names

pytestmark = pytest.mark.timeout(180)


@dataclass
class TlsProxy:
    server: ServerProcess
    address: str
    bundle: bytes
    log: Path


@pytest.fixture
def tls_proxy(tmp_path: Path) -> Iterator[TlsProxy]:
    servers = run_server(tmp_path, MICRO_TLS="1")
    server = next(servers)
    try:
        yield from _run_proxy(server, tmp_path / "proxy")
    finally:
        servers.close()  # stops the server and what its runtime started


def _run_proxy(server: ServerProcess, home: Path) -> Iterator[TlsProxy]:
    started = server.micro("run", HELLO)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: "helloworld" in service_names(server), what="helloworld listed")
    local = read_local_credential(server.data_dir)
    assert local is not None and local.api_key
    # the proxy runs "elsewhere": its own data dir, the CA and a credential in its env
    home.mkdir()
    env = dict(server.env)
    env.update(
        MICRO_DATA_DIR=str(home),
        MICRO_TLS="1",
        MICRO_TLS_CA=str(server.data_dir / "ca" / "root.pem"),
        MICRO_API_KEY=local.api_key,
    )
    address = f"127.0.0.1:{free_port()}"
    log = home / "proxy.out"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*MICRO, "proxy", "--address", address, "--server", f"127.0.0.1:{server.rpc_port}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    bundle = (server.data_dir / "ca" / "root.pem").read_bytes()
    try:
        wait_for(
            lambda: proc.poll() is not None or "listening on" in log.read_text(),
            what="the proxy listening",
        )
        assert proc.poll() is None, log.read_text()
        yield TlsProxy(server, address, bundle, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    # a clean stop: nothing left behind (the identity client and sessions closed)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()


async def _admin_tls(server: ServerProcess, bundle: bytes) -> tuple[TlsClient, str]:
    """What an administrator's CLI does: log in with the local key, obtain a certificate."""
    address = f"127.0.0.1:{server.rpc_port}"
    local = read_local_credential(server.data_dir)
    assert local is not None
    tls = TlsClient(bundle)
    async with Client(pool=ConnectionPool(ssl=tls.context)) as own:
        tokens = await RpcAuth(address, client=own).exchange(local.api_key)
        header = f"Bearer {tokens.access_token}"
        own.credentials = lambda: header
        tls.credentials = await IdentityClient(RpcIdentity(own, address), service="cli").obtain()
    return tls, header


async def _through_proxy(proxy: TlsProxy) -> tuple[set[str], dict[str, str], str]:
    tls, header = await _admin_tls(proxy.server, proxy.bundle)
    registry = RpcRegistry(proxy.address, credentials=lambda: header, ssl=tls.context)
    pool = ConnectionPool(ssl=tls.context)
    client = Client(registry, credentials=lambda: header, pool=pool, timeout=10.0)
    try:
        assert client.view is not None
        services = await client.view.registry.list_services()
        reply = await client.call("helloworld", "Helloworld.Call", {"name": "Proxy"})
        streamed = [
            m["message"]
            async for m in client.stream(
                "helloworld", "Helloworld.Stream", {"name": "S", "count": 2}, timeout=10.0
            )
        ]
        assert set(client.pool.conns) == {proxy.address}
        addresses = {n.address for s in services for n in s.nodes}
        assert addresses == {proxy.address}
        return {s.name for s in services}, reply, ",".join(streamed)
    finally:
        await client.close()
        await registry.close()


async def _refused(address: str, bundle: bytes | None) -> str:
    """Why a connection with no client certificate (TLS trusting ``bundle``, or plain TCP)
    gets no answer from ``address``: empty if it did get one."""
    ssl = trust_context(bundle) if bundle is not None else None
    client = Client(pool=ConnectionPool(ssl=(lambda: ssl) if ssl is not None else None))
    try:
        if ssl is not None:
            try:
                conn = await connect(address, ssl=ssl)
            except OSError as exc:
                return str(exc)
            conn.abort()
        await asyncio.wait_for(
            client.call("helloworld", "Helloworld.Call", {"name": "x"}, address=address), 10
        )
    except (MicroError, OSError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        await client.close()
    return ""


def test_the_proxy_listens_with_mutual_tls(tls_proxy: TlsProxy) -> None:
    names, reply, streamed = asyncio.run(_through_proxy(tls_proxy))
    assert "helloworld" in names
    assert reply == {"message": "Hello Proxy"}
    assert streamed == "Hello S #1,Hello S #2"
    # TLS trusting the CA, but no client certificate: the proxy refuses the handshake
    assert "refused this client's certificate" in asyncio.run(
        _refused(tls_proxy.address, tls_proxy.bundle)
    )
    # plain TCP gets nowhere either
    assert asyncio.run(_refused(tls_proxy.address, None))
    log = tls_proxy.log.read_text()
    assert "listening on" in log
