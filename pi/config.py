"""Deployment configuration: addresses, certificates and fixed point, from YAML; flags override.

    server: {host: 127.0.0.1, port: 7410}
    dealer: {host: 127.0.0.1, port: 7411}
    tls:                      # this process's own certificate (server and dealer need one)
      cert: certs/server.crt
      key: certs/server.key
    pins:                     # fingerprints of the peers this process connects to
      server: sha256:...
      dealer: sha256:...
    fixed_point: {frac_bits: 12}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from protocols.transport.certs import TlsConfig

DEFAULT_SERVER = ("127.0.0.1", 7410)
DEFAULT_DEALER = ("127.0.0.1", 7411)


class ConfigError(ValueError):
    pass


@dataclass
class DeployConfig:
    server_host: str = DEFAULT_SERVER[0]
    server_port: int = DEFAULT_SERVER[1]
    dealer_host: str = DEFAULT_DEALER[0]
    dealer_port: int = DEFAULT_DEALER[1]
    cert: Path | None = None
    key: Path | None = None
    pins: dict[str, str] = field(default_factory=dict)
    frac_bits: int | None = None

    @classmethod
    def load(cls, path: str | Path | None) -> "DeployConfig":
        if path is None:
            return cls()
        import yaml
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: the configuration must be a mapping")
        unknown = set(doc) - {"server", "dealer", "tls", "pins", "fixed_point"}
        if unknown:
            raise ConfigError(f"{path}: unknown sections {sorted(unknown)}")
        base = path.parent
        cfg = cls()
        for role in ("server", "dealer", "tls", "pins", "fixed_point"):
            if not isinstance(doc.get(role) or {}, dict):
                raise ConfigError(f"{path}: section {role}: must be a mapping (see pi/config.py for the format)")
        for role in ("server", "dealer"):
            sec = doc.get(role) or {}
            setattr(cfg, f"{role}_host", str(sec.get("host", getattr(cfg, f"{role}_host"))))
            port = sec.get("port", getattr(cfg, f"{role}_port"))
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise ConfigError(f"{path}: {role}.port must be a port number (0..65535), got {port!r}")
            setattr(cfg, f"{role}_port", port)
        tls = doc.get("tls") or {}
        cfg.cert = base / tls["cert"] if "cert" in tls else None
        cfg.key = base / tls["key"] if "key" in tls else None
        cfg.pins = {str(k): str(v) for k, v in (doc.get("pins") or {}).items()}
        cfg.frac_bits = (doc.get("fixed_point") or {}).get("frac_bits")
        return cfg

    def apply_flags(self, args) -> "DeployConfig":
        for name in ("server_host", "server_port", "dealer_host", "dealer_port", "cert", "key", "frac_bits"):
            v = getattr(args, name, None)
            if v is not None:
                setattr(self, name, Path(v) if name in ("cert", "key") else v)
        for role in ("server", "dealer"):
            v = getattr(args, f"{role}_fingerprint", None)
            if v:
                self.pins[role] = v
        return self

    def own_tls(self, role: str) -> TlsConfig:
        if self.cert is None or self.key is None:
            raise ConfigError(f"the {role} needs its certificate and key (--cert/--key or tls: in the config; "
                              "make them with `pi keys`)")
        for what, p in (("certificate", self.cert), ("key", self.key)):
            if not Path(p).is_file():
                raise ConfigError(f"the {role}'s {what} {p} does not exist; make it with `pi keys --name {role}`")
        return TlsConfig(cert=self.cert, key=self.key)

    def peer(self, role: str):
        """The Endpoint (pi.serving) of the server or the dealer, with its pinned fingerprint."""
        from pi.serving import Endpoint
        pin = self.pins.get(role)
        if not pin:
            raise ConfigError(f"no fingerprint pinned for the {role} (--{role}-fingerprint or pins.{role}: "
                              "in the config); `pi keys` prints it")
        from protocols.transport.certs import normalize_fingerprint
        try:
            pin = normalize_fingerprint(pin)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--{role}-fingerprint: {exc}") from None
        host, port = getattr(self, f"{role}_host"), getattr(self, f"{role}_port")
        return Endpoint(host, port, TlsConfig(cert=self.cert, key=self.key, peer_fingerprint=pin))


def add_common_flags(p) -> None:
    p.add_argument("--config", help="YAML configuration (addresses, certificates, pins, fixed point)")
    p.add_argument("--server-host")
    p.add_argument("--server-port", type=int)
    p.add_argument("--dealer-host")
    p.add_argument("--dealer-port", type=int)
    p.add_argument("--cert", help="this process's certificate (PEM)")
    p.add_argument("--key", help="this process's private key (PEM)")
    p.add_argument("--server-fingerprint", help="pin of the server's certificate (sha256:...)")
    p.add_argument("--dealer-fingerprint", help="pin of the dealer's certificate (sha256:...)")
