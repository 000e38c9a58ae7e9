// Ring DCF evaluation with AVX-512 + VAES: the same recipe as dcf_eval_impl in dcf.cpp, bit for
// bit (docs/fss.md, "Ring DCF"), on 16 keys at a time. Each 512-bit register holds four 128-bit
// lanes, one key's seed (or value block, or correction word) per lane, so one VAESENC advances
// four blocks and the per-level seed/bit/value update is four keys' work per instruction. Why it
// pays: the scalar loop spends about two thirds of its time outside AES (the dependent update
// between two levels, and waiting for key bytes); here the update is a few vector instructions
// and the next group's key bytes are prefetched (16 keys stream from 16 places at once, more
// than the hardware prefetcher follows).
#include "pi_native/dcf.hpp"

#include <atomic>

#include "pi_native/bytes.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#define PI_DCF_SIMD 1
#endif

namespace pi_native::fss {
namespace {

std::atomic<bool> g_simd_enabled{true};

#ifdef PI_DCF_SIMD
constexpr int kLanes = 4;             // keys per 512-bit register
constexpr int kRegs = 4;              // registers per group
constexpr int kGroup = kLanes * kRegs;  // keys evaluated together

bool cpu_ok() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("vaes") && __builtin_cpu_supports("aes");
  return ok;
}

#define PI_TARGET __attribute__((target("avx512f,avx512bw,vaes,aes")))

PI_TARGET inline __m512i load4(const uint8_t* const* p, size_t off) {
  __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[0] + off)));
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[1] + off)), 1);
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[2] + off)), 2);
  return _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[3] + off)), 3);
}

// Fixed-key MMO on 2 * kRegs registers in place: x <- AES_K(x) xor x.
PI_TARGET inline void mmo8(__m512i* x, const __m512i* rk) {
  __m512i b[2 * kRegs];
  for (int j = 0; j < 2 * kRegs; ++j) b[j] = _mm512_xor_si512(x[j], rk[0]);
  for (int r = 1; r < 10; ++r)
    for (int j = 0; j < 2 * kRegs; ++j) b[j] = _mm512_aesenc_epi128(b[j], rk[r]);
  for (int j = 0; j < 2 * kRegs; ++j) x[j] = _mm512_xor_si512(_mm512_aesenclast_epi128(b[j], rk[10]), x[j]);
}

// Shuffle control that moves the value words of a level record into a lane's (lo, hi) qwords.
// The 16 bytes loaded end where the record ends (W = 2: at 16 + 2vb; W = 1: at 16 + vb), so
// the record's byte k sits at position k - (end - 16); bytes above a word's vb are zeroed.
PI_TARGET inline __m512i value_shuffle(int W, int vb) {
  alignas(16) uint8_t c[16];
  const int base = 16 - W * vb;  // position of the first value word in the loaded bytes
  for (int d = 0; d < 8; ++d) {
    c[d] = static_cast<uint8_t>(d < vb ? base + d : 0x80);
    c[8 + d] = static_cast<uint8_t>(W == 2 && d < vb ? base + vb + d : 0x80);
  }
  return _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(c)));
}

template <int W>
PI_TARGET void eval_groups(int party, int bits, const uint8_t* keys, size_t stride, const uint64_t* x,
                           uint64_t* out, size_t n, int vb) {
  const size_t rec = 16 + static_cast<size_t>(vb) * W;
  const uint8_t* rkb = fixed_key_aes().round_keys();
  __m512i rk[11];
  for (int i = 0; i < 11; ++i)
    rk[i] = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rkb + 16 * i)));
  const __m512i one = _mm512_set1_epi64(1);
  const __m512i hi_only = _mm512_set_epi64(-1, 0, -1, 0, -1, 0, -1, 0);     // the tweak's word
  const __m512i seed_mask = _mm512_set_epi64(-1, static_cast<int64_t>(kSeedMask), -1, static_cast<int64_t>(kSeedMask),
                                             -1, static_cast<int64_t>(kSeedMask), -1, static_cast<int64_t>(kSeedMask));
  const __m512i tw2 = _mm512_set_epi64(2, 0, 2, 0, 2, 0, 2, 0);
  const __m512i tw4 = _mm512_set_epi64(4, 0, 4, 0, 4, 0, 4, 0);
  const __m512i dup = _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0);   // x_j into both words of lane j
  const __m512i vshuf = value_shuffle(W, vb);
  const size_t vload = W * static_cast<size_t>(vb);             // value bytes load at record + vload
  const uint64_t sign = party ? ~uint64_t{0} : 0;
  for (size_t base = 0; base + kGroup <= n; base += kGroup) {
    const uint8_t* kp[kGroup];
    for (int j = 0; j < kGroup; ++j) kp[j] = keys + (base + j) * stride;
    __m512i S[kRegs], T[kRegs], A[kRegs], X[kRegs];
    for (int v = 0; v < kRegs; ++v) {
      S[v] = _mm512_and_si512(load4(kp + kLanes * v, 0), seed_mask);
      T[v] = _mm512_set1_epi64(party & 1);
      A[v] = _mm512_setzero_si512();
      X[v] = _mm512_permutexvar_epi64(dup, _mm512_castsi256_si512(
                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + base + kLanes * v))));
    }
    for (int i = 0; i < bits; ++i) {
      const __m128i sh = _mm_cvtsi32_si128(bits - 1 - i);
      const size_t off = 16 + static_cast<size_t>(i) * rec;
      __m512i io[2 * kRegs], B[kRegs];
      for (int v = 0; v < kRegs; ++v) {
        B[v] = _mm512_and_si512(_mm512_srl_epi64(X[v], sh), one);
        const __m512i tb = _mm512_and_si512(B[v], hi_only);              // T_b = (0, b)
        io[v] = _mm512_xor_si512(S[v], tb);                               // seed block, tweak b
        io[kRegs + v] = _mm512_xor_si512(S[v], W == 2 ? _mm512_or_si512(tw2, tb) : tw2);  // value block
      }
      // The next group's records of this level: by the time that group runs they are in cache
      // (measured: about 1.5x faster than prefetching this group's later levels, or none).
      const size_t pfo = kGroup * stride + off;
      for (int j = 0; j < kGroup; ++j) _mm_prefetch(reinterpret_cast<const char*>(kp[j] + pfo), _MM_HINT_T0);
      mmo8(io, rk);
      for (int v = 0; v < kRegs; ++v) {
        const __m512i cw = load4(kp + kLanes * v, off);
        const __m512i vw = _mm512_shuffle_epi8(load4(kp + kLanes * v, off + vload), vshuf);
        const __m512i tm = _mm512_sub_epi64(_mm512_setzero_si512(), T[v]);
        // t <- t_child xor (t_cw^b and t), computed in the lo word, copied to the hi word.
        const __m512i tcw = _mm512_and_si512(_mm512_srlv_epi64(cw, B[v]), T[v]);
        const __m512i tn = _mm512_and_si512(_mm512_xor_si512(io[v], tcw), one);
        S[v] = _mm512_and_si512(_mm512_xor_si512(io[v], _mm512_and_si512(cw, tm)), seed_mask);
        T[v] = _mm512_unpacklo_epi64(tn, tn);
        __m512i val = io[kRegs + v];
        if constexpr (W == 1) {  // v_b: the block's hi word when b = 1, else its lo word
          const __mmask8 take_hi = _mm512_test_epi64_mask(B[v], one);
          val = _mm512_mask_mov_epi64(val, take_hi, _mm512_shuffle_epi32(val, _MM_PERM_BADC));
        }
        A[v] = _mm512_add_epi64(A[v], _mm512_add_epi64(val, _mm512_and_si512(vw, tm)));
      }
    }
    __m512i fin[2 * kRegs];
    for (int v = 0; v < kRegs; ++v) {
      fin[v] = _mm512_xor_si512(S[v], tw4);
      fin[kRegs + v] = fin[v];  // mmo8 works on 8 registers; the copies are discarded
    }
    mmo8(fin, rk);
    alignas(64) uint64_t acc[kGroup * 2], conv[kGroup * 2], tt[kGroup * 2];
    for (int v = 0; v < kRegs; ++v) {
      _mm512_store_si512(reinterpret_cast<__m512i*>(acc + 8 * v), A[v]);
      _mm512_store_si512(reinterpret_cast<__m512i*>(conv + 8 * v), fin[v]);
      _mm512_store_si512(reinterpret_cast<__m512i*>(tt + 8 * v), T[v]);
    }
    const size_t fo = 16 + static_cast<size_t>(bits) * rec;
    for (int j = 0; j < kGroup; ++j) {
      const uint64_t tm = uint64_t{0} - tt[2 * j];
      for (int w = 0; w < W; ++w) {
        const uint64_t v = acc[2 * j + w] + conv[2 * j + w] + (bytes::ld_tail(kp[j] + fo + static_cast<size_t>(vb) * w, vb) & tm);
        out[(base + j) * W + w] = (v ^ sign) - sign;  // party 1 negates: y1 = -sum
      }
    }
  }
}
#endif

}  // namespace

bool dcf_simd_available() {
#ifdef PI_DCF_SIMD
  return cpu_ok();
#else
  return false;
#endif
}

bool dcf_simd_enabled() { return g_simd_enabled.load(std::memory_order_relaxed) && dcf_simd_available(); }

void set_dcf_simd(bool on) { g_simd_enabled.store(on, std::memory_order_relaxed); }

size_t dcf_eval_simd(int party, int bits, int words, const uint8_t* keys, size_t stride, const uint64_t* x,
                     uint64_t* out, size_t n, int vbytes) {
#ifdef PI_DCF_SIMD
  if (!dcf_simd_enabled() || !fixed_key_aes().uses_aesni()) return 0;
  const size_t done = n - n % kGroup;
  if (words == 1)
    eval_groups<1>(party, bits, keys, stride, x, out, done, vbytes);
  else
    eval_groups<2>(party, bits, keys, stride, x, out, done, vbytes);
  return done;
#else
  (void)party, (void)bits, (void)words, (void)keys, (void)stride, (void)x, (void)out, (void)n, (void)vbytes;
  return 0;
#endif
}

}  // namespace pi_native::fss
