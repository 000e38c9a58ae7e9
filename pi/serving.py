"""Real deployments: `serve` (the server process) and `connect` (the client), with the dealer
as a third process (protocols.dealer_service). Everything crosses TLS with pinned certificates;
the dealer additionally requires each party's certificate (mutual TLS).

Session protocol between client and server (after the TLS handshake), version 3:
  client HELLO {"version": 3}                → server SPEC {"session": id, "spec": public spec,
                                                            "max_batch": limit}
  per inference: client DATA {"batch": B}    → server ACK (or ERROR: batch over the limit, busy)
                 both fetch their half of the material from the dealer for session "<id>-<n>",
                 `confirm_bundle` (one round: both hold halves of one bundle), then the
                 engine's offline and online phases; the server ends with DATA
                 {"material_bytes": n, "report": its cost report of the engine's phases}, so
                 that the client reports the cost of both parties (pi.secure_model.CostReport)
  client BYE ends the session. Any error goes back as an ERROR frame; the server keeps serving.

Resources: the server refuses to start on a bundle that does not fit its plan
(`validate_bundle`); each connection runs on its own thread (protocols.transport.server); a
client must send its HELLO within `first_frame_timeout`; each inference reserves its half of
the material from the process's memory budget before fetching it.
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

from pi.config import DEFAULT_CLIENT_TIMEOUT, FIRST_FRAME_TIMEOUT
from pi.secure_model import CostReport, SecureModel, bundle_digests
from protocols import engine
from protocols.cost import CostMeter
from protocols.cost import CostReport as MeterReport
from protocols.dealer_service import fetch_material
from protocols.fixed_point import MAX_VALUE_BITS
from protocols.limits import LimitError, Limits, MaterialEstimator, MemoryBudget
from protocols.material import MaterialMismatch, confirm_bundle, plan_digest
from protocols.plan import Activation, Conv2d, Linear, MaxPool
from protocols.transport.certs import TlsConfig
from protocols.transport.channel import Listener
from protocols.transport.channel import connect as tls_connect
from protocols.transport.errors import ChannelTimeout, PeerDisconnected, RemoteError, TransportError
from protocols.transport.frame import MessageType
from protocols.transport.server import DEFAULT_MAX_CONNECTIONS, ConnectionServer

log = logging.getLogger("pi.server")
SESSION_VERSION = 3
IDLE_TIMEOUT = 3600.0              # seconds a session may sit between inferences


class SessionError(ValueError):
    """A peer broke the session protocol."""


class BundleError(ValueError):
    """A server bundle does not fit its own plan (missing weight, wrong shape or dtype, digest)."""


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


def validate_bundle(model: SecureModel) -> None:
    """Every private linear op has its weight (and its bias when the plan says so) with the
    plan's shape and the ring dtype, no weight is left over, and the digests recorded in the
    bundle (when present) match the plan and the weights. BundleError names the first fault."""
    if model.weights is None:
        raise BundleError("the bundle has no weights (a client-side spec cannot be served)")
    w, b = model.weights.weights, model.weights.biases
    private = {op.name: op for op in model.plan.ops if isinstance(op, (Conv2d, Linear))}
    for name, op in private.items():
        if name not in w:
            raise BundleError(f"the bundle has no weight for layer {name!r}; recompile it with `pi compile`")
        checks = [("weight", w[name], tuple(op.weight_shape))]
        if op.bias:
            if name not in b:
                raise BundleError(f"the bundle has no bias for layer {name!r}; recompile it with `pi compile`")
            checks.append(("bias", b[name], (op.weight_shape[0],)))
        for what, arr, shape in checks:
            if arr.shape != shape:
                raise BundleError(f"layer {name!r}: the bundle's {what} has shape {arr.shape}, the plan needs {shape}")
            if arr.dtype != np.uint64:
                raise BundleError(f"layer {name!r}: the bundle's {what} has dtype {arr.dtype}, the plan needs uint64 "
                                  "(ring elements)")
    extra = sorted((set(w) | set(b)) - set(private))
    if extra:
        raise BundleError(f"the bundle has weights for layers its plan does not have: {extra[:5]}")
    recorded = getattr(model, "recorded_digests", None)
    if recorded is not None:
        actual = bundle_digests(model.plan, model.weights)
        for key in ("plan", "weights"):
            if recorded.get(key) != actual[key]:
                raise BundleError(f"the bundle's {key} digest does not match its contents: the file was changed "
                                  "or damaged; recompile it with `pi compile`")


def public_disclosure(plan) -> list[str]:
    """What a client (and the dealer) learns from this plan's public spec, one line per item,
    with the option that reveals less where there is one (docs/engine.md, "What is public")."""
    acts = [op for op in plan.ops if isinstance(op, Activation)]
    counts = {k: 0 for k in ("relu", "identity", "poly", "circa")}
    for op in acts:
        for k, v in op.site_counts(plan.tensor(op.inputs[0]).size).items():
            counts[k] += v
    lines = ["architecture: every op, tensor shape and the fixed point (never weights or biases)",
             "ReLU policy: the kind of every activation site "
             + ", ".join(f"{v} {k}" for k, v in counts.items() if v)]
    calibrated = [op for op in plan.ops if isinstance(op, (Activation, MaxPool)) and op.value_bits <= MAX_VALUE_BITS]
    bounds = [t for t in plan.tensors.values() if t.bound is not None]
    if calibrated or bounds:
        lines.append(f"calibration: the value bit width of {len(calibrated)} layers and the largest |value| of "
                     f"{len(bounds)} tensors on the calibration data; compile without --calibration to hide them "
                     "(comparison gates then work on 64 bits: larger keys)")
    poly = [op for op in acts if op.poly is not None and op.site_counts(plan.tensor(op.inputs[0]).size)["poly"]]
    if poly:
        lines.append(f"polynomial coefficients of {len(poly)} layers, per channel (fitted ones give each channel's "
                     "calibration mean and std exactly, trained ones the trained values); use a policy without "
                     "polynomial sites to keep them private")
    contract = plan.meta.get("input") or {}
    if contract.get("range") or contract.get("mean") or contract.get("classes"):
        lines.append("input contract (pi.inputs): " + ", ".join(k for k, v in (
            ("the calibration inputs' min and max", contract.get("range")), ("the normalization", contract.get("mean")),
            ("the class names", contract.get("classes"))) if v))
    lines.append("output: " + ("the predicted label only" if plan.output_op.label_only else
                               "all logits (compile with --output label to reveal only the label)"))
    return lines


class InferenceServer:
    """Serves one SecureModel to many clients at once, one thread and session per client."""

    def __init__(self, model: SecureModel, listener: Listener, dealer: Endpoint, *, limits: Limits | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, first_frame_timeout: float = FIRST_FRAME_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, dealer_timeout: float = 60.0) -> None:
        validate_bundle(model)
        self.model, self.listener, self.dealer = model, listener, dealer
        self.limits = limits or Limits()
        self.first_frame_timeout, self.idle_timeout, self.dealer_timeout = \
            first_frame_timeout, idle_timeout, dealer_timeout
        self.budget = MemoryBudget(self.limits.memory_budget_bytes, self.limits.budget_wait_s)
        self.digest = plan_digest(model.plan.to_dict())
        self.estimator = MaterialEstimator(self.limits)
        self.estimator.per_example(model.plan, self.digest)    # the plan deals, within the limits
        self.connections = ConnectionServer(listener, self._session, name="server", max_connections=max_connections)
        self.stats = {"sessions": 0, "inferences": 0, "errors": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()
        self.connections.stop()

    def serve_forever(self) -> None:
        log.info("serving %s on %s:%d (limits %s)", self.model.plan.meta.get("source", "model"),
                 *self.listener.address, self.limits.to_dict())
        self.connections.serve_forever()

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _session(self, chan) -> None:
        sid = secrets.token_hex(8)
        peer = f"{chan.peer_address[0]}:{chan.peer_address[1]}"
        self._count("sessions")
        log.info("session %s: client %s connected", sid, peer)
        busy = True
        with chan:
            try:
                hello = _json(chan.recv(MessageType.HELLO, timeout=self.first_frame_timeout), "HELLO")
                if hello.get("version") != SESSION_VERSION:
                    raise SessionError(f"session protocol version {hello.get('version')!r} is not supported "
                                       f"(this server speaks {SESSION_VERSION}); run the same release as the server")
                chan.send(MessageType.SPEC, json.dumps({"session": sid, "spec": self.model.public_spec(),
                                                        "max_batch": self.limits.max_batch}).encode())
                n = 0
                while not self._stop.is_set():
                    busy = False
                    frame = chan.recv_frame(timeout=self.idle_timeout)   # a BYE raises PeerDisconnected
                    busy = True
                    if frame.msg_type != MessageType.DATA:
                        raise SessionError(f"expected an inference request, got a {frame.msg_type.name} frame")
                    batch = self.limits.check_batch(_json(bytes(frame.payload), "inference request").get("batch"))
                    t0 = time.perf_counter()
                    self._infer(chan, f"{sid}-{n}", batch)
                    n += 1
                    self._count("inferences")
                    log.info("session %s: inference %d (batch %d) done in %.2f s", sid, n, batch,
                             time.perf_counter() - t0)
            except PeerDisconnected:
                if chan.peer_closed and not busy:
                    log.info("session %s: closed by the client", sid)
                else:
                    self._count("errors")
                    log.warning("session %s: the client disconnected mid-inference; its material is discarded", sid)
            except (SessionError, LimitError, MaterialMismatch, TransportError, ValueError) as exc:
                self._count("errors")
                log.warning("session %s: %s", sid, exc)
                _quietly(chan.send_error, str(exc))
            except Exception as exc:
                self._count("errors")
                log.exception("session %s: internal error", sid)
                _quietly(chan.send_error, f"server internal error: {type(exc).__name__}")

    def _infer(self, chan, inference: str, batch: int) -> None:
        _, server_bytes = self.estimator.estimate(self.model.plan, self.digest, batch)
        # The received frame and the arrays parsed from it live at once: twice the half.
        with self.budget.reserve(2 * server_bytes, f"inference {inference}"):
            chan.send(MessageType.ACK)
            material, nbytes = fetch_material(self.dealer.host, self.dealer.port, self.dealer.tls, "server",
                                              inference, self.model.plan, batch, timeout=self.dealer_timeout,
                                              max_frame_size=max(server_bytes, 1 << 16))
            run = engine.ServerRun(self.model.plan, self.model.weights, material, batch)
            confirm_bundle(chan, material)
            chan.meter.reset()          # the inference's cost: the engine's phases, as secure.run counts
            run.offline(chan)
            run.online(chan)
            chan.send(MessageType.DATA, json.dumps({"material_bytes": nbytes,
                                                    "report": chan.meter.report().to_dict()}).encode())


class RemoteModel:
    """The client's handle on a served model (from `pi.connect`).

    `timeout`: the longest the client waits for any progress from the server or the dealer
    (a stopped or frozen server gives a clear ChannelTimeout after it)."""

    def __init__(self, server: Endpoint, dealer: Endpoint, timeout: float = DEFAULT_CLIENT_TIMEOUT) -> None:
        self.server, self.dealer, self.timeout = server, dealer, timeout
        self.meter = CostMeter("client")
        self.chan = tls_connect(server.host, server.port, server.tls, timeout=timeout, recv_timeout=timeout,
                                meter=self.meter)
        try:
            with self.meter.scope(layer="session", op="setup", phase="offline"):
                self.chan.send(MessageType.HELLO, json.dumps({"version": SESSION_VERSION}).encode())
                answer = _json(self._silent_server(self.chan.recv, MessageType.SPEC), "SPEC")
        except BaseException:
            _quietly(self.chan.close)
            raise
        self.session = answer["session"]
        self.max_batch = answer.get("max_batch")
        self.spec = SecureModel.from_public_spec(answer["spec"])
        self.plan = self.spec.plan
        self._n = 0
        self._failed: str | None = None      # set when an inference broke off: the session is over
        self.last_cost: CostReport | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.plan.input_shape)

    def _silent_server(self, fn, *args, **kw):
        """Runs fn; a ChannelTimeout becomes one that says the server went silent."""
        try:
            return fn(*args, **kw)
        except ChannelTimeout as exc:
            raise ChannelTimeout(f"the server at {self.server.host}:{self.server.port} sent nothing for "
                                 f"{self.timeout:g} s (it may be stopped or overloaded); try again later or raise "
                                 f"the client's timeout ({exc})") from None

    def run(self, x, progress=None, out_of_range: str = "refuse") -> torch.Tensor:
        """One private inference on a batch (or a single input). Returns the decoded output.
        The input is checked against the model's input contract first (SecureModel.run)."""
        x = self.spec.input_contract.check(x, out_of_range)
        engine.check_input(self.plan, x, x.shape[0])     # before anything is sent or spent
        if self.max_batch is not None and x.shape[0] > self.max_batch:
            raise ValueError(f"batch of {x.shape[0]} inputs exceeds the server's limit of {self.max_batch}; "
                             "split it")
        if self._failed:
            raise TransportError(f"this session is closed after a failed inference ({self._failed}); "
                                 "connect again")
        try:
            return self._silent_server(self._run, x)
        except Exception as exc:
            # Half an inference cannot be resumed (its material is spent): end the session.
            self._failed = f"{type(exc).__name__}: {exc}"
            _quietly(self.chan.close)
            raise

    def _run(self, x: np.ndarray) -> torch.Tensor:
        batch = x.shape[0]
        self.meter.reset()
        t0 = time.perf_counter()
        with self.meter.scope(layer="session", op="setup", phase="offline"):
            self.chan.send(MessageType.DATA, json.dumps({"batch": batch}).encode())
            self.chan.recv(MessageType.ACK)      # the server accepted the batch: now fetch
        try:
            material, nbytes = fetch_material(self.dealer.host, self.dealer.port, self.dealer.tls, "client",
                                              f"{self.session}-{self._n}", self.plan, batch, timeout=self.timeout)
        except (TransportError, ValueError) as exc:
            # The server is waiting for this inference's offline messages: tell it why none come.
            _quietly(self.chan.send_error, f"the client got no material from its dealer: {exc}")
            raise
        self._n += 1
        fetch_s = time.perf_counter() - t0
        run = engine.ClientRun(self.plan, material, batch)
        try:
            confirm_bundle(self.chan, material)
            self.meter.reset()          # the inference's cost: the engine's phases, as on the server
            run.offline(self.chan)
            y = run.online(self.chan, x)
            mine = self.meter.report()
            theirs = _json(self.chan.recv(MessageType.DATA), "server cost report")
        except RemoteError as exc:
            raise RuntimeError(f"the server refused the inference: {exc}") from exc
        try:
            server = MeterReport.from_dict(theirs["report"])
            halves = {"client": nbytes, "server": int(theirs["material_bytes"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionError(f"the server's cost report is malformed: {exc}") from None
        self.last_cost = CostReport.of_parties(mine, server, halves, batch, online_seconds=run.timings["online_s"],
                                               offline_seconds=fetch_s + run.timings["offline_s"])
        return torch.from_numpy(np.asarray(y))

    def close(self) -> None:
        self.chan.close()       # says BYE

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        pass


def serve(model: SecureModel, host: str, port: int, tls: TlsConfig, dealer: Endpoint, block: bool = True,
          **options) -> InferenceServer:
    """Starts an inference server; with block=False it runs in a background thread.
    `options` go to InferenceServer (limits, max_connections, timeouts)."""
    server = InferenceServer(model, Listener(host, port, tls), dealer, **options)
    if block:
        server.serve_forever()
    else:
        threading.Thread(target=server.serve_forever, daemon=True, name="pi-serve").start()
    return server


def connect(server: Endpoint, dealer: Endpoint, timeout: float = DEFAULT_CLIENT_TIMEOUT) -> RemoteModel:
    """Connects to a `pi serve` server (and its dealer) as a client. `dealer.tls` must carry
    the client's certificate (the dealer requires mutual TLS)."""
    return RemoteModel(server, dealer, timeout)
