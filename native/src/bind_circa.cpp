// Circa's one-round product step over the garbled sign test (docs/two_party.md, "Circa in one
// round"), each side's per-site arithmetic in one pass: the numpy version made ~40 passes over
// the sites per layer and side, a third of Circa's online CPU outside TLS and the circuits.
// Everything is mod 2^l; the peer's words are checked here (a ValueError names what was wrong).
#include <cstring>
#include <string>
#include <vector>

#include "bindings.hpp"

namespace pi_native {
namespace {

uint64_t low_mask(int bits) { return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

int check_l(int l) {
  if (l < 1 || l > 64) throw py::value_error("l must be in [1, 64], got " + std::to_string(l));
  return l;
}

// A C-contiguous uint64 vector of n entries (n < 0: any, returned through n).
U64Array words(const py::array& a, const char* name, py::ssize_t& n) {
  U64Array v = as_u64(a, name);
  if (v.ndim() != 1) throw py::value_error(std::string(name) + " must be a 1-D array");
  if (n >= 0 && v.shape(0) != n)
    throw py::value_error(std::string(name) + " has " + std::to_string(v.shape(0)) + " entries, expected " +
                          std::to_string(n));
  n = v.shape(0);
  return v;
}

// The garbled circuit's output bits: (n,) (d's share) or (n, 2) (with a shift: d's and d ∧ w's).
py::array_t<uint8_t, py::array::c_style> out_bits(const py::array& a, const char* name, py::ssize_t n, int& per) {
  auto v = py::array_t<uint8_t, py::array::c_style>::ensure(a);
  if (!v || a.dtype().kind() != 'u' || a.itemsize() != 1 || v.shape(0) != n || v.ndim() > 2 ||
      (v.ndim() == 2 && v.shape(1) != 2))
    throw py::value_error(std::string(name) + " must be uint8 bits of shape (" + std::to_string(n) + ",) or (" +
                          std::to_string(n) + ", 2)");
  per = v.ndim() == 2 ? 2 : 1;
  return v;
}

// Ring elements on the wire: ceil(l/8) little-endian bytes each (Ring.pack), refused when an
// element has bits at or above l.
void load_packed(const ByteView& b, size_t count, int l, std::vector<uint64_t>& out, const char* what) {
  const size_t eb = static_cast<size_t>((l + 7) / 8);
  if (b.len != count * eb)
    throw py::value_error(std::string(what) + ": " + std::to_string(b.len) + " bytes, expected " +
                          std::to_string(count) + " ring elements of " + std::to_string(eb) + " bytes");
  out.resize(count);
  const uint64_t m = low_mask(l), bytes = low_mask(static_cast<int>(8 * eb));
  uint64_t high = 0;   // any bit at or above l, of any element
  for (size_t i = 0; i < count; ++i) {
    uint64_t x = 0;   // little-endian hosts (x86-64, aarch64); 8-byte loads inside the buffer
    if (i * eb + 8 <= count * eb)
      std::memcpy(&x, b.data + i * eb, 8);
    else
      std::memcpy(&x, b.data + i * eb, eb);
    x &= bytes;
    high |= x & ~m;
    out[i] = x;
  }
  if (high) throw py::value_error(std::string(what) + ": malformed ring elements: packed ring elements exceed " +
                                  std::to_string(l) + " bits");
}

// Element i of `count` at dst = start + i·eb: 8-byte stores while they stay inside the count
// elements (the later elements' bytes they overwrite are written after, in ascending order).
void store_packed(uint8_t* dst, uint64_t x, size_t eb, size_t i, size_t count) {
  if (i * eb + 8 <= count * eb)
    std::memcpy(dst, &x, 8);
  else
    std::memcpy(dst, &x, eb);
}

const uint64_t* opt_words(const py::object& o, const char* name, py::ssize_t n, U64Array& hold) {
  if (o.is_none()) return nullptr;
  hold = words(o.cast<py::array>(), name, n);
  return hold.data();
}

}  // namespace

void bind_circa(py::module_& m) {
  // Client: after the evaluation, its message f, w(, v), q to the server (one parcel's parts).
  m.def(
      "circa_client_reply",
      [](const py::array& e_in, const py::array& c1_in, const py::array& a_in, const py::array& d_s_in,
         const py::object& d_t_in, const py::array& r_c1_in, const py::array& s0_in, const py::object& s0_t_in,
         const py::array& s_out_in, const py::object& vu_in, uint64_t wrap_k, int l) {
        check_l(l);
        py::ssize_t n = -1;
        auto a = words(a_in, "a", n);
        auto d_s = words(d_s_in, "d_s", n), r_c1 = words(r_c1_in, "r_c1", n), s0 = words(s0_in, "s0", n),
             s_out = words(s_out_in, "s_out", n);
        int per = 1;
        auto e = out_bits(e_in, "e", n, per);
        U64Array hold_t, hold_s0t;
        const uint64_t* d_t = opt_words(d_t_in, "d_t", n, hold_t);
        const uint64_t* s0_t = opt_words(s0_t_in, "s0_t", n, hold_s0t);
        if ((per == 2) != (d_t != nullptr) || (per == 2) != (s0_t != nullptr))
          throw py::value_error("d_t and s0_t go with the wrap bit's outputs (Circa with a shift), and only then");
        auto c1 = py::array_t<uint8_t, py::array::c_style>::ensure(c1_in);
        if (!c1 || c1.ndim() != 1 || c1.shape(0) != (n + 7) / 8)
          throw py::value_error("c1 must be the " + std::to_string(n) + " choice bits packed (np.packbits)");
        const size_t N = static_cast<size_t>(n), eb = static_cast<size_t>((l + 7) / 8), cnt = per == 2 ? 3 : 2;
        std::vector<uint64_t> vu;
        load_packed(byte_view(vu_in, "V − u"), N, l, vu, "V − u");
        py::array_t<uint8_t> f_out(static_cast<py::ssize_t>((N + 7) / 8));
        py::array_t<uint8_t> w_out({static_cast<py::ssize_t>(cnt * N), static_cast<py::ssize_t>(eb)});
        uint8_t* f = f_out.mutable_data();
        uint8_t* w = w_out.mutable_data();
        std::memset(f, 0, (N + 7) / 8);
        const uint64_t mk = low_mask(l);
        const uint8_t *eb_bits = e.data(), *c1b = c1.data();
        const uint64_t *pa = a.data(), *pds = d_s.data(), *prc = r_c1.data(), *ps0 = s0.data(), *pso = s_out.data();
        {
          py::gil_scoped_release nogil;
          for (size_t i = 0; i < N; ++i) {
            const uint64_t ei = eb_bits[i * per] & 1, ci = (c1b[i >> 3] >> (7 - (i & 7))) & 1, fi = ei ^ ci;
            f[i >> 3] |= static_cast<uint8_t>(fi << (i & 7));
            // w = (1 − 2e)·a + S0 − S1; z_E = e·(a + V − u) + (1 − 2f)·R_c1 − S0 + s_out
            const uint64_t wi = (ei ? 0 - pa[i] : pa[i]) + pds[i];
            uint64_t z = ei * (pa[i] + vu[i]) + (fi ? 0 - prc[i] : prc[i]) - ps0[i] + pso[i];
            store_packed(w + i * eb, wi & mk, eb, i, N);
            if (per == 2) {   // v = (1 − 2e_t)·K + S'0 − S'1; z_E += K·e_t − S'0
              const uint64_t ti = eb_bits[i * 2 + 1] & 1;
              store_packed(w + (N + i) * eb, ((ti ? 0 - wrap_k : wrap_k) + d_t[i]) & mk, eb, i, N);
              z += ti * wrap_k - s0_t[i];
            }
            store_packed(w + ((cnt - 1) * N + i) * eb, z & mk, eb, i, N);
          }
        }
        return py::make_tuple(f_out, w_out);
      },
      py::arg("e"), py::arg("c1"), py::arg("a"), py::arg("d_s"), py::arg("d_t"), py::arg("r_c1"), py::arg("s0"),
      py::arg("s0_t"), py::arg("s_out"), py::arg("vu"), py::arg("wrap_k"), py::arg("l"),
      "Circa's client reply in one pass: (f packed little-endian, the packed words w(, v), q) from the "
      "circuit's output bits e ((n,) or (n, 2)), c1 (np.packbits), its share α, S0 − S1 (S'0 − S'1), R_c1, "
      "S0 (S'0), its re-sharing mask s_out and the server's packed V − u (checked: a ValueError).");

  // Server, with its labels: V − u for the client and the part of its share that needs no reply.
  m.def(
      "circa_server_send",
      [](const py::array& b_in, const py::array& share_in, const py::array& r0_in, const py::array& r1_in,
         const py::array& s_rho_in, const py::object& s_rt_in, int bits, int shift, int l) {
        check_l(l);
        if (bits < 1 || bits > l || shift < 0 || shift >= bits)
          throw py::value_error("bits must be in [1, l] and shift in [0, bits)");
        py::ssize_t n = -1;
        auto b = words(b_in, "b", n);
        auto r0 = words(r0_in, "r0", n), r1 = words(r1_in, "r1", n), s_rho = words(s_rho_in, "s_rho", n);
        int per = 1;
        auto sh = out_bits(share_in, "share", n, per);
        U64Array hold;
        const uint64_t* s_rt = opt_words(s_rt_in, "s_rt", n, hold);
        if ((per == 2) != (s_rt != nullptr) || (per == 2) != (shift > 0))
          throw py::value_error("s_rt and the wrap bit's share go with a shift, and only then");
        const size_t N = static_cast<size_t>(n), eb = static_cast<size_t>((l + 7) / 8);
        py::array_t<uint8_t> vu_out({static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(eb)});
        py::array_t<uint64_t> base_out(static_cast<py::ssize_t>(N));
        uint8_t* vu = vu_out.mutable_data();
        uint64_t* base = base_out.mutable_data();
        const uint64_t mk = low_mask(l), lo = low_mask(bits);
        const uint64_t off = shift ? (uint64_t{1} << (bits - 1)) - 1 : 0;
        const uint64_t sub = shift ? (uint64_t{1} << (bits - 1 - shift)) - 1 : 0;
        const uint64_t *pb = b.data(), *p0 = r0.data(), *p1 = r1.data(), *ps = s_rho.data();
        const uint8_t* rho = sh.data();
        {
          py::gil_scoped_release nogil;
          for (size_t i = 0; i < N; ++i) {
            // β = ((b + 2^(n−1) − 1) mod 2^n) >> s − 2^(n−1−s) + 1 with a shift, else b
            const uint64_t beta = shift ? (((pb[i] + off) & lo) >> shift) - sub : pb[i];
            const uint64_t ri = rho[i * per] & 1;
            // V − u = (1 − 2ρ)·β − (R1 − R0); base = ρ·β − R0 + S_ρ (+ S'_ρt)
            store_packed(vu + i * eb, ((ri ? 0 - beta : beta) - p1[i] + p0[i]) & mk, eb, i, N);
            base[i] = (ri * beta - p0[i] + ps[i] + (per == 2 ? s_rt[i] : 0)) & mk;
          }
        }
        return py::make_tuple(vu_out, base_out);
      },
      py::arg("b"), py::arg("share"), py::arg("r0"), py::arg("r1"), py::arg("s_rho"), py::arg("s_rt"),
      py::arg("bits"), py::arg("shift"), py::arg("l"),
      "Circa's server step with its labels: (packed V − u, its share's part that needs no reply) from its "
      "share b, the circuit's output mask share ρ ((n,) or (n, 2) with a shift), the product OT's R0, R1, "
      "S_ρ (and S'_ρt).");

  // Server, on the client's reply: its share of d·((x >> s) + e) + s_out.
  m.def(
      "circa_server_share",
      [](const py::object& f_in, const py::object& words_in, const py::array& base_in, const py::array& r0_in,
         const py::array& r1_in, const py::array& share_in, int l) {
        check_l(l);
        py::ssize_t n = -1;
        auto base = words(base_in, "base", n);
        auto r0 = words(r0_in, "r0", n), r1 = words(r1_in, "r1", n);
        int per = 1;
        auto sh = out_bits(share_in, "share", n, per);
        const size_t N = static_cast<size_t>(n), cnt = per == 2 ? 3 : 2;
        ByteView fb = byte_view(f_in, "f");
        if (fb.len != (N + 7) / 8)
          throw py::value_error("f: expected " + std::to_string(N) + " bits in " + std::to_string((N + 7) / 8) +
                                " bytes, received " + std::to_string(fb.len) + " bytes");
        if (N % 8 && (fb.data[N / 8] >> (N % 8)))
          throw py::value_error("f: padding bits are set");
        std::vector<uint64_t> w;
        load_packed(byte_view(words_in, "words"), cnt * N, l, w, per == 2 ? "w, v, q" : "w, q");
        py::array_t<uint64_t> y_out(static_cast<py::ssize_t>(N));
        uint64_t* y = y_out.mutable_data();
        const uint64_t mk = low_mask(l);
        const uint64_t *pb = base.data(), *p0 = r0.data(), *p1 = r1.data();
        const uint8_t *rho = sh.data(), *f = fb.data;
        {
          py::gil_scoped_release nogil;
          for (size_t i = 0; i < N; ++i) {
            // z_G + q = base + (f ? R0 + R1 : 0) + ρ·w + q (+ ρ_t·v)
            const uint64_t fi = (f[i >> 3] >> (i & 7)) & 1, ri = rho[i * per] & 1;
            uint64_t s = pb[i] + (fi ? p0[i] + p1[i] : 0) + ri * w[i] + w[(cnt - 1) * N + i];
            if (per == 2) s += (rho[i * 2 + 1] & 1) * w[N + i];
            y[i] = s & mk;
          }
        }
        return y_out;
      },
      py::arg("f"), py::arg("words"), py::arg("base"), py::arg("r0"), py::arg("r1"), py::arg("share"), py::arg("l"),
      "The server's share (reduced mod 2^l) from the client's reply (f packed little-endian, the packed words "
      "w(, v), q: checked, a ValueError), its base from circa_server_send, R0, R1 and its output mask share.");
}

}  // namespace pi_native
