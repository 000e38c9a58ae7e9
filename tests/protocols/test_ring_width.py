"""The ring width l as a plan parameter: the ring arithmetic, what crosses the wire and what
the parties store at l < 64, decoding of negative values, the plan's range checks, and the
width pi.compile derives from calibration. (The conformance, privacy and truncation-law
suites run at two widths as well.)"""

import numpy as np
import pytest
import torch
import two_party
from torch import nn

import pi
from pi.compiler import compile_plan
from protocols.fixed_point import FixedPoint, Ring
from protocols.material import plan_digest
from protocols.plan import POLY, Plan, PlanBuilder, PlanError
from protocols.transport.channel import InProcessChannel
from protocols.transport.frame import ARRAY_HEADER, HEADER_SIZE

U64 = np.uint64


# -- the ring ------------------------------------------------------------------------------

@pytest.mark.parametrize("l", [64, 63, 57, 41, 40, 33, 8, 2])
def test_ring_pack_reduce_and_sign_extension(l):
    ring = Ring(l)
    rng = np.random.default_rng(l)
    x = rng.integers(0, 2**64, 1000, dtype=U64, endpoint=False)
    wire = ring.pack(x)
    assert wire.nbytes == 1000 * ((l + 7) // 8)
    back = ring.unpack(wire, (10, 100))
    assert back.shape == (10, 100)
    np.testing.assert_array_equal(back.reshape(-1), x & U64((1 << l) - 1))
    # Signed values in [−2^(l−1), 2^(l−1)) survive encoding mod 2^l and sign extension.
    v = rng.integers(-2**(l - 1), 2**(l - 1), 1000)
    np.testing.assert_array_equal(ring.signed(ring.from_signed(v)), v)
    if l < 64:
        assert int(ring.from_signed(np.array([-1]))[0]) == 2**l - 1


def test_unpack_refuses_bits_above_l_and_bad_shapes():
    ring = Ring(33)
    wire = ring.pack(np.arange(5, dtype=U64))
    wire[2, 4] |= 0x80                       # bit 39 of element 2
    with pytest.raises(ValueError, match="exceed 33 bits"):
        ring.unpack(wire)
    with pytest.raises(ValueError, match="uint8 array of shape"):
        ring.unpack(np.zeros((5, 8), np.uint8))


@pytest.mark.parametrize("bad", [0, 1, 65, 40.0, True, "40"])
def test_ring_width_is_validated(bad):
    with pytest.raises(ValueError, match="ring_bits must be an integer in 2..64"):
        FixedPoint(12, bad)


def test_a_peer_sending_elements_above_l_bits_gets_a_protocol_error():
    from protocols.layers import ring_recv
    from protocols.transport.errors import ProtocolError
    a, b = InProcessChannel.pair()
    wire = np.zeros((3, 5), np.uint8)
    wire[1, 4] = 0x10                        # bit 36 in a 33-bit ring
    a.send_array(wire)
    with pytest.raises(ProtocolError, match="malformed ring elements.*exceed 33 bits"):
        ring_recv(b, Ring(33), (3,))


# -- the plan parameter --------------------------------------------------------------------

def small_plan(l: int, frac_bits: int = 12) -> tuple[Plan, object]:
    b = PlanBuilder((3,), FixedPoint(frac_bits, l))
    w = np.array([[1.0, -2.0, 0.5], [-3.0, 0.25, -1.0]])
    h = b.linear(b.input, w, np.array([-0.5, 0.75]), name="fc1")
    h = b.activation(h, name="relu")
    out = b.linear(h, np.array([[-1.0, 0.5], [0.25, -2.0]]), np.array([-1.0, 0.0]), name="fc2")
    return b.output(out), b.weights


def test_ring_bits_is_in_the_plan_dict_and_digest_and_old_plans_load_as_64():
    p40, _ = small_plan(40)
    p64, _ = small_plan(64)
    d = p40.to_dict()
    assert d["ring_bits"] == 40 and Plan.from_dict(d).ring_bits == 40
    assert plan_digest(d) != plan_digest(p64.to_dict())
    old = p64.to_dict()
    del old["ring_bits"]                     # a plan written before the parameter existed
    old["format"] = 1
    assert Plan.from_dict(old).ring_bits == 64
    with pytest.raises(PlanError, match="plan format 3 is not supported"):
        Plan.from_dict({**d, "format": 3})
    with pytest.raises(PlanError, match="ring_bits must be an integer in 2..64"):
        Plan.from_dict({**d, "ring_bits": 80})
    spec = pi.SecureModel(p40, None).public_spec()
    assert pi.SecureModel.from_public_spec(spec).plan.ring_bits == 40


def run_recorded(plan, weights, x):
    """(output, server state, client state, every array either party received online)."""
    y, srun, crun, rs, rc = two_party.run_recorded(plan, weights, x)
    return y, srun.state, crun.state, rs.seen + rc.seen


def plain_small(x):
    h = np.maximum(x @ np.array([[1.0, -2.0, 0.5], [-3.0, 0.25, -1.0]]).T + [-0.5, 0.75], 0)
    return h @ np.array([[-1.0, 0.5], [0.25, -2.0]]).T + [-1.0, 0.0]


@pytest.mark.parametrize("l,frac_bits", [(40, 12), (33, 8), (41, 12), (64, 12)])
def test_a_narrow_plan_puts_only_l_bit_values_on_the_wire_and_in_the_shares(l, frac_bits):
    plan, weights = small_plan(l, frac_bits)
    x = np.array([[1.0, 2.0, -0.5], [-2.0, 0.5, 3.0], [0.1, -0.2, 0.3]])
    y, ss, cs, seen = run_recorded(plan, weights, x)
    expected = plain_small(x)
    assert (expected < 0).any()              # negative outputs: decoded by sign extension from bit l − 1
    np.testing.assert_allclose(y, expected, atol=2.0 ** -(frac_bits - 4))
    eb = (l + 7) // 8
    for arr in seen:                         # every ring element received online: ceil(l/8) bytes
        assert arr.dtype == (np.uint8 if l < 64 else U64) and (l == 64 or arr.shape[1:] == (eb,))
    for shares in (ss.shares, cs.shares):    # every stored share is an l-bit value
        for tid, s in shares.items():
            assert s.dtype == U64 and (l == 64 or int(s.max()) < 2**l), (tid, l)
    out = plan.output_op.inputs[0]
    ring_sum = ss.shares[out] + cs.shares[out]
    enc = np.rint(expected * 2.0 ** plan.tensor(out).scale).astype(np.int64)
    # The shares reconstruct the output mod 2^l (within rounding); mod 2^64 they do not.
    assert np.abs(Ring(l).signed(ring_sum) - enc).max() < 2 ** (plan.tensor(out).scale - frac_bits + 4)
    if l < 64:
        assert np.abs(ring_sum.view(np.int64) - enc).max() > 2 ** (l - 2)


@pytest.mark.parametrize("l", [64, 40, 37])
def test_faithful_truncate_op_in_a_narrow_ring(l):
    """The Truncate op (the FSS trunc gate over the whole l-bit ring) on negative and positive
    values, then a linear layer, against plaintext."""
    b = PlanBuilder((3,), FixedPoint(12, l))
    w1, w2 = np.array([[1.0, -2.0, 0.5], [-3.0, 0.25, -1.0]]), np.array([[-1.0, 0.5], [0.25, -2.0]])
    h = b.truncate(b.linear(b.input, w1, name="fc1"), 12)
    plan = b.output(b.linear(h, w2, name="fc2"))
    assert [op.kind for op in plan.ops].count("Truncate") == 1
    x = np.array([[1.0, 2.0, -0.5], [-2.0, 0.5, 3.0]])
    y = pi.SecureModel(plan, b.weights).run(x).numpy()
    np.testing.assert_allclose(y, x @ w1.T @ w2.T, atol=2**-8)


def test_the_meter_counts_ceil_l_over_8_bytes_per_element():
    """A gate layer's online bytes are exactly the two openings' frames: x̂ (server → client)
    and y0 (client → server), n elements of ceil(l/8) bytes each, plus frame and array
    headers."""
    x = np.random.default_rng(0).normal(size=(4, 3))
    for l in (64, 40, 33):
        plan, weights = small_plan(l, 8)
        sm = pi.SecureModel(plan, weights)
        sm.run(x)
        row = next(r for r in sm.last_cost.per_layer if r["layer"] == "relu" and r["phase"] == "online")
        n, ndim = 4 * 2, 1 if l == 64 else 2
        frame = HEADER_SIZE + ARRAY_HEADER.size + 8 * ndim + n * ((l + 7) // 8)
        assert row["bytes_sent"] == 2 * frame, (l, row)


# -- range checks ----------------------------------------------------------------------------

def test_scales_that_do_not_fit_the_ring_are_refused_with_the_width_named():
    b = PlanBuilder((3,), FixedPoint(12, 35))
    with pytest.raises(PlanError, match="35-bit ring"):
        b.linear(b.input, np.ones((2, 3)))
    # Polynomial sites compute at scale 3f and output at 3f − min(2f, W − l) for words of W bits:
    # f in a 40-bit ring at f = 12 either way; at f = 20 in 60 bits, the dealer's 128-bit words
    # give f, the two-party products' 64-bit ones 3·20 − 4 = 56, which leaves too few bits.
    b = PlanBuilder((2,), FixedPoint(12, 40), poly_word_bits=64)
    h = b.linear(b.input, np.ones((2, 2)))
    assert b.tensors[b.activation(h, kinds=np.array([POLY, POLY]), poly=np.ones((2, 3)))].scale == 12
    b = PlanBuilder((2,), FixedPoint(20, 60))
    h = b.linear(b.input, np.ones((2, 2)))
    assert b.tensors[b.activation(h, kinds=np.array([POLY, POLY]), poly=np.ones((2, 3)))].scale == 20
    b = PlanBuilder((2,), FixedPoint(20, 60), poly_word_bits=64)
    h = b.linear(b.input, np.ones((2, 2)))
    with pytest.raises(PlanError, match="polynomial sites.*60-bit ring"):
        b.activation(h, kinds=np.array([POLY, POLY]), poly=np.ones((2, 3)))


def test_gates_wider_than_the_ring_are_refused():
    b = PlanBuilder((2,), FixedPoint(12, 40))
    h = b.linear(b.input, np.ones((2, 2)))
    with pytest.raises(PlanError, match="circa_k"):
        b.activation(h, kinds=np.array([3, 3], np.int8), circa_k=38)
    plan, _ = small_plan(40)
    d = plan.to_dict()
    act = next(o for o in d["ops"] if o["kind"] == "Activation")
    act["value_bits"] = 40                   # gates reading 41 bits in a 40-bit ring
    with pytest.raises(PlanError, match="more than the 40-bit ring"):
        Plan.from_dict(d)


# -- the width pi.compile chooses --------------------------------------------------------------

def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def test_compile_derives_the_ring_from_calibration_and_states_it():
    model, x = mlp(), torch.randn(64, 6)
    assert pi.compile(model, x[:1]).plan.ring_bits == 64          # no calibration: the full ring
    sm = pi.compile(model, x[:1], calibration=x)
    l = sm.plan.ring_bits
    assert 36 <= l < 64 and l == sm.plan.required_ring_bits()
    assert f"Z_2^{l} (narrowest ring for the calibrated bounds)" in sm.summary()
    with torch.no_grad():
        np.testing.assert_allclose(sm.run(x).numpy(), model(x).double().numpy(), atol=2**-7)
    # An explicit width overrides; a width the calibrated values do not fit is refused.
    full = pi.compile(model, x[:1], calibration=x, ring_bits=64).plan
    assert full.ring_bits == 64
    assert [op.kind for op in sm.plan.ops] == [op.kind for op in full.ops]   # no extra ops, no extra rounds
    assert pi.compile(model, x[:1], calibration=x, ring_bits=l + 3).plan.ring_bits == l + 3
    big = x * 4096                           # values, not the scale budget, set this ring
    lb = pi.compile(model, x[:1], calibration=big).plan.ring_bits
    assert lb > l + 10
    with pytest.raises(PlanError, match=f"need a {lb}-bit ring, more than ring_bits={lb - 1}"):
        pi.compile(model, x[:1], calibration=big, ring_bits=lb - 1)
    # Inputs beyond the calibrated range (times the margin) are refused, not wrapped.
    with pytest.raises(ValueError, match="outside .* the calibrated range"):
        sm.run(x * 1000)
    with pytest.raises(PlanError, match="needs calibration"):
        compile_plan(model, x[:1], ring_bits="calibrated")
    with pytest.raises(PlanError, match="ring_bits must be"):
        compile_plan(model, x[:1], ring_bits="wide")


def half_identity(name, shape):
    """Every other site of a layer identity, the rest exact ReLU: the identity sites truncate locally."""
    from pi.compiler import SitePolicy
    return SitePolicy(kinds=(np.arange(int(np.prod(shape))) % 2).reshape(shape).astype(np.int8))


def test_local_truncations_keep_the_ring_wide_enough_for_the_failure_target():
    """Identity sites next to gate sites truncate locally and fail with probability |v|/2^l: the
    derived width keeps the per-example bound at or below the target (or stays at 64 bits)."""
    from protocols.plan import TRUNC_FAILURE_TARGET
    model, x = mlp(), torch.randn(64, 6)
    exact = pi.compile(model, x[:1], calibration=x)
    ident, _ = compile_plan(model, x[:1], site_policy=half_identity, calibration=x)
    assert ident.local_truncations() and ident.ring_bits > exact.plan.ring_bits
    assert ident.truncation_failure_bound() <= TRUNC_FAILURE_TARGET or ident.ring_bits == 64
    assert ident.truncation_failure_bound(ident.ring_bits - 1) > TRUNC_FAILURE_TARGET


def test_compile_warns_when_local_truncations_may_fail():
    """A plan whose local truncations fail with probability above the target compiles with a
    warning that names the fixes; a plan within the target, or without local truncations, with none."""
    import warnings
    from pi.compiler import TruncationFailureWarning
    from protocols.plan import TRUNC_FAILURE_TARGET
    model, x = mlp(), torch.randn(64, 6)
    with pytest.warns(TruncationFailureWarning, match="pass calibration inputs .* whole layers identity"):
        plan, _ = compile_plan(model, x[:1], site_policy=half_identity)      # uncalibrated: the full range
    assert plan.truncation_failure_bound() > TRUNC_FAILURE_TARGET
    with pytest.warns(TruncationFailureWarning, match="in this 50-bit ring .*; make whole layers identity"):
        compile_plan(model, x[:1], site_policy=half_identity, calibration=x, ring_bits=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationFailureWarning)
        compile_plan(model, x[:1], site_policy=half_identity, calibration=x)
        pi.compile(model, x[:1], relu="identity")     # whole layers identity: nothing truncates locally
