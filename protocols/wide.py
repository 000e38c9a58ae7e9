"""Z_(2^k) for k up to 128 on numpy words: the polynomial gate's arithmetic (docs/engine.md,
"Polynomial sites"). Its products sit at scale 3f and are shifted down by d = 2f only after
both parties' terms are summed, so they need l + 2f bits: more than the 64 of a uint64 word
in rings above 64 − 2f bits.

A value is an array whose first axis holds its words, low first: shape (1, ...) for k ≤ 64
(the plain uint64 arithmetic, wrapping mod 2^64 ⊇ mod 2^k) and (2, ...) above. numpy has no
128-bit integers, so a product's high word comes from 32-bit halves (`mulhi`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.fixed_point import MIN_RING_BITS, RING_BITS, Ring

U64 = np.uint64
MAX_BITS = 2 * RING_BITS
_LOW32 = U64(0xFFFF_FFFF)


def mulhi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The high 64 bits of the 128-bit products a·b (uint64 arrays)."""
    a0, a1, b0, b1 = a & _LOW32, a >> U64(32), b & _LOW32, b >> U64(32)
    p01, p10 = a0 * b1, a1 * b0
    mid = ((a0 * b0) >> U64(32)) + (p01 & _LOW32) + (p10 & _LOW32)      # < 3·2^32: no overflow
    return a1 * b1 + (p01 >> U64(32)) + (p10 >> U64(32)) + (mid >> U64(32))


@dataclass(frozen=True)
class WideRing:
    bits: int

    def __post_init__(self) -> None:
        if not isinstance(self.bits, (int, np.integer)) or isinstance(self.bits, bool) \
                or not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"wide ring bits must be an integer in 1..{MAX_BITS}, got {self.bits!r}")

    @property
    def words(self) -> int:
        return 2 if self.bits > RING_BITS else 1

    @property
    def elem_bytes(self) -> int:
        return (self.bits + 7) // 8

    # -- into the ring (a scalar becomes a 1-element array: numpy warns when scalars wrap)
    def unsigned(self, x) -> np.ndarray:
        """uint64 values as they are (zero-extended)."""
        x = np.atleast_1d(np.asarray(x, U64))
        return x[None] if self.words == 1 else np.stack([x, np.zeros_like(x)])

    def signed(self, x) -> np.ndarray:
        """uint64 values read as two's-complement int64 (sign-extended)."""
        x = np.atleast_1d(np.asarray(x, U64))
        return x[None] if self.words == 1 else np.stack([x, (x.view(np.int64) >> np.int64(63)).view(U64)])

    def shl(self, x, k: int) -> np.ndarray:
        """Unsigned uint64 values times 2^k (0 ≤ k < 128)."""
        x = np.atleast_1d(np.asarray(x, U64))
        lo = x << U64(k) if k < 64 else np.zeros_like(x)
        if self.words == 1:
            return lo[None]
        hi = x << U64(k - 64) if k >= 64 else (x >> U64(64 - k) if k else np.zeros_like(x))
        return np.stack([lo, hi])

    # -- arithmetic (results carry bits above k; reduce() drops them)
    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        lo = a[0] + b[0]
        if self.words == 1:
            return lo[None]
        return np.stack([lo, a[1] + b[1] + (lo < a[0]).astype(U64)])

    def neg(self, a: np.ndarray) -> np.ndarray:
        lo = U64(0) - a[0]
        if self.words == 1:
            return lo[None]
        return np.stack([lo, U64(0) - a[1] - (a[0] != 0).astype(U64)])

    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.add(a, self.neg(b))

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        lo = a[0] * b[0]
        if self.words == 1:
            return lo[None]
        return np.stack([lo, mulhi(a[0], b[0]) + a[0] * b[1] + a[1] * b[0]])

    def reduce(self, a: np.ndarray) -> np.ndarray:
        if self.words == 1:
            return a if self.bits == RING_BITS else a & U64((1 << self.bits) - 1)
        return np.stack([a[0], a[1] & U64((1 << (self.bits - 64)) - 1) if self.bits < MAX_BITS else a[1]])

    def shr(self, a: np.ndarray, d: int) -> np.ndarray:
        """The low 64 bits of (a mod 2^k) >> d, a uint64 array."""
        a = self.reduce(a)
        if self.words == 1:
            return a[0] >> U64(d) if d < 64 else np.zeros_like(a[0])
        if d == 0:
            return a[0]
        if d >= 64:
            return a[1] >> U64(d - 64)
        return (a[0] >> U64(d)) | (a[1] << U64(64 - d))

    # -- storage: ⌈k/8⌉ bytes per element
    def _high(self) -> Ring:
        """The high word's ring (Ring's narrowest is 2 bits: at k = 65 the spare bit is 0)."""
        return Ring(max(MIN_RING_BITS, self.bits - 64))

    def pack(self, a: np.ndarray) -> np.ndarray:
        """As Ring(k).pack at k ≤ 64; above, each element's low word's 8 bytes then its high
        word packed as Ring(k − 64) does, one (n, ⌈k/8⌉) uint8 row per element."""
        if self.words == 1:
            return Ring(self.bits).pack(a[0])
        return np.concatenate([_byte_rows(Ring(RING_BITS), a[0]), _byte_rows(self._high(), a[1])], axis=1)

    def unpack(self, b: np.ndarray, shape) -> np.ndarray:
        """Inverse of pack: a value of shape (words, *shape); refuses bits above k."""
        if self.words == 1:
            return Ring(self.bits).unpack(b, shape)[None]
        b = np.asarray(b)
        if b.dtype != np.uint8 or b.ndim != 2 or b.shape[1] != self.elem_bytes:
            raise ValueError(f"packed {self.bits}-bit words must be a uint8 array of shape (n, {self.elem_bytes}), "
                             f"got {b.dtype} {b.shape}")
        lo = np.ascontiguousarray(b[:, :8]).view("<u8").astype(U64).reshape(-1)
        high = self._high()
        rest = np.ascontiguousarray(b[:, 8:])
        hi = high.unpack(rest.view("<u8").reshape(-1) if high.full else rest)
        return np.stack([lo, hi]).reshape((2, *shape))


def _byte_rows(ring: Ring, x: np.ndarray) -> np.ndarray:
    """Ring.pack's bytes as (n, elem_bytes) uint8 rows (at 64 bits it sends the words as they are)."""
    packed = ring.pack(np.ascontiguousarray(x).reshape(-1))
    return packed.astype("<u8").view(np.uint8).reshape(-1, 8) if ring.full else packed
