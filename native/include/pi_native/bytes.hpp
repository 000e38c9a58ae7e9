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

// The low nb (1..8) bytes of a word: ring elements of Z_(2^l) stored in ceil(l / 8) bytes. A
// switch of fixed-size copies (each one or two moves), never a read past the nb bytes.
inline uint64_t ldn(const uint8_t* p, int nb) {
  uint64_t v = 0;
  switch (nb) {
    case 8: std::memcpy(&v, p, 8); break;
    case 7: std::memcpy(&v, p, 7); break;
    case 6: std::memcpy(&v, p, 6); break;
    case 5: std::memcpy(&v, p, 5); break;
    case 4: std::memcpy(&v, p, 4); break;
    case 3: std::memcpy(&v, p, 3); break;
    case 2: std::memcpy(&v, p, 2); break;
    default: std::memcpy(&v, p, 1); break;
  }
  return v;
}
inline void stn(uint8_t* p, uint64_t v, int nb) {
  switch (nb) {
    case 8: std::memcpy(p, &v, 8); break;
    case 7: std::memcpy(p, &v, 7); break;
    case 6: std::memcpy(p, &v, 6); break;
    case 5: std::memcpy(p, &v, 5); break;
    case 4: std::memcpy(p, &v, 4); break;
    case 3: std::memcpy(p, &v, 3); break;
    case 2: std::memcpy(p, &v, 2); break;
    default: std::memcpy(p, &v, 1); break;
  }
}

}  // namespace pi_native::bytes
