"""Additive sharings mod 2^l for the garbled-circuit tests (tests/native is on sys.path: pytest
puts a test file's folder first, as it has no __init__.py)."""
from __future__ import annotations

import numpy as np

U64 = np.uint64


def mask(l: int) -> np.uint64:
    """2^l − 1 as a uint64 (l <= 64)."""
    return U64((1 << l) - 1) if l < 64 else U64(0xFFFF_FFFF_FFFF_FFFF)


def split(x, l: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Uniform additive sharing of signed x in Z_(2^l): (a, b) with a + b = x; a's bits above
    any `bits` a circuit reads are random, as in the protocol."""
    a = rng.integers(0, 2**64, np.size(x), dtype=U64, endpoint=False) & mask(l)
    return a, (np.asarray(x, np.int64).view(U64) - a) & mask(l)


def signed_np(x, l: int) -> np.ndarray:
    """Ring elements mod 2^l as signed integers (two's complement at l bits)."""
    x = x.astype(np.uint64)
    if l == 64:
        return x.view(np.int64)
    return x.astype(np.int64) - ((x >> U64(l - 1)).astype(np.int64) << l)
