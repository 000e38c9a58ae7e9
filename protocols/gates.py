"""The FSS gates the engine uses, over pi_native's keys.

A `GateSpec` names a gate and its public parameters; `keygen` is the dealer's side and
`evaluate` a party's, given the public masked input x̂ = x + r_in. Outputs are additive shares
of g(x) + r_out mod 2^64, hence mod 2^l for the plan's ring (2^l divides 2^64); a gate reads
only the low `input_bits` of x̂, which the ring must hold (then x̂ mod 2^l suffices). Multi-round gates (Circa's sign test, then its select) exchange their
intermediate openings over the channel passed in.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

import pi_native

GATE_KINDS = ("relu", "circa", "trunc", "drelu")


@dataclass(frozen=True)
class GateSpec:
    kind: str
    shift: int = 0
    k: int | None = None          # Circa: low bits dropped by the sign test
    mode: str = "poszero"         # Circa: "poszero" | "negpass"
    bits: int = 64                # inputs satisfy |x| < 2^(bits − 1)

    def __post_init__(self) -> None:
        if self.kind not in GATE_KINDS:
            raise ValueError(f"unknown gate {self.kind!r}; choose one of {GATE_KINDS}")
        if self.kind == "circa" and self.k is None:
            raise ValueError("a Circa gate needs k")

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
        return int(pi_native.online_cost(self.kind, **self.params())["input_bits"])

    def params(self) -> dict:
        if self.kind == "relu":
            return {"shift": self.shift, "n": self.n}
        if self.kind == "circa":
            return {"k": self.k, "mode": self.mode, "shift": self.shift, "n": self.n}
        if self.kind == "trunc":
            return {"shift": self.shift, "n": self.n}
        return {"n": self.n}


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
    """Key bytes per element and party."""
    return int(pi_native.key_bytes_per_element(spec.kind, **spec.params()))


def extra_online_bytes(kind: str) -> float:
    """Online bytes per element beyond opening x̂ and returning y0 (both parties together):
    Circa opens its masked sign bit, one bit each way."""
    return 0.25 if kind == "circa" else 0.0
