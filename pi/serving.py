"""Real deployments: `serve` (the server process) and `connect` (the client), with the dealer
as a third process (protocols.dealer_service). Everything crosses TLS with pinned certificates.

Session protocol between client and server (after the TLS handshake):
  client HELLO {"version": 2}                → server SPEC {"session": id, "spec": public spec}
  per inference: client DATA {"batch": B}    → both fetch their material from the dealer for
                 session "<id>-<n>", then the engine's offline and online phases run; the
                 server ends with DATA {"material_bytes": n, "report": its cost report}, so
                 that the client reports the cost of both parties (pi.secure_model.CostReport)
  client BYE ends the session. Any error goes back as an ERROR frame; the server keeps serving.
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from pi.secure_model import CostReport, SecureModel
from protocols import engine
from protocols.cost import CostMeter
from protocols.cost import CostReport as MeterReport
from protocols.dealer_service import fetch_material
from protocols.transport.certs import TlsConfig
from protocols.transport.channel import Listener, connect as tls_connect
from protocols.transport.errors import PeerDisconnected, RemoteError, TransportError
from protocols.transport.frame import MessageType

log = logging.getLogger("pi.server")
SESSION_VERSION = 2
MAX_BATCH = 1024


class SessionError(ValueError):
    """A peer broke the session protocol."""


@dataclass
class Endpoint:
    host: str
    port: int
    tls: TlsConfig


def _json(payload: bytes, what: str) -> dict:
    try:
        d = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SessionError(f"{what} is not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise SessionError(f"{what} must be a JSON object")
    return d


class InferenceServer:
    """Serves one SecureModel to many clients at once, one thread and session per client."""

    def __init__(self, model: SecureModel, listener: Listener, dealer: Endpoint, max_batch: int = MAX_BATCH) -> None:
        if model.weights is None:
            raise ValueError("the server needs a SecureModel with weights (pi.load of a server bundle)")
        self.model, self.listener, self.dealer, self.max_batch = model, listener, dealer, max_batch
        self._stop = threading.Event()
        self.stats = {"sessions": 0, "inferences": 0, "errors": 0}
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        log.info("serving %s on %s:%d", self.model.plan.meta.get("source", "model"), *self.listener.address)
        while not self._stop.is_set():
            try:
                chan = self.listener.accept(timeout=0.5)
            except TimeoutError:
                continue
            except TransportError as exc:
                log.warning("rejected a connection: %s", exc)
                continue
            threading.Thread(target=self._session, args=(chan,), daemon=True).start()

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _session(self, chan) -> None:
        sid = secrets.token_hex(8)
        peer = f"{chan.peer_address[0]}:{chan.peer_address[1]}" if hasattr(chan, "peer_address") else "?"
        self._count("sessions")
        log.info("session %s: client %s connected", sid, peer)
        busy = True
        with chan:
            try:
                hello = _json(chan.recv(MessageType.HELLO, timeout=30), "HELLO")
                if hello.get("version") != SESSION_VERSION:
                    raise SessionError(f"session protocol version {hello.get('version')!r} is not supported "
                                       f"(this server speaks {SESSION_VERSION})")
                chan.send(MessageType.SPEC, json.dumps({"session": sid, "spec": self.model.public_spec()}).encode())
                n = 0
                while not self._stop.is_set():
                    busy = False
                    frame = chan.recv_frame(timeout=3600)   # a BYE raises PeerDisconnected
                    busy = True
                    if frame.msg_type != MessageType.DATA:
                        raise SessionError(f"expected an inference request, got a {frame.msg_type.name} frame")
                    req = _json(bytes(frame.payload), "inference request")
                    batch = req.get("batch")
                    if not isinstance(batch, int) or not 1 <= batch <= self.max_batch:
                        raise SessionError(f"batch must be an int in 1..{self.max_batch}, got {batch!r}")
                    inference = f"{sid}-{n}"
                    n += 1
                    t0 = time.perf_counter()
                    chan.meter.reset()
                    material, nbytes = fetch_material(self.dealer.host, self.dealer.port, self.dealer.tls,
                                                      "server", inference, self.model.plan, batch)
                    run = engine.ServerRun(self.model.plan, self.model.weights, material, batch)
                    run.offline(chan)
                    run.online(chan)
                    chan.send(MessageType.DATA, json.dumps({"material_bytes": nbytes,
                                                            "report": chan.meter.report().to_dict()}).encode())
                    self._count("inferences")
                    log.info("session %s: inference %d (batch %d) done in %.2f s", sid, n, batch,
                             time.perf_counter() - t0)
            except PeerDisconnected:
                if chan.peer_closed and not busy:
                    log.info("session %s: closed by the client", sid)
                else:
                    self._count("errors")
                    log.warning("session %s: the client disconnected mid-inference; its material is discarded", sid)
            except (SessionError, TransportError, ValueError) as exc:
                self._count("errors")
                log.warning("session %s: %s", sid, exc)
                try:
                    chan.send_error(str(exc))
                except Exception:
                    pass
            except Exception as exc:
                self._count("errors")
                log.exception("session %s: internal error", sid)
                try:
                    chan.send_error(f"server internal error: {type(exc).__name__}")
                except Exception:
                    pass


class RemoteModel:
    """The client's handle on a served model (from `pi.connect`)."""

    def __init__(self, server: Endpoint, dealer: Endpoint, timeout: float = 60.0) -> None:
        self.dealer, self.timeout = dealer, timeout
        self.meter = CostMeter("client")
        self.chan = tls_connect(server.host, server.port, server.tls, timeout=timeout, recv_timeout=600,
                                meter=self.meter)
        with self.meter.scope(layer="session", op="setup", phase="offline"):
            self.chan.send(MessageType.HELLO, json.dumps({"version": SESSION_VERSION}).encode())
            answer = _json(self.chan.recv(MessageType.SPEC, timeout=timeout), "SPEC")
        self.session = answer["session"]
        self.spec = SecureModel.from_public_spec(answer["spec"])
        self.plan = self.spec.plan
        self._n = 0
        self._failed: str | None = None      # set when an inference broke off: the session is over
        self.last_cost: CostReport | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.plan.input_shape)

    def run(self, x, progress=None, out_of_range: str = "refuse") -> torch.Tensor:
        """One private inference on a batch (or a single input). Returns the decoded output.
        The input is checked against the model's input contract (SecureModel.run)."""
        x = self.spec.input_contract.check(x, out_of_range)
        if self._failed:
            raise TransportError(f"this session is closed after a failed inference ({self._failed}); "
                                 "connect again")
        batch = x.shape[0]
        t0 = time.perf_counter()
        try:
            self.chan.send(MessageType.DATA, json.dumps({"batch": batch}).encode())
            self.meter.reset()     # the inference's cost starts here, on both sides
            try:
                material, nbytes = fetch_material(self.dealer.host, self.dealer.port, self.dealer.tls, "client",
                                                  f"{self.session}-{self._n}", self.plan, batch,
                                                  timeout=self.timeout)
            except TransportError as exc:
                # The server is waiting for this inference's offline messages: tell it why none come.
                _quietly(self.chan.send_error, f"the client got no material from its dealer: {exc}")
                raise
            self._n += 1
            fetch_s = time.perf_counter() - t0
            run = engine.ClientRun(self.plan, material, batch)
            try:
                run.offline(self.chan)
                y = run.online(self.chan, x)
                mine = self.meter.report()
                theirs = _json(self.chan.recv(MessageType.DATA, timeout=self.timeout), "server cost report")
            except RemoteError as exc:
                raise RuntimeError(f"the server refused the inference: {exc}") from exc
        except Exception as exc:
            # Half an inference cannot be resumed (its material is spent): end the session.
            self._failed = f"{type(exc).__name__}: {exc}"
            _quietly(self.chan.close)
            raise
        try:
            server = MeterReport.from_dict(theirs["report"])
            material = {"client": nbytes, "server": int(theirs["material_bytes"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionError(f"the server's cost report is malformed: {exc}") from None
        self.last_cost = CostReport.of_parties(mine, server, material, batch,
                                               online_seconds=run.timings["online_s"],
                                               offline_seconds=fetch_s + run.timings["offline_s"])
        return torch.from_numpy(np.asarray(y))

    def close(self) -> None:
        try:
            self.chan.send(MessageType.BYE)
        except Exception:
            pass
        self.chan.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        pass


def serve(model: SecureModel, host: str, port: int, tls: TlsConfig, dealer: Endpoint,
          block: bool = True) -> InferenceServer:
    """Starts an inference server; with block=False it runs in a background thread."""
    server = InferenceServer(model, Listener(host, port, tls), dealer)
    if block:
        server.serve_forever()
    else:
        threading.Thread(target=server.serve_forever, daemon=True, name="pi-serve").start()
    return server


def connect(server: Endpoint, dealer: Endpoint, timeout: float = 60.0) -> RemoteModel:
    """Connects to a `pi serve` server (and its dealer) as a client."""
    return RemoteModel(server, dealer, timeout)
