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
  // For each group of 16 columns: a 16×16 byte transpose (four unpack rounds) gives, per byte
  // index rb, the vector of byte rb of the 16 columns (rows 8rb..8rb+7); movemask then reads
  // bit 7 of each byte, i.e. one row's 16 bits, and a shift brings up the next bit.
  for (int g = 0; g < 8; ++g) {
    __m128i x[16], y[16];
    for (int c = 0; c < 16; ++c) x[c] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + (16 * g + c) * 16));
    for (int i = 0; i < 8; ++i) {  // word j of y[i] / y[i+8]: (x[2i][j], x[2i+1][j]), j < 8 / j >= 8
      y[i] = _mm_unpacklo_epi8(x[2 * i], x[2 * i + 1]);
      y[i + 8] = _mm_unpackhi_epi8(x[2 * i], x[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h)  // dword j of x[8h + 4u + i]: columns 4i..4i+3, byte 8h + 4u + j
      for (int i = 0; i < 4; ++i) {
        x[8 * h + i] = _mm_unpacklo_epi16(y[8 * h + 2 * i], y[8 * h + 2 * i + 1]);
        x[8 * h + i + 4] = _mm_unpackhi_epi16(y[8 * h + 2 * i], y[8 * h + 2 * i + 1]);
      }
    for (int q = 0; q < 4; ++q) {  // qword j of y[4q + r]: 8 columns (r >> 1 picks the half), byte 4q + 2(r & 1) + j
      y[4 * q + 0] = _mm_unpacklo_epi32(x[4 * q + 0], x[4 * q + 1]);
      y[4 * q + 1] = _mm_unpackhi_epi32(x[4 * q + 0], x[4 * q + 1]);
      y[4 * q + 2] = _mm_unpacklo_epi32(x[4 * q + 2], x[4 * q + 3]);
      y[4 * q + 3] = _mm_unpackhi_epi32(x[4 * q + 2], x[4 * q + 3]);
    }
    // y[4q + p] / y[4q + p + 2]: columns 0..7 / 8..15 of bytes 4q + 2p (low qword) and
    // 4q + 2p + 1 (high qword); one more unpack joins the two halves into one byte index.
    for (int q = 0; q < 4; ++q)
      for (int p = 0; p < 2; ++p) {
        const __m128i v[2] = {_mm_unpacklo_epi64(y[4 * q + p], y[4 * q + p + 2]),
                              _mm_unpackhi_epi64(y[4 * q + p], y[4 * q + p + 2])};
        for (int h = 0; h < 2; ++h) {
          const int byte = 4 * q + 2 * p + h;
          __m128i m = v[h];
          for (int b = 7; b >= 0; --b) {
            const uint16_t bits = static_cast<uint16_t>(_mm_movemask_epi8(m));
            std::memcpy(out + (8 * byte + b) * 16 + 2 * g, &bits, 2);
            m = _mm_slli_epi64(m, 1);
          }
        }
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
  std::lock_guard<std::mutex> lock(mu_);
  if (ready()) throw std::logic_error("IKNP receiver: base OTs already done (one setup per session)");
  std::vector<Block> k0(kKappa), k1(kKappa);
  base_.finish(msg, len, kKappa, k0.data(), k1.data());
  prg0_ = keyed(k0);
  prg1_ = keyed(k1);
  sid_ = session_id_of(base_.first_message(), msg, len);
}

std::vector<uint8_t> IknpReceiver::extend(const uint8_t* choices, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
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
  // Choice bits are kept packed (1 bit per OT until it is used): part of what the evaluator stores.
  const uint64_t at = extended_ - choice_base_;
  choices_.resize((at + n + 63) / 64, 0);
  for (size_t j = 0; j < n; ++j)
    if (choices[j]) choices_[(at + j) / 64] |= uint64_t{1} << ((at + j) % 64);
  blocks_ += nb;
  extended_ += n;
  return u;
}

// Rows are rebuilt a few tiles at a time (keystream of every column for those tiles, in cache,
// then transposed straight into the output), so nothing of the size of the batch is buffered.
void IknpReceiver::rows_of_chunk(const Chunk& c, uint64_t from, uint64_t n, Block* rows) const {
  constexpr uint64_t kGroup = 8;
  const uint64_t local = from - c.ot_start;
  const uint64_t q0 = local / kKappa, q1 = (local + n - 1) / kKappa, nt = q1 - q0 + 1;
  const uint64_t groups = (nt + kGroup - 1) / kGroup;
  parallel_for(groups, 4, [&](size_t gb, size_t ge) {
    std::vector<Block> cols(kKappa * kGroup);
    Block in[kKappa], tile[kKappa];
    for (size_t g = gb; g < ge; ++g) {
      const uint64_t t0 = q0 + g * kGroup, nt_g = std::min<uint64_t>(kGroup, q1 + 1 - t0);
      for (int i = 0; i < kKappa; ++i) column(prg0_[i], c.block_start + t0, nt_g, cols.data() + i * kGroup);
      for (uint64_t t = 0; t < nt_g; ++t) {
        for (int i = 0; i < kKappa; ++i) in[i] = cols[i * kGroup + t];
        // rows of tile t0 + t that fall inside [local, local + n)
        const uint64_t first = (t0 + t) * kKappa, lo = std::max(first, local), hi = std::min(first + kKappa, local + n);
        if (lo == first && hi == first + kKappa) {
          transpose128(in, rows + (first - local));
        } else {
          transpose128(in, tile);
          std::memcpy(rows + (lo - local), tile + (lo - first), (hi - lo) * sizeof(Block));
        }
      }
    }
  });
}

void IknpReceiver::take(uint64_t start, size_t n, Block* rows, uint8_t* choices) {
  std::lock_guard<std::mutex> lock(mu_);
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
  if (choices)
    for (size_t j = 0; j < n; ++j) {
      const uint64_t i = start - choice_base_ + j;
      choices[j] = static_cast<uint8_t>((choices_[i / 64] >> (i % 64)) & 1);
    }
  consumed_ += n;
  // Forget what is consumed (choice bits, whole words; chunks wholly behind the cursor).
  const uint64_t drop = (consumed_ - choice_base_) / 64;
  if (drop > 1024 && drop * 2 > choices_.size()) {
    choices_.erase(choices_.begin(), choices_.begin() + static_cast<std::ptrdiff_t>(drop));
    choice_base_ += 64 * drop;
  }
  while (!chunks_.empty() && chunks_.front().ot_start + chunks_.front().n <= consumed_) chunks_.erase(chunks_.begin());
}

// ---- sender -------------------------------------------------------------------------------

IknpSender::IknpSender() : delta_(random_block()) { delta_.lo |= 1; }

std::vector<uint8_t> IknpSender::base_reply(const uint8_t* a_msg, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
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
  std::lock_guard<std::mutex> lock(mu_);
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
  std::lock_guard<std::mutex> lock(mu_);
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
