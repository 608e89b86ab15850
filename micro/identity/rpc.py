"""The ``identity`` service as seen by its callers: typed calls over a :class:`Client`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..client import Client
from . import SERVICE
from .handler import HANDLER
from .messages import (
    BundleRequest,
    BundleResponse,
    RevokeRequest,
    RevokeResponse,
    SignRequest,
    SignResponse,
)

__all__ = ["RpcIdentity"]

Metadata = Mapping[str, str] | Callable[[], Mapping[str, str]] | None


class RpcIdentity:
    """Calls ``identity`` at ``address`` (``host:port``; ``None``: resolved by name through
    the client's registry). ``metadata`` goes with every call: the caller's credentials
    (``authorization``), as a mapping or a function returning the current one."""

    def __init__(
        self,
        client: Client,
        address: str | None = None,
        *,
        metadata: Metadata = None,
        timeout: float = 10.0,
    ) -> None:
        self.client = client
        self.address = address
        self.metadata = metadata
        self.timeout = timeout

    def _metadata(self) -> dict[str, str] | None:
        md = self.metadata() if callable(self.metadata) else self.metadata
        return dict(md) if md else None

    async def sign(
        self, csr_pem: bytes, *, service: str = "", namespace: str = "", ttl: float = 0.0
    ) -> SignResponse:
        """Have the CA certify the key of ``csr_pem``."""
        req = SignRequest(csr_pem.decode(), service, namespace, ttl)
        return await self.client.call(
            SERVICE,
            f"{HANDLER}.Sign",
            req,
            response_type=SignResponse,
            metadata=self._metadata(),
            timeout=self.timeout,
            address=self.address,
        )

    async def revoke(self, serial: str | int) -> bool:
        """Revoke the certificate with ``serial`` (admins only); False if it already was."""
        text = format(serial, "x") if isinstance(serial, int) else serial
        resp = await self.client.call(
            SERVICE,
            f"{HANDLER}.Revoke",
            RevokeRequest(text),
            response_type=RevokeResponse,
            metadata=self._metadata(),
            timeout=self.timeout,
            address=self.address,
        )
        return resp.revoked

    async def bundle(self) -> BundleResponse:
        """The root certificate and the current CRL."""
        return await self.client.call(
            SERVICE,
            f"{HANDLER}.Bundle",
            BundleRequest(),
            response_type=BundleResponse,
            metadata=self._metadata(),
            timeout=self.timeout,
            address=self.address,
        )
