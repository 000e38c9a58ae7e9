"""What both engines' per-op layer tables share (the dealer's `protocols.layers`, the two-party
`protocols.two_party.layers`): the op → layer dispatch, and max-pool's windows and comparison
tree (max(a, b) = b + ReLU(a − b), one batch of comparisons per level)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from protocols.plan import (Activation, Add, Conv2d, Input, Linear, MaxPool, MulConst, Output, Plan, PlanError,
                            Reshape, SumPool, ToMasked, Truncate)


def layer_table(*, input, output, linear, to_masked, truncate, activation, max_pool, public) -> dict:
    """op type → layer class, the same op grouping for every engine (`public`: the ops each
    party computes locally on its own share)."""
    return {Input: input, Output: output, Conv2d: linear, Linear: linear, ToMasked: to_masked, Truncate: truncate,
            Activation: activation, MaxPool: max_pool, SumPool: public, MulConst: public, Add: public, Reshape: public}


def build_layers(plan: Plan, batch: int, table: dict, label_output: type, engine: str) -> list:
    """One layer object per plan op, from `table` (op type → layer class); a label-only
    Output takes `label_output`. `engine` names the engine in the error for an op it lacks."""
    out = []
    for op in plan.ops:
        cls = label_output if isinstance(op, Output) and op.label_only else table.get(type(op))
        if cls is None:
            raise PlanError(f"op {op.name}: no {engine} layer for {op.kind}")
        out.append(cls(plan, op, batch))
    return out


def pool_windows(plan: Plan, op: MaxPool, batch: int) -> np.ndarray:
    """Flat input indices of every window element: shape (kh·kw, batch·c·oh·ow)."""
    c, h, w = plan.tensor(op.inputs[0]).shape
    (kh, kw), (sh, sw) = op.kernel, op.stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    base = (np.arange(batch)[:, None, None, None] * c * h * w + np.arange(c)[None, :, None, None] * h * w
            + (np.arange(oh) * sh)[None, None, :, None] * w + (np.arange(ow) * sw)[None, None, None, :])
    return np.stack([(base + i * w + j).reshape(-1) for i in range(kh) for j in range(kw)])


def tree_pairs(width: int) -> list[int]:
    """Comparisons per window at each level of the max tree over `width` values (an odd one
    out passes to the next level)."""
    out = []
    while width > 1:
        out.append(width // 2)
        width = width // 2 + width % 2
    return out


def max_tree(x: np.ndarray, windows: np.ndarray, levels: list, step: Callable) -> np.ndarray:
    """Runs the max tree on one party's flat view `x`. `levels`: (pairs, stage) per level;
    `step(stage, diff, b)` returns that party's share of max(a, b) from its shares of a − b and
    b (all pairs of the level at once, concatenated)."""
    vals = [x[idx] for idx in windows]
    for pairs, stage in levels:
        a = np.concatenate([vals[2 * i] for i in range(pairs)])
        b = np.concatenate([vals[2 * i + 1] for i in range(pairs)])
        nxt = list(np.split(step(stage, a - b, b), pairs))
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]
