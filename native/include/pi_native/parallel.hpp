// A minimal fork-join over index ranges. Kernels are coarse (whole tiles, thousands of
// keys), so spawning std::threads per call costs far less than the work it splits.
#pragma once
#include <algorithm>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace pi_native {

int num_threads();
void set_num_threads(int n);  // n <= 0 restores the default (PI_NUM_THREADS or all cores)

// Calls fn(begin, end) on disjoint chunks covering [0, n); chunks are at least `grain` long.
template <class Fn>
void parallel_for(size_t n, size_t grain, Fn&& fn) {
  if (n == 0) return;
  const size_t max_chunks = (n + grain - 1) / std::max<size_t>(grain, 1);
  const size_t chunks = std::min<size_t>(static_cast<size_t>(num_threads()), max_chunks);
  if (chunks <= 1) { fn(size_t{0}, n); return; }
  std::vector<std::thread> workers;
  std::vector<std::exception_ptr> errors(chunks);
  const size_t step = (n + chunks - 1) / chunks;
  for (size_t c = 0; c < chunks; ++c) {
    const size_t b = c * step, e = std::min(n, b + step);
    if (b >= e) break;
    workers.emplace_back([&, c, b, e] {
      try { fn(b, e); } catch (...) { errors[c] = std::current_exception(); }
    });
  }
  for (auto& w : workers) w.join();
  for (auto& err : errors)
    if (err) std::rethrow_exception(err);
}

}  // namespace pi_native
