"""Pure-Python references of pi_native's allocation core (relu_budget.allocation): the
multiple-choice knapsack DP over integer unit costs and Pareto-front extraction, written
for clarity; the native versions must return exactly the same answers."""
from __future__ import annotations

import numpy as np


def mck_solve(units: list[list[int]], values: list[list[float]], capacity: int) -> list[int] | None:
    """Option per layer maximizing Σ value with Σ units ≤ capacity; ties: the earlier option
    of a layer, then the lowest total cost. None when nothing fits."""
    neg = -np.inf
    best = np.full(capacity + 1, neg)          # best[c]: best value at total cost exactly c
    best[0] = 0.0
    picks = np.empty((len(units), capacity + 1), dtype=np.int64)
    for i, (u, v) in enumerate(zip(units, values)):
        new = np.full(capacity + 1, neg)
        arg = np.full(capacity + 1, -1, dtype=np.int64)
        for j, w in enumerate(u):
            if w > capacity:
                continue
            cand = np.full(capacity + 1, neg)
            cand[w:] = best[:capacity + 1 - w] + v[j]
            better = cand > new
            new[better] = cand[better]
            arg[better] = j
        best, picks[i] = new, arg
    if not np.isfinite(best).any():
        return None
    c = int(np.flatnonzero(best == best[np.isfinite(best)].max())[0])
    choice = [0] * len(units)
    for i in range(len(units) - 1, -1, -1):
        choice[i] = int(picks[i, c])
        c -= int(units[i][choice[i]])
    return choice


def pareto_front_min(q: np.ndarray) -> list[int]:
    """Ascending indices of the rows of q no other row dominates (lower is better)."""
    q = np.asarray(q, dtype=np.float64)
    keep = []
    for i in range(len(q)):
        dominated = ((q <= q[i]).all(axis=1) & (q < q[i]).any(axis=1)).any()
        if not dominated:
            keep.append(i)
    return keep
