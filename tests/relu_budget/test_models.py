import pytest
import torch

from relu_budget import models, train
from relu_budget.models import CIRCA, IDENTITY, POLY, RELU, ReluSite


def test_resnet18_layout_and_relu_counts():
    m = models.build("resnet18")
    rows = models.count_relu_sites(m, (1, 28, 28))
    assert len(rows) == 17                           # stem + 2 per basic block × 8 blocks
    assert rows[0]["name"] == "stem_relu" and rows[0]["shape"] == (16, 28, 28)
    assert rows[1]["name"] == "layers.0.0.relu1"
    assert rows[-1]["name"] == "layers.3.1.relu2" and rows[-1]["shape"] == (128, 4, 4)
    assert sum(r["sites"] for r in rows) == 16 * 784 * 5 + 32 * 196 * 4 + 64 * 49 * 4 + 128 * 16 * 4
    assert all(r["relu"] == r["sites"] for r in rows)
    assert m.stage_of("layers.2.0.relu1") == 3 and m.stage_of("stem_relu") == 0


def test_resnet_variants_for_32x32_and_imagenet_stem():
    m = models.build("resnet18", in_channels=3, widths=(8, 16, 32, 64), stem="conv7-pool")
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    rows = models.count_relu_sites(m, (3, 32, 32))
    assert rows[0]["shape"] == (8, 16, 16) and rows[1]["shape"] == (8, 8, 8)
    with pytest.raises(ValueError, match="one entry per stage"):
        models.build("resnet18", widths=(8, 16))
    with pytest.raises(ValueError, match="unknown architecture"):
        models.build("vgg")


def test_site_kinds_change_the_function():
    site = ReluSite()
    x = torch.linspace(-2, 2, 8).view(1, 2, 2, 2)
    torch.testing.assert_close(site(x), torch.relu(x))
    kinds = torch.tensor([RELU, IDENTITY, POLY, CIRCA], dtype=torch.int8).view(1, 2, 2).expand(2, 2, 2)
    coeffs = torch.tensor([[0.1, 0.5, 0.25], [0.0, 1.0, 0.0]])
    site.set_kinds(kinds.clone(), coeffs)
    y = site(x)
    assert y[0, 0, 0, 0] == torch.relu(x[0, 0, 0, 0])
    assert y[0, 0, 0, 1] == x[0, 0, 0, 1]
    torch.testing.assert_close(y[0, 0, 1, 0], 0.25 * x[0, 0, 1, 0] ** 2 + 0.5 * x[0, 0, 1, 0] + 0.1)
    assert y[0, 0, 1, 1] == torch.relu(x[0, 0, 1, 1])          # Circa without simulation = ReLU
    with pytest.raises(ValueError, match="poly_coeffs"):
        ReluSite().set_kinds(torch.full((2, 2, 2), POLY))
    with pytest.raises(ValueError, match="codes"):
        ReluSite().set_kinds(torch.full((2,), 9))


def test_count_reports_kinds():
    m = models.build("smallcnn")
    m.relu3.set_kinds(torch.tensor([IDENTITY] * 50 + [RELU] * 50, dtype=torch.int8))
    rows = {r["name"]: r for r in models.count_relu_sites(m, (1, 28, 28))}
    assert rows["relu3"]["identity"] == 50 and rows["relu3"]["relu"] == 50
    assert rows["relu1"]["sites"] == 16 * 28 * 28


def test_checkpoint_roundtrip_is_safe_and_keeps_kind_maps(tmp_path):
    m = models.build("resnet-small")
    m.stem_relu.set_kinds(torch.randint(0, 2, (16, 14, 14), dtype=torch.int8))
    m.eval()
    path = train.save_checkpoint(tmp_path / "m.pt", m, {"note": "x"})
    m2, meta = train.load_checkpoint(path)
    assert meta == {"note": "x"}
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(m(x), m2(x))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        train.load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        train.load_checkpoint(tmp_path / "missing.pt")
