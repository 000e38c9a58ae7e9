"""The AVX-512 + VAES ring DCF evaluator (native/src/dcf_simd.cpp) against the scalar loop and
the Python reference: the same output words, bit for bit, for every payload width, value-word
size (output ring) and key count around its 16-key groups."""
import os

import numpy as np
import pytest

import pi_native

from reference import fss_ref as ref

U64 = np.uint64

pytestmark = pytest.mark.skipif(not pi_native.dcf_simd(), reason="CPU without AVX-512 BW and VAES")


@pytest.fixture
def scalar_then_simd():
    """Runs a callable with the SIMD path off, then on; returns both results."""
    def both(fn):
        try:
            pi_native.dcf_simd(False)
            off = fn()
        finally:
            pi_native.dcf_simd(True)
        return off, fn()
    return both


def _edge_inputs(rng, bits, n):
    top = (1 << bits) - 1
    alpha = rng.integers(0, top, n, dtype=U64, endpoint=True)
    x = rng.integers(0, top, n, dtype=U64, endpoint=True)
    k = n // 4
    x[:k] = alpha[:k]
    x[k:2 * k] = (alpha[k:2 * k] - U64(1)) & U64(top)
    alpha[2 * k:2 * k + 4] = [0, top, 0, top]
    x[2 * k:2 * k + 4] = [0, top, top, 0]
    return alpha, x


@pytest.mark.parametrize("bits", [1, 2, 33, 63, 64])
@pytest.mark.parametrize("words", [1, 2])
@pytest.mark.parametrize("n", [16, 47, 300])
def test_raw_dcf_simd_equals_scalar_and_comparison(bits, words, n, scalar_then_simd):
    rng = np.random.default_rng(bits * 1000 + words * 100 + n)
    alpha, x = _edge_inputs(rng, bits, n)
    beta = rng.integers(0, 2**64, (n, words), dtype=U64, endpoint=False)
    b = beta if words == 2 else beta[:, 0].copy()
    k0, k1 = pi_native.gen_dcf(os.urandom(16), alpha, b, bits)
    (y0s, y1s), (y0v, y1v) = scalar_then_simd(lambda: (pi_native.eval_dcf(0, k0, x), pi_native.eval_dcf(1, k1, x)))
    np.testing.assert_array_equal(y0v, y0s)
    np.testing.assert_array_equal(y1v, y1s)
    less = (x < alpha).astype(U64)
    np.testing.assert_array_equal(y0v + y1v, beta * less[:, None] if words == 2 else b * less)


def test_simd_matches_the_reference_on_a_group():
    """A whole 16-key group plus a tail, against the pure-Python evaluator."""
    rng = np.random.default_rng(9)
    bits, n = 20, 18
    seed = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    alpha, x = _edge_inputs(rng, bits, n)
    for words in (1, 2):
        beta = rng.integers(0, 2**64, (n, words), dtype=U64, endpoint=False)
        b = beta if words == 2 else beta[:, 0].copy()
        keys = pi_native.gen_dcf(seed, alpha, b, bits)
        for party in (0, 1):
            np.testing.assert_array_equal(pi_native.eval_dcf(party, keys[party], x), ref.eval_dcf(party, keys[party], x))


@pytest.mark.parametrize("ring", [64, 57, 42, 33, 17, 8, 3])
@pytest.mark.parametrize("gate", ["relu", "drelu"])
def test_gates_on_narrow_value_words(ring, gate, scalar_then_simd):
    """Value words of ceil(ring / 8) bytes (1..8): the gather and byte shuffle of the SIMD path."""
    n_bits = min(ring - 1, 34) if ring > 3 else 2
    rng = np.random.default_rng(ring * 7 + len(gate))
    m = 1000
    x = rng.integers(-(1 << (n_bits - 1)), (1 << (n_bits - 1)) - 1, m, endpoint=True).astype(np.int64)
    x[:4] = [-(1 << (n_bits - 1)), (1 << (n_bits - 1)) - 1, 0, -1]
    r_in = rng.integers(0, 2**64, m, dtype=U64, endpoint=False)
    r_out = rng.integers(0, 2**64, m, dtype=U64, endpoint=False)
    params = {"shift": 12 % max(1, n_bits - 1)} if gate == "relu" else {}
    k0, k1 = getattr(pi_native, "gen_" + gate)(os.urandom(16), r_in, r_out, n=n_bits, ring=ring, **params)
    xhat = x.view(U64) + r_in
    ev = getattr(pi_native, "eval_" + gate)
    (y0s, y1s), (y0v, y1v) = scalar_then_simd(lambda: (ev(0, k0, xhat), ev(1, k1, xhat)))
    np.testing.assert_array_equal(y0v, y0s)
    np.testing.assert_array_equal(y1v, y1s)
    low = U64((1 << ring) - 1) if ring < 64 else U64(2**64 - 1)
    got = ((y0v + y1v - r_out) & low).astype(np.int64)
    if gate == "drelu":
        np.testing.assert_array_equal(got, (x >= 0).astype(np.int64))
    else:
        want = (np.maximum(x, 0) >> params["shift"]) & np.int64(low)
        assert np.all((got - want) & np.int64(low) <= 1)       # faithful: + e, e in {0, 1}
        np.testing.assert_array_equal(got[x < 0], 0)


def test_switch_reports_its_state():
    assert pi_native.dcf_simd() is True
    try:
        assert pi_native.dcf_simd(False) is False
        assert pi_native.dcf_simd() is False
    finally:
        assert pi_native.dcf_simd(True) is True
