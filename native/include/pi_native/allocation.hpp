// The combinatorial core of the ReLU-budget optimizers: a multiple-choice knapsack by dynamic
// programming over integer costs, and Pareto-front extraction. relu_budget.allocation wraps
// both (validation, gcd / grid scaling of the costs); tests/reference/allocation_ref.py is the
// pure-Python reference they are checked against.
#pragma once
#include <cstdint>
#include <vector>

namespace pi_native {

// One option per layer maximizing the summed value with the summed unit cost <= capacity.
// Ties: the earlier option of a layer, then the lowest total cost. Returns false when no
// combination fits. units[i][j], values[i][j]: option j of layer i (units >= 0).
bool mck_solve(const std::vector<std::vector<int64_t>>& units, const std::vector<std::vector<double>>& values,
               int64_t capacity, std::vector<int32_t>& choice);

// Indices (ascending) of the points not dominated by another one, lower being better in every
// coordinate: q is row-major (n, d). A point is dominated when another is <= in every coordinate
// and < in one; exact duplicates of a front point all stay.
std::vector<int64_t> pareto_front_min(const double* q, int64_t n, int64_t d);

}  // namespace pi_native
