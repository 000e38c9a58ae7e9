import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import pi
from pi.compiler import UnsupportedOp, supported_ops_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "supported_ops.md"


def test_supported_ops_doc_is_generated_from_code():
    assert DOCS.read_text() == supported_ops_markdown(), \
        "docs/supported_ops.md is stale: run `python -m pi.compiler > docs/supported_ops.md`"


class Sigmoidy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class MeanPool(Sigmoidy):
    def forward(self, x):
        return self.fc(x.view(1, 4, 1, 1).mean((2, 3)))


class Concat(Sigmoidy):
    def forward(self, x):
        return torch.cat([self.fc(x), x], dim=1)


@pytest.mark.parametrize("model,match", [
    (Sigmoidy(), "node 'sigmoid': function sigmoid"),
    (MeanPool(), "method Tensor.mean is not supported .* Fix: .*nn.AdaptiveAvgPool2d"),
    (Concat(), "function cat is not supported .* Fix: .*no concatenation"),
    (nn.Sequential(nn.Linear(4, 4), nn.GELU()), "module GELU"),
    (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), "groups=2"),
])
def test_unsupported_ops_name_node_op_and_supported_list(model, match):
    x = torch.zeros(1, 2, 6, 6) if isinstance(model[0] if isinstance(model, nn.Sequential) else model.fc, nn.Conv2d) \
        else torch.zeros(1, 4)
    with pytest.raises(UnsupportedOp, match=match) as err:
        pi.compile(model, x)
    assert "Supported:" in str(err.value) and "nn.Conv2d" in str(err.value)


def test_bad_relu_choice_and_default_circa_k():
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    with pytest.raises(ValueError, match="relu must be one of"):
        pi.compile(m, torch.zeros(1, 4), relu="gelu")
    # circa_k defaults as on the CLI: frac_bits + 4
    sm = pi.compile(m, torch.zeros(1, 4), relu="circa")
    act = next(op for op in sm.plan.ops if op.kind == "Activation")
    assert act.circa_k == sm.fixed_point.frac_bits + 4
    with pytest.raises(ValueError, match="unknown provider"):
        pi.compile(m, torch.zeros(1, 4), provider="he")


def test_bundle_roundtrip_and_public_spec_has_no_weights(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).eval()
    sm = pi.compile(m, torch.zeros(1, 1, 4, 4))
    path = sm.save(tmp_path / "b.npz")
    loaded = pi.load(path)
    assert loaded.plan.to_dict() == sm.plan.to_dict()
    for k in sm.weights.weights:
        assert (loaded.weights.weights[k] == sm.weights.weights[k]).all()
    spec = sm.public_spec()
    # What a client receives is plain JSON, and no encoded weight or bias value is in it.
    text = json.dumps(spec)
    numbers = {int(t) for t in re.findall(r"-?\d+", text)}
    secret = {int(v) for a in sm.weights.weights.values() for v in np.asarray(a).reshape(-1) if abs(int(v)) > 1000}
    assert len(secret) > 10 and not secret & numbers
    client_view = pi.SecureModel.from_public_spec(spec)
    assert client_view.weights is None
    with pytest.raises(RuntimeError, match="no weights"):
        client_view.run(torch.zeros(1, 1, 4, 4))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a secure-model bundle"):
        pi.load(tmp_path / "junk.npz")


def test_summary_counts_sites_and_macs():
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)).eval()
    sm = pi.compile(m, torch.zeros(1, 1, 4, 4))
    rows = {r["layer"]: r for r in sm.layer_rows()}
    assert rows["1"]["relu"] == 32
    assert rows["0"]["macs"] == 2 * 16 * 9 and rows["3"]["macs"] == 32 * 3
    assert "total" in sm.summary()


class PolyNet(nn.Module):
    """conv → ReLU → conv, with the ReLU given as p(x) = c0 + c1·x + c2·x² per channel."""

    def __init__(self, coeffs=None):
        super().__init__()
        torch.manual_seed(3)
        self.c1, self.c2, self.coeffs = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 2, 3), coeffs
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.c1(x)
        if self.coeffs is None:
            return self.c2(self.act(h))
        c = self.coeffs.view(3, 3, 1, 1).float()
        return self.c2(c[:, 0] + c[:, 1] * h + c[:, 2] * h * h)


def test_global_poly_fits_dapa_per_channel_on_the_calibration_data():
    from relu_budget.dapa import dapa_coefficients
    net = PolyNet().eval()
    calib = torch.randn(16, 1, 6, 6)
    with torch.no_grad():
        h = net.c1(calib).double().transpose(0, 1).reshape(3, -1)
    expected = dapa_coefficients(h.mean(1), h.std(1, correction=0))
    sm = pi.compile(net, calib[:1], relu="poly", calibration=calib)
    (act,) = [op for op in sm.plan.ops if getattr(op, "poly", None) is not None]
    assert torch.allclose(torch.from_numpy(act.poly), expected, atol=1e-12)
    x = torch.randn(3, 1, 6, 6)
    plain = PolyNet(expected)
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():
        ref = plain(x).double()
    assert (sm.run(x) - ref).abs().max() < 2 ** -6
    with pytest.raises(ValueError, match="constant on the calibration data"):
        pi.compile(net, torch.zeros(1, 1, 6, 6), relu="poly")


def test_plaintext_twin_computes_what_the_plan_computes():
    """The demo's and benchmarks' plaintext reference: the model with the plan's site kinds
    and (fitted) polynomial coefficients; the original model is left untouched."""
    from pi.compiler import plaintext_twin
    from relu_budget import models
    torch.manual_seed(0)
    net = models.build("smallcnn", image_size=8, num_classes=3, channels=(2, 3), hidden=4).eval()
    calib = torch.randn(16, 1, 8, 8)
    sm = pi.compile(net, calib[:1], relu="poly", calibration=calib)
    twin = plaintext_twin(net, sm.plan)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert (sm.run(x) - twin(x).double()).abs().max() < 2 ** -6
    for _, site in models.relu_sites(twin):                  # polynomials, not ReLUs
        assert site.kind_map is not None and bool((site.kind_map == models.POLY).all())
    assert all(s.kind_map is None for _, s in models.relu_sites(net))
    with pytest.raises(ValueError, match="no ReluSite"):
        plaintext_twin(nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.ReLU()),
                       pi.compile(nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.ReLU()), calib[:1],
                                  relu="identity").plan)


def test_a_capped_calibrated_width_steps_down_until_the_values_fit():
    """AutoReP 5 % with 4 identity layers at f = 9, the calibrated width capped at 48 bits: at 48
    the builder truncates no carried scale (10 bits are left for the values) but the calibrated
    bounds need 49; one bit narrower it truncates and the plan fits (43 bits, 2 Truncate ops)."""
    from pi.bench.model import load_calibration
    from relu_budget.runs import load_run_or_policy
    root = Path(__file__).resolve().parents[2]
    policy, net = load_run_or_policy(str(root / "benchmarks/results/optimizers/runs/autorep-5-rounds"))
    cal = load_calibration("fashion-mnist", 64)[0]
    sm = pi.compile(net, cal[:1], policy=policy, calibration=cal, frac_bits=9, max_ring_bits=48)
    assert sm.plan.ring_bits < 48 and sum(op.kind == "Truncate" for op in sm.plan.ops) == 2
