"""Plaintext simulation of Circa's stochastic ReLU (the fault law of the truncated sign test).

The secure engine feeds an activation its input at scale 2f (a private linear layer adds f
fractional bits; the truncation back to f is fused into the gate), so a value x is the
integer x_ulp = round(x · 2^(2f)) there and Circa's k dropped bits are in units of 2^(−2f).
The law is the gates' (docs/fss.md, "Circa: fault law of this construction"; checked against
the native gates in tests/native/test_circa_law.py), with a uniform mask:

- PosZero: for 0 ≤ x_ulp < 2^k the site outputs 0 instead of x with probability
  (2^k − x_ulp) / 2^k (at x_ulp = 0 the fault is invisible); otherwise it is an exact ReLU.
- NegPass: for −2^k ≤ x_ulp ≤ −1 the site outputs x instead of 0 with probability
  (2^k + x_ulp) / 2^k; otherwise it is an exact ReLU.

`circa_relu` applies the law to a tensor; `CircaSiteSim` is a ReluSite replacement that runs
a site's full kind map (identity / polynomial / exact / Circa sites) with faults, used for
Circa-aware fine-tuning and for evaluating a Circa policy faithfully in plaintext.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from protocols.site_kinds import CIRCA_MODES
from relu_budget.models import CIRCA, ReluSite, relu_sites

DEFAULT_FRAC_BITS = 12


def _check(k: int, mode: str, frac_bits: int, scale_bits: int | None) -> int:
    if mode not in CIRCA_MODES:
        raise ValueError(f"Circa mode must be one of {CIRCA_MODES}, got {mode!r}")
    if not isinstance(k, int) or not 1 <= k <= 62:
        raise ValueError(f"Circa k must be an integer in 1..62, got {k!r}")
    if not 1 <= frac_bits <= 30:
        raise ValueError(f"frac_bits must be in 1..30, got {frac_bits}")
    s = 2 * frac_bits if scale_bits is None else scale_bits
    if not 1 <= s <= 62:
        raise ValueError(f"scale_bits must be in 1..62, got {s}")
    return s


def fault_probability(x: torch.Tensor, k: int, mode: str = "poszero", frac_bits: int = DEFAULT_FRAC_BITS,
                      scale_bits: int | None = None) -> torch.Tensor:
    """Per-element probability that the Circa site faults at input x (float64)."""
    s = _check(k, mode, frac_bits, scale_bits)
    xu = torch.round(x.detach().double() * 2.0 ** s)
    t = 2.0 ** k
    if mode == "poszero":
        zone = (xu >= 0) & (xu < t)
        p = (t - xu) / t
    else:
        zone = (xu >= -t) & (xu <= -1)
        p = (t + xu) / t
    return torch.where(zone, p, torch.zeros_like(p))


def circa_relu(x: torch.Tensor, k: int, mode: str = "poszero", frac_bits: int = DEFAULT_FRAC_BITS,
               scale_bits: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """ReLU with Circa's faults drawn at random. Gradients flow like through the function
    actually computed (0 at a PosZero fault, 1 at a NegPass fault)."""
    p = fault_probability(x, k, mode, frac_bits, scale_bits)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
    fault = u < p
    relu = F.relu(x)
    if mode == "poszero":
        return torch.where(fault, torch.zeros_like(x), relu)
    return torch.where(fault, x, relu)


class CircaSiteSim(nn.Module):
    """Replacement for a ReluSite: the site's kind map with Circa faults at its Circa sites."""

    def __init__(self, site: ReluSite, frac_bits: int = DEFAULT_FRAC_BITS, scale_bits: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if site.circa is None or site.kind_map is None:
            raise ValueError("CircaSiteSim needs a site with a kind map and circa=dict(k=..., mode=...)")
        self.k = int(site.circa["k"])
        self.mode = site.circa.get("mode", "poszero")
        _check(self.k, self.mode, frac_bits, scale_bits)
        self.frac_bits, self.scale_bits = frac_bits, scale_bits
        self.generator = generator
        self._site = [site]          # not a submodule: avoids a cycle in module traversal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sim = circa_relu(x, self.k, self.mode, self.frac_bits, self.scale_bits, self.generator)
        return self._site[0].by_kind(x, circa=sim)


def attach(model: nn.Module, frac_bits: int = DEFAULT_FRAC_BITS, scale_bits: int | None = None,
           seed: int | None = None) -> list[str]:
    """Puts a CircaSiteSim on every site that has Circa sites; returns their names. With a
    seed, all of them draw from one generator seeded with it (reproducible evaluation)."""
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    names = []
    for name, site in relu_sites(model):
        if site.kind_map is not None and site.circa is not None and bool((site.kind_map == CIRCA).any()):
            if site.replacement is not None and not isinstance(site.replacement, CircaSiteSim):
                raise ValueError(f"site {name!r} already has a training replacement; finish that first")
            site.replacement = CircaSiteSim(site, frac_bits, scale_bits, gen)
            names.append(name)
    return names


def detach(model: nn.Module) -> None:
    for _, site in relu_sites(model):
        if isinstance(site.replacement, CircaSiteSim):
            site.replacement = None


@contextlib.contextmanager
def simulated(model: nn.Module, frac_bits: int = DEFAULT_FRAC_BITS, scale_bits: int | None = None,
              seed: int | None = None):
    """Context in which the model's Circa sites fault as they would in the secure engine."""
    attach(model, frac_bits, scale_bits, seed)
    try:
        yield model
    finally:
        detach(model)


def has_circa(model: nn.Module) -> bool:
    return any(s.kind_map is not None and s.circa is not None and bool((s.kind_map == CIRCA).any())
               for _, s in relu_sites(model))
