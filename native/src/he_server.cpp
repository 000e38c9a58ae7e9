// The server's side: plaintext-ciphertext products of one layer, re-randomized and
// noise-flooded so that the reply reveals nothing of the weights beyond W·r − s.
#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "pi_native/he.hpp"
#include "pi_native/parallel.hpp"
#include "seal/util/polyarithsmallmod.h"
#include "seal/util/rlwe.h"
#include "seal/util/uintarithsmallmod.h"

namespace pi_native::he {

namespace {

seal::Ciphertext load_ciphertext(const Context& ctx, const std::string& bytes, const char* what, size_t index) {
  seal::Ciphertext ct;
  try {
    // SEAL checks the header, the sizes, the parameters and every residue; a seed is expanded.
    ct.load(ctx.seal(), reinterpret_cast<const seal::seal_byte*>(bytes.data()), bytes.size());
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string(what) + " " + std::to_string(index) + " is not a valid ciphertext for "
                                "these parameters (" + e.what() + ")");
  }
  return ct;
}

std::shared_ptr<seal::UniformRandomGenerator> fresh_prng() {
  return seal::UniformRandomGeneratorFactory::DefaultFactory()->create();
}

}  // namespace

Server::Server(std::shared_ptr<const Context> ctx, const std::string& public_key) : ctx_(std::move(ctx)) {
  try {
    pk_.load(ctx_->seal(), reinterpret_cast<const seal::seal_byte*>(public_key.data()), public_key.size());
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("public key is not valid for these parameters (") + e.what() + ")");
  }
}

std::shared_ptr<Kernels> Server::prepare(const uint64_t* kernels, size_t g_in, size_t g_out, size_t level) const {
  const size_t n = ctx_->n();
  const uint64_t t = uint64_t{1} << ctx_->plain_bits();
  const auto& id = ctx_->level(level);
  auto out = std::make_shared<Kernels>();
  out->g_in = g_in;
  out->g_out = g_out;
  out->level = level;
  out->plain.resize(g_in * g_out);
  out->zero.assign(g_in * g_out, true);
  for (size_t i = 0; i < g_in * g_out * n; ++i)
    if (kernels[i] >= t)
      throw std::invalid_argument("kernel coefficient not below the plain modulus 2^" + std::to_string(ctx_->plain_bits()));
  seal::Evaluator ev(ctx_->seal());
  parallel_for(g_in * g_out, 1, [&](size_t b, size_t e) {
    for (size_t g = b; g < e; ++g) {
      const uint64_t* p = kernels + g * n;
      if (std::all_of(p, p + n, [](uint64_t v) { return v == 0; })) continue;
      seal::Plaintext& pt = out->plain[g];
      pt.resize(n);
      std::copy(p, p + n, pt.data());
      // Lifts each coefficient to (−t/2, t/2] mod q (SEAL's BFV convention), then NTT.
      ev.transform_to_ntt_inplace(pt, id);
    }
  });
  for (size_t g = 0; g < g_in * g_out; ++g) out->zero[g] = !out->plain[g].is_ntt_form();
  return out;
}

std::vector<std::string> Server::respond(const Kernels& k, const std::vector<std::string>& query,
                                         const ServerOptions& opt, uint64_t* masks) const {
  namespace util = seal::util;
  const size_t n = ctx_->n();
  if (k.g_in == 0 || query.size() % k.g_in != 0)
    throw std::invalid_argument("query holds " + std::to_string(query.size()) + " ciphertexts, not a multiple of " +
                                std::to_string(k.g_in) + " (input polynomials per instance)");
  if (opt.reply_level < 1 || opt.reply_level > k.level)
    throw std::invalid_argument("reply level must be in 1.." + std::to_string(k.level));
  if (opt.flood_bits < 0 || opt.flood_bits > 250) throw std::invalid_argument("flood_bits must be in 0..250");
  const size_t instances = query.size() / k.g_in;
  const auto& id = ctx_->level(k.level);
  const auto& cd = *ctx_->seal().get_context_data(id);
  const auto& mods = cd.parms().coeff_modulus();
  const uint64_t tmask = (uint64_t{1} << ctx_->plain_bits()) - 1;
  seal::Evaluator ev(ctx_->seal());

  std::vector<seal::Ciphertext> in(query.size());
  parallel_for(query.size(), 1, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      in[i] = load_ciphertext(*ctx_, query[i], "query ciphertext", i);
      if (in[i].parms_id() != id || in[i].size() != 2 || in[i].is_ntt_form())
        throw std::invalid_argument("query ciphertext " + std::to_string(i) + " is not a fresh encryption at level " +
                                    std::to_string(k.level) + " (wrong level, size or form)");
      ev.transform_to_ntt_inplace(in[i]);
    }
  });

  // Flooding noise: (flood_bits + 1) uniform bits per coefficient, centered, reduced mod
  // each prime; words = 64-bit limbs of one sample.
  const size_t words = static_cast<size_t>(opt.flood_bits + 1 + 63) / 64;
  std::vector<uint64_t> offset(mods.size());   // 2^flood_bits mod q_j
  if (opt.flood_bits > 0) {
    std::vector<uint64_t> pow2(words, 0);
    pow2[static_cast<size_t>(opt.flood_bits) / 64] = uint64_t{1} << (opt.flood_bits % 64);
    for (size_t j = 0; j < mods.size(); ++j) offset[j] = util::modulo_uint(pow2.data(), words, mods[j]);
  }

  std::vector<std::string> out(instances * k.g_out);
  parallel_for(instances * k.g_out, 1, [&](size_t b, size_t e) {
    auto prng = fresh_prng();
    std::vector<uint64_t> sample(n * words);
    for (size_t task = b; task < e; ++task) {
      const size_t inst = task / k.g_out, go = task % k.g_out;
      // Start from a fresh public-key encryption of zero: it re-randomizes c1 (else c1 would
      // be a known combination of the client's uniform polynomials and the weights), and the
      // sum is never transparent even when every kernel of this group is zero.
      // Directly at this level and in NTT form: noise −e·u + e1 + e2·s, |.| ≤ 21·(2n + 1).
      seal::Ciphertext acc;
      util::encrypt_zero_asymmetric(pk_, ctx_->seal(), id, true, acc);
      seal::Ciphertext prod;
      for (size_t gi = 0; gi < k.g_in; ++gi) {
        const size_t kk = gi * k.g_out + go;
        if (k.zero[kk]) continue;
        ev.multiply_plain(in[inst * k.g_in + gi], k.plain[kk], prod);
        ev.add_inplace(acc, prod);
      }
      ev.transform_from_ntt_inplace(acc);

      // The server's share: a uniform mask over all n coefficients (the unread ones hide the
      // products' other coefficients, which are further combinations of W and r).
      uint64_t* s = masks + task * n;
      prng->generate(n * sizeof(uint64_t), reinterpret_cast<seal::seal_byte*>(s));
      seal::Plaintext sp(n);
      for (size_t i = 0; i < n; ++i) sp[i] = (s[i] &= tmask);
      ev.sub_plain_inplace(acc, sp);

      if (opt.flood_bits > 0) {
        prng->generate(n * words * sizeof(uint64_t), reinterpret_cast<seal::seal_byte*>(sample.data()));
        const int top_bits = (opt.flood_bits + 1) % 64;
        for (size_t i = 0; i < n; ++i) {
          uint64_t* x = sample.data() + i * words;
          if (top_bits != 0) x[words - 1] &= (uint64_t{1} << top_bits) - 1;
          for (size_t j = 0; j < mods.size(); ++j) {
            // (x − 2^flood_bits) mod q_j, added to c0
            const uint64_t v = util::sub_uint_mod(util::modulo_uint(x, words, mods[j]), offset[j], mods[j]);
            uint64_t& c = acc.data(0)[j * n + i];
            c = util::add_uint_mod(c, v, mods[j]);
          }
        }
      }
      ev.mod_switch_to_inplace(acc, ctx_->level(opt.reply_level));
      out[task] = pack_reply(*ctx_, acc, opt.keep);
    }
  });
  return out;
}

}  // namespace pi_native::he
