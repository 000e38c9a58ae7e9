"""Certificates, keys and the TLS configuration of a party.

Each party has a self-signed certificate (ECDSA P-256 by default, or Ed25519) and pins its
peer's certificate by SHA-256 fingerprint: no certificate authority is involved. The
fingerprint is `"sha256:" + hex(sha256(DER certificate))`, the same value as
`openssl x509 -noout -fingerprint -sha256` without the colons.

Pinning model (see docs/transport.md):
- client → server: the client pins the server's fingerprint (`peer_fingerprint`), checked
  right after the handshake. TLS 1.3 makes the server prove possession of the certified
  key (CertificateVerify), so a matching fingerprint authenticates the server.
- server → client (mutual TLS, `require_client_cert=True`): Python's `ssl` can only request
  a client certificate together with verifying it against trust anchors, so the server
  needs the client's certificate file(s) as `peer_cert`; the fingerprint pin (given, or
  derived from `peer_cert`) is checked in addition.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import re
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.transport.errors import PeerVerificationError

# Local imports: cryptography and yaml are imported where used: `pi --help` imports this module.

KEY_TYPES = ("ecdsa-p256", "ed25519")
_FP_RE = re.compile(r"^[0-9a-f]{64}$")
_PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def generate_self_signed(common_name: str = "pi-party", *, key_type: str = "ecdsa-p256",
                         days: int = 365) -> tuple[bytes, bytes]:
    """A fresh key and a self-signed certificate for it: (cert PEM, unencrypted PKCS#8 key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not isinstance(common_name, str) or not common_name or len(common_name) > 64:
        raise ValueError(f"common_name must be 1..64 characters, got {common_name!r}")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 10 * 366:
        raise ValueError(f"days must be an int in 1..3660, got {days!r}")
    if key_type == "ecdsa-p256":
        key = ec.generate_private_key(ec.SECP256R1())
        algorithm = hashes.SHA256()
    elif key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        algorithm = None
    else:
        raise ValueError(f"unknown key_type {key_type!r}; use one of {', '.join(KEY_TYPES)}")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1 or 1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, algorithm)
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert_pem, key_pem


@dataclass(frozen=True)
class CertificateFiles:
    cert: Path
    key: Path
    fingerprint: str


def _write_private(path: Path, data: bytes, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode under O_TRUNC
        os.write(fd, data)
    finally:
        os.close(fd)


def write_self_signed(directory: str | os.PathLike, name: str = "party", *, common_name: str | None = None,
                      key_type: str = "ecdsa-p256", days: int = 365, overwrite: bool = False
                      ) -> CertificateFiles:
    """Write `<name>.crt` (mode 0644) and `<name>.key` (mode 0600) into `directory`.

    Refuses to replace existing files unless `overwrite=True`."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ValueError(f"name must be 1..64 characters of [A-Za-z0-9_.-], got {name!r}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = d / f"{name}.crt", d / f"{name}.key"
    if not overwrite:
        for p in (cert_path, key_path):
            if p.exists():
                raise FileExistsError(f"{p} already exists; pass overwrite=True to replace it "
                                      f"(peers pinning the old certificate will refuse the new one)")
    cert_pem, key_pem = generate_self_signed(common_name or name, key_type=key_type, days=days)
    _write_private(key_path, key_pem, overwrite)
    cert_path.write_bytes(cert_pem)
    os.chmod(cert_path, 0o644)
    return CertificateFiles(cert_path, key_path, fingerprint(cert_pem))


def _cert_ders(cert: str | bytes | os.PathLike) -> list[bytes]:
    """DER encodings of the certificate(s) given as PEM text/bytes, DER bytes or a file path."""
    if isinstance(cert, str) and "-----BEGIN" in cert:
        data = cert.encode()
    elif isinstance(cert, (str, os.PathLike)):
        p = Path(cert)
        if not p.is_file():
            raise FileNotFoundError(f"certificate file {p} does not exist")
        data = p.read_bytes()
    elif isinstance(cert, (bytes, bytearray, memoryview)):
        data = bytes(cert)
    else:
        raise TypeError(f"expected a certificate as PEM, DER bytes or a path, got {type(cert).__name__}")
    if b"-----BEGIN" in data:
        blocks = _PEM_CERT_RE.findall(data)
        if not blocks:
            raise ValueError("no '-----BEGIN CERTIFICATE-----' block found in the PEM data")
        return [ssl.PEM_cert_to_DER_cert(b.decode("ascii")) for b in blocks]
    if not data or data[0] != 0x30:
        raise ValueError("data is neither a PEM certificate nor DER (DER starts with byte 0x30)")
    return [data]


def fingerprint(cert: str | bytes | os.PathLike) -> str:
    """`"sha256:<64 hex>"` of a certificate (PEM text or bytes, DER bytes, or a path to either).
    For a PEM file with several certificates, the first one."""
    return "sha256:" + hashlib.sha256(_cert_ders(cert)[0]).hexdigest()


def fingerprint_der(der: bytes) -> str:
    return "sha256:" + hashlib.sha256(der).hexdigest()


def normalize_fingerprint(fp: str) -> str:
    """Accepts "sha256:HEX", bare HEX, upper case and colon-separated (openssl's format)."""
    if not isinstance(fp, str):
        raise TypeError(f"a fingerprint must be a string like 'sha256:<64 hex digits>', got {fp!r}")
    s = fp.strip()
    if s.lower().startswith("sha256:"):
        s = s[7:]
    elif s.lower().startswith("sha256 fingerprint="):
        s = s[19:]
    s = s.replace(":", "").lower()
    if not _FP_RE.match(s):
        raise ValueError(f"malformed fingerprint {fp!r}: expected 'sha256:' followed by 64 hex digits "
                         f"(see protocols.transport.certs.fingerprint)")
    return "sha256:" + s


@dataclass(frozen=True)
class TlsConfig:
    """One party's TLS settings.

    cert, key:           this party's certificate and private key (PEM files). Required for a
                         server; for a client only when the server requires client certificates.
    peer_fingerprint:    the peer certificate's fingerprint (or a list of accepted ones).
    require_client_cert: server only: mutual TLS, refuse clients without an accepted certificate.
    peer_cert:           the peer's certificate PEM file (several certificates per file allowed),
                         or a list of such files: trust anchors for chain verification, and the
                         pins when `peer_fingerprint` is not given. Needed on a server with
                         `require_client_cert=True` (one file per accepted client, e.g.).
    server_name:         SNI sent by a client (not verified: pinning replaces hostname checks).
    allow_unpinned:      client only, INSECURE: connect without any pin (anyone in the middle can
                         read and change the traffic). For local experiments only.
    TLS 1.3 is the only version offered or accepted.
    """

    cert: Path | None = None
    key: Path | None = None
    peer_fingerprint: tuple[str, ...] | str | None = None
    require_client_cert: bool = False
    peer_cert: Path | tuple[Path, ...] | None = None
    server_name: str | None = None
    allow_unpinned: bool = False

    FIELDS = ("cert", "key", "peer_fingerprint", "require_client_cert", "peer_cert", "server_name",
              "allow_unpinned")

    def __post_init__(self) -> None:
        for name in ("cert", "key", "peer_cert"):
            v = getattr(self, name)
            if name == "peer_cert" and isinstance(v, (list, tuple)):
                if not v or not all(isinstance(x, (str, os.PathLike)) and str(x) for x in v):
                    raise ValueError(f"TlsConfig.peer_cert must be a file path or a non-empty list of them, "
                                     f"got {v!r}")
                object.__setattr__(self, name, tuple(Path(x) for x in v))
            elif v is not None:
                if not isinstance(v, (str, os.PathLike)) or not str(v):
                    raise ValueError(f"TlsConfig.{name} must be a file path, got {v!r}")
                object.__setattr__(self, name, Path(v))
        if (self.cert is None) != (self.key is None):
            raise ValueError("TlsConfig needs both cert and key, or neither "
                             f"(got cert={self.cert}, key={self.key})")
        fp = self.peer_fingerprint
        if fp is not None:
            fps = (fp,) if isinstance(fp, str) else tuple(fp)
            if not fps:
                raise ValueError("peer_fingerprint is an empty list; give at least one or None")
            object.__setattr__(self, "peer_fingerprint", tuple(normalize_fingerprint(f) for f in fps))
        for name in ("require_client_cert", "allow_unpinned"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TlsConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.server_name is not None and (not isinstance(self.server_name, str) or not self.server_name):
            raise ValueError(f"server_name must be a non-empty string or None, got {self.server_name!r}")

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, d: dict[str, Any], base_dir: str | os.PathLike | None = None) -> TlsConfig:
        """From a mapping (e.g. the `tls:` section of a YAML file). Relative paths are taken
        relative to `base_dir` when given."""
        if not isinstance(d, dict):
            raise TypeError(f"a TLS config must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.FIELDS))
        if unknown:
            raise ValueError(f"unknown TLS config keys {unknown}; allowed: {', '.join(cls.FIELDS)}")
        kw = dict(d)
        if base_dir is not None:
            for name in ("cert", "key", "peer_cert"):
                v = kw.get(name)
                if isinstance(v, list):
                    kw[name] = [Path(base_dir) / Path(x).expanduser() for x in v]
                elif v is not None:
                    kw[name] = Path(base_dir) / Path(v).expanduser()
        return cls(**kw)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, section: str | None = "tls") -> TlsConfig:
        """Load the `section` mapping of a YAML file (the whole file when section is None);
        relative paths are relative to the file's directory."""
        import yaml

        p = Path(path)
        data = yaml.safe_load(p.read_text()) or {}
        if section is not None:
            if not isinstance(data, dict) or section not in data:
                raise ValueError(f"{p} has no '{section}:' section")
            data = data[section]
        return cls.from_dict(data, base_dir=p.parent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cert": None if self.cert is None else str(self.cert),
            "key": None if self.key is None else str(self.key),
            "peer_fingerprint": None if self.peer_fingerprint is None else list(self.peer_fingerprint),
            "peer_cert": (None if self.peer_cert is None else
                          [str(p) for p in self.peer_cert] if isinstance(self.peer_cert, tuple) else
                          str(self.peer_cert)),
            "require_client_cert": self.require_client_cert,
            "server_name": self.server_name,
            "allow_unpinned": self.allow_unpinned,
        }

    # ------------------------------------------------------------------ pinning
    def pins(self) -> tuple[str, ...]:
        """Accepted peer fingerprints: `peer_fingerprint`, else those of `peer_cert`, else ()."""
        if self.peer_fingerprint:
            return tuple(self.peer_fingerprint)
        return tuple(fingerprint_der(d) for p in self.peer_cert_files() for d in _cert_ders(p))

    def peer_cert_files(self) -> tuple[Path, ...]:
        if self.peer_cert is None:
            return ()
        return self.peer_cert if isinstance(self.peer_cert, tuple) else (self.peer_cert,)

    def _load_peer_certs(self, ctx: ssl.SSLContext) -> None:
        for p in self.peer_cert_files():
            ctx.load_verify_locations(cafile=str(p))

    def check_peer(self, der: bytes | None, who: str) -> str:
        """Check the peer's DER certificate against the pins; returns its fingerprint."""
        pins = self.pins()
        if der is None:
            if pins:
                raise PeerVerificationError(f"the {who} presented no certificate; expected {pins[0]}")
            return ""
        got = fingerprint_der(der)
        if pins and got not in pins:
            expected = pins[0] if len(pins) == 1 else "one of " + ", ".join(pins)
            raise PeerVerificationError(
                f"{who} certificate fingerprint mismatch: expected {expected}, got {got}. "
                f"Check the pinned fingerprint in the TLS config, or that you reached the right {who}")
        return got

    # ------------------------------------------------------------------ contexts
    def _check_files(self) -> None:
        for name, p in [("cert", self.cert), ("key", self.key)] + [("peer_cert", p) for p in self.peer_cert_files()]:
            if p is not None and not p.is_file():
                raise FileNotFoundError(f"TLS {name} file {p} does not exist "
                                        f"(make one with protocols.transport.certs.write_self_signed)")

    def _base(self, purpose: int) -> ssl.SSLContext:
        self._check_files()
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        if self.cert is not None:
            try:
                ctx.load_cert_chain(str(self.cert), str(self.key))
            except ssl.SSLError as e:
                raise ValueError(f"cannot load TLS certificate {self.cert} with key {self.key}: {e}") from None
        return ctx

    def client_context(self) -> ssl.SSLContext:
        if not self.pins() and not self.allow_unpinned:
            raise ValueError("the TLS client config pins no server: set peer_fingerprint (the server's "
                             "'sha256:...' fingerprint) or peer_cert; allow_unpinned=True is insecure")
        ctx = self._base(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # pinning replaces hostname checks
        if self.peer_cert is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            self._load_peer_certs(ctx)
        else:
            ctx.verify_mode = ssl.CERT_NONE  # the fingerprint pin is checked after the handshake
        return ctx

    def server_context(self) -> ssl.SSLContext:
        if self.cert is None:
            raise ValueError("a TLS server needs cert and key")
        if self.require_client_cert and self.peer_cert is None:
            raise ValueError("require_client_cert=True needs peer_cert: the client's certificate PEM "
                             "(Python's ssl verifies client certificates only against trust anchors); "
                             "the fingerprint pin is checked in addition")
        if not self.require_client_cert and (self.peer_fingerprint or self.peer_cert):
            raise ValueError("a server config with peer_fingerprint/peer_cert must set "
                             "require_client_cert=True (otherwise no client certificate is requested)")
        ctx = self._base(ssl.PROTOCOL_TLS_SERVER)
        ctx.num_tickets = 0  # no session resumption
        if self.require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            self._load_peer_certs(ctx)
        return ctx
