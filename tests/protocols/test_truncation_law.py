"""Local truncation on shares in Z_2^l: error at most one ulp, and catastrophic failure exactly
with the analytic probability |v| / 2^l (a uniform mask wraps mod 2^l), checked at a large |v|
where the rate is measurable, for the full ring and a narrower one."""
import numpy as np
import pytest

import pi_native
from protocols.fixed_point import Ring
from protocols.layers import trunc_client, trunc_server

RINGS = [Ring(64), Ring(40)]


def share(v: np.ndarray, ring: Ring):
    s = ring.reduce(pi_native.Prg(np.random.default_rng(0).bytes(16)).random_u64(v.size))
    return ring.reduce(ring.from_signed(v) + s), ring.reduce(-s)     # server a = v + s, client c = −s


@pytest.mark.parametrize("ring", RINGS, ids=lambda r: f"l{r.bits}")
def test_error_is_at_most_one_ulp_for_small_values(ring):
    rng = np.random.default_rng(1)
    b = ring.bits - 24
    v = rng.integers(-2**b, 2**b, 200_000)
    a, c = share(v, ring)
    got = ring.signed(trunc_server(a, 12, ring) + trunc_client(c, 12, ring))
    diff = got - (v >> 12)
    # Failure probability here is 2^b/2^l = 2^-24 per element: none expected in 2e5.
    assert set(np.unique(diff).tolist()) <= {0, 1}


@pytest.mark.parametrize("ring", RINGS, ids=lambda r: f"l{r.bits}")
def test_failure_rate_matches_analytic_law(ring):
    rng = np.random.default_rng(2)
    n = 200_000
    b = ring.bits - 6
    v = rng.integers(-2**b, 2**b, n)
    a, c = share(v, ring)
    got = ring.signed(trunc_server(a, 16, ring) + trunc_client(c, 16, ring))
    failed = np.abs(got - (v >> 16)) > 1
    p = np.abs(v).astype(np.float64) / 2.0**ring.bits
    expected, sd = p.sum(), np.sqrt((p * (1 - p)).sum())
    assert abs(failed.sum() - expected) <= 4 * sd, (failed.sum(), expected, sd)
    assert failed.sum() > 0
