"""The ``identity`` RPC service (handler ``Identity``): certificates for services.

``Identity.Sign`` certifies a key its caller generated (the CSR carries only the public
key) as ``spiffe://<namespace>/<service>``. Who may ask for what comes from the verified
caller (``ctx.account``, set by the auth guard), never from the request alone:

- no account: ``unauthorized``;
- an account with the :data:`~micro.auth.ADMIN` scope: any namespace and service;
- a service account: only its own name (the account id) in its own namespace;
- anything else (a user without admin): ``forbidden``.

``Identity.Revoke`` (admin only) lists a serial in the CRL. ``Identity.Bundle`` is public:
the root certificate and the current CRL, what every peer needs to verify others.
"""

from __future__ import annotations

import logging

from ..auth import ADMIN
from ..context import Context
from ..errors import forbidden, unauthorized
from ..service.endpoint import public
from .ca import DEFAULT_TTL, CertificateAuthority, format_serial, spiffe_id
from .messages import (
    BundleRequest,
    BundleResponse,
    RevokeRequest,
    RevokeResponse,
    SignRequest,
    SignResponse,
)
from .tls import leaf_certificate

__all__ = ["HANDLER", "IdentityHandler"]

HANDLER = "Identity"
_ID = "identity"
log = logging.getLogger("micro.identity")


class IdentityHandler:
    """Serves ``Identity.Sign``, ``Identity.Revoke`` and ``Identity.Bundle`` from ``ca``.

    Register it as ``service.handler(IdentityHandler(ca), name=HANDLER)``."""

    def __init__(self, ca: CertificateAuthority, *, default_ttl: float = DEFAULT_TTL) -> None:
        self.ca = ca
        self.default_ttl = default_ttl

    async def sign(self, ctx: Context, req: SignRequest) -> SignResponse:
        """Issue a leaf certificate for the caller (or, for an admin, anyone)."""
        account = ctx.account
        if account is None:
            raise unauthorized(_ID, "a certificate is issued to authenticated callers only")
        namespace = req.namespace or account.namespace
        service = req.service or account.sub
        if ADMIN not in account.scopes:
            if account.type != "service":
                raise forbidden(_ID, "only service accounts (or admins) get certificates")
            if namespace != account.namespace or service != account.sub:
                raise forbidden(
                    _ID,
                    f"account {account.sub!r} of namespace {account.namespace!r} may only get "
                    f"a certificate for spiffe://{account.namespace}/{account.sub}",
                )
        chain = self.ca.sign(
            req.csr.encode(),
            namespace=namespace,
            service=service,
            ttl=req.ttl if req.ttl > 0 else self.default_ttl,
        )
        leaf = leaf_certificate(chain)
        serial = format_serial(leaf.serial_number)
        identity = spiffe_id(namespace, service)
        log.info("issued %s (serial %s) to %s/%s", identity, serial, account.namespace, account.sub)
        return SignResponse(chain.decode(), serial, identity, leaf.not_valid_after_utc.timestamp())

    async def revoke(self, ctx: Context, req: RevokeRequest) -> RevokeResponse:
        """Revoke a certificate by serial (admins only)."""
        account = ctx.account
        if account is None:
            raise unauthorized(_ID, "revoking a certificate needs an admin account")
        if ADMIN not in account.scopes:
            raise forbidden(_ID, "only admins revoke certificates")
        done = await self.ca.revoke(req.serial)
        log.warning("certificate %s revoked by %s/%s", req.serial, account.namespace, account.sub)
        return RevokeResponse(done)

    @public
    async def bundle(self, ctx: Context, req: BundleRequest) -> BundleResponse:
        """The root certificate and the current CRL."""
        return BundleResponse(self.ca.bundle_pem().decode(), self.ca.crl_pem().decode())
