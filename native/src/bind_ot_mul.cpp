// Python bindings of the OT products' bit packing (ot_mul.hpp): checks shapes, widths and the
// message length here, so a malformed message is a ValueError, never a read past the buffer.
#include <cstring>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "pi_native/ot_mul.hpp"

namespace pi_native {
namespace {

std::vector<uint8_t> widths_of(const py::array& a) {
  if (a.dtype().kind() != 'u' && a.dtype().kind() != 'i')
    throw py::type_error("widths must be an integer array");
  auto w = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!w || w.ndim() != 1) throw py::value_error("widths must be a 1-D integer array");
  std::vector<uint8_t> out(static_cast<size_t>(w.shape(0)));
  for (py::ssize_t j = 0; j < w.shape(0); ++j) {
    if (w.data()[j] < 0 || w.data()[j] > 64) throw py::value_error("widths must lie in [0, 64]");
    out[static_cast<size_t>(j)] = static_cast<uint8_t>(w.data()[j]);
  }
  return out;
}

}  // namespace

void bind_ot_mul(py::module_& m) {
  m.def(
      "pack_bits",
      [](const py::array& values_in, const py::array& widths_in) {
        auto v = as_u64(values_in, "values");
        const auto w = widths_of(widths_in);
        if (v.ndim() != 2 || static_cast<size_t>(v.shape(1)) != w.size())
          throw py::value_error("values must have shape (n, " + std::to_string(w.size()) + ")");
        const size_t n = static_cast<size_t>(v.shape(0));
        const size_t len = ot_mul::packed_bytes(n, w.data(), w.size());
        PyObject* o = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(len));
        if (!o) throw py::error_already_set();
        auto* out = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(o));
        {
          py::gil_scoped_release nogil;
          ot_mul::pack_bits(v.data(), n, w.data(), w.size(), out);
        }
        return py::reinterpret_steal<py::bytes>(o);
      },
      py::arg("values"), py::arg("widths"),
      "Row-major (n, K) uint64 → bytes: column j's low widths[j] bits, one LSB-first stream, zero-padded "
      "to a byte (ceil(n·Σwidths/8) bytes).");
  m.def(
      "unpack_bits",
      [](const py::bytes& data, const py::array& widths_in, py::ssize_t n) {
        if (n < 0) throw py::value_error("n must be non-negative");
        const auto w = widths_of(widths_in);
        const std::string s = data;
        const size_t len = ot_mul::packed_bytes(static_cast<size_t>(n), w.data(), w.size());
        if (s.size() != len)
          throw py::value_error("packed message: " + std::to_string(s.size()) + " bytes, expected " +
                                std::to_string(len) + " for " + std::to_string(n) + " rows (truncated or padded)");
        py::array_t<uint64_t> out({n, static_cast<py::ssize_t>(w.size())});
        bool ok;
        {
          py::gil_scoped_release nogil;
          ok = ot_mul::unpack_bits(reinterpret_cast<const uint8_t*>(s.data()), static_cast<size_t>(n), w.data(),
                                   w.size(), out.mutable_data());
        }
        if (!ok) throw py::value_error("packed message: padding bits are set (not this layout)");
        return out;
      },
      py::arg("data"), py::arg("widths"), py::arg("n"), "Inverse of pack_bits: an (n, K) uint64 array.");
}

}  // namespace pi_native
