"""Garbler labels in parts (docs/gc.md, "Formats"): each part evaluated as it arrives gives what
one message gives, parts go in order and once on both sides, and refusing one consumes nothing."""
import numpy as np
import pytest

from protocols.garbled import GcSpec

from ring_shares import signed_np, split

U64 = np.uint64


@pytest.mark.parametrize("spec", [GcSpec("relu", 42, shift=12, bits=35), GcSpec("circa", 42, 8, "poszero", shift=12, bits=35),
                                  GcSpec("argmax", 42, bits=35, classes=10)])
@pytest.mark.parametrize("parts", [1, 2, 7, 301])
def test_labels_in_parts_evaluate_as_a_whole_batch(session, spec, parts):
    """The garbler's labels in parts (the online pipeline: each part evaluated as it arrives)
    give what one message gives: relu's z + r = ReLU(x) >> shift, argmax's index, Circa's
    product d·((x >> s) + e) with the dealer gate's laws; the parts carry every label once."""
    ga, ev = session
    n = 301
    rng = np.random.default_rng(parts)
    x = rng.integers(-3000, 3000, n * spec.values) << 12
    a, b = split(x, spec.l, rng)
    eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, n, m1)
    ev.receive(eb, m2)
    msgs = list(ga.label_parts(gb, b, parts))
    assert len(msgs) == parts and sum(len(m) - 56 for m in msgs) == n * spec.info["n_garb"] * 16
    done = [ev.evaluate_part(eb, m) for m in msgs]
    assert done == [False] * (parts - 1) + [True]
    out = ev.result(eb)
    mask = U64((1 << spec.l) - 1)
    if spec.circuit == "relu":
        assert np.array_equal(signed_np((out + gb.share) & mask, spec.l), np.maximum(x, 0) >> 12)
    elif spec.circuit == "argmax":
        assert np.array_equal(out, np.argmax(x.reshape(n, 10), axis=1))
    else:
        h, z_g = ga.finish(gb, *out)
        y = signed_np((ev.finish(eb, h) + z_g) & mask, spec.l)
        t = x >> 12
        assert np.all((y == 0) | (y == t) | (y == t + 1))        # d·(t + e), e ∈ {0, 1}
        assert np.all(y[x >= 1 << 20] >= t[x >= 1 << 20])         # far from zero: kept (d = 1)


def test_label_parts_are_in_order_and_once(session):
    """A part out of order, twice, or of another batch is refused on both sides, refusing
    consumes nothing, and the outputs wait for every part."""
    ga, ev = session
    spec = GcSpec("relu", 20, shift=3)
    rng = np.random.default_rng(21)
    x = rng.integers(-5000, 5000, 90)
    a, b = split(x, 20, rng)
    eb, m1 = ev.offline(spec, a)
    gb, m2 = ga.offline(spec, x.size, m1)
    ev.receive(eb, m2)
    with pytest.raises(ValueError, match="in order"):
        gb.batch.encode(b[30:60], 30)
    with pytest.raises(ValueError, match="holds 91 values"):             # more than the batch
        gb.batch.encode(np.concatenate([b, b[:1]]), 0)
    p0 = gb.batch.encode(b[:30], 0)
    with pytest.raises(ValueError, match="in order"):
        gb.batch.encode(b[:30], 0)
    p1, p2 = gb.batch.encode(b[30:60], 30), gb.batch.encode(b[60:], 60)
    with pytest.raises(ValueError, match="one-time"):
        gb.batch.encode(b[60:], 60)
    with pytest.raises(ValueError, match="a part of the batch"):
        ev._gc.evaluate(m2[0], p0)
    ev.prepare(eb)
    with pytest.raises(ValueError, match="another part"):
        ev.evaluate_part(eb, p1)
    with pytest.raises(ValueError, match="the rest of the parts"):
        ev.result(eb)
    assert not ev.evaluate_part(eb, p0)
    with pytest.raises(ValueError, match="another part"):
        ev.evaluate_part(eb, p0)
    assert not ev.evaluate_part(eb, p1) and ev.evaluate_part(eb, p2)
    z = ev.result(eb)
    assert np.array_equal(signed_np((z + gb.share) & U64((1 << 20) - 1), 20), np.maximum(x, 0) >> 3)
    with pytest.raises(ValueError, match="receive"):
        ev.evaluate_part(eb, p2)
