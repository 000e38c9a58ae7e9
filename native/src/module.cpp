#include "bindings.hpp"
#include "pi_native/aes.hpp"
#include "pi_native/parallel.hpp"

PYBIND11_MODULE(pi_native, m) {
  using namespace pi_native;
  m.doc() = "Native kernels of the private-inference engine: AES PRG, ring GEMM/conv, FSS gates, budget allocation.";
  m.def("has_aesni", &cpu_has_aesni, "True when the CPU has AES-NI (the fast AES path is used).");
  m.def("get_num_threads", &num_threads, "Threads used by the multithreaded kernels.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the kernel thread count; n <= 0 restores the default (PI_NUM_THREADS or all cores).");
  bind_prg(m);
  bind_ring(m);
  bind_fss(m);
  bind_allocation(m);
  bind_he(m);
  bind_gc(m);
  bind_ot_mul(m);
  bind_circa(m);
  bind_memory(m);
}
