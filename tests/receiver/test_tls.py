"""--self-signed: a certificate a browser and the CLI sender can be pointed at."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from micwire.receiver.tls import self_signed


def test_made_once_then_reused_and_the_fingerprint_is_the_certificates(tmp_path: Path) -> None:
    cert, key, fingerprint = self_signed(tmp_path)
    again = self_signed(tmp_path)
    assert again == (cert, key, fingerprint)  # a browser that trusted it keeps trusting it
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    assert fingerprint == loaded.fingerprint(hashes.SHA256()).hex(":").upper()
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert key.stat().st_mode & 0o077 == 0  # the private key is not readable by others
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)  # a pair the server can serve


def test_an_unreadable_certificate_is_replaced(tmp_path: Path) -> None:
    cert, _, fingerprint = self_signed(tmp_path)
    cert.write_text("not a certificate")
    _, _, renewed = self_signed(tmp_path)
    assert renewed != fingerprint
    x509.load_pem_x509_certificate(cert.read_bytes())
