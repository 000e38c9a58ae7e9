#include "pi_native/ring.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "pi_native/parallel.hpp"

namespace pi_native {
namespace {

constexpr size_t kMr = 4;    // rows of C per micro-tile
constexpr size_t kNr = 8;    // columns of C per micro-tile (two AVX2 registers of uint64)
constexpr size_t kKc = 256;  // depth of a packed panel (keeps a B panel in L2)
constexpr size_t kNc = 512;  // width of a packed B panel

// C[0:mr, 0:nr] += A_panel · B_panel for one micro-tile; A is packed kMr-interleaved and
// B kNr-interleaved so both streams are contiguous. Cloned for x86-64-v4 (AVX-512 has a 64-bit
// vector multiply, VPMULLQ, which AVX2 emulates with three 32-bit ones: the conv layers of the
// default model at batch 32 take 21 instead of 36 ms), AVX2 and baseline x86-64; the loader
// picks the best clone for the running CPU.
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
void micro_kernel(size_t kc, const uint64_t* __restrict a, const uint64_t* __restrict b,
                  uint64_t* __restrict c, size_t ldc, size_t mr, size_t nr) {
  uint64_t acc[kMr][kNr] = {};
  for (size_t p = 0; p < kc; ++p) {
    const uint64_t* bp = b + p * kNr;
    const uint64_t* ap = a + p * kMr;
    for (size_t i = 0; i < kMr; ++i)
      for (size_t j = 0; j < kNr; ++j) acc[i][j] += ap[i] * bp[j];
  }
  for (size_t i = 0; i < mr; ++i)
    for (size_t j = 0; j < nr; ++j) c[i * ldc + j] += acc[i][j];
}

// Packs B[k0:k0+kc, j0:j0+nc] into kNr-wide column strips, zero-padding the ragged edge.
void pack_b(const uint64_t* B, size_t N, size_t k0, size_t kc, size_t j0, size_t nc, uint64_t* out) {
  for (size_t js = 0; js < nc; js += kNr) {
    const size_t w = std::min(kNr, nc - js);
    for (size_t p = 0; p < kc; ++p) {
      const uint64_t* src = B + (k0 + p) * N + j0 + js;
      uint64_t* dst = out + js * kc + p * kNr;
      for (size_t j = 0; j < w; ++j) dst[j] = src[j];
      for (size_t j = w; j < kNr; ++j) dst[j] = 0;
    }
  }
}

void pack_a(const uint64_t* A, size_t K, size_t i0, size_t mc, size_t k0, size_t kc, uint64_t* out) {
  for (size_t is = 0; is < mc; is += kMr) {
    const size_t h = std::min(kMr, mc - is);
    for (size_t p = 0; p < kc; ++p) {
      uint64_t* dst = out + is * kc + p * kMr;
      for (size_t i = 0; i < h; ++i) dst[i] = A[(i0 + is + i) * K + k0 + p];
      for (size_t i = h; i < kMr; ++i) dst[i] = 0;
    }
  }
}

// One worker's share of C: rows [i0, i1) × columns [j0, j1).
void matmul_tile(const uint64_t* A, const uint64_t* B, uint64_t* C, size_t K, size_t N,
                 size_t i0, size_t i1, size_t j0, size_t j1) {
  const size_t mc = i1 - i0;
  std::vector<uint64_t> apack(((mc + kMr - 1) / kMr) * kMr * kKc);
  std::vector<uint64_t> bpack(((kNc + kNr - 1) / kNr) * kNr * kKc);
  for (size_t i = i0; i < i1; ++i) std::memset(C + i * N + j0, 0, (j1 - j0) * sizeof(uint64_t));
  for (size_t jc = j0; jc < j1; jc += kNc) {
    const size_t nc = std::min(kNc, j1 - jc);
    for (size_t kc0 = 0; kc0 < K; kc0 += kKc) {
      const size_t kc = std::min(kKc, K - kc0);
      pack_b(B, N, kc0, kc, jc, nc, bpack.data());
      pack_a(A, K, i0, mc, kc0, kc, apack.data());
      for (size_t is = 0; is < mc; is += kMr)
        for (size_t js = 0; js < nc; js += kNr)
          micro_kernel(kc, apack.data() + is * kc, bpack.data() + js * kc,
                       C + (i0 + is) * N + jc + js, N, std::min(kMr, mc - is),
                       std::min(kNr, nc - js));
    }
  }
}

}  // namespace

void ring_matmul(const uint64_t* A, const uint64_t* B, uint64_t* C, size_t M, size_t K, size_t N) {
  if (M == 0 || N == 0) return;
  if (K == 0) { std::memset(C, 0, M * N * sizeof(uint64_t)); return; }
  // Split the longer side of C across threads so short-and-wide products (conv layers at
  // batch 1: few output channels, many pixels) still use every core.
  if (M >= N) {
    parallel_for((M + kMr - 1) / kMr, 4, [&](size_t b, size_t e) {
      matmul_tile(A, B, C, K, N, b * kMr, std::min(M, e * kMr), 0, N);
    });
  } else {
    parallel_for((N + kNr - 1) / kNr, 8, [&](size_t b, size_t e) {
      matmul_tile(A, B, C, K, N, 0, M, b * kNr, std::min(N, e * kNr));
    });
  }
}

void ring_conv2d(const uint64_t* x, const uint64_t* w, uint64_t* y, const Conv2dShape& s) {
  const size_t oh = s.out_h(), ow = s.out_w();
  const size_t rows = s.in_ch * s.kh * s.kw, cols = oh * ow;
  std::vector<uint64_t> col(rows * cols);
  for (size_t n = 0; n < s.batch; ++n) {
    const uint64_t* xn = x + n * s.in_ch * s.height * s.width;
    parallel_for(rows, 16, [&](size_t rb, size_t re) {
      for (size_t r = rb; r < re; ++r) {
        const size_t c = r / (s.kh * s.kw), ki = (r / s.kw) % s.kh, kj = r % s.kw;
        uint64_t* dst = col.data() + r * cols;
        for (size_t oi = 0; oi < oh; ++oi) {
          const long ii = static_cast<long>(oi * s.stride_h + ki) - static_cast<long>(s.pad_h);
          for (size_t oj = 0; oj < ow; ++oj) {
            const long jj = static_cast<long>(oj * s.stride_w + kj) - static_cast<long>(s.pad_w);
            const bool inside = ii >= 0 && jj >= 0 && ii < static_cast<long>(s.height) &&
                                jj < static_cast<long>(s.width);
            dst[oi * ow + oj] = inside ? xn[(c * s.height + ii) * s.width + jj] : 0;
          }
        }
      }
    });
    ring_matmul(w, col.data(), y + n * s.out_ch * cols, s.out_ch, rows, cols);
  }
}

void poly_eval(const uint64_t* key, const uint64_t* opened, const uint64_t* c2, uint64_t* y, const PolyShape& p) {
  using u128 = unsigned __int128;
  const unsigned ws = p.w - p.s;
  const uint64_t low = ws >= 64 ? ~0ull : (1ull << ws) - 1, ring_mask = p.ring >= 64 ? ~0ull : (1ull << p.ring) - 1;
  const uint64_t off = (1ull << (p.w - 2)) >> p.s;                    // 2^(w−2) >> s, w ≤ 64
  const uint64_t* hi = p.words > 1 ? key + 4 * p.n : nullptr;
  auto word = [&](size_t row, size_t i) {
    return u128(key[row * p.n + i]) | (hi ? u128(hi[row * p.n + i]) << 64 : u128(0));
  };
  for (size_t i = 0; i < p.n; ++i) {
    const uint64_t zs = (opened[i] + off) & low;                        // ẑ >> s
    const u128 H = u128(zs) - u128(off);                                // wraps mod 2^128 as the ring does
    const size_t sel = (zs >> (ws - 1)) & 1;
    u128 v = word(sel, i) * H + word(2 + sel, i);
    if (c2) v += u128(static_cast<__int128>(static_cast<int64_t>(c2[i]))) * H * H;
    // Bits of v at ring + out_shift and above land at ring and above after the shift: the
    // reduction mod 2^ring drops them, so v needs no reduction mod 2^(ring + out_shift) first.
    y[i] = p.out_shift ? static_cast<uint64_t>(v >> p.out_shift) & ring_mask : static_cast<uint64_t>(v);
  }
}

}  // namespace pi_native
