// Bit packing of the OT products' correction messages (see ot_mul.hpp).
#include "pi_native/ot_mul.hpp"

#include <cstring>
#include <utility>

namespace pi_native::ot_mul {
namespace {

inline uint64_t low_mask(unsigned w) { return w >= 64 ? ~uint64_t{0} : (uint64_t{1} << w) - 1; }

}  // namespace

size_t packed_bytes(size_t n, const uint8_t* widths, size_t k) {
  size_t row = 0;
  for (size_t j = 0; j < k; ++j) row += widths[j];
  return (n * row + 7) / 8;
}

// A 64-bit accumulator: each value is ORed in at the current bit offset, whole words are
// flushed little-endian; the tail keeps its zero padding.
void pack_bits(const uint64_t* values, size_t n, const uint8_t* widths, size_t k, uint8_t* out) {
  const size_t total = packed_bytes(n, widths, k);
  uint64_t acc = 0;
  unsigned used = 0;
  size_t pos = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < k; ++j) {
      const unsigned w = widths[j];
      if (w == 0) continue;
      const uint64_t v = values[i * k + j] & low_mask(w);
      acc |= v << used;  // used < 64
      if (used + w >= 64) {
        std::memcpy(out + pos, &acc, 8);
        pos += 8;
        acc = used ? v >> (64 - used) : 0;
        used = used + w - 64;
      } else {
        used += w;
      }
    }
  for (unsigned b = 0; pos < total; ++pos, b += 8) out[pos] = static_cast<uint8_t>(acc >> b);
}

bool unpack_bits(const uint8_t* in, size_t n, const uint8_t* widths, size_t k, uint64_t* values) {
  const size_t total = packed_bytes(n, widths, k);
  size_t pos = 0;
  uint64_t acc = 0;  // bits not yet consumed, LSB first
  unsigned have = 0;
  auto refill = [&]() {  // reads up to 8 bytes as the next word
    uint64_t word = 0;
    const size_t take = total - pos < 8 ? total - pos : 8;
    std::memcpy(&word, in + pos, take);
    pos += take;
    return std::make_pair(word, static_cast<unsigned>(8 * take));
  };
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < k; ++j) {
      const unsigned w = widths[j];
      uint64_t v = 0;
      if (w) {
        if (have >= w) {
          v = acc & low_mask(w);
          acc = w >= 64 ? 0 : acc >> w;
          have -= w;
        } else {
          auto [word, got] = refill();
          const unsigned need = w - have;  // 1..64, got >= need for well-sized input
          v = (acc | (have ? word << have : word)) & low_mask(w);
          acc = need >= 64 ? 0 : word >> need;
          have = got - need;
        }
      }
      values[i * k + j] = v;
    }
  // What is left of the last word and any byte after it is padding: all zero.
  if (have && acc) return false;
  for (; pos < total; ++pos)
    if (in[pos]) return false;
  return true;
}

}  // namespace pi_native::ot_mul
