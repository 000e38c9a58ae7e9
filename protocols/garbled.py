"""Dealer-free ReLUs over additive shares in Z_(2^l): garbled circuits + OT (docs/gc.md).

Two parties, no dealer: the **garbler** (the server) holds share b, the **evaluator** (the
client) holds share a, a + b = x mod 2^l, |x| < 2^(bits−1) (the circuits read only the low
`bits` bits of each share). Each side owns one object (`Garbler`, `Evaluator`); every step
returns the bytes/arrays to send to the other side, so a transport can carry them.
`connect()` runs the one-time OT setup (128 base OTs per direction) in-process.

Per batch (all values uint64, reduced mod 2^l; argmax: `classes` values per instance):
  offline   E: m1 = ev.offline(spec, a)             → G
            G: gb, m2 = ga.offline(spec, len(a), m1) → E (m2 = (tables, reverse-OT message))
            E: eb = ev.receive(m2)
  online    G: labels = ga.labels(gb, b)             → E
            E: out = ev.evaluate(eb, labels)
    relu:  out = z,  gb.share = r,  z + r = ReLU(x) >> shift mod 2^l  (one message)
    trunc: out = z,  gb.share = r,  z + r = x >> shift mod 2^l        (floor, exact)
    drelu: out = e,  gb.share = ρ,  e ⊕ ρ = [x ≥ 0]                  (one message)
    argmax: out = the first index of the maximum per instance (evaluator only; gb.share None)
    circa: out = (f, w) → G;  h, z_G = ga.finish(gb, f, w) → E;  z_E = ev.finish(eb, h);
           z_E + z_G = d·x mod 2^l, d the truncated sign test (two correlated OTs, docs/gc.md)
Everything is one-time: a batch's labels, its evaluation and its product step each run once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

import pi_native

CIRCUITS = ("relu", "drelu", "circa", "trunc", "argmax")
MODES = ("poszero", "negpass")


@dataclass(frozen=True)
class GcSpec:
    """One circuit over shares in Z_(2^l). `bits` (default l): the caller guarantees
    |x| < 2^(bits−1), and the circuit reads only share bits below `bits`. `shift`: relu and trunc
    output ⌊·/2^shift⌋. `k`, `mode`: Circa's sign test on bits k..bits−1. `classes`: argmax's C."""
    circuit: str
    l: int = 64
    k: int = 0
    mode: str | None = None
    shift: int = 0
    bits: int | None = None
    classes: int = 0

    def __post_init__(self) -> None:
        if self.circuit not in CIRCUITS:
            raise ValueError(f"circuit must be one of {CIRCUITS}, got {self.circuit!r}")
        if self.circuit == "circa" and self.mode not in MODES:
            raise ValueError(f"circa needs mode in {MODES}, got {self.mode!r}")
        for name in ("l", "k", "shift", "classes") + (("bits",) if self.bits is not None else ()):
            if not isinstance(getattr(self, name), (int, np.integer)) or isinstance(getattr(self, name), bool):
                raise TypeError(f"GcSpec.{name} must be an int, got {getattr(self, name)!r}")
        if self.bits is None:
            object.__setattr__(self, "bits", self.l)
        object.__setattr__(self, "_info", pi_native.gc_circuit(*self._args()))   # validates (ValueError)

    def _args(self) -> tuple:
        return (self.circuit, int(self.l), int(self.k), self.mode, int(self.bits), int(self.shift), int(self.classes))

    @property
    def info(self) -> dict:
        return dict(self._info)

    @property
    def values(self) -> int:
        """Share values per instance (argmax: classes, else 1)."""
        return self._info["values"]

    @property
    def mask(self) -> np.uint64:
        return np.uint64((1 << self.l) - 1) if self.l < 64 else np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def _shares(values, spec: GcSpec, name: str) -> np.ndarray:
    v = np.asarray(values)
    if v.dtype != np.uint64 or v.ndim != 1:
        raise TypeError(f"{name} must be a 1-D numpy uint64 array of shares mod 2^{spec.l}, got {v.dtype} {v.shape}")
    if spec.l < 64 and v.size and int(v.max()) >> spec.l:
        raise ValueError(f"{name} must be reduced mod 2^{spec.l}")
    if name in ("a", "b") and v.size % spec.values:
        raise ValueError(f"{name} has {v.size} values, not a multiple of classes = {spec.values} "
                         "(argmax takes the classes of each instance in a row)")
    return np.ascontiguousarray(v)


def share_bits(a: np.ndarray, spec: GcSpec) -> np.ndarray:
    """The evaluator's input bits, value-major (instance, then class for argmax): bit w of value
    i is bit (input_shift + w) of a_i."""
    info = spec.info
    pos = np.arange(info["value_bits"], dtype=np.uint64) + np.uint64(info["input_shift"])
    return ((a[:, None] >> pos) & np.uint64(1)).astype(np.uint8).ravel()


def connect() -> tuple["Garbler", "Evaluator"]:
    """One OT session per direction (garbler → evaluator labels and product OT, and the reverse)."""
    ga, ev = Garbler(), Evaluator()
    ev.ot.base_finish(ga.ot.base_reply(ev.ot.base_message()))
    ga.rev.base_finish(ev.rev.base_reply(ga.rev.base_message()))
    return ga, ev


@dataclass
class GarblerBatch:
    spec: GcSpec
    count: int
    batch: object                       # pi_native.GarbledBatch (secret)
    rot: tuple | None = None            # circa: (R0, R1) of the product OT it sends
    s_rho: np.ndarray | None = None     # circa: S_ρ of the reverse product OT
    b: np.ndarray | None = None
    finished: bool = False

    @property
    def share(self) -> np.ndarray | None:
        """relu/trunc: r; drelu/circa: ρ (before the product); argmax: None."""
        return self.batch.output_share


@dataclass
class EvaluatorBatch:
    spec: GcSpec
    a: np.ndarray
    c1: np.ndarray | None = None        # circa: choice bits and messages of the product OT
    r_c1: np.ndarray | None = None
    tables: bytes | None = None
    s01: tuple | None = None            # circa: (S0, S1) of the reverse product OT
    e: np.ndarray | None = None
    finished: bool = False
    stored: dict = field(default_factory=dict)

    @property
    def instances(self) -> int:
        return self.a.size // self.spec.values


class Garbler:
    def __init__(self) -> None:
        self.ot = pi_native.IknpSender()      # labels (Δ = the garbling offset) and product OT 1
        self.rev = pi_native.IknpReceiver()   # product OT 2 (the evaluator sends)
        self._gc = pi_native.Garbler(self.ot)

    def offline(self, spec: GcSpec, count: int, message: bytes) -> tuple[GarblerBatch, tuple]:
        n_ot = count * spec.info["n_eval"] + (count if spec.circuit == "circa" else 0)
        self.ot.extend(message, n_ot)
        rot = self.ot.random_ot(count, spec.l) if spec.circuit == "circa" else None
        c, l, k, mode, bits, shift, classes = spec._args()
        batch = self._gc.garble(c, l, count, k, mode, bits, shift, classes)
        gb = GarblerBatch(spec, count, batch, rot)
        rev_msg = b""
        if spec.circuit == "circa":
            rev_msg = self.rev.extend(batch.output_share)       # choice bits ρ
            _, gb.s_rho = self.rev.random_ot(count, spec.l)
        return gb, (batch.tables, rev_msg)

    def labels(self, gb: GarblerBatch, b) -> bytes:
        gb.b = _shares(b, gb.spec, "b")
        return gb.batch.encode(gb.b)

    def finish(self, gb: GarblerBatch, f, w) -> tuple[np.ndarray, np.ndarray]:
        """Circa's product step: returns (h for the evaluator, the garbler's output share)."""
        if gb.spec.circuit != "circa":
            raise ValueError("finish() is Circa's product step; relu and drelu end at evaluate()")
        if gb.finished or gb.b is None:
            raise ValueError("product step already done for this batch, or labels() not called yet")
        f = np.asarray(f)
        w = _shares(w, gb.spec, "w")
        if f.dtype != np.uint8 or f.shape != (gb.count,) or (f.size and f.max() > 1):
            raise ValueError(f"f must be {gb.count} uint8 bits")
        m = gb.spec.mask
        r0, r1 = gb.rot
        rho = gb.share.astype(np.uint64)
        r_f = np.where(f == 1, r1, r0)
        r_nf = np.where(f == 1, r0, r1)
        b = gb.b
        # s1 = ρb + R_f makes the evaluator's message for e = 0 zero; only e = 1's is sent.
        s1 = rho * b + r_f
        h = ((np.uint64(1) - np.uint64(2) * rho) * b - r_f + r_nf) & m
        z = (s1 + gb.s_rho + rho * w) & m
        gb.finished, gb.rot, gb.s_rho = True, None, None
        return h, z


class Evaluator:
    def __init__(self) -> None:
        self.ot = pi_native.IknpReceiver()
        self.rev = pi_native.IknpSender()
        self._gc = pi_native.Evaluator(self.ot)

    def offline(self, spec: GcSpec, a) -> tuple[EvaluatorBatch, bytes]:
        a = _shares(a, spec, "a")
        eb = EvaluatorBatch(spec, a)
        bits = share_bits(a, spec)
        if spec.circuit == "circa":
            c1 = np.frombuffer(os.urandom(a.size), np.uint8) & np.uint8(1)   # random choice bits
            msg = self.ot.extend(np.concatenate([c1, bits]))
            eb.c1, eb.r_c1 = self.ot.random_ot(a.size, spec.l)   # product OT first, labels after
        else:
            msg = self.ot.extend(bits)
        return eb, msg

    def receive(self, eb: EvaluatorBatch, message: tuple) -> EvaluatorBatch:
        tables, rev_msg = message
        eb.tables = tables
        if eb.spec.circuit == "circa":
            self.rev.extend(rev_msg, eb.a.size)
            eb.s01 = self.rev.random_ot(eb.a.size, eb.spec.l)
        return eb

    def evaluate(self, eb: EvaluatorBatch, labels: bytes):
        if eb.tables is None:
            raise ValueError("receive() the garbled tables first")
        out = self._gc.evaluate(eb.tables, labels)   # raises if this batch was evaluated already
        eb.tables = None
        if eb.spec.circuit != "circa":
            return out
        eb.e = out
        s0, s1 = eb.s01
        m = eb.spec.mask
        f = out ^ eb.c1
        w = ((np.uint64(1) - np.uint64(2) * out.astype(np.uint64)) * eb.a + s0 - s1) & m
        return f, w

    def finish(self, eb: EvaluatorBatch, h) -> np.ndarray:
        if eb.spec.circuit != "circa" or eb.e is None or eb.finished:
            raise ValueError("finish() is Circa's last step, once, after evaluate()")
        h = _shares(h, eb.spec, "h")
        e = eb.e.astype(np.uint64)
        m_e = e * h - eb.r_c1
        z = (m_e - eb.s01[0] + e * eb.a) & eb.spec.mask
        eb.finished, eb.s01, eb.r_c1 = True, None, None
        return z


def run(ga: Garbler, ev: Evaluator, spec: GcSpec, a, b):
    """Both sides in one process (tests, benchmark). Returns (evaluator's output, garbler's output):
    relu/trunc (z, r), drelu (e, ρ), circa (z_E, z_G), argmax (index, None)."""
    eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, eb.instances, m1)
    ev.receive(eb, m2)
    out = ev.evaluate(eb, ga.labels(gb, b))
    if spec.circuit != "circa":
        return out, gb.share
    h, z_g = ga.finish(gb, *out)
    return ev.finish(eb, h), z_g


def stored_bytes(spec: GcSpec) -> dict:
    """What the evaluator keeps from the offline phase per ReLU (docs/gc.md, "Storage")."""
    info = spec.info
    tables = info["table_bytes"] + info["decode_bytes"]
    labels = 16 * info["n_eval"]
    product = (3 * ((spec.l + 7) // 8) + 1) if spec.circuit == "circa" else 0   # R_c1, S0, S1, c1
    return {"tables": tables, "labels": labels, "product": product,
            "with_labels": tables + labels + product, "seeded": tables + product}
