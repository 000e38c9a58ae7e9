"""Secure layers: what each party (and the dealer) does for every op of a plan.

Over 500 lines on purpose: one class per plan op, and each keeps the dealer's, the client's and
the server's steps of that op side by side, which is what a reader checks against each other.

Every tensor is additively shared: the server holds `a`, the client `c`, a + c = v·2^scale
mod 2^l (l = plan.ring_bits), and the client's share is always computable before the input
arrives. That makes the online phase server-centric: the server does all linear algebra on
its shares, the client only evaluates FSS keys on the masked values the server sends it.

Arithmetic runs on uint64 (mod 2^64, which is right mod 2^l); the plan's `Ring` reduces where
the bits above l would matter: every ring element sent (ring_send / ring_recv, ceil(l/8) bytes
each), dealer material (stored packed), local truncations, decoded results. The engine
reduces every stored share once per op.

Per op, four roles (see docs/engine.md for the derivations):
  deal            the dealer makes one-time material for both parties from the public plan
  client_offline  the client computes its shares, queuing input-independent messages
  server_offline  the server sends masked weights and absorbs the client's messages
  *_online        the online protocol over the channel
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np

import pi_native
from protocols import gates, op_layers
from protocols.fixed_point import RING64, RING_BITS, FixedPoint, Ring
from protocols.material import Material, SeedStream
from protocols.op_layers import max_tree, pool_windows, tree_pairs
from protocols.transport.errors import ProtocolError
from protocols.plan import (CIRCA, IDENTITY, MASKED, POLY, RELU, Activation, Add, Conv2d, MaxPool, MulConst, Op, Plan,
                            PlanError, Reshape, ServerWeights, SumPool, Truncate)

U64 = np.uint64


def rand_u64(n: int) -> np.ndarray:
    """Fresh dealer randomness: AES-CTR under a key from the OS CSPRNG (uniform mod 2^64,
    hence mod 2^l)."""
    return pi_native.Prg(os.urandom(16)).random_u64(n)


def ring_send(chan, ring: Ring, x: np.ndarray) -> None:
    """Sends ring elements reduced mod 2^l, ceil(l/8) bytes each."""
    chan.send_array(ring.pack(x))


def ring_recv(chan, ring: Ring, shape: tuple[int, ...]) -> np.ndarray:
    """Receives prod(shape) ring elements sent by ring_send."""
    n = int(np.prod(shape))
    wire = ring.wire_shape(n)
    return unpack_from_peer(ring, chan.recv_array(dtype=np.uint8 if len(wire) > 1 else U64,
                                                  shape=shape if ring.full else wire), shape)


def unpack_from_peer(ring: Ring, wire: np.ndarray, shape=None) -> np.ndarray:
    """Ring.unpack for what a peer sent: elements that are not l-bit values are its fault."""
    try:
        return ring.unpack(wire, shape)
    except ValueError as exc:
        raise ProtocolError(f"the peer sent malformed ring elements: {exc}") from None


def put_ring(material: Material, key: str, x: np.ndarray, ring: Ring) -> None:
    """Dealer material that is ring elements is stored packed (its size reflects l)."""
    material.put(key, ring.pack(x))


def take_ring(material: Material, key: str, ring: Ring, shape=None) -> np.ndarray:
    return ring.unpack(material.take(key), shape)


# --------------------------------------------------------------------------------------------
# Public linear maps, the same function for every party's share (and for the dealer's masks)
# --------------------------------------------------------------------------------------------

def sumpool(x: np.ndarray, kernel, stride, padding) -> np.ndarray:
    b, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        xp = np.zeros((b, c, h + 2 * ph, w + 2 * pw), U64)
        xp[:, :, ph:ph + h, pw:pw + w] = x
        x = xp
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    out = np.zeros((b, c, oh, ow), U64)
    for i in range(kh):
        for j in range(kw):
            out += x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
    return out


def public_op(op: Op, xs: list[np.ndarray], out_shape: tuple[int, ...]) -> np.ndarray:
    """Applies a public linear op to shares (linearity makes it correct on each share)."""
    if isinstance(op, SumPool):
        return sumpool(xs[0], op.kernel, op.stride, op.padding)
    if isinstance(op, MulConst):
        return xs[0] * U64(op.factor % (1 << 64))
    if isinstance(op, Add):
        return xs[0] + xs[1]
    if isinstance(op, Reshape):
        return xs[0].reshape((xs[0].shape[0],) + tuple(out_shape))
    raise PlanError(f"{op.kind} is not a public linear op")


def private_linear(op: Op, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Conv2d / Linear with ring weights (no bias) on a batch of shares."""
    if isinstance(op, Conv2d):
        return pi_native.ring_conv2d(x, weight, op.stride, op.padding)
    return pi_native.ring_matmul(x, np.ascontiguousarray(weight.T))


def server_linear(op: Op, ss, correction: str) -> np.ndarray:
    """The server's online step of a private Conv2d / Linear (both providers): its share through
    the weights, plus the offline correction kept under `correction`, plus the bias."""
    y = private_linear(op, ss.shares[op.inputs[0]], ss.weights.weights[op.name]) + ss.keep.pop(correction)
    if op.name in ss.weights.biases:
        y += ss.weights.biases[op.name].reshape((1, -1) + (1,) * (y.ndim - 2))
    return y


def trunc_server(a: np.ndarray, shift: int, ring: Ring = RING64) -> np.ndarray:
    """Local truncation, server side: logical shift of a = v + s mod 2^l (see docs for the
    error law)."""
    return ring.shr(a, shift)


def trunc_client(c: np.ndarray, shift: int, ring: Ring = RING64) -> np.ndarray:
    """Local truncation, client side: c = −s becomes −(s >> shift) mod 2^l."""
    return ring.reduce(-ring.shr(-c, shift))


# --------------------------------------------------------------------------------------------
# Role states
# --------------------------------------------------------------------------------------------

@dataclass
class DealerState:
    plan: Plan
    batch: int
    client: Material
    server: Material
    stream: SeedStream                              # shared with the client through its seed
    masks: dict[int, np.ndarray | None] = field(default_factory=dict)


@dataclass
class ClientState:
    plan: Plan
    batch: int
    material: Material
    stream: SeedStream
    shares: dict[int, np.ndarray] = field(default_factory=dict)
    inbox: dict[str, np.ndarray] = field(default_factory=dict)     # masked weights from the server
    outbox: dict[str, np.ndarray] = field(default_factory=dict)    # offline messages to the server
    keep: dict[str, object] = field(default_factory=dict)          # online-phase values


@dataclass
class ServerState:
    plan: Plan
    batch: int
    material: Material
    weights: ServerWeights
    shares: dict[int, np.ndarray] = field(default_factory=dict)
    inbox: dict[str, np.ndarray] = field(default_factory=dict)
    outbox: dict[str, np.ndarray] = field(default_factory=dict)
    keep: dict[str, object] = field(default_factory=dict)


def shape_of(plan: Plan, tid: int, batch: int) -> tuple[int, ...]:
    return (batch,) + plan.tensor(tid).shape


def take_offline(inbox: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The client's offline message `key` (flat ring elements on the wire), checked: present,
    uint64, as many elements as `shape` holds; returned in that shape (a wrong size would
    otherwise broadcast into a silent wrong answer)."""
    if key not in inbox:
        raise ProtocolError(f"the client's offline messages lack item {key!r}")
    v = inbox.pop(key)
    n = int(np.prod(shape))
    if v.dtype != U64 or v.size != n:
        raise ProtocolError(f"offline item {key!r} from the client: expected {n} uint64 elements (shape "
                            f"{tuple(shape)}), received {v.size} of dtype {v.dtype}")
    return v.reshape(shape)


# --------------------------------------------------------------------------------------------
# Gate stages: open masked values, evaluate FSS keys, reshare outputs (shared by Activation
# sites and MaxPool levels)
# --------------------------------------------------------------------------------------------

def full_or(idx: np.ndarray, n: int):
    """idx as an index: slice(None) when it is every position 0..n−1 in order, so that the
    common all-exact layer reads and writes whole arrays instead of gathering copies."""
    return slice(None) if len(idx) == n and (n == 0 or (idx[0] == 0 and idx[-1] == n - 1)) else idx


class GateStage:
    """Opens n masked values to the client, evaluates one gate spec per index group, and
    gives the server the sum of both output shares (the value plus an output mask).

    specs: (spec, idx) per group, or (spec, idx, (c2, c1, c0)) for a `poly` group (its ring
    coefficients per element). A poly group's client key share is drawn from the client's seed
    (gates.poly_key); the server stores the rest, packed.

    Wire (online): server → client x̂ of the non-poly sites (ring elements) and, per poly group,
    x̂ >> s (gates.poly_opening: w − s bits each, packed), in the same flight; per gate, its own
    exchanges; client → server y0 (n ring elements). Offline: client → server c + r0 (n ring
    elements)."""

    def __init__(self, label: str, specs: list[tuple], n: int, ring: Ring) -> None:
        for spec, *_ in specs:
            if spec.input_bits > ring.bits:
                raise PlanError(f"{label}: a {spec.kind} gate reads {spec.input_bits} bits of its input, more "
                                f"than the {ring.bits}-bit ring holds")
        self.label, self.n, self.ring = label, n, ring
        # Keys for the plan's ring: their ring words take ceil(l/8) bytes, outputs are right mod 2^l.
        self.specs = [(dataclasses.replace(e[0], ring=ring.bits), full_or(np.asarray(e[1]), n), *e[2:]) for e in specs]
        # Positions whose whole x̂ is opened (every gate but poly), and each poly group's narrow ring.
        opened = np.ones(n, bool)
        for spec, idx, *_ in self.specs:
            if spec.kind == "poly":
                opened[idx] = False
        self.full_pos = full_or(np.flatnonzero(opened), n)
        self.n_full = int(opened.sum())
        self.narrow = {gi: Ring(gates.poly_opening_bits(spec)) for gi, (spec, *_) in enumerate(self.specs)
                       if spec.kind == "poly"}

    def _count(self, gi: int) -> int:
        idx = self.specs[gi][1]
        return self.n if isinstance(idx, slice) else len(idx)

    def _key(self, gi: int) -> str:
        return f"{self.label}/key{gi}"

    def deal(self, d: DealerState, s_out: np.ndarray) -> None:
        if not self.n:
            return
        r = rand_u64(self.n)                                   # gate input masks: dealer only
        r0 = d.stream.draw(f"{self.label}/r0", self.n)         # the client's part of the opening
        put_ring(d.server, f"{self.label}/r1", r - r0, self.ring)
        for gi, (spec, idx, *coeffs) in enumerate(self.specs):
            if spec.kind == "poly":
                key = gates.poly_key(spec, r[idx], s_out[idx], *coeffs[0])
                k0 = d.stream.draw(self._key(gi), key.size).reshape(key.shape)
                wide = gates.poly_ring(spec)
                d.server.put(self._key(gi), wide.pack(wide.sub(key, k0)))
                continue
            k0, k1 = gates.keygen(spec, r[idx], s_out[idx])
            d.client.put(self._key(gi), k0)
            d.server.put(self._key(gi), k1)

    def client_offline(self, cs: ClientState, c_in: np.ndarray) -> None:
        if not self.n:
            return
        cs.outbox[f"{self.label}/u"] = c_in + cs.stream.draw(f"{self.label}/r0", self.n)
        for gi, (spec, idx, *_) in enumerate(self.specs):
            if spec.kind == "poly":
                shape = (gates.poly_ring(spec).words, gates.POLY_KEY_WORDS, self._count(gi))
                cs.keep[self._key(gi)] = cs.stream.draw(self._key(gi), int(np.prod(shape))).reshape(shape)

    def server_offline(self, ss: ServerState) -> None:
        if not self.n:
            return
        u = take_offline(ss.inbox, f"{self.label}/u", (self.n,))
        ss.keep[f"{self.label}/o"] = u + take_ring(ss.material, f"{self.label}/r1", self.ring)

    def _evaluate(self, party: int, xhat: np.ndarray, polys: dict, key_of, chan) -> np.ndarray:
        """xhat: the opened x̂ (at the non-poly positions); polys: each poly group's opening."""
        y = np.empty_like(xhat)
        for gi, (spec, idx, *coeffs) in enumerate(self.specs):
            if spec.kind == "poly":
                c2 = coeffs[0][0] if party == 1 else None
                y[idx] = gates.poly_eval(spec, party, key_of(gi, True), polys[gi], c2)
            else:
                y[idx] = gates.evaluate(spec, party, key_of(gi, False), xhat[idx], chan)
        return y

    def server_online(self, ss: ServerState, chan, a_in: np.ndarray) -> np.ndarray:
        if not self.n:
            return a_in
        xhat = self.ring.reduce(a_in + ss.keep.pop(f"{self.label}/o"))   # both parties evaluate on this
        if self.n_full:
            ring_send(chan, self.ring, xhat[self.full_pos])
        polys = {}
        for gi, ring in self.narrow.items():
            spec, idx = self.specs[gi][:2]
            polys[gi] = gates.poly_opening(spec, xhat[idx])
            ring_send(chan, ring, polys[gi])

        def key_of(gi, poly):
            if poly:
                return gates.poly_ring(self.specs[gi][0]).unpack(ss.material.take(self._key(gi)),
                                                                 (gates.POLY_KEY_WORDS, self._count(gi)))
            return ss.material.take(self._key(gi))
        y = self._evaluate(1, xhat, polys, key_of, chan)
        y += ring_recv(chan, self.ring, xhat.shape)
        return y

    def client_online(self, cs: ClientState, chan) -> None:
        if not self.n:
            return
        if not self.narrow:
            xhat = ring_recv(chan, self.ring, (self.n,))
        else:
            xhat = np.zeros(self.n, U64)
            if self.n_full:
                xhat[self.full_pos] = ring_recv(chan, self.ring, (self.n_full,))
        polys = {gi: ring_recv(chan, ring, (self._count(gi),)) for gi, ring in self.narrow.items()}
        y = self._evaluate(0, xhat, polys, lambda gi, poly: cs.keep.pop(self._key(gi)) if poly
                           else cs.material.take(self._key(gi)), chan)
        ring_send(chan, self.ring, y)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

class Layer:
    """Default: a public linear op, computed locally by everyone on their own shares."""

    def __init__(self, plan: Plan, op: Op, batch: int) -> None:
        self.plan, self.op, self.batch, self.ring = plan, op, batch, plan.ring
        self.out_shape = plan.tensor(op.output).shape if op.output >= 0 else ()

    def deal(self, d: DealerState) -> None:
        ms = [d.masks.get(t) for t in self.op.inputs]
        d.masks[self.op.output] = None if any(m is None for m in ms) else public_op(self.op, ms, self.out_shape)

    def client_offline(self, cs: ClientState) -> None:
        cs.shares[self.op.output] = public_op(self.op, [cs.shares[t] for t in self.op.inputs], self.out_shape)

    def server_offline(self, ss: ServerState) -> None:
        pass

    def server_online(self, ss: ServerState, chan) -> None:
        ss.shares[self.op.output] = public_op(self.op, [ss.shares[t] for t in self.op.inputs], self.out_shape)

    def client_online(self, cs: ClientState, chan) -> None:
        pass


class InputLayer(Layer):
    """The client sends its encoded input plus a mask from its seed: v + s to the server."""

    def deal(self, d):
        d.masks[self.op.output] = d.stream.draw("input/s", self.batch * self.plan.tensor(self.op.output).size) \
            .reshape(shape_of(self.plan, self.op.output, self.batch))

    def client_offline(self, cs):
        s = cs.stream.draw("input/s", self.batch * self.plan.tensor(self.op.output).size)
        cs.keep["input/s"] = s.reshape(shape_of(self.plan, self.op.output, self.batch))
        cs.shares[self.op.output] = -cs.keep["input/s"]

    def server_online(self, ss, chan):
        ss.shares[self.op.output] = ring_recv(chan, self.ring, shape_of(self.plan, self.op.output, self.batch))

    def client_online(self, cs, chan):
        ring_send(chan, self.ring, cs.keep.pop("x") + cs.keep.pop("input/s"))


class OutputLayer(Layer):
    """The server sends its share; the client adds its own."""

    def deal(self, d):
        pass

    def client_offline(self, cs):
        pass

    def server_online(self, ss, chan):
        ring_send(chan, self.ring, ss.shares[self.op.inputs[0]])

    def client_online(self, cs, chan):
        tid = self.op.inputs[0]
        cs.keep["y"] = self.ring.reduce(ring_recv(chan, self.ring, shape_of(self.plan, tid, self.batch))
                                        + cs.shares[tid])


class LabelOutputLayer(Layer):
    """Label-only output: the client learns argmax(logits) and nothing else.

    Stage 1: DReLU of every pairwise difference l_i − l_j (i < j), one gate stage. Locally,
    count_i = #{j : l_i ≥ l_j} (with d_ji = 1 − d_ij). Stage 2: DReLU(2·count_i − 2C + 3) marks
    the class that beats all C − 1 others (count = C − 1). Locally, label = Σ_i i·e_i, and only
    that value is opened to the client. A exact tie between the two largest logits (equal ring
    values) is not resolved and yields an invalid label, reported as −1."""

    def __init__(self, plan, op, batch):
        super().__init__(plan, op, batch)
        self.classes = c = plan.tensor(op.inputs[0]).size
        self.ii, self.jj = np.triu_indices(c, 1)
        npairs = len(self.ii)
        # Logits satisfy |l| < 2^(l−2), so their differences fit the full l-bit DReLU.
        drelu = gates.GateSpec("drelu", bits=self.ring.bits)
        self.pairs = GateStage(f"{op.name}/pairs", [(drelu, np.arange(batch * npairs))], batch * npairs, self.ring)
        self.winner = GateStage(f"{op.name}/winner", [(drelu, np.arange(batch * c))], batch * c, self.ring)

    def _diffs(self, logits: np.ndarray) -> np.ndarray:
        logits = logits.reshape(self.batch, self.classes)
        return (logits[:, self.ii] - logits[:, self.jj]).reshape(-1)

    def _counts(self, d: np.ndarray, one: np.ndarray) -> np.ndarray:
        """count_i from shares of d_ij; `one` is this party's share of the constant 1."""
        d = d.reshape(self.batch, -1)
        counts = np.zeros((self.batch, self.classes), U64)
        for p, (i, j) in enumerate(zip(self.ii, self.jj)):
            counts[:, i] += d[:, p]
            counts[:, j] += one - d[:, p]
        return (U64(2) * counts).reshape(-1)

    def _const(self, value: int, server: bool) -> np.ndarray:
        return np.full(self.batch * self.classes, value % (1 << 64) if server else 0, U64)

    def deal(self, d):
        self.pairs.deal(d, d.stream.draw(f"{self.op.name}/pairs/s_out", self.pairs.n))
        self.winner.deal(d, d.stream.draw(f"{self.op.name}/winner/s_out", self.winner.n))

    def client_offline(self, cs):
        c_in = cs.shares[self.op.inputs[0]]
        self.pairs.client_offline(cs, self._diffs(c_in))
        d = -cs.stream.draw(f"{self.op.name}/pairs/s_out", self.pairs.n)
        x = self._counts(d, U64(0))                     # + (3 − 2C) is added by the server
        self.winner.client_offline(cs, x)
        e = -cs.stream.draw(f"{self.op.name}/winner/s_out", self.winner.n)
        cs.keep["label_share"] = (e.reshape(self.batch, self.classes) * np.arange(self.classes, dtype=U64)).sum(1)

    def server_offline(self, ss):
        self.pairs.server_offline(ss)
        self.winner.server_offline(ss)

    def server_online(self, ss, chan):
        d = self.pairs.server_online(ss, chan, self._diffs(ss.shares[self.op.inputs[0]]))
        x = self._counts(d, U64(1)) + U64((3 - 2 * self.classes) % (1 << 64))
        e = self.winner.server_online(ss, chan, x)
        ring_send(chan, self.ring, (e.reshape(self.batch, self.classes) * np.arange(self.classes, dtype=U64)).sum(1))

    def client_online(self, cs, chan):
        self.pairs.client_online(cs, chan)
        self.winner.client_online(cs, chan)
        label = self.ring.signed(ring_recv(chan, self.ring, (self.batch,)) + cs.keep.pop("label_share"))
        cs.keep["label"] = np.where((label >= 0) & (label < self.classes), label, -1)


class PrivateLinearLayer(Layer):
    """y = W·v + b with W the server's. Input MASKED (client share −s, s known to the dealer).

    Dealer: R (server, by seed), T = R(s) − σ (server), σ (client, by seed). Server → client
    offline: Ŵ = W + R. Client: c_out = Ŵ(c_in) + σ = −Ŵ(s) + σ. Server online:
    a_out = W(a_in) + T + b. Then a_out + c_out = W(a_in − s) + b = W v + b."""

    def deal(self, d):
        op = self.op
        s = d.masks.get(op.inputs[0])
        if s is None:
            raise PlanError(f"{op.name}: private linear op needs a MASKED input")
        seed = os.urandom(16)
        w_shape = op.weight_shape
        R = pi_native.Prg(seed).random_u64(int(np.prod(w_shape))).reshape(w_shape)
        out_n = self.batch * self.plan.tensor(op.output).size
        sigma = d.stream.draw(f"{op.name}/sigma", out_n).reshape(shape_of(self.plan, op.output, self.batch))
        d.server.put(f"{op.name}/R_seed", seed)
        put_ring(d.server, f"{op.name}/T", private_linear(op, s, R) - sigma, self.ring)
        d.masks[op.output] = None

    def server_offline(self, ss):
        op = self.op
        w = ss.weights.weights[op.name]
        if w.shape != tuple(op.weight_shape):
            raise PlanError(f"{op.name}: server weight has shape {w.shape}, plan says {op.weight_shape}")
        R = pi_native.Prg(bytes(ss.material.take(f"{op.name}/R_seed"))).random_u64(w.size).reshape(w.shape)
        ss.outbox[f"{op.name}/W_hat"] = w + R                  # reduced mod 2^l on the wire
        ss.keep[f"{op.name}/T"] = take_ring(ss.material, f"{op.name}/T", self.ring, shape_of(self.plan, op.output,
                                                                                              self.batch))

    def client_offline(self, cs):
        op = self.op
        w_hat = cs.inbox.pop(f"{op.name}/W_hat")
        if w_hat.size != int(np.prod(op.weight_shape)):
            raise PlanError(f"{op.name}: masked weight has {w_hat.size} elements, plan says {op.weight_shape}")
        w_hat = w_hat.reshape(op.weight_shape)
        out_n = self.batch * self.plan.tensor(op.output).size
        sigma = cs.stream.draw(f"{op.name}/sigma", out_n).reshape(shape_of(self.plan, op.output, self.batch))
        cs.shares[op.output] = private_linear(op, cs.shares[op.inputs[0]], w_hat) + sigma

    def server_online(self, ss, chan):
        ss.shares[self.op.output] = server_linear(self.op, ss, f"{self.op.name}/T")


class ToMaskedLayer(Layer):
    """SHARED → MASKED: the client sends c + s' offline; the server adds it."""

    def deal(self, d):
        n = self.batch * self.plan.tensor(self.op.output).size
        d.masks[self.op.output] = d.stream.draw(f"{self.op.name}/s", n).reshape(
            shape_of(self.plan, self.op.output, self.batch))

    def client_offline(self, cs):
        c = cs.shares[self.op.inputs[0]]
        s = cs.stream.draw(f"{self.op.name}/s", c.size).reshape(c.shape)
        cs.outbox[f"{self.op.name}/u"] = c + s
        cs.shares[self.op.output] = -s

    def server_offline(self, ss):
        ss.keep[f"{self.op.name}/u"] = take_offline(ss.inbox, f"{self.op.name}/u",
                                                     shape_of(self.plan, self.op.output, self.batch))

    def server_online(self, ss, chan):
        ss.shares[self.op.output] = ss.shares[self.op.inputs[0]] + ss.keep.pop(f"{self.op.name}/u")


class TruncateLayer(Layer):
    """Faithful truncation of a whole tensor with the FSS trunc gate (16-byte keys, one
    opening): no wrap-around failure, error at most one ulp. Output MASKED."""

    def __init__(self, plan, op: Truncate, batch):
        super().__init__(plan, op, batch)
        n = batch * plan.tensor(op.inputs[0]).size
        spec = gates.GateSpec("trunc", shift=op.shift, bits=self.ring.max_value_bits + 1)   # the full ring
        self.stage = GateStage(op.name, [(spec, np.arange(n))], n, self.ring)
        self.full_shape = shape_of(plan, op.output, batch)

    def _s_out(self, stream: SeedStream) -> np.ndarray:
        return stream.draw(f"{self.op.name}/s_out", self.stage.n)

    def deal(self, d):
        s_out = self._s_out(d.stream)
        self.stage.deal(d, s_out)
        d.masks[self.op.output] = s_out.reshape(self.full_shape)

    def client_offline(self, cs):
        self.stage.client_offline(cs, cs.shares[self.op.inputs[0]].reshape(-1))
        cs.shares[self.op.output] = (-self._s_out(cs.stream)).reshape(self.full_shape)

    def server_offline(self, ss):
        self.stage.server_offline(ss)

    def server_online(self, ss, chan):
        y = self.stage.server_online(ss, chan, ss.shares[self.op.inputs[0]].reshape(-1))
        ss.shares[self.op.output] = y.reshape(self.full_shape)

    def client_online(self, cs, chan):
        self.stage.client_online(cs, chan)


def poly_coefficients(plan: Plan, op: Activation, batch: int, idx: np.ndarray) -> tuple[np.ndarray, ...]:
    """Ring coefficients per polynomial site: C2 at scale f, C1 at 2f, C0 at 3f, so that with
    x at scale f every term of p(x) = c2·x² + c1·x + c0 lands at scale 3f. Encoded mod 2^64 (two's
    complement): the gate sign-extends them into its words mod 2^(l + d) (poly_out_shift)."""
    f = plan.fixed_point.frac_bits
    fp = FixedPoint(f, RING_BITS)
    shape = plan.tensor(op.inputs[0]).shape
    per_site_channel = np.repeat(np.arange(shape[0]), int(np.prod(shape[1:])))
    c = np.asarray(op.poly, dtype=np.float64)[np.tile(per_site_channel, batch)[idx]]
    return fp.encode(c[:, 2], scale=f), fp.encode(c[:, 1], scale=2 * f), fp.encode(c[:, 0], scale=3 * f)


def poly_out_shift(plan: Plan, op: Activation) -> int:
    """d of a layer's polynomial sites: from scale 3f to the layer's output scale
    (protocols.plan.poly_output_shift; 0 in plans that kept 3f)."""
    return 3 * plan.fixed_point.frac_bits - plan.tensor(op.output).scale


class ActivationLayer(Layer):
    """Per-site exact ReLU / Circa / polynomial / identity, fused with the truncation.

    One gate stage opens every non-identity site once: ReLU and Circa gates give their final
    value at scale f, polynomial sites p(x >> shift) at the layer's output scale 3f − d in the
    same round (the `poly` gate fuses the faithful truncation into the degree-2 evaluation and
    shifts its shares by d, gates.poly_share_out). Gate outputs are MASKED
    by masks the client derives from its seed; identity sites are rescaled locally and keep
    their state.
    """

    def __init__(self, plan, op: Activation, batch):
        super().__init__(plan, op, batch)
        size = plan.tensor(op.inputs[0]).size
        kinds = np.zeros(size, np.int8) if op.kinds is None else op.kinds.reshape(-1)
        kinds = np.tile(kinds, batch)
        total = len(kinds)
        gate_idx = np.flatnonzero(kinds != IDENTITY)
        kg = kinds[gate_idx]
        poly_pos, plain_pos = np.flatnonzero(kg == POLY), np.flatnonzero(kg != POLY)
        self.n_gates = len(gate_idx)
        # Positions in the layer (…_idx) and within the gate sites (…_pos); whole-array slices
        # where they cover everything.
        self.gate_idx = full_or(gate_idx, total)
        self.id_idx = np.flatnonzero(kinds == IDENTITY)
        self.poly_idx, self.poly_pos = gate_idx[poly_pos], poly_pos
        self.plain_idx, self.plain_pos = full_or(gate_idx[plain_pos], total), full_or(plain_pos, len(gate_idx))
        specs = []
        if (kg == RELU).any():
            specs.append((gates.GateSpec("relu", shift=op.shift, bits=op.value_bits), np.flatnonzero(kg == RELU)))
        if (kg == CIRCA).any():
            specs.append((gates.GateSpec("circa", shift=op.shift, k=op.circa_k, mode=op.circa_mode,
                                         bits=op.value_bits), np.flatnonzero(kg == CIRCA)))
        if len(poly_pos):
            specs.append((gates.GateSpec("poly", shift=op.shift, bits=op.value_bits, ring=plan.ring_bits,
                                         out_shift=poly_out_shift(plan, op)), poly_pos,
                          poly_coefficients(plan, op, batch, self.poly_idx)))
        self.stage = GateStage(op.name, specs, len(gate_idx), self.ring)
        self.full_shape = shape_of(plan, op.output, batch)
        f = plan.fixed_point.frac_bits
        s_in, s_out = plan.tensor(op.inputs[0]).scale, plan.tensor(op.output).scale
        self.gate_up = U64(1 << (s_out - f))              # ReLU/Circa outputs: scale f → s_out
        self.id_shift = s_in - s_out                      # identity sites: > 0 truncate, < 0 scale up

    def _s_out(self, stream: SeedStream) -> np.ndarray:
        return stream.draw(f"{self.op.name}/s_out", self.n_gates)

    def _rescale_id(self, x: np.ndarray, truncate) -> np.ndarray:
        if self.id_shift > 0:
            return truncate(x, self.id_shift, self.ring)
        return x * U64(1 << -self.id_shift)

    def _scale_plain(self, y: np.ndarray) -> np.ndarray:
        """ReLU/Circa values (and masks) from scale f to the output scale (poly sites are there)."""
        return y[self.plain_pos] if self.gate_up == 1 else y[self.plain_pos] * self.gate_up

    def deal(self, d):
        s_out = self._s_out(d.stream)
        self.stage.deal(d, s_out)
        if self.plan.tensor(self.op.output).state != MASKED:
            d.masks[self.op.output] = None
            return
        mask = np.empty(self.batch * self.plan.tensor(self.op.inputs[0]).size, U64)
        mask[self.plain_idx] = self._scale_plain(s_out)
        mask[self.poly_idx] = s_out[self.poly_pos]
        if len(self.id_idx):
            m_in = d.masks[self.op.inputs[0]].reshape(-1)[self.id_idx]
            mask[self.id_idx] = self._rescale_id(m_in, lambda s, k, ring: ring.shr(s, k))
        d.masks[self.op.output] = mask.reshape(self.full_shape)

    def client_offline(self, cs):
        c_in = cs.shares[self.op.inputs[0]].reshape(-1)
        self.stage.client_offline(cs, c_in[self.gate_idx])
        c_out = np.empty_like(c_in)
        s_out = self._s_out(cs.stream)
        c_out[self.plain_idx] = -self._scale_plain(s_out)
        c_out[self.poly_idx] = -s_out[self.poly_pos]
        c_out[self.id_idx] = self._rescale_id(c_in[self.id_idx], trunc_client)
        cs.shares[self.op.output] = c_out.reshape(self.full_shape)

    def server_offline(self, ss):
        self.stage.server_offline(ss)

    def server_online(self, ss, chan):
        a_in = ss.shares[self.op.inputs[0]].reshape(-1)
        y = self.stage.server_online(ss, chan, a_in[self.gate_idx])
        if isinstance(self.plain_idx, slice) and self.gate_up == 1:
            ss.shares[self.op.output] = y.reshape(self.full_shape)       # every site a ReLU/Circa gate
            return
        a_out = np.empty_like(a_in)
        a_out[self.plain_idx] = self._scale_plain(y)
        a_out[self.poly_idx] = y[self.poly_pos]
        a_out[self.id_idx] = self._rescale_id(a_in[self.id_idx], trunc_server)
        ss.shares[self.op.output] = a_out.reshape(self.full_shape)

    def client_online(self, cs, chan):
        self.stage.client_online(cs, chan)


class MaxPoolLayer(Layer):
    """Max over each window by a tree of max(a, b) = b + ReLU(a − b): one GateStage of exact
    ReLUs (no shift) per level, ceil(log2(kh·kw)) levels."""

    def __init__(self, plan, op: MaxPool, batch):
        super().__init__(plan, op, batch)
        self.windows = pool_windows(plan, op, batch)
        self.levels = []
        for level, pairs in enumerate(tree_pairs(len(self.windows))):
            n = pairs * self.windows.shape[1]
            spec = (gates.GateSpec("relu", shift=0, bits=op.value_bits), np.arange(n))
            self.levels.append((pairs, GateStage(f"{op.name}/L{level}", [spec], n, self.ring)))
        self.full_shape = shape_of(plan, op.output, batch)

    def _tree(self, x: np.ndarray, step) -> np.ndarray:
        """Runs the max tree on one party's view; `step(stage, diff, b)` returns that party's
        share of max(a, b) given its shares of a − b and b."""
        return max_tree(x, self.windows, self.levels, step).reshape(self.full_shape)

    def deal(self, d):
        m_in = d.masks.get(self.op.inputs[0])
        x = np.zeros(self.batch * self.plan.tensor(self.op.inputs[0]).size, U64) if m_in is None else m_in.reshape(-1)

        def step(stage, diff, b):
            s_out = d.stream.draw(f"{stage.label}/s_out", stage.n)
            stage.deal(d, s_out)
            return b + s_out          # the client's share of max(a, b) is c_b − s_out

        out = self._tree(x, step)
        d.masks[self.op.output] = None if m_in is None else out

    def client_offline(self, cs):
        def step(stage, diff, b):
            stage.client_offline(cs, diff)
            return b - cs.stream.draw(f"{stage.label}/s_out", stage.n)
        cs.shares[self.op.output] = self._tree(cs.shares[self.op.inputs[0]].reshape(-1), step)

    def server_offline(self, ss):
        for _, stage in self.levels:
            stage.server_offline(ss)

    def server_online(self, ss, chan):
        ss.shares[self.op.output] = self._tree(
            ss.shares[self.op.inputs[0]].reshape(-1), lambda stage, diff, b: b + stage.server_online(ss, chan, diff))

    def client_online(self, cs, chan):
        for _, stage in self.levels:
            stage.client_online(cs, chan)


LAYERS = op_layers.layer_table(input=InputLayer, output=OutputLayer, linear=PrivateLinearLayer, to_masked=ToMaskedLayer,
                               truncate=TruncateLayer, activation=ActivationLayer, max_pool=MaxPoolLayer, public=Layer)


def build_layers(plan: Plan, batch: int) -> list[Layer]:
    return op_layers.build_layers(plan, batch, LAYERS, LabelOutputLayer, "secure")
