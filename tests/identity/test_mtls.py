"""Mutual TLS over real RPC on 127.0.0.1: identities, refusals, revocation and rotation."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest

from micro import Client, MicroError
from micro.identity.ca import CertificateAuthority
from micro.identity.tls import Credentials
from micro.transport.client import ConnectionPool
from micro.transport.server import RpcServer

from .support import WAIT, Greeter, Hello, Reply, issue, serve, within

SERVICE = "hello"


@pytest.fixture
async def ca() -> CertificateAuthority:
    return await CertificateAuthority.ephemeral()


@pytest.fixture
def server_creds(ca: CertificateAuthority) -> Credentials:
    return issue(ca, "hello")


@pytest.fixture
def greeter() -> Greeter:
    return Greeter()


@pytest.fixture
async def server(server_creds: Credentials, greeter: Greeter) -> AsyncIterator[RpcServer]:
    rpc = await serve([(SERVICE, "Greeter", greeter)], ssl=server_creds.server_context())
    yield rpc
    await rpc.stop(grace=1.0)


def tls_client(creds: Credentials | ssl.SSLContext | None) -> Client:
    source = creds.client_context if isinstance(creds, Credentials) else creds
    return Client(timeout=WAIT, pool=ConnectionPool(connect_timeout=WAIT, ssl=source))


async def hello(client: Client, server: RpcServer, name: str = "Ada") -> Reply:
    return await within(
        client.call(
            SERVICE, "Greeter.Hello", Hello(name), response_type=Reply, address=server.address
        )
    )


def peer_serial(transport: object) -> int:
    ssl_object = transport.get_extra_info("ssl_object")  # type: ignore[attr-defined]
    return int(ssl_object.getpeercert()["serialNumber"], 16)


async def test_a_call_carries_the_callers_identity(
    ca: CertificateAuthority, server: RpcServer, greeter: Greeter, server_creds: Credentials
) -> None:
    creds = issue(ca, "greeter")
    async with tls_client(creds) as client:
        reply = await hello(client, server)
        assert reply == Reply("Hello Ada", "spiffe://micro/greeter")
        assert greeter.seen == ["spiffe://micro/greeter"]
        conn = client.pool.conns[server.address]
        assert conn.identity == "spiffe://micro/hello"
        assert peer_serial(conn.transport) == server_creds.serial


async def assert_refused(client: Client, server: RpcServer, *words: str) -> MicroError:
    with pytest.raises(MicroError) as err:
        await hello(client, server)
    assert err.value.code == "unavailable"
    for word in words:
        assert word in err.value.detail
    return err.value


async def test_a_client_certificate_from_another_ca_is_refused(
    ca: CertificateAuthority, server: RpcServer, greeter: Greeter
) -> None:
    other = await CertificateAuthority.ephemeral(name="other")
    # The client trusts our CA too (so it accepts the server); the server must refuse it.
    async with tls_client(issue(other, "greeter", trust=[ca])) as client:
        await assert_refused(client, server, "refused this client's certificate")
    # ... and a client of the other CA only does not trust the server either.
    async with tls_client(issue(other, "greeter")) as client:
        await assert_refused(client, server, "certificate verify failed")
    assert greeter.seen == []
    async with tls_client(issue(ca, "greeter")) as client:  # the server still serves others
        assert (await hello(client, server)).identity == "spiffe://micro/greeter"


async def test_a_client_without_a_certificate_is_refused(
    ca: CertificateAuthority, server: RpcServer, greeter: Greeter
) -> None:
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.load_verify_locations(cadata=ca.bundle_pem().decode())
    async with tls_client(bare) as client:
        await assert_refused(client, server, "refused this client's certificate")
    assert greeter.seen == []
    async with tls_client(issue(ca, "greeter")) as client:
        await hello(client, server)


async def test_a_revoked_certificate_is_refused_on_new_connections(
    ca: CertificateAuthority, server: RpcServer, server_creds: Credentials
) -> None:
    creds = issue(ca, "greeter")
    async with tls_client(creds) as client:
        await hello(client, server)
        await ca.revoke(creds.serial)
        server_creds.update(crl=ca.crl_pem())  # what the server's renewal task does
        # The connection made before the revocation is not cut.
        assert (await hello(client, server)).identity == "spiffe://micro/greeter"
    async with tls_client(creds) as client:
        await assert_refused(client, server, "refused this client's certificate")
    async with tls_client(issue(ca, "greeter")) as client:
        await hello(client, server)


async def test_a_revoked_server_certificate_is_refused_by_clients(
    ca: CertificateAuthority, server: RpcServer, server_creds: Credentials
) -> None:
    await ca.revoke(server_creds.serial)
    async with tls_client(issue(ca, "greeter")) as client:  # its CRL lists the server's
        await assert_refused(client, server, "certificate revoked")


async def test_rotation_keeps_calls_flowing_and_new_connections_use_new_certificates(
    ca: CertificateAuthority, server: RpcServer, server_creds: Credentials
) -> None:
    client_creds = issue(ca, "greeter")
    old_client, old_server = client_creds.serial, server_creds.serial
    stop = asyncio.Event()
    progress = asyncio.Condition()
    done = 0

    async def reach(count: int) -> None:
        async with progress:
            await progress.wait_for(lambda: done >= count)

    async with tls_client(client_creds) as client:

        async def loop() -> None:
            nonlocal done
            while not stop.is_set():
                await hello(client, server)
                done += 1
                async with progress:
                    progress.notify_all()

        workers = [asyncio.create_task(loop()) for _ in range(4)]
        try:
            await within(reach(50))
            fresh_server, fresh_client = issue(ca, "hello"), issue(ca, "greeter")
            server_creds.update(chain=fresh_server.material.chain, key=fresh_server.material.key)
            client_creds.update(chain=fresh_client.material.chain, key=fresh_client.material.key)
            assert (server_creds.serial, client_creds.serial) != (old_server, old_client)
            mark = done
            await within(reach(mark + 50))

            # A new connection (another client with the same credentials) presents and sees
            # the new certificates ...
            async with tls_client(client_creds) as second:
                await hello(second, server)
                conn = second.pool.conns[server.address]
                assert peer_serial(conn.transport) == server_creds.serial
                server_side = [
                    c for c in server.connections if peer_serial(c.transport) == client_creds.serial
                ]
                assert len(server_side) == 1
            # ... while the established one still runs on the old pair.
            conn = client.pool.conns[server.address]
            assert peer_serial(conn.transport) == old_server
        finally:
            stop.set()
            results = await within(asyncio.gather(*workers, return_exceptions=True))
    assert [r for r in results if r is not None] == []  # no call failed
    assert done >= 100


async def test_a_plain_client_to_a_tls_server_fails_cleanly(
    ca: CertificateAuthority, server: RpcServer
) -> None:
    async with Client(timeout=WAIT) as plain:
        with pytest.raises(MicroError) as err:
            await hello(plain, server)
        assert err.value.code == "unavailable"
    async with tls_client(issue(ca, "greeter")) as client:
        await hello(client, server)


async def test_a_tls_client_to_a_plain_server_fails_cleanly(
    ca: CertificateAuthority, greeter: Greeter
) -> None:
    plain = await serve([(SERVICE, "Greeter", greeter)])
    try:
        async with tls_client(issue(ca, "greeter")) as client:
            err = await assert_refused(client, plain)
            assert "cannot connect" in err.detail
        async with Client(timeout=WAIT) as client:
            assert (await hello(client, plain)).identity == ""
    finally:
        await plain.stop(grace=1.0)
