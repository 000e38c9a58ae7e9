// Distributed comparison functions (DCF) in the dealer model, with the fixed-key AES MMO PRG.
//
// A DCF key pair for f(x) = beta * [x < alpha] over `bits`-bit inputs gives each party a key;
// evaluating both keys at the same x yields additive shares of f(x). Two flavours:
//
//  * Ring DCF (`dcf_*`): payload of W in {1, 2} words of Z_(2^64), shares y0 + y1 = f(x) mod 2^64
//    (party 1's output is negated, as in the recipe of docs/fss.md). With value words of V < 8
//    bytes, the value correction words are stored mod 2^(8V) and the shares are right mod 2^(8V)
//    only (evaluation adds them and PRG words, so reduction mod 2^(8V) commutes with it): keys for
//    a ring Z_(2^l) need V = ceil(l / 8).
//  * Bit DCF (`dcf_bit_*`): payload beta = 1 in Z_2, shares y0 xor y1 = [x < alpha], with early
//    termination: the last nu = min(7, bits) levels are replaced by one 128-bit leaf table, so
//    evaluation costs (bits - nu) + 1 AES blocks instead of 2 * bits + 1.
//
// PRG: G_j(s) = AES_K(s xor T_j) xor s xor T_j with the project's fixed key K and tweaks
// T_j = Block{lo = 0, hi = j}. Seeds are 126 bits: the two low bits of a seed are always zero,
// bit 0 of an expanded seed block is the control bit t and (bit DCF) bit 1 is the value bit v.
//   ring DCF:  T_0 -> left child block, T_1 -> right child block,
//              W = 1: T_2 -> (v_L, v_R) = (lo, hi);  W = 2: T_2 -> v_L = (lo, hi), T_3 -> v_R,
//              T_4 -> final conversion words (lo[, hi]).
//   bit DCF:   T_0 / T_1 -> child blocks (t = bit 0, v = bit 1), T_2 -> 128-bit leaf table.
//
// Key layouts (little-endian, no padding):
//   ring DCF:  root seed (16) | bits x [s_cw (16; lo bit 0 = t_cw^L, bit 1 = t_cw^R) | v_cw (VW)]
//              | final cw (VW)                                         = 16 + bits*(16+VW) + VW
//              (V: value bytes, 8 on the full ring)
//   bit DCF:   root seed (16) | D x s_cw (16, t bits packed as above) | v_cw bits (8; bit i =
//              level i) | leaf cw (16; bit j of the 128-bit table = entry j)  = 16 + 16D + 24,
//              D = bits - nu.
#pragma once
#include <cstddef>
#include <cstdint>

#include "pi_native/aes.hpp"

namespace pi_native::fss {

constexpr uint64_t kSeedMask = ~uint64_t{3};  // low two bits of a seed's `lo` word are free

inline Block tweak(uint64_t j) { return Block{0, j}; }

// Ring DCF ---------------------------------------------------------------------------------
// vbytes (1..8): bytes per value word (8: shares mod 2^64; fewer: mod 2^(8 vbytes)).
size_t dcf_key_bytes(int bits, int words, int vbytes = 8);

// One key pair: alpha < 2^bits (0 <= bits <= 64), beta[0..words). s0, s1: root seeds (low two
// bits are cleared here). Writes dcf_key_bytes(bits, words, vbytes) bytes to k0 and k1.
void dcf_gen(int bits, int words, uint64_t alpha, const uint64_t* beta, Block s0, Block s1,
             uint8_t* k0, uint8_t* k1, int vbytes = 8);

// Evaluates n keys of one party: key i starts at keys + i*stride, input x[i] (< 2^bits),
// output words out[i*words + j]. Single-threaded; batches 8 keys so 16 AES blocks are in flight.
void dcf_eval(int party, int bits, int words, const uint8_t* keys, size_t stride,
              const uint64_t* x, uint64_t* out, size_t n, int vbytes = 8);

// The AVX-512 + VAES evaluator (dcf_simd.cpp): the same outputs as the scalar loop, bit for bit.
// dcf_eval uses it for whole groups of 16 keys when the CPU has it and it is enabled (default).
bool dcf_simd_available();
bool dcf_simd_enabled();
void set_dcf_simd(bool on);  // off: the scalar loop everywhere (tests compare the two)
// Evaluates the first n - n % 16 keys as dcf_eval would and returns how many (0 when disabled).
size_t dcf_eval_simd(int party, int bits, int words, const uint8_t* keys, size_t stride,
                     const uint64_t* x, uint64_t* out, size_t n, int vbytes);

// Bit DCF ----------------------------------------------------------------------------------
int dcf_bit_leaf_bits(int bits);  // nu = min(7, bits)
size_t dcf_bit_key_bytes(int bits);
void dcf_bit_gen(int bits, uint64_t alpha, Block s0, Block s1, uint8_t* k0, uint8_t* k1);
// out[i] in {0, 1}; batches 16 keys.
void dcf_bit_eval(int party, int bits, const uint8_t* keys, size_t stride, const uint64_t* x,
                  uint8_t* out, size_t n);

// Keygen randomness: the dealer's 16-byte seed keys AES-CTR; element i reads the stream
// AES_seed(Block{lo = j, hi = i}) for j = 0, 1, ... as 64-bit words (lo then hi of each block).
class ElementRng {
 public:
  ElementRng(const Aes128& aes, uint64_t element) : aes_(aes), element_(element) {}
  uint64_t word() {
    if (pos_ == 2) refill();
    return pos_++ == 0 ? buf_.lo : buf_.hi;
  }
  Block seed() {
    Block b;
    b.lo = word() & kSeedMask;
    b.hi = word();
    return b;
  }

 private:
  void refill() {
    buf_ = aes_.encrypt(Block{counter_++, element_});
    pos_ = 0;
  }
  const Aes128& aes_;
  uint64_t element_;
  uint64_t counter_ = 0;
  Block buf_{};
  int pos_ = 2;
};

}  // namespace pi_native::fss
