// BFV parameter sets and the packed reply format.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "pi_native/he.hpp"

namespace pi_native::he {

Context::Context(size_t n, const std::vector<int>& prime_bits, int plain_bits) : n_(n), plain_bits_(plain_bits) {
  if (plain_bits < 2 || plain_bits > 59)
    throw std::invalid_argument("plain modulus 2^" + std::to_string(plain_bits) + " out of range 2^2..2^59 (SEAL: t has at most 60 bits)");
  if (prime_bits.size() < 2)
    throw std::invalid_argument("the coefficient modulus needs at least two primes (data + special)");
  seal::EncryptionParameters parms(seal::scheme_type::bfv);
  parms.set_poly_modulus_degree(n);
  parms.set_coeff_modulus(seal::CoeffModulus::Create(n, prime_bits));
  parms.set_plain_modulus(seal::Modulus(uint64_t{1} << plain_bits));
  // SEAL refuses chains beyond the HomomorphicEncryption.org 128-bit table for n.
  ctx_ = std::make_shared<seal::SEALContext>(parms, true, seal::sec_level_type::tc128);
  if (!ctx_->parameters_set())
    throw std::invalid_argument(std::string("SEAL rejects the parameters: ") + ctx_->parameter_error_message());
  // SEAL ends the chain where q would drop below t, so the lowest levels may be missing.
  const size_t top = ctx_->first_context_data()->parms().coeff_modulus().size();
  levels_.assign(top, seal::parms_id_zero);
  for (auto cd = ctx_->first_context_data(); cd; cd = cd->next_context_data())
    levels_[cd->parms().coeff_modulus().size() - 1] = cd->parms_id();
}

const seal::parms_id_type& Context::level(size_t k) const {
  if (k < 1 || k > levels_.size() || levels_[k - 1] == seal::parms_id_zero)
    throw std::invalid_argument("level " + std::to_string(k) + " is not in this modulus chain");
  return levels_[k - 1];
}

size_t Context::level_of(const seal::parms_id_type& id) const {
  for (size_t k = 0; k < levels_.size(); ++k)
    if (levels_[k] == id && id != seal::parms_id_zero) return k + 1;
  return 0;
}

std::vector<uint64_t> Context::primes() const {
  std::vector<uint64_t> out;
  for (const auto& q : ctx_->key_context_data()->parms().coeff_modulus()) out.push_back(q.value());
  return out;
}

namespace {

constexpr char kMagic[4] = {'P', 'I', 'H', 'R'};
constexpr uint8_t kVersion = 1;
constexpr size_t kHeader = 4 + 1 + 1 + 1 + 1 + 8 + 4;

class BitWriter {
 public:
  explicit BitWriter(std::string& out) : out_(out) {}
  void put(uint64_t v, int bits) {
    acc_ |= static_cast<unsigned __int128>(v) << fill_;
    fill_ += bits;
    while (fill_ >= 8) {
      out_.push_back(static_cast<char>(acc_ & 0xFF));
      acc_ >>= 8;
      fill_ -= 8;
    }
  }
  void flush() {
    if (fill_ > 0) out_.push_back(static_cast<char>(acc_ & 0xFF));
    acc_ = 0;
    fill_ = 0;
  }

 private:
  std::string& out_;
  unsigned __int128 acc_ = 0;
  int fill_ = 0;
};

class BitReader {
 public:
  BitReader(const std::string& in, size_t pos) : in_(in), pos_(pos) {}
  uint64_t get(int bits) {
    while (fill_ < bits) {
      if (pos_ >= in_.size()) throw std::invalid_argument("reply ciphertext is truncated");
      acc_ |= static_cast<unsigned __int128>(static_cast<uint8_t>(in_[pos_++])) << fill_;
      fill_ += 8;
    }
    const uint64_t v = static_cast<uint64_t>(acc_ & ((static_cast<unsigned __int128>(1) << bits) - 1));
    acc_ >>= bits;
    fill_ -= bits;
    return v;
  }
  void align() { acc_ = 0; fill_ = 0; }
  size_t pos() const { return pos_; }

 private:
  const std::string& in_;
  size_t pos_;
  unsigned __int128 acc_ = 0;
  int fill_ = 0;
};

int bit_length(uint64_t v) { return 64 - __builtin_clzll(v); }

void check_keep(const std::vector<uint32_t>& keep, size_t n) {
  for (size_t i = 0; i < keep.size(); ++i)
    if (keep[i] >= n || (i > 0 && keep[i] <= keep[i - 1]))
      throw std::invalid_argument("keep must list distinct coefficient indices below n in increasing order");
}

}  // namespace

std::string pack_reply(const Context& ctx, const seal::Ciphertext& ct, const std::vector<uint32_t>& keep) {
  const size_t n = ctx.n(), level = ctx.level_of(ct.parms_id());
  if (level == 0 || ct.size() != 2 || ct.is_ntt_form()) throw std::logic_error("pack_reply: not a fresh BFV reply");
  check_keep(keep, n);
  const auto& mods = ctx.seal().get_context_data(ct.parms_id())->parms().coeff_modulus();
  std::string out(kMagic, 4);
  out.push_back(static_cast<char>(kVersion));
  out.push_back(static_cast<char>(bit_length(n) - 1));
  out.push_back(static_cast<char>(level));
  out.push_back(static_cast<char>(ctx.plain_bits()));
  out.append(reinterpret_cast<const char*>(&ct.parms_id()[0]), 8);
  const uint32_t nkeep = static_cast<uint32_t>(keep.size());
  out.append(reinterpret_cast<const char*>(&nkeep), 4);
  BitWriter w(out);
  for (size_t j = 0; j < level; ++j) {
    const int bits = bit_length(mods[j].value());
    const uint64_t* c0 = ct.data(0) + j * n;
    const uint64_t* c1 = ct.data(1) + j * n;
    for (size_t i = 0; i < n; ++i) w.put(c1[i], bits);
    for (uint32_t i : keep) w.put(c0[i], bits);
    w.flush();
  }
  return out;
}

seal::Ciphertext unpack_reply(const Context& ctx, const std::string& in, size_t level,
                              const std::vector<uint32_t>& keep) {
  const size_t n = ctx.n();
  check_keep(keep, n);
  const auto& id = ctx.level(level);
  if (in.size() < kHeader || in.compare(0, 4, kMagic, 4) != 0)
    throw std::invalid_argument("not a reply ciphertext (bad magic)");
  if (static_cast<uint8_t>(in[4]) != kVersion)
    throw std::invalid_argument("reply format version " + std::to_string(static_cast<uint8_t>(in[4])) +
                                " is not supported (expected 1)");
  if (static_cast<size_t>(uint64_t{1} << static_cast<uint8_t>(in[5])) != n ||
      static_cast<size_t>(static_cast<uint8_t>(in[6])) != level ||
      static_cast<int>(static_cast<uint8_t>(in[7])) != ctx.plain_bits() ||
      in.compare(8, 8, reinterpret_cast<const char*>(&id[0]), 8) != 0)
    throw std::invalid_argument("reply ciphertext was made for other encryption parameters (n, level, t or primes differ)");
  uint32_t nkeep;
  std::memcpy(&nkeep, in.data() + 16, 4);
  if (nkeep != keep.size())
    throw std::invalid_argument("reply ciphertext carries " + std::to_string(nkeep) + " coefficients of c0, expected " +
                                std::to_string(keep.size()));
  const auto& mods = ctx.seal().get_context_data(id)->parms().coeff_modulus();
  size_t expect = kHeader;
  for (size_t j = 0; j < level; ++j) expect += (static_cast<size_t>(bit_length(mods[j].value())) * (n + nkeep) + 7) / 8;
  if (in.size() != expect)
    throw std::invalid_argument("reply ciphertext has " + std::to_string(in.size()) + " bytes, expected " +
                                std::to_string(expect));
  seal::Ciphertext ct(ctx.seal(), id);
  ct.resize(2);
  BitReader r(in, kHeader);
  for (size_t j = 0; j < level; ++j) {
    const uint64_t p = mods[j].value();
    const int bits = bit_length(p);
    uint64_t* c0 = ct.data(0) + j * n;
    uint64_t* c1 = ct.data(1) + j * n;
    std::fill(c0, c0 + n, 0);
    for (size_t i = 0; i < n; ++i) c1[i] = r.get(bits);
    for (uint32_t i : keep) c0[i] = r.get(bits);
    for (size_t i = 0; i < n; ++i)
      if (c1[i] >= p || c0[i] >= p) throw std::invalid_argument("reply ciphertext holds a residue out of range");
    r.align();
  }
  return ct;
}

}  // namespace pi_native::he
