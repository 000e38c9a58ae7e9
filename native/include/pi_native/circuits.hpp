// The boolean circuits garbled for ReLUs over additive shares in Z_(2^l) (docs/gc.md):
// evaluator input a, garbler input b, a + b = x mod 2^l; garbler-private bits fold its fresh
// output mask into the circuit. Gate counts: relu 3l − 4 AND + 1 ANDC, drelu l − 1, circa m − 1.
#pragma once
#include <cstdint>

#include "pi_native/gc.hpp"

namespace pi_native::gc {

// AndLayer: l independent AND gates a_i ∧ b_i (the benchmark's per-gate rate).
enum class Kind : uint8_t { Relu = 1, Drelu = 2, Circa = 3, AndLayer = 4 };
enum class Mode : uint8_t { None = 0, PosZero = 1, NegPass = 2 };

struct Spec {
  Kind kind = Kind::Relu;
  int l = 64;  // ring bits, 2..64
  int k = 0;   // circa: low bits dropped (0 <= k <= l - 1)
  Mode mode = Mode::None;
};

// Throws std::invalid_argument naming the bad parameter.
void validate(const Spec& s);
Circuit build(const Spec& s);
// Input wires per side and the shift applied to a share before taking them (circa: k).
int input_bits(const Spec& s);
int input_shift(const Spec& s);
// Garbler-private bits per instance: relu l (the bits of −r mod 2^l), drelu/circa 1 (ρ), and 0.
int private_bits(const Spec& s);
const char* kind_name(Kind k);
const char* mode_name(Mode m);

}  // namespace pi_native::gc
