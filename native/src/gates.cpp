// FSS gates on Z_(2^64) in the dealer model. The algebra of every gate is derived in
// docs/fss.md ("Gate constructions"); variable names follow it.
#include "pi_native/gates.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "pi_native/aes.hpp"
#include "pi_native/bytes.hpp"
#include "pi_native/dcf.hpp"
#include "pi_native/parallel.hpp"

namespace pi_native::fss {
namespace {

using bytes::ld32;
using bytes::ld64;
using bytes::st32;
using bytes::st64;
using bytes::ldn;
using bytes::stn;
inline uint64_t low_mask(int bits) { return bits >= 64 ? ~uint64_t{0} : ((uint64_t{1} << bits) - 1); }
inline uint64_t pow2(int e) { return e >= 64 ? 0 : uint64_t{1} << e; }  // 2^e mod 2^64

constexpr size_t kEvalBatch = 256;  // elements per DCF call inside a thread's chunk
constexpr size_t kGrain = 1024;     // smallest chunk handed to a thread

// Input width n (docs/fss.md, "Input bit width n"). Relu, trunc and Circa's select work on the
// ring of w = n + 1 bits (n < 64) or 64 bits (n = 64), where -2^(w-2) <= x < 2^(w-2) leaves one
// bit of headroom; the exact ReLU at n = 64 without shift needs none (h = 0), because there the
// wrap term 2^64 * d * w vanishes.
inline int headroom_width(int n) { return n >= 64 ? 64 : n + 1; }
inline int relu_headroom(const GateParams& p) { return p.n >= 64 && p.shift == 0 ? 0 : 1; }
inline int relu_dcf_bits(const GateParams& p) { return headroom_width(p.n) - 1 - relu_headroom(p); }
inline int drelu_dcf_bits(const GateParams& p) { return p.n - 1; }
inline int circa_dcf_bits(const GateParams& p) { return p.n - p.k - 1; }
// Shifts beyond w - 2 are computed as w - 2: under -2^(w-2) <= x < 2^(w-2), x >> s is then the
// same (0 or -1) for every s >= w - 2 (n = 64: shift 63 is computed as 62).
inline int eff_shift(const GateParams& p) { return std::min(p.shift, headroom_width(p.n) - 2); }

size_t gate_dcf_bytes(const GateParams& p) {
  switch (p.gate) {
    case Gate::Relu: return dcf_key_bytes(relu_dcf_bits(p), 2, word_bytes(p));
    case Gate::Drelu: return dcf_key_bytes(drelu_dcf_bits(p), 1, word_bytes(p));
    case Gate::Circa: return dcf_bit_key_bytes(circa_dcf_bits(p));
    case Gate::Dcf: return dcf_key_bytes(p.n, p.words);
    case Gate::DcfBit: return dcf_bit_key_bytes(p.n);
    default: return 0;
  }
}

std::string gate_str(Gate g) { return std::string("'") + gate_name(g) + "'"; }

// Writes an additive sharing of v, each share in nb bytes (party 0's share drawn from the
// element's stream).
inline void put_shared(ElementRng& rng, uint8_t* o0, uint8_t* o1, uint64_t v, int nb) {
  const uint64_t a = rng.word();
  stn(o0, a, nb);
  stn(o1, v - a, nb);
}

}  // namespace

const char* gate_name(Gate g) {
  switch (g) {
    case Gate::Relu: return "relu";
    case Gate::Drelu: return "drelu";
    case Gate::Circa: return "circa";
    case Gate::Trunc: return "trunc";
    case Gate::Square: return "square";
    case Gate::Mul: return "mul";
    case Gate::Dcf: return "dcf";
    case Gate::DcfBit: return "dcf_bit";
  }
  return "unknown";
}

bool gate_from_name(const std::string& name, Gate* out) {
  for (Gate g : {Gate::Relu, Gate::Drelu, Gate::Circa, Gate::Trunc, Gate::Square, Gate::Mul, Gate::Dcf,
                 Gate::DcfBit})
    if (name == gate_name(g)) {
      *out = g;
      return true;
    }
  return false;
}

const char* mode_name(CircaMode m) {
  switch (m) {
    case CircaMode::PosZero: return "poszero";
    case CircaMode::NegPass: return "negpass";
    default: return "none";
  }
}

void validate_params(const GateParams& p) {
  const bool raw = p.gate == Gate::Dcf || p.gate == Gate::DcfBit;
  const std::string g = gate_str(p.gate);
  switch (p.gate) {
    case Gate::Relu: case Gate::Drelu: case Gate::Circa: case Gate::Trunc: case Gate::Square:
    case Gate::Mul: case Gate::Dcf: case Gate::DcfBit: break;
    default: throw std::invalid_argument("unknown gate id " + std::to_string(static_cast<int>(p.gate)));
  }
  if (raw) {
    if (p.n < 1 || p.n > 64)
      throw std::invalid_argument("DCF input bits must be in [1, 64], got " + std::to_string(p.n));
  } else if (p.gate == Gate::Square || p.gate == Gate::Mul) {
    if (p.n != 64)
      throw std::invalid_argument("gate " + g + " works on the full 64-bit ring (n=64), got n=" + std::to_string(p.n));
  } else if (p.n < 2 || p.n > 64) {
    throw std::invalid_argument("gate " + g + ": input bit width n must be in [2, 64] (inputs -2^(n-1) <= x < "
                                "2^(n-1)), got n=" + std::to_string(p.n));
  }
  if (p.gate == Gate::Circa) {
    if (p.k < 0 || p.k > p.n - 2)
      throw std::invalid_argument("circa k (low bits dropped) must be in [0, n-2] = [0, " + std::to_string(p.n - 2) +
                                  "] for n=" + std::to_string(p.n) + ", got " + std::to_string(p.k));
    if (p.mode != CircaMode::PosZero && p.mode != CircaMode::NegPass)
      throw std::invalid_argument("circa mode must be 'poszero' or 'negpass'");
  } else {
    if (p.k != 0) throw std::invalid_argument("parameter k applies to circa only, not " + g);
    if (p.mode != CircaMode::None) throw std::invalid_argument("parameter mode applies to circa only, not " + g);
  }
  if (p.gate == Gate::Relu || p.gate == Gate::Circa || p.gate == Gate::Trunc) {
    if (p.shift < 0 || p.shift > 63)
      throw std::invalid_argument("shift must be in [0, 63], got " + std::to_string(p.shift));
  } else if (p.shift != 0) {
    throw std::invalid_argument("parameter shift does not apply to " + g);
  }
  if (p.gate == Gate::Relu || p.gate == Gate::Drelu || p.gate == Gate::Circa || p.gate == Gate::Trunc) {
    if (p.out_bits < 1 || p.out_bits > 64)
      throw std::invalid_argument("output ring bits must be in [1, 64], got " + std::to_string(p.out_bits));
  } else if (p.out_bits != 64) {
    throw std::invalid_argument("gate " + g + " works on the full 64-bit output ring (out_bits=64)");
  }
  if (p.gate == Gate::Dcf) {
    if (p.words != 1 && p.words != 2)
      throw std::invalid_argument("DCF payload must have 1 or 2 words, got " + std::to_string(p.words));
  } else if (p.words != 0) {
    throw std::invalid_argument("payload words apply to the raw ring DCF only");
  }
}

size_t key_bytes_per_element(const GateParams& p) {
  validate_params(p);
  switch (p.gate) {
    case Gate::Relu: return gate_dcf_bytes(p) + 4 * word_bytes(p);
    case Gate::Drelu: return gate_dcf_bytes(p) + 2 * word_bytes(p);
    case Gate::Circa: return gate_dcf_bytes(p) + 6 * word_bytes(p);
    case Gate::Trunc: return 2 * word_bytes(p);
    case Gate::Square: return 2 * 8;
    case Gate::Mul: return 3 * 8;
    case Gate::Dcf: case Gate::DcfBit: return gate_dcf_bytes(p);
  }
  return 0;
}

int gate_input_bits(const GateParams& p) {
  switch (p.gate) {
    case Gate::Relu: case Gate::Trunc: case Gate::Circa: return headroom_width(p.n);
    case Gate::Drelu: return p.n;
    case Gate::Square: case Gate::Mul: return 64;
    case Gate::Dcf: case Gate::DcfBit: return p.n;
  }
  return 64;
}

OnlineCost online_cost(const GateParams& p) {
  validate_params(p);
  const int w = gate_input_bits(p);
  const double packed = 2.0 * ((w + 7) / 8);  // both parties' shares of xhat, ceil(w / 8) bytes each
  switch (p.gate) {
    case Gate::Relu: case Gate::Drelu: case Gate::Trunc: case Gate::Square: return {packed, 1, w, 2 * w, 16.0};
    case Gate::Mul: return {2 * packed, 1, w, 4 * w, 32.0};
    case Gate::Circa: return {packed + 2.0 / 8.0, 2, w, 2 * w + 2, 16.0 + 2.0 / 8.0};
    default: throw std::invalid_argument("online_cost is defined for gates, not for the raw " + gate_str(p.gate));
  }
}

uint32_t crc32(const uint8_t* data, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= data[i];
    for (int b = 0; b < 8; ++b) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

void write_header(uint8_t* out, const GateParams& p, int party, uint64_t count) {
  std::memset(out, 0, kHeaderBytes);
  std::memcpy(out, "PIFK", 4);
  out[4] = kKeyVersion;
  out[5] = static_cast<uint8_t>(p.gate);
  out[6] = static_cast<uint8_t>(party);
  out[7] = static_cast<uint8_t>(p.n);
  out[8] = static_cast<uint8_t>(p.k);
  out[9] = static_cast<uint8_t>(p.mode);
  out[10] = static_cast<uint8_t>(p.shift);
  out[11] = static_cast<uint8_t>(p.words);
  st32(out + 12, static_cast<uint32_t>(key_bytes_per_element(p)));
  st64(out + 16, count);
  out[24] = static_cast<uint8_t>(p.out_bits);
  st32(out + 28, crc32(out, 28));
}

KeyView parse_keys(const uint8_t* data, size_t len) {
  if (len < kHeaderBytes)
    throw std::invalid_argument("key batch too short: " + std::to_string(len) + " bytes, the header alone is " +
                                std::to_string(kHeaderBytes));
  if (std::memcmp(data, "PIFK", 4) != 0) throw std::invalid_argument("not an FSS key batch (bad magic)");
  if (data[4] != kKeyVersion)
    throw std::invalid_argument("unsupported key batch version " + std::to_string(data[4]) + " (expected " +
                                std::to_string(kKeyVersion) + ")");
  if (crc32(data, 28) != ld32(data + 28)) throw std::invalid_argument("key batch header checksum mismatch (corrupted header)");
  if (data[25] || data[26] || data[27]) throw std::invalid_argument("key batch header: reserved field is not zero");
  KeyView kv;
  kv.params.gate = static_cast<Gate>(data[5]);
  kv.party = data[6];
  kv.params.n = data[7];
  kv.params.k = data[8];
  kv.params.mode = static_cast<CircaMode>(data[9]);
  kv.params.shift = data[10];
  kv.params.words = data[11];
  kv.params.out_bits = data[24];
  if (kv.party > 1) throw std::invalid_argument("key batch header: party must be 0 or 1");
  if (data[9] > 2) throw std::invalid_argument("key batch header: unknown circa mode " + std::to_string(data[9]));
  validate_params(kv.params);
  kv.elem_bytes = key_bytes_per_element(kv.params);
  if (ld32(data + 12) != kv.elem_bytes)
    throw std::invalid_argument("key batch header: per-element size " + std::to_string(ld32(data + 12)) +
                                " does not match the gate's " + std::to_string(kv.elem_bytes));
  kv.count = ld64(data + 16);
  const size_t body = len - kHeaderBytes;
  if (kv.count > body / kv.elem_bytes || kv.count * kv.elem_bytes != body)
    throw std::invalid_argument("key batch length " + std::to_string(len) + " does not match " +
                                std::to_string(kv.count) + " elements of " + std::to_string(kv.elem_bytes) +
                                " bytes (truncated or padded)");
  kv.body = data + kHeaderBytes;
  return kv;
}

// ------------------------------------------------------------------------------------------
// Key generation

void gen_keys(const GateParams& p, const uint8_t seed[16], const uint64_t* a, const uint64_t* b,
              const uint64_t* beta, const uint64_t* r_out, size_t n, uint8_t* body0, uint8_t* body1) {
  validate_params(p);
  const size_t E = key_bytes_per_element(p);
  const size_t D = gate_dcf_bytes(p);
  const int V = word_bytes(p);  // bytes per ring word in the keys
  const Aes128 aes(seed);
  const int s = eff_shift(p);
  const int w = gate_input_bits(p);  // the dealer reduces r_in mod 2^w (relu, trunc, circa's select)
  parallel_for(n, 64, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      ElementRng rng(aes, i);
      uint8_t* o0 = body0 + i * E;
      uint8_t* o1 = body1 + i * E;
      const uint64_t r = a[i];
      switch (p.gate) {
        case Gate::Dcf: {
          const Block s0 = rng.seed(), s1 = rng.seed();
          dcf_gen(p.n, p.words, a[i], beta + i * static_cast<size_t>(p.words), s0, s1, o0, o1);
          break;
        }
        case Gate::DcfBit: {
          const Block s0 = rng.seed(), s1 = rng.seed();
          dcf_bit_gen(p.n, a[i], s0, s1, o0, o1);
          break;
        }
        case Gate::Relu: {
          const uint64_t ro = r_out[i];
          const uint64_t rw = r & low_mask(w);
          const int h = relu_headroom(p), mp = w - 1 - h;
          const uint64_t alpha = rw & low_mask(mp);
          const uint64_t q0 = (rw >> mp) & 1;
          uint64_t Rt = rw, G = 0;
          if (h) {
            const uint64_t top = rw >> (w - 2), big = pow2(w - s);
            Rt = (rw >> s) - (top == 3 ? big : 0);
            G = top == 2 ? big : 0;
          }
          const uint64_t sigma = q0 ? ~uint64_t{0} : 1;
          const uint64_t bv[2] = {sigma, sigma * Rt};
          const Block s0 = rng.seed(), s1 = rng.seed();
          dcf_gen(mp, 2, alpha, bv, s0, s1, o0, o1, V);
          const uint64_t B01 = ro - q0 * Rt;
          const uint64_t vals[4] = {q0, B01 + G, B01, ro - Rt + q0 * Rt};  // A, B00, B01, D1
          for (int j = 0; j < 4; ++j) put_shared(rng, o0 + D + V * j, o1 + D + V * j, vals[j], V);
          break;
        }
        case Gate::Drelu: {
          const uint64_t ro = r_out[i];
          const int nb = drelu_dcf_bits(p);
          const uint64_t q0 = (r >> nb) & 1;
          const uint64_t bv[1] = {q0 ? ~uint64_t{0} : 1};
          const Block s0 = rng.seed(), s1 = rng.seed();
          dcf_gen(nb, 1, r & low_mask(nb), bv, s0, s1, o0, o1, V);
          put_shared(rng, o0 + D, o1 + D, ro + q0, V);
          put_shared(rng, o0 + D + V, o1 + D + V, ro - q0, V);
          break;
        }
        case Gate::Circa: {
          const uint64_t ro = r_out[i];
          const int mp = circa_dcf_bits(p);
          const uint64_t alpha = (r >> p.k) & low_mask(mp);
          const uint64_t q = (r >> (p.n - 1)) & 1;  // msb of the m = n - k bit value r_n >> k
          const Block s0 = rng.seed(), s1 = rng.seed();
          dcf_bit_gen(mp, alpha, s0, s1, o0, o1);
          const uint64_t rd = rng.word() & 1;
          const uint64_t g0 = rng.word() & 1;
          stn(o0 + D, g0, V);
          stn(o1 + D, g0 ^ q ^ rd, V);
          // C[2*dhat + p1]; X = trunc's expression on the w-bit ring (n = 64, s = 0: X = xhat - r).
          const uint64_t rw = r & low_mask(w);
          const uint64_t R = rw >> s, Q = ((rw >> (w - 1)) & 1) * pow2(w - s);
          uint64_t C[4];
          C[0] = ro - R * rd + Q * rd;
          C[1] = ro - R * rd;
          C[2] = ro - R + Q + R * rd - Q * rd;
          C[3] = ro - R + R * rd;
          put_shared(rng, o0 + D + V, o1 + D + V, rd, V);
          for (int j = 0; j < 4; ++j) put_shared(rng, o0 + D + V * (2 + j), o1 + D + V * (2 + j), C[j], V);
          break;
        }
        case Gate::Trunc: {
          const uint64_t ro = r_out[i];
          const uint64_t rw = r & low_mask(w);
          const uint64_t R = rw >> s, Q = ((rw >> (w - 1)) & 1) * pow2(w - s);
          put_shared(rng, o0, o1, ro - R + Q, V);  // p1 = 0
          put_shared(rng, o0 + V, o1 + V, ro - R, V);  // p1 = 1
          break;
        }
        case Gate::Square: {
          put_shared(rng, o0, o1, r, 8);
          put_shared(rng, o0 + 8, o1 + 8, r * r + r_out[i], 8);
          break;
        }
        case Gate::Mul: {
          const uint64_t ry = b[i];
          put_shared(rng, o0, o1, r, 8);
          put_shared(rng, o0 + 8, o1 + 8, ry, 8);
          put_shared(rng, o0 + 16, o1 + 16, r * ry + r_out[i], 8);
          break;
        }
      }
    }
  });
}

// ------------------------------------------------------------------------------------------
// Evaluation

void eval_keys(const KeyView& kv, const uint64_t* xhat, const uint64_t* yhat, uint64_t* out) {
  const GateParams& p = kv.params;
  const size_t E = kv.elem_bytes, D = gate_dcf_bytes(p);
  const int V = word_bytes(p);
  const uint8_t* body = kv.body;
  const int party = kv.party;
  const uint64_t p0mask = party == 0 ? ~uint64_t{0} : 0;  // selects terms only party 0 adds
  const int s = eff_shift(p);
  const int w = gate_input_bits(p);
  const uint64_t wmask = low_mask(w);  // bits of xhat the gate reads
  parallel_for(static_cast<size_t>(kv.count), kGrain, [&](size_t begin, size_t end) {
    uint64_t xin[kEvalBatch], U[2 * kEvalBatch];
    for (size_t i0 = begin; i0 < end; i0 += kEvalBatch) {
      const size_t cnt = std::min(kEvalBatch, end - i0);
      const uint8_t* kb = body + i0 * E;
      switch (p.gate) {
        case Gate::Dcf:
          dcf_eval(party, p.n, p.words, kb, E, xhat + i0, out + i0 * p.words, cnt);
          break;
        case Gate::Relu: {
          const int mp = relu_dcf_bits(p);
          const uint64_t O = uint64_t{1} << mp, K = O >> s;
          for (size_t j = 0; j < cnt; ++j) xin[j] = (xhat[i0 + j] + O) & (O - 1);
          dcf_eval(party, mp, 2, kb, E, xin, U, cnt, V);
          for (size_t j = 0; j < cnt; ++j) {
            const uint64_t z = (xhat[i0 + j] + O) & wmask;
            const uint64_t p0 = (z >> mp) & 1, p1 = (z >> (w - 1)) & 1;
            const uint64_t Hp = (z >> s) - K;
            const uint8_t* c = kb + j * E + D;
            const uint64_t A = ldn(c, V), U1 = U[2 * j], U2 = U[2 * j + 1];
            uint64_t y;
            if (!p0)
              y = A * Hp + ldn(c + (p1 ? 2 * V : V), V) + Hp * U1 - U2;
            else
              y = ((Hp & p0mask) - A * Hp) + ldn(c + 3 * V, V) - Hp * U1 + U2;
            out[i0 + j] = y;
          }
          break;
        }
        case Gate::Drelu: {
          const int nb = drelu_dcf_bits(p);
          for (size_t j = 0; j < cnt; ++j) xin[j] = xhat[i0 + j] & low_mask(nb);
          dcf_eval(party, nb, 1, kb, E, xin, U, cnt, V);
          for (size_t j = 0; j < cnt; ++j) {
            const uint64_t p0 = 1 ^ ((xhat[i0 + j] >> nb) & 1);
            const uint8_t* c = kb + j * E + D;
            out[i0 + j] = p0 ? (p0mask & 1) + ldn(c + V, V) - U[j] : ldn(c, V) + U[j];
          }
          break;
        }
        case Gate::Trunc: {
          const uint64_t O = uint64_t{1} << (w - 2), K = O >> s;
          for (size_t j = 0; j < cnt; ++j) {
            const uint64_t z = (xhat[i0 + j] + O) & wmask;
            const uint8_t* c = kb + j * E;
            out[i0 + j] = (((z >> s) - K) & p0mask) + ldn(c + (((z >> (w - 1)) & 1) ? V : 0), V);
          }
          break;
        }
        case Gate::Square: {
          for (size_t j = 0; j < cnt; ++j) {
            const uint64_t x = xhat[i0 + j];
            const uint8_t* c = kb + j * E;
            out[i0 + j] = ((x * x) & p0mask) - 2 * x * ld64(c) + ld64(c + 8);
          }
          break;
        }
        case Gate::Mul: {
          for (size_t j = 0; j < cnt; ++j) {
            const uint64_t x = xhat[i0 + j], y = yhat[i0 + j];
            const uint8_t* c = kb + j * E;
            out[i0 + j] = ((x * y) & p0mask) - x * ld64(c + 8) - y * ld64(c) + ld64(c + 16);
          }
          break;
        }
        default: throw std::invalid_argument("gate " + gate_str(p.gate) + " has no one-round evaluation");
      }
    }
  });
}

void eval_bits(const KeyView& kv, const uint64_t* xhat, uint8_t* out) {
  const GateParams& p = kv.params;
  const size_t E = kv.elem_bytes, D = gate_dcf_bytes(p);
  const int V = word_bytes(p);
  const int party = kv.party;
  parallel_for(static_cast<size_t>(kv.count), kGrain, [&](size_t begin, size_t end) {
    uint64_t xin[kEvalBatch];
    for (size_t i0 = begin; i0 < end; i0 += kEvalBatch) {
      const size_t cnt = std::min(kEvalBatch, end - i0);
      const uint8_t* kb = kv.body + i0 * E;
      if (p.gate == Gate::DcfBit) {
        dcf_bit_eval(party, p.n, kb, E, xhat + i0, out + i0, cnt);
        continue;
      }
      if (p.gate != Gate::Circa) throw std::invalid_argument("gate " + gate_str(p.gate) + " has no bit evaluation");
      const int m = p.n - p.k, mp = m - 1;
      const uint64_t delta = p.mode == CircaMode::PosZero ? ~uint64_t{0} : 0;
      const uint64_t nmask = low_mask(p.n);
      uint64_t pbit[kEvalBatch];
      for (size_t j = 0; j < cnt; ++j) {
        const uint64_t hd = (((xhat[i0 + j] & nmask) >> p.k) + delta) & low_mask(m);
        pbit[j] = (hd >> mp) & 1;
        xin[j] = hd & low_mask(mp);
      }
      dcf_bit_eval(party, mp, kb, E, xin, out + i0, cnt);
      for (size_t j = 0; j < cnt; ++j) {
        const uint64_t gamma = ldn(kb + j * E + D, V) & 1;
        const uint64_t pub = party == 0 ? (1 ^ pbit[j]) : 0;
        out[i0 + j] = static_cast<uint8_t>((out[i0 + j] ^ gamma ^ pub) & 1);
      }
    }
  });
}

void eval_circa_select(const KeyView& kv, const uint64_t* xhat, const uint8_t* opened, uint64_t* out) {
  const GateParams& p = kv.params;
  if (p.gate != Gate::Circa) throw std::invalid_argument("gate " + gate_str(p.gate) + " is not circa");
  const size_t E = kv.elem_bytes, D = gate_dcf_bytes(p);
  const int V = word_bytes(p);
  const uint64_t p0mask = kv.party == 0 ? ~uint64_t{0} : 0;
  const int s = eff_shift(p);
  const int w = gate_input_bits(p);
  const uint64_t O = uint64_t{1} << (w - 2), K = O >> s, wmask = low_mask(w);
  parallel_for(static_cast<size_t>(kv.count), 4 * kGrain, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      // trunc's expression on the w-bit ring. For n = 64, s = 0 it is xhat and the wrap term 2^64
      // vanishes: C_{d,0} and C_{d,1} share the same value, and p1 = 0 is used (as before n existed).
      const uint64_t z = (xhat[i] + O) & wmask;
      const uint64_t p1 = w - s >= 64 ? 0 : (z >> (w - 1)) & 1;
      const uint64_t Hp = (z >> s) - K;
      const uint8_t* c = kv.body + i * E + D;
      const uint64_t rd = ldn(c + V, V);
      const uint64_t dhat = opened[i] & 1;
      const uint64_t C = ldn(c + V * (2 + 2 * dhat + p1), V);
      out[i] = dhat ? (Hp & p0mask) - Hp * rd + C : Hp * rd + C;
    }
  });
}

}  // namespace pi_native::fss
