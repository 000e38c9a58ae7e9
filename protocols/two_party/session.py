"""The two-party sessions: one `ServerSession` and one `ClientSession` per connection.

    s = ServerSession(plan, weights); s.setup(chan)    c = ClientSession(plan); c.setup(chan)
    sb = s.offline(chan, batch)                        cb = c.offline(chan, batch)
    s.online(chan, sb)                                 y = c.online(chan, cb, x)

setup: the plan digests are compared, the server announces each linear layer's weight bound
(public: the HE parameters depend on it), the client sends its HE public keys, and the base OTs
of both directions run (3 flights). offline: the HE correlations of every linear layer and the
garbled circuits of every gate, batched across layers into as few round trips as the plan's HE
depth allows (2 for a network whose linear layers are separated by activations); it returns a
bundle holding one inference's one-time material. online: one flight for the input, one round
per activation layer (Circa too), one per max-pool level, one flight for the output.

Bundles are consumed once, in the order they were made (the OT extension hands out its
correlations in order); a second use, or a bundle of another session, is a ProtocolError.
Costs go through `chan.meter` scopes like the dealer engine's: per layer and phase, the
offline flights' rounds on the `offline-exchange` row, setup on `setup`.
"""
from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass

import numpy as np

from protocols import garbled, he, ot_mul
from protocols.engine import check_input, op_class
from protocols.material import SeedStream, fresh_seed, plan_digest
from protocols.plan import Conv2d, Linear, Plan, PlanError, ServerWeights
from protocols.transport.errors import ProtocolError
from protocols.two_party.gates import ClientState, ServerState
from protocols.two_party.layers import build_layers, ring_weights, schedule, weight_bits
from protocols.two_party.poly import has_poly
from protocols.two_party.wire import Flight, peer_fault, recv_bytes, send_bytes

MAX_RING_BITS = he.MAX_PLAIN_BITS       # SEAL's plain modulus: t = 2^l, l ≤ 59
BUNDLE_ITEM = "-/bundle"
KEY_ITEM = "-/public-key/"


def check_plan(plan: Plan) -> None:
    if plan.ring_bits > MAX_RING_BITS:
        raise PlanError(f"the two-party provider runs in rings of at most {MAX_RING_BITS} bits (SEAL's plain "
                        f"modulus limit); this plan is compiled for Z_2^{plan.ring_bits}: compile it with "
                        f"ring_bits ≤ {MAX_RING_BITS} or ring_bits='calibrated'")


@functools.lru_cache(maxsize=256)
def _params(shape: he.LayerShape, l: int, wbits: int) -> he.LayerParams:
    return he.choose_params(shape, l, wbits)


def _scope(chan, op, phase: str, layer: str | None = None):
    meter = getattr(chan, "meter", None)
    if meter is None:
        return contextlib.nullcontext()
    if op is None:
        return meter.scope(layer=layer or "offline-exchange", op="setup", phase=phase)
    return meter.scope(layer=op.name, op=op_class(op), phase=phase)


@dataclass
class ServerBundle:
    """One inference's one-time material on the server's side; `held_bytes` is what it keeps
    until the online phase (counted once the offline phase is done)."""
    session: int
    batch: int
    bundle_id: bytes
    state: ServerState
    consumed: bool = False

    @property
    def held_bytes(self) -> int:
        return _nbytes(self.state.keep)


def _nbytes(obj) -> int:
    """Bytes of the arrays and byte strings in `obj` (dicts, sequences, dataclasses): what a
    bundle holds, garbled batches counted by their tables (none once sent) and output shares."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (bytes, bytearray)):
        return len(obj)
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    if isinstance(obj, garbled.GarblerBatch):
        native = 0 if obj.finished else len(obj.batch.tables) + _nbytes(obj.share)
        return native + _nbytes([obj.rot, obj.s_rho, obj.s_rt])
    return _nbytes(vars(obj)) if hasattr(obj, "__dict__") else 0


@dataclass
class ClientBundle:
    """One inference's one-time material on the client's side; `stored_bytes` is what it keeps:
    the garbled tables, Circa's product values, the output layer's share, and two 16-byte
    seeds/ids (every mask is regenerated from the seed)."""
    session: int
    batch: int
    bundle_id: bytes
    state: ClientState
    stored_bytes: int
    consumed: bool = False


class _Session:
    role = ""

    def __init__(self, plan: Plan) -> None:
        check_plan(plan)
        self.plan = plan
        self.digest = plan_digest(plan.to_dict()).encode()
        self.linear_ops = [op for op in plan.ops if isinstance(op, (Conv2d, Linear))]
        self.timings: dict[str, float] = {}
        self.wbits: dict[str, int] = {}
        self.keyed: set[tuple] = set()          # HE chains whose public key the server has
        self._ready = False
        self._layers: dict[int, tuple] = {}

    def _layers_for(self, batch: int):
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        if batch not in self._layers:
            layers = build_layers(self.plan, batch)
            self._layers[batch] = (layers, schedule(layers))
        return self._layers[batch]

    def _params_for(self, batch: int) -> dict[str, he.LayerParams]:
        """Each linear layer's HE parameters for a batch size (public: both sides compute them)."""
        layers, _ = self._layers_for(batch)
        l = self.plan.ring_bits
        return {layer.op.name: _params(layer.he_shape, l, self.wbits[layer.op.name])
                for layer in layers if hasattr(layer, "he_shape")}

    def _new_chains(self, params: dict) -> list[tuple[tuple, he.LayerParams]]:
        """Parameter chains of `params` without a public key at the server yet, in op order
        (one key each: the client sends it with its first flight that needs it)."""
        out = []
        for p in params.values():
            if p.chain not in self.keyed and p.chain not in (c for c, _ in out):
                out.append((p.chain, p))
        return out

    def _scope_of(self, chan, phase: str):
        ops = {op.name: op for op in self.plan.ops}

        def scope_of(name: str):
            op = ops.get(name.split("/", 1)[0])
            return _scope(chan, op, phase) if op is not None else contextlib.nullcontext()
        return scope_of

    def _check_bundle(self, bundle, cls) -> None:
        if not isinstance(bundle, cls):
            raise TypeError(f"online needs a {cls.__name__} from this session's offline(), got {type(bundle).__name__}")
        if bundle.session != id(self):
            raise ProtocolError("this bundle was made by another session (bundles belong to one connection)")
        if bundle.consumed:
            raise ProtocolError("this bundle was already consumed: each bundle serves one inference")
        bundle.consumed = True

    def _rounds(self, sched) -> int:
        return max(r for pair in sched for r in pair) + 1


class ServerSession(_Session):
    """The server: garbler of every gate, HE evaluator of every linear layer (holds the weights)."""
    role = "server"

    def __init__(self, plan: Plan, weights: ServerWeights) -> None:
        super().__init__(plan)
        self.weights = ring_weights(plan, weights)
        missing = [op.name for op in self.linear_ops if op.name not in self.weights.weights]
        if missing:
            raise PlanError(f"the server's weights lack layers {missing[:5]}")
        self.ga: garbled.Garbler | None = None
        self.mul: ot_mul.Server | None = None
        self.he = he.HEServer()
        self.prepared: dict[tuple, he.PreparedLayer] = {}

    def setup(self, chan) -> None:
        t0 = time.perf_counter()
        with _scope(chan, None, "offline", "setup"):
            self.wbits = {op.name: weight_bits(self.plan, self.weights.weights[op.name]) for op in self.linear_ops}
            self.ga = garbled.Garbler()
            self.mul = ot_mul.Server() if has_poly(self.plan) else None     # its own OT session
            send_bytes(chan, self.digest)
            chan.send_array(np.asarray(list(self.wbits.values()), dtype=np.uint8))
            send_bytes(chan, self.ga.rev.base_message())
            chains = self._new_chains(self._params_for(1))
            pks = [recv_bytes(chan) for _ in chains]
            ot_msg, rev_reply = recv_bytes(chan), recv_bytes(chan)
            mul_msg = recv_bytes(chan) if self.mul else None
            try:
                send_bytes(chan, self.ga.ot.base_reply(ot_msg))
                self.ga.rev.base_finish(rev_reply)
                if self.mul:
                    send_bytes(chan, self.mul.ot.base_reply(mul_msg))
            except (ValueError, RuntimeError) as exc:
                raise ProtocolError(f"setup: the client's base-OT messages were refused: {exc}") from None
            self._set_keys(chains, pks)
        self._ready = True
        self.timings["setup_s"] = time.perf_counter() - t0

    def _set_keys(self, chains, pks) -> None:
        for (chain, p), pk in zip(chains, pks):
            with peer_fault("the client's HE public key"):
                self.he.set_public_key(p, pk)
            self.keyed.add(chain)

    def _prepare(self, p: he.LayerParams, layer) -> he.PreparedLayer:
        """The layer's kernels in NTT form for parameters p (once per parameter set)."""
        key = (layer.op.name, p.digest())
        if key not in self.prepared:
            self.prepared[key] = self.he.prepare(p, layer.kernel(self.weights.weights[layer.op.name]))
        return self.prepared[key]

    def offline(self, chan, batch: int) -> ServerBundle:
        if not self._ready:
            raise RuntimeError("call setup(chan) once before offline()")
        layers, sched = self._layers_for(batch)
        t0 = time.perf_counter()
        params = self._params_for(batch)
        st = ServerState(self.plan, batch, self.ga, self.he, params, self._prepare, self.weights, mul=self.mul)
        bundle_id = os.urandom(16)
        scope_of = self._scope_of(chan, "offline")
        chains = self._new_chains(params)
        for rnd in range(self._rounds(sched)):
            expected = set().union(*(layer.client_names() for layer, (ready, _) in zip(layers, sched) if ready == rnd))
            keys = [f"{KEY_ITEM}{i}" for i in range(len(chains))] if rnd == 0 else []
            with _scope(chan, None, "offline"):
                items = Flight.receive(chan, expected | set(keys), scope_of)
            if keys:
                self._set_keys(chains, [items[k] for k in keys])
            flight = Flight()
            if rnd == 0:
                flight.put(BUNDLE_ITEM, bundle_id)
            for layer, (ready, _) in zip(layers, sched):
                if ready == rnd:
                    with _scope(chan, layer.op, "offline"):
                        layer.server_reply(st, items, flight)
            with _scope(chan, None, "offline"):
                flight.send(chan, scope_of)
        self.timings["offline_s"] = time.perf_counter() - t0
        return ServerBundle(id(self), batch, bundle_id, st)

    def online(self, chan, bundle: ServerBundle) -> None:
        self._check_bundle(bundle, ServerBundle)
        layers, _ = self._layers_for(bundle.batch)
        t0 = time.perf_counter()
        st = bundle.state
        with _scope(chan, layers[0].op, "online"):
            if recv_bytes(chan) != bundle.bundle_id:
                raise ProtocolError("the client's bundle is not this one: bundles must be used in the order made")
        for layer in layers:
            with _scope(chan, layer.op, "online"):
                layer.server_online(st, chan)
        st.shares.clear()
        self.timings["online_s"] = time.perf_counter() - t0


class ClientSession(_Session):
    """The client: evaluator of every gate, owner of the HE keys."""
    role = "client"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.ev: garbled.Evaluator | None = None
        self.mul: ot_mul.Client | None = None
        self.he = he.HEClient()

    def setup(self, chan) -> None:
        t0 = time.perf_counter()
        with _scope(chan, None, "offline", "setup"):
            if recv_bytes(chan) != self.digest:
                raise ProtocolError("the server runs another plan than this client (plan digests differ)")
            wbits = chan.recv_array(dtype=np.uint8, shape=(len(self.linear_ops),))
            if wbits.size and int(wbits.max()) > self.plan.ring_bits - 1:
                raise ProtocolError(f"the server announces weights of {int(wbits.max())} bits, more than the "
                                    f"{self.plan.ring_bits}-bit ring holds")
            rev_msg = recv_bytes(chan)
            self.wbits = {op.name: int(w) for op, w in zip(self.linear_ops, wbits)}
            self.ev = garbled.Evaluator()
            self.mul = ot_mul.Client() if has_poly(self.plan) else None
            for chain, p in self._new_chains(self._params_for(1)):
                send_bytes(chan, self.he.public_key(p))
                self.keyed.add(chain)
            send_bytes(chan, self.ev.ot.base_message())
            try:
                send_bytes(chan, self.ev.rev.base_reply(rev_msg))
                if self.mul:
                    send_bytes(chan, self.mul.ot.base_message())
                reply = recv_bytes(chan)
                self.ev.ot.base_finish(reply)
                if self.mul:
                    self.mul.ot.base_finish(recv_bytes(chan))
            except (ValueError, RuntimeError) as exc:
                raise ProtocolError(f"setup: the server's base-OT messages were refused: {exc}") from None
        self._ready = True
        self.timings["setup_s"] = time.perf_counter() - t0

    def offline(self, chan, batch: int) -> ClientBundle:
        if not self._ready:
            raise RuntimeError("call setup(chan) once before offline()")
        layers, sched = self._layers_for(batch)
        t0 = time.perf_counter()
        seed = fresh_seed()
        params = self._params_for(batch)
        st = ClientState(self.plan, batch, seed, self.ev, self.he, params, stream=SeedStream(seed), mul=self.mul)
        scope_of = self._scope_of(chan, "offline")
        bundle_id = b""
        for rnd in range(self._rounds(sched)):
            flight = Flight()
            if rnd == 0:
                for i, (chain, p) in enumerate(self._new_chains(params)):
                    flight.put(f"{KEY_ITEM}{i}", self.he.public_key(p))
                    self.keyed.add(chain)
            for layer, (ready, out_round) in zip(layers, sched):
                with _scope(chan, layer.op, "offline"):
                    if out_round == rnd:
                        layer.client_out(st)
                    if ready == rnd:
                        layer.client_send(st, flight)
            with _scope(chan, None, "offline"):
                flight.send(chan, scope_of)
                expected = set().union(*(layer.server_names() for layer, (ready, _) in zip(layers, sched)
                                         if ready == rnd))
                items = Flight.receive(chan, expected | ({BUNDLE_ITEM} if rnd == 0 else set()), scope_of)
            if rnd == 0:
                bundle_id = items[BUNDLE_ITEM]
                if len(bundle_id) != 16:
                    raise ProtocolError(f"the server's bundle id has {len(bundle_id)} bytes, not 16")
            for layer, (ready, _) in zip(layers, sched):
                if ready == rnd:
                    with _scope(chan, layer.op, "offline"):
                        layer.client_recv(st, items)
        st.shares.clear()
        st.stream = None
        stored = len(seed) + len(bundle_id) + sum(layer.stored_bytes(st) for layer in layers)
        self.timings["offline_s"] = time.perf_counter() - t0
        return ClientBundle(id(self), batch, bundle_id, st, stored)

    def online(self, chan, bundle: ClientBundle, x) -> np.ndarray:
        """x: real-valued input of shape (batch, *input_shape). Returns the decoded output, or
        the int64 labels of a label-only plan."""
        x = np.asarray(x, dtype=np.float64)
        check_input(self.plan, x, bundle.batch)
        self._check_bundle(bundle, ClientBundle)
        layers, _ = self._layers_for(bundle.batch)
        t0 = time.perf_counter()
        st = bundle.state
        st.keep["x"] = self.plan.ring.reduce(self.plan.fixed_point.encode(x))
        stream = SeedStream(st.seed)
        with _scope(chan, layers[0].op, "online"):
            send_bytes(chan, bundle.bundle_id)
        for layer in layers:
            with _scope(chan, layer.op, "online"):
                layer.client_online(st, stream, chan)
        if self.plan.output_op.label_only:
            y = st.keep.pop("label")
        else:
            out_t = self.plan.tensor(self.plan.output_op.inputs[0])
            y = self.plan.fixed_point.decode(st.keep.pop("y"), scale=out_t.scale)
        st.keep.clear()
        self.timings["online_s"] = time.perf_counter() - t0
        return y
