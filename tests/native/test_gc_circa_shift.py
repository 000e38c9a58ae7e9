"""Circa with a shift (docs/gc.md, "Circa with a shift"): shares of d·((x >> s) + e), the dealer
gate's semantics. The netlist and the protocol against the Python reference's formulas, bit for
bit; the sign's fault law (the dealer's) and the rounding law P(e = 1) = (x mod 2^s)/2^s, each
statistically (|observed − Σp| <= 4·sqrt(Σp(1 − p))); and the evaluator's view."""
import numpy as np
import pytest

import pi_native
from protocols.garbled import GcSpec, run, stored_bytes

from reference import fss_ref
from reference import gc_ref as ref
from ring_shares import mask, signed_np, split
from stats import family_z

U64 = np.uint64


def check_count(hits, p, what):
    expected, sd = p.sum(), np.sqrt((p * (1 - p)).sum())
    assert abs(int(hits.sum()) - expected) <= 4 * sd + 1e-9, f"{what}: observed {int(hits.sum())}, law {expected:.1f} ± {sd:.1f}"


def test_counts_and_sizes():
    for l, n, k, s in ((59, 35, 16, 12), (42, 35, 11, 12), (8, 5, 3, 1), (6, 4, 3, 2)):
        for mode in ("poszero", "negpass"):
            info = pi_native.gc_circuit("circa", l, k, mode, n, s)
            assert (info["and_gates"], info["andc_gates"], info["outputs"], info["n_priv"]) == (n - k + 1, 0, 2, 2)
            net = ref.build("circa", l, k, mode, n, s)
            assert (net.and_gates, net.nw) == (info["and_gates"], info["n_wires"])
            assert ref.and_count("circa", l, k, n, s) == (n - k + 1, 0)
    st = stored_bytes(GcSpec("circa", 59, 16, "poszero", shift=12, bits=35))
    assert st["tables"] == 32 * 20 + 1 and st["product"] == 32.125 and st["choice_bits"] == 20 / 8


@pytest.mark.parametrize("l,n,k,s", [(9, 6, 2, 1), (12, 8, 3, 5), (8, 8, 5, 7), (10, 5, 4, 2)])
@pytest.mark.parametrize("mode", ["poszero", "negpass"])
def test_netlist_computes_d_and_wrap(l, n, k, s, mode):
    rng = np.random.default_rng(l * 13 + n + k + s)
    net = ref.build("circa", l, k, mode, n, s)
    m, off = n - k, (1 << (n - 1)) - 1
    for _ in range(120):
        a, b = int(rng.integers(0, 1 << l)), int(rng.integers(0, 1 << l))
        rho = [int(v) for v in rng.integers(0, 2, 2)]
        d, w = ref.circa_shift_bits(a, b, l, k, mode, n, s)
        ea, gb = ref.bits(a, m, k), ref.bits((b + off) % (1 << l), m, k)
        want = [d ^ rho[0], (d & w) ^ rho[1]]
        assert ref.eval_plain(net, ea, gb, rho) == want
        got = pi_native.gc_eval_plain("circa", l, k, mode, np.array(ea, np.uint8), np.array(gb, np.uint8),
                                      np.array(rho, np.uint8), n, s)
        assert list(got) == want


@pytest.mark.parametrize("l,n,k,s", [(7, 5, 2, 1), (6, 6, 4, 3)])
def test_garbling_bit_for_bit(l, n, k, s):
    rng = np.random.default_rng(l + k + s)
    info = pi_native.gc_circuit("circa", l, k, "negpass", n, s)
    cnt, ne = 4, info["n_eval"]
    delta = bytearray(rng.bytes(16))
    delta[0] |= 1
    D = int.from_bytes(bytes(delta), "little")
    ez = np.frombuffer(rng.bytes(16 * cnt * ne), np.uint8).reshape(-1, 16).copy()
    gz = np.frombuffer(rng.bytes(16 * cnt * ne), np.uint8).reshape(-1, 16).copy()
    priv = rng.integers(0, 2, cnt * 2).astype(np.uint8)
    body = pi_native.gc_garble_raw("circa", l, k, "negpass", bytes(delta), ez, gz, priv, 5, cnt, n, s)
    stride = info["table_bytes"] + info["decode_bytes"]
    net = ref.build("circa", l, k, "negpass", n, s)
    nh = info["and_gates"]
    for i in range(cnt):
        e0 = [int.from_bytes(ez[i * ne + w].tobytes(), "little") for w in range(ne)]
        g0 = [int.from_bytes(gz[i * ne + w].tobytes(), "little") for w in range(ne)]
        tables, decode = ref.garble(net, D, e0, g0, [int(v) for v in priv[2 * i:2 * i + 2]], 5 + i * nh)
        assert body[i * stride:(i + 1) * stride] == tables + ref.pack_decode(decode)


@pytest.mark.parametrize("l,n,k,s", [(59, 35, 16, 12), (42, 35, 11, 12), (64, 64, 40, 20), (42, 20, 6, 19),
                                     (16, 9, 3, 1)])
@pytest.mark.parametrize("mode", ["poszero", "negpass"])
def test_protocol_matches_the_reference_and_the_semantics(session, l, n, k, s, mode):
    ga, ev = session
    rng = np.random.default_rng(l * n + k + s)
    lim, K, S = 1 << (n - 1), 1 << k, 1 << s
    edge = [0, 1, -1, 2, -2, K, -K, K + 1, -K - 1, K - 1, -K + 1, S, -S, S - 1, -S + 1, lim - 1, -lim,
            lim - K, -lim + K + 1, lim // 2, -lim // 2]
    x = np.concatenate([np.repeat(np.array(edge, np.int64), 8), rng.integers(-lim, lim, 1500, dtype=np.int64)])
    a, b = split(x, l, rng)
    z_e, z_g = run(ga, ev, GcSpec("circa", l, k, mode, shift=s, bits=n), a, b)
    y = (z_e + z_g) & mask(l)
    want = np.array([ref.circa_shift_output(int(p), int(q), l, k, mode, n, s) for p, q in zip(a, b)], U64)
    assert np.array_equal(y, want), "the shares add up to the reference's d·(α + β − 2^(n−s)·w)"
    ys = signed_np(y, l)
    inside = (x >= -lim + K + 1) if mode == "poszero" else (x < lim - K + 1)
    t = x >> s
    e = ys - t
    on = ys != 0
    # inside the precondition: y = d·((x >> s) + e), e ∈ {0, 1}, e = 0 when s divides x
    ok = ~on | (((e == 0) | (e == 1)) & ~((x % S == 0) & (e == 1)))
    assert ok[inside].all()
    far = inside & ((x > K) | (x < -K))                 # no fault possible: d = [x ≥ 0]
    assert np.array_equal(on[far] | (t[far] + e[far] == 0), (x[far] >= 0) | (t[far] + e[far] == 0))
    assert not on[far & (x < 0)].any()


@pytest.mark.parametrize("mode", ["poszero", "negpass"])
def test_sign_law_is_the_dealers(session, mode):
    """d faults with the dealer gate's probability at every x near zero (docs/fss.md)."""
    ga, ev = session
    l, n, k, s = 42, 30, 5, 3
    K = 1 << k
    rng = np.random.default_rng(17)
    x = np.tile(np.arange(-K - 3, K + 4, dtype=np.int64), 400)
    a, b = split(x, l, rng)
    spec = GcSpec("circa", l, k, mode, shift=s, bits=n)
    eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, x.size, m1)
    ev.receive(eb, m2)
    ev.evaluate(eb, ga.labels(gb, b))
    d = eb.e ^ gb.share[:, 0]
    faults = d != (x >= 0)
    p = np.array([fss_ref.circa_fault_probability(int(v), k, mode) for v in x])
    p = np.where(x == 0, 1.0 if mode == "poszero" else 0.0, p)   # the dealer reads 0 as negative in PosZero
    assert not faults[p == 0].any() and faults[p == 1].all()
    check_count(faults, p, "all")
    for lo, hi in ((-K - 3, -1), (0, K + 3)):
        sel = (x >= lo) & (x <= hi)
        check_count(faults[sel], p[sel], f"[{lo}, {hi}]")


def test_rounding_law(session):
    """e = 1 with probability (x mod 2^s)/2^s (unbiased stochastic rounding, as the dealer's trunc)."""
    ga, ev = session
    l, n, k, s = 42, 30, 4, 5
    S = 1 << s
    rng = np.random.default_rng(23)
    base = np.concatenate([np.arange(100 * S, 100 * S + S), np.arange(-7 * S, -6 * S)]).astype(np.int64)
    x = np.tile(base, 300)
    a, b = split(x, l, rng)
    z_e, z_g = run(ga, ev, GcSpec("circa", l, k, "poszero", shift=s, bits=n), a, b)
    ys = signed_np((z_e + z_g) & mask(l), l)
    pos = x > 0
    e = ys[pos] - (x[pos] >> s)
    assert set(np.unique(e)) <= {0, 1}
    p = (x[pos] % S) / S
    assert not e[p == 0].any()
    check_count(e, p, "rounding")
    for q in range(4):
        sel = (x[pos] % S >= q * S // 4) & (x[pos] % S < (q + 1) * S // 4)
        check_count(e[sel], p[sel], f"quarter {q}")
    assert not ys[~pos].any()        # x < −2^k: d = 0


def test_one_time_and_bad_messages(session):
    ga, ev = session
    spec = GcSpec("circa", 30, 6, "negpass", shift=4, bits=20)
    rng = np.random.default_rng(2)
    a, b = split(rng.integers(-1000, 1000, 16), 30, rng)
    eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, 16, m1)
    ev.receive(eb, m2)
    with pytest.raises(ValueError, match="already received"):
        ev.receive(eb, m2)
    out = ev.evaluate(eb, ga.labels(gb, b))
    assert len(out) == 3
    with pytest.raises(ValueError, match=r"\(f, w, v\)"):
        ga.finish(gb, *out[:2])
    with pytest.raises(ValueError, match="v must have"):
        ga.finish(gb, out[0], out[1], out[2][:3])
    h, _ = ga.finish(gb, *out)
    with pytest.raises(ValueError, match="already"):
        ga.finish(gb, *out)
    ev.finish(eb, h)
    with pytest.raises(ValueError, match="once"):
        ev.finish(eb, h)


def test_evaluator_view_independent_of_garbler_input(session):
    """Labels, tables, decode bits and the garbler's reply h: fair coins, equal for two garbler inputs."""
    ga, ev = session
    l, n, k, s = 24, 16, 4, 3
    spec = GcSpec("circa", l, k, "poszero", shift=s, bits=n)
    cnt = 3000
    a = np.zeros(cnt, U64)
    views = []
    for xv in (-3000, 3000):
        b = (np.full(cnt, xv, np.int64).view(U64) - a) & mask(l)
        eb, m1 = ev.offline(spec, a)
        gb, m2 = ga.offline(spec, cnt, m1)
        ev.receive(eb, m2)
        labels = ga.labels(gb, b)
        out = ev.evaluate(eb, labels)
        h, _ = ga.finish(gb, *out)
        info = spec.info
        lab = np.frombuffer(labels, np.uint8, offset=56).reshape(cnt, info["n_garb"], 16)
        stride = info["table_bytes"] + info["decode_bytes"]
        tab = np.frombuffer(m2[0], np.uint8, offset=64).reshape(cnt, stride)
        views.append({"label_lsb": lab[:, :, 0] & 1, "table_bits": np.unpackbits(tab[:, :64], axis=1),
                      "decode": np.unpackbits(tab[:, -1:], axis=1, bitorder="little")[:, :2],
                      "h_bits": ((h[:, None] >> np.arange(l, dtype=U64)) & U64(1)).astype(np.uint8)})
    # Three checks per view bit at a family false-alarm rate of 1e-6 (4.5 sigma per check flaked).
    sd = np.sqrt(0.25 / cnt)
    z = family_z(3 * sum(v.shape[1] for v in views[0].values()))
    for key in views[0]:
        f0, f1 = views[0][key].mean(axis=0), views[1][key].mean(axis=0)
        assert np.all(np.abs(f0 - 0.5) < z * sd) and np.all(np.abs(f1 - 0.5) < z * sd), key
        assert np.all(np.abs(f0 - f1) < z * sd * np.sqrt(2)), key
