// Fixed-key AES-128 with an AES-NI path and a portable path (chosen at run time).
//
// The key schedule is computed portably (FIPS-197 byte order); both paths use the same
// round keys, so they must agree bit for bit, which the tests check.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pi_native {

// A 128-bit block as two little-endian 64-bit words: bytes 0..7 are `lo`, 8..15 are `hi`.
struct Block {
  uint64_t lo = 0, hi = 0;
  Block operator^(const Block& o) const { return {lo ^ o.lo, hi ^ o.hi}; }
  Block& operator^=(const Block& o) { lo ^= o.lo; hi ^= o.hi; return *this; }
  bool operator==(const Block& o) const { return lo == o.lo && hi == o.hi; }
};

enum class AesBackend { Auto, AesNi, Portable };

bool cpu_has_aesni();

class Aes128 {
 public:
  explicit Aes128(const uint8_t key[16], AesBackend backend = AesBackend::Auto);

  // ECB encryption of n blocks (in and out may alias).
  void encrypt(const Block* in, Block* out, size_t n) const;
  Block encrypt(Block b) const { encrypt(&b, &b, 1); return b; }

  // Matyas–Meyer–Oseas with a tweak: H(x) = AES_K(x) xor x, on n blocks in place.
  // A correlation-robust hash when K is fixed and public; the FSS PRG is built from it.
  void mmo(Block* io, size_t n) const;

  bool uses_aesni() const { return aesni_; }
  const uint8_t* round_keys() const { return rk_; }

 private:
  alignas(16) uint8_t rk_[11 * 16];
  bool aesni_;
};

// The fixed public key used by every MMO hash in the project (the digits of pi).
const Aes128& fixed_key_aes();

// AES-CTR keystream: out[i] = AES_key(nonce + i) for i in [0, n).
void aes_ctr(const Aes128& aes, Block nonce, Block* out, size_t n);

}  // namespace pi_native
