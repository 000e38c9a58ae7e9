// DCF key generation and evaluation (recipe: docs/fss.md, after Boyle et al. 2021 / LLAMA).
#include "pi_native/dcf.hpp"

#include <algorithm>
#include <cstring>

#include "pi_native/bytes.hpp"

namespace pi_native::fss {
namespace {

using bytes::ld64;
using bytes::ld_tail;
using bytes::st64;
using bytes::stn;
inline Block ldb(const uint8_t* p) {
  Block b;
  b.lo = ld64(p);
  b.hi = ld64(p + 8);
  return b;
}
inline void stb(uint8_t* p, const Block& b) {
  st64(p, b.lo);
  st64(p + 8, b.hi);
}
inline uint64_t neg_if(uint64_t t, uint64_t v) { return t ? uint64_t{0} - v : v; }
inline Block seed_of(const Block& b) { return Block{b.lo & kSeedMask, b.hi}; }
inline Block and_mask(const Block& b, uint64_t m) { return Block{b.lo & m, b.hi & m}; }
inline int bit_at(uint64_t x, int bits, int level) { return static_cast<int>((x >> (bits - 1 - level)) & 1); }

// Bits [0, count) set, count <= 128.
inline Block low_mask128(int count) {
  Block m;
  if (count >= 128) return Block{~uint64_t{0}, ~uint64_t{0}};
  if (count >= 64) {
    m.lo = ~uint64_t{0};
    m.hi = count == 64 ? 0 : (~uint64_t{0} >> (128 - count));
  } else {
    m.lo = count == 0 ? 0 : (~uint64_t{0} >> (64 - count));
    m.hi = 0;
  }
  return m;
}
inline uint64_t bit128(const Block& b, int j) { return j < 64 ? (b.lo >> j) & 1 : (b.hi >> (j - 64)) & 1; }

// One node expansion of the ring DCF for one party (both children).
struct RingNode {
  Block s[2];
  uint64_t t[2];
  uint64_t v[2][2];
};

void expand_ring_pair(int words, const Block& sa, const Block& sb, RingNode& a, RingNode& b) {
  const int nb = words == 2 ? 4 : 3;
  Block buf[8];
  for (int j = 0; j < nb; ++j) {
    buf[j] = sa ^ tweak(static_cast<uint64_t>(j));
    buf[nb + j] = sb ^ tweak(static_cast<uint64_t>(j));
  }
  fixed_key_aes().mmo(buf, static_cast<size_t>(2 * nb));
  RingNode* nodes[2] = {&a, &b};
  for (int p = 0; p < 2; ++p) {
    const Block* o = buf + p * nb;
    RingNode& e = *nodes[p];
    for (int side = 0; side < 2; ++side) {
      e.t[side] = o[side].lo & 1;
      e.s[side] = seed_of(o[side]);
    }
    if (words == 1) {
      e.v[0][0] = o[2].lo;
      e.v[1][0] = o[2].hi;
      e.v[0][1] = e.v[1][1] = 0;
    } else {
      e.v[0][0] = o[2].lo;
      e.v[0][1] = o[2].hi;
      e.v[1][0] = o[3].lo;
      e.v[1][1] = o[3].hi;
    }
  }
}

template <int W>
void dcf_eval_impl(int party, int bits, const uint8_t* keys, size_t stride, const uint64_t* x,
                   uint64_t* out, size_t n, int vb) {
  constexpr int G = 8;
  const size_t rec = 16 + static_cast<size_t>(vb) * W;
  const Aes128& aes = fixed_key_aes();
  const Block tw_seed[2] = {tweak(0), tweak(1)};
  const Block tw_val[2] = {tweak(2), tweak(W == 2 ? 3 : 2)};
  const uint64_t sign = party ? ~uint64_t{0} : 0;
  for (size_t base = 0; base < n; base += G) {
    const int g = static_cast<int>(std::min<size_t>(G, n - base));
    Block s[G], buf[2 * G];
    uint64_t t[G], acc[G][W], xv[G];
    const uint8_t* kp[G];
    for (int j = 0; j < g; ++j) {
      kp[j] = keys + (base + j) * stride;
      s[j] = seed_of(ldb(kp[j]));
      t[j] = static_cast<uint64_t>(party & 1);
      for (int w = 0; w < W; ++w) acc[j][w] = 0;
      xv[j] = x[base + j];
    }
    for (int i = 0; i < bits; ++i) {
      const int sh = bits - 1 - i;
      for (int j = 0; j < g; ++j) {
        const int b = static_cast<int>((xv[j] >> sh) & 1);
        buf[2 * j] = s[j] ^ tw_seed[b];
        buf[2 * j + 1] = s[j] ^ tw_val[b];
      }
      aes.mmo(buf, static_cast<size_t>(2 * g));
      const size_t off = 16 + static_cast<size_t>(i) * rec;
      for (int j = 0; j < g; ++j) {
        const uint8_t* r = kp[j] + off;
        const uint64_t b = (xv[j] >> sh) & 1;
        const uint64_t tm = uint64_t{0} - t[j];
        const uint64_t cwlo = ld64(r), cwhi = ld64(r + 8);
        const Block& nb = buf[2 * j];
        const Block& vbl = buf[2 * j + 1];
        t[j] = (nb.lo & 1) ^ ((cwlo >> b) & t[j]);
        s[j].lo = (nb.lo ^ (cwlo & tm)) & kSeedMask;
        s[j].hi = nb.hi ^ (cwhi & tm);
        // Value words of vb bytes, each read as the top of the 8 bytes that end with it (the
        // level's 16-byte seed word precedes them).
        const uint64_t v0 = ld_tail(r + 16, vb);
        const uint64_t v1 = W == 2 ? ld_tail(r + 16 + vb, vb) : 0;
        if constexpr (W == 1) {
          acc[j][0] += (b ? vbl.hi : vbl.lo) + (v0 & tm);
        } else {
          acc[j][0] += vbl.lo + (v0 & tm);
          acc[j][1] += vbl.hi + (v1 & tm);
        }
      }
    }
    for (int j = 0; j < g; ++j) buf[j] = s[j] ^ tweak(4);
    aes.mmo(buf, static_cast<size_t>(g));
    const size_t fin = 16 + static_cast<size_t>(bits) * rec;
    for (int j = 0; j < g; ++j) {
      const uint64_t tm = uint64_t{0} - t[j];
      const uint64_t conv[2] = {buf[j].lo, buf[j].hi};
      for (int w = 0; w < W; ++w) {
        const uint64_t v = acc[j][w] + conv[w] + (ld_tail(kp[j] + fin + static_cast<size_t>(vb) * w, vb) & tm);
        out[(base + j) * W + w] = (v ^ sign) - sign;  // party 1 negates: y1 = -sum
      }
    }
  }
}

}  // namespace

size_t dcf_key_bytes(int bits, int words, int vbytes) {
  const size_t v = static_cast<size_t>(vbytes) * static_cast<size_t>(words);
  return 16 + static_cast<size_t>(bits) * (16 + v) + v;
}

void dcf_gen(int bits, int words, uint64_t alpha, const uint64_t* beta, Block s0, Block s1, uint8_t* k0,
             uint8_t* k1, int vbytes) {
  s0 = seed_of(s0);
  s1 = seed_of(s1);
  stb(k0, s0);
  stb(k1, s1);
  uint64_t t0 = 0, t1 = 1;
  uint64_t V[2] = {0, 0};
  const size_t rec = 16 + static_cast<size_t>(vbytes) * static_cast<size_t>(words);
  RingNode e0, e1;
  for (int i = 0; i < bits; ++i) {
    const int a = bit_at(alpha, bits, i);
    const int keep = a, lose = 1 - a;
    expand_ring_pair(words, s0, s1, e0, e1);
    const Block scw = e0.s[lose] ^ e1.s[lose];
    uint64_t vcw[2] = {0, 0};
    for (int w = 0; w < words; ++w) {
      vcw[w] = neg_if(t1, e1.v[lose][w] - e0.v[lose][w] - V[w]) + (a ? neg_if(t1, beta[w]) : 0);
      V[w] = V[w] - e1.v[keep][w] + e0.v[keep][w] + neg_if(t1, vcw[w]);
    }
    const uint64_t tcw[2] = {e0.t[0] ^ e1.t[0] ^ static_cast<uint64_t>(a) ^ 1,
                             e0.t[1] ^ e1.t[1] ^ static_cast<uint64_t>(a)};
    const size_t off = 16 + static_cast<size_t>(i) * rec;
    const Block packed{scw.lo | tcw[0] | (tcw[1] << 1), scw.hi};
    for (uint8_t* k : {k0, k1}) {
      stb(k + off, packed);
      for (int w = 0; w < words; ++w) stn(k + off + 16 + static_cast<size_t>(vbytes) * w, vcw[w], vbytes);
    }
    const uint64_t m0 = uint64_t{0} - t0, m1 = uint64_t{0} - t1;
    s0 = e0.s[keep] ^ and_mask(scw, m0);
    s1 = e1.s[keep] ^ and_mask(scw, m1);
    t0 = e0.t[keep] ^ (t0 & tcw[keep]);
    t1 = e1.t[keep] ^ (t1 & tcw[keep]);
  }
  Block conv[2] = {s0 ^ tweak(4), s1 ^ tweak(4)};
  fixed_key_aes().mmo(conv, 2);
  const uint64_t c0[2] = {conv[0].lo, conv[0].hi}, c1[2] = {conv[1].lo, conv[1].hi};
  const size_t fin = 16 + static_cast<size_t>(bits) * rec;
  for (int w = 0; w < words; ++w) {
    const uint64_t cw = neg_if(t1, c1[w] - c0[w] - V[w]);
    stn(k0 + fin + static_cast<size_t>(vbytes) * w, cw, vbytes);
    stn(k1 + fin + static_cast<size_t>(vbytes) * w, cw, vbytes);
  }
}

void dcf_eval(int party, int bits, int words, const uint8_t* keys, size_t stride, const uint64_t* x,
              uint64_t* out, size_t n, int vbytes) {
  const size_t done = dcf_eval_simd(party, bits, words, keys, stride, x, out, n, vbytes);  // whole groups
  keys += done * stride;
  x += done;
  out += done * static_cast<size_t>(words);
  n -= done;
  if (words == 1)
    dcf_eval_impl<1>(party, bits, keys, stride, x, out, n, vbytes);
  else
    dcf_eval_impl<2>(party, bits, keys, stride, x, out, n, vbytes);
}

// Bit DCF --------------------------------------------------------------------------------------

int dcf_bit_leaf_bits(int bits) { return std::min(bits, 7); }

size_t dcf_bit_key_bytes(int bits) {
  const int depth = bits - dcf_bit_leaf_bits(bits);
  return 16 + 16 * static_cast<size_t>(depth) + 8 + 16;
}

void dcf_bit_gen(int bits, uint64_t alpha, Block s0, Block s1, uint8_t* k0, uint8_t* k1) {
  const int nu = dcf_bit_leaf_bits(bits), depth = bits - nu;
  s0 = seed_of(s0);
  s1 = seed_of(s1);
  stb(k0, s0);
  stb(k1, s1);
  uint64_t t0 = 0, t1 = 1, V = 0, vbits = 0;
  for (int i = 0; i < depth; ++i) {
    const int a = bit_at(alpha, bits, i);
    const int keep = a, lose = 1 - a;
    Block buf[4] = {s0 ^ tweak(0), s0 ^ tweak(1), s1 ^ tweak(0), s1 ^ tweak(1)};
    fixed_key_aes().mmo(buf, 4);
    Block cs[2][2];
    uint64_t ct[2][2], cv[2][2];
    for (int p = 0; p < 2; ++p)
      for (int side = 0; side < 2; ++side) {
        const Block& o = buf[2 * p + side];
        cs[p][side] = seed_of(o);
        ct[p][side] = o.lo & 1;
        cv[p][side] = (o.lo >> 1) & 1;
      }
    const Block scw = cs[0][lose] ^ cs[1][lose];
    const uint64_t vcw = cv[0][lose] ^ cv[1][lose] ^ V ^ static_cast<uint64_t>(a);
    V ^= cv[0][keep] ^ cv[1][keep] ^ vcw;
    const uint64_t tcw[2] = {ct[0][0] ^ ct[1][0] ^ static_cast<uint64_t>(a) ^ 1,
                             ct[0][1] ^ ct[1][1] ^ static_cast<uint64_t>(a)};
    const Block packed{scw.lo | tcw[0] | (tcw[1] << 1), scw.hi};
    stb(k0 + 16 + 16 * static_cast<size_t>(i), packed);
    stb(k1 + 16 + 16 * static_cast<size_t>(i), packed);
    vbits |= vcw << i;
    const uint64_t m0 = uint64_t{0} - t0, m1 = uint64_t{0} - t1;
    s0 = cs[0][keep] ^ and_mask(scw, m0);
    s1 = cs[1][keep] ^ and_mask(scw, m1);
    t0 = ct[0][keep] ^ (t0 & tcw[keep]);
    t1 = ct[1][keep] ^ (t1 & tcw[keep]);
  }
  const size_t vb_off = 16 + 16 * static_cast<size_t>(depth);
  st64(k0 + vb_off, vbits);
  st64(k1 + vb_off, vbits);
  Block conv[2] = {s0 ^ tweak(2), s1 ^ tweak(2)};
  fixed_key_aes().mmo(conv, 2);
  const uint64_t alow = nu == 0 ? 0 : (alpha & ((uint64_t{1} << nu) - 1));
  const Block full = low_mask128(1 << nu);
  Block table = low_mask128(static_cast<int>(alow));  // entry j = [j < alpha_low]
  if (V) table ^= full;
  Block cw = conv[0] ^ conv[1] ^ table;
  cw = Block{cw.lo & full.lo, cw.hi & full.hi};
  stb(k0 + vb_off + 8, cw);
  stb(k1 + vb_off + 8, cw);
}

void dcf_bit_eval(int party, int bits, const uint8_t* keys, size_t stride, const uint64_t* x, uint8_t* out,
                  size_t n) {
  constexpr int G = 16;
  const int nu = dcf_bit_leaf_bits(bits), depth = bits - nu;
  const Aes128& aes = fixed_key_aes();
  const Block tw[2] = {tweak(0), tweak(1)};
  const size_t vb_off = 16 + 16 * static_cast<size_t>(depth);
  const uint64_t leaf_mask = nu == 0 ? 0 : ((uint64_t{1} << nu) - 1);
  for (size_t base = 0; base < n; base += G) {
    const int g = static_cast<int>(std::min<size_t>(G, n - base));
    Block s[G], buf[G];
    uint64_t t[G], acc[G], xv[G], vbits[G];
    const uint8_t* kp[G];
    for (int j = 0; j < g; ++j) {
      kp[j] = keys + (base + j) * stride;
      s[j] = seed_of(ldb(kp[j]));
      t[j] = static_cast<uint64_t>(party & 1);
      acc[j] = 0;
      xv[j] = x[base + j];
      vbits[j] = ld64(kp[j] + vb_off);
    }
    for (int i = 0; i < depth; ++i) {
      const int sh = bits - 1 - i;
      for (int j = 0; j < g; ++j) buf[j] = s[j] ^ tw[(xv[j] >> sh) & 1];
      aes.mmo(buf, static_cast<size_t>(g));
      const size_t off = 16 + 16 * static_cast<size_t>(i);
      for (int j = 0; j < g; ++j) {
        const uint8_t* r = kp[j] + off;
        const uint64_t b = (xv[j] >> sh) & 1;
        const uint64_t tm = uint64_t{0} - t[j];
        const uint64_t cwlo = ld64(r), cwhi = ld64(r + 8);
        const Block& nb = buf[j];
        acc[j] ^= ((nb.lo >> 1) & 1) ^ ((vbits[j] >> i) & t[j]);
        t[j] = (nb.lo & 1) ^ ((cwlo >> b) & t[j]);
        s[j].lo = (nb.lo ^ (cwlo & tm)) & kSeedMask;
        s[j].hi = nb.hi ^ (cwhi & tm);
      }
    }
    for (int j = 0; j < g; ++j) buf[j] = s[j] ^ tweak(2);
    aes.mmo(buf, static_cast<size_t>(g));
    for (int j = 0; j < g; ++j) {
      const int leaf = static_cast<int>(xv[j] & leaf_mask);
      const Block cw = ldb(kp[j] + vb_off + 8);
      const uint64_t v = acc[j] ^ bit128(buf[j], leaf) ^ (bit128(cw, leaf) & t[j]);
      out[base + j] = static_cast<uint8_t>(v & 1);
    }
  }
}

}  // namespace pi_native::fss
