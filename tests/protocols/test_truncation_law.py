"""Local truncation on shares: error at most one ulp, and catastrophic failure exactly with the
analytic probability |v| / 2^64 (a uniform mask wraps), checked at a large |v| where the
rate is measurable."""
import numpy as np

import pi_native
from protocols.layers import trunc_client, trunc_server
from protocols.fixed_point import from_signed, to_signed

U64 = np.uint64


def share(v: np.ndarray):
    s = pi_native.Prg(np.random.default_rng(0).bytes(16)).random_u64(v.size)
    return from_signed(v) + s, -s          # server a = v + s, client c = −s


def test_error_is_at_most_one_ulp_for_small_values():
    rng = np.random.default_rng(1)
    v = rng.integers(-2**40, 2**40, 200_000)
    a, c = share(v)
    got = to_signed(trunc_server(a, 12) + trunc_client(c, 12))
    diff = got - (v >> 12)
    # Failure probability here is 2^40/2^64 = 2^-24 per element: none expected in 2e5.
    assert set(np.unique(diff).tolist()) <= {0, 1}


def test_failure_rate_matches_analytic_law():
    rng = np.random.default_rng(2)
    n = 200_000
    v = rng.integers(-2**58, 2**58, n)
    a, c = share(v)
    got = to_signed(trunc_server(a, 16) + trunc_client(c, 16))
    failed = np.abs(got - (v >> 16)) > 1
    p = np.abs(v).astype(np.float64) / 2.0**64
    expected, sd = p.sum(), np.sqrt((p * (1 - p)).sum())
    assert abs(failed.sum() - expected) <= 4 * sd, (failed.sum(), expected, sd)
    assert failed.sum() > 0
