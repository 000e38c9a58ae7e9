#include <string>

#include "bindings.hpp"
#include "pi_native/ring.hpp"

namespace pi_native {
namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

size_t positive(py::ssize_t v, const char* what) {
  if (v < 0) throw py::value_error(std::string(what) + " must be non-negative");
  return static_cast<size_t>(v);
}

}  // namespace

void bind_ring(py::module_& m) {
  m.def(
      "ring_matmul",
      [](const py::array& a_in, const py::array& b_in) {
        auto a = as_u64(a_in, "a"), b = as_u64(b_in, "b");
        if (a.ndim() != 2 || b.ndim() != 2 || a.shape(1) != b.shape(0))
          throw py::value_error("ring_matmul needs a (M, K) and b (K, N); got " + shape_str(a) + " and " +
                                shape_str(b));
        const size_t M = a.shape(0), K = a.shape(1), N = b.shape(1);
        py::array_t<uint64_t> c({a.shape(0), b.shape(1)});
        {
          py::gil_scoped_release nogil;
          ring_matmul(a.data(), b.data(), c.mutable_data(), M, K, N);
        }
        return c;
      },
      py::arg("a"), py::arg("b"), "Matrix product mod 2^64 of uint64 arrays (multithreaded).");

  m.def(
      "ring_conv2d",
      [](const py::array& x_in, const py::array& w_in, std::pair<py::ssize_t, py::ssize_t> stride,
         std::pair<py::ssize_t, py::ssize_t> padding) {
        auto x = as_u64(x_in, "x"), w = as_u64(w_in, "weight");
        if (x.ndim() != 4 || w.ndim() != 4)
          throw py::value_error("ring_conv2d needs x (N, C, H, W) and weight (OC, C, KH, KW); got " +
                                shape_str(x) + " and " + shape_str(w));
        if (x.shape(1) != w.shape(1))
          throw py::value_error("input has " + std::to_string(x.shape(1)) + " channels but weight expects " +
                                std::to_string(w.shape(1)) + " (groups=1 only)");
        if (stride.first <= 0 || stride.second <= 0) throw py::value_error("stride must be positive");
        Conv2dShape s{positive(x.shape(0), "batch"), positive(x.shape(1), "channels"),
                      positive(x.shape(2), "height"), positive(x.shape(3), "width"),
                      positive(w.shape(0), "out channels"), positive(w.shape(2), "kh"),
                      positive(w.shape(3), "kw"), static_cast<size_t>(stride.first),
                      static_cast<size_t>(stride.second), positive(padding.first, "padding"),
                      positive(padding.second, "padding")};
        if (s.height + 2 * s.pad_h < s.kh || s.width + 2 * s.pad_w < s.kw)
          throw py::value_error("kernel " + shape_str(w) + " is larger than the padded input " + shape_str(x));
        py::array_t<uint64_t> y({x.shape(0), w.shape(0), static_cast<py::ssize_t>(s.out_h()),
                                 static_cast<py::ssize_t>(s.out_w())});
        {
          py::gil_scoped_release nogil;
          ring_conv2d(x.data(), w.data(), y.mutable_data(), s);
        }
        return y;
      },
      py::arg("x"), py::arg("weight"), py::arg("stride") = std::make_pair(1, 1),
      py::arg("padding") = std::make_pair(0, 0),
      "2-D cross-correlation (PyTorch conv2d semantics, groups=1) mod 2^64.");

  m.def(
      "poly_eval",
      [](int party, const py::array& key_in, const py::array& opened_in, const py::object& c2_in, int w, int s,
         int ring, int out_shift) {
        auto key = as_u64(key_in, "key"), opened = as_u64(opened_in, "opened");
        if (party != 0 && party != 1) throw py::value_error("party must be 0 or 1");
        if (w < 2 || w > 64 || s < 0 || s > w - 2 || ring < 1 || ring > 64 || out_shift < 0 || ring + out_shift > 128)
          throw py::value_error("poly_eval needs 2 ≤ w ≤ 64, 0 ≤ s ≤ w − 2, 1 ≤ ring ≤ 64, ring + out_shift ≤ 128");
        const size_t words = ring + out_shift > 64 ? 2 : 1, n = opened.ndim() == 1 ? opened.shape(0) : 0;
        if (opened.ndim() != 1 || key.ndim() != 3 || static_cast<size_t>(key.shape(0)) != words ||
            key.shape(1) != 4 || static_cast<size_t>(key.shape(2)) != n)
          throw py::value_error("poly_eval needs opened (n,) and key (" + std::to_string(words) + ", 4, n); got " +
                                shape_str(opened) + " and " + shape_str(key));
        U64Array c2;
        if (party == 1) {
          if (c2_in.is_none()) throw py::value_error("party 1 needs the coefficients c2");
          c2 = as_u64(c2_in.cast<py::array>(), "c2");
          if (c2.ndim() != 1 || static_cast<size_t>(c2.shape(0)) != n)
            throw py::value_error("c2 must have shape (n,), got " + shape_str(c2));
        }
        py::array_t<uint64_t> y(static_cast<py::ssize_t>(n));
        PolyShape p{n, words, static_cast<unsigned>(w), static_cast<unsigned>(s), static_cast<unsigned>(ring),
                    static_cast<unsigned>(out_shift)};
        {
          py::gil_scoped_release nogil;
          poly_eval(key.data(), opened.data(), party == 1 ? c2.data() : nullptr, y.mutable_data(), p);
        }
        return y;
      },
      py::arg("party"), py::arg("key"), py::arg("opened"), py::arg("c2"), py::arg("w"), py::arg("s"),
      py::arg("ring"), py::arg("out_shift"),
      "The poly gate's share of one party, shifted down by out_shift, mod 2^ring (protocols.gates.poly_eval).");
}

}  // namespace pi_native
