"""The ``identity`` service over RPC: who gets which certificate, revocation, the bundle, and
:class:`IdentityClient` obtaining, renewing and retrying."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from cryptography import x509

from micro import Client, MicroError
from micro.identity import SERVICE
from micro.identity.ca import CertificateAuthority, parse_serial
from micro.identity.client import IdentityClient, make_csr
from micro.identity.handler import HANDLER, IdentityHandler
from micro.identity.rpc import RpcIdentity
from micro.transport.server import RpcServer

from .support import WAIT, Greeter, accounts_middleware, serve, within


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ca(clock: Clock) -> CertificateAuthority:
    return await CertificateAuthority.ephemeral(clock=clock)


@pytest.fixture
async def server(ca: CertificateAuthority) -> AsyncIterator[RpcServer]:
    rpc = await serve(
        [(SERVICE, HANDLER, IdentityHandler(ca, default_ttl=3600.0))],
        middleware=[accounts_middleware],
    )
    yield rpc
    await rpc.stop(grace=1.0)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with Client(timeout=WAIT) as c:
        yield c


def rpc_as(client: Client, server: RpcServer, token: str | None) -> RpcIdentity:
    return RpcIdentity(client, server.address, metadata={"authorization": token} if token else None)


async def failure(call: object) -> MicroError:
    with pytest.raises(MicroError) as err:
        await within(call)  # type: ignore[arg-type]
    return err.value


async def test_a_service_account_gets_a_certificate_for_its_own_name(
    client: Client, server: RpcServer, ca: CertificateAuthority, clock: Clock
) -> None:
    _, csr = make_csr()
    signed = await within(rpc_as(client, server, "greeter-token").sign(csr))
    assert signed.identity == "spiffe://micro/greeter"
    leaf, intermediate = x509.load_pem_x509_certificates(signed.chain.encode())
    assert parse_serial(signed.serial) == leaf.serial_number
    assert signed.not_after == clock.now + 3600.0
    leaf.verify_directly_issued_by(intermediate)
    assert intermediate == ca.intermediate
    # The same, asked for explicitly:
    again = await within(
        rpc_as(client, server, "acme-token").sign(csr, service="billing", namespace="acme")
    )
    assert again.identity == "spiffe://acme/billing"


async def test_who_may_get_what(client: Client, server: RpcServer) -> None:
    _, csr = make_csr()
    anonymous = await failure(rpc_as(client, server, None).sign(csr))
    assert anonymous.code == "unauthorized"
    other_name = await failure(rpc_as(client, server, "greeter-token").sign(csr, service="auth"))
    assert other_name.code == "forbidden"
    other_ns = await failure(rpc_as(client, server, "greeter-token").sign(csr, namespace="acme"))
    assert other_ns.code == "forbidden"
    user = await failure(rpc_as(client, server, "user-token").sign(csr))
    assert user.code == "forbidden"
    admin = rpc_as(client, server, "admin-token")
    signed = await within(admin.sign(csr, service="auth", namespace="acme"))
    assert signed.identity == "spiffe://acme/auth"
    bad = await failure(admin.sign(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"))
    assert bad.code == "bad_request"


async def test_revoke_is_for_admins_and_shows_in_the_public_bundle(
    client: Client, server: RpcServer, ca: CertificateAuthority
) -> None:
    _, csr = make_csr()
    signed = await within(rpc_as(client, server, "greeter-token").sign(csr))
    for token, code in ((None, "unauthorized"), ("greeter-token", "forbidden")):
        err = await failure(rpc_as(client, server, token).revoke(signed.serial))
        assert err.code == code
    admin = rpc_as(client, server, "admin-token")
    assert await within(admin.revoke(signed.serial)) is True
    assert await within(admin.revoke(parse_serial(signed.serial))) is False

    bundle = await within(rpc_as(client, server, None).bundle())  # public: no account needed
    assert bundle.ca.encode() == ca.bundle_pem()
    crl = x509.load_pem_x509_crl(bundle.crl.encode())
    assert crl.get_revoked_certificate_by_serial_number(parse_serial(signed.serial)) is not None


class Sleeper:
    """An injected ``sleep`` that advances the clock instead of waiting, and stops the
    renewal task after ``limit`` naps."""

    def __init__(self, clock: Clock, limit: int) -> None:
        self.clock = clock
        self.limit = limit
        self.naps: list[float] = []
        self.done = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.clock.now += seconds
        if len(self.naps) >= self.limit:
            self.done.set()
            await asyncio.Event().wait()  # parked until the task is cancelled
        await asyncio.sleep(0)


async def test_the_client_renews_at_two_thirds_of_the_lifetime(
    client: Client, server: RpcServer, clock: Clock
) -> None:
    sleeper = Sleeper(clock, limit=4)
    identity = IdentityClient(
        rpc_as(client, server, "greeter-token"),
        crl_refresh=10_000.0,
        clock=clock,
        sleep=sleeper,
    )
    creds = await within(identity.start())
    first = creds.serial
    assert creds.identity == "spiffe://micro/greeter"
    start = creds.not_before
    assert identity.renew_at() == pytest.approx(start + (creds.not_after - start) * 2 / 3)
    try:
        await within(sleeper.done.wait())
    finally:
        await identity.close()
    assert identity.renewals == 3
    assert identity.credentials is creds and creds.serial != first
    # Each nap lasted until 2/3 of the current certificate's lifetime (60 s backdated).
    lifetime = 3600.0 + 60.0
    assert sleeper.naps[1:] == [pytest.approx(lifetime * 2 / 3 - 60.0)] * 3


async def test_the_client_refreshes_the_crl_between_renewals(
    client: Client, server: RpcServer, clock: Clock, ca: CertificateAuthority
) -> None:
    sleeper = Sleeper(clock, limit=3)
    identity = IdentityClient(
        rpc_as(client, server, "greeter-token"), crl_refresh=300.0, clock=clock, sleep=sleeper
    )
    creds = await within(identity.start())
    first = creds.serial
    _, csr = make_csr()
    victim = await within(rpc_as(client, server, "greeter-token").sign(csr))
    await ca.revoke(victim.serial)
    try:
        await within(sleeper.done.wait())
    finally:
        await identity.close()
    assert sleeper.naps[:2] == [300.0, 300.0]
    assert creds.serial == first  # not renewed, only the CRL
    crl = x509.load_pem_x509_crl(creds.material.crl or b"")
    assert crl.get_revoked_certificate_by_serial_number(parse_serial(victim.serial)) is not None


async def test_failed_renewals_are_retried_with_backoff(
    client: Client, server: RpcServer, clock: Clock
) -> None:
    sleeper = Sleeper(clock, limit=6)
    failing = False

    def metadata() -> dict[str, str]:
        # After the first certificate, the next three renewals are refused (unauthorized).
        broken = failing and len(sleeper.naps) < 4
        return {"authorization": "expired" if broken else "greeter-token"}

    identity = IdentityClient(
        RpcIdentity(client, server.address, metadata=metadata),
        crl_refresh=10_000.0,
        retry_min=1.0,
        retry_max=4.0,
        clock=clock,
        sleep=sleeper,
    )
    creds = await within(identity.obtain())
    first = creds.serial
    failing = True
    await within(identity.start())
    try:
        await within(sleeper.done.wait())
    finally:
        await identity.close()
    assert sleeper.naps[0] == pytest.approx((3600.0 + 60.0) * 2 / 3 - 60.0)
    assert sleeper.naps[1:4] == [1.0, 2.0, 4.0]
    assert identity.failures == 3
    assert identity.renewals >= 1 and creds.serial != first


async def test_certificates_from_the_service_work_for_mtls(
    client: Client, server: RpcServer, ca: CertificateAuthority
) -> None:
    """End to end, on the real clock: both ends get their certificate from the service."""
    real = await CertificateAuthority.ephemeral()
    live = await serve(
        [(SERVICE, HANDLER, IdentityHandler(real))], middleware=[accounts_middleware]
    )
    try:
        server_id = IdentityClient(rpc_as(client, live, "admin-token"), service="hello")
        client_id = IdentityClient(rpc_as(client, live, "greeter-token"))
        server_creds, client_creds = (
            await within(server_id.obtain()),
            await within(client_id.obtain()),
        )
        greeter = Greeter()
        tls = await serve([("hello", "Greeter", greeter)], ssl=server_creds.server_context())
        try:
            from micro.transport.client import ConnectionPool

            from .support import Hello, Reply

            async with Client(
                timeout=WAIT, pool=ConnectionPool(ssl=client_creds.client_context)
            ) as mtls:
                reply = await within(
                    mtls.call(
                        "hello",
                        "Greeter.Hello",
                        Hello("Ada"),
                        response_type=Reply,
                        address=tls.address,
                    )
                )
            assert reply.identity == "spiffe://micro/greeter"
        finally:
            await tls.stop(grace=1.0)
    finally:
        await live.stop(grace=1.0)
