"""ReLU-budget optimizers. Every method is a module here with the same entry point:

    result = module.optimize(model, splits, budget, config=None, teacher=None, progress=True)

- model: a trained all-ReLU relu_budget model (copied, never modified)
- splits: relu_budget.data.Splits
- budget: kept ReLU sites (int), a fraction of the model's sites (float in (0, 1]), or,
  with config.objective "latency" / "bytes", seconds / bytes of the predicted cost
- config: the method's config dataclass (or a dict of its fields)
- teacher: the all-ReLU model to distill from (default: a frozen copy of `model`)

The result (`OptimizeResult`) holds the final model with kind maps set, its policy
(`relu_budget.policy.from_model`), validation and test metrics, the training history and,
for DeepReDuce, the frontier of candidates. See docs/optimizers.md.
"""
from __future__ import annotations

import importlib

from relu_budget.optimizers.common import BudgetError, OptimizeConfig, OptimizeResult

METHODS = ("deepreduce", "snl", "autorep", "deepreshape", "circa")
_CONFIGS = {"deepreduce": "DeepReDuceConfig", "snl": "SNLConfig", "autorep": "AutoRePConfig",
            "deepreshape": "DeepReShapeConfig", "circa": "CircaConfig"}


def get_method(name: str):
    """The module implementing a method."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return importlib.import_module(f"relu_budget.optimizers.{name}")


def config_class(name: str) -> type:
    return getattr(get_method(name), _CONFIGS[name])


def optimize(method: str, model, splits, budget, config=None, teacher=None, progress: bool = True) -> OptimizeResult:
    return get_method(method).optimize(model, splits, budget, config=config, teacher=teacher, progress=progress)


__all__ = ["METHODS", "BudgetError", "OptimizeConfig", "OptimizeResult", "config_class", "get_method", "optimize"]
