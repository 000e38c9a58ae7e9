"""The ring Z_(2^64) and fixed-point encoding.

Ring elements are numpy uint64 arrays: unsigned arithmetic wraps, which is exactly reduction
mod 2^64, and signed values live in two's complement. A real number v is encoded at scale s
as round(v · 2^s); products of two encodings carry scale s1 + s2 and are brought back by
truncation (fused into the gates, see docs/engine.md).

Default fractional bits: 12. The engine lets scales grow to 3f between truncations (a linear
layer adds f; an identity site may skip a truncation), and every value must stay below
2^62 in magnitude for the comparison gates and the truncation bounds; with f = 12 that
leaves 2^(62 − 36) = 2^26 of range for real values at the largest scale, while 2^-12 ≈ 2.4e-4
resolution keeps Fashion-MNIST logits within 1e-2 of plaintext (LLAMA and CrypTen use 12–16).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RING_BITS = 64
U64 = np.uint64
# Values (as signed integers) must satisfy |x| < 2^MAX_VALUE_BITS: the gates' precondition.
MAX_VALUE_BITS = 62
DEFAULT_FRAC_BITS = 12


class FixedPointOverflow(OverflowError):
    """A value does not fit the ring at the requested scale."""


def to_signed(x: np.ndarray) -> np.ndarray:
    """Ring elements → int64 (two's complement view, no copy)."""
    return np.asarray(x, dtype=U64).view(np.int64)


def from_signed(x) -> np.ndarray:
    """int64 → ring elements (two's complement view)."""
    return np.ascontiguousarray(x, dtype=np.int64).view(U64)


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point parameters: `frac_bits` fractional bits in Z_(2^64)."""

    frac_bits: int = DEFAULT_FRAC_BITS
    ring_bits: int = RING_BITS

    def __post_init__(self) -> None:
        if self.ring_bits != RING_BITS:
            raise ValueError(f"only the 64-bit ring is supported, got ring_bits={self.ring_bits}")
        if not 1 <= self.frac_bits <= 20:
            raise ValueError(f"frac_bits must be in 1..20 (scales reach 3·frac_bits), got {self.frac_bits}")

    def max_abs(self, scale: int | None = None) -> float:
        """The largest magnitude encodable at `scale` (default: frac_bits)."""
        return float(2 ** (MAX_VALUE_BITS - (self.frac_bits if scale is None else scale)))

    def encode(self, values, scale: int | None = None) -> np.ndarray:
        """Reals → ring elements at `scale` (default frac_bits). Raises on NaN or overflow."""
        scale = self.frac_bits if scale is None else scale
        v = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            raise FixedPointOverflow("cannot encode NaN or infinite values")
        limit = self.max_abs(scale)
        if v.size and float(np.max(np.abs(v))) >= limit:
            raise FixedPointOverflow(
                f"value {float(np.max(np.abs(v))):.4g} exceeds the representable range ±{limit:.4g} "
                f"at scale 2^{scale}; lower frac_bits or normalize the input")
        return from_signed(np.rint(v * 2.0 ** scale).astype(np.int64))

    def decode(self, ring: np.ndarray, scale: int | None = None) -> np.ndarray:
        """Ring elements at `scale` → float64 reals."""
        scale = self.frac_bits if scale is None else scale
        return to_signed(ring).astype(np.float64) / 2.0 ** scale

    @property
    def ulp(self) -> float:
        return 2.0 ** -self.frac_bits
