"""Optional TLS: the gateway serves HTTPS with the SSLContext it is given."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import aiohttp
import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from micro import Context, Service
from micro.gateway import Gateway
from micro.server import MicroServer
from tests.noauth import micro_server  # noqa: F401 (auth off: not what this tests)


class Req(msgspec.Struct):
    name: str


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_round_trip(micro_server: MicroServer, tmp_path: Path) -> None:
    svc = Service("greeter")

    @svc.handler
    class Greeter:
        async def call(self, ctx: Context, req: Req) -> Req:
            return Req(f"hello {req.name}")

    svc.use(registry=micro_server.registry)
    await svc.start()
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    gateway = Gateway(micro_server.client, "127.0.0.1:0", ssl=server_ctx)
    await gateway.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    try:
        assert gateway.scheme == "https"
        async with aiohttp.ClientSession() as http:
            url = f"https://{gateway.address}/greeter/call"
            async with http.post(url, data='{"name": "tls"}', ssl=client_ctx) as r:
                assert (r.status, await r.json()) == (200, {"name": "hello tls"})
            async with http.get(f"https://{gateway.address}/health", ssl=client_ctx) as r:
                assert r.status == 200
    finally:
        await gateway.stop()
        await svc.stop()
