"""Identity: a certificate authority and mutual TLS between services.

``micro server`` runs a CA (:mod:`micro.identity.ca`): a root and an intermediate, ECDSA
P-256. A service generates its own key, sends a CSR to ``Identity.Sign`` with its
service-account credentials and gets back a certificate whose only identity is the URI SAN
``spiffe://<namespace>/<service>`` (:mod:`micro.identity.handler`). With mutual TLS
(:mod:`micro.identity.tls`), both ends of every RPC connection present such a certificate
and verify the peer's chain and the CRL; the server gives each call the caller's SPIFFE id
as ``ctx.identity``. :class:`~micro.identity.client.IdentityClient` obtains credentials and
renews them at 2/3 of their lifetime; new connections use the new certificate while
established ones carry on. Revoked certificates are refused on new connections once peers
have fetched the CRL (``Identity.Bundle``).

This module stays import-light (the transport imports :mod:`micro.identity.peer`).
"""

from __future__ import annotations

__all__ = ["SERVICE"]

SERVICE = "identity"
"""The name the identity service registers under."""
