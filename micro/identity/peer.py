"""The peer's identity on a TLS connection (kept free of heavy imports: the transport uses it)."""

from __future__ import annotations

import ssl
from typing import Any

__all__ = ["peer_identity"]


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """The SPIFFE id (the ``spiffe://`` URI SAN) of the verified peer certificate, or ``""``
    when there is none."""
    if ssl_object is None:
        return ""
    cert: dict[str, Any] | None = ssl_object.getpeercert()
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind == "URI" and isinstance(value, str) and value.startswith("spiffe://"):
            return value
    return ""
