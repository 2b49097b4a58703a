"""Throwaway certificates for test registries, made with `cryptography` at test time.

EC P-256 keys throughout: generating one takes well under a millisecond, RSA-2048 takes tens.
"""

import base64
import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ONE_DAY = datetime.timedelta(days=1)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(subject, issuer, public_key):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY)
            .not_valid_after(now + 7 * _ONE_DAY)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


@dataclass(frozen=True)
class CertFiles:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class CertificateAuthority:
    key: object
    cert: object
    cert_file: Path

    @classmethod
    def create(cls, directory, common_name="toolbox test CA"):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        # Python 3.13's default VERIFY_X509_STRICT wants key usage on the CA and AKI on the leaf.
        cert = (_builder(_name(common_name), _name(common_name), key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True, crl_sign=True,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        cert_file = directory / "ca.crt"
        cert_file.write_bytes(_cert_pem(cert))
        return cls(key, cert, cert_file)

    def issue_server_cert(self, directory, name="server", hosts=("127.0.0.1", "localhost")):
        """A serving certificate for `hosts` (IP addresses become IP SANs), signed by this CA."""
        directory = Path(directory)
        key = ec.generate_private_key(ec.SECP256R1())
        sans = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        cert = (_builder(_name(hosts[0]), self.cert.subject, key.public_key())
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False, crl_sign=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        files = CertFiles(directory / f"{name}.crt", directory / f"{name}.key")
        files.cert_file.write_bytes(_cert_pem(cert))
        files.key_file.write_bytes(_key_pem(key))
        files.key_file.chmod(0o600)
        return files


@dataclass(frozen=True)
class SigningKey:
    """The token server's signing key and the self-signed certificate the registry trusts."""

    key: object
    cert_file: Path
    kid: str

    @classmethod
    def create(cls, directory, common_name="toolbox test token issuer"):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (_builder(_name(common_name), _name(common_name), key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        cert_file = directory / "token-signing.crt"
        cert_file.write_bytes(_cert_pem(cert))
        return cls(key, cert_file, libtrust_key_id(key.public_key()))

    def sign_jwt(self, header, claims):
        """A compact JWS with ES256 (RFC 7518 section 3.4: the signature is r || s, 32 bytes each)."""
        import json

        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        def b64(data):
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = {"typ": "JWT", "alg": "ES256", "kid": self.kid, **header}
        signing_input = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + \
            b64(json.dumps(claims, separators=(",", ":")).encode())
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def libtrust_key_id(public_key):
    """The key ID docker/libtrust gives a public key, which distribution 2.8 matches against `kid`.

    SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without padding (48 chars),
    in 12 groups of 4 joined by ':' (libtrust util.go, keyIDFromCryptoKey).
    """
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))
