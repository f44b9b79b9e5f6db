"""A test grid PKI: a CA, a host certificate for 127.0.0.1 and a user's RFC 3820 proxy.

What a storage element and a grid job hold, made with ``cryptography`` for the grid tests:
``/etc/grid-security/certificates`` (the CA directory, ``X509_CERT_DIR``: certificates under
OpenSSL's subject-hash names), the host certificate and key of the server, and the file that
``voms-proxy-init`` writes (``X509_USER_PROXY``: the proxy certificate, its key, then the
user certificate that signed it). No pytest here.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: proxyCertInfo (RFC 3820): the extension that makes a certificate a proxy.
PROXY_CERT_INFO = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")
#: Its value: ProxyCertInfo ::= SEQUENCE { proxyPolicy SEQUENCE { id-ppl-inheritAll } }.
INHERIT_ALL = bytes.fromhex("300c300a06082b06010505071501")


@dataclass(frozen=True)
class GridPKI:
    """Paths of the files a grid test needs."""

    cert_dir: Path  # X509_CERT_DIR
    ca: Path  # the CA certificate (PEM)
    host_cert: Path
    host_key: Path
    proxy: Path  # X509_USER_PROXY
    user_dn: str  # the user's subject, as a grid-mapfile names it
    stranger_proxy: Path  # a proxy of a user whose CA the server does not trust
    expired_proxy: Path  # a proxy of the CA's user that ended an hour ago


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(*cns: str, org: str = "bgcache-test") -> x509.Name:
    rdns = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    return x509.Name(rdns + [x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey, *, expired: bool = False
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    end = now - datetime.timedelta(hours=1) if expired else now + datetime.timedelta(days=2)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=2))
        .not_valid_after(end)
    )


def subject_hash(cert: x509.Certificate) -> str:
    """OpenSSL's subject hash (``openssl x509 -hash``): the name a CA directory files a CA
    certificate under (``<hash>.0``). SHA-1 of the canonical name (each value a lower-case
    UTF8String with its spaces collapsed, the RDN sets without the outer SEQUENCE), its
    first four bytes read little-endian."""
    canonical = b""
    for rdn in cert.subject.rdns:
        items = b""
        for attr in rdn:
            oid = _der_oid(attr.oid.dotted_string)
            value = " ".join(str(attr.value).split()).lower().encode()
            items += _der(0x30, oid + _der(0x0C, value))
        canonical += _der(0x31, items)
    digest = hashlib.sha1(canonical).digest()
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, body)


def _ca(name: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _key()
    subject = _name(name)
    cert = (
        _builder(subject, subject, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _user_proxy(
    ca: x509.Certificate, ca_key: rsa.RSAPrivateKey, cn: str, *, expired: bool = False
) -> tuple[bytes, x509.Name]:
    """The PEM of an RFC 3820 proxy of a new user ``cn`` signed by ``ca``: proxy
    certificate, proxy key, user certificate (the order voms-proxy-init writes); an
    ``expired`` proxy ended an hour ago."""
    user_key = _key()
    user_subject = _name(cn)
    user = (
        _builder(user_subject, ca.subject, user_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    proxy_key = _key()
    proxy_subject = x509.Name(
        [
            *user_subject.rdns,
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.COMMON_NAME, str(x509.random_serial_number() % 10**9))]
            ),
        ]
    )
    proxy = (
        _builder(proxy_subject, user_subject, proxy_key, expired=expired)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO, INHERIT_ALL), critical=True)
        .sign(user_key, hashes.SHA256())
    )
    return _pem(proxy) + _key_pem(proxy_key) + _pem(user), user_subject


def make_pki(base: Path) -> GridPKI:
    """Write a CA directory, a host certificate for 127.0.0.1/localhost and users' proxies
    (of the CA's user, valid and expired; of a CA the server does not know) under ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca("bgcache test CA")
    cert_dir = base / "certificates"
    cert_dir.mkdir()
    (cert_dir / f"{subject_hash(ca)}.0").write_bytes(_pem(ca))
    (base / "ca.pem").write_bytes(_pem(ca))

    host_key = _key()
    host = (
        _builder(_name("localhost"), ca.subject, host_key)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (base / "hostcert.pem").write_bytes(_pem(host))
    (base / "hostkey.pem").write_bytes(_key_pem(host_key))
    (base / "hostkey.pem").chmod(0o400)

    proxy, user_subject = _user_proxy(ca, ca_key, "Test User")
    (base / "proxy.pem").write_bytes(proxy)
    (base / "proxy.pem").chmod(0o600)
    other_ca, other_key = _ca("an untrusted CA")
    stranger, _ = _user_proxy(other_ca, other_key, "Stranger")
    (base / "stranger.pem").write_bytes(stranger)
    (base / "stranger.pem").chmod(0o600)
    expired, _ = _user_proxy(ca, ca_key, "Test User", expired=True)
    (base / "expired.pem").write_bytes(expired)
    (base / "expired.pem").chmod(0o600)
    dn = "/" + "/".join(
        f"{'O' if a.oid == NameOID.ORGANIZATION_NAME else 'CN'}={a.value}" for a in user_subject
    )
    return GridPKI(
        cert_dir=cert_dir,
        ca=base / "ca.pem",
        host_cert=base / "hostcert.pem",
        host_key=base / "hostkey.pem",
        proxy=base / "proxy.pem",
        user_dn=dn,
        stranger_proxy=base / "stranger.pem",
        expired_proxy=base / "expired.pem",
    )


__all__ = ["GridPKI", "make_pki", "subject_hash"]
