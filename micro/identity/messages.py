"""Request and response types of the ``identity`` RPC service."""

from __future__ import annotations

import msgspec

__all__ = [
    "BundleRequest",
    "BundleResponse",
    "RevokeRequest",
    "RevokeResponse",
    "SignRequest",
    "SignResponse",
]


class SignRequest(msgspec.Struct, omit_defaults=True):
    """Certify the key of ``csr`` (PEM) as ``spiffe://<namespace>/<service>``.

    ``namespace`` and ``service`` default to the caller's account (its namespace and id);
    only an admin may name others. ``ttl`` is seconds (0: the CA's default)."""

    csr: str
    service: str = ""
    namespace: str = ""
    ttl: float = 0.0


class SignResponse(msgspec.Struct):
    """The chain (leaf then intermediate, PEM), the leaf's ``serial`` (hex), its identity
    and expiry (Unix seconds)."""

    chain: str
    serial: str
    identity: str
    not_after: float


class RevokeRequest(msgspec.Struct):
    """Revoke the certificate with serial ``serial`` (hex)."""

    serial: str


class RevokeResponse(msgspec.Struct):
    """``revoked`` is False when the serial was already revoked."""

    revoked: bool


class BundleRequest(msgspec.Struct):
    """No fields."""


class BundleResponse(msgspec.Struct):
    """What peers trust: ``ca`` (the root, PEM) and the current ``crl`` (PEM)."""

    ca: str
    crl: str
