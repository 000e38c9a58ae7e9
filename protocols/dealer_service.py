"""The dealer as a network service: a third process that hands each party its half of the
one-time preprocessing for an inference, over TLS.

Protocol (one request per connection): the party sends a HELLO frame with JSON
{"role": "client"|"server", "session": str, "batch": int, "plan": <public plan>}; the dealer
answers with a PREPROCESSING frame (the party's material) or an ERROR frame. The first
request of a session makes the material of both parties; each half is delivered once and
then forgotten, and halves nobody collects expire. The dealer sees the public plan only.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

from protocols.engine import deal
from protocols.material import Material, MaterialReuseError, plan_digest
from protocols.plan import Plan
from protocols.transport.channel import Listener, connect
from protocols.transport.errors import RemoteError, TransportError
from protocols.transport.frame import MessageType

log = logging.getLogger("pi.dealer")
ROLES = ("client", "server")
MAX_BATCH = 4096


class DealerRequestError(ValueError):
    """A party's request to the dealer is malformed or inconsistent."""


class DealerUnavailable(TransportError):
    """The dealer accepted a request but failed before delivering the material (it crashed,
    hung up or timed out)."""


@dataclass
class _Session:
    digest: str
    batch: int
    halves: dict[str, Material]
    delivered: set[str] = field(default_factory=set)
    created: float = field(default_factory=time.monotonic)


class DealerService:
    """Serves preprocessing requests; one thread per connection, sessions isolated."""

    def __init__(self, listener: Listener, expiry_s: float = 600.0) -> None:
        self.listener = listener
        self.expiry_s = expiry_s
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.served = 0

    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        log.info("dealer listening on %s:%d", *self.listener.address)
        while not self._stop.is_set():
            try:
                chan = self.listener.accept(timeout=0.5)
            except TimeoutError:
                self._expire()
                continue
            except TransportError as exc:       # a failed handshake only affects that peer
                log.warning("rejected a connection: %s", exc)
                continue
            threading.Thread(target=self._handle, args=(chan,), daemon=True).start()

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            for sid in [s for s, e in self._sessions.items() if now - e.created > self.expiry_s]:
                log.warning("session %s expired with %s uncollected", sid, sorted(self._sessions[sid].halves))
                del self._sessions[sid]

    def _handle(self, chan) -> None:
        with chan:
            try:
                req = parse_request(chan.recv(MessageType.HELLO, timeout=30))
                material = self._material_for(req)
                chan.send(MessageType.PREPROCESSING, material.to_bytes())
                self.served += 1
                log.info("session %s: sent %s material (%.1f MB, batch %d)", req["session"], req["role"],
                         material.nbytes / 1e6, req["batch"])
            except (DealerRequestError, MaterialReuseError) as exc:
                log.warning("refused a request: %s", exc)
                _try(chan.send_error, str(exc))
            except TransportError as exc:
                log.warning("connection failed: %s", exc)
            except Exception as exc:  # never let one request take the service down
                log.exception("internal error while serving a request")
                _try(chan.send_error, f"dealer internal error: {type(exc).__name__}")

    def _material_for(self, req: dict) -> Material:
        sid, role = req["session"], req["role"]
        digest = plan_digest(req["plan"])
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is None:
                plan = Plan.from_dict(req["plan"])
                client, server = deal(plan, req["batch"])
                entry = self._sessions[sid] = _Session(digest, req["batch"], {"client": client, "server": server})
            if entry.digest != digest or entry.batch != req["batch"]:
                raise DealerRequestError(f"session {sid}: the {role} asked for a different plan or batch than its peer")
            if role in entry.delivered:
                raise MaterialReuseError(f"session {sid}: the {role}'s material was already delivered")
            entry.delivered.add(role)
            material = entry.halves.pop(role)
            if not entry.halves:
                del self._sessions[sid]
            return material


def _try(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        pass


def parse_request(payload: bytes) -> dict:
    try:
        req = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DealerRequestError(f"request is not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise DealerRequestError("request must be a JSON object")
    if req.get("role") not in ROLES:
        raise DealerRequestError(f"role must be one of {ROLES}, got {req.get('role')!r}")
    sid = req.get("session")
    if not isinstance(sid, str) or not 8 <= len(sid) <= 128:
        raise DealerRequestError("session must be a string of 8..128 characters")
    batch = req.get("batch")
    if not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise DealerRequestError(f"batch must be an int in 1..{MAX_BATCH}, got {batch!r}")
    if not isinstance(req.get("plan"), dict):
        raise DealerRequestError("plan must be the public plan (a JSON object)")
    return req


def fetch_material(host: str, port: int, tls, role: str, session: str, plan: Plan, batch: int,
                   timeout: float = 60.0, max_frame_size: int | None = None) -> tuple[Material, int]:
    """A party's request to a dealer service. Returns (material, bytes received).

    Raises HandshakeError when the dealer cannot be reached, RemoteError when it refuses the
    request, DealerUnavailable when it fails after accepting it. max_frame_size: the largest
    material this party accepts (default: the transport's limit)."""
    limit = {} if max_frame_size is None else {"max_frame_size": max_frame_size}
    with connect(host, port, tls, timeout=timeout, recv_timeout=timeout, **limit) as chan:
        try:
            chan.send(MessageType.HELLO, json.dumps({"role": role, "session": session, "batch": batch,
                                                     "plan": plan.to_dict()}).encode())
            payload = chan.recv_frame(MessageType.PREPROCESSING, timeout=timeout).payload   # no copy
        except RemoteError:
            raise
        except TransportError as exc:
            raise DealerUnavailable(f"the dealer at {host}:{port} failed before sending the {role}'s material "
                                    f"for {session}: {exc}") from exc
    material = Material.from_bytes(payload)
    if material.party != role:
        raise DealerRequestError(f"the dealer sent {material.party} material to the {role}")
    return material, len(payload)
