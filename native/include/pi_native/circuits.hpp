// The boolean circuits garbled over additive shares in Z_(2^l) (docs/gc.md): evaluator input a,
// garbler input b, a + b = x mod 2^l, |x| < 2^(n−1) with n = bits (≤ l), so only the low n bits
// of each share are read; garbler-private bits fold its fresh output mask into the circuit.
// Gate counts (docs/gc.md, "Circuits"; j = n − 1 − shift for relu, n − shift for trunc):
//   relu  (n − 1) + 2j − 1 AND + (l − j) ANDC     drelu n − 1     circa m − 1 (m = n − k),
//                                                  with a shift m + 1
//   trunc (n − 1) + j − 1 AND + (l − j) ANDC      argmax (C classes) C(n − 1) + (C − 1)n + (C − 2)n
//                                                  + Σ_{i=1}^{C−1} bitlen(i − 1)
#pragma once
#include <cstdint>

#include "pi_native/gc.hpp"

namespace pi_native::gc {

// AndLayer: l independent AND gates a_i ∧ b_i (the benchmark's per-gate rate).
enum class Kind : uint8_t { Relu = 1, Drelu = 2, Circa = 3, AndLayer = 4, Trunc = 5, Argmax = 6 };
enum class Mode : uint8_t { None = 0, PosZero = 1, NegPass = 2 };

struct Spec {
  Kind kind = Kind::Relu;
  int l = 64;      // ring bits of the shares (inputs and outputs), 2..64
  int k = 0;       // circa: low bits dropped (0 <= k <= bits - 1)
  Mode mode = Mode::None;
  int bits = 64;   // value bits n: |x| < 2^(n−1); the circuit reads share bits 0..n−1 (2 <= n <= l)
  int shift = 0;   // relu / trunc / circa: output ⌊·/2^shift⌋ (circa: + the rounding bit) (0..n − 1)
  int classes = 0; // argmax: values per instance (2 <= C <= 65536)
};

// Throws std::invalid_argument naming the bad parameter.
void validate(const Spec& s);
Circuit build(const Spec& s);
// Share values per instance (argmax: C, else 1), input wires per value and side, and the shift
// applied to a share before taking its bits (circa: k).
int values_per_instance(const Spec& s);
int input_bits(const Spec& s);
int input_shift(const Spec& s);
// Garbler-private bits per instance: relu/trunc l (its output mask), drelu/circa 1 (ρ), circa
// with a shift 2 (ρ, ρ_t), else 0.
int private_bits(const Spec& s);
// Added to the garbler's share (mod 2^l) before its input bits are taken: circa with a shift
// 2^(n−1) − 1, else 0.
uint64_t garbler_offset(const Spec& s);
// Output bits per instance that decode to an l-bit ring share (relu, trunc), a bit (drelu, circa)
// or the class index (argmax: ⌈log2 C⌉ bits).
int index_bits(int classes);
const char* kind_name(Kind k);
const char* mode_name(Mode m);

}  // namespace pi_native::gc
