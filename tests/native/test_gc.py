"""Garbled ReLU circuits (docs/gc.md): netlists, bit-for-bit agreement with the Python reference,
end-to-end correctness over shares, session hygiene, malformed input, and the evaluator's view."""
import numpy as np
import pytest

import pi_native
from protocols.garbled import GcSpec, connect, run, share_bits, stored_bytes

from reference import gc_ref as ref
from ring_shares import signed_np, split
from stats import family_z

U64 = np.uint64


def rand_blocks(n, rng):
    return np.frombuffer(rng.bytes(16 * n), np.uint8).reshape(n, 16).copy()


def block_int(row):
    return int.from_bytes(row.tobytes(), "little")


def edges(l, k=0):
    vals = {0, 1, -1, 2, -2, 1 << (l - 1) - 1, -(1 << (l - 1)), (1 << (l - 1)) - 1, -(1 << (l - 1)) + 1}
    if k:
        vals |= {1 << k, -(1 << k), (1 << k) + 1, -(1 << k) - 1, (1 << k) - 1, -(1 << k) + 1}
    return np.array(sorted(v for v in vals if -(1 << (l - 1)) <= v < (1 << (l - 1))), np.int64)


SPECS = [("relu", 0, None), ("drelu", 0, None), ("circa", 3, "poszero"), ("circa", 3, "negpass"),
         ("and-layer", 0, None)]


# ---- netlists -------------------------------------------------------------------------------

@pytest.mark.parametrize("l", [2, 3, 8, 40, 64])
def test_gate_counts(l):
    relu = pi_native.gc_circuit("relu", l)
    assert (relu["and_gates"], relu["andc_gates"]) == (3 * l - 4, 1)
    assert relu["table_bytes"] == 32 * (3 * l - 4) + 16
    assert pi_native.gc_circuit("drelu", l)["and_gates"] == l - 1
    for k in {0, 1, l // 2, l - 1}:
        c = pi_native.gc_circuit("circa", l, k, "poszero")
        assert c["and_gates"] == l - k - 1 and c["table_bytes"] == 32 * (l - k - 1) and c["n_eval"] == l - k
    for circuit, k, mode in SPECS:
        if circuit == "circa" and k >= l:
            continue
        net = ref.build(circuit, l, k, mode)
        info = pi_native.gc_circuit(circuit, l, k, mode)
        assert (net.and_gates, net.andc_gates, net.nw) == (info["and_gates"], info["andc_gates"], info["n_wires"])


@pytest.mark.parametrize("l", [4, 8, 13])
def test_plain_circuits_compute_the_functions(l):
    rng = np.random.default_rng(l)
    xs = list(edges(l, 2)) + list(rng.integers(-(1 << (l - 1)), 1 << (l - 1), 60))
    for x in xs:
        a = int(rng.integers(0, 1 << l))
        b = (int(x) - a) % (1 << l)
        r = int(rng.integers(0, 1 << l))
        rp = (-r) % (1 << l)
        # relu: C++ netlist, Python netlist and the integer function agree
        want = ref.relu_shares(a, b, r, l)
        for out in (pi_native.gc_eval_plain("relu", l, 0, None, np.array(ref.bits(a, l), np.uint8),
                                            np.array(ref.bits(b, l), np.uint8), np.array(ref.bits(rp, l), np.uint8)),
                    ref.eval_plain(ref.relu_net(l), ref.bits(a, l), ref.bits(b, l), ref.bits(rp, l))):
            assert sum(int(v) << i for i, v in enumerate(out)) == want
        rho = int(rng.integers(0, 2))
        out = pi_native.gc_eval_plain("drelu", l, 0, None, np.array(ref.bits(a, l), np.uint8),
                                      np.array(ref.bits(b, l), np.uint8), np.array([rho], np.uint8))
        assert int(out[0]) ^ rho == (x >= 0)
        for k in (0, 1, 2, l - 2):
            for mode in ("poszero", "negpass"):
                m = l - k
                out = pi_native.gc_eval_plain("circa", l, k, mode, np.array(ref.bits(a, m, k), np.uint8),
                                              np.array(ref.bits(b, m, k), np.uint8), np.array([rho], np.uint8))
                assert int(out[0]) ^ rho == ref.circa_sign(a, b, l, k, mode)


# ---- garbling: C++ against the Python reference -----------------------------------------------

@pytest.mark.parametrize("circuit,k,mode", SPECS)
@pytest.mark.parametrize("l", [4, 7])
def test_garbling_bit_for_bit(circuit, k, mode, l):
    rng = np.random.default_rng(100 * l + len(circuit) + k)
    info = pi_native.gc_circuit(circuit, l, k, mode)
    n = 3
    delta = bytearray(rng.bytes(16))
    delta[0] |= 1
    ez, gz = rand_blocks(n * info["n_eval"], rng), rand_blocks(n * info["n_garb"], rng)
    priv = rng.integers(0, 2, n * info["n_priv"]).astype(np.uint8)
    base = int(rng.integers(0, 1 << 40))
    body = pi_native.gc_garble_raw(circuit, l, k, mode, bytes(delta), ez, gz, priv, base, n)
    stride = info["table_bytes"] + info["decode_bytes"]
    assert len(body) == n * stride
    net = ref.build(circuit, l, k, mode)
    D = int.from_bytes(bytes(delta), "little")
    nh = info["and_gates"] + info["andc_gates"]
    ebits = rng.integers(0, 2, (n, info["n_eval"])).astype(np.uint8)
    gbits = rng.integers(0, 2, (n, info["n_garb"])).astype(np.uint8)
    el, gl = ez.copy(), gz.copy()
    for i in range(n):
        e0 = [block_int(ez[i * info["n_eval"] + w]) for w in range(info["n_eval"])]
        g0 = [block_int(gz[i * info["n_garb"] + w]) for w in range(info["n_garb"])]
        pv = [int(v) for v in priv[i * info["n_priv"]:(i + 1) * info["n_priv"]]]
        tables, decode = ref.garble(net, D, e0, g0, pv, base + i * nh)
        assert body[i * stride:(i + 1) * stride] == tables + ref.pack_decode(decode), f"instance {i}"
        elab = [x ^ (D if v else 0) for x, v in zip(e0, ebits[i])]
        glab = [x ^ (D if v else 0) for x, v in zip(g0, gbits[i])]
        want = ref.evaluate(net, tables, decode, elab, glab, base + i * nh)
        assert want == ref.eval_plain(net, list(ebits[i]), list(gbits[i]), pv)
        for w in range(info["n_eval"]):
            el[i * info["n_eval"] + w] = np.frombuffer(elab[w].to_bytes(16, "little"), np.uint8)
        for w in range(info["n_garb"]):
            gl[i * info["n_garb"] + w] = np.frombuffer(glab[w].to_bytes(16, "little"), np.uint8)
    out = pi_native.gc_evaluate_raw(circuit, l, k, mode, body, el, gl, base, n)
    for i in range(n):
        pv = [int(v) for v in priv[i * info["n_priv"]:(i + 1) * info["n_priv"]]]
        assert list(out[i]) == ref.eval_plain(net, list(ebits[i]), list(gbits[i]), pv)


def test_hash_matches_reference():
    rng = np.random.default_rng(5)
    x, t = rand_blocks(9, rng), rand_blocks(9, rng)
    got = pi_native.gc_hash(x, t)
    for i in range(9):
        assert block_int(got[i]) == ref.H(block_int(x[i]), block_int(t[i]))


def test_lockstep_batches_match_single_instances():
    """Instance i of a batch of 21 (lanes of 8 + a tail, several threads) equals garbling it alone."""
    rng = np.random.default_rng(9)
    l, n = 16, 21
    info = pi_native.gc_circuit("relu", l)
    delta = bytearray(rng.bytes(16))
    delta[0] |= 1
    ez, gz = rand_blocks(n * l, rng), rand_blocks(n * l, rng)
    priv = rng.integers(0, 2, n * l).astype(np.uint8)
    body = pi_native.gc_garble_raw("relu", l, 0, None, bytes(delta), ez, gz, priv, 7, n)
    stride = info["table_bytes"] + info["decode_bytes"]
    nh = info["and_gates"] + 1
    for i in (0, 7, 8, 20):
        one = pi_native.gc_garble_raw("relu", l, 0, None, bytes(delta), ez[i * l:(i + 1) * l], gz[i * l:(i + 1) * l],
                                      priv[i * l:(i + 1) * l], 7 + i * nh, 1)
        assert one == body[i * stride:(i + 1) * stride]


# ---- end to end over shares ------------------------------------------------------------------

@pytest.mark.parametrize("l", [64, 40, 17, 2])
def test_exact_relu_and_drelu(session, l):
    ga, ev = session
    rng = np.random.default_rng(l)
    lim = 1 << (l - 1)
    x = np.concatenate([edges(l), rng.integers(-lim, lim, 3000, dtype=np.int64, endpoint=False)])
    a, b = split(x, l, rng)
    mask = (1 << l) - 1
    z, r = run(ga, ev, GcSpec("relu", l), a, b)
    assert np.array_equal(signed_np((z + r) & U64(mask) if l < 64 else z + r, l), np.maximum(x, 0))
    assert int(z.max()) <= mask and int(r.max()) <= mask
    e, rho = run(ga, ev, GcSpec("drelu", l), a, b)
    assert np.array_equal(e ^ rho, (x >= 0).astype(np.uint8))


@pytest.mark.parametrize("l,k", [(64, 40), (40, 16), (16, 4), (5, 2)])
@pytest.mark.parametrize("mode", ["poszero", "negpass"])
def test_circa_relu_edges_and_no_fault_region(session, l, k, mode):
    ga, ev = session
    rng = np.random.default_rng(l + k)
    lim, K = 1 << (l - 1), 1 << k
    x = np.concatenate([np.repeat(edges(l, k), 50), rng.integers(-lim, lim, 3000, dtype=np.int64, endpoint=False)])
    a, b = split(x, l, rng)
    mask = U64((1 << l) - 1) if l < 64 else U64(0xFFFF_FFFF_FFFF_FFFF)
    z_e, z_g = run(ga, ev, GcSpec("circa", l, k, mode), a, b)
    y = signed_np((z_e + z_g) & mask, l)
    assert np.all((y == 0) | (y == x)), "the output is x·d for a bit d"
    d = (y == x) & (x != 0)
    # exact away from zero and from the ends of the range (the precondition, docs/gc.md)
    inside = (x >= -lim + K) if mode == "poszero" else (x < lim - K)
    far = inside & ((x >= K) | (x < 0) if mode == "poszero" else (x >= 0) | (x < -K))
    assert np.array_equal(y[far], np.maximum(x, 0)[far])
    # the deterministic edges: x = ±2^k and 0 behave as the law says
    if mode == "poszero":
        assert np.all(y[x == K] == K) and np.all(y[x == -K] == 0) and np.all(y[x == -1] == 0)
    else:
        assert np.all(y[x == -1] == -1) and np.all(y[x == K] == K)   # x = −1 always passes (p = 1)
    # the ends of the range: the sign test wraps only in the faulting direction
    top, bottom = lim - 1, -lim
    if mode == "poszero":
        assert np.all(y[x == top] == top)
    else:
        assert np.all(y[x == bottom] == 0)
    assert d.sum() > 0


# ---- stored bytes -------------------------------------------------------------------------------

def test_stored_bytes():
    s = stored_bytes(GcSpec("relu", 64))
    assert s["tables"] == 188 * 32 + 16 + 8 and s["labels"] == 64 * 16 and s["choice_bits"] == 8
    assert s["stored"] == s["tables"] + 8 and s["with_labels"] == s["tables"] + 1024 and s["share"] == 0
    c = stored_bytes(GcSpec("circa", 64, 40, "poszero"))
    assert c["tables"] == 23 * 32 + 1 and c["labels"] == 24 * 16 and c["product"] == 16.125 and c["share"] == 8
    assert c["stored"] == 737 + 25 / 8 + 16.125 and c["with_labels"] == 737 + 24 * 16 + 16.125 + 8.125


@pytest.mark.parametrize("spec", [GcSpec("relu", 42, shift=12, bits=35), GcSpec("circa", 59, 16, "negpass", bits=35),
                                  GcSpec("argmax", 42, bits=35, classes=10)])
def test_batch_holds_what_stored_bytes_says(session, spec):
    """The evaluator's batch between offline and online holds the tables, the product OT values
    and packed bits, nothing per label: stored_bytes() times the count, plus the 64-B header and the
    rounding of packed bits."""
    ga, ev = session
    n = 200
    rng = np.random.default_rng(1)
    a, b = split(rng.integers(-1000, 1000, n * spec.values), spec.l, rng)
    eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, n, m1)
    ev.receive(eb, m2)
    held, per = eb.stored_bytes, stored_bytes(spec)
    assert held["tables"] == 64 + n * per["tables"]
    assert held["choice_bits"] == -(-n * (spec.info["n_eval"] + (spec.circuit == "circa")) // 8)
    assert held["choice_bits"] == -(-n * per["choice_bits"] // 1)
    assert held["product"] == -(-n * per["product"] // 1) and held["share"] == n * per["share"]
    assert held["one_time"] == held["tables"] + held["choice_bits"] + held["product"]
    out = ev.evaluate(eb, ga.labels(gb, b))
    if spec.circuit == "circa":
        ev.finish(eb, ga.finish(gb, *out)[0])
    assert eb.stored_bytes["one_time"] == 0 and eb.stored_bytes["share"] == 0   # all consumed


# ---- hygiene ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [0, 3])
def test_circa_batches_made_ahead(session, shift):
    """Several Circa batches offline before any is evaluated (bundles made ahead): each product
    OT is taken when the receiver's cursor reaches it, so every batch still evaluates right."""
    ga, ev = session
    spec = GcSpec("circa", 24, 4, "poszero", shift=shift, bits=16)
    rng = np.random.default_rng(12)
    made = []
    for _ in range(3):
        x = rng.integers(-3000, 3000, 40)
        x = x[np.abs(x) > 17]
        a, b = split(x, 24, rng)
        eb, m1 = ev.offline(spec, a)
        gb, m2 = ga.offline(spec, x.size, m1)
        made.append((x, b, eb, gb, m2))
    for x, b, eb, gb, m2 in made:
        ev.receive(eb, m2)
    for x, b, eb, gb, _ in made:
        out = ev.evaluate(eb, ga.labels(gb, b))
        h, z_g = ga.finish(gb, *out)
        y = signed_np((ev.finish(eb, h) + z_g) & U64((1 << 24) - 1), 24)
        e = y - (np.maximum(x, 0) >> shift)
        assert np.all((e == 0) | ((e == 1) & (x > 0) & (shift > 0)))


def test_one_time_material(session):
    ga, ev = session
    spec = GcSpec("relu", 16)
    rng = np.random.default_rng(3)
    a, b = split(rng.integers(-100, 100, 64), 16, rng)
    eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, a.size, m1)
    ev.receive(eb, m2)
    tables = m2[0]
    labels = ga.labels(gb, b)
    with pytest.raises(ValueError, match="one-time"):
        gb.batch.encode(b)
    ev.evaluate(eb, labels)
    with pytest.raises(ValueError, match="receive"):
        ev.evaluate(eb, labels)
    with pytest.raises(ValueError, match="already evaluated"):
        ev._gc.evaluate(tables, labels)
    # garbling without the evaluator's label OTs
    with pytest.raises(ValueError, match="extend"):
        ga._gc.garble("relu", 16, 1)


def test_own_labels_taken_ahead_evaluate_alike_once_for_their_batch(session):
    """take_labels (Evaluator.prepare: before the garbler's labels arrive) moves the OT cursor
    past the batch's label OTs; evaluate with them gives the outputs evaluate alone gives, and
    refuses them for another batch or a second time."""
    ga, ev = session
    spec = GcSpec("relu", 20, shift=3)
    rng = np.random.default_rng(9)
    x = rng.integers(-5000, 5000, 300)
    made = []
    for _ in range(2):
        a, b = split(x, 20, rng)
        eb, m1 = ev.offline(spec, a)
        gb, m2 = ga.offline(spec, x.size, m1)
        ev.receive(eb, m2)
        made.append((m2[0], ga.labels(gb, b), gb))
    (t1, l1, g1), (t2, l2, g2) = made
    before = ev.ot.consumed
    own1 = ev._gc.take_labels(t1)
    assert ev.ot.consumed == before + x.size * spec.info["n_eval"]
    own2 = ev._gc.take_labels(t2)
    with pytest.raises(ValueError, match="another batch"):
        ev._gc.evaluate(t1, l1, own2)
    for t, lab, gb, own in ((t1, l1, g1, own1), (t2, l2, g2, own2)):
        z = ev._gc.evaluate(t, lab, own)
        assert np.array_equal(signed_np((z + gb.share) & U64((1 << 20) - 1), 20), np.maximum(x, 0) >> 3)
    with pytest.raises(ValueError, match="used already"):
        ev._gc.evaluate(t2, l2, own2)


def test_the_garbler_drops_its_tables_once_handed_out(session):
    """Garbler.offline returns the tables to send and keeps none (freed online, tens of MB cost ms)."""
    ga, ev = session
    rng = np.random.default_rng(5)
    x = rng.integers(-100, 100, 50)
    a, b = split(x, 16, rng)
    eb, m1 = ev.offline(GcSpec("relu", 16), a)
    gb, m2 = ga.offline(GcSpec("relu", 16), a.size, m1)
    assert len(gb.batch.tables) == 0 and len(m2[0]) > 50 * 32
    z = ev.evaluate(ev.receive(eb, m2), ga.labels(gb, b))
    assert np.array_equal(signed_np((z + gb.share) & U64(0xFFFF), 16), np.maximum(x, 0))


def test_other_session_and_other_batch_rejected(session):
    ga, ev = session
    ga2, ev2 = connect()
    spec = GcSpec("drelu", 8)
    rng = np.random.default_rng(4)
    a, b = split(rng.integers(-100, 100, 10), 8, rng)
    _eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, 10, m1)
    _eb2, m1b = ev2.offline(spec, a)
    gb2, _m2b = ga2.offline(spec, 10, m1b)
    with pytest.raises(ValueError, match="another OT session"):
        ev2._gc.evaluate(m2[0], ga.labels(gb, b))
    with pytest.raises(ValueError, match="another garbled batch"):
        ev._gc.evaluate(m2[0], ga2.labels(gb2, b))


def test_circa_product_steps_are_one_time(session):
    ga, ev = session
    spec = GcSpec("circa", 16, 4, "poszero")
    rng = np.random.default_rng(6)
    a, b = split(rng.integers(-1000, 1000, 20), 16, rng)
    eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, 20, m1)
    ev.receive(eb, m2)
    f, w = ev.evaluate(eb, ga.labels(gb, b))
    h, _ = ga.finish(gb, f, w)
    with pytest.raises(ValueError, match="already"):
        ga.finish(gb, f, w)
    ev.finish(eb, h)
    with pytest.raises(ValueError, match="once"):
        ev.finish(eb, h)


# ---- malformed input --------------------------------------------------------------------------

def _fresh_batch(session, spec, n=12):
    ga, ev = session
    rng = np.random.default_rng(n)
    a, b = split(rng.integers(-50, 50, n), spec.l, rng)
    _eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, n, m1)
    return ev, m2[0], ga.labels(gb, b)


def test_malformed_tables_and_labels_raise(session):
    spec = GcSpec("relu", 8)
    ev, tables, labels = _fresh_batch(session, spec)
    bad = [
        (tables[:10], labels, "truncated"),
        (tables[:-1], labels, "truncated or padded"),
        (tables + b"\0", labels, "truncated or padded"),
        (b"XXXX" + tables[4:], labels, "magic"),
        (tables[:6] + bytes([tables[6] ^ 1]) + tables[7:], labels, "checksum"),
        (tables, labels[:-16], "truncated or padded"),
        (tables, labels[:20], "truncated"),
        (tables, labels[:17] + bytes([labels[17] ^ 1]) + labels[18:], "checksum"),
        (tables[:4] + b"\x01" + tables[5:], labels, "version"),
    ]
    for t, g, msg in bad:
        with pytest.raises(ValueError, match=msg):
            ev._gc.evaluate(t, g)
    with pytest.raises(TypeError):
        ev._gc.evaluate("tables", labels)
    with pytest.raises(TypeError):
        ev._gc.evaluate(tables, 3)
    # nothing above consumed the batch: it still evaluates
    ev._gc.evaluate(tables, labels)


def test_header_fuzz_never_crashes(session):
    spec = GcSpec("drelu", 8)
    ev, tables, labels = _fresh_batch(session, spec, 5)
    rng = np.random.default_rng(0)
    for _ in range(300):
        t = bytearray(tables)
        pos = int(rng.integers(0, 64))
        t[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(ValueError):
            ev._gc.evaluate(bytes(t), labels)
        cut = int(rng.integers(0, len(tables)))
        with pytest.raises(ValueError):
            ev._gc.evaluate(tables[:cut], labels)
    # a corrupted body is not detected (the channel authenticates) but cannot crash
    t = bytearray(tables)
    t[70] ^= 0xFF
    out = ev._gc.evaluate(bytes(t), labels)
    assert out.shape == (5,)


def test_bad_shares_and_parameters(session):
    ga, ev = session
    with pytest.raises(ValueError, match="reduced mod"):
        ev.offline(GcSpec("relu", 8), np.array([256], U64))
    with pytest.raises(TypeError, match="uint64"):
        ev.offline(GcSpec("relu", 8), np.array([1], np.int64))
    with pytest.raises(ValueError, match="l must be"):
        GcSpec("relu", 65)
    with pytest.raises(ValueError, match="k must be"):
        GcSpec("circa", 16, 16, "poszero")
    with pytest.raises(ValueError, match="mode"):
        GcSpec("circa", 16, 4, "both")
    with pytest.raises(ValueError, match="circuit"):
        GcSpec("maxpool", 16)
    rng = np.random.default_rng(1)
    a, _ = split(np.zeros(4, np.int64), 8, rng)
    _eb, m1 = ev.offline(GcSpec("relu", 8), a)
    gb, _ = ga.offline(GcSpec("relu", 8), 4, m1)
    with pytest.raises(ValueError, match="has 3 entries"):
        ga.labels(gb, np.zeros(3, U64))
    with pytest.raises(ValueError, match="reduced mod"):
        gb.batch.encode(np.full(4, 300, U64))
    with pytest.raises(ValueError, match="bytes"):
        pi_native.gc_garble_raw("relu", 4, 0, None, b"short", np.zeros((4, 16), np.uint8),
                                np.zeros((4, 16), np.uint8), np.zeros(4, np.uint8), 0, 1)
    with pytest.raises(ValueError, match="shape"):
        pi_native.gc_evaluate_raw("relu", 4, 0, None, b"\0" * 0, np.zeros((3, 16), np.uint8),
                                  np.zeros((4, 16), np.uint8), 0, 0)


# ---- the evaluator's view does not depend on the garbler's input --------------------------------

def _view_bits(session, b_value, n=4000, l=8):
    """Evaluator's view for n exact ReLUs with garbler share b fixed: the bits of the garbler's labels,
    the tables, the decode bits and the output share z (its own share a and labels are its input)."""
    ga, ev = session
    spec = GcSpec("relu", l)
    a = np.zeros(n, U64)   # fix the evaluator's input too: only b changes between the two views
    eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, n, m1)
    ev.receive(eb, m2)
    labels = ga.labels(gb, np.full(n, b_value, U64))
    z = ev.evaluate(eb, labels)
    lab = np.frombuffer(labels, np.uint8, offset=56).reshape(n, l, 16)
    tab = np.frombuffer(m2[0], np.uint8, offset=64).reshape(n, -1)
    return {"label_lsb": lab[:, :, 0] & 1, "label_bits": np.unpackbits(lab[:, :, 1:3], axis=2).reshape(n, -1),
            "table_bits": np.unpackbits(tab[:, :64], axis=1), "decode": np.unpackbits(tab[:, -1:], axis=1),
            "z_bits": ((z[:, None] >> np.arange(l, dtype=U64)) & U64(1)).astype(np.uint8)}


def test_evaluator_view_independent_of_garbler_input(session):
    # b = 0 (x = 0, ReLU 0) against b = 2^7 − 1 (x = 127 > 0, ReLU = x): every feature of the view is
    # a fair coin in both, and the per-feature frequencies agree; three checks per feature, at a
    # family false-alarm rate of 1e-6 over all of them (4.5 sigma per check failed ~1 % of correct runs).
    v0, v1 = _view_bits(session, 0), _view_bits(session, 127)
    z = family_z(3 * sum(v.shape[1] for v in v0.values()))
    for key in v0:
        f0, f1 = v0[key].mean(axis=0), v1[key].mean(axis=0)
        sd = np.sqrt(0.25 / v0[key].shape[0])
        assert np.all(np.abs(f0 - 0.5) < z * sd), key
        assert np.all(np.abs(f1 - 0.5) < z * sd), key
        assert np.all(np.abs(f0 - f1) < z * sd * np.sqrt(2)), key


def test_share_bits_layout():
    spec = GcSpec("circa", 16, 4, "poszero")
    a = np.array([0b1011_0000_0001_0000, 0xFFFF], U64)
    bits = share_bits(a, spec).reshape(2, 12)
    assert list(bits[0][:4]) == [1, 0, 0, 0] and list(bits[0][-4:]) == [1, 1, 0, 1] and bits[1].all()


def test_skipped_batch_is_discarded_not_reusable(session):
    """Evaluating a later batch first discards the earlier one's label OTs: it can no longer run."""
    ga, ev = session
    spec = GcSpec("drelu", 8)
    rng = np.random.default_rng(8)
    batches = []
    for _ in range(2):
        a, b = split(rng.integers(-100, 100, 6), 8, rng)
        eb, m1 = ev.offline(spec, a)
        gb, m2 = ga.offline(spec, 6, m1)
        ev.receive(eb, m2)
        batches.append((eb, ga.labels(gb, b), a, b, gb))
    eb2, lab2, a2, b2, gb2 = batches[1]
    e = ev.evaluate(eb2, lab2)
    assert np.array_equal(e ^ gb2.share, (signed_np((a2 + b2) & U64(255), 8) >= 0).astype(np.uint8))
    with pytest.raises(ValueError, match="later batch was evaluated first"):
        ev.evaluate(batches[0][0], batches[0][1])
