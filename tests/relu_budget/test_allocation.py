"""The combinatorial core (pi_native.mck_solve / pareto_front_min behind relu_budget.allocation):
the knapsack against brute force, Pareto extraction against a brute-force dominance check, and
the native loops against the pure-Python reference (tests/reference/allocation_ref.py)."""
import itertools

import numpy as np
import pytest

import pi_native
from relu_budget.allocation import InfeasibleBudget, allocate, allocate_detailed, pareto_front

from reference import allocation_ref


def brute_force(costs, values, budget):
    best = None
    for combo in itertools.product(*[range(len(c)) for c in costs]):
        cost = sum(costs[i][j] for i, j in enumerate(combo))
        if cost > budget:
            continue
        value = sum(values[i][j] for i, j in enumerate(combo))
        if best is None or value > best[0] + 1e-12:
            best = (value, combo)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_knapsack_matches_brute_force_on_integer_instances(seed):
    rng = np.random.default_rng(seed)
    layers = int(rng.integers(1, 5))
    costs = [rng.integers(0, 12, size=int(rng.integers(1, 5))).tolist() for _ in range(layers)]
    values = [rng.normal(size=len(c)).round(3).tolist() for c in costs]
    budget = int(rng.integers(0, 30))
    ref = brute_force(costs, values, budget)
    if ref is None:
        with pytest.raises(InfeasibleBudget):
            allocate(costs, values, budget)
        return
    res = allocate_detailed(costs, values, budget)
    assert res.exact
    assert len(res.choice) == layers
    assert res.cost <= budget
    assert res.value == pytest.approx(ref[0], abs=1e-9)
    assert sum(values[i][j] for i, j in enumerate(res.choice)) == pytest.approx(res.value)


def test_knapsack_scales_by_gcd_and_handles_large_costs():
    # Costs that are multiples of 1000: exact after dividing by the gcd.
    costs = [[0, 12000, 25000], [0, 30000, 64000], [1000, 2000]]
    values = [[0, 1.0, 1.8], [0, 2.0, 3.5], [0.1, 0.2]]
    res = allocate_detailed(costs, values, 66000)
    assert res.exact
    assert res.value == pytest.approx(brute_force(costs, values, 66000)[0])


def test_knapsack_with_float_costs_never_exceeds_the_budget():
    rng = np.random.default_rng(7)
    for _ in range(20):
        costs = [rng.uniform(0, 10, size=3).tolist() for _ in range(4)]
        values = [rng.uniform(0, 1, size=3).tolist() for _ in range(4)]
        budget = float(rng.uniform(5, 30))
        ref = brute_force(costs, values, budget)
        if ref is None:
            continue
        res = allocate_detailed(costs, values, budget, max_states=5000)
        assert res.cost <= budget + 1e-9
        assert res.value <= ref[0] + 1e-9
        # Rounding costs up by at most budget/5000 per layer loses little.
        tighter = brute_force(costs, values, budget - 4 * budget / 5000)
        if tighter is not None:
            assert res.value >= tighter[0] - 1e-9


def test_knapsack_errors_are_clear():
    with pytest.raises(ValueError, match="layer 0 has no options"):
        allocate([[]], [[]], 3)
    with pytest.raises(ValueError, match="costs must be >= 0"):
        allocate([[-1]], [[0]], 3)
    with pytest.raises(ValueError, match="2 layers but values has 1"):
        allocate([[1], [1]], [[0]], 3)
    with pytest.raises(InfeasibleBudget, match="cheapest option"):
        allocate([[5, 6], [2]], [[0, 0], [0]], 6)
    assert allocate([], [], 0) == []


def brute_front(pts, senses):
    sign = np.array([1 if s == "min" else -1 for s in senses])
    q = np.asarray(pts, dtype=float) * sign
    keep = []
    for i in range(len(q)):
        dominated = any((q[j] <= q[i]).all() and (q[j] < q[i]).any() for j in range(len(q)) if j != i)
        if not dominated:
            keep.append(i)
    return sorted(keep)


@pytest.mark.parametrize("seed", range(30))
def test_pareto_front_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 25))
    # Small integer grids produce ties and duplicates on purpose.
    pts = rng.integers(0, 6, size=(n, 2)).tolist()
    assert sorted(pareto_front(pts)) == brute_front(pts, ("min", "max"))
    pts3 = rng.integers(0, 4, size=(n, 3)).tolist()
    senses = ("min", "max", "min")
    assert sorted(pareto_front(pts3, senses)) == brute_front(pts3, senses)


def test_pareto_front_order_and_errors():
    pts = [(100, 0.9), (10, 0.8), (50, 0.7), (1000, 0.95), (10, 0.8)]
    assert pareto_front(pts) == [1, 4, 0, 3]
    assert pareto_front([]) == []
    with pytest.raises(ValueError, match="finite"):
        pareto_front([(1, float("nan"))])
    with pytest.raises(ValueError, match="coordinates"):
        pareto_front([(1, 2, 3)])


@pytest.mark.parametrize("seed", range(60))
def test_native_knapsack_matches_the_reference_bit_for_bit(seed):
    """pi_native.mck_solve against tests/reference/allocation_ref.py: same choice (ties
    included: values are rounded so that ties are frequent), same infeasibility."""
    rng = np.random.default_rng(1000 + seed)
    layers = int(rng.integers(1, 8))
    units = [rng.integers(0, 40, size=int(rng.integers(1, 6))).tolist() for _ in range(layers)]
    values = [rng.integers(-3, 4, size=len(u)).astype(float).tolist() for u in units]
    cap = int(rng.integers(0, 120))
    assert pi_native.mck_solve(units, values, cap) == allocation_ref.mck_solve(units, values, cap)


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("dims", [2, 3])
def test_native_pareto_matches_the_reference(seed, dims):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 6, size=(int(rng.integers(0, 40)), dims)).astype(float)   # many ties and duplicates
    assert pi_native.pareto_front_min(q.reshape(-1, dims)) == allocation_ref.pareto_front_min(q.reshape(-1, dims))


def test_native_core_rejects_malformed_input():
    with pytest.raises(ValueError, match="as many costs as values"):
        pi_native.mck_solve([[1, 2]], [[1.0]], 3)
    with pytest.raises(ValueError, match="costs must be >= 0"):
        pi_native.mck_solve([[-1]], [[1.0]], 3)
    with pytest.raises(ValueError, match="capacity"):
        pi_native.mck_solve([[1]], [[1.0]], -1)
    with pytest.raises(ValueError, match="layers of costs"):
        pi_native.mck_solve([[1]], [], 3)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        pi_native.pareto_front_min(np.zeros(3))
