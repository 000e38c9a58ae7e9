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

void bind_prg(py::module_& m);
void bind_ring(py::module_& m);
void bind_fss(py::module_& m);
void bind_allocation(py::module_& m);
void bind_he(py::module_& m);
void bind_gc(py::module_& m);
void bind_ot_mul(py::module_& m);
void bind_memory(py::module_& m);

}  // namespace pi_native
