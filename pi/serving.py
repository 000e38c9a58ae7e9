"""Real deployments: `serve` (the server process) and `connect` (the client).

Over 500 lines on purpose: both ends of one session protocol, read side by side. With the
`dealer` provider a third process (protocols.dealer_service) makes the one-time material;
with `two-party` the client and the server make it between themselves (pi.sessions).
Everything crosses TLS with pinned certificates; the dealer additionally requires each
party's certificate (mutual TLS).

Session protocol between client and server (after the TLS handshake), version 4:
  client HELLO {"version": 4, "provider": name or null}
      → server SPEC {"session": id, "spec": public spec, "provider": its provider, "max_batch": limit,
                     "max_stored": bundles it keeps per connection}
        (or ERROR: another version, or a provider other than the server's)
  the provider's setup, once per connection (two-party: HE public keys and base OTs)
  offline phase: client DATA {"op": "offline", "batch": B} → server ACK (or ERROR: batch over the
                 limit, store full, busy), the provider's offline phase (dealer: both fetch their
                 half for inference "<id>-<n>" and `confirm_bundle`, then the engine's offline
                 phase), then server DATA {"material_bytes": n, "report": its cost report}.
                 Each side appends the bundle to its store.
  online phase:  client DATA {"op": "online", "batch": B}, then at once the provider's online
                 phase on the oldest stored bundle (the server refuses with ERROR when its oldest
                 bundle is for another batch or there is none), then server DATA {"report": ...}.
  An inference without preprocessing is one offline request followed by one online request;
  `RemoteModel.preprocess(n)` (`pi infer --preprocess N`) makes n bundles first. The client
  reports the cost of both parties (pi.secure_model.CostReport), the offline figures being
  those of the bundle the inference consumed.
  client BYE ends the session. Any error goes back as an ERROR frame; the server keeps serving.

Resources: the server refuses to start on a bundle that does not fit its plan
(`validate_bundle`) or its provider; each connection runs on its own thread
(protocols.transport.server); a client must send its HELLO within `first_frame_timeout`; a
connection keeps at most `max_stored` bundles, and each bundle holds its bytes in the process's
memory budget (limits.memory_budget_bytes) until it is consumed: with the dealer its half of
the material, reserved before fetching it; two-party the server's part (output and HE masks;
not the garbled tables, dropped once sent), reserved before the offline phase once a bundle of that batch size was measured.
"""
from __future__ import annotations

import json
import logging
import secrets
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from pi.config import DEFAULT_CLIENT_TIMEOUT, FIRST_FRAME_TIMEOUT
from pi.secure_model import CostReport, SecureModel, bundle_digests
from pi.sessions import client_party, is_interactive, server_party
from protocols import engine
from protocols.cost import CostMeter, format_bytes
from protocols.cost import CostReport as MeterReport
from protocols.fixed_point import MAX_VALUE_BITS
from protocols.limits import LimitError, Limits, MaterialEstimator, MemoryBudget
from protocols.material import MaterialMismatch, plan_digest
from protocols.plan import Activation, Conv2d, Linear, MaxPool
from protocols.providers import get_provider
from protocols.transport.certs import TlsConfig
from protocols.transport.channel import Listener
from protocols.transport.channel import connect as tls_connect
from protocols.transport.errors import ChannelTimeout, PeerDisconnected, RemoteError, TransportError
from protocols.transport.frame import MessageType
from protocols.transport.server import DEFAULT_MAX_CONNECTIONS, ConnectionServer

log = logging.getLogger("pi.server")
SESSION_VERSION = 4
IDLE_TIMEOUT = 3600.0              # seconds a session may sit between inferences
DEFAULT_MAX_STORED = 64            # preprocessed bundles one connection may hold


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
    """Serves one SecureModel to many clients at once, one thread and session per client.

    provider: "dealer" (material from the dealer service at `dealer`) or "two-party" (no
    third party: `dealer` is not used); default: the provider the bundle was compiled for.
    max_stored: preprocessed bundles one connection may hold at once."""

    def __init__(self, model: SecureModel, listener: Listener, dealer: Endpoint | None = None, *,
                 provider: str | None = None, limits: Limits | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, first_frame_timeout: float = FIRST_FRAME_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, dealer_timeout: float = 60.0,
                 max_stored: int = DEFAULT_MAX_STORED) -> None:
        validate_bundle(model)
        self.provider = provider or model.provider
        get_provider(self.provider)                      # an unknown name: one line naming the known ones
        self.model, self.listener, self.dealer = model, listener, dealer
        self.limits = limits or Limits()
        self.first_frame_timeout, self.idle_timeout, self.dealer_timeout = \
            first_frame_timeout, idle_timeout, dealer_timeout
        if not isinstance(max_stored, int) or max_stored < 1:
            raise ValueError(f"max_stored must be a positive int, got {max_stored!r}")
        self.max_stored = max_stored
        self.budget = MemoryBudget(self.limits.memory_budget_bytes, self.limits.budget_wait_s)
        self._held: dict[int, int] = {}      # interactive providers: server bytes of a bundle per batch size
        self.digest = plan_digest(model.plan.to_dict())
        self.estimator = None
        if is_interactive(self.provider):
            self._party("check")                         # the plan fits the provider (ring width, ...)
        else:
            if dealer is None:
                raise ValueError("the dealer provider needs the dealer's address and fingerprint "
                                 "(--dealer-host/--dealer-port/--dealer-fingerprint), or serve with "
                                 "--provider two-party")
            self.estimator = MaterialEstimator(self.limits)
            self.estimator.per_example(model.plan, self.digest)    # the plan deals, within the limits
        self.connections = ConnectionServer(listener, self._session, name="server", max_connections=max_connections)
        self.stats = {"sessions": 0, "inferences": 0, "errors": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def _party(self, sid: str):
        return server_party(self.provider, self.model.plan, self.model.weights, self.dealer, sid,
                            timeout=self.dealer_timeout)

    def stop(self) -> None:
        self._stop.set()
        self.connections.stop()

    def serve_forever(self) -> None:
        log.info("serving %s with the %s provider on %s:%d (limits %s)", self.model.plan.meta.get("source", "model"),
                 self.provider, *self.listener.address, self.limits.to_dict())
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
        store: deque = deque()          # (Bundle, Reservation or None), oldest first
        with chan:
            try:
                hello = _json(chan.recv(MessageType.HELLO, timeout=self.first_frame_timeout), "HELLO")
                if hello.get("version") != SESSION_VERSION:
                    raise SessionError(f"session protocol version {hello.get('version')!r} is not supported "
                                       f"(this server speaks {SESSION_VERSION}); run the same release as the server")
                asked = hello.get("provider")
                if asked is not None and asked != self.provider:
                    raise SessionError(f"this server runs the {self.provider} provider, the client asked for "
                                       f"{str(asked)[:40]!r}: connect with --provider {self.provider}")
                chan.send(MessageType.SPEC, json.dumps({"session": sid, "spec": self.model.public_spec(),
                                                        "provider": self.provider, "max_batch": self.limits.max_batch,
                                                        "max_stored": self.max_stored}).encode())
                party = self._party(sid)
                with chan.meter.scope(layer="session", op="setup", phase="offline"):
                    party.setup(chan)
                while not self._stop.is_set():
                    busy = False
                    frame = chan.recv_frame(timeout=self.idle_timeout)   # a BYE raises PeerDisconnected
                    busy = True
                    if frame.msg_type != MessageType.DATA:
                        raise SessionError(f"expected an offline or online request, got a {frame.msg_type.name} frame")
                    request = _json(bytes(frame.payload), "request")
                    batch = self.limits.check_batch(request.get("batch"))
                    t0 = time.perf_counter()
                    if request.get("op") == "offline":
                        self._offline(chan, party, store, batch, sid)
                    elif request.get("op") == "online":
                        self._online(chan, party, store, batch)
                        self._count("inferences")
                        log.info("session %s: inference (batch %d) done in %.2f s online", sid, batch,
                                 time.perf_counter() - t0)
                    else:
                        raise SessionError(f"unknown request {str(request.get('op'))[:40]!r}; expected 'offline' "
                                           "or 'online'")
            except PeerDisconnected:
                if chan.peer_closed and not busy:
                    log.info("session %s: closed by the client (%d unused bundles discarded)", sid, len(store))
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
            finally:
                for _, reservation in store:            # unused one-time material dies with the session
                    if reservation is not None:
                        reservation.release()
                store.clear()

    def _offline(self, chan, party, store: deque, batch: int, sid: str) -> None:
        if len(store) >= self.max_stored:
            raise LimitError(f"this connection already holds {len(store)} preprocessed bundles, the server's limit "
                             f"(max_stored); run inferences to use them before preprocessing more")
        reservation = None
        what = f"a bundle of session {sid}"
        if self.estimator is not None:
            _, server_bytes = self.estimator.estimate(self.model.plan, self.digest, batch)
            # The received frame and the arrays parsed from it live at once: twice the half,
            # then the half itself until the bundle is consumed.
            reservation = self.budget.reserve(2 * server_bytes, what)
        elif batch in self._held:
            # an interactive bundle's size is known from the last one of this batch size: refuse
            # before any work when the budget cannot hold it
            reservation = self.budget.reserve(self._held[batch], what)
        try:
            chan.send(MessageType.ACK)
            chan.meter.reset()          # the bundle's cost: the provider's offline phase
            with chan.meter.scope(layer="session", op="setup", phase="offline"):
                bundle = party.offline(chan, batch)
            if self.estimator is not None:
                reservation.release(server_bytes)
            elif reservation is None or reservation.nbytes != bundle.stored_bytes:
                self._held[batch] = bundle.stored_bytes
                if reservation is not None:
                    reservation.release()
                reservation = self.budget.reserve(bundle.stored_bytes, what)
            chan.send(MessageType.DATA, json.dumps({"material_bytes": bundle.material_bytes,
                                                    "report": chan.meter.report().to_dict()}).encode())
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise
        store.append((bundle, reservation))

    def _online(self, chan, party, store: deque, batch: int) -> None:
        if not store:
            raise SessionError("no preprocessed bundle is left on this connection: request an offline phase first")
        if store[0][0].batch != batch:
            raise SessionError(f"the oldest preprocessed bundle is for a batch of {store[0][0].batch}, this inference "
                               f"has {batch}: bundles are used in the order they were made")
        bundle, reservation = store.popleft()
        try:
            chan.meter.reset()
            party.online(chan, bundle)
            chan.send(MessageType.DATA, json.dumps({"report": chan.meter.report().to_dict()}).encode())
        finally:
            if reservation is not None:
                reservation.release()


@dataclass
class Preprocessed:
    """What `RemoteModel.preprocess` made: `bundles` one-time bundles for batches of `batch`.
    Bytes are both directions (with a dealer, its material for both parties included);
    `stored_bytes` is what the client keeps per inference until it is used."""
    bundles: int
    batch: int
    offline_bytes: int
    offline_seconds: float
    stored_bytes: int

    def line(self) -> str:
        return (f"preprocessed {self.bundles} bundles for batches of {self.batch}: offline "
                f"{self.offline_bytes / 1e6:.2f} MB, {self.offline_seconds:.2f} s; the client stores "
                f"{format_bytes(self.stored_bytes)} per inference")


class RemoteModel:
    """The client's handle on a served model (from `pi.connect`).

    `provider`: the provider the client expects (None: whatever the server runs; a mismatch
    is refused by the server). `dealer`: needed only when the server uses the dealer.
    `timeout`: the longest the client waits for any progress from the server or the dealer
    (a stopped or frozen server gives a clear ChannelTimeout after it)."""

    def __init__(self, server: Endpoint, dealer: Endpoint | None = None, timeout: float = DEFAULT_CLIENT_TIMEOUT,
                 provider: str | None = None) -> None:
        if provider is not None:
            get_provider(provider)
        self.server, self.dealer, self.timeout = server, dealer, timeout
        self.meter = CostMeter("client")
        self.chan = tls_connect(server.host, server.port, server.tls, timeout=timeout, recv_timeout=timeout,
                                meter=self.meter)
        try:
            with self.meter.scope(layer="session", op="setup", phase="offline"):
                self.chan.send(MessageType.HELLO, json.dumps({"version": SESSION_VERSION,
                                                              "provider": provider}).encode())
                answer = _json(self._silent_server(self.chan.recv, MessageType.SPEC), "SPEC")
                self.session = answer["session"]
                self.provider = answer.get("provider", "dealer")
                self.max_batch, self.max_stored = answer.get("max_batch"), answer.get("max_stored")
                self.spec = SecureModel.from_public_spec(answer["spec"])
                self.plan = self.spec.plan
                t0 = time.perf_counter()
                self.party = client_party(self.provider, self.plan, dealer, self.session, timeout)
                self._silent_server(self.party.setup, self.chan)
            setup = self.meter.report()
            # Once per connection (two-party: HE keys and base OTs), not per inference.
            self.setup_bytes = setup.offline_bytes + setup.offline_bytes_received
            self.setup_seconds = time.perf_counter() - t0
        except BaseException:
            _quietly(self.chan.close)
            raise
        self._store: deque = deque()         # (Bundle, merged offline report, material halves)
        self._failed: str | None = None      # set when an inference broke off: the session is over
        self.last_cost: CostReport | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.plan.input_shape)

    @property
    def stored(self) -> int:
        """Preprocessed bundles not used yet."""
        return len(self._store)

    def _silent_server(self, fn, *args, **kw):
        """Runs fn; a ChannelTimeout becomes one that says the server went silent."""
        try:
            return fn(*args, **kw)
        except ChannelTimeout as exc:
            raise ChannelTimeout(f"the server at {self.server.host}:{self.server.port} sent nothing for "
                                 f"{self.timeout:g} s (it may be stopped or overloaded); try again later or raise "
                                 f"the client's timeout ({exc})") from None

    def _guarded(self, fn, *args):
        if self._failed:
            raise TransportError(f"this session is closed after a failed inference ({self._failed}); "
                                 "connect again")
        try:
            return self._silent_server(fn, *args)
        except Exception as exc:
            # Half a phase cannot be resumed (its one-time material is spent): end the session.
            self._failed = f"{type(exc).__name__}: {exc}"
            _quietly(self.chan.close)
            raise

    def _check_batch(self, batch: int) -> None:
        if self.max_batch is not None and batch > self.max_batch:
            raise ValueError(f"batch of {batch} inputs exceeds the server's limit of {self.max_batch}; split it")

    def preprocess(self, n: int, batch: int = 1) -> Preprocessed:
        """Runs n offline phases now, before any input exists: each leaves one one-time bundle
        on both sides, used (once, in order) by the next n run() calls with batches of `batch`."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"the number of bundles to preprocess must be a positive int, got {n!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        self._check_batch(batch)
        if self._store and self._store[-1][0].batch != batch:
            raise ValueError(f"this connection holds bundles for batches of {self._store[-1][0].batch}; use them "
                             "before preprocessing for another batch size")
        if self.max_stored is not None and len(self._store) + n > self.max_stored:
            raise ValueError(f"the server keeps at most {self.max_stored} preprocessed bundles per connection "
                             f"({len(self._store)} held now); preprocess fewer")
        made = []
        for _ in range(n):
            made.append(self._guarded(self._offline, batch))
        return Preprocessed(n, batch, sum(off.offline_bytes + sum(h.values()) for _, off, h in made),
                            sum(b.offline_s for b, _, _ in made), max(b.stored_bytes for b, _, _ in made))

    def _offline(self, batch: int):
        self.meter.reset()
        with self.meter.scope(layer="session", op="setup", phase="offline"):
            self.chan.send(MessageType.DATA, json.dumps({"op": "offline", "batch": batch}).encode())
            self.chan.recv(MessageType.ACK)      # the server accepted the batch: now the offline phase
            try:
                bundle = self.party.offline(self.chan, batch)
                mine = self.meter.report()
                theirs = _json(self.chan.recv(MessageType.DATA), "server cost report")
            except RemoteError as exc:
                raise RuntimeError(f"the server refused the inference: {exc}") from exc
        try:
            server = MeterReport.from_dict(theirs["report"])
            halves = {"client": bundle.material_bytes, "server": int(theirs["material_bytes"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionError(f"the server's cost report is malformed: {exc}") from None
        item = (bundle, mine.merge(server), halves)
        self._store.append(item)
        return item

    def run(self, x, progress=None, out_of_range: str = "refuse"):
        """One private inference on a batch (or a single input). Returns the decoded output:
        a torch.Tensor for a tensor input, else a numpy array (a client needs no torch).
        The input is checked against the model's input contract first (SecureModel.run). It
        uses the oldest preprocessed bundle if there is one, else runs an offline phase first."""
        as_tensor = _is_tensor(x)
        x = self.spec.input_contract.check(x, out_of_range)
        engine.check_input(self.plan, x, x.shape[0])     # before anything is sent or spent
        self._check_batch(x.shape[0])
        if self._store and self._store[0][0].batch != x.shape[0]:
            raise ValueError(f"the preprocessed bundles are for batches of {self._store[0][0].batch}, this input is a "
                             f"batch of {x.shape[0]}: use inputs of that size first, or connect again")
        y = self._guarded(self._run, x)
        if as_tensor:
            import torch
            return torch.from_numpy(y)
        return y

    def _run(self, x: np.ndarray) -> np.ndarray:
        batch = x.shape[0]
        preprocessed = bool(self._store)
        if not preprocessed:
            self._offline(batch)
        bundle, offline, halves = self._store.popleft()
        self.chan.send(MessageType.DATA, json.dumps({"op": "online", "batch": batch}).encode())
        self.meter.reset()          # the inference's online cost: the provider's online phase
        try:
            y, online_s = self.party.online(self.chan, bundle, x)
            mine = self.meter.report()
            theirs = _json(self.chan.recv(MessageType.DATA), "server cost report")
        except RemoteError as exc:
            raise RuntimeError(f"the server refused the inference: {exc}") from exc
        try:
            online = mine.merge(MeterReport.from_dict(theirs["report"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionError(f"the server's cost report is malformed: {exc}") from None
        self.last_cost = CostReport.of_phases(offline, online, halves, batch, online_seconds=online_s,
                                              offline_seconds=bundle.offline_s, stored_bytes=bundle.stored_bytes,
                                              provider=self.provider, preprocessed=preprocessed)
        return np.asarray(y)

    def close(self) -> None:
        self.chan.close()       # says BYE; unused bundles die with the session on both sides

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_tensor(x) -> bool:
    """x is a torch tensor; torch is not imported for it (it is loaded if x is one)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001, S110 -- best effort on a peer that may be gone
        pass


def serve(model: SecureModel, host: str, port: int, tls: TlsConfig, dealer: Endpoint | None = None,
          block: bool = True, **options) -> InferenceServer:
    """Starts an inference server; with block=False it runs in a background thread.
    `dealer` is needed for the dealer provider only. `options` go to InferenceServer
    (provider, limits, max_connections, timeouts, max_stored)."""
    server = InferenceServer(model, Listener(host, port, tls), dealer, **options)
    if block:
        server.serve_forever()
    else:
        threading.Thread(target=server.serve_forever, daemon=True, name="pi-serve").start()
    return server


def connect(server: Endpoint, dealer: Endpoint | None = None, timeout: float = DEFAULT_CLIENT_TIMEOUT,
            provider: str | None = None) -> RemoteModel:
    """Connects to a `pi serve` server as a client. With the dealer provider, `dealer.tls` must
    carry the client's certificate (the dealer requires mutual TLS); with two-party no dealer
    is needed. `provider`: the one the client expects (None: the server's)."""
    return RemoteModel(server, dealer, timeout, provider)
