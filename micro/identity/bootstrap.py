"""Mutual TLS for a whole platform (``MICRO_TLS=1``): how each part gets its certificate.

- ``micro server`` signs its own certificate with its CA and listens with it. Its listener
  also accepts clients *without* a certificate (their ``ctx.identity`` is empty): that is
  how a new service logs in and asks for one (``Identity.Sign``) — encrypted, the server
  verified against the CA bundle, the call authorised by the caller's token as always.
- A service trusts the CA bundle (``MICRO_TLS_CA``, a PEM file, else the server's
  ``<data dir>/ca/root.pem`` on the same machine; the runtime sets ``MICRO_TLS_CA`` for the
  services it starts), logs in, obtains a certificate for its own name
  (``spiffe://<namespace>/<service>``) and renews it at two thirds of its lifetime. It
  listens with it requiring client certificates, and presents it on every call it makes.
- The CLI presents a certificate too when its account may get one (an administrator), so
  it can call services directly; otherwise it reaches only the server.

:class:`TlsClient` is the client side's current context: the bundle alone until a
certificate is held, then the certificate.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path

from .tls import Credentials

__all__ = ["ROOT_FILE", "TlsClient", "ca_bundle", "trust_context"]

ROOT_FILE = "root.pem"
"""The CA's root certificate in ``<data dir>/ca``."""


def ca_bundle(data_dir: Path, env: Mapping[str, str] | None = None) -> bytes:
    """The PEM of the CA to trust: ``MICRO_TLS_CA``, else the local server's root."""
    env = os.environ if env is None else env
    path = Path(env["MICRO_TLS_CA"]) if env.get("MICRO_TLS_CA") else data_dir / "ca" / ROOT_FILE
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RuntimeError(
            f"MICRO_TLS=1 but the CA certificate {path} cannot be read ({exc.strerror}); "
            "set MICRO_TLS_CA to the server's ca/root.pem"
        ) from None


def trust_context(bundle: bytes) -> ssl.SSLContext:
    """A client context that verifies the server against ``bundle`` and presents nothing
    (peers are identified by SPIFFE id, not host name)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=bundle.decode("ascii"))
    return ctx


class TlsClient:
    """The TLS context of a client's new connections: the bundle only, then (once
    :attr:`credentials` is set) the certificate, renewed in place."""

    def __init__(self, bundle: bytes) -> None:
        self._bootstrap = trust_context(bundle)
        self.credentials: Credentials | None = None

    def context(self) -> ssl.SSLContext:
        """The context for the next connection."""
        creds = self.credentials
        return self._bootstrap if creds is None else creds.client_context()
