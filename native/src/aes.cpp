#include "pi_native/aes.hpp"

#include <cstring>
#include <stdexcept>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PI_X86 1
#endif

namespace pi_native {
namespace {

constexpr uint8_t kSbox[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
    0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
    0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
    0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
    0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
    0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
    0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
    0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
    0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
    0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
    0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
    0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
    0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
    0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
    0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
    0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16};

inline uint8_t xtime(uint8_t x) { return static_cast<uint8_t>((x << 1) ^ ((x >> 7) * 0x1b)); }

void expand_key(const uint8_t key[16], uint8_t rk[176]) {
  std::memcpy(rk, key, 16);
  uint8_t rcon = 1;
  for (int i = 16; i < 176; i += 4) {
    uint8_t t[4] = {rk[i - 4], rk[i - 3], rk[i - 2], rk[i - 1]};
    if (i % 16 == 0) {  // RotWord, SubWord, Rcon
      const uint8_t t0 = t[0];
      t[0] = static_cast<uint8_t>(kSbox[t[1]] ^ rcon);
      t[1] = kSbox[t[2]];
      t[2] = kSbox[t[3]];
      t[3] = kSbox[t0];
      rcon = xtime(rcon);
    }
    for (int j = 0; j < 4; ++j) rk[i + j] = static_cast<uint8_t>(rk[i - 16 + j] ^ t[j]);
  }
}

// Byte-oriented AES: slow but obviously FIPS-197, used where AES-NI is absent.
void encrypt_portable(const uint8_t rk[176], const uint8_t in[16], uint8_t out[16]) {
  uint8_t s[16];
  for (int i = 0; i < 16; ++i) s[i] = static_cast<uint8_t>(in[i] ^ rk[i]);
  for (int round = 1; round <= 10; ++round) {
    uint8_t t[16];
    // SubBytes + ShiftRows (state is column-major: s[4*c + r]).
    for (int c = 0; c < 4; ++c)
      for (int r = 0; r < 4; ++r) t[4 * c + r] = kSbox[s[4 * ((c + r) & 3) + r]];
    if (round != 10) {  // MixColumns
      for (int c = 0; c < 4; ++c) {
        uint8_t* col = t + 4 * c;
        const uint8_t a0 = col[0], a1 = col[1], a2 = col[2], a3 = col[3];
        const uint8_t all = static_cast<uint8_t>(a0 ^ a1 ^ a2 ^ a3);
        col[0] = static_cast<uint8_t>(a0 ^ all ^ xtime(static_cast<uint8_t>(a0 ^ a1)));
        col[1] = static_cast<uint8_t>(a1 ^ all ^ xtime(static_cast<uint8_t>(a1 ^ a2)));
        col[2] = static_cast<uint8_t>(a2 ^ all ^ xtime(static_cast<uint8_t>(a2 ^ a3)));
        col[3] = static_cast<uint8_t>(a3 ^ all ^ xtime(static_cast<uint8_t>(a3 ^ a0)));
      }
    }
    for (int i = 0; i < 16; ++i) s[i] = static_cast<uint8_t>(t[i] ^ rk[16 * round + i]);
  }
  std::memcpy(out, s, 16);
}

#ifdef PI_X86
// Eight independent blocks in flight hide the AESENC latency.
__attribute__((target("aes,sse2"))) void encrypt_aesni(const uint8_t* rkb, const Block* in,
                                                        Block* out, size_t n, bool mmo) {
  __m128i rk[11];
  for (int i = 0; i < 11; ++i)
    rk[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rkb + 16 * i));
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i x[8], b[8];
    for (int j = 0; j < 8; ++j) {
      x[j] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i + j));
      b[j] = _mm_xor_si128(x[j], rk[0]);
    }
    for (int r = 1; r < 10; ++r)
      for (int j = 0; j < 8; ++j) b[j] = _mm_aesenc_si128(b[j], rk[r]);
    for (int j = 0; j < 8; ++j) {
      b[j] = _mm_aesenclast_si128(b[j], rk[10]);
      if (mmo) b[j] = _mm_xor_si128(b[j], x[j]);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + j), b[j]);
    }
  }
  for (; i < n; ++i) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    __m128i b = _mm_xor_si128(x, rk[0]);
    for (int r = 1; r < 10; ++r) b = _mm_aesenc_si128(b, rk[r]);
    b = _mm_aesenclast_si128(b, rk[10]);
    if (mmo) b = _mm_xor_si128(b, x);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), b);
  }
}
#endif

}  // namespace

bool cpu_has_aesni() {
#ifdef PI_X86
  static const bool has = __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse2");
  return has;
#else
  return false;
#endif
}

Aes128::Aes128(const uint8_t key[16], AesBackend backend) {
  expand_key(key, rk_);
  switch (backend) {
    case AesBackend::Auto: aesni_ = cpu_has_aesni(); break;
    case AesBackend::Portable: aesni_ = false; break;
    case AesBackend::AesNi:
      if (!cpu_has_aesni()) throw std::runtime_error("AES-NI requested but this CPU lacks it");
      aesni_ = true;
      break;
  }
}

void Aes128::encrypt(const Block* in, Block* out, size_t n) const {
#ifdef PI_X86
  if (aesni_) { encrypt_aesni(rk_, in, out, n, false); return; }
#endif
  for (size_t i = 0; i < n; ++i)
    encrypt_portable(rk_, reinterpret_cast<const uint8_t*>(in + i), reinterpret_cast<uint8_t*>(out + i));
}

void Aes128::mmo(Block* io, size_t n) const {
#ifdef PI_X86
  if (aesni_) { encrypt_aesni(rk_, io, io, n, true); return; }
#endif
  for (size_t i = 0; i < n; ++i) {
    const Block x = io[i];
    encrypt_portable(rk_, reinterpret_cast<const uint8_t*>(&x), reinterpret_cast<uint8_t*>(io + i));
    io[i] ^= x;
  }
}

const Aes128& fixed_key_aes() {
  static const uint8_t key[16] = {0x24, 0x3f, 0x6a, 0x88, 0x85, 0xa3, 0x08, 0xd3,
                                  0x13, 0x19, 0x8a, 0x2e, 0x03, 0x70, 0x73, 0x44};
  static const Aes128 aes(key);
  return aes;
}

void aes_ctr(const Aes128& aes, Block nonce, Block* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    // 128-bit counter add on little-endian words.
    const uint64_t lo = nonce.lo + i;
    out[i] = {lo, nonce.hi + (lo < nonce.lo ? 1u : 0u)};
  }
  aes.encrypt(out, out, n);
}

}  // namespace pi_native
