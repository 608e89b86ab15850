"""The certificate authority behind mutual TLS: a root, an intermediate, leaves and a CRL.

The **root** (10 years, ``pathLen 1``) only signs the intermediate; the **intermediate**
(1 year, ``pathLen 0``) signs every leaf and the CRL. Both keys are ECDSA P-256. A **leaf**
is issued for a key its owner generated (the owner sends a CSR, never the key): the CA
checks the CSR's signature and ignores whatever subject or extensions it asks for: the
identity is decided here, from the account that asked, as one URI SAN
``spiffe://<namespace>/<service>``, with EKU ``clientAuth`` and ``serverAuth``. RPC checks
that SPIFFE id and the chain, not host names (addresses of services change; their identity
does not), so leaves carry no DNS or IP SANs and TLS contexts run with
``check_hostname=False`` and ``CERT_REQUIRED``.

Serial numbers are random (159 bits); on the wire they travel as lowercase hex.
:meth:`CertificateAuthority.revoke` adds a serial to the revocation list, kept by a
:class:`RevocationStore` (a JSON file in the CA directory by default, or memory); a revoked
serial stays listed until any certificate it could name has expired (``revoked +
max_ttl``). :meth:`CertificateAuthority.crl_pem` is a fresh CRL signed by the intermediate,
valid ``crl_ttl`` (peers must refetch it before then: an expired CRL fails every handshake).

Directory layout (keys ``0600``, the directory ``0700``): ``root.key``, ``root.pem``,
``intermediate.key``, ``intermediate.pem``, ``revoked.json``. The intermediate is reissued
(new key) when it has less than ``renew_intermediate`` seconds left; leaves it signed keep
verifying (their chain carries it) until they expire, but are no longer covered by the CRL.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import bad_request

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "CertificateAuthority",
    "JsonRevocations",
    "MemoryRevocations",
    "Revocation",
    "RevocationStore",
    "format_serial",
    "parse_serial",
    "spiffe_id",
]

DEFAULT_TTL = 24 * 3600.0
"""Seconds a leaf certificate is valid unless asked otherwise (24 hours)."""
MAX_TTL = 7 * 86400.0
"""The longest leaf lifetime the CA grants (7 days)."""
ROOT_TTL = 10 * 365 * 86400.0
INTERMEDIATE_TTL = 365 * 86400.0
CRL_TTL = 2 * 86400.0
BACKDATE = 60.0  # seconds leaves are backdated by, for clocks slightly behind ours
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_ID = "identity"


def spiffe_id(namespace: str, service: str) -> str:
    """``spiffe://<namespace>/<service>``; both must be non-empty ``[A-Za-z0-9._-]``."""
    for what, value in (("namespace", namespace), ("service", service)):
        if not _SEGMENT.match(value) or value in (".", ".."):
            raise bad_request(_ID, f"{what} {value!r} is not a valid SPIFFE path segment")
    return f"spiffe://{namespace}/{service}"


def format_serial(serial: int) -> str:
    """A certificate serial as it travels on the wire: lowercase hex."""
    return format(serial, "x")


def parse_serial(text: str | int) -> int:
    """The serial number of ``text`` (hex, optionally ``0x``-prefixed or with ``:``)."""
    if isinstance(text, int):
        return text
    try:
        return int(text.replace(":", "").removeprefix("0x"), 16)
    except ValueError:
        raise bad_request(_ID, f"serial {text!r} is not a hex number") from None


class Revocation:
    """One revoked serial, listed in CRLs from ``revoked`` until ``until`` (Unix seconds)."""

    __slots__ = ("revoked", "serial", "until")

    def __init__(self, serial: int, revoked: float, until: float) -> None:
        self.serial = serial
        self.revoked = revoked
        self.until = until

    def __repr__(self) -> str:
        return f"Revocation({format_serial(self.serial)}, {self.revoked}, {self.until})"


class RevocationStore(Protocol):
    """Where the CA keeps its revocations (the JSON file, or later the platform store)."""

    async def load(self) -> list[Revocation]:
        """Every revocation saved."""
        ...

    async def save(self, revocations: list[Revocation]) -> None:
        """Replace what is saved with ``revocations``."""
        ...


class MemoryRevocations:
    """Revocations kept in memory only (tests, throwaway CAs)."""

    def __init__(self) -> None:
        self._saved: list[Revocation] = []

    async def load(self) -> list[Revocation]:
        return list(self._saved)

    async def save(self, revocations: list[Revocation]) -> None:
        self._saved = list(revocations)


class JsonRevocations:
    """Revocations in a small JSON file, replaced atomically on each save."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def load(self) -> list[Revocation]:
        return await asyncio.to_thread(self._load)

    def _load(self) -> list[Revocation]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [
            Revocation(parse_serial(item["serial"]), float(item["revoked"]), float(item["until"]))
            for item in raw.get("revoked", [])
        ]

    async def save(self, revocations: list[Revocation]) -> None:
        await asyncio.to_thread(self._save, revocations)

    def _save(self, revocations: list[Revocation]) -> None:
        data = {
            "revoked": [
                {"serial": format_serial(r.serial), "revoked": r.revoked, "until": r.until}
                for r in revocations
            ]
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)


def _utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, secret: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    return key


class CertificateAuthority:
    """A root and an intermediate that issue SPIFFE leaf certificates and sign the CRL.

    Build one with :meth:`open` (a directory: loaded, or created on first use) or
    :meth:`ephemeral` (memory only). ``clock`` returns Unix seconds (tests pass their own).
    """

    def __init__(
        self,
        root_key: ec.EllipticCurvePrivateKey,
        root: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        intermediate: x509.Certificate,
        revocations: RevocationStore,
        *,
        clock: Callable[[], float] = time.time,
        max_ttl: float = MAX_TTL,
        crl_ttl: float = CRL_TTL,
    ) -> None:
        self.root_key = root_key
        self.root = root
        self.key = key
        self.intermediate = intermediate
        self.store = revocations
        self.clock = clock
        self.max_ttl = max_ttl
        self.crl_ttl = crl_ttl
        self.revoked: dict[int, Revocation] = {}
        self._crl: tuple[float, bytes] | None = None

    # -- building --------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        directory: Path,
        *,
        name: str = "micro",
        clock: Callable[[], float] = time.time,
        revocations: RevocationStore | None = None,
        renew_intermediate: float = 30 * 86400.0,
        max_ttl: float = MAX_TTL,
        crl_ttl: float = CRL_TTL,
    ) -> CertificateAuthority:
        """The CA kept in ``directory``: loaded, or created there on first use."""
        now = clock()
        root_key, root, key, cert = await asyncio.to_thread(
            _load_or_create, directory, name, now, renew_intermediate
        )
        store = (
            revocations if revocations is not None else JsonRevocations(directory / "revoked.json")
        )
        ca = cls(root_key, root, key, cert, store, clock=clock, max_ttl=max_ttl, crl_ttl=crl_ttl)
        await ca.load_revocations()
        return ca

    @classmethod
    async def ephemeral(
        cls,
        *,
        name: str = "micro",
        clock: Callable[[], float] = time.time,
        revocations: RevocationStore | None = None,
        max_ttl: float = MAX_TTL,
        crl_ttl: float = CRL_TTL,
    ) -> CertificateAuthority:
        """A CA that lives in memory only."""
        now = clock()
        root_key, root = _make_root(name, now)
        key, cert = _make_intermediate(name, root_key, root, now)
        ca = cls(
            root_key,
            root,
            key,
            cert,
            revocations or MemoryRevocations(),
            clock=clock,
            max_ttl=max_ttl,
            crl_ttl=crl_ttl,
        )
        await ca.load_revocations()
        return ca

    async def load_revocations(self) -> None:
        """Read the revocations from the store (done by :meth:`open`)."""
        self.revoked = {r.serial: r for r in await self.store.load()}
        self._crl = None

    # -- issuing ---------------------------------------------------------------------------

    def sign(
        self, csr_pem: bytes, *, namespace: str, service: str, ttl: float = DEFAULT_TTL
    ) -> bytes:
        """Issue a leaf for the key of ``csr_pem`` with the identity
        ``spiffe://<namespace>/<service>``, valid ``ttl`` seconds (at most ``max_ttl``, and
        never past the intermediate). Returns the chain: leaf then intermediate, PEM.
        Raises ``bad_request`` for a CSR that does not parse, whose signature is wrong, or
        whose key is too weak."""
        identity = spiffe_id(namespace, service)
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise bad_request(_ID, f"the CSR does not parse: {exc}") from None
        try:
            valid = csr.is_signature_valid
        except (ValueError, InvalidSignature, TypeError):
            valid = False
        if not valid:
            raise bad_request(_ID, "the CSR's signature does not verify")
        public = csr.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            if public.curve.name not in ("secp256r1", "secp384r1"):
                raise bad_request(_ID, f"EC curve {public.curve.name} is not accepted")
        elif isinstance(public, rsa.RSAPublicKey):
            if public.key_size < 2048:
                raise bad_request(_ID, "RSA keys must have at least 2048 bits")
        elif not isinstance(public, ed25519.Ed25519PublicKey):
            raise bad_request(_ID, "the CSR's key type is not accepted (use EC P-256)")
        if not ttl > 0:
            raise bad_request(_ID, "ttl must be positive")
        now = self.clock()
        not_after = min(
            now + min(ttl, self.max_ttl), self.intermediate.not_valid_after_utc.timestamp()
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, namespace),
                        x509.NameAttribute(NameOID.COMMON_NAME, service),
                    ]
                )
            )
            .issuer_name(self.intermediate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(now - BACKDATE))
            .not_valid_after(_utc(not_after))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_LEAF_USAGE, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
                critical=False,  # the subject is not empty (RFC 5280 4.2.1.6)
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM) + self.intermediate_pem()

    # -- revocation ------------------------------------------------------------------------

    async def revoke(self, serial: int | str) -> bool:
        """List ``serial`` in the CRL from now on; False when it already was."""
        number = parse_serial(serial)
        if number in self.revoked:
            return False
        now = self.clock()
        self.revoked[number] = Revocation(number, now, now + self.max_ttl + BACKDATE)
        self._purge(now)
        await self.store.save(list(self.revoked.values()))
        self._crl = None
        return True

    def _purge(self, now: float) -> None:
        for number in [n for n, r in self.revoked.items() if r.until < now]:
            del self.revoked[number]

    def crl_pem(self) -> bytes:
        """A CRL of the serials revoked, signed by the intermediate, valid ``crl_ttl``
        seconds (reissued every ``crl_ttl / 4``, after a revocation, and when a serial
        leaves it)."""
        now = self.clock()
        if self._crl is not None and now < self._crl[0]:
            return self._crl[1]
        self._purge(now)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.intermediate.subject)
            .last_update(_utc(now - BACKDATE))
            .next_update(_utc(now + self.crl_ttl))
            .add_extension(x509.CRLNumber(int(now * 1000)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        for entry in self.revoked.values():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(entry.serial)
                .revocation_date(_utc(entry.revoked))
                .build()
            )
        pem = builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        # reissue after a quarter of its validity, or when a listed serial is due to leave it
        reissue = min([now + self.crl_ttl / 4, *(r.until for r in self.revoked.values())])
        self._crl = (reissue, pem)
        return pem

    # -- publishing ------------------------------------------------------------------------

    def bundle_pem(self) -> bytes:
        """The root certificate: what peers trust."""
        return self.root.public_bytes(serialization.Encoding.PEM)

    def intermediate_pem(self) -> bytes:
        """The intermediate certificate (sent in every chain)."""
        return self.intermediate.public_bytes(serialization.Encoding.PEM)


_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _load_or_create(
    directory: Path, name: str, now: float, renew_intermediate: float
) -> tuple[
    ec.EllipticCurvePrivateKey, x509.Certificate, ec.EllipticCurvePrivateKey, x509.Certificate
]:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    paths = {
        n: directory / n for n in ("root.key", "root.pem", "intermediate.key", "intermediate.pem")
    }
    if paths["root.key"].exists():
        root_key = _load_key(paths["root.key"])
        root = x509.load_pem_x509_certificate(paths["root.pem"].read_bytes())
    else:
        root_key, root = _make_root(name, now)
        _write(paths["root.key"], _key_pem(root_key), secret=True)
        _write(paths["root.pem"], root.public_bytes(serialization.Encoding.PEM))
    inter: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None
    if paths["intermediate.key"].exists():
        key = _load_key(paths["intermediate.key"])
        cert = x509.load_pem_x509_certificate(paths["intermediate.pem"].read_bytes())
        cert.verify_directly_issued_by(root)
        if cert.not_valid_after_utc.timestamp() - now > renew_intermediate:
            inter = key, cert
    if inter is None:
        inter = _make_intermediate(name, root_key, root, now)
        _write(paths["intermediate.key"], _key_pem(inter[0]), secret=True)
        _write(paths["intermediate.pem"], inter[1].public_bytes(serialization.Encoding.PEM))
    return root_key, root, inter[0], inter[1]


def _make_root(name: str, now: float) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root CA"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - BACKDATE))
        .not_valid_after(_utc(now + ROOT_TTL))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_intermediate(
    name: str, root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate, now: float
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y%m%d%H%M%S")
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"{name} intermediate CA {stamp}"),
                ]
            )
        )
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - BACKDATE))
        .not_valid_after(_utc(min(now + INTERMEDIATE_TTL, root.not_valid_after_utc.timestamp())))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return key, cert
