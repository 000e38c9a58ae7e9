"""The ReLU policy: the artifact between `relu-budget` and `pi.compile`.

A policy says, for every ReLU layer of a model, which of its scalar sites are exact ReLU,
Circa (with k and mode), polynomial (with per-channel coefficients) or identity. On disk it is
a directory with `policy.yaml` (versioned, human-readable) and `policy.npz` (the per-site
kind maps and coefficients, no pickle). Everything is validated on load.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from protocols.site_kinds import CIRCA, CIRCA_MODES, POLY, SITE_KINDS

# Local imports: torch and the model zoo are imported where used: a policy file is read without them.

FORMAT = "relu-policy"
VERSION = 1


class PolicyError(ValueError):
    """A policy file is malformed or does not fit the model."""


@dataclass
class SitePolicy:
    """What one ReLU layer's sites compute (kinds over the per-example shape): what the
    compiler asks of a policy, layer by layer (`site_policy(name, shape)`)."""
    kinds: np.ndarray | None = None
    circa_k: int | None = None
    circa_mode: str = "poszero"
    poly: np.ndarray | None = None     # (C, 3); None with polynomial sites: fitted (DaPa) on calibration data


@dataclass
class LayerPolicy:
    name: str
    shape: tuple[int, ...]
    kinds: np.ndarray | None = None          # int8 over `shape`; None = all exact ReLU
    circa_k: int | None = None
    circa_mode: str = "poszero"
    poly: np.ndarray | None = None           # (C, 3): c0, c1, c2 per channel

    def counts(self) -> dict[str, int]:
        size = int(np.prod(self.shape))
        if self.kinds is None:
            return {"relu": size, "identity": 0, "poly": 0, "circa": 0}
        return {k: int((self.kinds == i).sum()) for i, k in enumerate(SITE_KINDS)}

    def validate(self) -> None:
        where = f"layer {self.name!r}"
        if self.kinds is not None:
            if tuple(self.kinds.shape) != tuple(self.shape):
                raise PolicyError(f"{where}: kind map has shape {self.kinds.shape}, expected {self.shape}")
            if self.kinds.size and (self.kinds.min() < 0 or self.kinds.max() >= len(SITE_KINDS)):
                raise PolicyError(f"{where}: site codes must be 0..{len(SITE_KINDS) - 1} ({', '.join(SITE_KINDS)})")
            if (self.kinds == CIRCA).any():
                if self.circa_k is None or not 1 <= int(self.circa_k) <= 62:
                    raise PolicyError(f"{where}: Circa sites need circa.k in 1..62, got {self.circa_k}")
                if self.circa_mode not in CIRCA_MODES:
                    raise PolicyError(f"{where}: circa.mode must be one of {CIRCA_MODES}")
            if (self.kinds == POLY).any():
                if self.poly is None or self.poly.shape != (self.shape[0], 3) or not np.isfinite(self.poly).all():
                    raise PolicyError(f"{where}: polynomial sites need finite coefficients of shape ({self.shape[0]}, 3)")


@dataclass
class ReluPolicy:
    layers: dict[str, LayerPolicy]
    meta: dict = field(default_factory=dict)

    def site_policy(self, name: str, shape: tuple[int, ...]):
        """The compiler's hook: what the ReLU layer `name` computes."""
        if name not in self.layers:
            raise PolicyError(f"the policy has no entry for ReLU layer {name!r} "
                              f"(it covers: {', '.join(self.layers) or 'nothing'})")
        lp = self.layers[name]
        if tuple(shape) != tuple(lp.shape):
            raise PolicyError(f"layer {name!r}: the model's ReLU input is {tuple(shape)}, the policy says {lp.shape}")
        return SitePolicy(kinds=lp.kinds, circa_k=lp.circa_k, circa_mode=lp.circa_mode, poly=lp.poly)

    def counts(self) -> dict[str, int]:
        total = {k: 0 for k in SITE_KINDS}
        for lp in self.layers.values():
            for k, v in lp.counts().items():
                total[k] += v
        return total

    def apply(self, model) -> None:
        """Sets every ReluSite of a relu_budget model to this policy (plaintext simulation)."""
        import torch
        from relu_budget.models import relu_sites
        sites = dict(relu_sites(model))
        missing = sorted(set(self.layers) - set(sites))
        if missing:
            raise PolicyError(f"the model has no ReLU sites named {missing}")
        for name, lp in self.layers.items():
            if lp.kinds is None:
                sites[name].kind_map = None
            else:
                sites[name].set_kinds(torch.from_numpy(lp.kinds),
                                      None if lp.poly is None else torch.from_numpy(lp.poly).float())
            sites[name].circa = None if lp.circa_k is None else {"k": lp.circa_k, "mode": lp.circa_mode}


def from_model(model, input_shape, meta: dict | None = None) -> ReluPolicy:
    """Reads the current kind maps of a relu_budget model into a policy."""
    from relu_budget.models import count_relu_sites, relu_sites
    shapes = {r["name"]: r["shape"] for r in count_relu_sites(model, input_shape)}
    layers = {}
    for name, site in relu_sites(model):
        kinds = None if site.kind_map is None else site.kind_map.expand(shapes[name]).numpy().astype(np.int8)
        poly = None if site.poly_coeffs is None else site.poly_coeffs.detach().double().numpy()
        circa = site.circa or {}
        layers[name] = LayerPolicy(name, tuple(shapes[name]), kinds, circa.get("k"), circa.get("mode", "poszero"), poly)
    return ReluPolicy(layers, meta or {})


def save_policy(policy: ReluPolicy, directory: str | os.PathLike) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arrays, layers = {}, {}
    for name, lp in policy.layers.items():
        lp.validate()
        entry = {"shape": list(lp.shape), "sites": lp.counts()}
        if lp.kinds is not None:
            arrays[f"{name}/kinds"] = lp.kinds.astype(np.int8)
            entry["kinds"] = f"{name}/kinds"
        if lp.circa_k is not None:
            entry["circa"] = {"k": int(lp.circa_k), "mode": lp.circa_mode}
        if lp.poly is not None:
            arrays[f"{name}/poly"] = lp.poly.astype(np.float64)
            entry["poly"] = f"{name}/poly"
        layers[name] = entry
    doc = {"format": FORMAT, "version": VERSION, "arrays": "policy.npz", "totals": policy.counts(),
           "meta": policy.meta, "layers": layers}
    np.savez(d / "policy.npz", **arrays)
    (d / "policy.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return d


def load_policy(source) -> ReluPolicy:
    """A ReluPolicy from a directory / policy.yaml path, or an existing ReluPolicy."""
    if isinstance(source, ReluPolicy):
        return source
    path = Path(source)
    yaml_path = path / "policy.yaml" if path.is_dir() else path
    if not yaml_path.is_file():
        raise PolicyError(f"no policy at {path} (expected a directory with policy.yaml)")
    try:
        doc = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as exc:
        raise PolicyError(f"{yaml_path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PolicyError(f"{yaml_path}: not a ReLU policy (format must be {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise PolicyError(f"{yaml_path}: policy version {doc.get('version')} is not supported (expected {VERSION})")
    arrays_path = yaml_path.parent / doc.get("arrays", "policy.npz")
    try:
        with np.load(arrays_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise PolicyError(f"cannot read the policy arrays {arrays_path}: {exc}") from exc
    layers = {}
    for name, e in (doc.get("layers") or {}).items():
        try:
            shape = tuple(int(s) for s in e["shape"])
            kinds = arrays[e["kinds"]].astype(np.int8) if "kinds" in e else None
            poly = arrays[e["poly"]].astype(np.float64) if "poly" in e else None
        except KeyError as exc:
            raise PolicyError(f"{yaml_path}: layer {name!r} refers to missing entry {exc}") from exc
        circa = e.get("circa") or {}
        lp = LayerPolicy(name, shape, kinds, circa.get("k"), circa.get("mode", "poszero"), poly)
        lp.validate()
        layers[name] = lp
    return ReluPolicy(layers, doc.get("meta") or {})
