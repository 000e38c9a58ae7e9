import gzip
import struct

import numpy as np
import pytest
import torch

from relu_budget import data


def write_idx(path, arr):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


@pytest.fixture
def fake_fashion(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "train_images": rng.integers(0, 256, (120, 28, 28), dtype=np.uint8),
        "train_labels": np.repeat(np.arange(10, dtype=np.uint8), 12),
        "test_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "test_labels": np.repeat(np.arange(10, dtype=np.uint8), 2),
    }
    for key, arr in files.items():
        write_idx(tmp_path / data.FASHION_FILES[key], arr)
    return tmp_path, files


def test_idx_roundtrip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), arr)


def test_idx_rejects_garbage(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"abc")
    with pytest.raises(ValueError, match="holds 3 elements"):
        data.read_idx(tmp_path / "short")


def test_missing_files_name_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    with pytest.raises(data.DatasetUnavailable, match="dataset-fashion-mnist"):
        data.fashion_mnist(tmp_path)


def test_fashion_loader_splits_are_deterministic_and_disjoint(fake_fashion, monkeypatch):
    d, files = fake_fashion
    monkeypatch.setenv(data.DATA_DIR_ENV, str(d))   # the environment variable is honoured
    a, b = data.fashion_mnist(), data.fashion_mnist()
    assert a.input_shape == (1, 28, 28) and a.num_classes == 10
    assert len(a.train[1]) + len(a.val[1]) == 120 and len(a.test[1]) == 20
    torch.testing.assert_close(a.val[0], b.val[0])
    # Disjointness: every training image appears exactly once across train and val.
    joined = torch.cat([a.train[0], a.val[0]]).flatten(1)
    assert torch.unique(joined, dim=0).shape[0] == 120
    expected = (files["test_images"][0] / 255.0 - data.FASHION_MEAN) / data.FASHION_STD
    np.testing.assert_allclose(a.test[0][0, 0].numpy(), expected, rtol=1e-5)
    assert data.fashion_mnist(seed=1).val[1].tolist() != a.val[1].tolist()


def test_group_imbalanced_keeps_the_fraction(fake_fashion):
    d, _ = fake_fashion
    s = data.fashion_mnist(d)
    imb = data.group_imbalanced(s, minority_classes=(5, 6, 7, 8, 9), keep_fraction=0.5)
    for c in range(10):
        before = int((s.train[1] == c).sum())
        after = int((imb.train[1] == c).sum())
        assert after == (round(before * 0.5) if c >= 5 else before)
    assert imb.test[1].tolist() == s.test[1].tolist()   # evaluation stays balanced
    with pytest.raises(ValueError, match="keep_fraction"):
        data.group_imbalanced(s, keep_fraction=0)
    with pytest.raises(ValueError, match="outside"):
        data.group_imbalanced(s, minority_classes=(12,))


def test_digits_and_synthetic():
    d = data.load("digits")
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert len(d.train[1]) + len(d.val[1]) + len(d.test[1]) == 1797
    s = data.load("synthetic")
    x, y = next(iter(s.loader("train", 32)))
    assert x.shape == (32, 1, 12, 12) and y.dtype == torch.int64
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("cifar")


@pytest.mark.skipif(not (data.DEFAULT_FASHION_DIR / data.FASHION_FILES["test_labels"]).is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_files():
    s = data.fashion_mnist()
    assert (len(s.train[1]), len(s.val[1]), len(s.test[1])) == (55000, 5000, 10000)
    assert torch.bincount(s.test[1]).tolist() == [1000] * 10
    assert abs(float(s.train[0].mean())) < 0.05 and abs(float(s.train[0].std()) - 1) < 0.05
