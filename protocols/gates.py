"""The FSS gates the engine uses, over pi_native's keys.

A `GateSpec` names a gate and its public parameters; `keygen` is the dealer's side and
`evaluate` a party's, given the public masked input x̂ = x + r_in. Outputs are additive shares
of g(x) + r_out mod 2^ring (`GateSpec.ring`, the plan's l: the keys store their ring words in
ceil(l/8) bytes, and the bits above l of a share mean nothing); a gate reads
only the low `input_bits` of x̂, which the ring must hold (then x̂ mod 2^l suffices). Multi-round gates (Circa's sign test, then its select) exchange their
intermediate openings over the channel passed in.

The `poly` gate (a degree-2 polynomial of the faithfully truncated input, one opening) has
no FSS key: its key is four words per element, linear in the public x̂ (see `poly_key`), dealt
in numpy (protocols.wide: the words have l + d bits, up to 128) and evaluated online by
pi_native.poly_eval.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

import pi_native
from protocols.wide import MAX_BITS as WIDE_BITS
from protocols.wide import WideRing

GATE_KINDS = ("relu", "circa", "trunc", "drelu", "poly")
POLY_KEY_WORDS = 4              # A_0, A_1, B_0, B_1 per element (see poly_key)


@dataclass(frozen=True)
class GateSpec:
    kind: str
    shift: int = 0
    k: int | None = None          # Circa: low bits dropped by the sign test
    mode: str = "poszero"         # Circa: "poszero" | "negpass"
    bits: int = 64                # inputs satisfy |x| < 2^(bits − 1)
    ring: int = 64                # output ring Z_(2^ring): the keys' ring words take ceil(ring/8) bytes
    out_shift: int = 0            # poly: p(t) computed mod 2^(ring + out_shift), shares shifted right by it

    @property
    def compute_bits(self) -> int:
        """The ring a poly gate computes p(t) in (its key words live there): ring + out_shift."""
        return self.ring + self.out_shift

    def __post_init__(self) -> None:
        if self.kind not in GATE_KINDS:
            raise ValueError(f"unknown gate {self.kind!r}; choose one of {GATE_KINDS}")
        if self.kind == "circa" and self.k is None:
            raise ValueError("a Circa gate needs k")
        if self.out_shift and (self.kind != "poly" or self.compute_bits > WIDE_BITS):
            raise ValueError(f"out_shift {self.out_shift}: only a poly gate shifts its output, and "
                             f"ring + out_shift must be at most {WIDE_BITS}")

    @property
    def n(self) -> int:
        """Input bit width of the gate: values satisfy −2^(n−1) ≤ x < 2^(n−1) (docs/fss.md);
        Circa additionally needs 2^k of margin at the ends, so k ≤ n − 2."""
        n = min(64, self.bits)
        if self.kind == "circa":
            n = max(n, self.k + 2)
        return n

    @property
    def input_bits(self) -> int:
        """The low bits of x̂ the gate reads (n + 1 for relu, trunc and circa at n < 64, n for
        drelu): a ring narrower than this cannot run the gate."""
        kind = "trunc" if self.kind == "poly" else self.kind        # poly reads x̂ as trunc does
        return int(pi_native.online_cost(kind, **self.params())["input_bits"])

    def params(self) -> dict:
        if self.kind == "relu":
            return {"shift": self.shift, "n": self.n, "ring": self.ring}
        if self.kind == "circa":
            return {"k": self.k, "mode": self.mode, "shift": self.shift, "n": self.n, "ring": self.ring}
        if self.kind in ("trunc", "poly"):
            return {"shift": self.shift, "n": self.n, "ring": self.ring}
        return {"n": self.n, "ring": self.ring}


def _u64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.uint64)


def keygen(spec: GateSpec, r_in: np.ndarray, r_out: np.ndarray) -> tuple[bytes, bytes]:
    """The dealer's keys for one batch of sites of this gate (party 0's, party 1's)."""
    gen = getattr(pi_native, f"gen_{spec.kind}")
    return gen(os.urandom(16), _u64(r_in), _u64(r_out), **spec.params())


def evaluate(spec: GateSpec, party: int, key: bytes, xhat: np.ndarray, chan) -> np.ndarray:
    """This party's output shares on x̂; Circa exchanges its sign openings over `chan`."""
    xhat = _u64(xhat)
    if spec.kind == "circa":
        # Each party's share of the masked sign bit; the XOR of both is safe to open. One bit
        # per element each way, packed.
        mine = pi_native.eval_circa_sign(party, key, xhat)
        theirs = np.unpackbits(chan.exchange_array(np.packbits(mine)), count=len(mine))
        return pi_native.eval_circa_select(party, key, xhat, mine ^ theirs)
    return getattr(pi_native, f"eval_{spec.kind}")(party, key, xhat)


def key_bytes(spec: GateSpec) -> int:
    """Key bytes per element and party (poly: the server's four words of l + d bits, packed; the
    client's share comes from its seed)."""
    if spec.kind == "poly":
        return POLY_KEY_WORDS * poly_ring(spec).elem_bytes
    return int(pi_native.key_bytes_per_element(spec.kind, **spec.params()))


# --------------------------------------------------------------------------------------------
# The fused polynomial gate: y = c2·t² + c1·t + c0 with t the faithful truncation of x by s
# --------------------------------------------------------------------------------------------

def trunc_geometry(spec: GateSpec) -> tuple[int, int]:
    """(w, s): the ring the trunc expression works on and the effective shift (as the native
    trunc gate: w = n + 1 below 64 bits, shifts beyond w − 2 computed as w − 2)."""
    w = 64 if spec.n >= 64 else spec.n + 1
    return w, min(spec.shift, w - 2)


def _low(x: np.ndarray, bits: int) -> np.ndarray:
    return x if bits >= 64 else x & np.uint64((1 << bits) - 1)


def poly_ring(spec: GateSpec) -> WideRing:
    """The ring p(t) is computed in, Z_(2^(l + d)): its key words and both parties' terms."""
    return WideRing(spec.compute_bits)


def poly_key(spec: GateSpec, r_in: np.ndarray, s_out: np.ndarray, c2: np.ndarray, c1: np.ndarray,
             c0: np.ndarray) -> np.ndarray:
    """The dealer's (unshared) poly key in Z_(2^(l + d)) (poly_ring), shape (words, 4, n): rows
    A_0, A_1, B_0, B_1. s_out: the output mask (mod 2^l); c2, c1, c0: the ring coefficients
    (int64 two's complement, sign-extended into the wide words).

    The trunc gate's output is t = H − R_p + e (docs/fss.md, `trunc`): H = (ẑ >> s) − (2^(w−2) >> s)
    is public once x̂ is open, and so is p = bit_(w−1)(ẑ), which picks R_1 = R = r_w >> s or
    R_0 = R − 2^(w−s)·bit_(w−1)(r). Then p(t) = c2·H² + (c1 − 2·c2·R_p)·H + (c2·R_p² − c1·R_p + c0)
    is linear in H given H², so one opening suffices: A_p = c1 − 2·c2·R_p and
    B_p = c2·R_p² − c1·R_p + c0 + s_out·2^d, and party 1 alone adds the public c2·H². R_p and H
    are exact integers here (not values mod 2^64), as the sum is taken mod 2^(l + d)."""
    w, s = trunc_geometry(spec)
    ring = poly_ring(spec)
    r = _u64(r_in)
    c2, c1, c0 = (ring.signed(_u64(c)) for c in (c2, c1, c0))
    rw = _low(r, w)
    R1 = ring.unsigned(rw >> np.uint64(s))
    R0 = ring.sub(R1, ring.shl((rw >> np.uint64(w - 1)) & np.uint64(1), w - s))
    ro = ring.shl(_u64(s_out), spec.out_shift)
    out = np.empty((ring.words, POLY_KEY_WORDS, len(r)), np.uint64)
    for p, R in ((0, R0), (1, R1)):
        c2R = ring.mul(c2, R)
        out[:, p] = ring.reduce(ring.sub(c1, ring.add(c2R, c2R)))
        out[:, 2 + p] = ring.reduce(ring.add(ring.sub(ring.mul(c2R, R), ring.mul(c1, R)), ring.add(c0, ro)))
    return out


def poly_opening_bits(spec: GateSpec) -> int:
    """Bits of x̂ the poly gate reads: w − s, those of x̂ >> s (the 2^(w−2) offset has no bits
    below s, so no carry comes up from them). The server opens only these."""
    w, s = trunc_geometry(spec)
    return w - s


def poly_opening(spec: GateSpec, xhat: np.ndarray) -> np.ndarray:
    """What the server opens for poly sites: x̂ >> s mod 2^(w − s)."""
    w, s = trunc_geometry(spec)
    return _low(_u64(xhat) >> np.uint64(s), w - s)


def poly_eval(spec: GateSpec, party: int, key: np.ndarray, opened: np.ndarray, c2: np.ndarray | None) -> np.ndarray:
    """This party's share of p(t) + s_out·2^d mod 2^(l + d), shifted right by d (poly_share_out),
    from the opening x̂ >> s mod 2^(w − s) (poly_opening; key: its (words, 4, n) share of
    poly_key; c2: the public quadratic coefficients, party 1 only).

    With ẑ >> s = opening + (2^(w−2) >> s) mod 2^(w − s), H = (ẑ >> s) − (2^(w−2) >> s) and
    p = bit_(w−s−1)(ẑ >> s), the share is A_p·H + B_p (+ c2·H² for party 1). pi_native computes
    it in one pass over 128-bit integers: in numpy's two-word arithmetic it cost more online time
    than the bytes and rounds it saves (the key words are l + d bits, up to 128)."""
    w, s = trunc_geometry(spec)
    return pi_native.poly_eval(party, _u64(key), _u64(opened), None if c2 is None else _u64(c2), w=w, s=s,
                               ring=spec.ring, out_shift=spec.out_shift)


def poly_share_out(spec: GateSpec, y: np.ndarray) -> np.ndarray:
    """A party's share of p(t) + s_out·2^d mod 2^(l+d) (a poly_ring value) → its share at the
    output scale, mod 2^l: shifted right by d = out_shift. The two shifted shares sum to
    (p(t) >> d) + s_out, or one less (the carry of the dropped bits), mod 2^l: a wrap of the
    sum past 2^(l+d) is 2^l after the shift, 0 mod 2^l, so no value can make it fail."""
    if not spec.out_shift:
        return y[0]
    return _low(poly_ring(spec).shr(y, spec.out_shift), spec.ring)


def extra_online_bytes(kind: str) -> float:
    """Online bytes per element beyond opening x̂ and returning y0 (both parties together):
    Circa opens its masked sign bit, one bit each way."""
    return 0.25 if kind == "circa" else 0.0
