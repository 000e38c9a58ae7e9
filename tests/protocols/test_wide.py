"""Z_(2^k) for k ≤ 128 on numpy words (protocols.wide), against Python integers."""
import numpy as np
import pytest

from protocols.wide import WideRing, mulhi

U64 = np.uint64


def value(v, i: int, k: int) -> int:
    return (int(v[0][i]) + (int(v[1][i]) << 64 if len(v) > 1 else 0)) % (1 << k)


@pytest.mark.parametrize("k", [40, 64, 65, 88, 127, 128])
def test_wide_ring_arithmetic_matches_python_integers(k):
    rng = np.random.default_rng(k)
    n = 500
    a, b = (rng.integers(0, 2**64, n, dtype=U64, endpoint=False) for _ in range(2))
    a[:4], b[:4] = [0, 1, 2**64 - 1, 2**63], [2**64 - 1, 2**64 - 1, 2**64 - 1, 2**63]
    assert [int(h) for h in mulhi(a, b)] == [(int(x) * int(y)) >> 64 for x, y in zip(a, b)]
    ring = WideRing(k)
    x, y = ring.signed(a), ring.unsigned(b)
    A, B = [int(v) for v in a.view(np.int64)], [int(v) for v in b]
    ops = {"mul": (ring.mul(x, y), lambda p, q: p * q), "add": (ring.add(x, y), lambda p, q: p + q),
           "sub": (ring.sub(x, y), lambda p, q: p - q), "shl": (ring.shl(b, 30), lambda p, q: q << 30)}
    for name, (got, want) in ops.items():
        assert [value(got, i, k) for i in range(n)] == [want(p, q) % (1 << k) for p, q in zip(A, B)], name
    prod = ring.mul(x, y)
    for d in (0, 5, 24, 63, 64, 70):
        if d < k:
            assert [int(v) for v in ring.shr(prod, d)] == \
                [((p * q % (1 << k)) >> d) % (1 << 64) for p, q in zip(A, B)], d
    packed = ring.pack(ring.reduce(prod))
    assert packed.size * packed.itemsize == n * ((k + 7) // 8)
    np.testing.assert_array_equal(ring.unpack(packed, (n,)), ring.reduce(prod))
    if k % 8 and k > 64:
        bad = packed.copy()
        bad[0, -1] |= 0x80
        with pytest.raises(ValueError, match="exceed"):
            ring.unpack(bad, (n,))
