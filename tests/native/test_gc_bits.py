"""Value-bounded circuits (docs/gc.md, "Circuits"): `bits` (only share bits below it are read),
relu's `shift`, `trunc` and `argmax`. AND counts against the stated formulas, the C++ netlists
against the Python reference (plain and garbled, bit for bit), end to end over shares at edge
inputs, one-time use, malformed input, and the evaluator's view."""
import numpy as np
import pytest

import pi_native
from protocols.garbled import GcSpec, run, share_bits

from reference import gc_ref as ref
from ring_shares import mask, signed_np, split
from stats import family_z

U64 = np.uint64


def edges(n, k=0):
    lim = 1 << (n - 1)
    vals = {0, 1, -1, 2, -2, lim - 1, -lim, -lim + 1, lim - 2, lim // 2, -lim // 2}
    for e in {k, 1, n // 2, n - 2}:
        if 0 < e < n - 1:
            vals |= {1 << e, -(1 << e), (1 << e) + 1, -(1 << e) - 1, (1 << e) - 1, -(1 << e) + 1}
    return np.array(sorted(v for v in vals if -lim <= v < lim), np.int64)


def bits_of(v, n):
    return np.array(ref.bits(int(v), n), np.uint8)


# ---- AND counts ----------------------------------------------------------------------------------

COUNT_CASES = ([("relu", l, n, s, 0, 0) for l, n in ((64, 64), (59, 35), (42, 35), (8, 5), (2, 2))
                for s in sorted({0, 1, n // 2, n - 2, n - 1})]
               + [("trunc", l, n, s, 0, 0) for l, n in ((64, 64), (59, 35), (42, 35), (8, 5), (2, 2), (3, 3))
                  for s in sorted({0, 1, n // 2, n - 1})]
               + [("drelu", l, n, 0, 0, 0) for l, n in ((64, 64), (59, 35), (4, 2))]
               + [("circa", l, n, 0, k, 0) for l, n, k in ((64, 64, 40), (59, 35, 11), (42, 35, 16), (8, 4, 3))]
               + [("argmax", l, n, 0, 0, c) for l, n, c in ((42, 35, 10), (59, 34, 10), (8, 5, 2), (8, 3, 7),
                                                            (16, 4, 17), (64, 64, 3))])


@pytest.mark.parametrize("circuit,l,n,s,k,c", COUNT_CASES)
def test_and_counts_follow_the_formulas(circuit, l, n, s, k, c):
    mode = "poszero" if circuit == "circa" else None
    info = pi_native.gc_circuit(circuit, l, k, mode, n, s, c)
    want = ref.and_count(circuit, l, k, n, s, c)
    assert (info["and_gates"], info["andc_gates"]) == want
    net = ref.build(circuit, l, k, mode, n, s, c)
    assert (net.and_gates, net.andc_gates, net.nw, len(net.outputs)) == \
        (info["and_gates"], info["andc_gates"], info["n_wires"], info["outputs"])
    assert info["table_bytes"] == 32 * want[0] + 16 * want[1]
    # the value bound is what sizes the circuit: nothing depends on l beyond the re-share
    if circuit in ("drelu", "circa", "argmax"):
        assert pi_native.gc_circuit(circuit, 64, k, mode, n, s, c)["and_gates"] == info["and_gates"]


def test_stated_sizes():
    """The numbers docs/gc.md quotes."""
    def ands(*a):
        i = pi_native.gc_circuit(*a)
        return i["and_gates"], i["andc_gates"]
    assert ands("relu", 64) == (188, 1)
    assert ands("relu", 59, 0, None, 35, 12) == (77, 37)
    assert ands("trunc", 59, 0, None, 35, 12) == (56, 36)
    assert ands("circa", 59, 16, "poszero", 35) == (18, 0)
    assert ands("argmax", 42, 0, None, 35, 0, 10) == (956, 0)
    assert ands("argmax", 64, 0, None, 64, 0, 10) == (1739, 0)
    assert ands("trunc", 64, 0, None, 64, 1) == (125, 1)
    assert ands("drelu", 59, 0, None, 35) == (34, 0)
    assert ands("circa", 64, 40, "poszero") == (23, 0)


# ---- plain netlists compute the functions --------------------------------------------------------

@pytest.mark.parametrize("l,n", [(8, 8), (9, 5), (13, 6), (6, 2)])
def test_relu_trunc_netlists(l, n):
    rng = np.random.default_rng(l * 31 + n)
    for s in range(n):
        for circuit in ("relu", "trunc"):
            net = ref.build(circuit, l, 0, None, n, s)
            want_fn = ref.relu_shares if circuit == "relu" else ref.trunc_shares
            for x in list(edges(n)) + list(rng.integers(-(1 << (n - 1)), 1 << (n - 1), 8)):
                a = int(rng.integers(0, 1 << l))            # high share bits random
                b = (int(x) - a) % (1 << l)
                rp = int(rng.integers(0, 1 << l))
                off = (1 << (n - 1 - s)) if circuit == "trunc" else 0
                r = (-rp - off) % (1 << l)                  # the garbler's share (bind_gc.cpp)
                want = want_fn(a, b, r, l, n, s)
                got_c = pi_native.gc_eval_plain(circuit, l, 0, None, bits_of(a, n), bits_of(b, n), bits_of(rp, l), n, s)
                got_py = ref.eval_plain(net, ref.bits(a, n), ref.bits(b, n), ref.bits(rp, l))
                for out in (got_c, got_py):
                    assert sum(int(v) << i for i, v in enumerate(out)) == want, (circuit, l, n, s, int(x))


def argmax_cases(C, n, rng):
    lim = 1 << (n - 1)
    cases = [np.zeros(C, np.int64), np.full(C, lim - 1), np.full(C, -lim), np.full(C, -3),
             np.arange(C) - C, -np.arange(C) - 1, np.arange(C)[::-1].copy()]
    tie = rng.integers(-lim, lim, C)
    tie[[0, C - 1]] = lim - 1                                 # tie between the first and the last
    cases.append(tie)
    mid = np.full(C, -lim)
    mid[C // 2:] = 5                                          # tie in the middle: the first wins
    cases.append(mid)
    one = np.full(C, -lim)
    one[C - 1] = -lim + 1                                     # the max differs by 1 ulp, at the end
    cases.append(one)
    cases += [rng.integers(-lim, lim, C) for _ in range(6)]
    cases += [rng.integers(-2, 2, C) for _ in range(6)]      # many ties
    return [np.asarray(c, np.int64) for c in cases]


@pytest.mark.parametrize("C,n,l", [(2, 3, 5), (3, 4, 8), (5, 5, 5), (10, 6, 9)])
def test_argmax_netlist(C, n, l):
    rng = np.random.default_rng(C * 7 + n)
    net = ref.argmax_net(C, n)
    for x in argmax_cases(C, n, rng):
        a = [int(v) for v in rng.integers(0, 1 << l, C)]
        b = [(int(xv) - av) % (1 << l) for xv, av in zip(x, a)]
        ea = [bit for v in a for bit in ref.bits(v, n)]
        gb = [bit for v in b for bit in ref.bits(v, n)]
        want = ref.argmax_index(a, b, n)
        assert want == int(np.argmax(x))                     # numpy: first index on ties, too
        got_py = ref.eval_plain(net, ea, gb, [])
        got_c = pi_native.gc_eval_plain("argmax", l, 0, None, np.array(ea, np.uint8), np.array(gb, np.uint8),
                                        np.zeros(0, np.uint8), n, 0, C)
        for out in (got_py, got_c):
            assert sum(int(v) << i for i, v in enumerate(out)) == want


# ---- garbling bit for bit ------------------------------------------------------------------------

GARBLE_CASES = [("relu", 7, 5, 0, 0), ("relu", 7, 5, 2, 0), ("relu", 6, 4, 3, 0), ("trunc", 7, 5, 2, 0),
                ("trunc", 4, 4, 0, 0), ("trunc", 6, 3, 2, 0), ("argmax", 6, 3, 0, 3), ("argmax", 5, 4, 0, 5),
                ("drelu", 7, 4, 0, 0), ("circa", 7, 5, 0, 0)]


@pytest.mark.parametrize("circuit,l,n,s,C", GARBLE_CASES)
def test_garbling_bit_for_bit(circuit, l, n, s, C):
    rng = np.random.default_rng(l * 100 + n * 10 + s + C)
    k, mode = (2, "negpass") if circuit == "circa" else (0, None)
    info = pi_native.gc_circuit(circuit, l, k, mode, n, s, C)
    cnt = 3
    delta = bytearray(rng.bytes(16))
    delta[0] |= 1
    ne, ng, npv = info["n_eval"], info["n_garb"], info["n_priv"]
    ez = np.frombuffer(rng.bytes(16 * cnt * ne), np.uint8).reshape(-1, 16).copy()
    gz = np.frombuffer(rng.bytes(16 * cnt * ng), np.uint8).reshape(-1, 16).copy()
    priv = rng.integers(0, 2, cnt * npv).astype(np.uint8)
    base = int(rng.integers(0, 1 << 40))
    body = pi_native.gc_garble_raw(circuit, l, k, mode, bytes(delta), ez, gz, priv, base, cnt, n, s, C)
    stride = info["table_bytes"] + info["decode_bytes"]
    net = ref.build(circuit, l, k, mode, n, s, C)
    D = int.from_bytes(bytes(delta), "little")
    nh = info["and_gates"] + info["andc_gates"]
    el, gl = ez.copy(), gz.copy()
    want = []
    for i in range(cnt):
        e0 = [int.from_bytes(ez[i * ne + w].tobytes(), "little") for w in range(ne)]
        g0 = [int.from_bytes(gz[i * ng + w].tobytes(), "little") for w in range(ng)]
        pv = [int(v) for v in priv[i * npv:(i + 1) * npv]]
        tables, decode = ref.garble(net, D, e0, g0, pv, base + i * nh)
        assert body[i * stride:(i + 1) * stride] == tables + ref.pack_decode(decode), f"instance {i}"
        eb, gbits = rng.integers(0, 2, ne), rng.integers(0, 2, ng)
        elab = [x ^ (D if v else 0) for x, v in zip(e0, eb)]
        glab = [x ^ (D if v else 0) for x, v in zip(g0, gbits)]
        out = ref.evaluate(net, tables, decode, elab, glab, base + i * nh)
        assert out == ref.eval_plain(net, list(eb), list(gbits), pv)
        want.append(out)
        for w in range(ne):
            el[i * ne + w] = np.frombuffer(elab[w].to_bytes(16, "little"), np.uint8)
        for w in range(ng):
            gl[i * ng + w] = np.frombuffer(glab[w].to_bytes(16, "little"), np.uint8)
    got = pi_native.gc_evaluate_raw(circuit, l, k, mode, body, el, gl, base, cnt, n, s, C)
    assert [list(r) for r in got] == want


# ---- end to end over shares ----------------------------------------------------------------------

@pytest.mark.parametrize("l,n", [(42, 35), (59, 35), (64, 64), (64, 34), (12, 7)])
def test_relu_and_trunc_with_bits_and_shift(session, l, n):
    ga, ev = session
    rng = np.random.default_rng(l + n)
    lim = 1 << (n - 1)
    x = np.concatenate([np.repeat(edges(n, 12), 3), rng.integers(-lim, lim, 600, dtype=np.int64)])
    a, b = split(x, l, rng)
    for s in sorted({0, 1, 12 % n, n - 2, n - 1}):
        z, r = run(ga, ev, GcSpec("relu", l, shift=s, bits=n), a, b)
        assert np.array_equal(signed_np((z + r) & mask(l), l), np.maximum(x, 0) >> s), ("relu", s)
        z, r = run(ga, ev, GcSpec("trunc", l, shift=s, bits=n), a, b)
        assert np.array_equal(signed_np((z + r) & mask(l), l), x >> s), ("trunc", s)   # floor
        assert int(z.max()) <= int(mask(l)) and int(r.max()) <= int(mask(l))


@pytest.mark.parametrize("l,n,k", [(59, 35, 16), (42, 35, 11), (20, 9, 3)])
@pytest.mark.parametrize("mode", ["poszero", "negpass"])
def test_circa_with_bits(session, l, n, k, mode):
    """Circa reads bits k..n−1 only: exact away from zero (|x| ≥ 2^k) inside the precondition."""
    ga, ev = session
    rng = np.random.default_rng(l * n + k)
    lim, K = 1 << (n - 1), 1 << k
    x = np.concatenate([np.repeat(edges(n, k), 20), rng.integers(-lim, lim, 2000, dtype=np.int64)])
    a, b = split(x, l, rng)
    z_e, z_g = run(ga, ev, GcSpec("circa", l, k, mode, bits=n), a, b)
    y = signed_np((z_e + z_g) & mask(l), l)
    assert np.all((y == 0) | (y == x))
    inside = (x >= -lim + K) if mode == "poszero" else (x < lim - K)
    far = inside & ((x >= K) | (x < -K))
    assert np.array_equal(y[far], np.maximum(x, 0)[far])
    if mode == "poszero":
        assert np.all(y[x == lim - 1] == lim - 1) and np.all(y[x == -1] == 0)
    else:
        assert np.all(y[x == -lim] == 0) and np.all(y[x == -1] == -1)


@pytest.mark.parametrize("l,n,C", [(42, 35, 10), (59, 35, 10), (64, 64, 3), (8, 4, 7)])
def test_argmax(session, l, n, C):
    ga, ev = session
    rng = np.random.default_rng(l + C)
    xs = np.stack(argmax_cases(C, n, rng) + [rng.integers(-(1 << (n - 1)), 1 << (n - 1), C) for _ in range(40)])
    a, b = split(xs.ravel(), l, rng)
    idx, g_out = run(ga, ev, GcSpec("argmax", l, bits=n, classes=C), a, b)
    assert g_out is None
    assert idx.dtype == np.uint64 and np.array_equal(idx, np.argmax(xs, axis=1).astype(np.uint64))


# ---- hygiene and malformed input -----------------------------------------------------------------

def test_one_time_and_wrong_counts(session):
    ga, ev = session
    rng = np.random.default_rng(2)
    for spec in (GcSpec("trunc", 20, shift=3, bits=10), GcSpec("argmax", 20, bits=10, classes=4)):
        a, b = split(rng.integers(-100, 100, 8 * spec.values), 20, rng)
        eb, m1 = ev.offline(spec, a)
        gb, m2 = ga.offline(spec, 8, m1)
        ev.receive(eb, m2)
        tables = m2[0]
        with pytest.raises(ValueError, match="entries, the batch has"):
            ga.labels(gb, b[:-spec.values])
        with pytest.raises(ValueError, match="not whole instances"):       # a part: whole instances of the batch
            gb.batch.encode(np.concatenate([b, b[:spec.values]]))
        labels = ga.labels(gb, b)
        with pytest.raises(ValueError, match="one-time"):
            gb.batch.encode(b)
        ev.evaluate(eb, labels)
        with pytest.raises(ValueError, match="already evaluated"):
            ev._gc.evaluate(tables, labels)
    with pytest.raises(ValueError, match="multiple of classes"):
        ev.offline(GcSpec("argmax", 20, bits=10, classes=4), np.zeros(6, U64))


@pytest.mark.parametrize("kwargs,msg", [
    (dict(circuit="relu", l=40, bits=41), "bits must be"), (dict(circuit="relu", l=40, bits=1), "bits must be"),
    (dict(circuit="relu", l=40, bits=30, shift=30), "shift must be"), (dict(circuit="trunc", l=40, shift=-1), "shift"),
    (dict(circuit="drelu", l=40, shift=2), "takes no shift"), (dict(circuit="argmax", l=40, classes=1), "classes"),
    (dict(circuit="argmax", l=40, classes=70000), "classes"), (dict(circuit="relu", l=40, classes=3), "no classes"),
    (dict(circuit="circa", l=40, bits=20, k=20, mode="poszero"), "k must be"),
    (dict(circuit="circa", l=40, k=3, mode="poszero", bits=20, shift=20), "shift must be"),
])
def test_bad_parameters(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        GcSpec(**kwargs)


def test_bad_parameter_types():
    with pytest.raises(TypeError, match="bits"):
        GcSpec("relu", 40, bits=3.5)
    with pytest.raises(TypeError, match="shift"):
        GcSpec("relu", 40, shift="2")


def test_labels_of_another_spec_rejected_and_header_fuzz(session):
    ga, ev = session
    rng = np.random.default_rng(5)
    specs = [GcSpec("trunc", 16, shift=2, bits=10), GcSpec("trunc", 16, shift=3, bits=10)]
    a, b = split(rng.integers(-100, 100, 6), 16, rng)
    made = []
    for spec in specs:
        _eb, m1 = ev.offline(spec, a)
        gb, m2 = ga.offline(spec, 6, m1)
        made.append((m2[0], ga.labels(gb, b)))
    (t0, l0), (t1, l1) = made
    with pytest.raises(ValueError, match="another garbled batch"):
        ev._gc.evaluate(t1, l0)
    for t in (t0, t1):
        for pos in (9, 10, 11, 56):
            bad = bytearray(t)
            bad[pos] ^= 1
            with pytest.raises(ValueError):
                ev._gc.evaluate(bytes(bad), l1)
    for _ in range(200):
        bad = bytearray(l1)
        bad[int(rng.integers(0, 56))] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(ValueError):
            ev._gc.evaluate(t1, bytes(bad))
    z = ev._gc.evaluate(t1, l1)     # nothing above consumed the batch
    assert z.shape == (6,)


def test_share_bits_layout_argmax():
    spec = GcSpec("argmax", 16, bits=4, classes=3)
    a = np.array([1, 2, 0xF0F8, 15, 0, 7], U64)
    bits = share_bits(a, spec).reshape(2, 3, 4)
    assert list(bits[0, 0]) == [1, 0, 0, 0] and list(bits[0, 2]) == [0, 0, 0, 1] and list(bits[1, 0]) == [1, 1, 1, 1]


# ---- the evaluator's view does not depend on the garbler's input ---------------------------------

def _view(session, spec, a, b):
    """Evaluator's view as bits: garbler labels, tables, decode bits, and (relu/trunc) its share."""
    ga, ev = session
    n = a.size // spec.values
    eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, n, m1)
    ev.receive(eb, m2)
    labels = ga.labels(gb, b)
    out = ev.evaluate(eb, labels)
    info = spec.info
    lab = np.frombuffer(labels, np.uint8, offset=56).reshape(n, info["n_garb"], 16)
    stride = info["table_bytes"] + info["decode_bytes"]
    tab = np.frombuffer(m2[0], np.uint8, offset=64).reshape(n, stride)
    view = {"label_lsb": lab[:, :, 0] & 1, "label_bits": np.unpackbits(lab[:, :6, 1:3], axis=2).reshape(n, -1),
            "table_bits": np.unpackbits(tab[:, :64], axis=1),
            "decode": np.unpackbits(tab[:, info["table_bytes"]:], axis=1, bitorder="little")[:, :info["outputs"]]}
    if spec.circuit != "argmax":
        view["z_bits"] = ((out[:, None] >> np.arange(spec.l, dtype=U64)) & U64(1)).astype(np.uint8)
    return view, out


@pytest.mark.parametrize("spec,x0,x1", [
    (GcSpec("relu", 12, shift=3, bits=9), 0, 200),           # ReLU 0 vs 25
    (GcSpec("trunc", 12, shift=3, bits=9), -200, 200),       # −25 vs 25
    (GcSpec("argmax", 10, bits=6, classes=4), (3, -9, 1, 30), (-30, 5, 4, 31)),   # same index 3
])
def test_evaluator_view_independent_of_garbler_input(session, spec, x0, x1):
    """Fix the evaluator's share; two garbler inputs (different values, same ideal output for argmax):
    every view bit is a fair coin under both, and the frequencies agree (Bonferroni over all bits)."""
    n = 3000
    a = np.zeros(n * spec.values, U64)
    views = []
    for x in (x0, x1):
        b = (np.tile(np.asarray(x, np.int64), n).view(U64) - a) & spec.mask
        v, out = _view(session, spec, a, b)
        if spec.circuit == "argmax":
            assert np.all(out == 3)
        views.append(v)
    sd = np.sqrt(0.25 / n)
    # Bonferroni over every view bit of the three cases (3 checks each), family false-alarm rate
    # 1e-6 (tests/stats.py): 4.5 sigma per bit failed correct runs.
    z = family_z(3 * 3 * sum(v.shape[1] for v in views[0].values()))
    for key in views[0]:
        f0, f1 = views[0][key].mean(axis=0), views[1][key].mean(axis=0)
        assert np.all(np.abs(f0 - 0.5) < z * sd), key
        assert np.all(np.abs(f1 - 0.5) < z * sd), key
        assert np.all(np.abs(f0 - f1) < z * sd * np.sqrt(2)), key
