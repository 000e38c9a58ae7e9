// Little-endian loads and stores of fixed-width integers at unaligned byte addresses: how key
// blobs are (de)serialized. memcpy compiles to one move on x86-64 and is alignment-safe.
#pragma once

#include <cstdint>
#include <cstring>

namespace pi_native::bytes {

inline uint64_t ld64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline void st64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint32_t ld32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void st32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

}  // namespace pi_native::bytes
