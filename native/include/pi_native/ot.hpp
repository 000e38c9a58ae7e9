// Base oblivious transfer: Chou–Orlandi ("the simplest OT") over NIST P-256 through OpenSSL's
// libcrypto EC API (no curve arithmetic of our own). Each base OT yields 16-byte random keys
// (k0, k1) for the sender and k_c for the receiver; IKNP (iknp.hpp) uses 128 of them as seeds.
//
//   sender:   a ← Z_q, A = a·G                                   → A  (33 B, compressed)
//   receiver: b_i ← Z_q, B_i = b_i·G + c_i·A                      → B_i (33 B each)
//             k_{c_i} = KDF(i, A, B_i, b_i·A)
//   sender:   k0_i = KDF(i, A, B_i, a·B_i),  k1_i = KDF(i, A, B_i, a·B_i − a·A)
// KDF = the first 16 bytes of SHA-256 over (i as 8 LE bytes, A, B_i, point), points compressed.
// Semi-honest security (static corruption), which is this project's model. docs/gc.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "pi_native/aes.hpp"

namespace pi_native::ot {

constexpr size_t kPointBytes = 33;

// Cryptographic randomness (OpenSSL RAND_bytes); throws on failure.
void random_bytes(uint8_t* out, size_t n);
Block random_block();
// The first 16 bytes of SHA-256(data).
Block sha256_block(const uint8_t* data, size_t n);

class BaseSender {
 public:
  BaseSender();
  ~BaseSender();
  BaseSender(const BaseSender&) = delete;
  BaseSender& operator=(const BaseSender&) = delete;
  const std::vector<uint8_t>& first_message() const { return a_msg_; }
  // msg: n × 33 bytes (B_i). Writes n keys to k0 and k1. Callable once.
  void finish(const uint8_t* msg, size_t len, size_t n, Block* k0, Block* k1);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<uint8_t> a_msg_;
  bool done_ = false;
};

// Receiver side in one call: returns the message (n × 33 bytes) and writes the chosen keys.
std::vector<uint8_t> base_receive(const uint8_t* a_msg, size_t len, const uint8_t* choices, size_t n, Block* keys);

}  // namespace pi_native::ot
