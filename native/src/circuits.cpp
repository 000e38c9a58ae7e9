// Netlists of the ReLU circuits over additive shares (docs/gc.md, "Circuits").
#include "pi_native/circuits.hpp"

#include <stdexcept>
#include <string>
#include <vector>

namespace pi_native::gc {
namespace {

// Carries c_1 .. c_{n-1} of a + b + cin over n bits (cin a public constant): one AND per carry,
// c_{i+1} = c_i ⊕ ((a_i ⊕ c_i) ∧ (b_i ⊕ c_i)); c_1 = a_0 ∧ b_0 (cin 0) or a_0 ∨ b_0 (cin 1).
std::vector<uint32_t> carries(Builder& g, const std::vector<uint32_t>& a, const std::vector<uint32_t>& b, int cin) {
  const size_t n = a.size();
  std::vector<uint32_t> c(n, 0);
  if (n < 2) return c;
  c[1] = cin ? g.NOT(g.AND(g.NOT(a[0]), g.NOT(b[0]))) : g.AND(a[0], b[0]);
  for (size_t i = 1; i + 1 < n; ++i) c[i + 1] = g.XOR(c[i], g.AND(g.XOR(a[i], c[i]), g.XOR(b[i], c[i])));
  return c;
}

// Carry out of a + b + cin over n bits (c_n): the chain above plus one AND.
uint32_t carry_out(Builder& g, const std::vector<uint32_t>& a, const std::vector<uint32_t>& b, int cin) {
  const size_t n = a.size();
  if (n == 1) return cin ? g.NOT(g.AND(g.NOT(a[0]), g.NOT(b[0]))) : g.AND(a[0], b[0]);
  const auto c = carries(g, a, b, cin);
  return g.XOR(c[n - 1], g.AND(g.XOR(a[n - 1], c[n - 1]), g.XOR(b[n - 1], c[n - 1])));
}

// The n value bits of x = a + b mod 2^n from the input wires of value v (v·n .. v·n + n − 1).
std::vector<uint32_t> value_bits(Builder& g, int n, int v) {
  std::vector<uint32_t> a(n), b(n), x(n);
  for (int i = 0; i < n; ++i) a[i] = g.eval_in(v * n + i), b[i] = g.garb_in(v * n + i);
  const auto c = carries(g, a, b, 0);
  for (int i = 0; i < n; ++i) x[i] = i == 0 ? g.XOR(a[0], b[0]) : g.XOR(g.XOR(a[i], b[i]), c[i]);
  return x;
}

// Sign test: d = 1 − msb(a + b + cin mod 2^n), output d ⊕ ρ (ρ = private bit 0).
Circuit sign_circuit(int n, int cin) {
  Builder g(n, n, 1);
  std::vector<uint32_t> a(n), b(n);
  for (int i = 0; i < n; ++i) a[i] = g.eval_in(i), b[i] = g.garb_in(i);
  const auto c = carries(g, a, b, cin);
  uint32_t top = g.XOR(a[n - 1], b[n - 1]);
  if (n >= 2) top = g.XOR(top, c[n - 1]);
  else if (cin) top = g.NOT(top);
  g.output(g.PNOT(g.NOT(top), 0));
  return g.finish();
}

// Circa with a shift: the m-bit sum of the truncated shares, the garbler's offset by
// 2^(n−1) − 1 (garbler_offset), plus δ. Its msb is the sign test on v = x − 1 (the offset's
// 2^(n−1) flips the msb) and its carry out is the wrap w of the n-bit share sum. Outputs d ⊕ ρ and
// (d ∧ w) ⊕ ρ_t: m − 1 + 1 + 1 ANDs (docs/gc.md, "Circa with a shift").
Circuit circa_shift_circuit(int m, int cin) {
  Builder g(m, m, 2);
  std::vector<uint32_t> a(m), b(m);
  for (int i = 0; i < m; ++i) a[i] = g.eval_in(i), b[i] = g.garb_in(i);
  uint32_t d, w;
  if (m == 1) {
    d = g.XOR(a[0], b[0]);
    if (cin) d = g.NOT(d);
    w = cin ? g.NOT(g.AND(g.NOT(a[0]), g.NOT(b[0]))) : g.AND(a[0], b[0]);
  } else {
    const auto c = carries(g, a, b, cin);
    const uint32_t ac = g.XOR(a[m - 1], c[m - 1]);
    d = g.XOR(ac, b[m - 1]);
    w = g.XOR(c[m - 1], g.AND(ac, g.XOR(b[m - 1], c[m - 1])));
  }
  g.output(g.PNOT(d, 0));
  g.output(g.PNOT(g.AND(d, w), 1));
  return g.finish();
}

// Outputs the l bits of z = y + r' mod 2^l for a non-negative y given by its j low bits (higher
// bits zero) and the garbler's private r' (private bits 0 .. l−1). Bit t: z_t = y_t ⊕ r'_t ⊕ c_t;
// carries c_{t+1} = maj(y_t, r'_t, c_t): c_1 = y_0 ∧ r'_0 (half-gate), one AND while y_t is a
// wire, c_t ∧ r'_t (half-gate) above it; no carry out of bit l − 1.
void reshare(Builder& g, const std::vector<uint32_t>& y, int l) {
  const int j = static_cast<int>(y.size());
  if (j == 0) {  // y = 0: z = r'
    const uint32_t zero = g.XOR(g.eval_in(0), g.eval_in(0));
    for (int t = 0; t < l; ++t) g.output(g.PNOT(zero, t));
    return;
  }
  g.output(g.PNOT(y[0], 0));
  uint32_t carry = g.ANDC(y[0], 0);
  for (int t = 1; t < l; ++t) {
    if (t < j) {
      const uint32_t yc = g.XOR(y[t], carry);
      g.output(g.PNOT(yc, t));
      if (t + 1 < l) carry = g.XOR(carry, g.AND(yc, g.PNOT(carry, t)));
    } else {
      g.output(g.PNOT(carry, t));
      if (t + 1 < l) carry = g.ANDC(carry, t);
    }
  }
}

// z = (ReLU(x) >> s) + r' mod 2^l: adder over n bits, d = ¬x_{n−1}, select y_t = d ∧ x_{s+t} for
// t < j = n − 1 − s (bit n − 1 of ReLU(x) is 0), re-share. The garbler's share is r = −r'.
Circuit relu_circuit(int n, int s, int l) {
  Builder g(n, n, l);
  const int j = n - 1 - s;
  std::vector<uint32_t> y(j);
  if (j > 0) {
    const auto x = value_bits(g, n, 0);
    const uint32_t d = g.NOT(x[n - 1]);
    for (int t = 0; t < j; ++t) y[t] = g.AND(d, x[s + t]);
  }
  reshare(g, y, l);
  return g.finish();
}

// z = (u >> s) + r' mod 2^l with u = x + 2^(n−1) ∈ [0, 2^n) (x's bits with the top one inverted):
// u >> s has j = n − s bits, non-negative, so the re-share needs no sign extension. The garbler's
// share is r = −r' − 2^(n−1−s), so z + r = (u >> s) − 2^(n−1−s) = ⌊x / 2^s⌋.
Circuit trunc_circuit(int n, int s, int l) {
  Builder g(n, n, l);
  auto x = value_bits(g, n, 0);
  x[n - 1] = g.NOT(x[n - 1]);
  reshare(g, std::vector<uint32_t>(x.begin() + s, x.end()), l);
  return g.finish();
}

// First index of the maximum of C signed n-bit values (each a + b mod 2^n), decoded by the
// evaluator. Values are compared as u = x + 2^(n−1) (top bit inverted: order-preserving, unsigned).
// Running maximum: gt = [u_i > cur] = carry out of u_i + ¬cur (n ANDs; strict, so ties keep the
// first index), cur ← cur ⊕ gt ∧ (u_i ⊕ cur) (n ANDs, not after the last), idx ← idx ⊕ gt ∧ (idx ⊕ i)
// (one AND per index bit already a wire: bitlen(i − 1); a bit still constant 0 becomes gt or stays 0).
Circuit argmax_circuit(int C, int n) {
  Builder g(static_cast<uint32_t>(C) * n, static_cast<uint32_t>(C) * n, 0);
  const int L = index_bits(C);
  constexpr uint32_t kZero = ~uint32_t{0};  // a constant-0 index bit (no wire yet)
  std::vector<uint32_t> idx(L, kZero);
  auto unsigned_bits = [&](int v) {
    auto x = value_bits(g, n, v);
    x[n - 1] = g.NOT(x[n - 1]);
    return x;
  };
  std::vector<uint32_t> cur = unsigned_bits(0);
  for (int i = 1; i < C; ++i) {
    const auto u = unsigned_bits(i);
    std::vector<uint32_t> ncur(n);
    for (int t = 0; t < n; ++t) ncur[t] = g.NOT(cur[t]);
    const uint32_t gt = carry_out(g, u, ncur, 0);
    if (i + 1 < C)
      for (int t = 0; t < n; ++t) cur[t] = g.XOR(cur[t], g.AND(gt, g.XOR(u[t], cur[t])));
    for (int b = 0; b < L; ++b) {
      const bool ib = (i >> b) & 1;
      if (idx[b] == kZero) {
        if (ib) idx[b] = gt;
      } else {
        idx[b] = g.XOR(idx[b], g.AND(gt, ib ? g.NOT(idx[b]) : idx[b]));
      }
    }
  }
  for (int b = 0; b < L; ++b) g.output(idx[b]);
  return g.finish();
}

Circuit and_layer(int l) {
  Builder g(l, l, 0);
  for (int i = 0; i < l; ++i) g.output(g.AND(g.eval_in(i), g.garb_in(i)));
  return g.finish();
}

}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Relu: return "relu";
    case Kind::Drelu: return "drelu";
    case Kind::Circa: return "circa";
    case Kind::AndLayer: return "and-layer";
    case Kind::Trunc: return "trunc";
    case Kind::Argmax: return "argmax";
  }
  return "?";
}

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::None: return "none";
    case Mode::PosZero: return "poszero";
    case Mode::NegPass: return "negpass";
  }
  return "?";
}

void validate(const Spec& s) {
  const auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (s.kind != Kind::Relu && s.kind != Kind::Drelu && s.kind != Kind::Circa && s.kind != Kind::AndLayer &&
      s.kind != Kind::Trunc && s.kind != Kind::Argmax)
    bad("unknown circuit kind");
  const std::string name = kind_name(s.kind);
  if (s.l < 2 || s.l > 64) bad("l must be in [2, 64], got " + std::to_string(s.l));
  if (s.bits < 2 || s.bits > s.l)
    bad("bits must be in [2, l] = [2, " + std::to_string(s.l) + "], got " + std::to_string(s.bits));
  if (s.kind == Kind::Circa) {
    if (s.k < 0 || s.k > s.bits - 1)
      bad("circa: k must be in [0, bits - 1] = [0, " + std::to_string(s.bits - 1) + "], got " + std::to_string(s.k));
    if (s.mode != Mode::PosZero && s.mode != Mode::NegPass) bad("circa: mode must be poszero or negpass");
  } else {
    if (s.k != 0) bad(name + " takes no k");
    if (s.mode != Mode::None) bad(name + " takes no mode");
  }
  if (s.kind == Kind::Relu || s.kind == Kind::Trunc || s.kind == Kind::Circa) {
    if (s.shift < 0 || s.shift > s.bits - 1)
      bad(name + ": shift must be in [0, bits - 1] = [0, " + std::to_string(s.bits - 1) + "], got " +
          std::to_string(s.shift));
  } else if (s.shift != 0) {
    bad(name + " takes no shift");
  }
  if (s.kind == Kind::Argmax) {
    if (s.classes < 2 || s.classes > 65536)
      bad("argmax: classes must be in [2, 65536], got " + std::to_string(s.classes));
  } else if (s.classes != 0) {
    bad(name + " takes no classes");
  }
}

Circuit build(const Spec& s) {
  validate(s);
  switch (s.kind) {
    case Kind::Relu: return relu_circuit(s.bits, s.shift, s.l);
    case Kind::Trunc: return trunc_circuit(s.bits, s.shift, s.l);
    case Kind::Drelu: return sign_circuit(s.bits, 0);
    case Kind::Circa:
      return s.shift ? circa_shift_circuit(s.bits - s.k, s.mode == Mode::NegPass ? 1 : 0)
                     : sign_circuit(s.bits - s.k, s.mode == Mode::NegPass ? 1 : 0);
    case Kind::Argmax: return argmax_circuit(s.classes, s.bits);
    case Kind::AndLayer: return and_layer(s.l);
  }
  throw std::invalid_argument("unknown circuit kind");
}

int values_per_instance(const Spec& s) { return s.kind == Kind::Argmax ? s.classes : 1; }
int input_bits(const Spec& s) {
  switch (s.kind) {
    case Kind::Circa: return s.bits - s.k;
    case Kind::AndLayer: return s.l;
    default: return s.bits;
  }
}
int input_shift(const Spec& s) { return s.kind == Kind::Circa ? s.k : 0; }
int private_bits(const Spec& s) {
  switch (s.kind) {
    case Kind::Relu:
    case Kind::Trunc: return s.l;
    case Kind::Drelu: return 1;
    case Kind::Circa: return s.shift ? 2 : 1;
    default: return 0;
  }
}
uint64_t garbler_offset(const Spec& s) {
  return s.kind == Kind::Circa && s.shift ? (uint64_t{1} << (s.bits - 1)) - 1 : 0;
}
int index_bits(int classes) {
  int b = 0;
  while ((1 << b) < classes) ++b;
  return b;
}

}  // namespace pi_native::gc
