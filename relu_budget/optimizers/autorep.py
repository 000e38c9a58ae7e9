"""AutoReP (Peng et al., ICCV 2023): hysteresis masks + DaPa polynomials, re-implemented.

Each ReLU layer gets a per-pixel binary mask m (starts at 1) driven by an auxiliary α ~ U(0,1):
    m ← m·[α > −t] + (1 − m)·[α > t]          (hysteresis, t ≈ 0.003)
and computes m·ReLU(x) + (1 − m)·p(x), p(x) = s·c2·x² + c1·x + c0 per channel. The backward
pass is a straight-through estimator (∂L/∂α = ∂L/∂m).

Loss: CE + KD + λ·ReLU(Σm/N − B/N) (λ = 100 by default, in AutoReP's 80–240 range).

DaPa (distribution-aware polynomial approximation, relu_budget.dapa): per channel the running
mean μ and std σ of the pre-activation are tracked (like a BatchNorm without affine), and p
is the least-squares fit of ReLU under N(μ, σ²). Coefficients are reset to this fit every `dapa_every` steps during
the first `dapa_epochs` epochs of the search, then train freely.

Guards against escaping activations (Sisyphus): the x² term is scaled by s (`c2_scale`, 0.1:
the parameter is c2/s, so its effective learning rate is s² smaller); in every training
forward pass the polynomial's input is clamped to μ ± κσ per channel (`clamp_sigmas`), which
bounds the gradients, and a range penalty ρ·Σ_layers mean((1 − m)·ReLU(|x − μ|/σ − κ)²)
(`range_penalty`) pulls the inputs of polynomial sites back inside that band, so that the
deployed form, which has no clamp (a clamp costs two comparisons per site), stays in range.
Validation, test and the policy use the deployed form: the metrics are what the engine
computes. (Without the penalty, a network fine-tuned in the clamped form lets a few inputs
reach 30σ at a post-residual site; p squares them and the next blocks square again: the
deployed form overflows to NaN on those inputs.) Every training forward pass checks for
non-finite values and fails with a message naming the layer.

After the search exactly B sites are kept (the B largest by (m, α)); all others become
polynomial sites (kind 2) with per-channel coefficients (c0, c1, s·c2) in the policy. Then
weights and coefficients are fine-tuned with the masks frozen (CE + KD, best validation).

Rounds (not in the paper): every activation layer holding a ReLU or a polynomial site costs
one opening, i.e. one round trip online; only a layer of identity sites costs none. So after
the search AutoReP may turn whole layers into identity (`linear_layers`, see
`choose_linear_layers`): layers are ranked by the validation accuracy lost when each alone is
linearized, and the B kept sites are re-picked among the other layers before fine-tuning.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from relu_budget.dapa import dapa_coefficients
from relu_budget.fairness import FairnessSettings, finetune_hooks
from relu_budget.models import IDENTITY, POLY, RELU, relu_sites
from relu_budget.optimizers.common import (BudgetError, OptimizeConfig, OptimizeResult, begin, finish, site_rows,
                                           top_k_mask)
from relu_budget.optimizers.training import train_loader, train_phase
from relu_budget.train import evaluate

NAME = "autorep"


@dataclass
class AutoRePConfig(FairnessSettings, OptimizeConfig):   # FairnessSettings: fine-tuning mitigations (fairness/mitigation.py)
    lam: float = 100.0              # budget penalty weight λ
    threshold: float = 0.003        # hysteresis t
    alpha_lr: float = 1e-3          # Adam learning rate of α
    coeff_lr: float = 1e-3          # learning rate of the polynomial coefficients
    c2_scale: float = 0.1           # s in p(x) = s·c2·x² + c1·x + c0
    dapa_every: int = 10            # reset the coefficients to DaPa every this many steps ...
    dapa_epochs: float = 1.0        # ... during the first this many epochs of the search
    clamp_sigmas: float | None = 6.0  # κ: training clamps polynomial inputs to μ ± κσ (None: off)
    range_penalty: float = 10.0     # ρ: penalty on polynomial inputs beyond μ ± κσ (0: off)
    calibration_batches: int = 4    # batches to initialize the running statistics
    stats_momentum: float = 0.1
    eps: float = 1e-5
    # Whole activation layers turned into identity after the search (each saves a round online):
    # a number, or "auto": under the latency objective as many as keep the validation accuracy
    # within `linear_tolerance` of the unlinearized network, none under the other objectives.
    # Off by default: identity sites truncate locally, which widens the calibrated ring
    # (docs/optimizers.md, measured on autorep-5-rounds).
    linear_layers: int | str = 0
    linear_tolerance: float = 0.005


class AutoRePSite(nn.Module):
    """m·ReLU(x) + (1 − m)·p(x) with a hysteresis mask (STE) and DaPa-initialized p."""

    def __init__(self, name: str, shape: tuple[int, ...], config: AutoRePConfig, generator=None) -> None:
        super().__init__()
        self.name, self.shape, self.cfg = name, tuple(shape), config
        c = shape[0]
        self.alpha = nn.Parameter(torch.rand(self.shape, generator=generator))
        self.register_buffer("mask", torch.ones(self.shape))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.long))
        self.coeffs = nn.Parameter(torch.zeros(c, 3))   # c0, c1, c2/s
        self.frozen = False        # masks fixed (fine-tuning / deployed form)
        self.linear = False        # the whole layer is identity (no site opened: no round)
        self.calibrating = False
        self.range_loss: torch.Tensor | None = None   # of the last training forward pass
        self.reset_to_dapa()

    # -- statistics and DaPa ------------------------------------------------------------------
    def _reduce_dims(self, x):
        return [0] + list(range(2, x.dim()))

    @torch.no_grad()
    def _update_stats(self, x: torch.Tensor) -> None:
        dims = self._reduce_dims(x)
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        if self.calibrating:           # cumulative average over calibration batches
            n = int(self.calibrated)
            self.running_mean.mul_(n / (n + 1)).add_(mean / (n + 1))
            self.running_var.mul_(n / (n + 1)).add_(var / (n + 1))
            self.calibrated += 1
        else:
            mom = self.cfg.stats_momentum
            self.running_mean.mul_(1 - mom).add_(mom * mean)
            self.running_var.mul_(1 - mom).add_(mom * var)

    def std(self) -> torch.Tensor:
        return torch.sqrt(self.running_var + self.cfg.eps)

    @torch.no_grad()
    def reset_to_dapa(self) -> None:
        c = dapa_coefficients(self.running_mean, self.std()).float()
        c[:, 2] = c[:, 2] / self.cfg.c2_scale
        self.coeffs.copy_(c)

    def effective_coeffs(self) -> torch.Tensor:
        """(C, 3): c0, c1, s·c2, as the policy stores them."""
        c = self.coeffs.detach().clone()
        c[:, 2] = c[:, 2] * self.cfg.c2_scale
        return c

    # -- masks --------------------------------------------------------------------------------
    @torch.no_grad()
    def update_mask(self) -> None:
        t, a, m = self.cfg.threshold, self.alpha, self.mask
        self.mask.copy_(m * (a > -t).float() + (1 - m) * (a > t).float())

    def poly(self, x: torch.Tensor) -> torch.Tensor:
        view = (1, -1) + (1,) * (x.dim() - 2)
        k = self.cfg.clamp_sigmas
        # The search's masks move, so its validation uses the clamped form too; once the masks
        # are frozen only training clamps, and evaluation is the deployed form.
        if k is not None and (self.training or not self.frozen):
            mu, sd = self.running_mean.view(view), self.std().view(view)
            if self.training and self.cfg.range_penalty > 0:
                excess = F.relu((x - mu).abs() / sd - k)
                self.range_loss = ((1 - self.mask) * excess * excess).mean()
            x = torch.maximum(torch.minimum(x, mu + k * sd), mu - k * sd)
        c = self.coeffs
        return (self.cfg.c2_scale * c[:, 2]).view(view) * x * x + c[:, 1].view(view) * x + c[:, 0].view(view)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.linear:
            return x
        if self.training or self.calibrating:
            self._update_stats(x)
        if self.calibrating:
            return F.relu(x)
        if self.training and not self.frozen:
            self.update_mask()
        m = self.mask
        if not self.frozen:
            m = m + self.alpha - self.alpha.detach()        # straight-through estimator
        out = m * F.relu(x) + (1 - m) * self.poly(x)
        if self.training and not torch.isfinite(out).all():
            raise FloatingPointError(
                f"AutoReP: non-finite activations in layer {self.name!r} (escaping activations: inputs "
                f"|x| up to {x.detach().abs().max().item():.3g}). Lower the learning rate or coeff_lr, reduce "
                f"c2_scale, or set clamp_sigmas.")
        return out

    def soft_count(self) -> torch.Tensor:
        """Σm with the straight-through gradient to α."""
        return (self.mask + self.alpha - self.alpha.detach()).sum()


def attach(model: nn.Module, input_shape, config: AutoRePConfig) -> dict[str, AutoRePSite]:
    gen = torch.Generator().manual_seed(config.seed)
    out = {}
    for row in site_rows(model, input_shape):
        name = row["name"]
        site = dict(relu_sites(model))[name]
        if site.kind_map is not None and bool((site.kind_map != RELU).any()):
            raise ValueError(f"AutoReP starts from an all-ReLU model; layer {name!r} already has linearized sites")
        site.kind_map = None
        out[name] = AutoRePSite(name, row["shape"], config, gen)
        site.replacement = out[name]
    return out


@torch.no_grad()
def calibrate(model: nn.Module, modules: dict[str, AutoRePSite], splits, config: AutoRePConfig) -> None:
    """Running statistics from a few training batches, then a DaPa reset."""
    loader, _ = train_loader(splits, config)
    was = model.training
    model.eval()
    for m in modules.values():
        m.calibrating = True
        m.calibrated.zero_()
    for i, (x, _y) in enumerate(loader):
        if i >= config.calibration_batches:
            break
        model(x)
    for m in modules.values():
        m.calibrating = False
        m.reset_to_dapa()
    model.train(was)


def fix_masks(modules: dict[str, AutoRePSite], budget: int) -> int:
    """Keeps exactly `budget` ReLU sites: the largest by (m, α), in the layers that are not
    linear (a linear layer keeps none). Returns Σm before fixing."""
    for m in modules.values():
        if m.linear:
            m.mask.zero_()
            m.frozen = True
    names = [n for n, m in modules.items() if not m.linear]
    before = int(sum(modules[n].mask.sum() for n in names))
    # m dominates (any kept site outranks any dropped one), α orders within.
    scores = [modules[n].mask * 1e6 + modules[n].alpha.detach().clamp(-1e5, 1e5) for n in names]
    keep = top_k_mask(scores, budget)
    for n, k in zip(names, keep):
        modules[n].mask.copy_(k.float())
        modules[n].frozen = True
    return before


def linear_count(config: AutoRePConfig, n_layers: int) -> int | None:
    """How many layers to linearize (None: "auto", bounded by the tolerance instead)."""
    n = config.linear_layers
    if n == "auto":
        return None if config.objective == "latency" else 0
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < n_layers:
        raise BudgetError(f"AutoReP linear_layers must be \"auto\" or an integer in 0..{n_layers - 1} "
                          f"(the network has {n_layers} activation layers), got {n!r}")
    return n


@torch.no_grad()
def choose_linear_layers(model: nn.Module, modules: dict[str, AutoRePSite], splits, config: AutoRePConfig,
                         budget: int) -> dict:
    """Marks whole layers linear (identity) after the search and re-fixes the masks.

    Criterion: the validation accuracy of the deployed form (masks fixed at the budget) when
    one layer alone is identity; layers are tried in order of the smallest loss (ties: fewer
    kept ReLUs) and added while the combination stays within `linear_tolerance` of the
    unlinearized network ("auto") or until `linear_layers` are taken. A layer is skipped when
    the others would hold fewer than `budget` sites. Masks are restored to their searched
    values first, so the layers' kept sites go to the other layers by the same (m, α) order."""
    n = linear_count(config, len(modules))
    if n == 0:
        return {}
    searched = {k: m.mask.clone() for k, m in modules.items()}
    fix_masks(modules, budget)
    was = model.training
    model.eval()
    loader = splits.loader("val", config.eval_batch_size)

    def accuracy() -> float:
        return evaluate(model, loader)["accuracy"]
    base = accuracy()
    drops = {}
    for name, m in modules.items():
        m.linear = True
        drops[name] = base - accuracy()
        m.linear = False
    kept = {k: int(m.mask.sum()) for k, m in modules.items()}
    free = sum(m.mask.numel() for m in modules.values())
    chosen, combined = [], 0.0
    for name in sorted(modules, key=lambda k: (drops[k], kept[k])):
        if n is not None and len(chosen) >= n:
            break
        if free - modules[name].mask.numel() < budget:
            continue
        modules[name].linear = True
        drop = base - accuracy()
        if n is None and drop > config.linear_tolerance:
            modules[name].linear = False
            continue
        chosen.append(name)
        combined, free = drop, free - modules[name].mask.numel()
    model.train(was)
    for k, m in modules.items():
        m.mask.copy_(searched[k])
        m.frozen = False
    return {"linear_layers": chosen, "linear_drops": drops, "linear_combined_drop": combined,
            "linear_base_val_accuracy": base}


def range_term(modules: dict[str, AutoRePSite], config: AutoRePConfig):
    """extra_loss: ρ·Σ range_loss over the layers of the last forward pass (0 when off)."""
    def term(_model):
        losses = [m.range_loss for m in modules.values() if m.range_loss is not None]
        for m in modules.values():
            m.range_loss = None
        return config.range_penalty * sum(losses) if losses else torch.zeros(())
    return term


def _plus(term, other):
    """term(model) + other(...), keeping the calling convention of `other` (train_phase)."""
    if other is None:
        return term
    if getattr(other, "uses_batch", False):
        def both(model, logits, labels):
            return term(model) + other(model, logits, labels)
        both.uses_batch = True
        return both
    return lambda model: term(model) + other(model)


def to_policy(model: nn.Module, modules: dict[str, AutoRePSite]) -> None:
    """Writes kinds (RELU / POLY) and effective coefficients into the ReluSites, drops replacements."""
    sites = dict(relu_sites(model))
    for n, m in modules.items():
        coeffs = m.effective_coeffs()
        if not torch.isfinite(coeffs).all():
            raise FloatingPointError(f"AutoReP: layer {n!r} ended with non-finite polynomial coefficients")
        kinds = torch.where(m.mask > 0.5, torch.tensor(RELU, dtype=torch.int8), torch.tensor(POLY, dtype=torch.int8))
        sites[n].replacement = None
        if m.linear:
            sites[n].set_kinds(torch.full_like(kinds, IDENTITY))
        else:
            sites[n].set_kinds(kinds, coeffs)


def optimize(model: nn.Module, splits, budget, config: AutoRePConfig | dict | None = None,
             teacher: nn.Module | None = None, progress: bool = True) -> OptimizeResult:
    p = begin(model, splits, budget, config, AutoRePConfig, teacher, kept_kind="relu", other_kind="poly")
    config, student, teacher, b, store, shape, t0 = (p.config, p.student, p.teacher, p.budget, p.store,
                                                     p.input_shape, p.t0)
    modules = attach(student, shape, config)
    n_sites = sum(m.mask.numel() for m in modules.values())
    calibrate(student, modules, splits, config)

    alphas = [m.alpha for m in modules.values()]
    coeffs = [m.coeffs for m in modules.values()]
    special = {id(p) for p in alphas + coeffs}
    weights = [p for p in student.parameters() if id(p) not in special and p.requires_grad]
    groups = [{"params": weights, "lr": config.lr}, {"params": alphas, "lr": config.alpha_lr},
              {"params": coeffs, "lr": config.coeff_lr}]
    loader_len = len(train_loader(splits, config)[0])
    dapa_steps = int(config.dapa_epochs * loader_len)

    def budget_penalty(_model):
        count = sum(m.soft_count() for m in modules.values())
        return config.lam * F.relu(count / n_sites - b / n_sites)
    in_range = range_term(modules, config)

    def after_step(_model, step):
        if step <= dapa_steps and config.dapa_every > 0 and step % config.dapa_every == 0:
            for m in modules.values():
                m.reset_to_dapa()

    def on_epoch_end(epoch, row, st):
        row["relus"] = int(sum(m.mask.sum() for m in modules.values()))
        return False

    search = train_phase(student, splits, config, name="autorep_search", epochs=config.epochs,
                         optimizer=config.optimizer, lr=config.lr, teacher=teacher, param_groups=groups,
                         extra_loss=_plus(in_range, budget_penalty), after_step=after_step,
                         on_epoch_end=on_epoch_end, select_best=False, store=store, progress=progress)
    linear = choose_linear_layers(student, modules, splits, config, b)
    before = fix_masks(modules, b)
    # Fine-tune weights and coefficients with the masks frozen; validation in the deployed form.
    ft_groups = [{"params": weights, "lr": config.finetune_lr}, {"params": coeffs, "lr": config.finetune_lr}]
    for a in alphas:
        a.requires_grad_(False)
    hooks = finetune_hooks(config, splits, teacher=teacher)
    hooks["extra_loss"] = _plus(in_range, hooks.get("extra_loss"))
    ft = train_phase(student, splits, config, name="autorep_finetune", epochs=config.finetune_epochs,
                     optimizer=config.finetune_optimizer, lr=config.finetune_lr, teacher=teacher,
                     param_groups=ft_groups, store=store, progress=progress, **hooks)
    to_policy(student, modules)
    info = {"relus_before_fix": before, "search_epochs": search["epochs_run"], "finetune_best": ft["best"],
            "dapa_steps": dapa_steps, **linear}
    return finish(NAME, student, splits, b, config, search["history"] + ft["history"], extra=info, t0=t0,
                  cost_budget=p.cost_budget)


__all__ = ["AutoRePConfig", "AutoRePSite", "optimize"]
