"""The input contract (shape, dtype, normalization, classes, calibrated range), how secure.run
holds inputs to it, and that every place counts the cost of an inference the same way."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pi
from pi.compiler import TrainModeWarning, UnsupportedOp, plaintext_twin
from pi.inputs import InputContract, InputError, InputRangeWarning
from protocols.plan import PlanError


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()


@pytest.fixture(scope="module")
def secure():
    cal = torch.randn(64, 1, 8, 8)
    return pi.compile(small_net(), cal[:1], calibration=cal, normalization=(0.5, 0.25), classes=["a", "b", "c"])


def test_contract_travels_in_the_bundle_and_the_public_spec(secure, tmp_path):
    c = secure.input_contract
    assert c.shape == (1, 8, 8) and c.dtype == "float32" and c.mean == (0.5,) and c.std == (0.25,)
    assert c.classes == ("a", "b", "c") and c.range[0] < -2 and c.range[1] > 2
    loaded = pi.load(secure.save(tmp_path / "m.npz"))
    assert loaded.input_contract == c
    client = pi.SecureModel.from_public_spec(secure.public_spec())
    assert client.input_contract == c and client.weights is None
    with pytest.raises(ValueError, match="classes has 2 names; the model has 3 outputs"):
        pi.compile(small_net(), torch.zeros(1, 1, 8, 8), classes=["a", "b"])


def test_wrong_shape_and_dtype_are_named_before_any_protocol(secure):
    # Before: "PeerDisconnected ... (BYE) while we expected a frame of type ARRAY".
    for sm in (secure, pi.SecureModel(secure.plan, secure.weights, provider="two-party")):
        with pytest.raises(InputError, match=r"input has shape \(1, 1, 9, 9\); the model takes \(1, 8, 8\)"):
            sm.run(torch.zeros(1, 1, 9, 9))
    with pytest.raises(InputError, match="dtype"):
        secure.run(np.array([["a"] * 8] * 8))
    with pytest.raises(InputError, match="NaN"):
        secure.run(torch.full((1, 8, 8), float("nan")))


def test_out_of_range_inputs_are_clipped_with_a_warning_or_refused(secure):
    """1000x the calibrated range gave logits off by 318 of 334, silently. Now: refused, or
    (out_of_range="clip") clipped to 8x the calibrated magnitude with a warning, the answer then
    the model's on the clipped input as the plaintext twin computes it. Within 8x: untouched
    and correct."""
    x = 1000 * torch.randn(2, 1, 8, 8)
    lo, hi = secure.input_contract.limits()
    assert hi == -lo == 8 * max(abs(v) for v in secure.input_contract.range)
    with pytest.warns(InputRangeWarning, match="8x the calibrated range"):
        y = secure.run(x, out_of_range="clip")
    plain = plaintext_twin(small_net(), secure.plan)(x.clamp(lo, hi)).detach()
    assert torch.allclose(y.float(), plain, atol=0.05), (y, plain)
    with pytest.raises(InputError, match="calibrated range"):
        secure.run(x)
    inside = x.clamp(lo, hi) / 2                 # up to 4x the calibrated magnitude
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # within the limits: no warning
        y = secure.run(inside)
    plain = plaintext_twin(small_net(), secure.plan)(inside).detach()
    assert torch.allclose(y.float(), plain, atol=0.05), (y, plain)


def test_images_are_normalized_or_refused(tmp_path):
    import matplotlib.image as mpimg
    c = InputContract((1, 8, 8), mean=(0.5,), std=(0.25,), classes=None)
    gray = np.random.default_rng(0).random((8, 8))
    mpimg.imsave(tmp_path / "g.png", gray, cmap="gray", vmin=0, vmax=1)
    x = c.from_image(tmp_path / "g.png")
    assert x.shape == (1, 1, 8, 8) and np.allclose(x[0, 0], (gray - 0.5) / 0.25, atol=2 / 255 / 0.25)   # 8-bit PNG, colormap LUT
    mpimg.imsave(tmp_path / "rgb.png", np.random.default_rng(1).random((8, 8, 3)))
    assert c.from_image(tmp_path / "rgb.png").shape == (1, 1, 8, 8)          # RGB → luma
    mpimg.imsave(tmp_path / "big.png", np.random.default_rng(2).random((16, 12)), cmap="gray")
    with pytest.raises(InputError, match="12x16 pixels; the model takes 8x8"):
        c.from_image(tmp_path / "big.png")
    assert c.from_image(tmp_path / "big.png", resize=True).shape == (1, 1, 8, 8)
    with pytest.raises(InputError, match="no normalization"):
        InputContract((1, 8, 8)).from_image(tmp_path / "g.png")
    assert c.class_name(1) == "class 1"
    assert InputContract((1, 8, 8), classes=("x", "y")).class_name(1) == "y"


def test_summary_predicts_what_run_measures_for_every_site_kind():
    """summary()/layer_rows() and secure.run count online bytes (both directions, frames) and
    rounds (max over parties) the same way: exactly, per layer and in total, for every kind.
    (summary() said 9 rounds where run() measured 8 before.)"""
    from relu_budget import models
    torch.manual_seed(0)
    net = models.build("resnet-small", widths=(4, 4, 8)).eval()
    cal = torch.randn(16, 1, 28, 28)
    pooled = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Flatten(),
                           nn.Linear(4 * 6 * 6, 3)).eval()
    cases = [(net, dict(relu="exact")), (net, dict(relu="circa")), (net, dict(relu="poly")),
             (net, dict(relu="identity")), (net, dict(output="label")), (pooled, dict())]
    for model, kw in cases:
        sm = pi.compile(model, cal[:1], calibration=cal, **kw)
        sm.run(cal[:2])
        cost = sm.last_cost
        rows = sm.layer_rows(batch=2)
        measured = {}
        for r in cost.per_layer:
            if r["phase"] == "online":
                m = measured.setdefault(r["layer"], [0, 0])
                m[0] += r["bytes_sent"]
                m[1] = max(m[1], r["rounds"])
        for r in rows:
            assert measured.get(r["layer"], [0, 0]) == [r["online_bytes"], r["rounds"]], (kw, r, measured)
        assert sum(r["online_bytes"] for r in rows) == cost.online_bytes, kw
        assert sm.predicted_rounds(batch=2) == cost.rounds, kw
        assert f"{sm.predicted_rounds():>6}" in sm.summary().splitlines()[-4]


def test_run_counts_material_as_the_dealer_sends_it(secure):
    from protocols.engine import deal
    secure.run(torch.zeros(1, 1, 8, 8))
    c = secure.last_cost
    client, server = deal(secure.plan, 1)
    assert c.material_bytes == {"client": len(client.to_bytes()), "server": len(server.to_bytes())}
    assert c.offline_bytes > sum(c.material_bytes.values()) and c.batch == 1
    assert "batch of 1" in c.table() and "both directions" in c.line()


def test_train_mode_warns_and_keeps_the_mode():
    net = small_net().train()
    with pytest.warns(TrainModeWarning, match="training mode"):
        pi.compile(net, torch.zeros(1, 1, 8, 8))
    assert net.training


def test_the_compiled_networks_values_size_its_gates():
    """Calibration runs the model as given, but a policy changes the values after its sites:
    relu="poly" fitted to an all-ReLU network compounds layer by layer (pi demo --relu poly gave
    logits off by 1e11 on 4 of 8 samples, silently, when the gates were sized for the ReLU
    network). The bounds now come from the compiled network itself: where no 64-bit ring holds
    its values the compile refuses, saying why; where one does, secure equals its plaintext."""
    from pi.assets import load_default_model, load_samples
    model, _ = load_default_model()
    samples = load_samples().inputs
    with pytest.raises(PlanError, match=r"need a \d+-bit ring, more than the 64 bits .*relu-budget optimize "
                                        r"--method autorep"):
        pi.compile(model, samples[:1], relu="poly", calibration=samples)
    torch.manual_seed(0)
    layers = [m for _ in range(4) for m in (nn.Linear(16, 16), nn.ReLU())]
    net = nn.Sequential(*layers, nn.Linear(16, 3)).eval()
    for p in net.parameters():
        p.data *= 1.5
    cal = torch.randn(64, 16)
    cal[:8] *= 4                                   # tails the polynomials square, layer after layer
    sm = pi.compile(net, cal[:1], relu="poly", calibration=cal)
    polys = [torch.from_numpy(np.asarray(op.poly)).float() for op in sm.plan.ops if getattr(op, "poly", None) is not None]
    with torch.no_grad():                          # a plain nn.ReLU model: its twin by hand
        h = cal[:16]
        for i, c in enumerate(polys):
            h = net[2 * i](h)
            h = c[:, 2] * h * h + c[:, 1] * h + c[:, 0]
        ref = net[8](h).double()
        assert ref.abs().max() > 20 * net(cal[:16]).abs().max()      # the polynomials did grow
    # fixed-point coefficients times squared values: a relative, not an absolute, tolerance
    assert (sm.run(cal[:16]) - ref).abs().max() < 0.02 * ref.abs().max()


@pytest.mark.parametrize("layer, needles", [
    (nn.GELU(), ["module GELU", "replace it with nn.ReLU", "fine-tune"]),
    (nn.ReLU6(), ["module ReLU6", "replace it with nn.ReLU"]),
    (nn.Conv2d(4, 4, 3, dilation=2), ["dilation=(2, 2) (use dilation=1)"]),
    (nn.Conv2d(4, 4, 3, groups=2), ["groups=2 (grouped/depthwise convolution; use groups=1)"]),
    (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), ["padding_mode='reflect'"]),
])
def test_unsupported_ops_say_what_to_replace(layer, needles):
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), layer).eval()
    with pytest.raises(UnsupportedOp) as err:
        pi.compile(net, torch.zeros(1, 1, 8, 8))
    for n in needles:
        assert n in str(err.value), str(err.value)
    if isinstance(layer, nn.Conv2d):          # only the offending setting is named
        assert sum(k in str(err.value) for k in ("groups=", "dilation=", "padding_mode=")) == 1
