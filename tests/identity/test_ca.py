"""The certificate authority: chains, CSR checks, the SPIFFE SAN, revocation and the CRL."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from micro import MicroError
from micro.identity.ca import CertificateAuthority, format_serial, spiffe_id
from micro.identity.client import make_csr


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _chain(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


async def test_issued_chain_verifies_to_the_root_with_the_spiffe_san() -> None:
    ca = await CertificateAuthority.ephemeral()
    _, csr = make_csr()
    leaf, intermediate = _chain(ca.sign(csr, namespace="micro", service="greeter"))
    root = x509.load_pem_x509_certificate(ca.bundle_pem())

    store = verification.Store([root])
    verified = (
        verification.PolicyBuilder()
        .store(store)
        .build_client_verifier()
        .verify(leaf, [intermediate])
    )
    assert verified.chain[-1] == root
    assert [uri.value for uri in verified.subjects or []] == ["spiffe://micro/greeter"]

    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://micro/greeter"
    ]
    assert san.value.get_values_for_type(x509.DNSName) == []
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    inter_bc = intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (root_bc.ca, root_bc.path_length) == (True, 1)
    assert (inter_bc.ca, inter_bc.path_length) == (True, 0)
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)


async def test_lifetimes_follow_the_clock_and_are_capped() -> None:
    clock = Clock()
    ca = await CertificateAuthority.ephemeral(clock=clock, max_ttl=86400.0)
    _, csr = make_csr()
    leaf = _chain(ca.sign(csr, namespace="micro", service="a", ttl=600.0))[0]
    assert leaf.not_valid_after_utc.timestamp() == clock.now + 600.0
    assert leaf.not_valid_before_utc.timestamp() <= clock.now
    long = _chain(ca.sign(csr, namespace="micro", service="a", ttl=30 * 86400.0))[0]
    assert long.not_valid_after_utc.timestamp() == clock.now + 86400.0
    root = x509.load_pem_x509_certificate(ca.bundle_pem())
    years = (root.not_valid_after_utc - root.not_valid_before_utc).days / 365
    assert 9.9 < years < 10.1
    assert (ca.intermediate.not_valid_after_utc.timestamp() - clock.now) == 365 * 86400.0


async def test_serials_are_random_and_distinct() -> None:
    ca = await CertificateAuthority.ephemeral()
    _, csr = make_csr()
    serials = {_chain(ca.sign(csr, namespace="m", service="s"))[0].serial_number for _ in range(5)}
    assert len(serials) == 5
    assert all(s.bit_length() > 64 for s in serials)


async def test_a_csr_with_a_bad_signature_is_refused() -> None:
    ca = await CertificateAuthority.ephemeral()
    key = ec.generate_private_key(ec.SECP256R1())
    good = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature's last integer: still parses, no longer verifies
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(MicroError) as err:
        ca.sign(tampered, namespace="micro", service="greeter")
    assert err.value.code == "bad_request"
    assert "signature" in err.value.detail

    with pytest.raises(MicroError) as err:
        ca.sign(b"not a csr", namespace="micro", service="greeter")
    assert err.value.code == "bad_request"


async def test_the_csr_cannot_choose_its_identity() -> None:
    ca = await CertificateAuthority.ephemeral()
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "admin")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://micro/auth")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    leaf = _chain(ca.sign(csr, namespace="micro", service="greeter"))[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://micro/greeter"]


def test_spiffe_ids_are_checked() -> None:
    assert spiffe_id("micro", "greeter-2.v1") == "spiffe://micro/greeter-2.v1"
    for namespace, service in (("micro", ""), ("mi/cro", "x"), ("micro", ".."), ("a b", "x")):
        with pytest.raises(MicroError):
            spiffe_id(namespace, service)


async def test_revocation_shows_in_the_crl_signed_by_the_intermediate() -> None:
    clock = Clock()
    ca = await CertificateAuthority.ephemeral(clock=clock, max_ttl=3600.0)
    _, csr = make_csr()
    leaf = _chain(ca.sign(csr, namespace="micro", service="greeter"))[0]
    other = _chain(ca.sign(csr, namespace="micro", service="greeter"))[0]
    before = x509.load_pem_x509_crl(ca.crl_pem())
    assert before.get_revoked_certificate_by_serial_number(leaf.serial_number) is None

    clock.now += 10
    assert await ca.revoke(format_serial(leaf.serial_number)) is True
    assert await ca.revoke(leaf.serial_number) is False
    crl = x509.load_pem_x509_crl(ca.crl_pem())
    assert crl.is_signature_valid(ca.intermediate.public_key())
    assert crl.issuer == ca.intermediate.subject
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(other.serial_number) is None
    assert crl.next_update_utc is not None
    assert crl.next_update_utc.timestamp() > clock.now

    # Once every certificate the serial could name has expired, it leaves the CRL.
    clock.now += 3600.0 + 120
    later = x509.load_pem_x509_crl(ca.crl_pem())
    assert later.get_revoked_certificate_by_serial_number(leaf.serial_number) is None


async def test_a_ca_directory_is_created_private_and_loaded_again(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    ca = await CertificateAuthority.open(directory)
    for name in ("root.key", "intermediate.key"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    _, csr = make_csr()
    leaf = _chain(ca.sign(csr, namespace="micro", service="greeter"))[0]
    await ca.revoke(leaf.serial_number)

    again = await CertificateAuthority.open(directory)
    assert again.bundle_pem() == ca.bundle_pem()
    assert again.intermediate_pem() == ca.intermediate_pem()
    crl = x509.load_pem_x509_crl(again.crl_pem())
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None


async def test_an_intermediate_near_its_end_is_reissued(tmp_path: Path) -> None:
    clock = Clock()
    ca = await CertificateAuthority.open(tmp_path, clock=clock)
    clock.now += 340 * 86400.0
    renewed = await CertificateAuthority.open(tmp_path, clock=clock)
    assert renewed.bundle_pem() == ca.bundle_pem()
    assert renewed.intermediate.serial_number != ca.intermediate.serial_number
    renewed.intermediate.verify_directly_issued_by(ca.root)
