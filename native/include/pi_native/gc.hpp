// Half-gates garbling with free-XOR (Zahur–Rosulek–Evans) over a boolean netlist, batched:
// many instances of one circuit are garbled / evaluated in lockstep so that every AES call
// hashes 8 instances' labels at once. Construction and hash: docs/gc.md.
//
// Labels are 16-byte blocks; Δ (lsb 1) is the free-XOR offset: the label of value v on a wire is
// W0 ⊕ v·Δ, and lsb(label) is the point-and-permute bit. Hash: H(x, t) = π(σ(x) ⊕ t) ⊕ σ(x) ⊕ t,
// π = AES-128 under a fixed public key (kGcKey), σ(x_hi ‖ x_lo) = (x_hi ⊕ x_lo) ‖ x_hi.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "pi_native/aes.hpp"

namespace pi_native::gc {

// XOR: free. NOT: public inversion (garbler flips the zero label by Δ; evaluator copies).
// PNOT: inversion by a garbler-private bit `priv` of the instance (an input the garbler knows
// while garbling: the evaluator cannot tell it from a copy). AND: two ciphertexts (32 B).
// ANDC: AND with a garbler-private bit (generator half-gate only: one ciphertext, 16 B).
enum class Op : uint8_t { Xor, Not, Pnot, And, Andc };

struct Gate {
  Op op;
  uint32_t a, b, out;  // wires (b unused for Not/Pnot/Andc)
  uint32_t priv;       // Pnot / Andc: index into the instance's private bits
  uint32_t and_index;  // And / Andc: rank among the instance's hashed gates (tweaks)
  uint32_t table_off;  // And / Andc: byte offset of its ciphertexts in the instance's table
};

// Wires 0 .. n_eval-1 are the evaluator's inputs, then n_garb garbler inputs.
struct Circuit {
  uint32_t n_eval = 0, n_garb = 0, n_priv = 0, n_wires = 0;
  std::vector<Gate> gates;
  std::vector<uint32_t> outputs;
  uint32_t n_and = 0, n_andc = 0;
  size_t table_bytes() const { return 32u * n_and + 16u * n_andc; }
  size_t decode_bytes() const { return (outputs.size() + 7) / 8; }
  uint32_t n_hashed() const { return n_and + n_andc; }
};

// Builder used by circuits.cpp: appends gates and numbers AND tables in order.
class Builder {
 public:
  Builder(uint32_t n_eval, uint32_t n_garb, uint32_t n_priv);
  uint32_t eval_in(uint32_t i) const { return i; }
  uint32_t garb_in(uint32_t i) const { return c_.n_eval + i; }
  uint32_t XOR(uint32_t a, uint32_t b);
  uint32_t NOT(uint32_t a);
  uint32_t PNOT(uint32_t a, uint32_t priv);
  uint32_t AND(uint32_t a, uint32_t b);
  uint32_t ANDC(uint32_t a, uint32_t priv);
  void output(uint32_t w) { c_.outputs.push_back(w); }
  Circuit finish() { return std::move(c_); }

 private:
  uint32_t add(Op op, uint32_t a, uint32_t b, uint32_t priv);
  Circuit c_;
};

// The fixed public key of π (distinct from the FSS PRG key, so the two hashes never share π).
const Aes128& gc_aes();
inline Block sigma(Block x) { return Block{x.hi, x.hi ^ x.lo}; }
// Tweak of hashed gate g (global index within the session), half j ∈ {0, 1}; the top bit of
// `hi` is 0 here and 1 for the OT hash (domain separation).
inline Block gate_tweak(uint64_t g, int j) { return Block{2 * g + static_cast<uint64_t>(j), 0}; }
// H(x_i, t_i) for n blocks (x and out may alias).
void tccr_hash(const Block* x, const Block* t, Block* out, size_t n);

// Garbles `count` instances. Per instance i (row-major buffers):
//   eval_zero[i*n_eval + w], garb_zero[i*n_garb + w]: zero labels of the input wires;
//   priv[i*n_priv + j] ∈ {0, 1}: the garbler-private bits;
//   hashed gate h of instance i uses the global index and_base + i*n_hashed + h;
//   writes tables[i*stride .. + table_bytes) and decode bits right after (bit o = lsb of the
//   zero label of output o), stride = table_bytes + decode_bytes.
// Δ must have its lsb set. Multithreaded over instances.
void garble(const Circuit& c, size_t count, Block delta, const Block* eval_zero, const Block* garb_zero,
            const uint8_t* priv, uint64_t and_base, uint8_t* body);

// Evaluates `count` instances from the body written by garble() and the active input labels;
// out_bits[i*n_out + o] = lsb(output label) ⊕ decode bit. Multithreaded over instances.
void evaluate(const Circuit& c, size_t count, const uint8_t* body, const Block* eval_labels,
              const Block* garb_labels, uint64_t and_base, uint8_t* out_bits);

// Plain boolean evaluation of one instance (reference semantics, for tests).
void eval_plain(const Circuit& c, const uint8_t* eval_bits, const uint8_t* garb_bits, const uint8_t* priv,
                uint8_t* out_bits);

}  // namespace pi_native::gc
