"""Deployment configuration: addresses, certificates, limits and fixed point, from YAML;
flags override.

    server: {host: 127.0.0.1, port: 7410}
    dealer: {host: 127.0.0.1, port: 7411}
    tls:                      # this process's own certificate (every party needs one: the
      cert: certs/server.crt  # dealer requires mutual TLS of the server and the clients)
      key: certs/server.key
    pins:                     # fingerprints of the peers this process connects to
      server: sha256:...
      dealer: sha256:...
    dealer_peers:             # dealer only: who may fetch material, and as which role
      server: certs/server.crt
      clients: [certs/client.crt]
    limits:                   # the same on the server and the dealer (protocols.limits.Limits)
      max_batch: 64
      max_material_bytes: 1073741824
      memory_budget_bytes: 2147483648
      budget_wait_s: 10
    timeouts: {client: 60, handshake: 5, first_frame: 10}
    max_connections: 64
    fixed_point: {frac_bits: 12}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from protocols.dealer_service import dealer_tls
from protocols.limits import Limits
from protocols.transport.certs import TlsConfig
from protocols.transport.channel import DEFAULT_HANDSHAKE_TIMEOUT
from protocols.transport.server import DEFAULT_MAX_CONNECTIONS

# Local imports: yaml (only with --config) and pi.serving (torch) are imported where used: `pi --help`
# imports this module.

DEFAULT_SERVER = ("127.0.0.1", 7410)
DEFAULT_DEALER = ("127.0.0.1", 7411)
# Defaults of pi.serving, here so that reading a configuration imports no torch.
DEFAULT_CLIENT_TIMEOUT = 60.0      # seconds a client waits for a silent server
FIRST_FRAME_TIMEOUT = 10.0         # seconds a connected client has to say HELLO


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
    server_cert: Path | None = None
    client_certs: list[Path] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    client_timeout: float = DEFAULT_CLIENT_TIMEOUT
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    first_frame_timeout: float = FIRST_FRAME_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def load(cls, path: str | Path | None) -> DeployConfig:
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
        unknown = set(doc) - {"server", "dealer", "tls", "pins", "fixed_point", "dealer_peers", "limits",
                              "timeouts", "max_connections"}
        if unknown:
            raise ConfigError(f"{path}: unknown sections {sorted(unknown)}")
        base = path.parent
        cfg = cls()
        for name in ("server", "dealer", "tls", "pins", "fixed_point", "dealer_peers", "limits", "timeouts"):
            if not isinstance(doc.get(name) or {}, dict):
                raise ConfigError(f"{path}: section {name}: must be a mapping (see pi/config.py for the format)")
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
        peers = doc.get("dealer_peers") or {}
        if "server" in peers:
            cfg.server_cert = base / peers["server"]
        cfg.client_certs = [base / c for c in peers.get("clients") or []]
        timeouts = doc.get("timeouts") or {}
        try:
            cfg.limits = Limits.from_dict(doc.get("limits") or {})
            cfg.client_timeout = float(timeouts.get("client", cfg.client_timeout))
            cfg.handshake_timeout = float(timeouts.get("handshake", cfg.handshake_timeout))
            cfg.first_frame_timeout = float(timeouts.get("first_frame", cfg.first_frame_timeout))
            unknown = set(timeouts) - {"client", "handshake", "first_frame"}
            if unknown:
                raise ValueError(f"unknown timeouts {sorted(unknown)}; allowed: client, handshake, first_frame")
            cfg.max_connections = int(doc.get("max_connections", cfg.max_connections))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        return cfg

    def apply_flags(self, args) -> DeployConfig:
        for name in ("server_host", "server_port", "dealer_host", "dealer_port", "cert", "key", "frac_bits"):
            v = getattr(args, name, None)
            if v is not None:
                setattr(self, name, Path(v) if name in ("cert", "key") else v)
        for role in ("server", "dealer"):
            v = getattr(args, f"{role}_fingerprint", None)
            if v:
                self.pins[role] = v
        if getattr(args, "server_cert", None):
            self.server_cert = Path(args.server_cert)
        if getattr(args, "client_cert", None):
            self.client_certs = [Path(c) for c in args.client_cert]
        overrides = {k: getattr(args, k, None) for k in ("max_batch", "memory_budget_bytes")}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        try:
            if overrides:
                self.limits = Limits.from_dict({**self.limits.to_dict(), **overrides})
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for name, flag in (("client_timeout", "timeout"), ("max_connections", "max_connections")):
            v = getattr(args, flag, None)
            if v is not None:
                setattr(self, name, v)
        return self

    def own_tls(self, role: str) -> TlsConfig:
        if self.cert is None or self.key is None:
            raise ConfigError(f"the {role} needs its certificate and key (--cert/--key or tls: in the config; "
                              "make them with `pi keys`)")
        for what, p in (("certificate", self.cert), ("key", self.key)):
            if not Path(p).is_file():
                raise ConfigError(f"the {role}'s {what} {p} does not exist; make it with `pi keys --name {role}`")
        return TlsConfig(cert=self.cert, key=self.key)

    def dealer_tls(self) -> TlsConfig:
        """The dealer's own certificate, requiring the server's and the clients' (mutual TLS)."""
        own = self.own_tls("dealer")
        if self.server_cert is None or not self.client_certs:
            raise ConfigError("the dealer needs the server's certificate (--server-cert) and the clients' "
                              "(--client-cert, once per client) or dealer_peers: in the config; `pi keys` makes them")
        for p in [self.server_cert, *self.client_certs]:
            if not p.is_file():
                raise ConfigError(f"certificate file {p} does not exist")
        return dealer_tls(own.cert, own.key, self.server_cert, self.client_certs)

    def peer(self, role: str):
        """The Endpoint (pi.serving) of the server or the dealer, with its pinned fingerprint."""
        from pi.serving import Endpoint
        from protocols.transport.certs import normalize_fingerprint
        pin = self.pins.get(role)
        if not pin:
            raise ConfigError(f"no fingerprint pinned for the {role} (--{role}-fingerprint or pins.{role}: "
                              "in the config); `pi keys` prints it")
        try:
            pin = normalize_fingerprint(pin)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--{role}-fingerprint: {exc}") from None
        if role == "dealer" and (self.cert is None or self.key is None):
            raise ConfigError("the dealer requires this party's certificate (mutual TLS): give --cert/--key "
                              "(make them with `pi keys`) and have the dealer list the certificate")
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


def add_limit_flags(p) -> None:
    """Flags of the processes that hold material (server, dealer): give both the same values."""
    p.add_argument("--max-batch", type=int, help="largest batch per inference (limits.max_batch; same on "
                   "server and dealer)")
    p.add_argument("--memory-budget-bytes", type=int, help="material this process holds at once "
                   "(limits.memory_budget_bytes); requests beyond it wait, then are refused")
    p.add_argument("--max-connections", type=int, help="connections served at once; more are refused")
