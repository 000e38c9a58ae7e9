// Linear algebra over the ring Z_(2^64): unsigned 64-bit arithmetic wraps, which is exactly
// reduction mod 2^64, and two's-complement signed values multiply correctly in it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pi_native {

// C[M×N] = A[M×K] · B[K×N] mod 2^64, all row-major and contiguous. Multithreaded.
void ring_matmul(const uint64_t* A, const uint64_t* B, uint64_t* C, size_t M, size_t K, size_t N);

struct Conv2dShape {
  size_t batch, in_ch, height, width;   // input  N×C×H×W
  size_t out_ch, kh, kw;                // weight OC×C×KH×KW
  size_t stride_h, stride_w, pad_h, pad_w;
  size_t out_h() const { return (height + 2 * pad_h - kh) / stride_h + 1; }
  size_t out_w() const { return (width + 2 * pad_w - kw) / stride_w + 1; }
};

// Zero-padded cross-correlation (PyTorch's conv2d, groups = 1) mod 2^64 via im2col + GEMM.
void ring_conv2d(const uint64_t* x, const uint64_t* w, uint64_t* y, const Conv2dShape& s);

// The poly gate's online side (protocols.gates.poly_eval, docs/engine.md "Polynomial sites"):
// party b's share A_p·H + B_p (+ C2·H² for party 1) mod 2^(ring + out_shift), in unsigned
// __int128, then shifted right by out_shift and reduced mod 2^ring (out_shift 0: the low word as
// it is). key: `words` planes (low, then high if ring + out_shift > 64) of 4 rows × n (A_0, A_1,
// B_0, B_1); opened: x̂ >> s mod 2^(w − s); c2: int64 coefficients, or null for party 0.
struct PolyShape {
  size_t n, words;
  unsigned w, s, ring, out_shift;
};
void poly_eval(const uint64_t* key, const uint64_t* opened, const uint64_t* c2, uint64_t* y, const PolyShape& p);

}  // namespace pi_native
