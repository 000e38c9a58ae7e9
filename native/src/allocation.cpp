#include "pi_native/allocation.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

namespace pi_native {

bool mck_solve(const std::vector<std::vector<int64_t>>& units, const std::vector<std::vector<double>>& values,
               int64_t capacity, std::vector<int32_t>& choice) {
  const double none = -std::numeric_limits<double>::infinity();
  const size_t cap = static_cast<size_t>(capacity), layers = units.size();
  // best[c]: the best value of the layers so far at total cost exactly c (-inf: unreachable).
  std::vector<double> best(cap + 1, none), next(cap + 1);
  best[0] = 0.0;
  std::vector<int32_t> picks(layers * (cap + 1));
  for (size_t i = 0; i < layers; ++i) {
    std::fill(next.begin(), next.end(), none);
    int32_t* pick = &picks[i * (cap + 1)];
    std::fill(pick, pick + cap + 1, -1);
    for (size_t j = 0; j < units[i].size(); ++j) {
      const int64_t w = units[i][j];
      if (w < 0 || w > capacity) continue;
      const double v = values[i][j];
      for (size_t c = static_cast<size_t>(w); c <= cap; ++c) {
        const double cand = best[c - w] + v;   // -inf stays -inf
        if (cand > next[c]) {
          next[c] = cand;
          pick[c] = static_cast<int32_t>(j);
        }
      }
    }
    best.swap(next);
  }
  size_t at = cap + 1;
  for (size_t c = 0; c <= cap; ++c)
    if (best[c] != none && (at > cap || best[c] > best[at])) at = c;
  if (at > cap) return false;
  choice.assign(layers, 0);
  for (size_t i = layers; i-- > 0;) {
    const int32_t j = picks[i * (cap + 1) + at];
    choice[i] = j;
    at -= static_cast<size_t>(units[i][j]);
  }
  return true;
}

std::vector<int64_t> pareto_front_min(const double* q, int64_t n, int64_t d) {
  std::vector<int64_t> front;
  if (n <= 0) return front;
  if (d == 2) {
    // Sweep by the first coordinate (ties: by the second); a group of equal first coordinates
    // contributes its best second coordinate(s) when they beat every strictly cheaper point.
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [q](int64_t a, int64_t b) {
      return q[2 * a] < q[2 * b] || (q[2 * a] == q[2 * b] && q[2 * a + 1] < q[2 * b + 1]);
    });
    double best_before = std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n;) {
      int64_t j = i;
      while (j < n && q[2 * order[j]] == q[2 * order[i]]) ++j;
      const double gbest = q[2 * order[i] + 1];   // sorted: the group's smallest
      if (gbest < best_before)
        for (int64_t g = i; g < j && q[2 * order[g] + 1] == gbest; ++g) front.push_back(order[g]);
      best_before = std::min(best_before, gbest);
      i = j;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      bool dominated = false;
      for (int64_t k = 0; k < n && !dominated; ++k) {
        bool le = true, lt = false;
        for (int64_t c = 0; c < d; ++c) {
          le = le && q[k * d + c] <= q[i * d + c];
          lt = lt || q[k * d + c] < q[i * d + c];
        }
        dominated = le && lt;
      }
      if (!dominated) front.push_back(i);
    }
  }
  std::sort(front.begin(), front.end());
  return front;
}

}  // namespace pi_native
