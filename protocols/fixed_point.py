"""The ring Z_(2^l) and fixed-point encoding.

Ring elements are numpy uint64 arrays. Unsigned arithmetic wraps mod 2^64, and reduction
mod 2^l is a ring homomorphism from Z_(2^64) onto Z_(2^l) (2^l divides 2^64), so sums and
products computed in uint64 are right mod 2^l whatever bits above l they carry. Only the
operations that read those bits need a reduced operand: right shifts (truncation), the
bits the FSS gates read, decoding (sign extension from bit l − 1) and what goes on the wire.
`Ring` is the one place that knows l; every other module asks it.

A real number v is encoded at scale s as round(v · 2^s) in two's complement mod 2^l;
products of two encodings carry scale s1 + s2 and are brought back by truncation (fused into
the gates, see docs/engine.md).

Default fractional bits: 12. The engine lets scales grow to 3f between truncations (a linear
layer adds f; an identity site may skip a truncation), and every value must stay below
2^(l−2) in magnitude for the comparison gates and the truncation bounds; at l = 64 and f = 12
that leaves 2^(62 − 36) = 2^26 of range for real values at the largest scale, while
2^-12 ≈ 2.4e-4 resolution keeps Fashion-MNIST logits within 1e-2 of plaintext (LLAMA and
CrypTen use 12–16). A narrower ring (a plan's `ring_bits`) fits when calibrated bounds say
the values need fewer bits.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

RING_BITS = 64          # the default ring width and the widest the engine runs
MIN_RING_BITS = 2
U64 = np.uint64
# At l = 64, values (as signed integers) must satisfy |x| < 2^MAX_VALUE_BITS: the gates'
# precondition. A ring of l bits allows |x| < 2^(l − 2) (Ring.max_value_bits).
MAX_VALUE_BITS = RING_BITS - 2
DEFAULT_FRAC_BITS = 12


class FixedPointOverflow(OverflowError):
    """A value does not fit the ring at the requested scale."""


def to_signed(x: np.ndarray) -> np.ndarray:
    """64-bit ring elements → int64 (two's complement view, no copy)."""
    return np.asarray(x, dtype=U64).view(np.int64)


def from_signed(x) -> np.ndarray:
    """int64 → 64-bit ring elements (two's complement view)."""
    return np.ascontiguousarray(x, dtype=np.int64).view(U64)


@dataclass(frozen=True)
class Ring:
    """Z_(2^bits) on uint64 arrays: reduction, signed views, shifts and the wire encoding.

    On the wire an element takes ceil(bits/8) little-endian bytes (the reduced value's low
    bytes); at bits = 64 the uint64 array itself is sent."""

    bits: int = RING_BITS

    def __post_init__(self) -> None:
        if not isinstance(self.bits, (int, np.integer)) or isinstance(self.bits, bool) \
                or not MIN_RING_BITS <= self.bits <= RING_BITS:
            raise ValueError(f"ring_bits must be an integer in {MIN_RING_BITS}..{RING_BITS}, got {self.bits!r}")

    @property
    def full(self) -> bool:
        return self.bits == RING_BITS

    @property
    def mask(self) -> np.uint64:
        return U64((1 << self.bits) - 1)

    @property
    def elem_bytes(self) -> int:
        """Bytes per element on the wire."""
        return (self.bits + 7) // 8

    @property
    def max_value_bits(self) -> int:
        """Values (signed) must satisfy |x| < 2^max_value_bits: one bit of headroom for the gates."""
        return self.bits - 2

    def reduce(self, x) -> np.ndarray:
        """x mod 2^bits (a new array; at 64 bits x itself, as uint64)."""
        x = np.asarray(x, dtype=U64)
        return x if self.full else x & self.mask

    def signed(self, x) -> np.ndarray:
        """Ring elements → int64, sign-extended from bit bits − 1."""
        v = np.ascontiguousarray(x, dtype=U64)
        if self.full:
            return v.view(np.int64)
        # Move bit bits − 1 to bit 63 (unsigned, wraps), then shift back arithmetically.
        return (v << U64(RING_BITS - self.bits)).view(np.int64) >> np.int64(RING_BITS - self.bits)

    def from_signed(self, x) -> np.ndarray:
        """int64 → ring elements (two's complement mod 2^bits)."""
        return self.reduce(from_signed(x))

    def shr(self, x, k: int) -> np.ndarray:
        """Logical right shift of the reduced element by k bits."""
        return self.reduce(x) >> U64(k)

    def pack(self, x) -> np.ndarray:
        """The wire form of ring elements: uint64 as they are at 64 bits; otherwise a
        (n, elem_bytes) uint8 array of the reduced values' low bytes (n = x.size)."""
        x = np.asarray(x, dtype=U64)
        if self.full:
            return x
        if self.bits % 8:                    # (whole bytes: dropping the high bytes reduces)
            x = x & self.mask
        x = x.reshape(-1)
        out = np.empty(x.size, _packed_dtype(self.elem_bytes))
        for name, shift in _packed_fields(self.elem_bytes):
            out[name] = x >> U64(shift) if shift else x       # the field's cast keeps its low bytes
        return out.view(np.uint8).reshape(-1, self.elem_bytes)

    def wire_shape(self, n: int) -> tuple[int, ...]:
        """The shape pack() gives n elements (flat at 64 bits)."""
        return (n,) if self.full else (n, self.elem_bytes)

    def unpack(self, b: np.ndarray, shape=None) -> np.ndarray:
        """Inverse of pack: uint64 elements, reshaped to `shape` (default: flat). Refuses
        bytes above bit `bits` (a peer that does not reduce is not speaking this ring)."""
        b = np.asarray(b)
        if self.full:
            out = np.asarray(b, dtype=U64)
        else:
            if b.dtype != np.uint8 or b.ndim != 2 or b.shape[1] != self.elem_bytes:
                raise ValueError(f"packed {self.bits}-bit ring elements must be a uint8 array of shape (n, "
                                 f"{self.elem_bytes}), got {b.dtype} {b.shape}")
            fields = np.ascontiguousarray(b).view(_packed_dtype(self.elem_bytes)).reshape(-1)
            out = np.zeros(b.shape[0], U64)
            for name, shift in _packed_fields(self.elem_bytes):
                out |= fields[name].astype(U64) << U64(shift)
            if self.bits % 8 and out.size and bool((b[:, -1] >> (self.bits % 8)).any()):
                raise ValueError(f"packed ring elements exceed {self.bits} bits")
        return out.reshape(-1) if shape is None else out.reshape(shape)


RING64 = Ring(RING_BITS)


@functools.cache
def _packed_fields(nbytes: int) -> tuple[tuple[str, int], ...]:
    """An element's wire bytes as little-endian fields of 4, 2 and 1 bytes: (name, bit shift).
    Whole-field casts run far faster than copying n rows of nbytes bytes."""
    out, at = [], 0
    while at < nbytes:
        out.append((f"b{at}", 8 * at))
        at += next(size for size in (4, 2, 1) if nbytes - at >= size)
    return tuple(out)


@functools.cache
def _packed_dtype(nbytes: int) -> np.dtype:
    names = [n for n, _ in _packed_fields(nbytes)]
    offsets = [shift // 8 for _, shift in _packed_fields(nbytes)]
    sizes = [b - a for a, b in zip(offsets, offsets[1:] + [nbytes])]
    return np.dtype({"names": names, "formats": [f"<u{k}" for k in sizes], "offsets": offsets, "itemsize": nbytes})


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point parameters: `frac_bits` fractional bits in Z_(2^ring_bits)."""

    frac_bits: int = DEFAULT_FRAC_BITS
    ring_bits: int = RING_BITS

    def __post_init__(self) -> None:
        Ring(self.ring_bits)  # validates
        if not 1 <= self.frac_bits <= 20:
            raise ValueError(f"frac_bits must be in 1..20 (scales reach 3·frac_bits), got {self.frac_bits}")

    @property
    def ring(self) -> Ring:
        return Ring(self.ring_bits)

    def max_abs(self, scale: int | None = None) -> float:
        """The largest magnitude encodable at `scale` (default: frac_bits)."""
        return float(2.0 ** (self.ring.max_value_bits - (self.frac_bits if scale is None else scale)))

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
                f"at scale 2^{scale} in a {self.ring_bits}-bit ring; lower frac_bits, normalize the input "
                "or compile with a wider ring")
        return self.ring.from_signed(np.rint(v * 2.0 ** scale).astype(np.int64))

    def decode(self, ring: np.ndarray, scale: int | None = None) -> np.ndarray:
        """Ring elements at `scale` → float64 reals (sign-extended from bit ring_bits − 1)."""
        scale = self.frac_bits if scale is None else scale
        return self.ring.signed(ring).astype(np.float64) / 2.0 ** scale

    @property
    def ulp(self) -> float:
        return 2.0 ** -self.frac_bits
