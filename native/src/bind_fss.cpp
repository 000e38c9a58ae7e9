// Python bindings of the FSS gates (dealer model). Thin: check types, shapes and parameters,
// then release the GIL and call the kernels in gates.cpp. Semantics and laws: docs/fss.md.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <limits>
#include <string>

#include "bindings.hpp"
#include "pi_native/dcf.hpp"
#include "pi_native/gates.hpp"

namespace pi_native {
namespace {

using fss::CircaMode;
using fss::Gate;
using fss::GateParams;
using fss::KeyView;

std::string seed_of(const py::bytes& seed) {
  std::string s = seed;
  if (s.size() != 16)
    throw py::value_error("seed must be 16 bytes (e.g. os.urandom(16)), got " + std::to_string(s.size()));
  return s;
}

U64Array vec(const py::array& a, const char* name, py::ssize_t expected = -1, const char* like = nullptr) {
  U64Array v = as_u64(a, name);
  if (v.ndim() != 1)
    throw py::value_error(std::string(name) + " must be a 1-D array, got " + std::to_string(v.ndim()) + " dimensions");
  if (expected >= 0 && v.shape(0) != expected)
    throw py::value_error(std::string(name) + " has " + std::to_string(v.shape(0)) + " elements but " +
                          (like ? like : "the key batch") + " has " + std::to_string(expected));
  return v;
}

int check_party(int party) {
  if (party != 0 && party != 1) throw py::value_error("party must be 0 or 1, got " + std::to_string(party));
  return party;
}

CircaMode parse_mode(const std::string& mode) {
  std::string m = mode;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (m == "poszero") return CircaMode::PosZero;
  if (m == "negpass") return CircaMode::NegPass;
  throw py::value_error("circa mode must be 'poszero' or 'negpass', got '" + mode + "'");
}

int small_int(const py::handle& v, const char* name) {
  if (!py::isinstance<py::int_>(v) || py::isinstance<py::bool_>(v))
    throw py::type_error(std::string(name) + " must be an int");
  const long long x = v.cast<long long>();
  if (x < -1000 || x > 1000) throw py::value_error(std::string(name) + " out of range: " + std::to_string(x));
  return static_cast<int>(x);
}

// A key batch viewed without copying (bindings.hpp).
ByteView key_bytes(const py::object& key) { return byte_view(key, "key", "a key batch from gen_*"); }

KeyView open_keys(const ByteView& kb, std::initializer_list<Gate> expected, int party) {
  const KeyView kv = fss::parse_keys(kb.data, kb.len);
  bool ok = false;
  for (Gate g : expected) ok = ok || kv.params.gate == g;
  if (!ok)
    throw py::value_error(std::string("key batch is for gate '") + fss::gate_name(kv.params.gate) + "', not '" +
                          fss::gate_name(*expected.begin()) + "'");
  if (kv.party != party)
    throw py::value_error("key batch belongs to party " + std::to_string(kv.party) + " but is evaluated as party " +
                          std::to_string(party));
  return kv;
}

py::bytes new_bytes(size_t n, uint8_t** data) {
  PyObject* o = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(n));
  if (!o) throw py::error_already_set();
  *data = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(o));
  return py::reinterpret_steal<py::bytes>(o);
}

py::tuple generate(const GateParams& p, const py::bytes& seed, const uint64_t* a, const uint64_t* b,
                   const uint64_t* beta, const uint64_t* r_out, size_t n) {
  const std::string sd = seed_of(seed);
  const size_t E = fss::key_bytes_per_element(p);
  if (n > (std::numeric_limits<size_t>::max() - fss::kHeaderBytes) / E) throw py::value_error("too many elements");
  uint8_t *d0 = nullptr, *d1 = nullptr;
  py::bytes k0 = new_bytes(fss::kHeaderBytes + n * E, &d0);
  py::bytes k1 = new_bytes(fss::kHeaderBytes + n * E, &d1);
  fss::write_header(d0, p, 0, n);
  fss::write_header(d1, p, 1, n);
  {
    py::gil_scoped_release nogil;
    fss::gen_keys(p, reinterpret_cast<const uint8_t*>(sd.data()), a, b, beta, r_out, n, d0 + fss::kHeaderBytes,
                  d1 + fss::kHeaderBytes);
  }
  return py::make_tuple(k0, k1);
}

py::tuple gen_masked(Gate gate, const py::bytes& seed, const py::array& r_in, const py::array& r_out, int shift = 0,
                     int k = 0, CircaMode mode = CircaMode::None, int n = 64, int ring = 64) {
  GateParams p;
  p.gate = gate;
  p.n = n;
  p.out_bits = ring;
  p.shift = shift;
  p.k = k;
  p.mode = mode;
  fss::validate_params(p);
  auto r = vec(r_in, "r_in");
  auto ro = vec(r_out, "r_out", r.shape(0), "r_in");
  return generate(p, seed, r.data(), nullptr, nullptr, ro.data(), static_cast<size_t>(r.shape(0)));
}

py::array_t<uint64_t> eval_ring(Gate gate, int party, const py::object& key, const py::array& xhat,
                                const py::array* yhat = nullptr) {
  check_party(party);
  const ByteView kb = key_bytes(key);
  const KeyView kv = open_keys(kb, {gate}, party);
  auto x = vec(xhat, gate == Gate::Dcf ? "x" : "xhat", static_cast<py::ssize_t>(kv.count));
  U64Array y;
  if (yhat) y = vec(*yhat, "yhat", static_cast<py::ssize_t>(kv.count));
  const py::ssize_t words = gate == Gate::Dcf ? kv.params.words : 1;
  py::array_t<uint64_t> out = words == 1 ? py::array_t<uint64_t>(static_cast<py::ssize_t>(kv.count))
                                         : py::array_t<uint64_t>({static_cast<py::ssize_t>(kv.count), words});
  if (gate == Gate::Dcf) {
    const uint64_t lim = kv.params.n >= 64 ? ~uint64_t{0} : (uint64_t{1} << kv.params.n) - 1;
    const uint64_t* xp = x.data();
    for (py::ssize_t i = 0; i < x.shape(0); ++i)
      if (xp[i] > lim) throw py::value_error("x[" + std::to_string(i) + "] does not fit in " + std::to_string(kv.params.n) + " bits");
  }
  {
    py::gil_scoped_release nogil;
    fss::eval_keys(kv, x.data(), yhat ? y.data() : nullptr, out.mutable_data());
  }
  return out;
}

py::array_t<uint8_t> eval_bit(Gate gate, int party, const py::object& key, const py::array& xhat) {
  check_party(party);
  const ByteView kb = key_bytes(key);
  const KeyView kv = open_keys(kb, {gate}, party);
  auto x = vec(xhat, gate == Gate::DcfBit ? "x" : "xhat", static_cast<py::ssize_t>(kv.count));
  if (gate == Gate::DcfBit) {
    const uint64_t lim = kv.params.n >= 64 ? ~uint64_t{0} : (uint64_t{1} << kv.params.n) - 1;
    const uint64_t* xp = x.data();
    for (py::ssize_t i = 0; i < x.shape(0); ++i)
      if (xp[i] > lim) throw py::value_error("x[" + std::to_string(i) + "] does not fit in " + std::to_string(kv.params.n) + " bits");
  }
  py::array_t<uint8_t> out(static_cast<py::ssize_t>(kv.count));
  {
    py::gil_scoped_release nogil;
    fss::eval_bits(kv, x.data(), out.mutable_data());
  }
  return out;
}

GateParams params_from_kwargs(const std::string& name, const py::kwargs& kw) {
  GateParams p;
  if (!fss::gate_from_name(name, &p.gate))
    throw py::value_error("unknown gate '" + name + "' (relu, drelu, circa, trunc, square, mul, dcf, dcf_bit)");
  bool have_k = false, have_mode = false, have_shift = false, have_bits = false;
  const bool takes_n = p.gate == Gate::Relu || p.gate == Gate::Drelu || p.gate == Gate::Circa || p.gate == Gate::Trunc;
  for (auto item : kw) {
    const std::string key = py::str(item.first);
    if (key == "n" && takes_n) {
      p.n = small_int(item.second, "n");
    } else if (key == "shift" && (p.gate == Gate::Relu || p.gate == Gate::Circa || p.gate == Gate::Trunc)) {
      p.shift = small_int(item.second, "shift");
      have_shift = true;
    } else if (key == "k" && p.gate == Gate::Circa) {
      p.k = small_int(item.second, "k");
      have_k = true;
    } else if (key == "mode" && p.gate == Gate::Circa) {
      if (!py::isinstance<py::str>(item.second)) throw py::type_error("mode must be a str");
      p.mode = parse_mode(item.second.cast<std::string>());
      have_mode = true;
    } else if (key == "ring" && takes_n) {
      p.out_bits = small_int(item.second, "ring");
    } else if (key == "bits" && (p.gate == Gate::Dcf || p.gate == Gate::DcfBit)) {
      p.n = small_int(item.second, "bits");
      have_bits = true;
    } else if (key == "words" && p.gate == Gate::Dcf) {
      p.words = small_int(item.second, "words");
    } else {
      throw py::type_error("gate '" + name + "' takes no parameter '" + key + "'");
    }
  }
  if (p.gate == Gate::Circa && (!have_k || !have_mode)) throw py::type_error("circa needs parameters k and mode");
  if (p.gate == Gate::Trunc && !have_shift) throw py::type_error("trunc needs parameter shift");
  if ((p.gate == Gate::Dcf || p.gate == Gate::DcfBit) && !have_bits)
    throw py::type_error(name + " needs parameter bits");
  if (p.gate == Gate::Dcf && p.words == 0) p.words = 1;
  fss::validate_params(p);
  return p;
}

const char* kOnlineNote =
    "Online: each party sends its share of xhat once (1 round); only its low online_cost(...)['input_bits'] "
    "bits matter (higher bits of xhat are ignored), i.e. ceil(input_bits / 8) bytes per party, or 8 bytes "
    "as full words.";

// Argument n of the comparison gates (relu, drelu, circa, trunc).
const char* kNNote =
    " n (2..64, default 64): input bit width, the caller promises -2^(n-1) <= x < 2^(n-1); keys and "
    "evaluation then use only the low n (drelu) or n + 1 (relu, trunc, circa; 64 when n = 64) bits of "
    "r_in and xhat. ring (1..64, default 64): the output ring Z_(2^ring); outputs are shares mod 2^ring (higher "
    "bits meaningless), and each ring word of a key takes ceil(ring / 8) bytes.";

}  // namespace

void bind_fss(py::module_& m) {
  m.def(
      "dcf_simd", [](py::object on) {
        if (!on.is_none()) fss::set_dcf_simd(on.cast<bool>());
        return fss::dcf_simd_enabled();
      },
      py::arg("on") = py::none(),
      "Whether ring DCF evaluation uses the AVX-512 + VAES path (bit-identical to the scalar loop); "
      "on=True/False enables or disables it (for tests and benchmarks; default: on where the CPU has it). "
      "Returns the state after the call (False on CPUs without AVX-512 BW and VAES).");
  // ---- gates ----------------------------------------------------------------------------------
  m.def(
      "gen_relu",
      [](const py::bytes& seed, const py::array& r_in, const py::array& r_out, int shift, int n, int ring) {
        return gen_masked(Gate::Relu, seed, r_in, r_out, shift, 0, CircaMode::None, n, ring);
      },
      py::arg("seed"), py::arg("r_in"), py::arg("r_out"), py::arg("shift") = 0, py::arg("n") = 64, py::arg("ring") = 64,
      (std::string("Dealer: ReLU keys. Returns (key0, key1); evaluating both on xhat = x + r_in gives y0 + y1 = "
      "(ReLU(x) >> shift) + e + r_out, e in {0, 1} (e = 0 when shift = 0; e = 1 with probability "
      "(x mod 2^shift) / 2^shift for x >= 0). Requires -2^(n-1) <= x < 2^(n-1); for n = 64 with shift > 0, "
      "-2^62 <= x < 2^62 (n = 64, shift = 0: every x). One ring DCF with a two-word payload on n - 1 bits "
      "(62 for n = 64 with shift > 0); 2080 B per element and party at n = 64, ring = 64.") + kNNote).c_str());
  m.def(
      "eval_relu", [](int party, const py::object& key, const py::array& xhat) {
        return eval_ring(Gate::Relu, party, key, xhat);
      },
      py::arg("party"), py::arg("key"), py::arg("xhat"),
      (std::string("Party 0/1: its share of ReLU(x) >> shift (+ r_out) from the public xhat. ") + kOnlineNote).c_str());

  m.def(
      "gen_drelu",
      [](const py::bytes& seed, const py::array& r_in, const py::array& r_out, int n, int ring) {
        return gen_masked(Gate::Drelu, seed, r_in, r_out, 0, 0, CircaMode::None, n, ring);
      },
      py::arg("seed"), py::arg("r_in"), py::arg("r_out"), py::arg("n") = 64, py::arg("ring") = 64,
      (std::string("Dealer: sign-test keys; y0 + y1 = 1{x >= 0} + r_out, exact for -2^(n-1) <= x < 2^(n-1) "
      "(every x at n = 64). One ring DCF on n - 1 bits.") + kNNote).c_str());
  m.def(
      "eval_drelu", [](int party, const py::object& key, const py::array& xhat) {
        return eval_ring(Gate::Drelu, party, key, xhat);
      },
      py::arg("party"), py::arg("key"), py::arg("xhat"),
      (std::string("Party 0/1: its share of 1{x >= 0} + r_out (a ring element). ") + kOnlineNote).c_str());

  m.def(
      "gen_circa",
      [](const py::bytes& seed, const py::array& r_in, const py::array& r_out, int k, const std::string& mode,
         int shift, int n, int ring) {
        return gen_masked(Gate::Circa, seed, r_in, r_out, shift, k, parse_mode(mode), n, ring);
      },
      py::arg("seed"), py::arg("r_in"), py::arg("r_out"), py::arg("k"), py::arg("mode"), py::arg("shift") = 0,
      py::arg("n") = 64, py::arg("ring") = 64,
      (std::string("Dealer: Circa stochastic-ReLU keys (sign test on x mod 2^n with its k low bits dropped, "
      "m = n - k bits, 0 <= k <= n - 2; mode 'poszero' or 'negpass'). After eval_circa_sign, the bit exchange "
      "and eval_circa_select: y0 + y1 = d * ((x >> shift) + e) + r_out, d the (possibly faulty) sign bit. "
      "Fault law in docs/fss.md. Requires -2^(n-1) + 2^k <= x < 2^(n-1) - 2^k (negpass needs only the upper, "
      "poszero only the lower bound), and -2^62 <= x < 2^62 when n = 64 and shift > 0.") + kNNote).c_str());
  m.def(
      "eval_circa_sign",
      [](int party, const py::object& key, const py::array& xhat) { return eval_bit(Gate::Circa, party, key, xhat); },
      py::arg("party"), py::arg("key"), py::arg("xhat"),
      "Circa step 1 (after the round that opens xhat: 8 bytes per element from each party). Returns this "
      "party's XOR share (uint8 0/1) of the masked sign bit dhat = d xor r_d. Each party sends these N bits "
      "to the other (round 2: 1 bit per element per party, e.g. np.packbits); both XOR the two shares to "
      "get `opened` for eval_circa_select.");
  m.def(
      "eval_circa_select",
      [](int party, const py::object& key, const py::array& xhat, const py::array& opened) {
        check_party(party);
        const ByteView kb = key_bytes(key);
        const KeyView kv = open_keys(kb, {Gate::Circa}, party);
        auto x = vec(xhat, "xhat", static_cast<py::ssize_t>(kv.count));
        if (opened.dtype().kind() != 'u' && opened.dtype().kind() != 'b')
          throw py::type_error("opened must be a uint8 (or bool) array of bits");
        auto o = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(opened);
        if (!o || o.itemsize() != 1 || o.ndim() != 1)
          throw py::type_error("opened must be a 1-D uint8 (or bool) array of bits");
        if (o.shape(0) != static_cast<py::ssize_t>(kv.count))
          throw py::value_error("opened has " + std::to_string(o.shape(0)) + " elements but the key batch has " +
                                std::to_string(kv.count));
        const uint8_t* op = o.data();
        for (py::ssize_t i = 0; i < o.shape(0); ++i)
          if (op[i] > 1) throw py::value_error("opened must hold bits (0 or 1), got " + std::to_string(op[i]));
        py::array_t<uint64_t> out(static_cast<py::ssize_t>(kv.count));
        {
          py::gil_scoped_release nogil;
          fss::eval_circa_select(kv, x.data(), op, out.mutable_data());
        }
        return out;
      },
      py::arg("party"), py::arg("key"), py::arg("xhat"), py::arg("opened"),
      "Circa step 2 (local, after the sign-bit exchange): opened = own share xor the peer's share from "
      "eval_circa_sign. Returns this party's share of d * ((x >> shift) + e) + r_out. Nothing more is sent.");

  m.def(
      "gen_trunc",
      [](const py::bytes& seed, const py::array& r_in, const py::array& r_out, int shift, int n, int ring) {
        return gen_masked(Gate::Trunc, seed, r_in, r_out, shift, 0, CircaMode::None, n, ring);
      },
      py::arg("seed"), py::arg("r_in"), py::arg("r_out"), py::arg("shift"), py::arg("n") = 64, py::arg("ring") = 64,
      (std::string("Dealer: faithful truncation keys; y0 + y1 = (x >> shift) + e + r_out (arithmetic shift), "
      "e in {0, 1} with P(e = 1) = (x mod 2^shift) / 2^shift (unbiased stochastic rounding). Requires "
      "-2^(n-1) <= x < 2^(n-1), and -2^62 <= x < 2^62 at n = 64 (then never a wrap error). 2 ceil(ring / 8) bytes per "
      "element and party.") + kNNote).c_str());
  m.def(
      "eval_trunc", [](int party, const py::object& key, const py::array& xhat) {
        return eval_ring(Gate::Trunc, party, key, xhat);
      },
      py::arg("party"), py::arg("key"), py::arg("xhat"),
      (std::string("Party 0/1: its share of (x >> shift) + e + r_out. ") + kOnlineNote).c_str());

  m.def(
      "gen_square",
      [](const py::bytes& seed, const py::array& r_in, const py::array& r_out) {
        return gen_masked(Gate::Square, seed, r_in, r_out);
      },
      py::arg("seed"), py::arg("r_in"), py::arg("r_out"), "Dealer: square keys; y0 + y1 = x^2 + r_out (no truncation).");
  m.def(
      "eval_square", [](int party, const py::object& key, const py::array& xhat) {
        return eval_ring(Gate::Square, party, key, xhat);
      },
      py::arg("party"), py::arg("key"), py::arg("xhat"),
      (std::string("Party 0/1: its share of x^2 + r_out. ") + kOnlineNote).c_str());

  m.def(
      "gen_mul",
      [](const py::bytes& seed, const py::array& r_x, const py::array& r_y, const py::array& r_out) {
        auto rx = vec(r_x, "r_x");
        auto ry = vec(r_y, "r_y", rx.shape(0), "r_x");
        auto ro = vec(r_out, "r_out", rx.shape(0), "r_x");
        GateParams p;
        p.gate = Gate::Mul;
        return generate(p, seed, rx.data(), ry.data(), nullptr, ro.data(), static_cast<size_t>(rx.shape(0)));
      },
      py::arg("seed"), py::arg("r_x"), py::arg("r_y"), py::arg("r_out"),
      "Dealer: elementwise product keys; y0 + y1 = x*y + r_out from xhat = x + r_x, yhat = y + r_y.");
  m.def(
      "eval_mul",
      [](int party, const py::object& key, const py::array& xhat, const py::array& yhat) {
        return eval_ring(Gate::Mul, party, key, xhat, &yhat);
      },
      py::arg("party"), py::arg("key"), py::arg("xhat"), py::arg("yhat"),
      "Party 0/1: its share of x*y + r_out. Online: both xhat and yhat are opened (1 round, 32 bytes per "
      "element for both parties together).");

  // ---- raw DCFs (building blocks, tested against the reference) --------------------------------
  m.def(
      "gen_dcf",
      [](const py::bytes& seed, const py::array& alpha, const py::array& beta, int bits) {
        GateParams p;
        p.gate = Gate::Dcf;
        p.n = bits;
        auto a = vec(alpha, "alpha");
        U64Array b = as_u64(beta, "beta");
        if (b.ndim() == 1)
          p.words = 1;
        else if (b.ndim() == 2)
          p.words = static_cast<int>(b.shape(1));
        else
          throw py::value_error("beta must have shape (N,) or (N, words)");
        if (b.shape(0) != a.shape(0))
          throw py::value_error("beta has " + std::to_string(b.shape(0)) + " rows but alpha has " +
                                std::to_string(a.shape(0)));
        fss::validate_params(p);
        const uint64_t lim = bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
        for (py::ssize_t i = 0; i < a.shape(0); ++i)
          if (a.data()[i] > lim)
            throw py::value_error("alpha[" + std::to_string(i) + "] does not fit in " + std::to_string(bits) + " bits");
        return generate(p, seed, a.data(), nullptr, b.data(), nullptr, static_cast<size_t>(a.shape(0)));
      },
      py::arg("seed"), py::arg("alpha"), py::arg("beta"), py::arg("bits"),
      "Dealer: DCF keys for f_i(x) = beta_i * [x < alpha_i] on `bits`-bit unsigned inputs; beta of shape (N,) "
      "or (N, 2) ring words.");
  m.def(
      "eval_dcf", [](int party, const py::object& key, const py::array& x) {
        return eval_ring(Gate::Dcf, party, key, x);
      },
      py::arg("party"), py::arg("key"), py::arg("x"),
      "Party 0/1: additive shares of beta * [x < alpha] (shape (N,) for one payload word, else (N, words)).");
  m.def(
      "gen_dcf_bit",
      [](const py::bytes& seed, const py::array& alpha, int bits) {
        GateParams p;
        p.gate = Gate::DcfBit;
        p.n = bits;
        fss::validate_params(p);
        auto a = vec(alpha, "alpha");
        const uint64_t lim = bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
        for (py::ssize_t i = 0; i < a.shape(0); ++i)
          if (a.data()[i] > lim)
            throw py::value_error("alpha[" + std::to_string(i) + "] does not fit in " + std::to_string(bits) + " bits");
        return generate(p, seed, a.data(), nullptr, nullptr, nullptr, static_cast<size_t>(a.shape(0)));
      },
      py::arg("seed"), py::arg("alpha"), py::arg("bits"),
      "Dealer: bit-output DCF keys (early termination) for [x < alpha_i] on `bits`-bit inputs.");
  m.def(
      "eval_dcf_bit", [](int party, const py::object& key, const py::array& x) {
        return eval_bit(Gate::DcfBit, party, key, x);
      },
      py::arg("party"), py::arg("key"), py::arg("x"), "Party 0/1: XOR shares (uint8 0/1) of [x < alpha].");

  // ---- sizes and costs -------------------------------------------------------------------------
  m.def(
      "key_bytes_per_element",
      [](const std::string& gate, const py::kwargs& kw) {
        return fss::key_bytes_per_element(params_from_kwargs(gate, kw));
      },
      py::arg("gate"),
      "Key bytes per element and party (the batch adds a 32-byte header), e.g. "
      "key_bytes_per_element('circa', k=40, mode='poszero') or key_bytes_per_element('relu', n=40).");
  m.def(
      "online_cost",
      [](const std::string& gate, const py::kwargs& kw) {
        const auto c = fss::online_cost(params_from_kwargs(gate, kw));
        py::dict d;
        d["bytes"] = c.bytes;
        d["rounds"] = c.rounds;
        d["input_bits"] = c.input_bits;
        d["bits"] = c.bits;
        d["word_bytes"] = c.word_bytes;
        return d;
      },
      py::arg("gate"),
      "Online cost per element, both parties together: 'input_bits' (low bits of xhat the gate reads: each "
      "party's share in the opening), 'bits' (2 * input_bits, plus 2 sign bits for circa), 'bytes' (each "
      "share packed in ceil(input_bits / 8) bytes, plus 0.25 for circa's sign bits), 'word_bytes' (shares "
      "sent as full 8-byte words, as the engine does today: 16, circa 16.25, mul 32), 'rounds'.");
  m.def(
      "key_info",
      [](const py::object& key) {
        const ByteView kb = key_bytes(key);
        const KeyView kv = fss::parse_keys(kb.data, kb.len);
        py::dict d;
        d["gate"] = fss::gate_name(kv.params.gate);
        d["party"] = kv.party;
        d["n"] = kv.params.n;
        d["k"] = kv.params.k;
        d["mode"] = fss::mode_name(kv.params.mode);
        d["shift"] = kv.params.shift;
        d["words"] = kv.params.words;
        d["ring"] = kv.params.out_bits;
        d["count"] = kv.count;
        d["bytes_per_element"] = kv.elem_bytes;
        return d;
      },
      py::arg("key"), "Parses and validates a key batch header; returns its fields (ValueError if malformed).");
  m.attr("FSS_KEY_HEADER_BYTES") = fss::kHeaderBytes;
}

}  // namespace pi_native
