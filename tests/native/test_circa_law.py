"""Circa's fault law in the dealer model (docs/fss.md, "Circa: fault law"), checked statistically.

Law (mask r uniform, x signed, e_k = [(x mod 2^k) + (r mod 2^k) >= 2^k]):
  negpass: the sign bit reads 1 for -2^k <= x <= -1 with probability (x + 2^k) / 2^k,
  poszero: the sign bit reads 0 for  0 <= x <  2^k with probability (2^k - x) / 2^k,
  and never a fault for |x| >= 2^k. Expected faults = sum p_i; we accept |obs - sum p| <= z sd,
  z set per test for all the checks of all its parametrizations together (Bonferroni, tests/stats.py):
  a correct gate fails a test's family with probability at most 1e-6 (4 sd on each of the ~140
  checks failed about 1 % of correct runs).
The law is the same at every input width n (checked at n = 64, 40, 17); just outside the
precondition, within 2^k of the ends of the n-bit range, the edge law of docs/fss.md applies.
"""
import os

import numpy as np
import pytest

import pi_native

from reference import fss_ref as ref
from stats import family_z

U64 = np.uint64
I64 = np.int64


def dealer_rd(k0, k1, count, elem):
    """The select mask bit r_d, recombined from both keys (the dealer's view; for testing only)."""
    off = elem - 48 + 8  # the circa tail is [gamma, r_d share, 4 constants]
    rows0 = np.frombuffer(k0, np.uint8, offset=32).reshape(count, elem)
    rows1 = np.frombuffer(k1, np.uint8, offset=32).reshape(count, elem)
    share = lambda rows: rows[:, off:off + 8].copy().view(U64)[:, 0]
    return share(rows0) + share(rows1)


def run_circa(x, k, mode, shift=0, n=64):
    count = x.size
    rng = np.random.default_rng()
    r_in = rng.integers(0, 2**64, count, dtype=U64, endpoint=False)
    r_out = rng.integers(0, 2**64, count, dtype=U64, endpoint=False)
    k0, k1 = pi_native.gen_circa(os.urandom(16), r_in, r_out, k=k, mode=mode, shift=shift, n=n)
    xhat = x.view(U64) + r_in
    opened = pi_native.eval_circa_sign(0, k0, xhat) ^ pi_native.eval_circa_sign(1, k1, xhat)
    y = (pi_native.eval_circa_select(0, k0, xhat, opened) + pi_native.eval_circa_select(1, k1, xhat, opened)
         - r_out).view(I64)
    rd = dealer_rd(k0, k1, count, pi_native.key_bytes_per_element("circa", k=k, mode=mode, shift=shift, n=n))
    assert set(np.unique(rd)) <= {0, 1}
    d = opened.astype(I64) ^ rd.astype(I64)
    return d, y


def law(x, k, mode):
    return np.array([ref.circa_fault_probability(int(v), k, mode) for v in x])


def check_count(faults, p, what, z):
    expected, sd = p.sum(), np.sqrt((p * (1 - p)).sum())
    observed = int(faults.sum())
    assert abs(observed - expected) <= z * sd + 1e-9, \
        f"{what}: observed {observed}, law {expected:.1f} ± {sd:.1f} (bound {z:.2f} sd)"


def far_values(k, count, rng, n=64):
    lim = (1 << (n - 1)) - (1 << k)  # precondition: -2^(n-1) + 2^k <= x < 2^(n-1) - 2^k
    edges = [1 << k, -(1 << k) - 1, (1 << k) + 1, -(1 << k) - 2, lim - 1, -lim, 1 << 40, -(1 << 40)]
    edges = [e for e in edges if -lim <= e < lim]
    mag = rng.integers(1 << k, lim, count, dtype=I64)
    sign = rng.integers(0, 2, count) * 2 - 1
    small = rng.integers(1 << k, min(lim, 1 << (k + 3)), count, dtype=I64) * (rng.integers(0, 2, count) * 2 - 1)
    return np.concatenate([np.array(edges, I64), mag * sign, small])


MODES = ["poszero", "negpass"]
LAW_K, LAW_N = [4, 8, 12], [64, 40, 17]
Z_LAW = family_z(len(LAW_K) * len(MODES) * len(LAW_N) * 6)     # 6 checks per case below
SHIFT_N = [64, 33]
Z_SHIFT = family_z(len(MODES) * len(SHIFT_N))
EDGE_N = [64, 40, 17]
Z_EDGE = family_z(len(MODES) * len(EDGE_N) * 5)


@pytest.mark.parametrize("n", LAW_N)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", LAW_K)
def test_fault_law(k, mode, n):
    reps = max(2, 40000 >> (k + 1))
    near = np.tile(np.arange(-(1 << k) - 3, (1 << k) + 3, dtype=I64), reps)
    rng = np.random.default_rng(k + n)
    x = np.concatenate([near, far_values(k, 3000, rng, n)])
    d, y = run_circa(x, k, mode, n=n)
    truth = (x >= 0).astype(I64)
    fault = d != truth
    # The select computes exactly x * d, whatever d is.
    np.testing.assert_array_equal(y, x * d)
    # Never a fault away from zero (includes x = -2^k in negpass and x = 2^k in poszero).
    far = np.abs(x) >= (1 << k)
    assert not fault[far & (x != -(1 << k))].any()
    assert not fault[x == -(1 << k)].any()
    # Faults only on the side the mode allows.
    if mode == "negpass":
        assert not fault[x >= 0].any()
    else:
        assert not fault[x < 0].any()
    p = law(x, k, mode)
    check_count(fault, p, f"k={k} {mode} sign faults", Z_LAW)
    # The visible faults (output != ReLU(x)); x = 0 is harmless by construction.
    visible = y != np.maximum(x, 0)
    check_count(visible, np.where(x == 0, 0.0, p), f"k={k} {mode} output faults", Z_LAW)
    # The shape of the law: per quarter of the fault interval.
    side = np.arange(-(1 << k), 0) if mode == "negpass" else np.arange(0, 1 << k)
    for quarter in np.array_split(side, 4):
        sel = np.isin(x, quarter)
        check_count(fault[sel], p[sel], f"k={k} {mode} x in [{quarter[0]}, {quarter[-1]}]", Z_LAW)


@pytest.mark.parametrize("n", SHIFT_N)
@pytest.mark.parametrize("mode", MODES)
def test_fault_law_with_fused_shift(mode, n):
    k, shift = 8, 3
    x = np.tile(np.arange(-(1 << k) - 3, (1 << k) + 3, dtype=I64), 40)
    x = np.concatenate([x, far_values(k, 2000, np.random.default_rng(1), n)])
    x = x[np.abs(x) < (1 << 62)]
    d, y = run_circa(x, k, mode, shift, n)
    fault = d != (x >= 0)
    check_count(fault, law(x, k, mode), f"k={k} {mode} shift={shift}", Z_SHIFT)
    assert not fault[np.abs(x) >= (1 << k)].any()
    err = y - d * (x >> shift)
    assert set(np.unique(err[d == 1])) <= {0, 1}
    assert not err[d == 0].any()


def test_law_matches_the_additive_share_law_shifted_by_one():
    """Circa's paper states the law for additive shares (a + b = x); in the dealer model
    (xhat = x + r) ours is the same law at x - 1."""
    k = 6
    for x in range(-(1 << k) - 2, (1 << k) + 2):
        neg_protocols = (2**k + (x - 1) + 1) / 2**k if -(1 << k) <= x - 1 <= -1 else 0.0
        pos_protocols = (2**k - 1 - (x - 1)) / 2**k if 0 <= x - 1 < (1 << k) else 0.0
        if x == 0:  # the one exception: 0 is a "negative" for negpass never, for poszero always (harmless)
            assert ref.circa_fault_probability(0, k, "negpass") == 0.0 and neg_protocols == 1.0
            assert ref.circa_fault_probability(0, k, "poszero") == 1.0 and pos_protocols == 0.0
        else:
            assert ref.circa_fault_probability(x, k, "negpass") == neg_protocols
            assert ref.circa_fault_probability(x, k, "poszero") == pos_protocols


@pytest.mark.parametrize("n", EDGE_N)
@pytest.mark.parametrize("mode", MODES)
def test_edge_law_outside_the_precondition(mode, n):
    """Within 2^k of the ends of the n-bit range (outside the precondition) the sign can flip:
    negpass reads 2^(n-1) - 2^k <= x < 2^(n-1) as negative with probability (x mod 2^k) / 2^k,
    poszero reads -2^(n-1) <= x < -2^(n-1) + 2^k as positive with probability 1 - (x mod 2^k) / 2^k.
    The select stays exact (y = x * d): only the sign bit is affected."""
    k, reps = 6, 2000    # enough that a law off by one in x (1/64 per element) is > 10 sd off
    half = 1 << (n - 1)
    start = half - (1 << k) - 2 if mode == "negpass" else -half
    band = np.arange(start, start + (1 << k) + 2, dtype=I64)
    x = np.tile(band, reps)
    d, y = run_circa(x, k, mode, n=n)
    np.testing.assert_array_equal(y, x * d)
    fault = d != (x >= 0)
    p = np.array([ref.circa_edge_fault_probability(int(v), k, mode, n) for v in x])
    check_count(fault, p, f"n={n} k={k} {mode} edge", Z_EDGE)
    assert not fault[p == 0].any()
    for quarter in np.array_split(band[p[:band.size] > 0], 4):
        sel = np.isin(x, quarter)
        check_count(fault[sel], p[sel], f"n={n} {mode} edge x in [{quarter[0]}, {quarter[-1]}]", Z_EDGE)
