"""Fixtures shared by the test packages: one torch thread for tiny models, the small synthetic
splits, and tiny ResNet teachers (tests/tiny_models.py) trained once per session.

`tests/reference/` (pure-Python references of the native code) is importable as `reference`
through `pythonpath` in pyproject.toml."""
from __future__ import annotations

import copy

import pytest
import torch

from relu_budget import data, train
from tiny_models import tiny_resnet


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for the module: with tiny tensors more threads only add overhead
    on a shared machine. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def splits():
    """Synthetic 4-class data (1×12×12): 192 training, 96 validation, 96 test examples."""
    return data.synthetic(n_train=192, n_val=96, n_test=96, seed=1)


@pytest.fixture(scope="session")
def tiny_teacher(splits):
    """tiny_teacher(epochs): a copy of a tiny_resnet trained with Adam for that many epochs
    (seed 0), trained once per session for each number of epochs."""
    trained: dict[int, torch.nn.Module] = {}

    def make(epochs: int) -> torch.nn.Module:
        if epochs not in trained:
            n = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                train.seed_everything(0)
                m = tiny_resnet()
                train.fit(m, splits, train.TrainConfig(epochs=epochs, lr=0.01, optimizer="adam", batch_size=32,
                                                       progress=False))
            finally:
                torch.set_num_threads(n)
            trained[epochs] = m
        return copy.deepcopy(trained[epochs])
    return make
