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
           z_E + z_G = d·x mod 2^l, d the truncated sign test (two correlated OTs, docs/gc.md);
           with a shift s: out = (f, w, v), z_E + z_G = d·((x >> s) + e), e the rounding bit
           (P(e = 1) = (x mod 2^s)/2^s), d and e with the dealer gate's laws (a third OT)
Everything is one-time: a batch's labels, its evaluation and its product step each run once.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np

import pi_native

CIRCUITS = ("relu", "drelu", "circa", "trunc", "argmax")
MODES = ("poszero", "negpass")


@dataclass(frozen=True)
class GcSpec:
    """One circuit over shares in Z_(2^l). `bits` (default l): the caller guarantees
    |x| < 2^(bits−1), and the circuit reads only share bits below `bits`. `shift`: relu and trunc
    output ⌊·/2^shift⌋, circa d·(⌊x/2^shift⌋ + e) (e the dealer's rounding bit). `k`, `mode`:
    Circa's sign test on bits k..bits−1. `classes`: argmax's C."""
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


def circa_values(spec: GcSpec, v: np.ndarray, garbler: bool) -> np.ndarray:
    """What Circa's product multiplies by d: the shares (shift 0), else the truncated shares
    α = (a mod 2^n) >> s and β = ((b + 2^(n−1) − 1) mod 2^n) >> s − 2^(n−1−s) + 1 (docs/gc.md,
    "Circa with a shift"): α + β − 2^(n−s)·w = (x >> s) + e, w the wrap the circuit outputs."""
    if not spec.shift:
        return v
    n, s = spec.bits, spec.shift
    low = np.uint64((1 << n) - 1) if n < 64 else np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    if not garbler:
        return (v & low) >> np.uint64(s)
    off = np.uint64((1 << (n - 1)) - 1)
    return ((((v + off) & low) >> np.uint64(s)) - np.uint64(1 << (n - 1 - s)) + np.uint64(1)) & spec.mask


def wrap_weight(spec: GcSpec) -> np.uint64:
    """K = −2^(n−s) mod 2^l: the weight of d ∧ w in Circa's output with a shift."""
    return np.uint64(((1 << spec.l) - (1 << (spec.bits - spec.shift))) % (1 << spec.l))


def share_bits(a: np.ndarray, spec: GcSpec) -> np.ndarray:
    """The evaluator's input bits, value-major (instance, then class for argmax): bit w of value
    i is bit (input_shift + w) of a_i."""
    info = spec.info
    pos = np.arange(info["value_bits"], dtype=np.uint64) + np.uint64(info["input_shift"])
    return ((a[:, None] >> pos) & np.uint64(1)).astype(np.uint8).ravel()


def part_bounds(count: int, parts: int) -> list[int]:
    """Instance bounds of `parts` near-equal parts of a batch (at least one instance each, one
    part for an empty batch): both sides compute them from the count."""
    parts = max(1, min(int(parts), count))
    return [count * i // parts for i in range(parts + 1)]


def connect() -> tuple[Garbler, Evaluator]:
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
    s_rt: np.ndarray | None = None      # circa with a shift: S'_ρt of the third OT
    b: np.ndarray | None = None
    finished: bool = False

    @property
    def share(self) -> np.ndarray | None:
        """relu/trunc: r; drelu/circa: ρ (before the product; circa with a shift: (ρ, ρ_t) as
        (count, 2)); argmax: None."""
        return self.batch.output_share


@dataclass
class EvaluatorBatch:
    """What the evaluator keeps between the offline and the online phase (docs/gc.md, "What the
    evaluator stores"): the tables, Circa's reverse-OT words (S0 − S1 and S0, with a shift also
    S'0 − S'1 and S'0) and packed choice bits c1, and Circa's share `a` (needed online by the
    product). Its input labels and Circa's R_c1 are not here: the IKNP receiver recomputes them
    from its seeds when evaluate() reaches them, keeping 1 bit per OT (its choice) until then."""
    spec: GcSpec
    instances: int
    a: np.ndarray | None = None         # circa only (the product uses it online)
    c1: np.ndarray | None = None        # circa: product OT 1's random choice bits, packed
    tables: bytes | None = None
    d_s: np.ndarray | None = None       # circa: S0 − S1 (reverse product OT)
    d_t: np.ndarray | None = None       # circa with a shift: S'0 − S'1 (third OT)
    s0: np.ndarray | None = None        # circa: S0 (reverse product OT)
    s0_t: np.ndarray | None = None      # circa with a shift: S'0 (third OT)
    p_rs: np.ndarray | None = None      # circa: R_c1 + S0 (+ S'0 with a shift), from evaluate()
    r_c1: np.ndarray | None = None      # circa: R_c1, taken from the OT in evaluate()
    e: np.ndarray | None = None
    e_t: np.ndarray | None = None
    own: object = None                  # its own input labels from prepare() (online, until evaluate)
    finished: bool = False

    @property
    def stored_bytes(self) -> dict:
        """Bytes this batch holds now, by part; `one_time` is what the offline phase left (all
        but `share`, the linear layer's share that Circa keeps for the product)."""
        spec = self.spec
        labels_ots = self.instances * spec.info["n_eval"]
        words = sum(v.nbytes for v in (self.d_s, self.d_t, self.s0, self.s0_t, self.p_rs, self.r_c1) if v is not None)
        parts = {"tables": len(self.tables or b""),
                 "choice_bits": (labels_ots + self.instances * (spec.circuit == "circa") + 7) // 8  # + c1's OT
                 if self.tables is not None else 0,
                 "product": words + (0 if self.c1 is None else self.c1.nbytes),
                 "share": 0 if self.a is None else self.a.nbytes}
        parts["one_time"] = parts["tables"] + parts["choice_bits"] + parts["product"]
        return parts


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
            rho = batch.output_share                             # (ρ) or (ρ, ρ_t) per instance
            rev_msg = self.rev.extend(rho.ravel())               # choice bits
            _, sel = self.rev.random_ot(rho.size, spec.l)
            gb.s_rho, gb.s_rt = (sel, None) if rho.ndim == 1 else (sel[0::2], sel[1::2])
        tables = batch.tables
        batch.release_tables()          # the caller sends them; freeing them online cost exact ReLUs ~7 ms
        return gb, (tables, rev_msg)

    def labels(self, gb: GarblerBatch, b) -> bytes:
        return next(self.label_parts(gb, b, 1))

    def label_parts(self, gb: GarblerBatch, b, parts: int):
        """The garbler's labels in `parts` messages, instances split by `part_bounds`, each made
        when the caller asks for it: the evaluator evaluates a part while the next is made and
        sent (Evaluator.evaluate_part)."""
        gb.b = _shares(b, gb.spec, "b")
        if gb.b.size != gb.count * gb.spec.values:
            raise ValueError(f"b has {gb.b.size} entries, the batch has {gb.count * gb.spec.values}")
        bounds = part_bounds(gb.count, parts)
        for lo, hi in itertools.pairwise(bounds):
            yield self.label_part(gb, lo, hi)

    def label_part(self, gb: GarblerBatch, lo: int, hi: int) -> bytes:
        """The labels of instances lo .. hi − 1 (after those before lo)."""
        nv = gb.spec.values
        return gb.batch.encode(gb.b[lo * nv:hi * nv], lo)

    def finish(self, gb: GarblerBatch, f, w, v=None) -> tuple[np.ndarray, np.ndarray]:
        """Circa's product step: returns (h for the evaluator, the garbler's output share)."""
        if gb.spec.circuit != "circa":
            raise ValueError("finish() is Circa's product step; relu and drelu end at evaluate()")
        if gb.finished or gb.b is None:
            raise ValueError("product step already done for this batch, or labels() not called yet")
        if (v is None) != (not gb.spec.shift):
            raise ValueError("finish() takes (f, w, v) for Circa with a shift, (f, w) without")
        f = np.asarray(f)
        w = _shares(w, gb.spec, "w")
        if w.size != gb.count:
            raise ValueError(f"w must have {gb.count} entries")
        if f.dtype != np.uint8 or f.shape != (gb.count,) or (f.size and f.max() > 1):
            raise ValueError(f"f must be {gb.count} uint8 bits")
        m = gb.spec.mask
        r0, r1 = gb.rot
        share = gb.share.astype(np.uint64)
        rho = share if share.ndim == 1 else share[:, 0]
        r_f = np.where(f == 1, r1, r0)
        r_nf = np.where(f == 1, r0, r1)
        b = circa_values(gb.spec, gb.b, garbler=True)
        # s1 = ρb + R_f makes the evaluator's message for e = 0 zero; only e = 1's is sent.
        s1 = rho * b + r_f
        h = ((np.uint64(1) - np.uint64(2) * rho) * b - r_f + r_nf) & m
        z = s1 + gb.s_rho + rho * w
        if gb.spec.shift:             # + the garbler's share of K·(d ∧ w) (third OT, choice ρ_t)
            v = _shares(v, gb.spec, "v")
            if v.size != gb.count:
                raise ValueError(f"v must have {gb.count} entries")
            z = z + gb.s_rt + share[:, 1] * v
        gb.finished, gb.rot, gb.s_rho, gb.s_rt = True, None, None, None
        return h, z & m


class Evaluator:
    def __init__(self) -> None:
        self.ot = pi_native.IknpReceiver()
        self.rev = pi_native.IknpSender()
        self._gc = pi_native.Evaluator(self.ot)

    def offline(self, spec: GcSpec, a) -> tuple[EvaluatorBatch, bytes]:
        a = _shares(a, spec, "a")
        eb = EvaluatorBatch(spec, a.size // spec.values)
        bits = share_bits(a, spec)
        if spec.circuit == "circa":
            c1 = np.frombuffer(os.urandom(a.size), np.uint8) & np.uint8(1)   # random choice bits
            # product OT first, labels after; its R_c1 is taken in evaluate(), when the receiver's
            # cursor reaches it (taking it now would skip the labels of batches still pending)
            msg = self.ot.extend(np.concatenate([c1, bits]))
            eb.a, eb.c1 = circa_values(spec, a, garbler=False), np.packbits(c1)
        else:
            msg = self.ot.extend(bits)
        return eb, msg

    def receive(self, eb: EvaluatorBatch, message: tuple) -> EvaluatorBatch:
        if eb.e is not None or eb.finished:
            raise ValueError("this batch was already evaluated (one-time)")
        tables, rev_msg = message
        eb.tables = tables
        if eb.spec.circuit == "circa":
            if eb.d_s is not None:
                raise ValueError("this batch's tables were already received (one-time)")
            per = 2 if eb.spec.shift else 1
            self.rev.extend(rev_msg, per * eb.instances)
            s0, s1 = self.rev.random_ot(per * eb.instances, eb.spec.l)
            m = eb.spec.mask
            if per == 2:     # interleaved: the OT for ρ, then the one for ρ_t
                eb.d_t = (s0[1::2] - s1[1::2]) & m
                eb.s0_t = s0[1::2]
                s0, s1 = s0[0::2], s1[0::2]
            eb.d_s, eb.s0 = (s0 - s1) & m, s0      # all the product needs later (with R_c1)
        return eb

    def prepare(self, eb: EvaluatorBatch) -> EvaluatorBatch:
        """Everything of the evaluation that needs no garbler message: Circa's R_c1 and the
        evaluator's own input labels, both taken from the OT (recomputed from its seeds). The
        online phase calls it before waiting for the garbler's labels; call it when the
        receiver's cursor reaches this batch (the batches before it prepared or evaluated), as
        evaluate() does if it was not called."""
        if eb.tables is None:
            raise ValueError("receive() the garbled tables first")
        if eb.spec.circuit == "circa" and eb.p_rs is None:
            _, eb.r_c1 = self.ot.random_ot(eb.instances, eb.spec.l)
            s0 = eb.s0 if eb.s0_t is None else eb.s0 + eb.s0_t
            eb.p_rs = (eb.r_c1 + s0) & eb.spec.mask
        if eb.own is None:
            eb.own = self._gc.take_labels(eb.tables)
        return eb

    def evaluate(self, eb: EvaluatorBatch, labels: bytes):
        if not self.evaluate_part(eb, labels):
            raise ValueError("labels: a part of the batch; evaluate_part() takes parts")
        return self.result(eb)

    def evaluate_part(self, eb: EvaluatorBatch, labels) -> bool:
        """Evaluates the instances of one part of the garbler's labels (Garbler.label_parts, in
        order); True once the batch is complete (then result())."""
        if eb.tables is None:
            raise ValueError("receive() the garbled tables first")
        self.prepare(eb)
        # raises if this batch was evaluated already, or for a part out of order
        return self._gc.evaluate_part(eb.tables, labels, eb.own) == eb.instances

    def result(self, eb: EvaluatorBatch):
        """The outputs once every part is evaluated: relu/trunc z, drelu e, argmax the index;
        Circa its message to the garbler (f, w) or, with a shift, (f, w, v)."""
        out = self.outputs(eb)
        if eb.spec.circuit != "circa":
            return out
        if out.ndim == 2:
            out, eb.e_t = out[:, 0].copy(), out[:, 1].copy()
        eb.e = out
        f = out ^ np.unpackbits(eb.c1, count=out.size)
        w = ((np.uint64(1) - np.uint64(2) * out.astype(np.uint64)) * eb.a + eb.d_s) & eb.spec.mask
        eb.d_s = eb.c1 = None
        if eb.e_t is None:
            return f, w
        v = ((np.uint64(1) - np.uint64(2) * eb.e_t.astype(np.uint64)) * wrap_weight(eb.spec) + eb.d_t) & eb.spec.mask
        eb.d_t = None
        return f, w, v

    def outputs(self, eb: EvaluatorBatch) -> np.ndarray:
        """The circuit's output bits once every part is evaluated: relu/trunc z, argmax the
        index, drelu/circa e ((n, 2) with Circa's wrap bit e_t); the batch's tables are done."""
        if eb.tables is None:
            raise ValueError("receive() the garbled tables first")
        out = self._gc.result(eb.tables, eb.own)
        eb.tables = eb.own = None
        return out

    def finish(self, eb: EvaluatorBatch, h) -> np.ndarray:
        if eb.spec.circuit != "circa" or eb.e is None or eb.finished:
            raise ValueError("finish() is Circa's last step, once, after evaluate()")
        h = _shares(h, eb.spec, "h")
        e = eb.e.astype(np.uint64)
        z = e * h - eb.p_rs + e * eb.a      # M_e − S0 + e·a, M_e = e·h − R_c1
        if eb.e_t is not None:              # + K·e_t − S'0 (S'0 is in p_rs)
            z = z + eb.e_t.astype(np.uint64) * wrap_weight(eb.spec)
        eb.finished, eb.p_rs, eb.a, eb.s0, eb.s0_t, eb.r_c1 = True, None, None, None, None, None
        return z & eb.spec.mask


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
    """What the evaluator keeps from the offline phase per instance (docs/gc.md, "What the
    evaluator stores"), in bytes (fractions: packed bits). `stored` is this implementation's
    format: the tables with their decode bits, 1 bit per OT it receives (its choice: the labels
    and Circa's R_c1 are recomputed from the 128 IKNP seeds it keeps per session), and for Circa
    the reverse OT's words (S0 − S1, S0; with a shift also S'0 − S'1, S'0; uint64) and the packed
    choice bit c1. `share` is Circa's own share (8 B), which the product needs online: the linear
    layer's share, counted apart. `with_labels`: the same if the 16-B input labels (and R_c1)
    were stored instead of recomputed."""
    info = spec.info
    circa = spec.circuit == "circa"
    tables = info["table_bytes"] + info["decode_bytes"]
    choice = (info["n_eval"] + circa) / 8                             # + c1's OT
    product = ((4 if spec.shift else 2) * 8 + 1 / 8) if circa else 0.0   # words, c1 packed
    share = 8 if circa else 0
    return {"tables": tables, "choice_bits": choice, "labels": 16 * info["n_eval"], "product": product,
            "share": share, "stored": tables + choice + product,
            "with_labels": tables + 16 * info["n_eval"] + product + (8 + 1 / 8 if circa else 0)}
