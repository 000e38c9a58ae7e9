"""Circa's fault law over additive shares (docs/gc.md, "Circa: fault law"), checked statistically
through the garbled circuit and the whole protocol.

Law (uniform sharing a + b = x mod 2^l, |x| < 2^(n−1), the test on bits k..n−1, m = n − k):
  poszero: the sign reads negative for 0 <= x < 2^k with probability (2^k − 1 − x) / 2^k,
  negpass: the sign reads positive for −2^k <= x <= −1 with probability (2^k + x + 1) / 2^k,
  and never a fault elsewhere inside the precondition. Accept |observed − Σp| <= 4·sqrt(Σp(1 − p)).
"""
import numpy as np
import pytest

from protocols.garbled import GcSpec, run

from reference import fss_ref
from reference import gc_ref as ref
from ring_shares import split

U64 = np.uint64


def sign_bits(session, x, l, k, mode, rng, n=None):
    """d from the garbled sign test alone (e ⊕ ρ); n = value bits (default l)."""
    ga, ev = session
    n = l if n is None else n
    spec = GcSpec("circa", l, k, mode, bits=n)
    a, b = split(x, l, rng)
    _eb, m1 = ev.offline(spec, a)
    # the garbled circuit only: consume the product OT the protocol puts first, then garble
    ga.ot.extend(m1, x.size * (n - k + 1))
    ga.ot.random_ot(x.size, l)
    batch = ga._gc.garble("circa", l, x.size, k, mode, n)
    e = ev._gc.evaluate(batch.tables, batch.encode(b))
    return e ^ batch.output_share


def check_count(faults, p, what):
    expected, sd = p.sum(), np.sqrt((p * (1 - p)).sum())
    obs = int(faults.sum())
    assert abs(obs - expected) <= 4 * sd + 1e-9, f"{what}: observed {obs}, law {expected:.1f} ± {sd:.1f}"


@pytest.mark.parametrize("l,n", [(64, 64), (20, 20), (59, 35), (42, 17)])
@pytest.mark.parametrize("mode", ["poszero", "negpass"])
@pytest.mark.parametrize("k", [3, 6, 9])
def test_sign_fault_law(session, l, n, k, mode):
    """The law does not depend on l or n: only the 2^k values near zero can fault."""
    rng = np.random.default_rng(l * 100 + n + k)
    K = 1 << k
    reps = max(20, 24000 // (2 * K + 6))
    near = np.tile(np.arange(-K - 3, K + 3, dtype=np.int64), reps)
    lim = (1 << (n - 1)) - K
    far = rng.integers(-lim, lim, 4000, dtype=np.int64)
    far = far[(far >= K) | (far < -K)]
    x = np.concatenate([near, far, np.array([K, -K - 1, lim - 1, -lim], np.int64)])
    d = sign_bits(session, x, l, k, mode, rng, n)
    faults = d != (x >= 0)
    p = np.array([ref.circa_fault_probability(int(v), k, mode) for v in x])
    assert not faults[p == 0].any(), "a fault where the law says none can happen"
    check_count(faults, p, "all")
    inside = p > 0
    xs = x[inside]
    for q in range(4):   # per quarter of the fault interval, so a shifted law cannot pass
        lo, hi = np.quantile(xs, [q / 4, (q + 1) / 4])
        sel = inside & (x >= lo) & (x <= hi)
        check_count(faults[sel], p[sel], f"quarter {q}")


@pytest.mark.parametrize("mode", ["poszero", "negpass"])
@pytest.mark.parametrize("l,n", [(32, 32), (42, 20)])
def test_protocol_output_faults_follow_the_law(session, mode, l, n):
    """Through the whole protocol (garbled sign + the two-OT product): y = x·d, visible faults."""
    ga, ev = session
    k = 5
    K = 1 << k
    rng = np.random.default_rng(11)
    x = np.tile(np.arange(-K - 2, K + 2, dtype=np.int64), 300)
    a, b = split(x, l, rng)
    z_e, z_g = run(ga, ev, GcSpec("circa", l, k, mode, bits=n), a, b)
    y = ((z_e + z_g) & U64((1 << l) - 1)).astype(np.int64)
    y = np.where(y >= 1 << (l - 1), y - (1 << l), y)
    assert np.all((y == 0) | (y == x))
    faults = (y != np.maximum(x, 0))
    p = np.array([ref.circa_fault_probability(int(v), k, mode) if v != 0 else 0.0 for v in x])
    assert not faults[p == 0].any()
    check_count(faults, p, "output")


def test_law_is_the_dealer_law_shifted_by_one():
    """Additive shares (this setting) vs the dealer gate's masked opening (docs/fss.md):
    p_here(x) = p_dealer(x + 1) for every x except x = −1."""
    for k in (1, 4, 7):
        K = 1 << k
        for mode in ("poszero", "negpass"):
            for x in range(-K - 4, K + 4):
                here = ref.circa_fault_probability(x, k, mode)
                dealer = fss_ref.circa_fault_probability(x + 1, k, mode)
                if x == -1:
                    assert (here, dealer) == ((0.0, 1.0) if mode == "poszero" else (1.0, 0.0))
                else:
                    assert here == pytest.approx(dealer), (k, mode, x)


@pytest.mark.parametrize("mode", ["poszero", "negpass"])
def test_edge_law_at_the_ends_of_the_value_range(session, mode):
    """Outside the precondition (within 2^k of ±2^(n−1)) the test wraps only in the faulting
    direction: PosZero may pass x < −2^(n−1) + 2^k, NegPass may zero x ≥ 2^(n−1) − 2^k."""
    l, n, k = 42, 20, 4
    K, lim = 1 << k, 1 << (n - 1)
    rng = np.random.default_rng(3)
    low = np.tile(np.arange(-lim, -lim + K, dtype=np.int64), 200)
    high = np.tile(np.arange(lim - K, lim, dtype=np.int64), 200)
    d_low = sign_bits(session, low, l, k, mode, rng, n)
    d_high = sign_bits(session, high, l, k, mode, rng, n)
    if mode == "poszero":
        assert not (d_high == 0).any() and (d_low == 1).any()
    else:
        assert not (d_low == 1).any() and (d_high == 0).any()
