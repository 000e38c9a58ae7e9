"""Combinatorial core of the budget optimizers (the loops run in pi_native).

Two pieces with a small interface; this module validates, scales costs to integer units and
assembles results, `pi_native.mck_solve` / `pi_native.pareto_front_min` do the work
(`tests/reference/allocation_ref.py` is the pure-Python reference they are checked against):

- `allocate(layers_costs, values, budget) -> choice`: the multiple-choice knapsack. Every
  layer (or stage) has a list of options, each with a cost and a value; exactly one option
  is chosen per layer so that the summed cost stays within the budget and the summed value
  is maximal. The optimizers use it to spread a budget across layers by criticality
  (DeepReShape's stage widths, the per-layer Circa k under an accuracy tolerance).
- `pareto_front(points) -> indices`: the non-dominated points of (cost, value) pairs
  (lower cost and higher value are better), e.g. (ReLU count, accuracy) candidates.

Exactness: integer costs are solved exactly (dynamic programming over the budget, after
dividing by the gcd of all costs). When the budget in those units exceeds `max_states`, or
the costs are not integers, costs are rounded *up* to a grid of `budget / max_states` (so a
returned choice never exceeds the budget; it may miss the optimum by at most one grid step
per layer). `AllocationResult.exact` says which case applied.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import pi_native

DEFAULT_MAX_STATES = 200_000


class InfeasibleBudget(ValueError):
    """No combination of options fits the budget (even the cheapest option of every layer)."""


@dataclass
class AllocationResult:
    choice: list[int]          # option index per layer
    value: float               # summed value of the chosen options
    cost: float                # summed (original, unrounded) cost of the chosen options
    exact: bool                # False when costs were rounded up to a grid


def _validate(layers_costs, values, budget):
    if len(layers_costs) != len(values):
        raise ValueError(f"layers_costs has {len(layers_costs)} layers but values has {len(values)}")
    if not isinstance(budget, (int, float, np.integer, np.floating)) or not math.isfinite(budget):
        raise ValueError(f"budget must be a finite number, got {budget!r}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    costs, vals = [], []
    for i, (c, v) in enumerate(zip(layers_costs, values)):
        c = np.asarray(c, dtype=np.float64).reshape(-1)
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        if c.size == 0:
            raise ValueError(f"layer {i} has no options")
        if c.shape != v.shape:
            raise ValueError(f"layer {i}: {c.size} costs but {v.size} values")
        if not (np.isfinite(c).all() and np.isfinite(v).all()):
            raise ValueError(f"layer {i}: costs and values must be finite")
        if (c < 0).any():
            raise ValueError(f"layer {i}: costs must be >= 0, got {c.tolist()}")
        costs.append(c)
        vals.append(v)
    return costs, vals


def _integer_units(costs: list[np.ndarray], budget: float, max_states: int):
    """(integer costs per layer, integer budget, exact?)."""
    all_int = all(np.all(c == np.round(c)) for c in costs) and float(budget) == math.floor(budget)
    if all_int:
        ints = [c.astype(np.int64) for c in costs]
        g = 0
        for c in ints:
            for x in c.tolist():
                g = math.gcd(g, int(x))
        g = max(g, 1)
        units = [c // g for c in ints]
        cap = int(budget) // g
        if cap <= max_states:
            return units, cap, True
    # Round costs up to a grid so that the choice never exceeds the budget.
    step = max(float(budget), 1e-300) / max_states
    units = [np.ceil(c / step - 1e-9).astype(np.int64) for c in costs]
    return units, max_states, False


def allocate(layers_costs: Sequence[Sequence[float]], values: Sequence[Sequence[float]],
             budget: float, *, max_states: int = DEFAULT_MAX_STATES) -> list[int]:
    """The option index per layer that maximizes Σ value subject to Σ cost ≤ budget.

    layers_costs[i][j], values[i][j]: cost and value of option j of layer i. Ties are broken
    towards the lower total cost, then the lower option indices. Raises InfeasibleBudget when
    nothing fits. See `allocate_detailed` for the value, cost and exactness of the answer."""
    return allocate_detailed(layers_costs, values, budget, max_states=max_states).choice


def allocate_detailed(layers_costs, values, budget, *, max_states: int = DEFAULT_MAX_STATES) -> AllocationResult:
    costs, vals = _validate(layers_costs, values, budget)
    if not costs:
        return AllocationResult([], 0.0, 0.0, True)
    min_total = sum(float(c.min()) for c in costs)
    if min_total > budget + 1e-9 * max(1.0, abs(budget)):
        raise InfeasibleBudget(f"the cheapest option of every layer already costs {min_total:g} "
                               f"> budget {budget:g}")
    units, cap, exact = _integer_units(costs, budget, max_states)
    choice = pi_native.mck_solve([u.tolist() for u in units], [v.tolist() for v in vals], cap)
    if choice is None:
        # Only possible when rounding pushed a feasible instance over the grid.
        raise InfeasibleBudget(f"no combination fits budget {budget:g} after rounding costs up to a grid "
                               f"of {budget / max_states:g}; raise max_states")
    total_cost = float(sum(costs[i][j] for i, j in enumerate(choice)))
    total_value = float(sum(vals[i][j] for i, j in enumerate(choice)))
    return AllocationResult(choice, total_value, total_cost, exact)


def pareto_front(points: Sequence[Sequence[float]], senses: Sequence[str] = ("min", "max")) -> list[int]:
    """Indices of the non-dominated points, sorted by the first coordinate.

    points: one row per candidate, e.g. (ReLU count, accuracy). senses says per coordinate
    whether lower ("min") or higher ("max") is better; the default fits (cost, accuracy).
    A point is dominated when another is at least as good in every coordinate and strictly
    better in one; exact duplicates of a front point are all kept."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return []
    if pts.ndim != 2:
        raise ValueError(f"points must be a list of rows, got an array of shape {pts.shape}")
    if pts.shape[1] != len(senses):
        raise ValueError(f"points have {pts.shape[1]} coordinates but senses has {len(senses)}")
    bad = [s for s in senses if s not in ("min", "max")]
    if bad:
        raise ValueError(f"senses must be 'min' or 'max', got {bad}")
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite (no NaN or inf)")
    # Turn everything into "lower is better".
    sign = np.array([1.0 if s == "min" else -1.0 for s in senses])
    front = pi_native.pareto_front_min(np.ascontiguousarray(pts * sign))
    return sorted(front, key=lambda k: (pts[k, 0], k))
