"""Activation layers whose sites are all identity (docs/engine.md, "Whole identity layers"): they
compute nothing and truncate nothing; the fixed-point scale they carry is truncated by the next
gate, or, where a private linear op would leave the ring too few bits, by a faithful Truncate.
Each provider against the plaintext fixed-point result: bit-exact where nothing truncates, within
the gates' one ulp where something does."""
import numpy as np
import pytest
import torch

import pi
from protocols.fixed_point import FixedPoint
from protocols.plan import IDENTITY, POLY, Activation, PlanBuilder, Truncate
from protocols.providers import PROVIDERS, get_provider
from tiny_models import poly_resnet, randomized_tiny_resnet

F = 8     # fractional bits of the builder-level plans: 3f = 24 fits a 40-bit ring with room


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request):
    return request.param


def grid(rng, shape, lim=4):
    """Random multiples of 2^-F in [−lim, lim]: encoded exactly, so plaintext float64 arithmetic
    on them is the fixed-point reference, with no rounding anywhere."""
    return rng.integers(-lim * 2**F, lim * 2**F + 1, shape) / 2.0**F


def identity_layer(b, t):
    return b.activation(t, kinds=np.full(b.tensors[t].shape, IDENTITY, np.int8), name=f"id{t}")


def run(plan, weights, provider, x):
    sm = pi.SecureModel(plan, weights, provider)
    return sm, sm.run(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("ring_bits", [40, 59])
def test_identity_layer_carries_the_scale_bit_exactly(provider, ring_bits):
    """linear → identity layer → linear, plus a residual add of the first linear's output: the
    identity layer passes scale 2f on, the second linear lands at 3f, the add brings its other
    operand from 2f to 3f by an exact ×2^f, and the output equals plaintext bit for bit (a local
    truncation, or a scale the engine and the plan disagree on, would not)."""
    rng = np.random.default_rng(ring_bits)
    w1, b1, w2, b2 = grid(rng, (5, 6)), grid(rng, 5), grid(rng, (5, 5)), grid(rng, 5)
    b = PlanBuilder((6,), FixedPoint(F, ring_bits))
    h = b.linear(b.input, w1, b1)
    o = b.linear(identity_layer(b, h), w2, b2)
    plan, weights = b.output(b.add(o, h)), b.weights
    assert [b.tensors[t].scale for t in (h, o)] == [2 * F, 3 * F]
    assert not any(isinstance(op, Truncate) for op in plan.ops)
    assert plan.local_truncations() == [] and plan.truncation_failure_bound() == 0.0
    x = grid(rng, (4, 6))
    hid = x @ w1.T + b1
    expected = hid @ w2.T + b2 + hid
    sm, y = run(plan, weights, provider, x)
    np.testing.assert_array_equal(y, expected)
    assert sm.last_cost.rounds == 1                        # the input's and the output's flight only


@pytest.mark.parametrize("ring_bits", [40, 59])
def test_next_gate_truncates_the_carried_scale(provider, ring_bits):
    """linear → identity layer → linear → exact ReLU: the gate truncates by 2f at once (its shift),
    faithfully, so each output is the plaintext one or one ulp above."""
    rng = np.random.default_rng(ring_bits + 1)
    w1, b1, w2, b2 = grid(rng, (5, 6)), grid(rng, 5), grid(rng, (4, 5)), grid(rng, 4)
    b = PlanBuilder((6,), FixedPoint(F, ring_bits))
    o = b.linear(identity_layer(b, b.linear(b.input, w1, b1)), w2, b2)
    act = b.activation(o, name="relu")
    plan, weights = b.output(act), b.weights
    (gate,) = [op for op in plan.ops if isinstance(op, Activation) and op.name == "relu"]
    assert gate.shift == 2 * F and plan.tensor(act).scale == F
    x = grid(rng, (40, 6))
    expected = np.maximum((x @ w1.T + b1) @ w2.T + b2, 0)
    sm, y = run(plan, weights, provider, x)
    err = np.round((y - np.floor(expected * 2**F) / 2**F) * 2**F)
    assert set(np.unique(err).tolist()) <= {0.0, 1.0}, np.unique(err)
    assert sm.last_cost.rounds == 2


def test_a_chain_of_identity_layers_falls_back_to_one_faithful_truncation(provider):
    """linear → identity → linear → identity in a 40-bit ring at f = 8 carries scale 3f; two
    linear layers reading that tensor (a convolution and its shortcut) would leave fewer than 10
    bits for the values at 4f, so the builder truncates it to f faithfully (a Truncate op: one
    round, no failure) instead, once for both."""
    rng = np.random.default_rng(5)
    ws = [grid(rng, (5, 5), 1) for _ in range(4)]
    b = PlanBuilder((5,), FixedPoint(F, 40))
    t = identity_layer(b, b.linear(identity_layer(b, b.linear(b.input, ws[0])), ws[1]))
    plan, weights = b.output(b.add(b.linear(t, ws[2]), b.linear(t, ws[3]))), b.weights
    truncs = [op for op in plan.ops if isinstance(op, Truncate)]
    assert len(truncs) == 1 and truncs[0].inputs == (t,) and truncs[0].shift == 2 * F
    assert plan.truncation_failure_bound() == 0.0
    x = grid(rng, (6, 5), 1)
    carried = x @ ws[0].T @ ws[1].T
    sm, y = run(plan, weights, provider, x)
    # the truncation of `carried` to f is off by at most one ulp (2^-f) per element
    ulp = (np.abs(ws[2]) + np.abs(ws[3])) @ np.ones(5) / 2**F
    assert (np.abs(y - carried @ (ws[2] + ws[3]).T) <= ulp + 1e-12).all()
    assert sm.last_cost.rounds == 2


def test_a_public_scaling_after_identity_layers_truncates_faithfully_when_the_ring_is_short(provider):
    """× 1/3 adds f to the scale (the constant is encoded at f): after identity layers at 3f in a
    40-bit ring that would leave too few bits, so the carried tensor is truncated to f first."""
    rng = np.random.default_rng(6)
    w0, w1 = grid(rng, (5, 5), 1), grid(rng, (5, 5), 1)
    b = PlanBuilder((5,), FixedPoint(F, 40))
    t = identity_layer(b, b.linear(identity_layer(b, b.linear(b.input, w0)), w1))
    plan, weights = b.output(b.mul_const(t, 1 / 3)), b.weights
    assert sum(isinstance(op, Truncate) for op in plan.ops) == 1
    x = grid(rng, (6, 5), 1)
    _, y = run(plan, weights, provider, x)
    assert np.abs(y - x @ w0.T @ w1.T / 3).max() < 2.0 ** (1 - F)


def identity_resnet(layers: tuple[str, ...]):
    """tiny_resnet with the named activation layers all identity (the others exact ReLU), its
    BatchNorm statistics randomized; 6 inputs."""
    model = randomized_tiny_resnet(8)
    for name in layers:
        model.get_submodule(name).set_kinds(IDENTITY)
    return model, torch.randn(6, 1, 12, 12)


@pytest.mark.parametrize("ring", ["full", "calibrated"])
@pytest.mark.parametrize("layers", [("layers.0.0.relu2",), ("layers.0.0.relu2", "layers.1.0.relu1")],
                         ids=["one", "chain"])
def test_residual_network_with_identity_layers_matches_plaintext(provider, ring, layers):
    """Whole identity layers in a ResNet (one, and two in a row, whose scale grows to 4f): no
    local truncation, one round less per identity layer than all-exact (none inserted at the
    provider's widest ring), and the output matches the plaintext network."""
    from pi.compiler import plaintext_twin
    from relu_budget.policy import from_model
    model, x = identity_resnet(layers)
    cap = get_provider(provider).max_ring_bits
    kw = {"ring_bits": cap} if ring == "full" else {"calibration": x}
    sm = pi.compile(model, x[:1], provider=provider, policy=from_model(model, tuple(x.shape[1:])), **kw)
    plan = sm.plan
    exact = pi.compile(model, x[:1], provider=provider, **kw)
    assert plan.truncation_failure_bound() == 0.0 and plan.local_truncations() == []
    ids = [op for op in plan.ops if isinstance(op, Activation) and op.name in layers]
    assert len(ids) == len(layers)
    assert all(plan.tensor(op.output).scale == plan.tensor(op.inputs[0]).scale > 2 * 12 - 1 for op in ids)
    truncs = sum(isinstance(op, Truncate) for op in plan.ops)
    assert sm.predicted_rounds() == exact.predicted_rounds() - len(layers) + truncs
    if ring == "full" and cap == 64:
        assert truncs == 0
    y = sm.run(x)
    with torch.no_grad():
        expected = plaintext_twin(model, plan)(x).double()
    assert float((y - expected).abs().max()) < 2.0 ** -5
    assert sm.last_cost.rounds == sm.predicted_rounds()


@pytest.mark.parametrize("frac_bits", [12, 9])
def test_identity_layer_next_to_polynomial_sites(provider, frac_bits):
    """The dealer's polynomial sites output at scale f in every ring (their words have l + 2f bits),
    so the identity layer saves its round in the ring a scale carried to 3f needs (48 bits here).
    The two-party products' words have 64 bits: scale f only in rings of at most 64 − 2f bits, and
    at f = 12 the carried scale needs more, so its calibrated plan truncates the identity layer's
    output faithfully (the round it saves is spent again, nothing fails); at f = 9 both fit.
    Either way the output matches the plaintext network."""
    from pi.compiler import plaintext_twin
    from relu_budget.policy import from_model
    model, x = poly_resnet()
    kw = {"calibration": x, "frac_bits": frac_bits, "provider": provider}
    poly = pi.compile(model, x[:1], policy=from_model(model, tuple(x.shape[1:])), **kw)
    model.get_submodule("layers.0.0.relu2").set_kinds(IDENTITY)
    sm = pi.compile(model, x[:1], policy=from_model(model, tuple(x.shape[1:])), **kw)
    words = get_provider(provider).poly_word_bits
    assert sm.plan.ring_bits <= words - 2 * frac_bits and sm.plan.truncation_failure_bound() == 0.0
    assert all(sm.plan.tensor(op.output).scale == frac_bits for op in sm.plan.ops
               if op.kind == "Activation" and op.kinds is not None and (op.kinds == POLY).any())
    saved = poly.predicted_rounds() - sm.predicted_rounds()
    assert saved == (0 if frac_bits == 12 and provider == "two-party" else 1)
    y = sm.run(x)
    with torch.no_grad():
        expected = plaintext_twin(model, sm.plan)(x).double()
    assert float((y - expected).abs().max()) < 2.0 ** -5


def test_max_ring_bits_trades_the_carried_scale_for_a_round():
    """pi.compile(max_ring_bits=...) caps the calibrated width: where the scale an identity layer
    carries needs more, the builder truncates it faithfully (a round per Truncate, nothing fails)
    and the plan runs in the narrower ring; the output still matches the plaintext network."""
    from pi.compiler import plaintext_twin
    from relu_budget.policy import from_model
    model, x = poly_resnet()
    model.get_submodule("layers.0.0.relu2").set_kinds(IDENTITY)
    policy = from_model(model, tuple(x.shape[1:]))
    free = pi.compile(model, x[:1], policy=policy, calibration=x)
    capped = pi.compile(model, x[:1], policy=policy, calibration=x, max_ring_bits=40)
    assert capped.plan.ring_bits <= 40 < free.plan.ring_bits
    truncs = sum(op.kind == "Truncate" for op in capped.plan.ops)
    assert truncs > 0 == sum(op.kind == "Truncate" for op in free.plan.ops)
    assert capped.predicted_rounds() == free.predicted_rounds() + truncs
    assert capped.plan.truncation_failure_bound() == 0.0
    y = capped.run(x)
    with torch.no_grad():
        expected = plaintext_twin(model, capped.plan)(x).double()
    assert float((y - expected).abs().max()) < 2.0 ** -5
    with pytest.raises(ValueError, match="max_ring_bits must be an integer in 2..64"):
        pi.compile(model, x[:1], policy=policy, calibration=x, max_ring_bits=65)
