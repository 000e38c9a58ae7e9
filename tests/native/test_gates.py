"""FSS gates on Z_2^64: reconstruction, the error laws of the fused shifts, the reference, the API.

Over 500 lines: every gate's checks share the fixtures and helpers above them (the reference,
value generators, the evaluation helper); the sections follow docs/fss.md's order."""
import os

import numpy as np
import pytest

import pi_native

from reference import fss_ref as ref

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



def assert_evals_match_reference(gate, keys, xhat, rng):
    """Both parties' native evaluations equal the reference's, bit for bit (Circa: both steps,
    with random opened bits for the second)."""
    for party in (0, 1):
        if gate == "circa":
            np.testing.assert_array_equal(pi_native.eval_circa_sign(party, keys[party], xhat),
                                          ref.eval_circa_sign(party, keys[party], xhat))
            opened = rng.integers(0, 2, xhat.size, dtype=np.uint8)
            np.testing.assert_array_equal(pi_native.eval_circa_select(party, keys[party], xhat, opened),
                                          ref.eval_circa_select(party, keys[party], xhat, opened))
        else:
            np.testing.assert_array_equal(getattr(pi_native, "eval_" + gate)(party, keys[party], xhat),
                                          getattr(ref, "eval_" + gate)(party, keys[party], xhat))

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
    assert_evals_match_reference(gate, keys, xhat, rng)


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
    full = {"bytes": 16.0, "rounds": 1, "input_bits": 64, "bits": 128, "word_bytes": 16.0}
    assert oc("relu") == full
    assert oc("relu", shift=12) == full
    assert oc("drelu") == full
    assert oc("trunc", shift=3) == full
    assert oc("square") == full
    assert oc("mul") == {"bytes": 32.0, "rounds": 1, "input_bits": 64, "bits": 256, "word_bytes": 32.0}
    assert oc("circa", k=40, mode="poszero") == {"bytes": 16.25, "rounds": 2, "input_bits": 64, "bits": 130,
                                                  "word_bytes": 16.25}
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


# ---- input bit width n < 64 (docs/fss.md, "Input bit width n") -------------------------------------

WIDTHS = [64, 40, 33, 17]


def width(n):
    """w: low bits of x^ that relu, trunc and Circa read (drelu reads n)."""
    return 64 if n == 64 else n + 1


def junk_above(a, bits, rng):
    """a with every bit at and above `bits` replaced by random bits (the gate must ignore them)."""
    if bits >= 64:
        return a.copy()
    return (a & U64((1 << bits) - 1)) | (rng.integers(0, 2**64, a.size, dtype=U64) >> U64(bits) << U64(bits))


def run_n(gate, x, r_in, r_out, n, rng, **params):
    """Reconstructs gate(x) + r_out - r_out; also checks that bits of x^ above the gate's width are ignored."""
    k0, k1 = getattr(pi_native, "gen_" + gate)(os.urandom(16), r_in, r_out, n=n, **params)
    assert pi_native.key_info(k0)["n"] == n and k0[7] == n
    xhat = x.view(U64) + r_in
    bits = pi_native.online_cost(gate, n=n, **params)["input_bits"]
    outs = []
    for xh in (xhat, junk_above(xhat, bits, rng)):
        if gate == "circa":
            op = pi_native.eval_circa_sign(0, k0, xh) ^ pi_native.eval_circa_sign(1, k1, xh)
            y = pi_native.eval_circa_select(0, k0, xh, op) + pi_native.eval_circa_select(1, k1, xh, op)
        else:
            y = getattr(pi_native, "eval_" + gate)(0, k0, xh) + getattr(pi_native, "eval_" + gate)(1, k1, xh)
        outs.append((y - r_out).view(I64))
    np.testing.assert_array_equal(outs[0], outs[1])
    return outs[0]


def n_values(rng, count, n, lo=None, hi=None, k=12):
    """Values in [lo, hi) (default the full n-bit range), with the n-bit edges."""
    lo = -(1 << (n - 1)) if lo is None else lo
    hi = (1 << (n - 1)) if hi is None else hi
    x = values(rng, count, lo, hi, k=min(k, n - 2))
    edges = [lo, lo + 1, hi - 1, hi - 2, -(1 << (n - 2)), (1 << (n - 2)) - 1, (1 << (n - 2)), -(1 << (n - 2)) - 1]
    return np.concatenate([x, np.array([e for e in edges if lo <= e < hi], I64)])


@pytest.mark.parametrize("n", WIDTHS)
@pytest.mark.parametrize("shift", [0, 1, 12, 24, 63])
def test_relu_width_n(n, shift):
    rng = np.random.default_rng(1000 + 7 * n + shift)
    lim = LIM62 if (n == 64 and shift) else 1 << (n - 1)  # n = 64 needs the headroom bit for a shift
    x = n_values(rng, 2000, n, -lim, lim)
    r_in, r_out = masks(rng, x.size)
    r_in[:3] = [0, 2**64 - 1, 2**63]
    y = run_n("relu", x, r_in, r_out, n, rng, shift=shift)
    err = y - (np.maximum(x, 0) >> min(shift, width(n) - 2))
    assert set(np.unique(err)) <= ({0} if shift == 0 else {0, 1})
    assert not err[x < 0].any()


@pytest.mark.parametrize("n", WIDTHS + [2])
def test_drelu_width_n(n):
    rng = np.random.default_rng(2000 + n)
    x = n_values(rng, 2000, n) if n > 2 else np.array([-2, -1, 0, 1] * 50, I64)
    r_in, r_out = masks(rng, x.size)
    np.testing.assert_array_equal(run_n("drelu", x, r_in, r_out, n, rng), (x >= 0).astype(I64))


@pytest.mark.parametrize("n", WIDTHS)
@pytest.mark.parametrize("shift", [0, 1, 16, 40, 63])
def test_trunc_width_n(n, shift):
    rng = np.random.default_rng(3000 + 7 * n + shift)
    lim = LIM62 if n == 64 else 1 << (n - 1)
    x = n_values(rng, 2000, n, -lim, lim)
    r_in, r_out = masks(rng, x.size)
    err = run_n("trunc", x, r_in, r_out, n, rng, shift=shift) - (x >> min(shift, width(n) - 2))
    assert set(np.unique(err)) <= ({0} if shift == 0 else {0, 1})


@pytest.mark.parametrize("n,k", [(64, 40), (40, 12), (40, 16), (40, 20), (40, 38), (33, 0), (33, 8), (17, 4),
                                 (17, 15)])
@pytest.mark.parametrize("mode", ["poszero", "negpass"])
@pytest.mark.parametrize("shift", [0, 7])
def test_circa_width_n(n, k, mode, shift):
    rng = np.random.default_rng(4000 + 7 * n + k + shift)
    half = 1 << (n - 1)
    lo, hi = (-half + (1 << k), half) if mode == "poszero" else (-half, half - (1 << k))
    if n == 64 and shift:
        lo, hi = max(lo, -LIM62), min(hi, LIM62)
    x = n_values(rng, 2000, n, lo, hi, k=k)
    r_in, r_out = masks(rng, x.size)
    y = run_n("circa", x, r_in, r_out, n, rng, k=k, mode=mode, shift=shift)
    passed = x >> min(shift, width(n) - 2)
    far = np.abs(x) >= (1 << k)
    err = y - np.where(x >= 0, passed, 0)
    assert set(np.unique(err[far])) <= ({0} if shift == 0 else {0, 1})
    e = y[~far] - passed[~far]
    assert ((y[~far] == 0) | ((e >= 0) & (e <= (1 if shift else 0)))).all()


@pytest.mark.parametrize("n", [2, 3, 5])
def test_all_inputs_and_masks_small_n(n):
    """Every x with -2^(n-1) <= x < 2^(n-1) against every r_in mod 2^w (random bits above)."""
    rng = np.random.default_rng(5000 + n)
    w = n + 1
    X, R = np.meshgrid(np.arange(-(1 << (n - 1)), 1 << (n - 1), dtype=I64), np.arange(1 << w, dtype=U64),
                       indexing="ij")
    x, r_in = X.ravel().copy(), junk_above(R.ravel().copy(), w, rng)
    r_out = masks(rng, x.size)[1]
    for shift in (0, 1, 2, 63):
        se = min(shift, n - 1)
        err = run_n("relu", x, r_in, r_out, n, rng, shift=shift) - (np.maximum(x, 0) >> se)
        assert set(np.unique(err)) <= ({0} if shift == 0 else {0, 1}) and not err[x < 0].any()
        err = run_n("trunc", x, r_in, r_out, n, rng, shift=shift) - (x >> se)
        assert set(np.unique(err)) <= ({0} if shift == 0 else {0, 1})
    np.testing.assert_array_equal(run_n("drelu", x, r_in, r_out, n, rng), (x >= 0).astype(I64))
    for k in range(n - 1):
        for mode in ("poszero", "negpass"):
            y = run_n("circa", x, r_in, r_out, n, rng, k=k, mode=mode)
            ok = (x >= -(1 << (n - 1)) + (1 << k)) if mode == "poszero" else (x < (1 << (n - 1)) - (1 << k))
            far = ok & (np.abs(x) >= (1 << k))
            np.testing.assert_array_equal(y[far], np.maximum(x, 0)[far])
            assert ((y[ok] == 0) | (y[ok] == x[ok])).all()


N_GATES = [("relu", {}), ("relu", {"shift": 12}), ("relu", {"shift": 63}), ("drelu", {}), ("trunc", {"shift": 0}),
           ("trunc", {"shift": 9}), ("circa", {"k": 12, "mode": "poszero"}),
           ("circa", {"k": 8, "mode": "negpass", "shift": 5})]


@pytest.mark.parametrize("n", [40, 33, 17])
@pytest.mark.parametrize("gate,params", N_GATES)
def test_native_matches_reference_width_n(n, gate, params):
    rng = np.random.default_rng(6000 + n + len(gate) + params.get("shift", 0))
    seed = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    x = n_values(rng, 12, n, -(1 << (n - 1)) + (1 << 12), (1 << (n - 1)) - (1 << 12))
    r_in, r_out = masks(rng, x.size)
    r_in[:3] = [0, 2**64 - 1, 2**63]
    keys = getattr(pi_native, "gen_" + gate)(seed, r_in, r_out, n=n, **params)
    assert keys == getattr(ref, "gen_" + gate)(seed, r_in, r_out, n=n, **params)
    xhat = junk_above(x.view(U64) + r_in, 64 if gate == "drelu" else n + 1, rng)
    assert_evals_match_reference(gate, keys, xhat, rng)


@pytest.mark.parametrize("ring", [42, 33, 17, 8])
@pytest.mark.parametrize("gate,params", N_GATES)
def test_output_ring(ring, gate, params):
    """Keys for the output ring Z_(2^ring) store each ring word in ceil(ring/8) bytes: the same
    bytes as the reference's, the header says the ring, and each party's share equals, mod
    2^ring, its share under the full-ring keys from the same seed (so the reconstruction is
    that of the full ring's, mod 2^ring)."""
    n = min(ring - 1, 40)
    if gate == "circa" and params["k"] > n - 2:
        params = {**params, "k": n - 2}
    rng = np.random.default_rng(7000 + ring + len(gate) + params.get("shift", 0))
    seed = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    x = n_values(rng, 400, n, -(1 << (n - 1)) + (1 << params.get("k", 0)), (1 << (n - 1)) - (1 << params.get("k", 0)))
    r_in, r_out = masks(rng, x.size)
    keys = getattr(pi_native, "gen_" + gate)(seed, r_in, r_out, n=n, ring=ring, **params)
    full = getattr(pi_native, "gen_" + gate)(seed, r_in, r_out, n=n, **params)
    small = 12     # elements checked against the (slow) reference
    ref_keys = getattr(ref, "gen_" + gate)(seed, r_in[:small], r_out[:small], n=n, ring=ring, **params)
    info = pi_native.key_info(keys[0])
    assert info["ring"] == ring and keys[0][24] == ring
    assert info["bytes_per_element"] == pi_native.key_bytes_per_element(gate, n=n, ring=ring, **params) \
        == ref.key_bytes_per_element(gate, n=n, ring=ring, **params) < pi_native.key_info(full[0])["bytes_per_element"]
    head = 32 + small * info["bytes_per_element"]
    for party in (0, 1):    # the first elements, byte for byte (the header's count differs)
        assert keys[party][32:head] == ref_keys[party][32:]
    xhat = x.view(U64) + r_in
    low = U64((1 << ring) - 1)
    opened = None
    if gate == "circa":
        opened = pi_native.eval_circa_sign(0, keys[0], xhat) ^ pi_native.eval_circa_sign(1, keys[1], xhat)
        np.testing.assert_array_equal(opened, pi_native.eval_circa_sign(0, full[0], xhat)
                                      ^ pi_native.eval_circa_sign(1, full[1], xhat))
    for party in (0, 1):
        if gate == "circa":
            y, y64 = (pi_native.eval_circa_select(party, k[party], xhat, opened) for k in (keys, full))
        else:
            y, y64 = (getattr(pi_native, "eval_" + gate)(party, k[party], xhat) for k in (keys, full))
        np.testing.assert_array_equal(y & low, y64 & low)
    assert_evals_match_reference(gate, ref_keys, xhat[:small], rng)


@pytest.mark.parametrize("n", [40, 17])
def test_keys_ignore_mask_bits_above_the_width(n):
    """The dealer only uses r_in mod 2^w: keys are the same for masks that agree on the low w bits."""
    rng = np.random.default_rng(n)
    seed = os.urandom(16)
    r_in, r_out = masks(rng, 50)
    for gate, params, w in [("relu", {"shift": 3}, n + 1), ("drelu", {}, n), ("trunc", {"shift": 5}, n + 1),
                            ("circa", {"k": 6, "mode": "negpass", "shift": 2}, n + 1)]:
        gen = getattr(pi_native, "gen_" + gate)
        assert gen(seed, r_in, r_out, n=n, **params) == gen(seed, junk_above(r_in, w, rng), r_out, n=n, **params)
        assert gen(seed, r_in, r_out, n=n, **params) != gen(seed, r_in ^ U64(1 << (w - 1)), r_out, n=n, **params)


def test_n64_is_the_default_and_unchanged():
    seed = os.urandom(16)
    rng = np.random.default_rng(8)
    r_in, r_out = masks(rng, 20)
    for gate, params in [("relu", {}), ("relu", {"shift": 5}), ("drelu", {}), ("trunc", {"shift": 4}),
                         ("circa", {"k": 30, "mode": "poszero"})]:
        gen = getattr(pi_native, "gen_" + gate)
        assert gen(seed, r_in, r_out, **params) == gen(seed, r_in, r_out, n=64, **params)
        assert pi_native.key_bytes_per_element(gate, **params) == pi_native.key_bytes_per_element(gate, n=64,
                                                                                                  **params)


BASIC_N = [("relu", {}), ("drelu", {}), ("trunc", {"shift": 2}), ("circa", {"k": 0, "mode": "poszero"})]


def test_sizes_and_costs_width_n():
    kb, oc = pi_native.key_bytes_per_element, pi_native.online_cost
    # n = 40 (LLAMA-style): relu on a 39-bit DCF, drelu 39 bits, Circa's bit DCF on m - 1 = n - k - 1 bits
    assert kb("relu", n=40) == kb("relu", n=40, shift=12) == 16 + 39 * 32 + 16 + 32 == 1312
    assert kb("drelu", n=40) == 16 + 39 * 24 + 8 + 16 == 976
    assert kb("trunc", n=40, shift=12) == 16
    assert [kb("circa", n=40, k=k, mode="poszero") for k in (12, 16, 20)] == [408, 344, 280]
    for n in range(2, 65):
        ds = 63 if n == 64 else n - 1
        assert kb("relu", n=n) == 16 + ds * 32 + 48
        assert kb("relu", n=n, shift=1) == 16 + (62 if n == 64 else n - 1) * 32 + 48
        assert kb("drelu", n=n) == 16 + (n - 1) * 24 + 24
        for k in {0, (n - 2) // 2, n - 2}:
            m1 = n - k - 1
            assert kb("circa", n=n, k=k, mode="negpass") == 16 + 16 * (m1 - min(m1, 7)) + 24 + 48
            assert kb("circa", n=n, k=k, mode="negpass") == ref.key_bytes_per_element("circa", n=n, k=k)
        assert kb("relu", n=n, shift=3) == ref.key_bytes_per_element("relu", n=n, shift=3)
        for gate, params in BASIC_N:
            assert oc(gate, n=n, **params) == ref.online_cost(gate, n=n)
    assert oc("relu", n=40) == {"bytes": 12.0, "rounds": 1, "input_bits": 41, "bits": 82, "word_bytes": 16.0}
    assert oc("drelu", n=40) == {"bytes": 10.0, "rounds": 1, "input_bits": 40, "bits": 80, "word_bytes": 16.0}
    assert oc("trunc", n=33, shift=3) == {"bytes": 10.0, "rounds": 1, "input_bits": 34, "bits": 68,
                                          "word_bytes": 16.0}
    assert oc("circa", n=40, k=16, mode="poszero") == {"bytes": 12.25, "rounds": 2, "input_bits": 41, "bits": 84,
                                                        "word_bytes": 16.25}
    assert oc("relu", n=63)["input_bits"] == 64 and oc("drelu", n=63)["input_bits"] == 63
    r = np.zeros(3, U64)
    for gate, params in N_GATES:
        k0, _ = getattr(pi_native, "gen_" + gate)(os.urandom(16), r, r, n=33, **params)
        assert len(k0) == 32 + 3 * kb(gate, n=33, **params)


def test_width_n_validation():
    seed = os.urandom(16)
    r = np.zeros(4, U64)
    for bad in (0, 1, 65, 128, -3):
        for gate, params in BASIC_N:
            with pytest.raises(ValueError, match=r"n must be in \[2, 64\]"):
                getattr(pi_native, "gen_" + gate)(seed, r, r, n=bad, **params)
            with pytest.raises(ValueError, match="n must be in"):
                pi_native.key_bytes_per_element(gate, n=bad, **params)
            with pytest.raises(ValueError, match="n must be in"):
                pi_native.online_cost(gate, n=bad, **params)
    with pytest.raises(ValueError, match=r"\[0, 38\] for n=40"):
        pi_native.gen_circa(seed, r, r, k=39, mode="poszero", n=40)
    pi_native.gen_circa(seed, r, r, k=38, mode="poszero", n=40)
    with pytest.raises(ValueError, match=r"\[0, 0\] for n=2"):
        pi_native.key_bytes_per_element("circa", k=1, mode="negpass", n=2)
    with pytest.raises(TypeError):
        pi_native.gen_relu(seed, r, r, n=40.0)
    with pytest.raises(TypeError):
        pi_native.key_bytes_per_element("relu", n=True)
    with pytest.raises(TypeError, match="no parameter 'n'"):
        pi_native.key_bytes_per_element("square", n=40)
    with pytest.raises(TypeError, match="no parameter 'n'"):
        pi_native.online_cost("mul", n=40)
    with pytest.raises(TypeError):
        pi_native.gen_square(seed, r, r, n=40)
