// IKNP oblivious-transfer extension (Ishai–Kilian–Nissim–Petrank), semi-honest, κ = 128:
// 128 Chou–Orlandi base OTs (ot.hpp) with the roles swapped, then any number of OTs for the cost
// of symmetric crypto. docs/gc.md, "OT extension".
//
// Correlated OT (COT): the sender holds Δ (= its base-OT choice bits, lsb forced to 1) and rows
// q_j; the receiver with choice c_j holds t_j = q_j ⊕ c_j·Δ. The garbler uses Δ as its free-XOR
// offset, so q_j is the zero label of an evaluator input wire and t_j the active label.
// Random OT (ROT): R_b = H(q_j ⊕ b·Δ, j) for the sender, H(t_j, j) = R_{c_j} for the receiver,
// H the garbling hash (gc.hpp) with the OT-domain tweak Block{j, 2^63}.
//
// The receiver's t_j are a function of its 128 base-OT seeds only (t^i = AES-CTR under k_i^0),
// so it keeps no rows: take() recomputes them; per unused OT it keeps only its choice bit (packed). Both sides hand out OTs in increasing order and each
// at most once: asking for an index below consumed() raises.
// PRG for column i: AES-128 keyed by the 16-byte seed, counter mode over a per-session block
// index (each extend() call uses fresh blocks); the column's bit j is bit j of the keystream.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "pi_native/aes.hpp"
#include "pi_native/ot.hpp"

namespace pi_native::ot {

constexpr int kKappa = 128;

// 128×128 bit transpose: cols[i] bit j → rows[j] bit i (bit j of a block = byte j/8, bit j%8).
void transpose128(const Block* cols, Block* rows);
inline Block ot_tweak(uint64_t j) { return Block{j, uint64_t{1} << 63}; }

class IknpReceiver {
 public:
  IknpReceiver();
  const std::vector<uint8_t>& base_message() const { return base_.first_message(); }
  void base_finish(const uint8_t* msg, size_t len);
  // Appends n OTs with choice bits choices[0..n) ∈ {0,1}; returns the message U for the sender
  // (128 columns × ceil(n/128) blocks, column-major).
  std::vector<uint8_t> extend(const uint8_t* choices, size_t n);
  // OTs [start, start + n), start >= consumed(): rows t_j and the choice bits (either may be null).
  // OTs before `start` not yet used are discarded (a garbled batch that was never evaluated).
  void take(uint64_t start, size_t n, Block* rows, uint8_t* choices);
  uint64_t extended() const { return extended_; }
  uint64_t consumed() const { return consumed_; }
  bool ready() const { return !prg0_.empty(); }
  Block session_id() const { return sid_; }

 private:
  struct Chunk {
    uint64_t ot_start, n, block_start;
  };
  void rows_of_chunk(const Chunk& c, uint64_t from, uint64_t n, Block* rows) const;
  mutable std::mutex mu_;  // calls run with the GIL released: one at a time per object
  BaseSender base_;
  std::vector<Aes128> prg0_, prg1_;
  std::vector<Chunk> chunks_;
  std::vector<uint64_t> choices_;  // bit (j − choice_base_) is OT j's choice (choice_base_ % 64 = 0)
  uint64_t choice_base_ = 0, blocks_ = 0, extended_ = 0, consumed_ = 0;
  Block sid_{};
};

class IknpSender {
 public:
  IknpSender();  // draws Δ (lsb 1) from OpenSSL's RNG
  // Base OTs as receiver with choice bits = the bits of Δ; returns the reply to the receiver.
  std::vector<uint8_t> base_reply(const uint8_t* a_msg, size_t len);
  void extend(const uint8_t* u, size_t len, size_t n);
  // The next n rows q_j (start must equal consumed()).
  void take(uint64_t start, size_t n, Block* rows);
  uint64_t extended() const { return extended_; }
  uint64_t consumed() const { return consumed_; }
  bool ready() const { return !prg_.empty(); }
  Block delta() const { return delta_; }
  Block session_id() const { return sid_; }

 private:
  std::mutex mu_;
  Block delta_;
  std::vector<Aes128> prg_;
  std::vector<Block> rows_;  // rows_[j - row_base_] for unconsumed j
  uint64_t row_base_ = 0, blocks_ = 0, extended_ = 0, consumed_ = 0;
  Block sid_{};
};

// Random-OT messages from COT rows: out[j] = H(rows[j] ⊕ xor_mask, ot_tweak(first + j)).
void rot_hash(const Block* rows, size_t n, uint64_t first, Block xor_mask, Block* out);

}  // namespace pi_native::ot
