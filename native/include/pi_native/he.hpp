// BFV with a power-of-two plaintext modulus (Microsoft SEAL 4.1) for the dealer-free linear
// layers: the client uploads seeded symmetric encryptions of polynomials, the server
// multiplies them by plaintext polynomials, re-randomizes, floods the noise, subtracts its
// mask and mod-switches down; the client decrypts. Polynomial layouts (which coefficient
// holds what) are the caller's business (protocols/he.py); this layer only sees polynomials.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seal/seal.h"

namespace pi_native::he {

// One BFV parameter set: degree n, the coefficient-modulus chain (bit sizes; the last prime
// is SEAL's special prime, the first ones are the low levels a reply is switched down to)
// and t = 2^plain_bits. Level k means "the first k primes".
class Context {
 public:
  Context(size_t n, const std::vector<int>& prime_bits, int plain_bits);
  const seal::SEALContext& seal() const { return *ctx_; }
  size_t n() const { return n_; }
  int plain_bits() const { return plain_bits_; }
  size_t max_level() const { return levels_.size(); }       // data primes at the top level
  const seal::parms_id_type& level(size_t k) const;          // 1 <= k <= max_level()
  size_t level_of(const seal::parms_id_type& id) const;      // 0 if not a data level
  std::vector<uint64_t> primes() const;                      // all, the special one last

 private:
  size_t n_;
  int plain_bits_;
  std::shared_ptr<seal::SEALContext> ctx_;
  std::vector<seal::parms_id_type> levels_;                  // levels_[k - 1]
};

// Reply wire format: c1 in full and c0 only at the coefficients the client reads, each
// residue packed in bit_length(prime) bits (SEAL's own format spends 64 bits on each).
std::string pack_reply(const Context& ctx, const seal::Ciphertext& ct, const std::vector<uint32_t>& keep);
seal::Ciphertext unpack_reply(const Context& ctx, const std::string& bytes, size_t level,
                              const std::vector<uint32_t>& keep);

class Client {
 public:
  explicit Client(std::shared_ptr<const Context> ctx);
  const Context& context() const { return *ctx_; }
  // Seeded public key (the server's re-randomization needs it); SEAL's format.
  std::string public_key() const;
  // One seeded symmetric ciphertext per polynomial (count × n coefficients, each < t), at
  // level `level`; SEAL's format, half the size of a full ciphertext.
  std::vector<std::string> encrypt(const uint64_t* polys, size_t count, size_t level) const;
  // Decrypts one packed reply: the n coefficients of the message (only those in `keep` are
  // meaningful) into `out`; if `noise` is given, t·e for each kept coefficient (e the
  // invariant noise, as a double). Returns the noise budget left in bits over the kept
  // coefficients: decryption is correct iff it is positive.
  double decrypt(const std::string& reply, size_t level, const std::vector<uint32_t>& keep, uint64_t* out,
                 double* noise) const;

 private:
  std::shared_ptr<const Context> ctx_;
  mutable seal::KeyGenerator keygen_;
  seal::SecretKey sk_;
  mutable seal::Decryptor decryptor_;  // SEAL's decrypt is non-const (scratch state)
};

// Plaintext kernel polynomials (g_in × g_out, each n coefficients < t), lifted to NTT form
// at one level; all-zero polynomials are skipped (their product would be transparent).
struct Kernels {
  size_t g_in = 0, g_out = 0, level = 0;
  std::vector<seal::Plaintext> plain;   // g_in * g_out, row-major (input group, output group)
  std::vector<bool> zero;
};

struct ServerOptions {
  size_t reply_level = 1;     // level the reply is mod-switched down to
  int flood_bits = 0;         // adds uniform noise in [-2^b, 2^b) to c0; 0 = none (tests only)
  std::vector<uint32_t> keep; // c0 coefficients sent back
};

class Server {
 public:
  Server(std::shared_ptr<const Context> ctx, const std::string& public_key);
  const Context& context() const { return *ctx_; }
  std::shared_ptr<Kernels> prepare(const uint64_t* kernels, size_t g_in, size_t g_out, size_t level) const;
  // query: instances × g_in ciphertexts (SEAL format, seeded or not) at the kernels' level.
  // Returns instances × g_out packed replies; `masks` receives the server's share: the
  // instances × g_out × n uniform polynomials mod t subtracted from the products.
  std::vector<std::string> respond(const Kernels& k, const std::vector<std::string>& query,
                                   const ServerOptions& opt, uint64_t* masks) const;

 private:
  std::shared_ptr<const Context> ctx_;
  seal::PublicKey pk_;
};

}  // namespace pi_native::he
