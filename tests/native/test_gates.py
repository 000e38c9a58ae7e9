"""FSS gates on Z_2^64: reconstruction, the error laws of the fused shifts, the reference, the API."""
import os
import pathlib
import sys

import numpy as np
import pytest

import pi_native

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from reference import fss_ref as ref  # noqa: E402

U64 = np.uint64
I64 = np.int64
LIM62 = 1 << 62


def masks(rng, n):
    return (rng.integers(0, 2**64, n, dtype=U64, endpoint=False),
            rng.integers(0, 2**64, n, dtype=U64, endpoint=False))


def values(rng, n, lo, hi, k=12):
    """Signed test values in [lo, hi): edges first, then random ones on several scales."""
    edges = [0, 1, -1, 2, -2, 1 << k, -(1 << k), (1 << k) - 1, -(1 << k) + 1, (1 << k) + 1, -(1 << k) - 1,
             1 << 40, -(1 << 40), lo, lo + 1, hi - 1, hi - 2, -1]  # -1 is the all-ones word
    edges = [e for e in edges if lo <= e < hi]
    rest = max(0, n - len(edges))
    small = rng.integers(max(lo, -(1 << 20)), min(hi, 1 << 20), rest // 2)
    wide = rng.integers(lo, hi, rest - rest // 2, dtype=I64)
    return np.concatenate([np.array(edges, I64), small, wide]).astype(I64)


def run(gate, x, r_in, r_out, **params):
    seed = os.urandom(16)
    k0, k1 = getattr(pi_native, "gen_" + gate)(seed, r_in, r_out, **params)
    xhat = x.view(U64) + r_in
    y = getattr(pi_native, "eval_" + gate)(0, k0, xhat) + getattr(pi_native, "eval_" + gate)(1, k1, xhat)
    return (y - r_out).view(I64)


def test_relu_exact_full_range():
    rng = np.random.default_rng(1)
    x = values(rng, 4000, -(1 << 63), (1 << 63) - 1)
    x = np.concatenate([x, np.array([np.iinfo(I64).min, np.iinfo(I64).max], I64)])
    r_in, r_out = masks(rng, x.size)
    np.testing.assert_array_equal(run("relu", x, r_in, r_out), np.maximum(x, 0))


@pytest.mark.parametrize("shift", [1, 8, 12, 16, 40, 61, 62, 63])
def test_relu_fused_shift_is_faithful(shift):
    rng = np.random.default_rng(shift)
    x = values(rng, 3000, -LIM62, LIM62)
    r_in, r_out = masks(rng, x.size)
    err = run("relu", x, r_in, r_out, shift=shift) - (np.maximum(x, 0) >> min(shift, 62))
    assert set(np.unique(err)) <= {0, 1}
    assert not err[x < 0].any()  # negatives give exactly 0


def test_drelu_full_range():
    rng = np.random.default_rng(2)
    x = values(rng, 4000, -(1 << 63), (1 << 63) - 1)
    x = np.concatenate([x, np.array([np.iinfo(I64).min, np.iinfo(I64).max], I64)])
    r_in, r_out = masks(rng, x.size)
    np.testing.assert_array_equal(run("drelu", x, r_in, r_out), (x >= 0).astype(I64))


@pytest.mark.parametrize("shift", [0, 1, 12, 16, 33, 62, 63])
def test_trunc_is_faithful(shift):
    rng = np.random.default_rng(10 + shift)
    x = values(rng, 3000, -LIM62, LIM62)
    r_in, r_out = masks(rng, x.size)
    err = run("trunc", x, r_in, r_out, shift=shift) - (x >> min(shift, 62))
    assert set(np.unique(err)) <= ({0} if shift == 0 else {0, 1})


@pytest.mark.parametrize("gate,shift", [("trunc", 12), ("trunc", 3), ("relu", 12), ("relu", 5)])
def test_round_up_law(gate, shift):
    """e = 1 with probability (x mod 2^s) / 2^s over the mask: unbiased stochastic rounding."""
    rng = np.random.default_rng(77)
    base = [5 << shift, -(9 << shift), 123456 << shift, 3 << 40]
    fracs = [1, (1 << shift) // 4, (1 << shift) // 2, 3 * (1 << shift) // 4, (1 << shift) - 1]
    xs = np.array([b + f for b in base for f in fracs], I64)
    if gate == "relu":
        xs = xs[xs >= 0]
    reps = 3000
    x = np.repeat(xs, reps)
    r_in, r_out = masks(rng, x.size)
    err = (run(gate, x, r_in, r_out, shift=shift) - (np.maximum(x, 0) if gate == "relu" else x) // (1 << shift))
    err = err.reshape(xs.size, reps)
    assert set(np.unique(err)) <= {0, 1}
    for i, v in enumerate(xs):
        p = ref.round_up_probability(int(v), shift)
        sd = np.sqrt(reps * p * (1 - p))
        assert abs(err[i].sum() - reps * p) <= 4 * sd + 1e-9, (v, err[i].sum(), reps * p)


def test_square_and_mul():
    rng = np.random.default_rng(3)
    n = 3000
    x = rng.integers(0, 2**64, n, dtype=U64, endpoint=False)
    y = rng.integers(0, 2**64, n, dtype=U64, endpoint=False)
    x[:4] = [0, 1, 2**64 - 1, 2**63]
    r_in, r_out = masks(rng, n)
    k0, k1 = pi_native.gen_square(os.urandom(16), r_in, r_out)
    xh = x + r_in
    np.testing.assert_array_equal(pi_native.eval_square(0, k0, xh) + pi_native.eval_square(1, k1, xh) - r_out, x * x)
    r_y = rng.integers(0, 2**64, n, dtype=U64, endpoint=False)
    k0, k1 = pi_native.gen_mul(os.urandom(16), r_in, r_y, r_out)
    yh = y + r_y
    z = pi_native.eval_mul(0, k0, xh, yh) + pi_native.eval_mul(1, k1, xh, yh) - r_out
    np.testing.assert_array_equal(z, x * y)


def circa(x, r_in, r_out, k, mode, shift=0):
    k0, k1 = pi_native.gen_circa(os.urandom(16), r_in, r_out, k=k, mode=mode, shift=shift)
    xhat = x.view(U64) + r_in
    s0, s1 = pi_native.eval_circa_sign(0, k0, xhat), pi_native.eval_circa_sign(1, k1, xhat)
    assert s0.dtype == np.uint8 and set(np.unique(s0)) <= {0, 1}
    opened = s0 ^ s1  # the one exchange of round 2
    y = pi_native.eval_circa_select(0, k0, xhat, opened) + pi_native.eval_circa_select(1, k1, xhat, opened)
    return (y - r_out).view(I64)


@pytest.mark.parametrize("mode", ["poszero", "negpass"])
@pytest.mark.parametrize("k,shift", [(0, 0), (4, 0), (12, 0), (12, 7), (40, 0), (40, 12), (62, 0)])
def test_circa_outputs(k, mode, shift):
    rng = np.random.default_rng(k * 3 + shift)
    lim = LIM62 if shift else (1 << 63) - (1 << k)
    x = values(rng, 3000, -lim, lim, k=min(k, 60))
    r_in, r_out = masks(rng, x.size)
    y = circa(x, r_in, r_out, k, mode, shift)
    passed = (x >> shift)
    far = np.abs(x) >= (1 << k)
    err = y - np.where(x >= 0, passed, 0)
    if shift == 0:
        assert not err[far].any()
    else:
        assert set(np.unique(err[far])) <= {0, 1}
    # near zero, an output is either 0 (sign read negative) or the passed value (+ rounding)
    near = ~far
    ok = (y[near] == 0) | ((y[near] - passed[near]) >= 0) & ((y[near] - passed[near]) <= (1 if shift else 0))
    assert ok.all()


GATES = {
    "relu": [{}, {"shift": 12}, {"shift": 63}],
    "drelu": [{}],
    "trunc": [{"shift": 1}, {"shift": 16}],
    "square": [{}],
    "circa": [{"k": 8, "mode": "poszero"}, {"k": 40, "mode": "negpass", "shift": 12}, {"k": 62, "mode": "poszero"}],
}


@pytest.mark.parametrize("gate,params", [(g, p) for g, ps in GATES.items() for p in ps])
def test_native_matches_reference(gate, params):
    rng = np.random.default_rng(len(gate) * 100 + sum(v for v in params.values() if isinstance(v, int)))
    seed = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    lim = LIM62 if params.get("shift") or gate == "trunc" else (1 << 63) - (1 << params.get("k", 0))
    x = values(rng, 24, -lim, lim, k=params.get("k", 12))
    r_in, r_out = masks(rng, x.size)
    r_in[:3] = [0, 2**64 - 1, 2**63]  # mask edges
    keys = getattr(pi_native, "gen_" + gate)(seed, r_in, r_out, **params)
    assert keys == getattr(ref, "gen_" + gate)(seed, r_in, r_out, **params)
    xhat = x.view(U64) + r_in
    for party in (0, 1):
        if gate == "circa":
            a = pi_native.eval_circa_sign(party, keys[party], xhat)
            np.testing.assert_array_equal(a, ref.eval_circa_sign(party, keys[party], xhat))
            opened = rng.integers(0, 2, x.size, dtype=np.uint8)
            np.testing.assert_array_equal(pi_native.eval_circa_select(party, keys[party], xhat, opened),
                                          ref.eval_circa_select(party, keys[party], xhat, opened))
        else:
            np.testing.assert_array_equal(getattr(pi_native, "eval_" + gate)(party, keys[party], xhat),
                                          getattr(ref, "eval_" + gate)(party, keys[party], xhat))


def test_mul_matches_reference():
    rng = np.random.default_rng(9)
    seed = os.urandom(16)
    r_x, r_y = masks(rng, 20)
    r_out, xh = masks(rng, 20)
    keys = pi_native.gen_mul(seed, r_x, r_y, r_out)
    assert keys == ref.gen_mul(seed, r_x, r_y, r_out)
    for party in (0, 1):
        np.testing.assert_array_equal(pi_native.eval_mul(party, keys[party], xh, r_y),
                                      ref.eval_mul(party, keys[party], xh, r_y))


def test_reference_gates_reconstruct():
    """The reference on its own computes the gates (so agreeing with it means something)."""
    rng = np.random.default_rng(4)
    seed = os.urandom(16)
    x = values(rng, 12, -LIM62, LIM62)
    r_in, r_out = masks(rng, x.size)
    xh = x.view(U64) + r_in
    for gate, params, expect in [("relu", {}, np.maximum(x, 0)), ("drelu", {}, (x >= 0).astype(I64)),
                                 ("relu", {"shift": 4}, None), ("trunc", {"shift": 4}, None)]:
        k0, k1 = getattr(ref, "gen_" + gate)(seed, r_in, r_out, **params)
        y = (getattr(ref, "eval_" + gate)(0, k0, xh) + getattr(ref, "eval_" + gate)(1, k1, xh) - r_out).view(I64)
        if expect is None:
            base = (np.maximum(x, 0) if gate == "relu" else x) >> 4
            assert set(np.unique(y - base)) <= {0, 1}
        else:
            np.testing.assert_array_equal(y, expect)


def test_gates_independent_of_thread_count():
    rng = np.random.default_rng(6)
    n = 4500
    x = values(rng, n, -LIM62, LIM62)
    r_in, r_out = masks(rng, n)
    seed = os.urandom(16)
    xh = x.view(U64) + r_in
    old = pi_native.get_num_threads()
    res = []
    try:
        for t in (1, 2, 3):
            pi_native.set_num_threads(t)
            kr = pi_native.gen_relu(seed, r_in, r_out, shift=8)
            kc = pi_native.gen_circa(seed, r_in, r_out, k=10, mode="negpass", shift=3)
            op = pi_native.eval_circa_sign(0, kc[0], xh)
            res.append((kr, kc, pi_native.eval_relu(1, kr[1], xh), op, pi_native.eval_circa_select(0, kc[0], xh, op)))
    finally:
        pi_native.set_num_threads(old)
    for r in res[1:]:
        assert r[0] == res[0][0] and r[1] == res[0][1]
        for a, b in zip(r[2:], res[0][2:]):
            np.testing.assert_array_equal(a, b)


def test_sizes_and_costs():
    kb = pi_native.key_bytes_per_element
    assert kb("relu") == 2080 and kb("relu", shift=12) == 2048
    assert kb("relu") <= 2200
    assert kb("drelu") == 16 + 63 * 24 + 8 + 16
    assert kb("trunc", shift=12) == 16 and kb("square") == 16 and kb("mul") == 24
    for k in (32, 40, 44, 48):
        assert kb("circa", k=k, mode="poszero") * 3 <= kb("relu")
    assert kb("circa", k=40, mode="negpass", shift=12) == kb("circa", k=40, mode="poszero")
    oc = pi_native.online_cost
    assert oc("relu") == {"bytes": 16.0, "rounds": 1}
    assert oc("relu", shift=12) == {"bytes": 16.0, "rounds": 1}
    assert oc("drelu") == {"bytes": 16.0, "rounds": 1}
    assert oc("trunc", shift=3) == {"bytes": 16.0, "rounds": 1}
    assert oc("square") == {"bytes": 16.0, "rounds": 1}
    assert oc("mul") == {"bytes": 32.0, "rounds": 1}
    assert oc("circa", k=40, mode="poszero") == {"bytes": 16.25, "rounds": 2}
    r = np.zeros(7, U64)
    for gate, params in [(g, p) for g, ps in GATES.items() for p in ps]:
        k0, k1 = getattr(pi_native, "gen_" + gate)(os.urandom(16), r, r, **params)
        assert len(k0) == len(k1) == 32 + 7 * kb(gate, **params)


def test_api_validation():
    seed = os.urandom(16)
    r = np.zeros(5, U64)
    with pytest.raises(TypeError, match="uint64"):
        pi_native.gen_relu(seed, r.astype(I64), r)
    with pytest.raises(TypeError, match="uint64"):
        pi_native.gen_relu(seed, r, r.astype(np.float64))
    with pytest.raises(ValueError, match="1-D"):
        pi_native.gen_relu(seed, np.zeros((5, 2), U64), np.zeros((5, 2), U64))
    with pytest.raises(ValueError, match="r_out has 4 elements"):
        pi_native.gen_relu(seed, r, r[:4].copy())
    with pytest.raises(ValueError, match="16 bytes"):
        pi_native.gen_relu(b"x" * 15, r, r)
    with pytest.raises(TypeError):
        pi_native.gen_relu("not bytes", r, r)
    with pytest.raises(ValueError, match="shift"):
        pi_native.gen_relu(seed, r, r, shift=64)
    with pytest.raises(ValueError, match="shift"):
        pi_native.gen_trunc(seed, r, r, shift=-1)
    with pytest.raises(ValueError, match="k"):
        pi_native.gen_circa(seed, r, r, k=63, mode="poszero")
    with pytest.raises(ValueError, match="mode"):
        pi_native.gen_circa(seed, r, r, k=8, mode="sometimes")
    with pytest.raises(ValueError, match="r_y"):
        pi_native.gen_mul(seed, r, r[:3].copy(), r)
    k0, _ = pi_native.gen_relu(seed, r, r)
    with pytest.raises(ValueError, match="party must be 0 or 1"):
        pi_native.eval_relu(2, k0, r)
    with pytest.raises(ValueError, match="belongs to party 0"):
        pi_native.eval_relu(1, k0, r)
    with pytest.raises(ValueError, match="gate 'relu', not 'drelu'"):
        pi_native.eval_drelu(0, k0, r)
    with pytest.raises(ValueError, match="xhat has 6 elements"):
        pi_native.eval_relu(0, k0, np.zeros(6, U64))
    with pytest.raises(TypeError, match="uint64"):
        pi_native.eval_relu(0, k0, np.zeros(5, I64))
    kc0, _ = pi_native.gen_circa(seed, r, r, k=8, mode="negpass")
    with pytest.raises(ValueError, match="bits"):
        pi_native.eval_circa_select(0, kc0, r, np.full(5, 2, np.uint8))
    with pytest.raises(TypeError):
        pi_native.eval_circa_select(0, kc0, r, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="opened has 4"):
        pi_native.eval_circa_select(0, kc0, r, np.zeros(4, np.uint8))
    pi_native.eval_circa_select(0, kc0, r, np.zeros(5, bool))  # bools are bits
    with pytest.raises(ValueError, match="unknown gate"):
        pi_native.key_bytes_per_element("softmax")
    with pytest.raises(TypeError, match="no parameter 'shift'"):
        pi_native.key_bytes_per_element("drelu", shift=3)
    with pytest.raises(TypeError, match="k and mode"):
        pi_native.online_cost("circa", k=8)
    with pytest.raises(TypeError, match="shift"):
        pi_native.online_cost("trunc")


def test_empty_batches():
    e = np.zeros(0, U64)
    k0, k1 = pi_native.gen_relu(os.urandom(16), e, e)
    assert pi_native.eval_relu(0, k0, e).shape == (0,)
    k0, k1 = pi_native.gen_circa(os.urandom(16), e, e, k=4, mode="poszero")
    assert pi_native.eval_circa_sign(1, k1, e).shape == (0,)
