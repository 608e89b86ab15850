"""The framework over mutual TLS: the same typed echo as ``micro``, with certificates from
a throwaway CA on both ends (the client verifies the server and the server the client)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from micro import Client, Service
from micro.identity.ca import CertificateAuthority
from micro.identity.client import make_csr
from micro.identity.tls import Credentials
from micro.registry import Node, ServiceInfo
from micro.registry.memory import MemoryRegistry
from micro.transport.client import ConnectionPool
from micro.transport.server import Router, RpcServer

from . import Stop
from .micro import Echo, MicroEcho

__all__ = ["NAME", "broker", "connect", "serve"]

NAME = "micro-tls"
_FILES: dict[str, Path] = {}  # in the benchmark process: where broker() wrote credentials


def _write_credentials(directory: Path) -> None:
    async def make() -> None:
        ca = await CertificateAuthority.ephemeral(name="bench")
        for who in ("server", "client"):
            key, csr = make_csr()
            (directory / f"{who}.pem").write_bytes(
                ca.sign(csr, namespace="bench", service=f"echo-{who}")
            )
            (directory / f"{who}.key").write_bytes(key)
        (directory / "ca.pem").write_bytes(ca.bundle_pem())
        (directory / "crl.pem").write_bytes(ca.crl_pem())

    asyncio.run(make())


def _credentials(directory: Path, who: str) -> Credentials:
    return Credentials.from_files(
        directory / f"{who}.pem",
        directory / f"{who}.key",
        directory / "ca.pem",
        directory / "crl.pem",
    )


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """Issue a server and a client certificate into a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        directory = Path(tmp)
        _write_credentials(directory)
        _FILES["dir"] = directory
        try:
            yield str(directory)
        finally:
            _FILES.pop("dir", None)


async def serve(arg: str) -> tuple[str, Stop]:
    """Start the ``echo`` service on a TLS listener on a free port of 127.0.0.1."""
    creds = _credentials(Path(arg), "server")
    rpc = RpcServer(Router())
    await rpc.start("127.0.0.1", 0, ssl=creds.server_context())
    service = Service("echo", registry=MemoryRegistry())
    service.handler(Echo)
    await service.start(server=rpc)

    async def stop() -> None:
        await service.stop()
        await rpc.stop()

    return rpc.address, stop


async def connect(address: str, inflight: int) -> MicroEcho:
    """A client with the client certificate, resolving ``echo`` to the server child."""
    creds = _credentials(_FILES["dir"], "client")
    registry = MemoryRegistry()
    await registry.register(ServiceInfo("echo", nodes=[Node("bench-server", address)]), ttl=None)
    return MicroEcho(Client(registry, pool=ConnectionPool(ssl=creds.client_context)))
