"""The dealer as a network service: a third process that hands each party its half of the
one-time preprocessing for an inference, over mutual TLS.

Who asks: every peer shows a certificate the dealer lists (mutual TLS, pinned). The role a
peer gets is bound to its certificate: the fingerprints in `server_fingerprints` are the
server's, every other accepted certificate is a client's. A client can never obtain the
server's half of a session, whatever it asks for.

Protocol (one request per connection): the party sends a HELLO frame with JSON
{"role": "client"|"server", "session": str, "batch": int, "plan": <public plan>}; "role" is
only checked against the certificate's. The dealer answers with a PREPROCESSING frame (the
party's material) or an ERROR frame. The first request of a session makes the material of
both parties (a fresh bundle id in both halves); each half is delivered once and then
forgotten, and halves nobody collects expire after `expiry_s` (a timer, not the accept loop).

Resources: the batch and the bundle size are checked against the shared `Limits` before
anything is built; a bundle's bytes are reserved from the process's `MemoryBudget` (the
request waits, then is refused), and building runs outside the service's lock, so one large
request never stalls the others. The dealer sees the public plan only.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocols.engine import deal
from protocols.limits import LimitError, Limits, MaterialEstimator, MemoryBudget, Reservation
from protocols.material import (
    Material,
    MaterialMismatch,
    MaterialReuseError,
    MaterialTooLarge,
    plan_digest,
    take_once,
)
from protocols.plan import Plan
from protocols.transport.certs import TlsConfig, normalize_fingerprint
from protocols.transport.channel import Listener, TlsChannel, connect
from protocols.transport.errors import HandshakeError, RemoteError, TransportError
from protocols.transport.frame import MessageType
from protocols.transport.server import DEFAULT_MAX_CONNECTIONS, ConnectionServer

log = logging.getLogger("pi.dealer")
ROLES = ("client", "server")
DEFAULT_EXPIRY_S = 60.0
REQUEST_TIMEOUT_S = 10.0      # a connected peer must send its request within this


class DealerRequestError(ValueError):
    """A party's request to the dealer is malformed or inconsistent."""


class DealerUnavailable(TransportError):
    """The dealer accepted a request but failed before delivering the material (it crashed,
    hung up or timed out)."""


@dataclass
class _Session:
    digest: str
    batch: int
    ready: threading.Event = field(default_factory=threading.Event)
    halves: dict[str, Material] = field(default_factory=dict)
    delivered: set[str] = field(default_factory=set)
    error: str | None = None
    reservation: Reservation | None = None
    sizes: dict[str, int] = field(default_factory=dict)     # reserved bytes per half
    created: float = field(default_factory=time.monotonic)


class DealerService:
    """Serves preprocessing requests; one thread per connection, sessions isolated."""

    def __init__(self, listener: Listener, server_fingerprints: Iterable[str], *, limits: Limits | None = None,
                 expiry_s: float = DEFAULT_EXPIRY_S, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        if not listener.tls.require_client_cert:
            raise ValueError("the dealer needs mutual TLS: its listener must set require_client_cert=True with "
                             "the server's and the clients' certificates as peer_cert (see dealer_tls)")
        self.server_fingerprints = frozenset(normalize_fingerprint(f) for f in server_fingerprints)
        if not self.server_fingerprints:
            raise ValueError("the dealer needs the server's certificate fingerprint (server_fingerprints)")
        self.listener = listener
        self.limits = limits or Limits()
        self.expiry_s = expiry_s
        self.request_timeout = request_timeout
        self.budget = MemoryBudget(self.limits.memory_budget_bytes, self.limits.budget_wait_s)
        self.estimator = MaterialEstimator(self.limits)
        self._sessions: dict[str, _Session] = {}
        self._finished: dict[str, float] = {}      # session id -> when both halves were delivered
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.connections = ConnectionServer(listener, self._handle, name="dealer", max_connections=max_connections)
        self.served = 0
        self.expired = 0

    def stop(self) -> None:
        self._stop.set()
        self.connections.stop()

    def serve_forever(self) -> None:
        log.info("dealer listening on %s:%d (%d server certificate(s), limits %s)", *self.listener.address,
                 len(self.server_fingerprints), self.limits.to_dict())
        threading.Thread(target=self._expiry_timer, daemon=True, name="dealer-expiry").start()
        self.connections.serve_forever()

    # ------------------------------------------------------------------ sessions
    def _expiry_timer(self) -> None:
        while not self._stop.wait(min(1.0, self.expiry_s / 4)):
            self.expire()

    def expire(self) -> None:
        """Forget sessions older than expiry_s whose halves were not all collected."""
        now = time.monotonic()
        with self._lock:
            old = [s for s, e in self._sessions.items() if e.ready.is_set() and now - e.created > self.expiry_s]
            entries = [self._sessions.pop(s) for s in old]
            for s in old:
                self._finished[s] = now
            for s in [s for s, t in self._finished.items() if now - t > 10 * self.expiry_s]:
                del self._finished[s]
        for sid, e in zip(old, entries):
            log.warning("session %s expired with %s uncollected", sid, sorted(e.halves))
            e.halves.clear()
            if e.reservation is not None:
                e.reservation.release()
            self.expired += 1

    def role_of(self, chan: TlsChannel) -> str:
        return "server" if chan.peer_fingerprint in self.server_fingerprints else "client"

    def _handle(self, chan: TlsChannel) -> None:
        with chan:
            role = self.role_of(chan)
            try:
                req = parse_request(chan.recv(MessageType.HELLO, timeout=self.request_timeout), role, self.limits)
                material = self._material_for(req, role)
                try:
                    chan.send(MessageType.PREPROCESSING, material.to_bytes())
                finally:
                    self._delivered(req["session"], material)
                self.served += 1
                log.info("session %s: sent %s material (%.1f MB, batch %d)", req["session"], role,
                         material.nbytes / 1e6, req["batch"])
            except (DealerRequestError, LimitError, MaterialReuseError, MaterialTooLarge, MaterialMismatch) as exc:
                log.warning("refused a %s request: %s", role, exc)
                _try(chan.send_error, str(exc))
            except TransportError as exc:
                log.warning("connection failed: %s", exc)
                _try(chan.send_error, str(exc))      # e.g. a request that stalled: say so
            except Exception as exc:  # never let one request take the service down
                log.exception("internal error while serving a request")
                _try(chan.send_error, f"dealer internal error: {type(exc).__name__}")

    def _material_for(self, req: dict, role: str) -> Material:
        sid, batch = req["session"], req["batch"]
        digest = plan_digest(req["plan"])
        with self._lock:
            if sid in self._finished:
                raise MaterialReuseError(f"session {sid}: its material was already delivered to both parties, or expired")
            entry = self._sessions.get(sid)
            build = entry is None
            if build:
                entry = self._sessions[sid] = _Session(digest, batch)
        if build:
            self._build(sid, entry, req["plan"])
        elif not entry.ready.wait(self.limits.budget_wait_s + 600):
            raise DealerRequestError(f"session {sid}: its material is still being built; try again")
        if entry.error:
            raise DealerRequestError(f"session {sid}: {entry.error}")
        if entry.digest != digest or entry.batch != batch:
            raise DealerRequestError(f"session {sid}: the {role} asked for a different plan or batch than its peer")
        with self._lock:
            return take_once(entry.halves, entry.delivered, role,
                             f"session {sid}: the {role}'s material was already delivered",
                             DealerRequestError(f"session {sid}: the {role}'s material expired uncollected"))

    def _build(self, sid: str, entry: _Session, plan_dict: dict) -> None:
        """Reserve, then build both halves outside the service lock; waiters see `ready`."""
        try:
            plan = Plan.from_dict(plan_dict)
            sizes = self.estimator.estimate(plan, entry.digest, entry.batch)
            # Both halves, plus one serialized half in flight while it is sent.
            entry.reservation = self.budget.reserve(sum(sizes) + max(sizes), "its material")
            entry.sizes = dict(zip(ROLES, sizes))
            entry.halves.update(zip(ROLES, deal(plan, entry.batch, max_bytes=sum(sizes))))
        except Exception as exc:
            entry.error = str(exc) if isinstance(exc, (LimitError, MaterialTooLarge, ValueError)) \
                else f"dealer internal error: {type(exc).__name__}"
            with self._lock:
                self._sessions.pop(sid, None)
            if entry.reservation is not None:
                entry.reservation.release()
            entry.ready.set()
            if not isinstance(exc, (LimitError, MaterialTooLarge, ValueError)):
                log.exception("session %s: building the material failed", sid)
            raise DealerRequestError(f"session {sid}: {entry.error}") from None
        entry.ready.set()

    def _delivered(self, sid: str, material: Material) -> None:
        """A half left (or failed to leave): give its bytes back; forget a finished session
        (its id stays known until it would have expired, so it is never dealt again)."""
        with self._lock:
            entry = self._sessions.get(sid)
            done = entry is not None and not entry.halves
            if done:
                del self._sessions[sid]
                self._finished[sid] = time.monotonic()
        if entry is not None and entry.reservation is not None:
            entry.reservation.release(None if done else entry.sizes.get(material.party, 0))


def _try(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001, S110 -- best effort on a peer that may be gone
        pass


def parse_request(payload: bytes, role: str, limits: Limits) -> dict:
    """Check a HELLO request from a peer whose certificate says it is `role`."""
    try:
        req = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DealerRequestError(f"request is not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise DealerRequestError("request must be a JSON object")
    asked = req.get("role", role)
    if asked not in ROLES:
        raise DealerRequestError(f"role must be one of {ROLES}, got {asked!r}")
    if asked != role:
        raise DealerRequestError(f"this peer's certificate is enrolled as a {role}; it cannot fetch the {asked}'s "
                                 "material")
    sid = req.get("session")
    if not isinstance(sid, str) or not 8 <= len(sid) <= 128:
        raise DealerRequestError("session must be a string of 8..128 characters")
    limits.check_batch(req.get("batch"))
    if not isinstance(req.get("plan"), dict):
        raise DealerRequestError("plan must be the public plan (a JSON object)")
    return req


def dealer_tls(cert, key, server_certs, client_certs) -> TlsConfig:
    """The dealer's TLS config: mutual TLS accepting exactly the listed certificates."""
    peers = [*_as_list(server_certs), *_as_list(client_certs)]
    if not _as_list(server_certs) or not _as_list(client_certs):
        raise ValueError("the dealer needs the server's certificate and at least one client certificate "
                         "(make them with `pi keys`)")
    return TlsConfig(cert=cert, key=key, require_client_cert=True, peer_cert=peers)


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def fetch_material(host: str, port: int, tls, role: str, session: str, plan: Plan, batch: int,
                   timeout: float = 60.0, max_frame_size: int | None = None) -> tuple[Material, int]:
    """A party's request to a dealer service. Returns (material, bytes received).

    `tls` must carry this party's certificate (the dealer requires mutual TLS). Raises
    HandshakeError when the dealer cannot be reached or refuses the certificate, RemoteError
    when it refuses the request, DealerUnavailable when it fails after accepting it.
    max_frame_size: the largest material this party accepts (default: the transport's limit)."""
    limit = {} if max_frame_size is None else {"max_frame_size": max_frame_size}
    with connect(host, port, tls, timeout=timeout, recv_timeout=timeout, **limit) as chan:
        try:
            chan.send(MessageType.HELLO, json.dumps({"role": role, "session": session, "batch": batch,
                                                     "plan": plan.to_dict()}).encode())
            payload = chan.recv_frame(MessageType.PREPROCESSING, timeout=timeout).payload   # no copy
        except (RemoteError, HandshakeError):
            raise
        except TransportError as exc:
            raise DealerUnavailable(f"the dealer at {host}:{port} failed before sending the {role}'s material "
                                    f"for {session}: {exc}") from exc
    material = Material.from_bytes(payload)
    if material.party != role:
        raise DealerRequestError(f"the dealer sent {material.party} material to the {role}")
    return material, len(payload)
