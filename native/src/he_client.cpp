// The client's side: keys, seeded symmetric encryption of its polynomials, decryption of
// the replies with the noise margin measured on the coefficients it reads.
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "pi_native/he.hpp"
#include "seal/util/ntt.h"
#include "seal/util/polyarithsmallmod.h"
#include "seal/util/rlwe.h"
#include "seal/util/scalingvariant.h"
#include "seal/util/uintarith.h"

namespace pi_native::he {

Client::Client(std::shared_ptr<const Context> ctx)
    : ctx_(std::move(ctx)), keygen_(ctx_->seal()), sk_(keygen_.secret_key()), decryptor_(ctx_->seal(), sk_) {}

std::string Client::public_key() const {
  std::stringstream s;
  // create_public_key returns the seeded form: the uniform half is replaced by its seed.
  keygen_.create_public_key().save(s, seal::compr_mode_type::none);
  return s.str();
}

std::vector<std::string> Client::encrypt(const uint64_t* polys, size_t count, size_t level) const {
  const size_t n = ctx_->n();
  const uint64_t t = uint64_t{1} << ctx_->plain_bits();
  const auto& id = ctx_->level(level);
  const auto& cd = *ctx_->seal().get_context_data(id);
  std::vector<std::string> out(count);
  seal::Plaintext plain(n);
  for (size_t c = 0; c < count; ++c) {
    const uint64_t* p = polys + c * n;
    for (size_t i = 0; i < n; ++i) {
      if (p[i] >= t) throw std::invalid_argument("polynomial coefficient not below the plain modulus 2^" +
                                                 std::to_string(ctx_->plain_bits()));
      plain[i] = p[i];
    }
    // What Encryptor::encrypt_symmetric does, at a chosen level instead of the top one:
    // a seeded encryption of zero, then round(q·m/t) added to c0.
    seal::Ciphertext ct;
    seal::util::encrypt_zero_symmetric(sk_, ctx_->seal(), id, false, true, ct);
    seal::util::multiply_add_plain_with_scaling_variant(plain, cd, seal::util::RNSIter(ct.data(0), n));
    std::stringstream s;
    ct.save(s, seal::compr_mode_type::none);
    out[c] = s.str();
  }
  return out;
}

double Client::decrypt(const std::string& reply, size_t level, const std::vector<uint32_t>& keep, uint64_t* out,
                       double* noise) const {
  namespace util = seal::util;
  const size_t n = ctx_->n();
  seal::Ciphertext ct = unpack_reply(*ctx_, reply, level, keep);
  seal::Plaintext plain;
  decryptor_.decrypt(ct, plain);
  std::fill(out, out + n, 0);
  std::copy(plain.data(), plain.data() + plain.coeff_count(), out);

  // The margin: y = [t·(c0 + c1·s)]_q' = t·e (centered) exactly when decryption is correct,
  // and decryption is correct iff |y| < q'/2, so log2(q'/2) − log2(max |y|) bits are left.
  const auto& cd = *ctx_->seal().get_context_data(ct.parms_id());
  const auto& mods = cd.parms().coeff_modulus();
  const auto ntt = cd.small_ntt_tables();
  const uint64_t t = uint64_t{1} << ctx_->plain_bits();
  std::vector<uint64_t> y(level * n);
  for (size_t j = 0; j < level; ++j) {
    uint64_t* yj = y.data() + j * n;
    std::copy(ct.data(1) + j * n, ct.data(1) + (j + 1) * n, yj);
    util::ntt_negacyclic_harvey(yj, ntt[j]);
    // The secret key is kept in NTT form at the key level; its first residues are this level's.
    util::dyadic_product_coeffmod(yj, sk_.data().data() + j * n, n, mods[j], yj);
    util::inverse_ntt_negacyclic_harvey(yj, ntt[j]);
    util::add_poly_coeffmod(yj, ct.data(0) + j * n, n, mods[j], yj);
    util::multiply_poly_scalar_coeffmod(yj, n, t % mods[j].value(), mods[j], yj);
  }
  auto pool = seal::MemoryManager::GetPool();
  cd.rns_tool()->base_q()->compose_array(y.data(), n, pool);  // now n numbers of `level` words
  const uint64_t* q = cd.total_coeff_modulus();
  std::vector<uint64_t> half(level), v(level);
  util::right_shift_uint(q, 1, level, half.data());
  auto to_double = [&](const uint64_t* w) {
    double d = 0;
    for (size_t k = level; k-- > 0;) d = d * 18446744073709551616.0 + static_cast<double>(w[k]);
    return d;
  };
  double worst = 0;
  for (size_t idx = 0; idx < keep.size(); ++idx) {
    const uint64_t* x = y.data() + static_cast<size_t>(keep[idx]) * level;
    double mag;
    bool negative = util::is_greater_than_uint(x, half.data(), level);
    if (negative) {
      util::sub_uint(q, x, level, v.data());
      mag = to_double(v.data());
    } else {
      mag = to_double(x);
    }
    worst = std::max(worst, mag);
    if (noise) noise[idx] = negative ? -mag : mag;
  }
  const double half_q = to_double(half.data());
  return worst == 0 ? std::log2(half_q) : std::log2(half_q) - std::log2(worst);
}

}  // namespace pi_native::he
