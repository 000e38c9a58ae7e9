"""DaPa (distribution-aware polynomial approximation, from AutoReP): the least-squares
degree-2 fit of ReLU under a normal input, per channel.

With z = μ/σ, φ and Φ the standard normal pdf and cdf:
    c2 = φ(z)/(2σ),  c1 = Φ(z) − z·φ(z),  c0 = φ(z)·(μ²/σ + σ)/2
(σ, not the variance). AutoReP's training (relu_budget.optimizers.autorep) and the compiler's
fit of polynomial sites on calibration data (pi.compiler) both use it.
"""
from __future__ import annotations

import math

import torch


def dapa_coefficients(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(C, 3) least-squares degree-2 fit (c0, c1, c2) of ReLU under N(mean, std²), per channel."""
    mean, std = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(std, dtype=torch.float64)
    if (std <= 0).any() or not torch.isfinite(std).all() or not torch.isfinite(mean).all():
        raise ValueError("DaPa needs finite means and positive standard deviations")
    z = mean / std
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    c2 = pdf / (2 * std)
    c1 = cdf - z * pdf
    c0 = pdf * (mean * mean / std + std) / 2
    return torch.stack([c0, c1, c2], dim=-1)
