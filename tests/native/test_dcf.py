"""DCF key generation and evaluation: correctness, agreement with the Python reference, validation."""
import os

import numpy as np
import pytest

import pi_native

from reference import fss_ref as ref

U64 = np.uint64


def rand_bits(rng, bits, n):
    if bits == 64:
        return rng.integers(0, 2**64, n, dtype=U64, endpoint=False)
    return rng.integers(0, 1 << bits, n, dtype=U64, endpoint=False)


def edge_pairs(bits, rng, n):
    """(alpha, x) pairs around the comparison boundary and the ends of the domain."""
    top = (1 << bits) - 1
    alpha = rand_bits(rng, bits, n)
    alpha[:4] = [0, top, 1 % (top + 1), top >> 1]
    x = rand_bits(rng, bits, n)
    k = n // 5
    x[:k] = alpha[:k]                                   # x = alpha: not less
    x[k:2 * k] = (alpha[k:2 * k] - U64(1)) & U64(top)   # alpha - 1 (wraps at 0)
    x[2 * k:3 * k] = (alpha[2 * k:3 * k] + U64(1)) & U64(top)
    x[3 * k:3 * k + 2] = [0, top]
    return alpha, x


@pytest.mark.parametrize("bits", [1, 2, 7, 8, 9, 31, 63, 64])
@pytest.mark.parametrize("words", [1, 2])
def test_ring_dcf_reconstructs_comparison(bits, words):
    rng = np.random.default_rng(bits * 10 + words)
    alpha, x = edge_pairs(bits, rng, 500)
    beta = rng.integers(0, 2**64, (500, words), dtype=U64, endpoint=False)
    k0, k1 = pi_native.gen_dcf(os.urandom(16), alpha, beta if words == 2 else beta[:, 0].copy(), bits)
    y = pi_native.eval_dcf(0, k0, x) + pi_native.eval_dcf(1, k1, x)
    less = (x < alpha).astype(U64)
    expected = beta * less[:, None] if words == 2 else beta[:, 0] * less
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("bits", [1, 2, 5, 6, 7, 8, 9, 16, 23, 40, 63, 64])
def test_bit_dcf_reconstructs_comparison(bits):
    rng = np.random.default_rng(bits)
    alpha, x = edge_pairs(bits, rng, 700)
    k0, k1 = pi_native.gen_dcf_bit(os.urandom(16), alpha, bits)
    y = pi_native.eval_dcf_bit(0, k0, x) ^ pi_native.eval_dcf_bit(1, k1, x)
    np.testing.assert_array_equal(y, (x < alpha).astype(np.uint8))


def test_exhaustive_four_bits():
    a, x = np.meshgrid(np.arange(16, dtype=U64), np.arange(16, dtype=U64), indexing="ij")
    a, x = a.ravel().copy(), x.ravel().copy()
    less = (x < a)
    k0, k1 = pi_native.gen_dcf(os.urandom(16), a, np.full(256, 7, U64), 4)
    np.testing.assert_array_equal(pi_native.eval_dcf(0, k0, x) + pi_native.eval_dcf(1, k1, x), 7 * less.astype(U64))
    k0, k1 = pi_native.gen_dcf_bit(os.urandom(16), a, 4)
    np.testing.assert_array_equal(pi_native.eval_dcf_bit(0, k0, x) ^ pi_native.eval_dcf_bit(1, k1, x), less)


@pytest.mark.parametrize("bits", [1, 6, 7, 8, 13, 63, 64])
def test_keys_and_outputs_match_reference(bits):
    rng = np.random.default_rng(100 + bits)
    seed = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    alpha, x = edge_pairs(bits, rng, 10)
    beta = rng.integers(0, 2**64, (10, 2), dtype=U64, endpoint=False)
    for words in (1, 2):
        b = beta[:, :words].copy() if words == 2 else beta[:, 0].copy()
        keys = pi_native.gen_dcf(seed, alpha, b, bits)
        assert keys == ref.gen_dcf(seed, alpha, b, bits)
        for party in (0, 1):
            np.testing.assert_array_equal(pi_native.eval_dcf(party, keys[party], x),
                                          ref.eval_dcf(party, keys[party], x))
    keys = pi_native.gen_dcf_bit(seed, alpha, bits)
    assert keys == ref.gen_dcf_bit(seed, alpha, bits)
    for party in (0, 1):
        np.testing.assert_array_equal(pi_native.eval_dcf_bit(party, keys[party], x),
                                      ref.eval_dcf_bit(party, keys[party], x))


def test_keygen_is_a_function_of_the_seed():
    alpha = np.arange(50, dtype=U64)
    beta = np.ones(50, U64)
    seed = os.urandom(16)
    assert pi_native.gen_dcf(seed, alpha, beta, 16) == pi_native.gen_dcf(seed, alpha, beta, 16)
    other = pi_native.gen_dcf(os.urandom(16), alpha, beta, 16)
    assert other[0][32:48] != pi_native.gen_dcf(seed, alpha, beta, 16)[0][32:48]


def test_key_sizes():
    assert pi_native.key_bytes_per_element("dcf", bits=64, words=2) == 16 + 64 * 32 + 16
    assert pi_native.key_bytes_per_element("dcf", bits=10) == 16 + 10 * 24 + 8
    assert pi_native.key_bytes_per_element("dcf_bit", bits=23) == 16 + 16 * 16 + 8 + 16
    assert pi_native.key_bytes_per_element("dcf_bit", bits=5) == 16 + 8 + 16  # all in the leaf table
    for bits in (1, 7, 8, 40):
        k0, _ = pi_native.gen_dcf_bit(os.urandom(16), np.zeros(3, U64), bits)
        assert len(k0) == 32 + 3 * pi_native.key_bytes_per_element("dcf_bit", bits=bits)


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(5)
    n = 5000  # crosses the 8/16-key groups, the 256-key batches and the thread chunks
    alpha, x = rand_bits(rng, 40, n), rand_bits(rng, 40, n)
    seed = os.urandom(16)
    old = pi_native.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            pi_native.set_num_threads(t)
            k = pi_native.gen_dcf(seed, alpha, np.ones(n, U64), 40)
            kb = pi_native.gen_dcf_bit(seed, alpha, 40)
            outs.append((k, pi_native.eval_dcf(0, k[0], x), pi_native.eval_dcf_bit(1, kb[1], x)))
    finally:
        pi_native.set_num_threads(old)
    for o in outs[1:]:
        assert o[0] == outs[0][0]
        np.testing.assert_array_equal(o[1], outs[0][1])
        np.testing.assert_array_equal(o[2], outs[0][2])


def test_one_share_alone_looks_random():
    """Party 0's bit shares are balanced whether or not x < alpha (no leak through one key)."""
    n = 4000
    alpha = np.full(n, 1 << 20, U64)
    x = np.concatenate([np.full(n // 2, 5, U64), np.full(n // 2, 1 << 30, U64)])
    k0, _ = pi_native.gen_dcf_bit(os.urandom(16), alpha, 32)
    y0 = pi_native.eval_dcf_bit(0, k0, x).astype(float)
    for half in (y0[: n // 2], y0[n // 2:]):
        assert abs(half.mean() - 0.5) < 4 * 0.5 / np.sqrt(n / 2)


def test_validation():
    seed = os.urandom(16)
    a = np.zeros(4, U64)
    with pytest.raises(TypeError):
        pi_native.gen_dcf(seed, a.astype(np.int64), np.ones(4, U64), 8)
    with pytest.raises(ValueError, match="fit in 8 bits"):
        pi_native.gen_dcf(seed, np.full(4, 256, U64), np.ones(4, U64), 8)
    with pytest.raises(ValueError, match="bits"):
        pi_native.gen_dcf(seed, a, np.ones(4, U64), 65)
    with pytest.raises(ValueError, match="bits"):
        pi_native.gen_dcf_bit(seed, a, 0)
    with pytest.raises(ValueError, match="1 or 2 words"):
        pi_native.gen_dcf(seed, a, np.ones((4, 3), U64), 8)
    with pytest.raises(ValueError, match="rows"):
        pi_native.gen_dcf(seed, a, np.ones(5, U64), 8)
    with pytest.raises(ValueError, match="16 bytes"):
        pi_native.gen_dcf(b"short", a, np.ones(4, U64), 8)
    k0, _ = pi_native.gen_dcf(seed, a, np.ones(4, U64), 8)
    with pytest.raises(ValueError, match="fit in 8 bits"):
        pi_native.eval_dcf(0, k0, np.full(4, 300, U64))
    with pytest.raises(ValueError, match="elements"):
        pi_native.eval_dcf(0, k0, np.zeros(5, U64))
    with pytest.raises(ValueError, match="party"):
        pi_native.eval_dcf(1, k0, a)
    with pytest.raises(ValueError, match="'dcf'"):
        pi_native.eval_dcf_bit(0, k0, a)
