"""``--self-signed``: a throw-away TLS certificate, so a trial can be served over https://
(browsers give microphones only to secure pages, or to localhost).

The certificate covers this machine's name, ``localhost`` and its addresses, is valid for
30 days, and is kept in ``$XDG_CACHE_HOME/micwire`` (default ``~/.cache/micwire``) so a
browser that was told to trust it once keeps trusting it across restarts. Its SHA-256
fingerprint is printed: compare it with what the browser shows before you accept it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

from ..common.errors import ParameterError

VALID_DAYS = 30


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "micwire"


def _names() -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) this machine answers to."""
    host = socket.gethostname()
    names = sorted({"localhost", host, socket.getfqdn()} - {""})
    addresses = {"127.0.0.1", "::1"}
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            for info in socket.getaddrinfo(host, None, family):
                addresses.add(str(info[4][0]).split("%")[0])
        except OSError:
            pass
    # the address other machines reach this one at (the host name often maps to a loopback
    # address): the source address of a route outwards; a UDP "connect" sends nothing
    for family, probe in ((socket.AF_INET, "198.51.100.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                addresses.add(str(s.getsockname()[0]).split("%")[0])
        except OSError:
            pass
    return names, sorted(addresses)


def self_signed(directory: Path | None = None) -> tuple[Path, Path, str]:
    """(certificate, key, SHA-256 fingerprint): reused while valid, else made anew."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ParameterError("--self-signed needs the 'cryptography' package") from exc
    directory = directory or cache_dir()
    cert_path, key_path = directory / "self-signed.pem", directory / "self-signed.key"
    names, addresses = _names()
    now = datetime.datetime.now(datetime.timezone.utc)
    if cert_path.is_file() and key_path.is_file():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            covers = set(names) <= set(sans.get_values_for_type(x509.DNSName)) and {
                ipaddress.ip_address(a) for a in addresses
            } <= set(sans.get_values_for_type(x509.IPAddress))
            fresh = cert.not_valid_after_utc > now + datetime.timedelta(days=1)
            if covers and fresh:
                return cert_path, key_path, _fingerprint(cert)
        except (ValueError, x509.ExtensionNotFound):
            pass
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"micwire on {names[-1]}")])
    alt = [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in addresses
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, _fingerprint(cert)


def _fingerprint(cert: object) -> str:
    from cryptography.hazmat.primitives import hashes

    digest = cert.fingerprint(hashes.SHA256())  # type: ignore[attr-defined]
    return ":".join(f"{b:02X}" for b in digest)
