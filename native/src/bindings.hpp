// Each area of the native core registers its Python bindings from its own file; thin
// wrappers here check dtypes and shapes so nothing malformed reaches a kernel.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace pi_native {
namespace py = pybind11;

using U64Array = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;

// Requires a C-contiguous uint64 array (no silent conversion of signed or float input).
inline U64Array as_u64(const py::array& a, const char* name) {
  if (!py::isinstance<py::array_t<uint64_t>>(a) || a.dtype().kind() != 'u' || a.itemsize() != 8)
    throw py::type_error(std::string(name) + " must be a numpy uint64 array (ring elements), got dtype " +
                         std::string(py::str(a.dtype())));
  return U64Array::ensure(a);
}

// Bytes viewed without copying: bytes, bytearray, memoryview or any contiguous 1-D byte buffer.
// `owner` holds a reference to the object, so `data` lives as long as the view.
struct ByteView {
  py::object owner;
  py::buffer_info info;
  const uint8_t* data = nullptr;
  size_t len = 0;
};

// `what` names the argument in the error message, `source` says where valid input comes from.
inline ByteView byte_view(const py::object& o, const std::string& what,
                          const char* source = "or a byte buffer") {
  ByteView b;
  b.owner = o;
  if (PyBytes_Check(o.ptr())) {
    char* p = nullptr;
    Py_ssize_t n = 0;
    if (PyBytes_AsStringAndSize(o.ptr(), &p, &n) != 0) throw py::error_already_set();
    b.data = reinterpret_cast<const uint8_t*>(p);
    b.len = static_cast<size_t>(n);
    return b;
  }
  if (!PyObject_CheckBuffer(o.ptr()))
    throw py::type_error(what + " must be bytes (" + source + "), got " +
                         std::string(py::str(py::type::handle_of(o).attr("__name__"))));
  b.info = py::reinterpret_borrow<py::buffer>(o).request();
  if (b.info.itemsize != 1 || b.info.ndim != 1 || (b.info.shape[0] > 1 && b.info.strides[0] != 1))
    throw py::type_error(what + " must be a contiguous 1-D byte buffer (bytes, bytearray, memoryview)");
  b.data = static_cast<const uint8_t*>(b.info.ptr);
  b.len = static_cast<size_t>(b.info.shape[0]);
  return b;
}

void bind_prg(py::module_& m);
void bind_ring(py::module_& m);
void bind_fss(py::module_& m);
void bind_allocation(py::module_& m);
void bind_he(py::module_& m);
void bind_gc(py::module_& m);
void bind_ot_mul(py::module_& m);
void bind_circa(py::module_& m);
void bind_memory(py::module_& m);

}  // namespace pi_native
