"""Two-party products by OT (protocols.ot_mul): bit-exact against plaintext mod 2^l, the poly
site bit-exact against the dealer's poly gate with the client as its own dealer, one-time
correlations, malformed messages refused, and each side's received messages independent of
the other side's input."""
import numpy as np
import pytest
import torch
from scipy.stats import norm

import pi_native
from pi.compiler import compile_plan
from protocols import gates, ot_mul
from protocols.fixed_point import FixedPoint
from protocols.plan import CIRCA, IDENTITY, POLY, RELU
from tiny_models import PROBE_COEFFS, mixed_site_cnn, poly_probe


U64, I64 = np.uint64, np.int64
RINGS = (16, 42, 59, 64)


def ring_mask(l):
    return U64((1 << l) - 1)


def uniform(rng, n, l):
    return rng.integers(0, 2**64, n, dtype=U64, endpoint=False) & ring_mask(l)


def edges(l):
    """0, ±1, ±2^(l−1) (−2^(l−1) ≡ 2^(l−1)) and 2^(l−1) ± 1 as ring elements."""
    h = 1 << (l - 1)
    return np.array([v % (1 << l) for v in (0, 1, -1, h, h - 1, -(h - 1), 2, -2)], U64)


@pytest.fixture
def session():
    return ot_mul.connect()


def family_z(count: int, alpha: float = 1e-6) -> float:
    """Two-sided z bound for `count` simultaneous checks at family false-alarm rate alpha (Bonferroni)."""
    return float(norm.isf(alpha / (2 * count)))


# ---- the bit packing of corrections ----------------------------------------------------------

def test_pack_bits_is_the_lsb_first_stream_and_refuses_malformed_input():
    rng = np.random.default_rng(1)
    for _ in range(200):
        k, n = int(rng.integers(0, 7)), int(rng.integers(0, 12))
        w = rng.integers(0, 65, k)
        v = rng.integers(0, 2**64, (n, k), dtype=U64, endpoint=False)
        packed = pi_native.pack_bits(v, w)
        stream = "".join(format(int(v[i, j]) & ((1 << int(w[j])) - 1), f"0{w[j]}b")[::-1] if w[j] else ""
                         for i in range(n) for j in range(k))
        assert int.from_bytes(packed, "little") == (int(stream[::-1], 2) if stream else 0)
        assert len(packed) == (len(stream) + 7) // 8
        low = np.array([[int(v[i, j]) & ((1 << int(w[j])) - 1) for j in range(k)] for i in range(n)],
                       dtype=U64).reshape(n, k)
        np.testing.assert_array_equal(pi_native.unpack_bits(packed, w, n), low)
    w = np.array([3, 2])
    good = pi_native.pack_bits(np.ones((3, 2), U64), w)             # 15 bits: one padding bit
    with pytest.raises(ValueError, match="expected 2"):
        pi_native.unpack_bits(good[:-1], w, 3)
    with pytest.raises(ValueError, match="expected 2"):
        pi_native.unpack_bits(good + b"\0", w, 3)
    with pytest.raises(ValueError, match="padding"):
        pi_native.unpack_bits(bytes([good[0], good[1] | 0x80]), w, 3)
    with pytest.raises(ValueError, match=r"\[0, 64\]"):
        pi_native.pack_bits(np.ones((1, 1), U64), np.array([65]))
    with pytest.raises(TypeError):
        pi_native.pack_bits(np.ones((1, 1), I64), np.array([3]))


# ---- products a·c ----------------------------------------------------------------------------

@pytest.mark.parametrize("l", RINGS)
def test_product_is_bit_exact_mod_2l(session, l):
    """Every pair of edge values, and random pairs: the shares sum to a·c mod 2^l."""
    rng = np.random.default_rng(l)
    e = edges(l)
    a = np.concatenate([np.repeat(e, len(e)), uniform(rng, 500, l)])
    c = np.concatenate([np.tile(e, len(e)), uniform(rng, 500, l)])
    s_share, c_share = ot_mul.run_product(*session, l, a, c)
    assert int(max(s_share.max(), c_share.max())) < 1 << l or l == 64
    np.testing.assert_array_equal((s_share + c_share) & ring_mask(l), (a * c) & ring_mask(l))


def test_product_bytes_follow_the_layout(session):
    server, client = session
    for l in RINGS:
        layout = ot_mul.product_layout(l)
        cb, msg = client.offline(layout, ot_mul.bits_of(np.arange(5, dtype=U64), l))
        assert len(msg) == 16 * 128 * ((5 * l + 127) // 128)                 # IKNP: 16 B per OT, in tiles
        sb = server.offline(layout, 5, msg)
        corr = server.send(sb, np.ones((5, l), U64))
        assert len(corr) == (5 * l * (l + 1) // 2 + 7) // 8 == layout.correction_bytes(5)
        client.receive(cb, corr)


# ---- the polynomial site ---------------------------------------------------------------------

SPECS = [(16, 12, 3), (42, 40, 12), (59, 40, 24), (64, 64, 12), (64, 40, 12), (41, 40, 0), (64, 64, 0),
         (20, 19, 17), (59, 57, 12)]


def poly_case(rng, l, bits, n):
    lim = 1 << (62 if bits == 64 else bits - 1)
    x = np.concatenate([np.array([0, 1, -1, 2, -2, lim - 1, -lim, lim // 2, -(lim // 2)], I64),
                        rng.integers(-lim, lim, n, dtype=I64)])
    x = x.view(U64) & ring_mask(l)
    c = uniform(rng, len(x), l)
    coeffs = tuple(rng.integers(0, 2**64, len(x), dtype=U64, endpoint=False) for _ in range(3))
    return x, (x - c) & ring_mask(l), c, coeffs, uniform(rng, len(x), l)


def dealer_poly(spec, a, c, coeffs):
    """The dealer's poly gate (both parties' sum) with mask r_in = −a and opening x̂ = c."""
    g = gates.GateSpec("poly", shift=spec.shift, bits=spec.bits)
    key = gates.poly_key(g, U64(0) - a, np.zeros(len(a), U64), *coeffs)
    return gates.poly_eval(g, 1, key, gates.poly_opening(g, c), coeffs[0]) & ring_mask(spec.l)


@pytest.mark.parametrize("l,bits,shift", SPECS)
def test_poly_site_is_the_dealer_gate_with_the_client_as_dealer(session, l, bits, shift):
    """y − s_out equals the dealer's poly gate (gates.poly_key/poly_eval) run with mask
    r_in = −a and opening x̂ = c, bit for bit mod 2^l; and that is p(t) with t = (x >> s) + e,
    e ∈ {0, 1} (the native trunc gate's rounding, tests/protocols/test_poly_gate.py)."""
    rng = np.random.default_rng(l * 1000 + bits * 10 + shift)
    x, a, c, coeffs, s_out = poly_case(rng, l, bits, 3000)
    spec = ot_mul.PolySpec(l, shift, bits)
    y = ot_mul.run_poly(*session, spec, a, c, coeffs, s_out)
    np.testing.assert_array_equal((y - s_out) & ring_mask(l), dealer_poly(spec, a, c, coeffs))
    s = spec.geometry[1]
    xs = (x << U64(64 - l)).view(I64) >> I64(64 - l + s)          # plaintext x >> s (signed)
    c2, c1, c0 = coeffs
    ok = np.zeros(len(x), bool)
    for e in (0, 1):
        t = (xs + e).view(U64)
        ok |= ((c2 * t * t + c1 * t + c0 - y + s_out) & ring_mask(l)) == 0
    assert ok.all()


@pytest.mark.parametrize("l,bits,shift", [(42, 40, 6), (64, 64, 4)])
def test_poly_site_rounds_as_the_dealer_trunc(session, l, bits, shift):
    """The rounding bit e (t = (x >> s) + e) is 1 with probability (x mod 2^s)/2^s over the
    client's uniform share: per residue, |observed − expected| within the family z-bound."""
    rng = np.random.default_rng(7)
    reps = 400
    residues = np.arange(1 << shift)
    x = np.repeat((rng.integers(-1000, 1000) << shift) + residues, reps).astype(I64)
    xr = x.view(U64) & ring_mask(l)
    c = uniform(rng, len(x), l)
    coeffs = (np.full(len(x), 1, U64), np.zeros(len(x), U64), np.zeros(len(x), U64))   # y = t²
    s_out = uniform(rng, len(x), l)
    y = ot_mul.run_poly(*session, ot_mul.PolySpec(l, shift, bits), (xr - c) & ring_mask(l), c, coeffs, s_out)
    t0 = (x >> shift).view(U64)
    e = (((y - s_out) & ring_mask(l)) != ((t0 * t0) & ring_mask(l))).reshape(-1, reps)
    p = residues / (1 << shift)
    assert np.all(np.abs(e.mean(1) - p) <= family_z(len(residues)) * np.sqrt(np.maximum(p * (1 - p), 1e-9) / reps))
    assert not e[0].any()           # x mod 2^s = 0: exact


@pytest.mark.parametrize("l,bits,shift", [(42, 40, 12), (64, 64, 12), (16, 12, 3)])
def test_poly_messages_have_the_documented_sizes(session, l, bits, shift):
    server, client = session
    rng = np.random.default_rng(8)
    for n in (1, 37, 300):
        _x, a, c, coeffs, s_out = poly_case(rng, l, bits, n)
        n = len(c)
        spec = ot_mul.PolySpec(l, shift, bits)
        cost = ot_mul.poly_cost(spec, n)
        pcb, msg = ot_mul.poly_client_offline(client, spec, c, coeffs, s_out)
        pb = ot_mul.poly_server_offline(server, spec, n, coeffs, msg)
        corr = ot_mul.poly_server_online(server, pb, a)
        W = ot_mul.poly_client_online(client, pcb, corr)
        ot_mul.poly_server_finish(pb, W)
        assert (len(msg), len(corr), pcb.stored_bytes) == \
            (cost["offline_bytes"], cost["online_server_bytes"], cost["client_stored_bytes"])
        from protocols.fixed_point import Ring
        assert Ring(l).pack(W).nbytes == cost["online_client_bytes"]


def test_poly_spec_refuses_values_wider_than_the_ring():
    with pytest.raises(ValueError, match="more than the 40-bit ring"):
        ot_mul.PolySpec(40, 12, 40)
    with pytest.raises(ValueError, match="2..64"):
        ot_mul.PolySpec(65, 12, 40)


# ---- one-time material, malformed messages ----------------------------------------------------

def test_each_batch_is_used_once(session):
    server, client = session
    rng = np.random.default_rng(3)
    _x, a, c, coeffs, s_out = poly_case(rng, 42, 40, 20)
    spec = ot_mul.PolySpec(42, 12, 40)
    pcb, msg = ot_mul.poly_client_offline(client, spec, c, coeffs, s_out)
    pb = ot_mul.poly_server_offline(server, spec, len(c), coeffs, msg)
    corr = ot_mul.poly_server_online(server, pb, a)
    with pytest.raises(ValueError, match="one-time"):
        ot_mul.poly_server_online(server, pb, a)
    W = ot_mul.poly_client_online(client, pcb, corr)
    with pytest.raises(ValueError, match="one-time"):
        ot_mul.poly_client_online(client, pcb, corr)
    ot_mul.poly_server_finish(pb, W)
    with pytest.raises(ValueError, match="once per batch"):
        ot_mul.poly_server_finish(pb, W)
    # The same IKNP message again: the server's OTs are fresh ones, so the client's cannot match.
    pcb2, _msg2 = ot_mul.poly_client_offline(client, spec, c, coeffs, s_out)
    pb2 = ot_mul.poly_server_offline(server, spec, len(c), coeffs, msg)          # replayed
    y = ot_mul.poly_server_finish(pb2, ot_mul.poly_client_online(client, pcb2, ot_mul.poly_server_online(server, pb2, a)))
    assert np.mean(((y - s_out) & ring_mask(42)) == dealer_poly(spec, a, c, coeffs)) < 0.2   # garbage, not a reuse
    assert server.ot.consumed == server.ot.extended and client.ot.consumed == client.ot.extended


def test_malformed_messages_are_value_errors(session):
    server, client = session
    rng = np.random.default_rng(4)
    _x, a, c, coeffs, s_out = poly_case(rng, 42, 40, 7)
    n = len(c)
    spec = ot_mul.PolySpec(42, 12, 40)
    pcb, msg = ot_mul.poly_client_offline(client, spec, c, coeffs, s_out)
    for bad in (msg[:-16], msg + b"\0" * 16, b"", "text", None):
        with pytest.raises(ValueError):
            ot_mul.poly_server_offline(server, spec, n, coeffs, bad)
    pb = ot_mul.poly_server_offline(server, spec, n, coeffs, msg)
    for bad_a in (a[:-1], a.astype(I64), a | U64(1 << 50), a.reshape(1, -1)):
        with pytest.raises(ValueError):
            ot_mul.poly_server_online(server, pb, bad_a)
    corr = ot_mul.poly_server_online(server, pb, a)
    for bad in (corr[:-1], corr + b"\0", np.frombuffer(corr, np.uint8), 5):
        with pytest.raises(ValueError):
            ot_mul.poly_client_online(client, pcb, bad)
    W = ot_mul.poly_client_online(client, pcb, corr)
    for bad_w in (W[:-1], W.astype(I64), W | U64(1 << 60), W.astype(np.float64)):
        with pytest.raises(ValueError):
            ot_mul.poly_server_finish(pb, bad_w)
    with pytest.raises(ValueError, match="choice bits"):
        client.offline(spec.layout, np.full((2, spec.layout.k), 2, np.uint8))
    for bad_coeffs in (coeffs[:2], (coeffs[0].astype(np.float64), *coeffs[1:]), (coeffs[0][:-1], *coeffs[1:])):
        with pytest.raises(ValueError, match="coefficients"):
            ot_mul.poly_client_offline(client, spec, c, bad_coeffs, s_out)
    with pytest.raises(ValueError, match="weights"):
        ot_mul.Layout(16, (0, 16))


# ---- privacy: what each side receives does not depend on the other's input --------------------

def bit_matrix(v: np.ndarray, widths) -> np.ndarray:
    """(n, K) values → (n, Σ widths) bits: each column's low widths[k] bits."""
    return np.concatenate([ot_mul.bits_of(v[:, k], int(w)) for k, w in enumerate(widths) if w], axis=1)


def check_uniform_and_equal(b1: np.ndarray, b2: np.ndarray) -> None:
    """Per bit position: the frequency of ones is 1/2 under both inputs and the same for both
    (two-proportion z); every family at a false-alarm rate of 1e-6 (Bonferroni)."""
    n = b1.shape[0]
    p1, p2 = b1.mean(0), b2.mean(0)
    z_half = np.abs(np.concatenate([p1, p2]) - 0.5) / np.sqrt(0.25 / n)
    z_diff = np.abs(p1 - p2) / np.sqrt(0.5 / n)
    assert z_half.max() < family_z(z_half.size), f"a bit is not a fair coin: z = {z_half.max():.1f}"
    assert z_diff.max() < family_z(z_diff.size), f"a bit depends on the other side's input: z = {z_diff.max():.1f}"


@pytest.mark.parametrize("l,bits,shift", [(42, 40, 12), (64, 64, 12)])
def test_client_view_does_not_depend_on_the_server_share(session, l, bits, shift):
    """The corrections the client receives, for one client share c and two server shares a
    (zero, and one with q = 1 and R1 large): every bit uniform and alike for both."""
    server, client = session
    n = 4000
    spec = ot_mul.PolySpec(l, shift, bits)
    rng = np.random.default_rng(5)
    c = np.full(n, uniform(rng, 1, l)[0], U64)
    coeffs = tuple(np.full(n, v, U64) for v in (3, 5, 7))
    views = []
    for a_val in (0, ((1 << l) - 3) & int(ring_mask(l))):
        pcb, msg = ot_mul.poly_client_offline(client, spec, c, coeffs, uniform(rng, n, l))
        pb = ot_mul.poly_server_offline(server, spec, n, coeffs, msg)
        corr = ot_mul.poly_server_online(server, pb, np.full(n, a_val, U64))
        views.append(bit_matrix(pi_native.unpack_bits(corr, spec.layout.widths, n), spec.layout.widths))
        ot_mul.poly_client_online(client, pcb, corr)
    check_uniform_and_equal(*views)


@pytest.mark.parametrize("l,bits,shift,d", [(42, 40, 12, 0), (64, 64, 12, 0), (64, 38, 12, 24)])
def test_server_view_does_not_depend_on_the_client_share(session, l, bits, shift, d):
    """W, the one value the server receives online, for two client shares (all-zero, all-ones
    low bits) and one server share: uniform bits, alike for both; also shifted by d = 24 (a plan
    at 40 bits: W >> d mod 2^40). (The offline IKNP message is independent of the choice bits:
    tests/native/test_ot.py.)"""
    server, client = session
    n = 6000
    spec = ot_mul.PolySpec(l, shift, bits, out_shift=d)
    out = spec.out_bits
    rng = np.random.default_rng(6)
    a = np.full(n, 12345, U64)
    coeffs = tuple(np.full(n, v, U64) for v in (3, 5, 7))
    views = []
    for c_val in (0, int(ring_mask(out)) >> 1):
        pcb, msg = ot_mul.poly_client_offline(client, spec, np.full(n, c_val, U64), coeffs, uniform(rng, n, out))
        pb = ot_mul.poly_server_offline(server, spec, n, coeffs, msg)
        W = ot_mul.poly_client_online(client, pcb, ot_mul.poly_server_online(server, pb, a))
        views.append(ot_mul.bits_of(W, out))
        ot_mul.poly_server_finish(pb, W)
    check_uniform_and_equal(*views)


# ---- polynomial sites in the two-party engine (protocols.two_party.poly) ---------------------

def online_payload(sm, layer, arrays):
    """The layer's online bytes (both parties) without frame and array headers, its rounds and
    messages; `arrays` are the arrays it sends (for their headers)."""
    from protocols.transport.frame import HEADER_SIZE, encode_array
    (row,) = [r for r in sm.last_cost.per_layer if r["layer"] == layer and r["phase"] == "online"]
    heads = sum(HEADER_SIZE + len(encode_array(a)[0]) for a in arrays)
    return row["bytes_sent"] - heads, row["rounds"], row["messages_sent"]


@pytest.mark.parametrize("ring_bits", [49, 59, "calibrated"])
def test_two_party_poly_sites_are_the_exact_fixed_point_polynomial(ring_bits):
    """Every output is P >> d or one ulp below (the carry of the shares' dropped bits), decoded at
    the output scale 3f − d, for P = C2·X² + C1·X + C0 at 3f, X = round(x·2^12), and so is the
    dealer provider's: both within the dealer test's bound of the real polynomial (8 ulps,
    tests/protocols/test_poly_gate.py). Online: the corrections and W, one round. The plan is
    built for the two-party products' 64-bit words (d = min(2f, 64 − l)), which the dealer runs too."""
    import pi
    n = 500
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((2, 1, 1, n)))
    kw = {"ring_bits": ring_bits} if ring_bits != "calibrated" else {"ring_bits": "calibrated", "calibration": x.float()}
    plan, weights = poly_probe(n, max_ring_bits=59, poly_word_bits=64, **kw)
    (op,) = [o for o in plan.ops if o.name == "act"]
    ring, fp = plan.ring, plan.fixed_point
    X = fp.decode(fp.encode(x.numpy()), scale=0)                          # integers at scale f
    c2, c1, c0 = (fp.decode(fp.encode(v, scale=k * 12), scale=0) for v, k in zip(PROBE_COEFFS[::-1], (1, 2, 3)))
    scale = plan.tensor(op.output).scale
    d = 36 - scale
    assert d == min(24, 64 - plan.ring_bits)
    exact = np.floor((c2 * X * X + c1 * X + c0) / 2.0 ** d) / 2.0 ** scale   # P < 2^53: exact in floats
    runs = {p: pi.SecureModel(plan, weights, p) for p in ("two-party", "dealer")}
    results = {p: sm.run(x).numpy() for p, sm in runs.items()}
    for y in results.values():
        ulps = np.round((exact - y) * 2.0 ** scale)
        assert set(np.unique(ulps)) <= {0, 1}
    xv = x.numpy()
    p0, p1, p2 = PROBE_COEFFS
    assert np.abs(results["two-party"] - (p0 + p1 * xv + p2 * xv * xv)).max() < 8 * 2.0 ** -12
    spec = ot_mul.PolySpec(plan.ring_bits + d, op.shift, op.value_bits, out_shift=d)
    cost = ot_mul.poly_cost(spec, 2 * n)
    corr = np.zeros(cost["online_server_bytes"], np.uint8)
    payload, rounds, messages = online_payload(runs["two-party"], "act", [corr, ring.pack(np.zeros(2 * n, U64))])
    assert payload == cost["online_server_bytes"] + cost["online_client_bytes"]
    assert (rounds, messages) == (1, 2)


def test_two_party_mixed_sites_match_plaintext_like_the_dealer():
    """Exact, Circa, polynomial and identity sites in one layer of a small CNN, batch 3: the
    two-party output is within the bound the dealer's is held to (2^-6, the conformance
    suite's), and the two differ from each other by no more."""
    import pi
    model, x, policy = mixed_site_cnn([RELU, CIRCA, POLY, IDENTITY], circa_k=12)
    plan, weights = compile_plan(model, x[:1], site_policy=policy, fixed_point=FixedPoint(12), ring_bits="calibrated",
                                 calibration=x, max_ring_bits=59, poly_word_bits=64)
    with torch.no_grad():
        expected = model(x).double()
    ys = {p: pi.SecureModel(plan, weights, p).run(x) for p in ("two-party", "dealer")}
    for y in ys.values():
        assert float((y - expected).abs().max()) < 2.0 ** -6
    assert float((ys["two-party"] - ys["dealer"]).abs().max()) < 2.0 ** -6


def test_two_party_refuses_a_plan_for_the_dealers_wide_words():
    """A plan compiled for the dealer (polynomial sites at scale f in a 49-bit ring: 73-bit words)
    is refused by the two-party provider with one line naming the fix, not run wrong."""
    import pi
    from protocols.plan import PlanError
    plan, weights = poly_probe(8, ring_bits=49)
    with pytest.raises(PlanError, match="73-bit words.*compile the model for the two-party provider"):
        pi.SecureModel(plan, weights, "two-party").run(torch.zeros(1, 1, 1, 8))
