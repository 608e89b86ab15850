"""A service's side of identity: its key, its certificate, and their renewal.

:class:`IdentityClient` generates an ECDSA P-256 key (it never leaves the process), sends a
CSR to ``Identity.Sign`` and keeps the result as :class:`~micro.identity.tls.Credentials`
(with the CA bundle and CRL from ``Identity.Bundle``). :meth:`IdentityClient.start` runs a
background task that

- renews the certificate (with a fresh key) at 2/3 of its lifetime;
- refetches the bundle and CRL every ``crl_refresh`` seconds, so revocations reach this
  process and the CRL never expires here.

A failed renewal is logged and retried with exponential backoff (``retry_min`` doubling up
to ``retry_max``); the current certificate stays in use meanwhile. Each update applies to new
connections only (see :class:`~micro.identity.tls.Credentials`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .rpc import RpcIdentity
from .tls import Credentials, Material

__all__ = ["IdentityClient", "make_csr"]

log = logging.getLogger("micro.identity")


def make_csr() -> tuple[bytes, bytes]:
    """A new P-256 private key and a CSR for it, both PEM: ``(key, csr)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


class IdentityClient:
    """Obtains and renews the certificate of one service.

    ``rpc`` reaches the identity service with the service's credentials. ``service`` and
    ``namespace`` default to the caller's account. ``clock`` (Unix seconds) and ``sleep``
    are injectable for tests.
    """

    def __init__(
        self,
        rpc: RpcIdentity,
        *,
        service: str = "",
        namespace: str = "",
        ttl: float = 0.0,
        crl_refresh: float = 300.0,
        retry_min: float = 1.0,
        retry_max: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rpc = rpc
        self.service = service
        self.namespace = namespace
        self.ttl = ttl
        self.crl_refresh = crl_refresh
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.clock = clock
        self._sleep = sleep
        self.credentials: Credentials | None = None
        self.renewals = 0
        self.failures = 0
        self._crl_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def obtain(self) -> Credentials:
        """Get a certificate now (the first time, or to renew it early); returns the
        credentials, the same object across renewals."""
        key_pem, csr_pem = make_csr()
        signed = await self.rpc.sign(
            csr_pem, service=self.service, namespace=self.namespace, ttl=self.ttl
        )
        bundle = await self.rpc.bundle()
        self._crl_at = self.clock()
        chain = signed.chain.encode()
        if self.credentials is None:
            self.credentials = Credentials(
                Material(chain, key_pem, bundle.ca.encode(), bundle.crl.encode())
            )
        else:
            self.credentials.update(
                chain=chain, key=key_pem, bundle=bundle.ca.encode(), crl=bundle.crl.encode()
            )
            self.renewals += 1
        log.info(
            "certificate %s for %s, valid until %s",
            signed.serial,
            signed.identity,
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(signed.not_after)),
        )
        return self.credentials

    async def refresh_crl(self) -> None:
        """Fetch the bundle and CRL again and use them for new connections."""
        if self.credentials is None:
            raise RuntimeError("obtain() a certificate first")
        bundle = await self.rpc.bundle()
        self._crl_at = self.clock()
        self.credentials.update(bundle=bundle.ca.encode(), crl=bundle.crl.encode())

    def renew_at(self) -> float:
        """When the current certificate is due for renewal: 2/3 into its lifetime."""
        if self.credentials is None:
            return self.clock()
        start, end = self.credentials.not_before, self.credentials.not_after
        return start + (end - start) * 2 / 3

    async def start(self) -> Credentials:
        """Obtain a certificate (unless one is held) and start renewing it."""
        credentials = self.credentials or await self.obtain()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="identity renewal"
            )
        return credentials

    async def _run(self) -> None:
        delay = self.retry_min
        while True:
            now = self.clock()
            renew_at = self.renew_at()
            crl_at = self._crl_at + self.crl_refresh
            wake = min(renew_at, crl_at)
            if wake > now:
                await self._sleep(wake - now)
                continue
            try:
                if self.clock() >= renew_at:
                    await self.obtain()
                else:
                    await self.refresh_crl()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                log.warning("identity: renewal failed (%s); retrying in %.0f s", exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.retry_max)
            else:
                delay = self.retry_min

    async def close(self) -> None:
        """Stop renewing."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
