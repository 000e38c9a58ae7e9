"""Model zoo with explicit ReLU sites.

Every ReLU in these networks is a `ReluSite`: a named module that behaves as an exact ReLU
until a policy (or an optimizer during training) tells each of its scalar sites what to be:
exact ReLU, Circa stochastic ReLU, a polynomial, or the identity. Counting, masking and
compiling all find ReLUs by looking for `ReluSite` modules, never by guessing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# What a site computes: one set of codes for the model zoo, the policy format and the plan.
from protocols.site_kinds import CIRCA, IDENTITY, POLY, RELU, SITE_KINDS  # noqa: F401 (re-exported)


class ReluSite(nn.Module):
    """A ReLU layer whose scalar sites can each be exact, Circa, polynomial or identity.

    State (all optional; by default the layer is an exact ReLU):
      kind_map     int8 tensor of site codes, shape C×H×W (or broadcastable, e.g. C×1×1)
      poly_coeffs  float tensor (C, 3): per-channel c0, c1, c2 of p(x) = c2·x² + c1·x + c0
      circa        dict(k=..., mode=...) with the fixed-point fraction bits used to simulate
                   Circa's fault law in plaintext (None: Circa sites act as exact ReLU)
      replacement  a module that replaces the forward pass entirely while an optimizer trains
                   this site (e.g. a learnable mask); removed once the policy is fixed
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kind_map", None)
        self.register_buffer("poly_coeffs", None)
        self.circa: dict | None = None
        self.replacement: nn.Module | None = None

    @property
    def is_plain_relu(self) -> bool:
        return self.replacement is None and self.kind_map is None

    def set_kinds(self, kind_map: torch.Tensor | int, poly_coeffs: torch.Tensor | None = None) -> None:
        kind_map = torch.as_tensor(kind_map, dtype=torch.int8)
        if kind_map.numel() and (int(kind_map.min()) < 0 or int(kind_map.max()) >= len(SITE_KINDS)):
            raise ValueError(f"site codes must be in 0..{len(SITE_KINDS) - 1} ({', '.join(SITE_KINDS)})")
        if bool((kind_map == POLY).any()) and poly_coeffs is None and self.poly_coeffs is None:
            raise ValueError("polynomial sites need poly_coeffs of shape (C, 3)")
        self.kind_map = kind_map
        if poly_coeffs is not None:
            self.poly_coeffs = torch.as_tensor(poly_coeffs, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.replacement is not None:
            return self.replacement(x)
        if self.kind_map is None:
            return F.relu(x)
        return self.by_kind(x)

    def by_kind(self, x: torch.Tensor, circa: torch.Tensor | None = None) -> torch.Tensor:
        """Each site per its kind: exact ReLU, identity, the polynomial, and at Circa sites
        `circa` (the simulated faulty ReLU; None: exact, as in the secure engine's reference)."""
        kinds = self.kind_map.to(x.device)
        out = F.relu(x) if circa is None else torch.where(kinds == CIRCA, circa, F.relu(x))
        out = torch.where(kinds == IDENTITY, x, out)
        if self.poly_coeffs is not None and bool((kinds == POLY).any()):
            c = self.poly_coeffs.to(x)
            view = (1, -1) + (1,) * (x.dim() - 2)
            poly = c[:, 2].view(view) * x * x + c[:, 1].view(view) * x + c[:, 0].view(view)
            out = torch.where(kinds == POLY, poly, out)
        return out


def relu_sites(model: nn.Module) -> list[tuple[str, ReluSite]]:
    """All ReLU sites of a model, in forward-registration order, with their qualified names."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ReluSite)]


@torch.no_grad()
def dry_run(model: nn.Module, input_shape: tuple[int, ...], modules, record) -> list[dict]:
    """One forward pass of a zero example in eval mode (the model's mode is restored) with a
    hook on each of `modules` ((name, module) pairs): `record(name, module, inputs, output)`
    returns the row of one call. The rows, in call order: how the zoo's site counts and the cost
    model's linear layers are read off a model without guessing its structure."""
    rows: list[dict] = []
    hooks = []
    for name, module in modules:
        def hook(mod, inputs, out, name=name):
            rows.append(record(name, mod, inputs, out))
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return rows


def count_relu_sites(model: nn.Module, input_shape: tuple[int, ...]) -> list[dict]:
    """Per ReLU layer: name, per-example activation shape and number of scalar sites, and how
    many sites are exact / circa / poly / identity under the current kind maps.

    `input_shape` is one example's shape (C, H, W); counts are per example."""
    def record(name, mod, inputs, _out):
        shape = tuple(inputs[0].shape[1:])
        kinds = torch.zeros(shape, dtype=torch.int8) if mod.kind_map is None else mod.kind_map.expand(shape)
        row = {"name": name, "shape": shape, "sites": int(torch.tensor(shape).prod())}
        row.update({k: int((kinds == i).sum()) for i, k in enumerate(SITE_KINDS)})
        return row
    return dry_run(model, input_shape, relu_sites(model), record)


class BasicBlock(nn.Module):
    """ResNet basic block with two ReLU sites: after bn1, and after the residual add."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = ReluSite()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_ch))
        self.relu2 = ReluSite()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


@dataclass
class ResNetConfig:
    """A ResNet-18-style network. The defaults are ResNet-18 for small images (CIFAR stem)."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    strides: tuple[int, ...] = (1, 2, 2, 2)
    stem: str = "conv3"          # "conv3": 3×3 conv; "conv7-pool": 7×7/2 conv + 3×3/2 max pool
    stem_channels: int | None = None  # default: widths[0]
    stem_stride: int = 1
    in_channels: int = 1
    num_classes: int = 10

    def __post_init__(self) -> None:
        self.widths, self.blocks, self.strides = tuple(self.widths), tuple(self.blocks), tuple(self.strides)
        if not (len(self.widths) == len(self.blocks) == len(self.strides)) or not self.widths:
            raise ValueError("widths, blocks and strides need one entry per stage "
                             f"(got {len(self.widths)}, {len(self.blocks)}, {len(self.strides)})")
        if self.stem not in ("conv3", "conv7-pool"):
            raise ValueError(f"stem must be 'conv3' or 'conv7-pool', got {self.stem!r}")
        if min(self.widths) < 1 or min(self.blocks) < 1 or min(self.strides) < 1:
            raise ValueError("widths, blocks and strides must be positive")


class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = config or ResNetConfig(**overrides)
        self.config = cfg
        stem_ch = cfg.stem_channels or cfg.widths[0]
        if cfg.stem == "conv3":
            self.stem = nn.Sequential(
                nn.Conv2d(cfg.in_channels, stem_ch, 3, cfg.stem_stride, 1, bias=False),
                nn.BatchNorm2d(stem_ch))
            self.stem_relu = ReluSite()
            self.stem_pool = nn.Identity()
        else:
            self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, stem_ch, 7, 2, 3, bias=False),
                                      nn.BatchNorm2d(stem_ch))
            self.stem_relu = ReluSite()
            self.stem_pool = nn.MaxPool2d(3, 2, 1)
        stages, ch = [], stem_ch
        for width, n_blocks, stride in zip(cfg.widths, cfg.blocks, cfg.strides):
            blocks = []
            for i in range(n_blocks):
                blocks.append(BasicBlock(ch, width, stride if i == 0 else 1))
                ch = width
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(ch, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pool(self.stem_relu(self.stem(x)))
        for stage in self.layers:
            x = stage(x)
        return self.fc(self.flatten(self.pool(x)))

    def stage_of(self, site_name: str) -> int:
        """0 for the stem, s+1 for a site inside stage s (DeepReDuce's stage granularity)."""
        if site_name.startswith("layers."):
            return int(site_name.split(".")[1]) + 1
        return 0


@dataclass
class SmallCNNConfig:
    channels: tuple[int, int] = (16, 32)
    hidden: int = 100
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10


class SmallCNN(nn.Module):
    """Two 5×5 conv layers with average pooling and two linear layers (three ReLU sites)."""

    def __init__(self, config: SmallCNNConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = config or SmallCNNConfig(**overrides)
        self.config = cfg
        c1, c2 = cfg.channels
        self.conv1 = nn.Conv2d(cfg.in_channels, c1, 5, padding=2)
        self.relu1 = ReluSite()
        self.pool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.relu2 = ReluSite()
        self.pool2 = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        side = cfg.image_size // 4
        self.fc1 = nn.Linear(c2 * side * side, cfg.hidden)
        self.relu3 = ReluSite()
        self.fc2 = nn.Linear(cfg.hidden, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


# Named architectures: name -> (class, config overrides). Widths are chosen for 2-core CPUs.
ARCHITECTURES: dict[str, tuple[type, dict]] = {
    # ResNet-18 layout (2 blocks × 4 stages, 17 ReLU layers) at a quarter of the width.
    "resnet18": (ResNet, dict(widths=(16, 32, 64, 128), blocks=(2, 2, 2, 2), strides=(1, 2, 2, 2))),
    "resnet18-full": (ResNet, dict()),
    # The embedded default: stride-2 stem, three stages of one block each (about 14.6 K ReLUs
    # on 28×28), small enough that a private inference takes seconds.
    "resnet-small": (ResNet, dict(widths=(16, 32, 64), blocks=(1, 1, 1), strides=(1, 2, 2),
                                  stem_stride=2)),
    "smallcnn": (SmallCNN, dict()),
}


def build(arch: str, **overrides) -> nn.Module:
    """Builds a named architecture; keyword overrides change its config (e.g. in_channels)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    cls, defaults = ARCHITECTURES[arch]
    cfg_cls = ResNetConfig if cls is ResNet else SmallCNNConfig
    return cls(cfg_cls(**{**defaults, **overrides}))


def model_config(model: nn.Module) -> dict:
    """The plain-data config a model was built from (stored in checkpoints)."""
    cfg = asdict(model.config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def from_config(kind: str, config: dict) -> nn.Module:
    if kind == "ResNet":
        return ResNet(ResNetConfig(**config))
    if kind == "SmallCNN":
        return SmallCNN(SmallCNNConfig(**config))
    raise ValueError(f"unknown model class {kind!r} in checkpoint")
