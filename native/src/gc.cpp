// Half-gates garbling and evaluation, batched in lockstep groups of kLanes instances so that each
// AND gate issues 4·kLanes (garbler) or 2·kLanes (evaluator) independent AES blocks at once.
#include "pi_native/gc.hpp"

#include <cstring>
#include <stdexcept>

#include "pi_native/parallel.hpp"

namespace pi_native::gc {
namespace {

constexpr size_t kLanes = 8;

inline bool lsb(const Block& b) { return (b.lo & 1) != 0; }
inline Block sel(bool bit, const Block& b) { return bit ? b : Block{}; }

void load_block(Block* dst, const uint8_t* src) { std::memcpy(dst, src, 16); }
void store_block(uint8_t* dst, const Block& b) { std::memcpy(dst, &b, 16); }

}  // namespace

Builder::Builder(uint32_t n_eval, uint32_t n_garb, uint32_t n_priv) {
  c_.n_eval = n_eval;
  c_.n_garb = n_garb;
  c_.n_priv = n_priv;
  c_.n_wires = n_eval + n_garb;
}

uint32_t Builder::add(Op op, uint32_t a, uint32_t b, uint32_t priv) {
  if (a >= c_.n_wires || ((op == Op::Xor || op == Op::And) && b >= c_.n_wires))
    throw std::logic_error("circuit builder: gate reads an undefined wire");
  if ((op == Op::Pnot || op == Op::Andc) && priv >= c_.n_priv)
    throw std::logic_error("circuit builder: private bit out of range");
  Gate g{op, a, b, c_.n_wires++, priv, 0, 0};
  if (op == Op::And || op == Op::Andc) {
    g.and_index = c_.n_and + c_.n_andc;
    g.table_off = static_cast<uint32_t>(c_.table_bytes());
    (op == Op::And ? c_.n_and : c_.n_andc)++;
  }
  c_.gates.push_back(g);
  return g.out;
}

uint32_t Builder::XOR(uint32_t a, uint32_t b) { return add(Op::Xor, a, b, 0); }
uint32_t Builder::NOT(uint32_t a) { return add(Op::Not, a, 0, 0); }
uint32_t Builder::PNOT(uint32_t a, uint32_t priv) { return add(Op::Pnot, a, 0, priv); }
uint32_t Builder::AND(uint32_t a, uint32_t b) { return add(Op::And, a, b, 0); }
uint32_t Builder::ANDC(uint32_t a, uint32_t priv) { return add(Op::Andc, a, 0, priv); }

const Aes128& gc_aes() {
  // First 16 bytes of the fractional part of sqrt(2) (the SHA-256 IV words): a public constant.
  static const uint8_t key[16] = {0x6a, 0x09, 0xe6, 0x67, 0xbb, 0x67, 0xae, 0x85,
                                  0x3c, 0x6e, 0xf3, 0x72, 0xa5, 0x4f, 0xf5, 0x3a};
  static const Aes128 aes(key);
  return aes;
}

void tccr_hash(const Block* x, const Block* t, Block* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = sigma(x[i]) ^ t[i];
  gc_aes().mmo(out, n);  // π(y) ⊕ y with y = σ(x) ⊕ t
}

// Input wires of instances i0 .. i0 + lanes into the lane-interleaved wire array L (wire-major,
// kLanes per wire): the garbler loads zero labels, the evaluator the active ones.
static void load_inputs(const Circuit& c, Block* L, const Block* eval_in, const Block* garb_in,
                        size_t i0, size_t lanes) {
  for (size_t w = 0; w < lanes; ++w) {
    for (uint32_t e = 0; e < c.n_eval; ++e) L[e * kLanes + w] = eval_in[(i0 + w) * c.n_eval + e];
    for (uint32_t g = 0; g < c.n_garb; ++g) L[(c.n_eval + g) * kLanes + w] = garb_in[(i0 + w) * c.n_garb + g];
  }
}

namespace {

// A thread's room for one group's AES batch: 4·kLanes blocks (the garbler's AND), hash inputs,
// tweaks and outputs.
struct Scratch {
  Block x[4 * kLanes], t[4 * kLanes], h[4 * kLanes];
};

// The lockstep walk both sides share: instances in groups of kLanes, their input labels loaded,
// XOR gates done here (free, the same on both sides); `gate(g, o, A, B, i0, lanes, scratch)` does
// every other gate of a group (o, A, B: the lanes of its output and input wires; B is A's when
// the gate has one input) and `group_done(L, i0, lanes)` reads its outputs. Both are lambdas the
// compiler inlines, so the walk costs what the two hand-written loops did.
template <class GateFn, class DoneFn>
void walk(const Circuit& c, size_t count, const Block* eval_in, const Block* garb_in, GateFn&& gate,
          DoneFn&& group_done) {
  parallel_for(count, 64, [&](size_t begin, size_t end) {
    std::vector<Block> L(static_cast<size_t>(c.n_wires) * kLanes);
    Scratch scratch;
    for (size_t i0 = begin; i0 < end; i0 += kLanes) {
      const size_t lanes = std::min(kLanes, end - i0);
      load_inputs(c, L.data(), eval_in, garb_in, i0, lanes);
      for (const Gate& g : c.gates) {
        Block* o = &L[g.out * kLanes];
        const Block* A = &L[g.a * kLanes];
        const Block* B = (g.op == Op::Xor || g.op == Op::And) ? &L[g.b * kLanes] : A;
        if (g.op == Op::Xor) {
          for (size_t w = 0; w < lanes; ++w) o[w] = A[w] ^ B[w];
          continue;
        }
        gate(g, o, A, B, i0, lanes, scratch);
      }
      group_done(L.data(), i0, lanes);
    }
  });
}

}  // namespace

void garble(const Circuit& c, size_t count, Block delta, const Block* eval_zero, const Block* garb_zero,
            const uint8_t* priv, uint64_t and_base, uint8_t* body) {
  if (!lsb(delta)) throw std::invalid_argument("garble: delta must have its lsb set (point-and-permute)");
  const size_t stride = c.table_bytes() + c.decode_bytes();
  const uint64_t nh = c.n_hashed();
  auto gate = [&](const Gate& g, Block* o, const Block* A, const Block* B, size_t i0, size_t lanes, Scratch& s) {
    Block *x = s.x, *t = s.t, *h = s.h;
    switch (g.op) {
      case Op::Not:
        for (size_t w = 0; w < lanes; ++w) o[w] = A[w] ^ delta;
        break;
      case Op::Pnot:
        for (size_t w = 0; w < lanes; ++w) o[w] = A[w] ^ sel(priv[(i0 + w) * c.n_priv + g.priv] != 0, delta);
        break;
      case Op::And: {
        for (size_t w = 0; w < lanes; ++w) {
          const uint64_t gid = and_base + (i0 + w) * nh + g.and_index;
          x[w] = A[w];
          x[lanes + w] = A[w] ^ delta;
          x[2 * lanes + w] = B[w];
          x[3 * lanes + w] = B[w] ^ delta;
          t[w] = t[lanes + w] = gate_tweak(gid, 0);
          t[2 * lanes + w] = t[3 * lanes + w] = gate_tweak(gid, 1);
        }
        tccr_hash(x, t, h, 4 * lanes);
        for (size_t w = 0; w < lanes; ++w) {
          const Block A0 = A[w], B0 = B[w];
          const bool pa = lsb(A0), pb = lsb(B0);
          const Block &HA0 = h[w], &HA1 = h[lanes + w], &HB0 = h[2 * lanes + w], &HB1 = h[3 * lanes + w];
          const Block TG = HA0 ^ HA1 ^ sel(pb, delta);
          const Block WG = HA0 ^ sel(pa, TG);
          const Block TE = HB0 ^ HB1 ^ A0;
          const Block WE = HB0 ^ sel(pb, TE ^ A0);
          o[w] = WG ^ WE;
          uint8_t* tab = body + (i0 + w) * stride + g.table_off;
          store_block(tab, TG);
          store_block(tab + 16, TE);
        }
        break;
      }
      case Op::Andc: {
        for (size_t w = 0; w < lanes; ++w) {
          const uint64_t gid = and_base + (i0 + w) * nh + g.and_index;
          x[w] = A[w];
          x[lanes + w] = A[w] ^ delta;
          t[w] = t[lanes + w] = gate_tweak(gid, 0);
        }
        tccr_hash(x, t, h, 2 * lanes);
        for (size_t w = 0; w < lanes; ++w) {
          const bool v = priv[(i0 + w) * c.n_priv + g.priv] != 0;
          const Block TG = h[w] ^ h[lanes + w] ^ sel(v, delta);
          o[w] = h[w] ^ sel(lsb(A[w]), TG);
          store_block(body + (i0 + w) * stride + g.table_off, TG);
        }
        break;
      }
      case Op::Xor:  // done by walk
        break;
    }
  };
  auto decode_bits = [&](const Block* L, size_t i0, size_t lanes) {
    for (size_t w = 0; w < lanes; ++w) {
      uint8_t* dec = body + (i0 + w) * stride + c.table_bytes();
      std::memset(dec, 0, c.decode_bytes());
      for (size_t k = 0; k < c.outputs.size(); ++k)
        if (lsb(L[c.outputs[k] * kLanes + w])) dec[k / 8] |= static_cast<uint8_t>(1u << (k % 8));
    }
  };
  walk(c, count, eval_zero, garb_zero, gate, decode_bits);
}

void evaluate(const Circuit& c, size_t count, const uint8_t* body, const Block* eval_labels,
              const Block* garb_labels, uint64_t and_base, uint8_t* out_bits) {
  const size_t stride = c.table_bytes() + c.decode_bytes();
  const uint64_t nh = c.n_hashed();
  const size_t n_out = c.outputs.size();
  auto gate = [&](const Gate& g, Block* o, const Block* A, const Block* B, size_t i0, size_t lanes, Scratch& s) {
    Block *x = s.x, *t = s.t, *h = s.h;
    switch (g.op) {
      case Op::Not:
      case Op::Pnot:
        for (size_t w = 0; w < lanes; ++w) o[w] = A[w];
        break;
      case Op::And: {
        for (size_t w = 0; w < lanes; ++w) {
          const uint64_t gid = and_base + (i0 + w) * nh + g.and_index;
          x[w] = A[w];
          x[lanes + w] = B[w];
          t[w] = gate_tweak(gid, 0);
          t[lanes + w] = gate_tweak(gid, 1);
        }
        tccr_hash(x, t, h, 2 * lanes);
        for (size_t w = 0; w < lanes; ++w) {
          const uint8_t* tab = body + (i0 + w) * stride + g.table_off;
          Block TG, TE;
          load_block(&TG, tab);
          load_block(&TE, tab + 16);
          o[w] = h[w] ^ sel(lsb(A[w]), TG) ^ h[lanes + w] ^ sel(lsb(B[w]), TE ^ A[w]);
        }
        break;
      }
      case Op::Andc: {
        for (size_t w = 0; w < lanes; ++w) {
          x[w] = A[w];
          t[w] = gate_tweak(and_base + (i0 + w) * nh + g.and_index, 0);
        }
        tccr_hash(x, t, h, lanes);
        for (size_t w = 0; w < lanes; ++w) {
          Block TG;
          load_block(&TG, body + (i0 + w) * stride + g.table_off);
          o[w] = h[w] ^ sel(lsb(A[w]), TG);
        }
        break;
      }
      case Op::Xor:  // done by walk
        break;
    }
  };
  auto output_bits = [&](const Block* L, size_t i0, size_t lanes) {
    for (size_t w = 0; w < lanes; ++w) {
      const uint8_t* dec = body + (i0 + w) * stride + c.table_bytes();
      for (size_t k = 0; k < n_out; ++k)
        out_bits[(i0 + w) * n_out + k] =
            static_cast<uint8_t>((L[c.outputs[k] * kLanes + w].lo ^ (dec[k / 8] >> (k % 8))) & 1);
    }
  };
  walk(c, count, eval_labels, garb_labels, gate, output_bits);
}

void eval_plain(const Circuit& c, const uint8_t* eval_bits, const uint8_t* garb_bits, const uint8_t* priv,
                uint8_t* out_bits) {
  std::vector<uint8_t> v(c.n_wires);
  for (uint32_t e = 0; e < c.n_eval; ++e) v[e] = eval_bits[e] & 1;
  for (uint32_t g = 0; g < c.n_garb; ++g) v[c.n_eval + g] = garb_bits[g] & 1;
  for (const Gate& g : c.gates) {
    switch (g.op) {
      case Op::Xor: v[g.out] = v[g.a] ^ v[g.b]; break;
      case Op::Not: v[g.out] = v[g.a] ^ 1; break;
      case Op::Pnot: v[g.out] = v[g.a] ^ (priv[g.priv] & 1); break;
      case Op::And: v[g.out] = v[g.a] & v[g.b]; break;
      case Op::Andc: v[g.out] = v[g.a] & (priv[g.priv] & 1); break;
    }
  }
  for (size_t k = 0; k < c.outputs.size(); ++k) out_bits[k] = v[c.outputs[k]];
}

}  // namespace pi_native::gc
