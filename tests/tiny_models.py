"""Tiny networks for fast tests (importable from any test: `pythonpath` in pyproject.toml)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pi.compiler import SitePolicy, compile_plan
from protocols.fixed_point import FixedPoint
from protocols.site_kinds import POLY, RELU
from relu_budget import models
from relu_budget.models import ReluSite


def tiny_resnet(num_classes: int = 4) -> nn.Module:
    """A two-stage ResNet-18-style network with 2 304 ReLU sites on 1×12×12 inputs."""
    return models.build("resnet18", widths=(4, 8), blocks=(1, 1), strides=(1, 2), num_classes=num_classes)


class ScaleProbe(nn.Module):
    """x ↦ act(conv1x1(x)) with weight 1: the activation's input is round(x·2^f)·2^f exactly
    (2f fractional bits), so its truncation by f does not round and every secure output of a
    polynomial site is a fixed-point value known exactly."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.scale.weight.fill_(1.0)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.scale(x))


PROBE_COEFFS = (0.2, 0.5, 0.2)     # c0, c1, c2 of poly_probe's sites


def poly_probe(n: int, **compile_kw):
    """(plan, weights) of ScaleProbe on 1×1×1×n inputs at f = 12, every site the polynomial
    PROBE_COEFFS; compile_kw go to compile_plan (ring_bits, calibration, ...)."""
    def policy(name, shape):
        return SitePolicy(kinds=np.full(shape, POLY, np.int8), poly=np.array([PROBE_COEFFS]))
    return compile_plan(ScaleProbe().eval(), torch.zeros(1, 1, 1, n), site_policy=policy, fixed_point=FixedPoint(12),
                        **compile_kw)


def mixed_site_cnn(kinds: list[int], **site_kw):
    """A seeded smallcnn on 8×8 inputs whose first activation layer has sites of the given kinds
    drawn at random (polynomial ones with per-channel degree-2 coefficients), a batch of 3 inputs,
    and the compiler's site policy for it (site_kw: more SitePolicy fields, e.g. circa_k):
    (model, x, policy)."""
    torch.manual_seed(6)
    model = models.build("smallcnn", image_size=8, channels=(3, 4), hidden=10).eval()
    kind_map = np.random.default_rng(1).choice(kinds, size=(3, 8, 8)).astype(np.int8)
    coeffs = torch.tensor([[0.1, 0.5, 0.25], [-0.2, 1.0, 0.1], [0.0, 0.8, -0.05]])
    model.relu1.set_kinds(torch.from_numpy(kind_map), coeffs)
    x = torch.randn(3, 1, 8, 8)

    def policy(name, shape):
        site = dict(model.named_modules())[name]
        if site.kind_map is None:
            return SitePolicy()
        return SitePolicy(kinds=site.kind_map.numpy(), poly=site.poly_coeffs.double().numpy(), **site_kw)
    return model, x, policy


def randomized_tiny_resnet(seed: int) -> nn.Module:
    """tiny_resnet in eval mode with randomized BatchNorm statistics (so every layer's scale matters)."""
    torch.manual_seed(seed)
    model = tiny_resnet().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2)
    return model


def poly_resnet():
    """A two-stage ResNet-18-style network (tiny_resnet) whose every activation layer
    is 90 % polynomial sites (DaPa-like coefficients per channel) and 10 % exact ReLU, with its
    BatchNorm statistics randomized; 16 inputs."""
    model = randomized_tiny_resnet(4)
    rng = np.random.default_rng(4)
    x = torch.randn(16, 1, 12, 12)
    shapes = {}

    def record(name):
        def hook(mod, inputs, out):
            shapes[name] = tuple(out.shape[1:])
        return hook
    hooks = [s.register_forward_hook(record(n)) for n, s in model.named_modules() if isinstance(s, ReluSite)]
    with torch.no_grad():
        model(x[:1])
    for h in hooks:
        h.remove()
    for name, site in model.named_modules():
        if isinstance(site, ReluSite):
            shape = shapes[name]
            kinds = np.where(rng.random(shape) < 0.9, POLY, RELU).astype(np.int8)
            coeffs = np.stack([rng.uniform(0.1, 0.3, shape[0]), rng.uniform(0.4, 0.6, shape[0]),
                               rng.uniform(0.1, 0.3, shape[0])], axis=1)
            site.set_kinds(torch.from_numpy(kinds), torch.from_numpy(coeffs))
    return model, x
