"""Tiny networks for fast tests (importable from any test: `pythonpath` in pyproject.toml)."""
from __future__ import annotations

from torch import nn

from relu_budget import models


def tiny_resnet(num_classes: int = 4) -> nn.Module:
    """A two-stage ResNet-18-style network with 2 304 ReLU sites on 1×12×12 inputs."""
    return models.build("resnet18", widths=(4, 8), blocks=(1, 1), strides=(1, 2), num_classes=num_classes)
