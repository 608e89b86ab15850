"""TLS contexts for mutual TLS between services, and rotation of the credentials in them.

Both ends present a certificate chain from the platform CA (:mod:`micro.identity.ca`) and
require one from the peer (``CERT_REQUIRED``): the chain must lead to the CA bundle, and the
leaf must not be listed in the CRL (``VERIFY_CRL_CHECK_LEAF``; a CRL is then required, and
an expired one fails the handshake). Host names are not checked (``check_hostname=False``):
a peer is known by the SPIFFE id in its certificate, :func:`peer_identity`.

``ssl`` only reads keys and certificates from files; the PEM given here is written to an
anonymous in-memory file (``memfd``, Linux) or, elsewhere, to a private temporary directory,
loaded, and removed at once.

**Rotation.** :class:`Credentials` holds the current key, chain, bundle and CRL.
:meth:`Credentials.server_context` is one context for the life of a listener: every new
handshake switches to a context built from the current material (through the SNI callback,
which OpenSSL calls for each ClientHello), so :meth:`Credentials.update` changes what new
connections present and accept while established connections keep their session.
:meth:`Credentials.client_context` returns a context for the current material, rebuilt after
each update: pass the bound method to :class:`~micro.transport.client.ConnectionPool` so
each new connection uses the newest.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .peer import peer_identity

__all__ = [
    "Credentials",
    "Material",
    "client_context",
    "leaf_certificate",
    "peer_identity",
    "server_context",
]


@dataclass(frozen=True)
class Material:
    """PEM of what one end presents and trusts: its ``chain`` (leaf first) and private
    ``key``, the ``bundle`` of trusted roots and the ``crl`` (``None``: no CRL check)."""

    chain: bytes
    key: bytes
    bundle: bytes
    crl: bytes | None = None


@contextlib.contextmanager
def _as_file(data: bytes) -> Iterator[str]:
    """A path whose content is ``data``, valid inside the block only."""
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        fd = memfd("micro-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="micro-tls-") as tmp:
        path = Path(tmp) / "pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield str(path)


def _configure(ctx: ssl.SSLContext, material: Material) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    with _as_file(material.chain) as chain, _as_file(material.key) as key:
        ctx.load_cert_chain(chain, key)
    ctx.load_verify_locations(cadata=material.bundle.decode("ascii"))
    if material.crl is not None:
        with _as_file(material.crl) as crl:  # cadata= takes certificates only, cafile= CRLs too
            ctx.load_verify_locations(cafile=crl)
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def server_context(
    cert_chain_pem: bytes, key_pem: bytes, ca_bundle_pem: bytes, crl_pem: bytes | None
) -> ssl.SSLContext:
    """A server-side context: present ``cert_chain_pem``, require a client certificate that
    chains to ``ca_bundle_pem`` and is not revoked in ``crl_pem``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    return _configure(ctx, Material(cert_chain_pem, key_pem, ca_bundle_pem, crl_pem))


def client_context(
    cert_chain_pem: bytes, key_pem: bytes, ca_bundle_pem: bytes, crl_pem: bytes | None
) -> ssl.SSLContext:
    """A client-side context: present ``cert_chain_pem``, require a server certificate that
    chains to ``ca_bundle_pem`` and is not revoked in ``crl_pem`` (no host name check)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return _configure(ctx, Material(cert_chain_pem, key_pem, ca_bundle_pem, crl_pem))


def leaf_certificate(chain_pem: bytes) -> x509.Certificate:
    """The first certificate of a PEM chain."""
    return x509.load_pem_x509_certificates(chain_pem)[0]


class Credentials:
    """The current TLS material of one service, replaceable while it serves and calls.

    ``loader`` (optional) returns fresh material for :meth:`reload` (e.g. read from files
    another process renews: :meth:`from_files`).
    """

    def __init__(
        self,
        material: Material,
        loader: Callable[[], Material] | None = None,
        *,
        optional_clients: bool = False,
    ) -> None:
        # optional_clients: the listener also accepts clients without a certificate (their
        # ctx.identity is ""): micro server's, so a new service can log in and obtain one
        self._optional = optional_clients
        self._loader = loader
        self._lock = threading.Lock()
        self._server: ssl.SSLContext | None = None
        self._set(material)

    def _set(self, material: Material) -> None:
        leaf = leaf_certificate(material.chain)
        server = server_context(material.chain, material.key, material.bundle, material.crl)
        if self._optional:
            server.verify_mode = ssl.CERT_OPTIONAL
        client = client_context(material.chain, material.key, material.bundle, material.crl)
        with self._lock:
            self.material = material
            self.leaf = leaf
            self._current_server = server
            self._current_client = client

    @classmethod
    def from_files(
        cls, chain: Path, key: Path, bundle: Path, crl: Path | None = None
    ) -> Credentials:
        """Credentials read from PEM files; :meth:`reload` reads them again."""

        def load() -> Material:
            return Material(
                chain.read_bytes(),
                key.read_bytes(),
                bundle.read_bytes(),
                crl.read_bytes() if crl is not None else None,
            )

        return cls(load(), load)

    @property
    def serial(self) -> int:
        """The serial number of the current leaf certificate."""
        return self.leaf.serial_number

    @property
    def not_after(self) -> float:
        """When the current leaf expires (Unix seconds)."""
        return self.leaf.not_valid_after_utc.timestamp()

    @property
    def not_before(self) -> float:
        """When the current leaf became valid (Unix seconds)."""
        return self.leaf.not_valid_before_utc.timestamp()

    @property
    def identity(self) -> str:
        """The SPIFFE id of the current leaf."""
        try:
            san = self.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return ""
        for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith("spiffe://"):
                return uri
        return ""

    def update(
        self,
        *,
        chain: bytes | None = None,
        key: bytes | None = None,
        bundle: bytes | None = None,
        crl: bytes | None = None,
    ) -> None:
        """Replace parts of the material (a renewed chain and its key, a newer CRL, ...);
        new connections use it, established ones are untouched. Raises (and keeps the
        current material) when the new one does not load, e.g. a key that does not match."""
        old = self.material
        self._set(
            Material(
                chain if chain is not None else old.chain,
                key if key is not None else old.key,
                bundle if bundle is not None else old.bundle,
                crl if crl is not None else old.crl,
            )
        )

    def reload(self) -> None:
        """Load the material again from the ``loader`` given at construction."""
        if self._loader is None:
            raise RuntimeError("these credentials have no loader to reload from")
        self._set(self._loader())

    def server_context(self) -> ssl.SSLContext:
        """The context to listen with (the same object every time): each new handshake
        uses the material current at that moment."""
        with self._lock:
            if self._server is None:
                m = self.material
                self._server = server_context(m.chain, m.key, m.bundle, m.crl)
                if self._optional:
                    self._server.verify_mode = ssl.CERT_OPTIONAL
                self._server.sni_callback = self._switch
            return self._server

    def _switch(self, ssl_object: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        current = self._current_server
        if ssl_object.context is not current:
            ssl_object.context = current

    def client_context(self) -> ssl.SSLContext:
        """A context to open connections with, for the current material."""
        return self._current_client
