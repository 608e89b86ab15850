"""The framework with auth on: the same typed echo as ``micro``, but every call carries an
Ed25519-signed access token that the service's guard verifies (cached after the first call,
as in production) and checks against the rules, exactly as a service started by ``micro
server`` does."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from micro import Client, Service
from micro.auth import ISSUER, SERVICE, Resource, Rule
from micro.auth.guard import Guard
from micro.auth.keys import KeyRing, SigningKey, generate_key
from micro.auth.verify import Verifier
from micro.registry import Node, ServiceInfo
from micro.registry.memory import MemoryRegistry

from . import Stop
from .micro import Echo, MicroEcho

__all__ = ["NAME", "broker", "connect", "serve"]

NAME = "micro-auth"
_FILES: dict[str, Path] = {}  # in the benchmark process: where broker() wrote the key
# the rules a server starts with, plus one deny rule that does not match, so the guard
# walks more than one rule per decision
RULES = [
    Rule("deny-other", "*", Resource("other", "*"), "deny", 10),
    Rule("admin", "admin", Resource("*", "*")),
    Rule("service", SERVICE, Resource("*", "*")),
]


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """Write a signing key into a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        directory = Path(tmp)
        (directory / "key.json").write_bytes(msgspec.json.encode(generate_key(time.time())))
        _FILES["dir"] = directory
        try:
            yield str(directory)
        finally:
            _FILES.pop("dir", None)


def _ring(directory: Path) -> KeyRing:
    return KeyRing([msgspec.json.decode((directory / "key.json").read_bytes(), type=SigningKey)])


async def serve(arg: str) -> tuple[str, Stop]:
    """Start ``echo`` with a guard that knows the public key and the rules."""
    guard = Guard(Verifier(_ring(Path(arg)).jwks()), _rules, namespace="micro")
    await guard.start()
    service = Service("echo", registry=MemoryRegistry(), address="127.0.0.1:0", auth=guard)
    service.handler(Echo)
    await service.start()

    async def stop() -> None:
        await service.stop()
        await guard.close()

    return service.address, stop


async def _rules() -> list[Rule]:
    return RULES


async def connect(address: str, inflight: int) -> MicroEcho:
    """A client calling as a service account with a freshly signed token."""
    now = time.time()
    token = _ring(_FILES["dir"]).sign(
        {
            "iss": ISSUER,
            "sub": "bench",
            "namespace": "micro",
            "type": "service",
            "scopes": [SERVICE],
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + 3600,
            "jti": "bench",
        }
    )
    header = f"Bearer {token}"
    registry = MemoryRegistry()
    await registry.register(ServiceInfo("echo", nodes=[Node("bench-server", address)]), ttl=None)
    return MicroEcho(Client(registry, credentials=lambda: header))
