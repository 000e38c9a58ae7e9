"""The fused polynomial gate: p(x >> s) in one opening, bit-exact against the native trunc
gate, and what a polynomial site costs online in the engine: one round, x̂ >> s to the client
(w − s bits) and y0 back (one ring element): 15 B at 64 bits with s = 12, less than a ReLU's
two ring elements in any ring."""
import os

import numpy as np
import pytest
import torch

import pi
import pi_native
from protocols import gates
from tiny_models import PROBE_COEFFS, poly_probe

U64, I64 = np.uint64, np.int64


def shares(rng, n):
    return rng.integers(0, 2**64, n, dtype=U64, endpoint=False)


@pytest.mark.parametrize("n,shift", [(64, 12), (64, 0), (64, 30), (40, 12), (30, 24), (40, 63)])
def test_poly_gate_is_the_polynomial_of_the_native_trunc_gate(n, shift):
    """Same masks, same x: y − r_out equals c2·t² + c1·t + c0 mod 2^64 for t the native trunc
    gate's output on that x (its stochastic rounding included), for every element."""
    rng = np.random.default_rng(n * 100 + shift)
    m = 4000
    lim = 1 << (62 if n == 64 else n - 1)
    edges = [0, 1, -1, lim - 1, -lim, 1 << min(shift, 40), -(1 << min(shift, 40))]
    x = np.concatenate([np.array(edges, I64), rng.integers(-lim, lim, m - len(edges), dtype=I64)])
    r_in, r_out = shares(rng, m), shares(rng, m)
    c2, c1, c0 = shares(rng, m), shares(rng, m), shares(rng, m)
    xhat = x.view(U64) + r_in
    k0, k1 = pi_native.gen_trunc(os.urandom(16), r_in, np.zeros(m, U64), shift=shift, n=n)
    t = pi_native.eval_trunc(0, k0, xhat) + pi_native.eval_trunc(1, k1, xhat)
    spec = gates.GateSpec("poly", shift=shift, bits=n)
    key = gates.poly_key(spec, r_in, r_out, c2, c1, c0)
    key0 = shares(rng, key.size).reshape(key.shape)
    opened = gates.poly_opening(spec, xhat)          # what the server opens: x̂ >> s, w − s bits
    assert int(opened.max()) < 1 << gates.poly_opening_bits(spec)
    y = gates.poly_eval(spec, 0, key0, opened, None) + gates.poly_eval(spec, 1, key - key0, opened, c2)
    np.testing.assert_array_equal(y - r_out, c2 * t * t + c1 * t + c0)
    if n == 64 and shift == 12:   # and t is x >> s up to the rounding bit
        d = t.view(I64) - (x >> shift)
        assert set(np.unique(d)) <= {0, 1}


def test_poly_gate_keys_are_shares():
    """Each party's view of the key is one share of an additive sharing: the client's part is
    its seed's, the server's the difference (uniform on its own)."""
    spec = gates.GateSpec("poly", shift=12)
    assert spec.input_bits == gates.GateSpec("trunc", shift=12).input_bits == 64
    assert gates.GateSpec("poly", shift=12, bits=40).input_bits == 41
    assert gates.key_bytes(spec) == 32


def act_online(sm, elements, opening_bits):
    """The activation layer's online cost (both parties merged): the element bytes of its two
    messages (the poly opening, y0 back; frame and array headers removed), rounds."""
    from protocols.fixed_point import Ring
    from protocols.transport.frame import HEADER_SIZE, encode_array
    (row,) = [r for r in sm.last_cost.per_layer if r["layer"] == "act" and r["phase"] == "online"]
    assert row["messages_sent"] == 2
    heads = sum(len(encode_array(ring.pack(np.zeros(elements, U64)))[0]) for ring in (Ring(opening_bits), sm.plan.ring))
    return row["bytes_sent"] - 2 * HEADER_SIZE - heads, row["rounds"]


@pytest.mark.parametrize("ring_bits", [64, "calibrated"])
def test_poly_site_costs_one_opening_online_and_matches_plaintext(ring_bits):
    n = 3000
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((2, 1, 1, n)))
    kw = {"ring_bits": ring_bits} if ring_bits == 64 else {"ring_bits": "calibrated", "calibration": x.float()}
    sm = pi.SecureModel(*poly_probe(n, **kw))
    y = sm.run(x).numpy()
    c0, c1, c2 = PROBE_COEFFS
    xv = x.numpy()
    # t = x rounded to f bits (stochastic rounding: one ulp), squared: within a few ulps of p(x).
    assert np.abs(y - (c0 + c1 * xv + c2 * xv * xv)).max() < 8 * 2.0 ** -12
    (op,) = [o for o in sm.plan.ops if o.name == "act"]
    spec = gates.GateSpec("poly", shift=op.shift, bits=op.value_bits)
    bits = gates.poly_opening_bits(spec)
    payload, rounds = act_online(sm, 2 * n, bits)
    # x̂ >> s to the client (w − s bits, packed), y0 back (one ring element): one round.
    per_site = (bits + 7) // 8 + sm.plan.ring.elem_bytes
    assert payload == per_site * 2 * n           # batch 2
    assert rounds == 1
    if ring_bits == 64:
        assert per_site == 15                    # an exact ReLU: 16
    else:
        assert sm.plan.ring_bits < 64 and per_site < 2 * sm.plan.ring.elem_bytes
    # The client's key share comes from its seed: the dealer sends the client no poly key.
    from protocols import engine
    client, server = engine.deal(sm.plan, 1)
    assert not any("key" in k for k in client._items)
    assert server.nbytes >= gates.POLY_KEY_WORDS * sm.plan.ring.elem_bytes * n


def as_int(v, bits: int) -> list[int]:
    """Python integers of a wide value (words, n) mod 2^bits."""
    lo, hi = (int(x) for x in v[0]), (int(x) for x in (v[1] if len(v) > 1 else np.zeros(v.shape[1], U64)))
    return [(a + (b << 64)) % (1 << bits) for a, b in zip(lo, hi)]


@pytest.mark.parametrize("l,n,shift", [(40, 39, 12), (49, 48, 24), (56, 55, 12), (64, 63, 12), (64, 64, 0)])
def test_poly_gate_in_words_wider_than_64_bits(l, n, shift):
    """d = 2f = 24 in rings on both sides of the old 64 − 2f = 40-bit limit: p(t) is computed mod
    2^(l + 24) (up to 88 bits) and the two shifted shares sum to (P >> 24) + s_out or one less,
    mod 2^l, for P = c2·t² + c1·t + c0 as integers (t: the native trunc gate's output, its
    rounding included). Computing the words mod 2^64 instead gets the high bits wrong."""
    rng = np.random.default_rng(l * 100 + n + shift)
    m, d = 3000, 24
    lim = 1 << (62 if n == 64 else n - 1)
    edges = [0, 1, -1, lim - 1, -lim, 1 << min(shift, 40), -(1 << min(shift, 40))]
    x = np.concatenate([np.array(edges, I64), rng.integers(-lim, lim, m - len(edges), dtype=I64)])
    r_in, s_out = shares(rng, m), shares(rng, m)
    c2, c1, c0 = (rng.integers(-2**40, 2**40, m, dtype=I64).view(U64) for _ in range(3))
    xhat = x.view(U64) + r_in
    k0, k1 = pi_native.gen_trunc(os.urandom(16), r_in, np.zeros(m, U64), shift=shift, n=n)
    t = (pi_native.eval_trunc(0, k0, xhat) + pi_native.eval_trunc(1, k1, xhat)).view(I64)
    spec = gates.GateSpec("poly", shift=shift, bits=n, ring=l, out_shift=d)
    ring = gates.poly_ring(spec)
    assert ring.bits == l + d and ring.words == (2 if l + d > 64 else 1)
    key = gates.poly_key(spec, r_in, s_out, c2, c1, c0)
    key0 = np.stack([shares(rng, key[0].size).reshape(key.shape[1:]) for _ in range(ring.words)])
    key1 = ring.unpack(ring.pack(ring.sub(key, key0)), key.shape[1:])       # the server's share, stored
    assert gates.key_bytes(spec) == 4 * ((l + d + 7) // 8)
    opened = gates.poly_opening(spec, xhat)
    y = (gates.poly_eval(spec, 0, key0, opened, None) + gates.poly_eval(spec, 1, key1, opened, c2)) & U64((1 << l) - 1) \
        if l < 64 else gates.poly_eval(spec, 0, key0, opened, None) + gates.poly_eval(spec, 1, key1, opened, c2)
    sc = [int(v) for v in c2.view(I64)], [int(v) for v in c1.view(I64)], [int(v) for v in c0.view(I64)]
    for i in range(m):
        P = sc[0][i] * int(t[i]) ** 2 + sc[1][i] * int(t[i]) + sc[2][i]
        want = ((P % (1 << (l + d))) >> d) + int(s_out[i])
        assert (int(y[i]) - want) % (1 << l) in (0, (1 << l) - 1), (i, int(x[i]))
    # the key itself, against the integers: A_1 = c1 − 2·c2·R with R = r_w >> s
    w, s = gates.trunc_geometry(spec)
    R = [(int(v) % (1 << w)) >> s for v in r_in]
    assert as_int(key[:, 1], l + d) == [(sc[1][i] - 2 * sc[0][i] * R[i]) % (1 << (l + d)) for i in range(m)]


@pytest.mark.parametrize("ring_bits", [40, 49, 56, 64])
def test_dealer_poly_sites_output_at_scale_f_in_every_ring(ring_bits):
    """The dealer's gate computes in l + 2f bits, so polynomial sites output at scale f in every
    ring (before: only up to 64 − 2f = 40 bits): each output is P >> 24 or one ulp below, for the
    fixed-point P = C2·X² + C1·X + C0 at 3f, X = round(x·2^12); online still one round, with the
    same bytes per site as at 64-bit words (the opening and y0, one ring element)."""
    from protocols.fixed_point import FixedPoint
    n = 400
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((2, 1, 1, n)))
    plan, weights = poly_probe(n, ring_bits=ring_bits)
    (op,) = [o for o in plan.ops if o.name == "act"]
    assert plan.ring_bits == ring_bits and plan.tensor(op.output).scale == 12
    sm = pi.SecureModel(plan, weights)
    y = sm.run(x).numpy()
    fp = FixedPoint(12)
    X = fp.decode(fp.encode(x.numpy()), scale=0)
    c2, c1, c0 = (fp.decode(fp.encode(v, scale=k * 12), scale=0) for v, k in zip(PROBE_COEFFS[::-1], (1, 2, 3)))
    exact = np.floor((c2 * X * X + c1 * X + c0) / 2.0 ** 24) / 2.0 ** 12       # P < 2^53: exact in floats
    assert set(np.unique(np.round((exact - y) * 2.0 ** 12))) <= {0, 1}
    spec = gates.GateSpec("poly", shift=op.shift, bits=op.value_bits)
    payload, rounds = act_online(sm, 2 * n, gates.poly_opening_bits(spec))
    assert payload == ((gates.poly_opening_bits(spec) + 7) // 8 + plan.ring.elem_bytes) * 2 * n and rounds == 1


def numpy_poly_eval(spec, party, key, opened, c2):
    """The gate's evaluation in numpy's wide words (protocols.wide), as it ran before pi_native's:
    the reference the native pass must match bit for bit."""
    w, s = gates.trunc_geometry(spec)
    ring = gates.poly_ring(spec)
    off = U64(1 << (w - 2)) >> U64(s)
    zs = (opened + off) & U64((1 << (w - s)) - 1)
    H = ring.sub(ring.unsigned(zs), ring.unsigned(off))
    p = ((zs >> U64(w - s - 1)) & U64(1)).astype(bool)
    y = ring.add(ring.mul(np.where(p, key[:, 1], key[:, 0]), H), np.where(p, key[:, 3], key[:, 2]))
    if party == 1:
        y = ring.add(y, ring.mul(ring.mul(ring.signed(c2), H), H))
    return gates.poly_share_out(spec, y)


@pytest.mark.parametrize("l,n,shift,d", [(40, 39, 12, 24), (49, 48, 24, 24), (56, 55, 12, 24), (64, 63, 12, 24),
                                         (64, 64, 12, 64), (40, 39, 12, 0), (64, 64, 0, 0), (52, 51, 12, 24)])
def test_native_poly_eval_is_bit_exact(l, n, shift, d):
    """pi_native.poly_eval against the numpy wide-word evaluation and against Python integers,
    per party and element, on arbitrary key words (both words full: the pass must reduce) and
    openings including the selector's edges: (A_p·H + B_p [+ c2·H²] mod 2^(l+d)) >> d mod 2^l."""
    rng = np.random.default_rng(l * 1000 + n + shift + d)
    m = 2000
    spec = gates.GateSpec("poly", shift=shift, bits=n, ring=l, out_shift=d)
    w, s = gates.trunc_geometry(spec)
    ring = gates.poly_ring(spec)
    key = np.stack([shares(rng, 4 * m).reshape(4, m) for _ in range(ring.words)])
    opened = shares(rng, m) & U64((1 << (w - s)) - 1)
    top = 1 << (w - s)
    opened[:6] = [0, 1, top - 1, top >> 1, (top >> 1) - 1, (top >> 2)]
    c2 = rng.integers(-2**40, 2**40, m, dtype=I64).view(U64)
    c2[:3] = [0, 2**63, 2**64 - 1]
    K = l + d
    off = (1 << (w - 2)) >> s
    for party in (0, 1):
        c = c2 if party else None
        got = gates.poly_eval(spec, party, key, opened, c)
        np.testing.assert_array_equal(got, numpy_poly_eval(spec, party, key, opened, c))
        for i in range(m):
            zs = (int(opened[i]) + off) % top
            H, p = zs - off, zs >> (w - s - 1)
            word = [sum(int(key[j, r, i]) << (64 * j) for j in range(ring.words)) for r in range(4)]
            v = word[p] * H + word[2 + p] + (int(c2.view(I64)[i]) * H * H if party else 0)
            want = v % (1 << 64) if not d else ((v % (1 << K)) >> d) % (1 << l)
            assert int(got[i]) == want, (party, i)
