// IKNP OT extension (see iknp.hpp): column PRGs, the 128×128 transposes and in-order hygiene.
#include "pi_native/iknp.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "pi_native/gc.hpp"
#include "pi_native/parallel.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace pi_native::ot {
namespace {

inline bool bit_of(const Block& b, int i) { return ((i < 64 ? b.lo >> i : b.hi >> (i - 64)) & 1) != 0; }

// Column i's keystream blocks [first, first + n).
void column(const Aes128& prg, uint64_t first, size_t n, Block* out) { aes_ctr(prg, Block{first, 0}, out, n); }

// Transposes tiles [0, ntiles) of a column-major matrix (cols[i * ntiles + q]) into rows
// out[q * 128 + j], skipping rows at or past `nrows`.
void transpose_tiles(const Block* cols, size_t ntiles, size_t nrows, Block* out) {
  parallel_for(ntiles, 16, [&](size_t b, size_t e) {
    Block in[kKappa], rows[kKappa];
    for (size_t q = b; q < e; ++q) {
      for (int i = 0; i < kKappa; ++i) in[i] = cols[i * ntiles + q];
      transpose128(in, rows);
      const size_t lim = std::min<size_t>(kKappa, nrows - q * kKappa);
      std::memcpy(out + q * kKappa, rows, lim * sizeof(Block));
    }
  });
}

Block session_id_of(const std::vector<uint8_t>& a_msg, const uint8_t* b_msg, size_t len) {
  std::vector<uint8_t> buf(a_msg);
  buf.insert(buf.end(), b_msg, b_msg + len);
  return sha256_block(buf.data(), buf.size());
}

std::vector<Aes128> keyed(const std::vector<Block>& seeds) {
  std::vector<Aes128> out;
  out.reserve(seeds.size());
  for (const Block& s : seeds) out.emplace_back(reinterpret_cast<const uint8_t*>(&s));
  return out;
}

}  // namespace

void transpose128(const Block* cols, Block* rows) {
  const uint8_t* in = reinterpret_cast<const uint8_t*>(cols);
  uint8_t* out = reinterpret_cast<uint8_t*>(rows);
#if defined(__SSE2__)
  // Byte rb of 16 consecutive columns holds rows 8rb..8rb+7; movemask reads bit 7 of each byte.
  for (int rb = 0; rb < 16; ++rb)
    for (int g = 0; g < 8; ++g) {
      alignas(16) uint8_t v[16];
      for (int x = 0; x < 16; ++x) v[x] = in[(16 * g + x) * 16 + rb];
      __m128i m = _mm_load_si128(reinterpret_cast<const __m128i*>(v));
      for (int b = 7; b >= 0; --b) {
        const uint16_t bits = static_cast<uint16_t>(_mm_movemask_epi8(m));
        std::memcpy(out + (8 * rb + b) * 16 + 2 * g, &bits, 2);
        m = _mm_slli_epi64(m, 1);
      }
    }
#else
  std::memset(out, 0, 16 * kKappa);
  for (int i = 0; i < kKappa; ++i)
    for (int j = 0; j < kKappa; ++j)
      if ((in[i * 16 + j / 8] >> (j % 8)) & 1) out[j * 16 + i / 8] |= static_cast<uint8_t>(1u << (i % 8));
#endif
}

void rot_hash(const Block* rows, size_t n, uint64_t first, Block xor_mask, Block* out) {
  constexpr size_t kStep = 1024;
  Block x[kStep], t[kStep];
  for (size_t b = 0; b < n; b += kStep) {
    const size_t m = std::min(kStep, n - b);
    for (size_t j = 0; j < m; ++j) {
      x[j] = rows[b + j] ^ xor_mask;
      t[j] = ot_tweak(first + b + j);
    }
    gc::tccr_hash(x, t, out + b, m);
  }
}

// ---- receiver -----------------------------------------------------------------------------

IknpReceiver::IknpReceiver() = default;

void IknpReceiver::base_finish(const uint8_t* msg, size_t len) {
  if (ready()) throw std::logic_error("IKNP receiver: base OTs already done (one setup per session)");
  std::vector<Block> k0(kKappa), k1(kKappa);
  base_.finish(msg, len, kKappa, k0.data(), k1.data());
  prg0_ = keyed(k0);
  prg1_ = keyed(k1);
  sid_ = session_id_of(base_.first_message(), msg, len);
}

std::vector<uint8_t> IknpReceiver::extend(const uint8_t* choices, size_t n) {
  if (!ready()) throw std::logic_error("IKNP receiver: run the base OTs first");
  const size_t nb = (n + kKappa - 1) / kKappa;
  std::vector<Block> packed(nb);
  for (size_t j = 0; j < n; ++j) {
    if (choices[j] > 1) throw std::invalid_argument("choice bits must be 0 or 1");
    if (choices[j]) (j % 128 < 64 ? packed[j / 128].lo : packed[j / 128].hi) |= uint64_t{1} << (j % 64);
  }
  std::vector<uint8_t> u(static_cast<size_t>(kKappa) * nb * 16);
  Block* U = reinterpret_cast<Block*>(u.data());
  const uint64_t first = blocks_;
  parallel_for(kKappa, 8, [&](size_t b, size_t e) {
    std::vector<Block> g(nb);
    for (size_t i = b; i < e; ++i) {
      column(prg0_[i], first, nb, U + i * nb);
      column(prg1_[i], first, nb, g.data());
      for (size_t q = 0; q < nb; ++q) U[i * nb + q] ^= g[q] ^ packed[q];
    }
  });
  chunks_.push_back(Chunk{extended_, n, first});
  choices_.insert(choices_.end(), choices, choices + n);
  blocks_ += nb;
  extended_ += n;
  return u;
}

void IknpReceiver::rows_of_chunk(const Chunk& c, uint64_t from, uint64_t n, Block* rows) const {
  const uint64_t local = from - c.ot_start;
  const uint64_t q0 = local / kKappa, q1 = (local + n - 1) / kKappa, nt = q1 - q0 + 1;
  std::vector<Block> cols(static_cast<size_t>(kKappa) * nt), all(nt * kKappa);
  parallel_for(kKappa, 8, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) column(prg0_[i], c.block_start + q0, nt, cols.data() + i * nt);
  });
  transpose_tiles(cols.data(), nt, nt * kKappa, all.data());
  std::memcpy(rows, all.data() + (local - q0 * kKappa), n * sizeof(Block));
}

void IknpReceiver::take(uint64_t start, size_t n, Block* rows, uint8_t* choices) {
  if (start < consumed_)
    throw std::invalid_argument("OT correlations from index " + std::to_string(start) +
                                " requested, but the next unused one is " + std::to_string(consumed_) +
                                " (each OT is used once, in order)");
  if (start > extended_ || n > extended_ - start)
    throw std::invalid_argument("only " + std::to_string(extended_ - std::min(start, extended_)) +
                                " unused OTs left from index " + std::to_string(start) + ", " + std::to_string(n) +
                                " needed: extend first");
  consumed_ = start;  // OTs skipped over (a batch never evaluated) are discarded, never reused
  if (rows) {
    uint64_t at = start, left = n;
    for (const Chunk& c : chunks_) {
      if (left == 0) break;
      if (at >= c.ot_start + c.n) continue;
      const uint64_t k = std::min(left, c.ot_start + c.n - at);
      rows_of_chunk(c, at, k, rows + (at - start));
      at += k;
      left -= k;
    }
  }
  if (choices) std::memcpy(choices, choices_.data() + (start - choice_base_), n);
  consumed_ += n;
  // Forget what is consumed (choice bits; chunks wholly behind the cursor).
  const uint64_t drop = consumed_ - choice_base_;
  if (drop > (1u << 16) && drop * 2 > choices_.size()) {
    choices_.erase(choices_.begin(), choices_.begin() + static_cast<std::ptrdiff_t>(drop));
    choice_base_ = consumed_;
  }
  while (!chunks_.empty() && chunks_.front().ot_start + chunks_.front().n <= consumed_) chunks_.erase(chunks_.begin());
}

// ---- sender -------------------------------------------------------------------------------

IknpSender::IknpSender() : delta_(random_block()) { delta_.lo |= 1; }

std::vector<uint8_t> IknpSender::base_reply(const uint8_t* a_msg, size_t len) {
  if (ready()) throw std::logic_error("IKNP sender: base OTs already done (one setup per session)");
  uint8_t s[kKappa];
  for (int i = 0; i < kKappa; ++i) s[i] = bit_of(delta_, i);
  std::vector<Block> keys(kKappa);
  std::vector<uint8_t> reply = base_receive(a_msg, len, s, kKappa, keys.data());
  prg_ = keyed(keys);
  std::vector<uint8_t> a(a_msg, a_msg + len);
  sid_ = session_id_of(a, reply.data(), reply.size());
  return reply;
}

void IknpSender::extend(const uint8_t* u, size_t len, size_t n) {
  if (!ready()) throw std::logic_error("IKNP sender: run the base OTs first");
  const size_t nb = (n + kKappa - 1) / kKappa;
  if (len != static_cast<size_t>(kKappa) * nb * 16)
    throw std::invalid_argument("IKNP: the receiver's message for " + std::to_string(n) + " OTs must be " +
                                std::to_string(kKappa * nb * 16) + " bytes, got " + std::to_string(len));
  std::vector<Block> q(static_cast<size_t>(kKappa) * nb);
  const Block* U = reinterpret_cast<const Block*>(u);  // x86: unaligned Block loads are fine
  const uint64_t first = blocks_;
  parallel_for(kKappa, 8, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      column(prg_[i], first, nb, q.data() + i * nb);
      if (bit_of(delta_, static_cast<int>(i)))
        for (size_t j = 0; j < nb; ++j) {
          Block uj;
          std::memcpy(&uj, U + i * nb + j, 16);
          q[i * nb + j] ^= uj;
        }
    }
  });
  const size_t old = rows_.size();
  rows_.resize(old + n);
  transpose_tiles(q.data(), nb, n, rows_.data() + old);
  blocks_ += nb;
  extended_ += n;
}

void IknpSender::take(uint64_t start, size_t n, Block* rows) {
  if (start != consumed_)
    throw std::invalid_argument("OT correlations from index " + std::to_string(start) +
                                " requested, but the next unused one is " + std::to_string(consumed_) +
                                " (each OT is used once, in order)");
  if (n > extended_ - consumed_)
    throw std::invalid_argument("only " + std::to_string(extended_ - consumed_) + " unused OTs left, " +
                                std::to_string(n) + " needed: extend first");
  std::memcpy(rows, rows_.data() + (start - row_base_), n * sizeof(Block));
  // Consumed rows are wiped, then dropped once they are the larger part of the pool.
  std::memset(static_cast<void*>(rows_.data() + (start - row_base_)), 0, n * sizeof(Block));
  consumed_ += n;
  const uint64_t drop = consumed_ - row_base_;
  if (drop > (1u << 14) && drop * 2 > rows_.size()) {
    rows_.erase(rows_.begin(), rows_.begin() + static_cast<std::ptrdiff_t>(drop));
    row_base_ = consumed_;
  }
}

}  // namespace pi_native::ot
