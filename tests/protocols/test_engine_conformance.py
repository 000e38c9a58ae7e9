"""The conformance suite: every secure layer and small networks against plaintext, privacy
of the messages each party receives, one-time material. Runs against every provider, and at
two ring widths: the provider's widest ring (uncalibrated: Z_2^64 for the dealer, Z_2^59 for
two-party) and the narrowest ring pi.compile derives from calibration on the test inputs
(asserted below that)."""
import numpy as np
import pytest
import torch
from torch import nn

import pi
from protocols import engine
from protocols.fixed_point import FixedPoint
from protocols.material import MaterialReuseError
from protocols.plan import IDENTITY, POLY, RELU, PlanError
from protocols.providers import PROVIDERS, get_provider
from relu_budget import models
from tiny_models import mixed_site_cnn, poly_resnet

FP = FixedPoint(12)
# A secure output differs from plaintext by fixed-point rounding of weights and inputs and
# one ulp per truncation; for these small layers 2^-7 in absolute terms is a safe bound.
TOL = 2.0 ** -7


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request):
    return request.param


@pytest.fixture(params=["full", "calibrated"], ids=["ring-full", "ring-calibrated"])
def width(request, provider):
    """(provider, width): the provider's widest ring, or calibrated."""
    return provider, request.param


def ring_kw(width, calibration) -> dict:
    """compile arguments for a width: the provider's widest ring without calibration, or
    calibrated on `calibration`."""
    provider, w = width
    if w == "full":
        return {"ring_bits": get_provider(provider).max_ring_bits}
    return {"ring_bits": "calibrated", "calibration": calibration}


def plan_kw(width, calibration) -> dict:
    """ring_kw for pi.compiler.compile_plan, which needs the provider's widest ring and the
    words it computes polynomial sites in too."""
    prov = get_provider(width[0])
    return ring_kw(width, calibration) | {"max_ring_bits": prov.max_ring_bits, "poly_word_bits": prov.poly_word_bits}


def check_width(plan, width):
    provider, w = width
    full = get_provider(provider).max_ring_bits
    if w == "full":
        assert plan.ring_bits == full
    else:   # the second width must really be narrower, or the suite would test the full ring twice
        # (two-party: unless the calibrated width reaches its cap, 59 bits)
        assert plan.meta["ring"] == "calibrated"
        assert plan.ring_bits < full or (provider == "two-party" and plan.ring_bits == full), plan.ring_bits


def secure(model, x, provider, width, **kw):
    torch.manual_seed(0)
    sm = pi.compile(model.eval(), x[:1], provider=provider, **ring_kw(width, x), **kw)
    check_width(sm.plan, width)
    return sm, sm.run(x)


class Seq(nn.Sequential):
    pass


def two_party_has_ot_mul() -> bool:
    """Whether this build has two-party multiplications (protocols.ot_mul), which the two-party
    provider needs for polynomial sites."""
    import importlib.util
    return importlib.util.find_spec("protocols.ot_mul") is not None


@pytest.mark.parametrize("layer,shape", [
    (nn.Conv2d(2, 3, 3, padding=1), (2, 6, 6)),
    (nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False), (2, 7, 7)),
    (nn.Linear(10, 5), (10,)),
    (nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)), (2, 6, 6)),
    (nn.Sequential(nn.Conv2d(2, 3, 1), nn.AvgPool2d(2)), (2, 6, 6)),
    (nn.Sequential(nn.Conv2d(2, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()), (2, 6, 6)),
    # scale 3f after the 1/36 pool feeds a Linear (scale 4f): the calibrated ring must hold it
    (nn.Sequential(nn.Conv2d(2, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)), (2, 6, 6)),
    (nn.Sequential(nn.Conv2d(2, 3, 1), nn.MaxPool2d(2)), (2, 6, 6)),
    (nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU(), nn.MaxPool2d(3, 2)), (2, 7, 7)),
    (nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()), (2, 5, 5)),
    (nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Dropout(0.3), nn.Identity(), nn.Linear(6, 3)), (2, 2, 2)),
])
def test_layers_match_plaintext(provider, width, layer, shape):
    torch.manual_seed(1)
    for m in layer.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, *shape)
    _sm, y = secure(layer, x, provider, width)
    with torch.no_grad():
        expected = layer.eval()(x).double()
    assert y.shape == expected.shape
    assert float((y - expected).abs().max()) < TOL


def test_residual_network_matches_plaintext(provider, width):
    torch.manual_seed(2)
    model = models.build("resnet-small", widths=(4, 8, 8), stem_channels=4)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 1, 28, 28)
    _sm, y = secure(model, x, provider, width)
    with torch.no_grad():
        expected = model.eval()(x).double()
    assert float((y - expected).abs().max()) < 4 * TOL
    assert torch.equal(y.argmax(1), expected.argmax(1))


def test_mixed_per_site_policy(provider, width):
    """Exact, identity and Circa sites inside one layer, with per-pixel masks."""
    torch.manual_seed(3)
    model = models.build("smallcnn", image_size=8, channels=(3, 4), hidden=10)
    rng = np.random.default_rng(0)
    kinds = rng.choice([RELU, IDENTITY], size=(3, 8, 8)).astype(np.int8)
    model.relu1.set_kinds(torch.from_numpy(kinds))
    model.relu3.set_kinds(torch.tensor([IDENTITY] * 5 + [RELU] * 5, dtype=torch.int8))
    x = torch.randn(4, 1, 8, 8)
    from pi.compiler import SitePolicy

    def policy(name, shape):
        site = dict(model.named_modules())[name]
        return SitePolicy(kinds=None if site.kind_map is None else site.kind_map.numpy())
    plan, weights = pi.compiler.compile_plan(model, x[:1], site_policy=policy, fixed_point=FP, **plan_kw(width, x))
    check_width(plan, width)
    sm = pi.SecureModel(plan, weights, provider)
    y = sm.run(x)
    with torch.no_grad():
        expected = model.eval()(x).double()
    assert float((y - expected).abs().max()) < TOL
    counts = {r["layer"]: r for r in sm.layer_rows()}
    assert counts["relu1"]["identity"] == int((kinds == IDENTITY).sum())
    assert counts["relu1"]["relu"] == int((kinds == RELU).sum())


def test_online_cost_only_pays_for_kept_sites(provider, width):
    """The activation layer's online traffic, exactly, and nothing for identity sites (no round at
    all when every site is identity). Dealer: each party sends one frame holding one ring element
    per kept site (x̂ one way, y0 the other). Two-party: the server sends one frame of its input
    labels (a 56-byte header, then 16 bytes per label), the client one frame of re-shared outputs."""
    from pi.compiler import SitePolicy
    from protocols.transport.frame import ARRAY_HEADER, HEADER_SIZE
    from protocols.two_party.gates import gc_spec
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).eval()
    x = torch.randn(1, 1, 4, 4)
    for kept in (64, 40, 1, 0):
        kinds = np.full((4, 4, 4), IDENTITY, np.int8)
        kinds.reshape(-1)[:kept] = RELU
        plan, weights = pi.compiler.compile_plan(model, x, site_policy=lambda name, shape, kinds=kinds: SitePolicy(kinds=kinds),
                                                 fixed_point=FP, **plan_kw(width, x))
        sm = pi.SecureModel(plan, weights, provider)
        sm.run(x)
        # uint64 on Z_2^64, else (n, elem_bytes) uint8 (protocols.fixed_point): one 8-byte dim each
        eb, ndim = plan.ring.elem_bytes, len(plan.ring.wire_shape(kept))
        frame = HEADER_SIZE + ARRAY_HEADER.size + 8 * ndim
        (act,) = [r for r in sm.last_cost.per_layer if r["layer"] == "1" and r["phase"] == "online"]
        if not kept:
            assert (act["bytes_sent"], act["rounds"]) == (0, 0)
            assert sm.last_cost.rounds == 1                # input and output travel in one round
        elif provider == "dealer":
            assert (act["bytes_sent"], act["rounds"]) == (2 * (frame + eb * kept), 1), kept
        else:
            act_op = plan.ops[2]
            spec = gc_spec("relu", plan.ring, shift=act_op.shift, bits=act_op.value_bits)
            labels = HEADER_SIZE + ARRAY_HEADER.size + 8 + 56 + 16 * spec.info["n_garb"] * kept   # docs/gc.md, Formats
            assert (act["bytes_sent"], act["rounds"]) == (labels + frame + eb * kept, 1), kept


def test_material_is_consumed_once(provider, width):
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(8, 4)
    sm = pi.compile(model, x[:1], provider=provider, **ring_kw(width, x))
    check_width(sm.plan, width)
    if get_provider(provider).interactive:
        from two_party import consume_twice
        consume_twice(sm.plan, sm.weights, x[:1].numpy())
        return
    client, server = PROVIDERS[provider]().preprocess(sm.plan, 1)
    engine.ClientRun(sm.plan, client, 1)
    with pytest.raises(MaterialReuseError):
        engine.ClientRun(sm.plan, client, 1)
    engine.ServerRun(sm.plan, sm.weights, server, 1)
    with pytest.raises(MaterialReuseError):
        engine.ServerRun(sm.plan, sm.weights, server, 1)


def test_thousand_random_inferences_agree_with_plaintext_argmax(provider, width):
    """A trained model on 1000 fresh inputs from its data distribution, in 4 batched inferences.
    Every logit is within the fixed-point tolerance, so the argmax must agree wherever the
    plaintext top-2 margin exceeds twice that tolerance (ties closer than that may flip: with
    this seed one input has a margin of 3e-5, below the 2^-12 resolution)."""
    from relu_budget import data, train
    splits = data.synthetic(n_train=512, n_val=64, n_test=1000, seed=7)
    train.seed_everything(0)
    if get_provider(provider).interactive:
        # two-party: HE encrypts each image's convolution input on its own (a Linear layer packs
        # the batch), so a small MLP keeps this test's CPU time modest
        model = nn.Sequential(nn.Flatten(), nn.Linear(144, 16), nn.ReLU(), nn.Linear(16, 4))
    else:
        model = models.build("smallcnn", image_size=12, num_classes=4, channels=(4, 8), hidden=16)
    train.fit(model, splits, train.TrainConfig(epochs=3, lr=0.01, optimizer="adam", batch_size=32, progress=False))
    model.eval()
    x = splits.test[0]
    # The calibrated ring is derived from training inputs, not from the inputs under test.
    sm = pi.compile(model, x[:1], provider=provider, **ring_kw(width, splits.train[0][:256]))
    check_width(sm.plan, width)
    with torch.no_grad():
        secure_logits = torch.cat([sm.run(chunk) for chunk in x.split(250)])
        plain = model(x).double()
    assert float((secure_logits - plain).abs().max()) < TOL
    top2 = plain.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * TOL
    agree = secure_logits.argmax(1) == plain.argmax(1)
    assert bool(agree[clear].all())
    assert int(agree.sum()) >= 999 and int(clear.sum()) >= 990


def test_polynomial_sites_match_plaintext(provider, width):
    """Per-channel degree-2 polynomials on some sites, exact ReLU and identity on others (the
    two-party provider refuses them with a PlanError naming the missing piece until it has
    two-party multiplications)."""
    model, x, policy = mixed_site_cnn([RELU, POLY, IDENTITY])
    plan, weights = pi.compiler.compile_plan(model, x[:1], site_policy=policy, fixed_point=FP, **plan_kw(width, x))
    check_width(plan, width)
    if provider == "two-party" and not two_party_has_ot_mul():
        with pytest.raises(PlanError, match="ot_mul"):
            pi.SecureModel(plan, weights, provider).run(x)
        return
    y = pi.SecureModel(plan, weights, provider).run(x)
    with torch.no_grad():
        expected = model(x).double()
    assert float((y - expected).abs().max()) < 2 * TOL


def test_residual_polynomial_sites_keep_a_narrow_ring(provider):
    """Polynomial sites in residual blocks: interval arithmetic alone compounds c2·b² along the
    residual stream (the plan needed the 64-bit ring, more than the two-party provider runs);
    with the calibrated bounds of activations and adds, and polynomial sites output at scale f,
    the calibrated ring is no wider than the all-exact network's, and the secure output matches
    plaintext there."""
    model, x = poly_resnet()
    policy = pi.compiler.SitePolicy

    def sites(name, shape):
        site = dict(model.named_modules())[name]
        return policy(kinds=site.kind_map.numpy(), poly=site.poly_coeffs.double().numpy())
    cap = get_provider(provider).max_ring_bits
    plan, weights = pi.compiler.compile_plan(model, x[:1], site_policy=sites, fixed_point=FP, ring_bits="calibrated",
                                             calibration=x, max_ring_bits=cap,
                                             poly_word_bits=get_provider(provider).poly_word_bits)
    exact, _ = pi.compiler.compile_plan(model, x[:1], fixed_point=FP, ring_bits="calibrated", calibration=x,
                                        max_ring_bits=cap)
    assert plan.ring_bits <= min(48, exact.ring_bits + 1)
    acts = [op for op in plan.ops if op.kind == "Activation"]
    assert all(plan.tensor(op.output).scale == FP.frac_bits for op in acts)   # d = 2f (two-party: at l ≤ 40)
    y = pi.SecureModel(plan, weights, provider).run(x)
    with torch.no_grad():
        expected = model(x).double()
    assert float((y - expected).abs().max()) < 4 * TOL


def test_circa_sites_fault_only_near_zero(provider, width):
    """Circa with k = 12 (inputs carry 24 fractional bits): a fault changes a ReLU output by
    less than 2^-12, so the network's output stays within a few ulps of plaintext."""
    torch.manual_seed(7)
    model = models.build("smallcnn", image_size=8, channels=(3, 4), hidden=10).eval()
    x = torch.randn(4, 1, 8, 8)
    sm, y = secure(model, x, provider, width, relu="circa", circa_k=12)
    with torch.no_grad():
        expected = model(x).double()
    assert float((y - expected).abs().max()) < 4 * TOL
    rows = {r["layer"]: r for r in sm.layer_rows()}
    assert rows["relu1"]["circa"] == 3 * 64


def test_label_only_output_reveals_the_argmax(provider, width):
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    x = torch.randn(64, 6)
    sm = pi.compile(model, x[:1], provider=provider, output="label", **ring_kw(width, x))
    check_width(sm.plan, width)
    labels = sm.run(x)
    plain = model(x)
    assert labels.dtype == torch.int64 and labels.shape == (64,)
    assert torch.equal(labels, plain.argmax(1))
    rows = {r["layer"]: r for r in sm.layer_rows()}
    assert "output" in rows


def test_offline_traffic_is_charged_to_the_layers_that_cause_it(provider, width):
    """The offline flights carry many layers' items, but each item's bytes land on its layer's
    row. Dealer (one flight each way): a private linear layer's masked weights (ceil(l/8) bytes
    per weight), an activation's c + r. Two-party (two round trips: HE, then garbling): a linear
    layer's HE query and reply, an activation's OT message and garbled tables."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3)).eval()
    sm, _ = secure(model, torch.randn(2, 1, 6, 6), provider, width)
    eb = sm.plan.ring.elem_bytes
    rows = [r for r in sm.last_cost.per_layer if r["phase"] == "offline"]
    by_layer = {r["layer"]: r for r in rows}
    exchange = [r for r in rows if r["layer"] == "offline-exchange"]
    if provider == "dealer":
        for name, numel in (("0", 4 * 9), ("3", 3 * 64)):
            assert eb * numel <= by_layer[name]["bytes_sent"] < eb * numel + 200, by_layer[name]
        assert by_layer["1"]["op"] == "relu" and by_layer["1"]["bytes_sent"] >= eb * 2 * 4 * 16
        assert sum(r["bytes_sent"] for r in exchange) < 1000 and sum(r["rounds"] for r in exchange) >= 1
        return
    from protocols import he
    from protocols.two_party.gates import gc_spec
    for op in (sm.plan.ops[1], sm.plan.ops[-2]):
        p = he.choose_params(he.LayerShape.from_plan(sm.plan, op), sm.plan.ring_bits, 8)
        sent = by_layer[op.name]["bytes_sent"]
        assert p.query_bytes(2) // 2 < sent < 2 * (p.query_bytes(2) + p.reply_bytes(2)), (op.name, sent)
    act = sm.plan.ops[2]
    spec = gc_spec("relu", sm.plan.ring, shift=act.shift, bits=act.value_bits)
    per_site = spec.info["table_bytes"] + 16 * spec.info["n_eval"] // 8
    assert by_layer[act.name]["op"] == "relu" and by_layer[act.name]["bytes_sent"] >= 2 * 64 * per_site
    assert sum(r["bytes_sent"] for r in exchange) < 1000 and max(r["rounds"] for r in exchange) == 2
