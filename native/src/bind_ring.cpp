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
}

}  // namespace pi_native
