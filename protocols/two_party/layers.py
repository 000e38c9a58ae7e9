"""Two-party layers: what the client and the server do for every op of a plan, without a dealer.

Shares as in the dealer engine: the server holds `a`, the client `c`, a + c = v·2^scale mod 2^l,
and **the client's share of every tensor is known before the input exists**. Here it comes
from the client itself: its input mask, the decrypted HE replies of the linear layers, and the
fresh masks it draws to re-share every garbled-circuit output. So every correlation is made
offline, and online the server computes on its shares while the client only evaluates
garbled circuits.

Per op, the offline work happens in one round (the op's `ready` round: how many HE round trips
its input share waits for, docs/two_party.md):
  client_send    the client computes its shares and puts its messages into the round's flight
  server_reply   the server answers them (HE replies, garbled tables)
  client_recv    the client takes the answers (decrypts, keeps the tables)
Online, `server_online` / `client_online` in plan order.

The client derives every fresh mask from a 16-byte bundle seed (`SeedStream`) and derives it
again online, so what it stores per ReLU is the garbled tables and, for Circa, the product's
OT values (ClientBundle.stored_bytes counts them).
"""
from __future__ import annotations

import numpy as np

from protocols import op_layers
from protocols.he import LayerShape
from protocols.layers import public_op, server_linear, trunc_client, trunc_server
from protocols.material import SeedStream
from protocols.op_layers import max_tree, pool_windows, tree_pairs
from protocols.plan import CIRCA, IDENTITY, POLY, RELU, Activation, Linear, MaxPool, Op, Plan, ServerWeights, Truncate
from protocols.transport.errors import ProtocolError
from protocols.two_party.gates import ClientState, GateGroup, ServerState, gc_spec, shape_of
from protocols.two_party.poly import PolyGroup
from protocols.two_party.wire import peer_fault, recv_buffer, recv_ring, send_bytes, send_ring

U64 = np.uint64
MAX_PACKED_BATCH = 4096     # a packed Linear batch must fit one polynomial's spatial positions


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

class Layer:
    """Default: a public linear op, computed locally by each party on its own share.

    Offline, in round r the client first computes the output shares of the layers whose
    `out_round` is r (client_out), then sends the messages of the layers whose `ready` round
    is r (client_send); the server answers (server_reply) and the client takes the answers
    (client_recv; a private linear layer's output share comes from there)."""
    uses_input = True       # whether the client's output share needs its input share

    @property
    def garbles(self) -> bool:
        """Whether the layer has garbled-circuit batches (their OTs must follow plan order)."""
        return bool(self.groups())

    def __init__(self, plan: Plan, op: Op, batch: int) -> None:
        self.plan, self.op, self.batch, self.ring = plan, op, batch, plan.ring
        self.out_shape = plan.tensor(op.output).shape if op.output >= 0 else ()

    def out_depth(self, depth_in: int) -> int:
        """The offline round from which the client knows its output share."""
        return depth_in if self.uses_input else 0

    def groups(self) -> list[GateGroup]:
        return []

    def client_names(self) -> set[str]:
        return set().union(*(g.client_names() for g in self.groups()))

    def server_names(self) -> set[str]:
        return set().union(*(g.server_names() for g in self.groups()))

    def client_out(self, cs: ClientState) -> None:
        cs.shares[self.op.output] = self.ring.reduce(
            public_op(self.op, [cs.shares[t] for t in self.op.inputs], self.out_shape))

    def client_send(self, cs: ClientState, flight) -> None:
        pass

    def server_reply(self, ss: ServerState, items: dict, flight) -> None:
        for g in self.groups():
            g.server_reply(ss, items, flight)

    def client_recv(self, cs: ClientState, items: dict) -> None:
        for g in self.groups():
            g.client_recv(cs, items)

    def stored_bytes(self, cs: ClientState) -> int:
        return sum(g.stored_bytes(cs) for g in self.groups())

    def server_online(self, ss: ServerState, chan) -> None:
        ss.shares[self.op.output] = self.ring.reduce(
            public_op(self.op, [ss.shares[t] for t in self.op.inputs], self.out_shape))

    def client_online(self, cs: ClientState, stream: SeedStream, chan) -> None:
        pass


class PassLayer(Layer):
    """ToMasked: the client's share is already its own (known offline); nothing to do."""

    def client_out(self, cs):
        cs.shares[self.op.output] = cs.shares[self.op.inputs[0]]

    def server_online(self, ss, chan):
        ss.shares[self.op.output] = ss.shares[self.op.inputs[0]]


class InputLayer(Layer):
    """The client sends x + s online (s from its seed); its share is −s."""

    def _n(self) -> int:
        return self.batch * self.plan.tensor(self.op.output).size

    uses_input = False

    def client_out(self, cs):
        cs.shares[self.op.output] = self.ring.reduce(-cs.stream.draw("input/s", self._n())).reshape(
            shape_of(self.plan, self.op.output, self.batch))

    def server_online(self, ss, chan):
        ss.shares[self.op.output] = recv_ring(chan, self.ring, self._n(), "input").reshape(
            shape_of(self.plan, self.op.output, self.batch))

    def client_online(self, cs, stream, chan):
        send_ring(chan, self.ring, cs.keep.pop("x").reshape(-1) + stream.draw("input/s", self._n()))


class OutputLayer(Layer):
    """The server sends its share; the client adds its own (kept from offline)."""

    def client_out(self, cs):
        cs.keep["output/c"] = cs.shares[self.op.inputs[0]]

    def stored_bytes(self, cs):
        return cs.keep["output/c"].size * self.ring.elem_bytes

    def server_online(self, ss, chan):
        send_ring(chan, self.ring, ss.shares[self.op.inputs[0]])

    def client_online(self, cs, stream, chan):
        c = cs.keep.pop("output/c")
        cs.keep["y"] = self.ring.reduce(recv_ring(chan, self.ring, c.size, "output share").reshape(c.shape) + c)


class LabelOutputLayer(Layer):
    """Label-only output: one garbled argmax over each instance's logit shares; the client
    alone learns the index (the server nothing). Online: server → client labels, one flight."""

    def __init__(self, plan, op, batch):
        super().__init__(plan, op, batch)
        self.classes = plan.tensor(op.inputs[0]).size
        self.spec = gc_spec("argmax", self.ring, classes=self.classes)
        self.label = f"{op.name}/argmax"

    def client_out(self, cs):
        pass

    garbles = True

    def client_names(self):
        return {f"{self.label}/ot"}

    def server_names(self):
        return {f"{self.label}/tables"}

    def client_send(self, cs, flight):
        eb, msg = cs.ev.offline(self.spec, self.ring.reduce(cs.shares[self.op.inputs[0]].reshape(-1)))
        cs.keep[self.label] = eb
        flight.put(f"{self.label}/ot", msg)

    def server_reply(self, ss, items, flight):
        with peer_fault(f"{self.label}: OT message"):
            gb, (tables, _) = ss.ga.offline(self.spec, self.batch, items[f"{self.label}/ot"])
        ss.keep[self.label] = gb
        flight.put(f"{self.label}/tables", tables)

    def client_recv(self, cs, items):
        with peer_fault(f"{self.label}: garbled tables"):
            cs.ev.receive(cs.keep[self.label], (items[f"{self.label}/tables"], b""))

    def stored_bytes(self, cs):
        return cs.keep[self.label].stored_bytes["one_time"]

    def server_online(self, ss, chan):
        send_bytes(chan, ss.ga.labels(ss.keep.pop(self.label), self.ring.reduce(ss.shares[self.op.inputs[0]].reshape(-1))))

    def client_online(self, cs, stream, chan):
        labels = recv_buffer(chan)
        with peer_fault(f"{self.label}: garbler labels"):
            out = cs.ev.evaluate(cs.keep.pop(self.label), labels)
        cs.keep["label"] = np.asarray(out, dtype=np.int64).reshape(self.batch)


class PrivateLinearLayer(Layer):
    """y = W·v + b, W the server's. Offline (HE): the client sends Enc(c_in), the server replies
    Enc(W·c_in − σ) and keeps σ; the client's output share is W·c_in − σ. Online the server
    computes a_out = W·a_in + b + σ locally. Then a_out + c_out = W·(a_in + c_in) + b.

    A Linear layer on a batch of B > 1 is encoded as a 1×1 convolution over a (n_in, B, 1)
    image: the whole batch shares a few ciphertexts instead of B of them."""

    def __init__(self, plan, op, batch):
        super().__init__(plan, op, batch)
        self.packed = isinstance(op, Linear) and 1 < batch <= MAX_PACKED_BATCH
        if self.packed:
            n_out, n_in = op.weight_shape
            self.he_shape = LayerShape.conv2d((n_in, batch, 1), (n_out, n_in, 1, 1))
        else:
            self.he_shape = LayerShape.from_plan(plan, op)

    def to_he(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(self.batch, -1).T.reshape(1, -1, self.batch, 1) if self.packed else x

    def from_he(self, y: np.ndarray) -> np.ndarray:
        return y.reshape(-1, self.batch).T.reshape(shape_of(self.plan, self.op.output, self.batch)) \
            if self.packed else y

    def kernel(self, w: np.ndarray) -> np.ndarray:
        return w.reshape(w.shape + (1, 1)) if self.packed else w

    def out_depth(self, depth_in):
        return depth_in + 1

    def client_out(self, cs):
        pass                      # client_recv: the decrypted HE reply

    def client_names(self):
        return {f"{self.op.name}/query"}

    def server_names(self):
        return {f"{self.op.name}/reply"}

    def client_send(self, cs, flight):
        p = cs.params[self.op.name]
        flight.put(f"{self.op.name}/query", cs.he.encrypt(p, self.to_he(self.ring.reduce(cs.shares[self.op.inputs[0]]))))

    def server_reply(self, ss, items, flight):
        p = ss.params[self.op.name]
        with peer_fault(f"{self.op.name}: HE query"):
            reply, sigma = ss.he.respond(ss.prepare(p, self), items[f"{self.op.name}/query"])
        sigma = self.from_he(sigma)
        if sigma.shape != shape_of(self.plan, self.op.output, self.batch):
            raise ProtocolError(f"{self.op.name}: the HE query is for another batch size")
        ss.keep[f"{self.op.name}/sigma"] = sigma
        flight.put(f"{self.op.name}/reply", reply)

    def client_recv(self, cs, items):
        p = cs.params[self.op.name]
        with peer_fault(f"{self.op.name}: HE reply"):
            c = self.from_he(cs.he.decrypt(p, items[f"{self.op.name}/reply"]))
        cs.shares[self.op.output] = self.ring.reduce(c)

    def server_online(self, ss, chan):
        ss.shares[self.op.output] = self.ring.reduce(server_linear(self.op, ss, f"{self.op.name}/sigma"))


class TruncateLayer(Layer):
    """Faithful truncation by `shift` (the garbled trunc circuit), re-shared like a ReLU."""

    def __init__(self, plan, op: Truncate, batch):
        super().__init__(plan, op, batch)
        n = batch * plan.tensor(op.inputs[0]).size
        self.group = GateGroup(op.name, "trunc", n, self.ring, shift=op.shift)
        self.full_shape = shape_of(plan, op.output, batch)

    uses_input = False

    def groups(self):
        return [self.group]

    def client_out(self, cs):
        cs.shares[self.op.output] = self.group.client_out(cs).reshape(self.full_shape)

    def client_send(self, cs, flight):
        self.group.client_send(cs, cs.shares[self.op.inputs[0]].reshape(-1), flight)

    def server_online(self, ss, chan):
        self.group.server_send(ss, ss.shares[self.op.inputs[0]].reshape(-1), chan)
        ss.shares[self.op.output] = self.group.server_recv(ss, chan).reshape(self.full_shape)

    def client_online(self, cs, stream, chan):
        self.group.client_online(cs, stream, chan)
        self.group.client_reply(cs, chan)


class ActivationLayer(Layer):
    """Per-site exact ReLU / Circa / polynomial / identity.

    Exact sites: the garbled relu with the truncation by `shift` fused. Circa sites: the garbled
    truncated sign test, the product d·x and a local rescale. All gate groups of a layer share
    one online round: the server's labels in one flight, the client's replies in the next.
    Polynomial sites: one batch of OT products (two_party.poly), in the same flights.
    Identity sites are rescaled locally, as in the dealer engine."""

    def __init__(self, plan, op: Activation, batch):
        super().__init__(plan, op, batch)
        size = plan.tensor(op.inputs[0]).size
        kinds = np.zeros(size, np.int8) if op.kinds is None else op.kinds.reshape(-1)
        kinds = np.tile(kinds, batch)
        self.relu_idx = np.flatnonzero(kinds == RELU)
        self.circa_idx = np.flatnonzero(kinds == CIRCA)
        self.id_idx = np.flatnonzero(kinds == IDENTITY)
        self.gate_groups: list[tuple[GateGroup, np.ndarray]] = []
        if len(self.relu_idx):
            self.gate_groups.append((GateGroup(f"{op.name}/relu", "relu", len(self.relu_idx), self.ring,
                                               shift=op.shift, bits=op.value_bits), self.relu_idx))
        if len(self.circa_idx):
            self.gate_groups.append((GateGroup(f"{op.name}/circa", "circa", len(self.circa_idx), self.ring,
                                               shift=op.shift, bits=op.gate_bits(), k=op.circa_k,
                                               mode=op.circa_mode), self.circa_idx))
        poly_idx = np.flatnonzero(kinds == POLY)
        if len(poly_idx):
            self.gate_groups.append((PolyGroup(f"{op.name}/poly", plan, op, batch, poly_idx), poly_idx))
        if len(self.gate_groups) == 1 and len(self.gate_groups[0][1]) == len(kinds):
            self.gate_groups = [(self.gate_groups[0][0], slice(None))]    # one group, every site: no gather
        self.full_shape = shape_of(plan, op.output, batch)
        f = plan.fixed_point.frac_bits
        s_in, s_out = plan.tensor(op.inputs[0]).scale, plan.tensor(op.output).scale
        self.gate_up = U64(1 << (s_out - f))
        self.id_shift = s_in - s_out

        self.uses_input = bool(len(self.id_idx))

    def groups(self):
        return [g for g, _ in self.gate_groups]

    def _up(self, g):
        """ReLU/Circa outputs go from scale f to the output scale; polynomial sites are there."""
        return U64(1) if isinstance(g, PolyGroup) else self.gate_up

    def _rescale_id(self, x, truncate):
        if self.id_shift > 0:
            return truncate(x, self.id_shift, self.ring)
        return x * U64(1 << -self.id_shift)

    def client_out(self, cs):
        c_out = np.empty(int(np.prod(self.full_shape)), U64)
        for g, idx in self.gate_groups:
            c_out[idx] = g.client_out(cs) * self._up(g)
        if len(self.id_idx):
            c_in = cs.shares[self.op.inputs[0]].reshape(-1)
            c_out[self.id_idx] = self._rescale_id(c_in[self.id_idx], trunc_client)
        cs.shares[self.op.output] = self.ring.reduce(c_out).reshape(self.full_shape)

    def client_send(self, cs, flight):
        c_in = cs.shares[self.op.inputs[0]].reshape(-1)
        for g, idx in self.gate_groups:
            g.client_send(cs, c_in[idx], flight)

    def server_online(self, ss, chan):
        a_in = ss.shares[self.op.inputs[0]].reshape(-1)
        for g, idx in self.gate_groups:
            g.server_send(ss, a_in[idx], chan)
        a_out = np.empty_like(a_in)
        for g, idx in self.gate_groups:
            a_out[idx] = g.server_recv(ss, chan) * self._up(g)
        if len(self.id_idx):
            a_out[self.id_idx] = self._rescale_id(a_in[self.id_idx], trunc_server)
        ss.shares[self.op.output] = self.ring.reduce(a_out).reshape(self.full_shape)

    def client_online(self, cs, stream, chan):
        for g, _ in self.gate_groups:
            g.client_online(cs, stream, chan)
        for g, _ in self.gate_groups:
            g.client_reply(cs, chan)


class MaxPoolLayer(Layer):
    """Max over each window by a tree of max(a, b) = b + ReLU(a − b): one garbled relu batch
    (no shift) per level, ceil(log2(kh·kw)) online rounds. The client's share of every level's
    output is c_b − s_out, known offline, so all levels are garbled in the same offline round."""

    def __init__(self, plan, op: MaxPool, batch):
        super().__init__(plan, op, batch)
        self.windows = pool_windows(plan, op, batch)
        # a − b of two values below 2^(value_bits − 1) needs one bit more
        bits = min(op.value_bits + 1, self.ring.bits)
        self.levels: list[tuple[int, GateGroup]] = [
            (pairs, GateGroup(f"{op.name}/L{level}", "relu", pairs * self.windows.shape[1], self.ring, shift=0, bits=bits))
            for level, pairs in enumerate(tree_pairs(len(self.windows)))]
        self.full_shape = shape_of(plan, op.output, batch)

    def groups(self):
        return [g for _, g in self.levels]

    def _tree(self, x, step):
        return max_tree(x, self.windows, self.levels,
                        lambda g, diff, b: self.ring.reduce(step(g, diff, b))).reshape(self.full_shape)

    def client_out(self, cs):
        def step(g, diff, b):
            cs.keep[f"{g.label}/diff"] = diff
            return b + g.client_out(cs)
        cs.shares[self.op.output] = self._tree(cs.shares[self.op.inputs[0]].reshape(-1), step)

    def client_send(self, cs, flight):
        for _, g in self.levels:
            g.client_send(cs, cs.keep.pop(f"{g.label}/diff"), flight)

    def server_online(self, ss, chan):
        def step(g, diff, b):
            g.server_send(ss, diff, chan)
            return b + g.server_recv(ss, chan)
        ss.shares[self.op.output] = self._tree(ss.shares[self.op.inputs[0]].reshape(-1), step)

    def client_online(self, cs, stream, chan):
        for _, g in self.levels:
            g.client_online(cs, stream, chan)
            g.client_reply(cs, chan)


LAYERS = op_layers.layer_table(input=InputLayer, output=OutputLayer, linear=PrivateLinearLayer, to_masked=PassLayer,
                               truncate=TruncateLayer, activation=ActivationLayer, max_pool=MaxPoolLayer, public=Layer)


def build_layers(plan: Plan, batch: int) -> list[Layer]:
    return op_layers.build_layers(plan, batch, LAYERS, LabelOutputLayer, "two-party")


def schedule(layers: list[Layer]) -> list[tuple[int, int]]:
    """(send round, out round) per layer, the offline rounds in which the client sends the
    layer's messages and computes its output share.

    A tensor's client share is known from round d, d = the number of HE round trips it waits
    for (0 for the input and every fresh garbled output, + 1 per private linear op). A linear
    layer sends its HE query as soon as its input share is known. Every garbled batch goes in
    one round, the first in which all of them can: the OT extension hands out its correlations
    in order, and the batches are evaluated online in plan order. A layer computes its output
    share in the round its input share is known, or in round 0 if it is a fresh mask."""
    depth: dict[int, int] = {}
    ready = []
    for layer in layers:
        d = max((depth[t] for t in layer.op.inputs), default=0)
        ready.append(d)
        if layer.op.output >= 0:
            depth[layer.op.output] = layer.out_depth(d)
    garbled_round = max((d for layer, d in zip(layers, ready) if layer.garbles), default=0)
    return [(garbled_round if layer.garbles else d, d if layer.uses_input else 0)
            for layer, d in zip(layers, ready)]


def ring_weights(plan: Plan, weights: ServerWeights) -> ServerWeights:
    """The server's weights and biases reduced mod 2^l (the HE kernels need reduced values)."""
    r = plan.ring
    return ServerWeights({k: r.reduce(v) for k, v in weights.weights.items()},
                         {k: r.reduce(v) for k, v in weights.biases.items()})


def weight_bits(plan: Plan, w: np.ndarray) -> int:
    """The public bound the HE parameters are chosen for: bit length of the largest |weight|."""
    m = int(np.abs(plan.ring.signed(plan.ring.reduce(w))).max()) if w.size else 0
    return max(1, m.bit_length())

