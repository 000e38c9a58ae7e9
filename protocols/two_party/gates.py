"""Two-party gate groups: one garbled-circuit batch per (layer, circuit), both sides.

The server garbles with its share as the garbler's input, the client evaluates with its own
(labels by OT offline); the client re-shares every output with a fresh mask from its seed, so
its share of the output is known offline (docs/two_party.md). Also the per-bundle states both
sides carry through the layers (`ClientState`, `ServerState`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import pi_native
from protocols import garbled
from protocols.fixed_point import Ring
from protocols.garbled import GcSpec
from protocols.material import SeedStream
from protocols.plan import Plan
from protocols.transport.errors import ProtocolError
from protocols.two_party.wire import peer_fault, recv_buffer, recv_parcel, recv_ring, send_bytes, send_parcel, send_ring

U64 = np.uint64


def gc_spec(circuit: str, ring: Ring, *, shift: int = 0, bits: int | None = None, k: int = 0,
            mode: str | None = None, classes: int = 0) -> GcSpec:
    """The garbled circuit for a gate. Every circuit shifts faithfully inside (Circa: the
    product d·((x >> shift) + e), the dealer gate's semantics, docs/gc.md), so no gate output
    is truncated locally. `bits` bounds the inputs (|x| < 2^(bits − 1)): the circuit reads only
    the share bits below it."""
    bits = ring.bits if bits is None else min(int(bits), ring.bits)
    return GcSpec(circuit, ring.bits, k=k, mode=mode, shift=shift, bits=bits, classes=classes)


# --------------------------------------------------------------------------------------------
# Per-bundle states
# --------------------------------------------------------------------------------------------

@dataclass
class ClientState:
    """The client's side of one bundle. Offline: `shares` (its share of every tensor, dropped at
    the end) and `keep` (what the online phase needs); `seed` regenerates its masks."""
    plan: Plan
    batch: int
    seed: bytes
    ev: garbled.Evaluator
    he: object                                   # protocols.he.HEClient
    params: dict                                 # op name → he.LayerParams (for this batch)
    stream: SeedStream | None = None
    shares: dict[int, np.ndarray] = field(default_factory=dict)
    keep: dict[str, object] = field(default_factory=dict)
    mul: object = None                           # protocols.ot_mul side (plans with polynomial sites)


@dataclass
class ServerState:
    plan: Plan
    batch: int
    ga: garbled.Garbler
    he: object                                   # protocols.he.HEServer
    params: dict                                 # op name → he.LayerParams (for this batch)
    prepare: object                              # (params, layer) → he.PreparedLayer (cached)
    weights: object                              # ServerWeights (ring-reduced)
    shares: dict[int, np.ndarray] = field(default_factory=dict)
    keep: dict[str, object] = field(default_factory=dict)
    mul: object = None                           # protocols.ot_mul side (plans with polynomial sites)


def shape_of(plan: Plan, tid: int, batch: int) -> tuple[int, ...]:
    return (batch,) + plan.tensor(tid).shape


# --------------------------------------------------------------------------------------------
# Garbled-circuit gate groups: one batch per (layer, circuit), its output re-shared by the client
# --------------------------------------------------------------------------------------------

# The garbler's labels of a gate group may go in parts, the client evaluating one while the
# server makes and sends the next (on the other core). On this project's 2-core machine that
# did not pay: up to 8 parts of ~128 KiB made the embedded model's activation layers slower for
# both policies, exact 55.7 → 58.0 ms and all-Circa 23.4 → 26.9 (medians of 3 alternating
# profile runs at nice -10, load 2.9–4.3: every message costs both sides a frame, a TLS record
# and a wake-up, and the overlap gained nothing measurable), so one message is the default;
# `benchmarks/two_party_online_profile.py --max-label-parts N` measures it again elsewhere.
PART_BYTES = 1 << 17     # garbler labels per part, about
MAX_PARTS = 1


def label_parts(n: int, spec: GcSpec) -> int:
    """How many messages a batch's garbler labels go in online (both sides compute it): parts
    of about PART_BYTES, at most MAX_PARTS."""
    total = n * spec.info["n_garb"] * 16
    return len(garbled.part_bounds(n, min(MAX_PARTS, max(1, total // PART_BYTES)))) - 1


class GateGroup:
    """`n` instances of one circuit over the shares of an op's input (server: garbler input,
    client: evaluator input). Relu/trunc: the client's output z (z + r = g(x), the server keeps
    r) is re-shared as z + s_out → server, so the server holds g(x) + s_out and the client
    −s_out, drawn from its seed offline. Circa: the product d·((x >> shift) + e) in the same
    online round (docs/two_party.md, "Circa in one round"), re-shared the same way.

    Online: server → client the garbler's labels (Circa: a parcel of the labels and V − u), one
    message; client → server q = z + s_out (Circa: a parcel of f and w, with a shift v, and q),
    one message."""

    def __init__(self, label: str, circuit: str, n: int, ring: Ring, **spec_kw) -> None:
        self.label, self.circuit, self.n, self.ring = label, circuit, n, ring
        self.spec = gc_spec(circuit, ring, **spec_kw)
        self.parts = label_parts(n, self.spec)

    # -- offline
    def client_out(self, cs: ClientState) -> np.ndarray:
        """The client's output share: −s_out."""
        return self.ring.reduce(-cs.stream.draw(f"{self.label}/s_out", self.n))

    def client_send(self, cs: ClientState, c_in: np.ndarray, flight) -> None:
        """Queues the OT message for the client's input share (the evaluator's choice bits)."""
        eb, msg = cs.ev.offline(self.spec, self.ring.reduce(c_in))
        cs.keep[self.label] = eb
        flight.put(f"{self.label}/ot", msg)

    def server_reply(self, ss: ServerState, items: dict, flight) -> None:
        with peer_fault(f"{self.label}: OT message"):
            gb, (tables, rev) = ss.ga.offline(self.spec, self.n, items[f"{self.label}/ot"])
        ss.keep[self.label] = gb
        flight.put(f"{self.label}/tables", tables)
        if self.circuit == "circa":
            flight.put(f"{self.label}/rev", rev)

    def client_recv(self, cs: ClientState, items: dict) -> None:
        eb = cs.keep[self.label]
        rev = items.get(f"{self.label}/rev", b"")
        with peer_fault(f"{self.label}: garbled tables"):
            cs.ev.receive(eb, (items[f"{self.label}/tables"], rev))
        if self.circuit == "circa" and (eb.s0 is None or len(eb.s0) != self.n):
            raise ProtocolError(f"{self.label}: the product OT message does not cover {self.n} sites")

    def client_names(self) -> set[str]:
        return {f"{self.label}/ot"}

    def server_names(self) -> set[str]:
        return {f"{self.label}/tables"} | ({f"{self.label}/rev"} if self.circuit == "circa" else set())

    def stored_bytes(self, cs: ClientState) -> int:
        """What the client keeps for this group (garbled.EvaluatorBatch.stored_bytes): tables and
        decode bits, 1 bit per label OT (its choice), and for Circa the product's words, choice
        bits and the client's input share (R_c1 and the labels are recomputed from the OT seeds)."""
        parts = cs.keep[self.label].stored_bytes
        return parts["one_time"] + parts["share"]

    # -- online
    # Each side does what needs no message from the peer before it waits for one: the server
    # the parts of its share that need no reply (after sending its labels), the client its
    # re-sharing mask, its own input labels and Circa's R_c1 (Evaluator.prepare; while the server
    # computes the linear layer and its labels).
    # The server's labels go in `parts` messages of one flight (no extra round; one by default,
    # see MAX_PARTS); Circa's last part travels in a parcel with V − u.
    def server_send(self, ss: ServerState, a_in: np.ndarray, chan) -> None:
        gb = ss.keep[self.label]
        b = self.ring.reduce(a_in)
        parts = ss.ga.label_parts(gb, b, self.parts)
        for _ in range(self.parts - (self.circuit == "circa")):
            send_bytes(chan, next(parts))
        if self.circuit != "circa":
            return
        # V − u = (1 − 2ρ)·β − (R1 − R0) (β: the garbler's truncated share with a shift, else b;
        # u = R1 − R0 masks it, the client holds only R_c1), and of z_G = ρ·β + (f ? R1 : −R0) +
        # ρ·w + S_ρ (+ S'_ρt + ρ_t·v with a shift) all but the f, w, v terms: one native pass
        r0, r1 = gb.rot
        vu, base = pi_native.circa_server_send(b, gb.share, r0, r1, gb.s_rho, gb.s_rt, self.spec.bits,
                                               self.spec.shift, self.ring.bits)
        send_parcel(chan, next(parts), vu)
        ss.keep[f"{self.label}/z"] = (base, r0, r1, gb.share)
        gb.finished, gb.rot, gb.s_rho, gb.s_rt = True, None, None, None

    def client_online(self, cs: ClientState, stream: SeedStream, chan) -> None:
        """Receives this group's flight part, evaluates, returns nothing: queues the reply in
        cs.keep[label + '/reply'] for client_reply (all groups reply in one flight)."""
        with peer_fault(f"{self.label}: garbled tables"):           # (read first here)
            eb = cs.ev.prepare(cs.keep.pop(self.label))
        s_out = stream.draw(f"{self.label}/s_out", self.n)
        # the tables are freed after the reply is sent, while the client waits for the server
        # (freeing megabytes costs page unmapping: ~0.2 ms per MB here)
        cs.keep[f"{self.label}/spent"] = eb.tables
        for _ in range(self.parts - (self.circuit == "circa")):
            labels = recv_buffer(chan)                   # (the received array itself: no copy)
            with peer_fault(f"{self.label}: garbler labels"):
                cs.ev.evaluate_part(eb, labels)
        if self.circuit != "circa":
            with peer_fault(f"{self.label}: garbler labels"):
                out = cs.ev.outputs(eb)
            cs.keep[f"{self.label}/reply"] = (self.ring.reduce(out + s_out),)
            return
        labels, vu = recv_parcel(chan, 2, f"{self.label}: labels, V − u")   # (views: no copy)
        with peer_fault(f"{self.label}: garbler labels"):
            cs.ev.evaluate_part(eb, labels)
            out = cs.ev.outputs(eb)
        # f = e ⊕ c1, w = (1 − 2e)·α + S0 − S1 (with a shift v = (1 − 2e_t)·K + S'0 − S'1) and
        # q = z_E + s_out, z_E = e·α + e·(V − u) + (1 − 2f)·R_c1 − S0 (+ K·e_t − S'0): the
        # evaluator's share of the product (docs/two_party.md, "Circa"; α = eb.a), one native pass
        k = garbled.wrap_weight(self.spec) if self.spec.shift else U64(0)
        with peer_fault(f"{self.label}: V − u"):
            reply = pi_native.circa_client_reply(out, eb.c1, eb.a, eb.d_s, eb.d_t, eb.r_c1, eb.s0, eb.s0_t,
                                                 s_out, vu, int(k), self.ring.bits)
        eb.finished = True
        eb.c1 = eb.a = eb.d_s = eb.d_t = eb.r_c1 = eb.s0 = eb.s0_t = eb.p_rs = None
        cs.keep[f"{self.label}/reply"] = reply                            # (f packed, w(, v), q packed)

    def client_reply(self, cs: ClientState, chan) -> None:
        reply = cs.keep.pop(f"{self.label}/reply")
        if self.circuit != "circa":
            send_ring(chan, self.ring, reply[0])
        else:
            send_parcel(chan, *reply)                     # f; w(, v), q
        del cs.keep[f"{self.label}/spent"]

    def server_recv(self, ss: ServerState, chan) -> np.ndarray:
        """The server's share of g(x) + s_out."""
        gb = ss.keep.pop(self.label)
        if self.circuit != "circa":
            q = recv_ring(chan, self.ring, self.n, f"{self.label}: q")
            return self.ring.reduce(gb.share + q)
        base, r0, r1, share = ss.keep.pop(f"{self.label}/z")
        f, words = recv_parcel(chan, 2, f"{self.label}: f, words")
        with peer_fault(f"{self.label}: f, words"):      # checked there: sizes, padding, bits above l
            return pi_native.circa_server_share(f, words, base, r0, r1, share, self.ring.bits)
