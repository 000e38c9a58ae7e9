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

// z = ReLU(a + b) + r' mod 2^l with r' = −r (private bits): adder, select by d, re-share adder.
Circuit relu_circuit(int l) {
  Builder g(l, l, l);
  std::vector<uint32_t> a(l), b(l), x(l), y(l);
  for (int i = 0; i < l; ++i) a[i] = g.eval_in(i), b[i] = g.garb_in(i);
  const auto c = carries(g, a, b, 0);
  for (int i = 0; i < l; ++i) x[i] = i == 0 ? g.XOR(a[0], b[0]) : g.XOR(g.XOR(a[i], b[i]), c[i]);
  const uint32_t d = g.NOT(x[l - 1]);
  for (int i = 0; i + 1 < l; ++i) y[i] = g.AND(d, x[i]);  // y_{l-1} = d ∧ x_{l-1} = 0
  // Re-share: z = y + r'; r' enters as private inversions, the first carry as a half-gate.
  uint32_t carry = g.ANDC(y[0], 0);
  g.output(g.PNOT(y[0], 0));
  for (int i = 1; i + 1 < l; ++i) {
    const uint32_t yc = g.XOR(y[i], carry);
    g.output(g.PNOT(yc, i));
    carry = g.XOR(carry, g.AND(yc, g.PNOT(carry, i)));
  }
  g.output(g.PNOT(carry, l - 1));
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
  if (s.l < 2 || s.l > 64) throw std::invalid_argument("l must be in [2, 64], got " + std::to_string(s.l));
  if (s.kind == Kind::Circa) {
    if (s.k < 0 || s.k > s.l - 1)
      throw std::invalid_argument("circa: k must be in [0, l - 1] = [0, " + std::to_string(s.l - 1) + "], got " +
                                  std::to_string(s.k));
    if (s.mode != Mode::PosZero && s.mode != Mode::NegPass)
      throw std::invalid_argument("circa: mode must be poszero or negpass");
  } else {
    if (s.k != 0) throw std::invalid_argument(std::string(kind_name(s.kind)) + " takes no k");
    if (s.mode != Mode::None) throw std::invalid_argument(std::string(kind_name(s.kind)) + " takes no mode");
  }
  if (s.kind != Kind::Relu && s.kind != Kind::Drelu && s.kind != Kind::Circa && s.kind != Kind::AndLayer)
    throw std::invalid_argument("unknown circuit kind");
}

Circuit build(const Spec& s) {
  validate(s);
  switch (s.kind) {
    case Kind::Relu: return relu_circuit(s.l);
    case Kind::Drelu: return sign_circuit(s.l, 0);
    case Kind::Circa: return sign_circuit(s.l - s.k, s.mode == Mode::NegPass ? 1 : 0);
    case Kind::AndLayer: return and_layer(s.l);
  }
  throw std::invalid_argument("unknown circuit kind");
}

int input_bits(const Spec& s) { return s.kind == Kind::Circa ? s.l - s.k : s.l; }
int input_shift(const Spec& s) { return s.kind == Kind::Circa ? s.k : 0; }
int private_bits(const Spec& s) {
  switch (s.kind) {
    case Kind::Relu: return s.l;
    case Kind::Drelu:
    case Kind::Circa: return 1;
    default: return 0;
  }
}

}  // namespace pi_native::gc
