// Python bindings of the BFV layer (pi_native.he): polynomials in and out as numpy uint64
// arrays, ciphertexts as bytes; the heavy calls release the GIL.
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "pi_native/he.hpp"

namespace pi_native {

namespace {

using namespace he;

std::vector<uint32_t> keep_list(const py::array& a) {
  auto arr = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!arr || arr.ndim() != 1) throw py::value_error("keep must be a 1-D array of coefficient indices");
  return std::vector<uint32_t>(arr.data(), arr.data() + arr.size());
}

U64Array polys_2d(const py::array& a, const char* name, size_t n) {
  U64Array arr = as_u64(a, name);
  if (arr.ndim() != 2 || static_cast<size_t>(arr.shape(1)) != n)
    throw py::value_error(std::string(name) + " must have shape (count, " + std::to_string(n) + ")");
  return arr;
}

std::vector<std::string> bytes_list(const py::list& items, const char* what) {
  std::vector<std::string> out;
  out.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (!py::isinstance<py::bytes>(items[i]))
      throw py::type_error(std::string(what) + " " + std::to_string(i) + " must be bytes");
    out.push_back(items[i].cast<std::string>());
  }
  return out;
}

py::list to_bytes_list(const std::vector<std::string>& items) {
  py::list out;
  for (const auto& s : items) out.append(py::bytes(s));
  return out;
}

}  // namespace

void bind_he(py::module_& m) {
  auto h = m.def_submodule("he", "BFV (Microsoft SEAL 4.1) with t = 2^l: seeded symmetric queries, flooded replies.");
  h.attr("SEAL_VERSION") = std::to_string(SEAL_VERSION_MAJOR) + "." + std::to_string(SEAL_VERSION_MINOR) + "." +
                           std::to_string(SEAL_VERSION_PATCH);
  h.def("max_bit_count", [](size_t n) { return seal::CoeffModulus::MaxBitCount(n, seal::sec_level_type::tc128); },
        py::arg("n"), "Largest total coefficient-modulus bit count SEAL allows at 128-bit security for degree n.");

  py::class_<Context, std::shared_ptr<Context>>(h, "Context")
      .def(py::init<size_t, const std::vector<int>&, int>(), py::arg("n"), py::arg("prime_bits"), py::arg("plain_bits"))
      .def_property_readonly("n", &Context::n)
      .def_property_readonly("plain_bits", &Context::plain_bits)
      .def_property_readonly("max_level", &Context::max_level)
      .def("primes", &Context::primes, "All primes of the chain (Python ints), the special prime last.");

  py::class_<Kernels, std::shared_ptr<Kernels>>(h, "Kernels")
      .def_readonly("g_in", &Kernels::g_in)
      .def_readonly("g_out", &Kernels::g_out)
      .def_readonly("level", &Kernels::level)
      .def_property_readonly("nonzero", [](const Kernels& k) {
        return static_cast<size_t>(std::count(k.zero.begin(), k.zero.end(), false));
      });

  py::class_<Client>(h, "Client")
      .def(py::init<std::shared_ptr<const Context>>(), py::arg("context"))
      .def("public_key", [](const Client& c) { return py::bytes(c.public_key()); })
      .def("encrypt", [](const Client& c, const py::array& polys, size_t level) {
             U64Array arr = polys_2d(polys, "polys", c.context().n());
             std::vector<std::string> out;
             {
               py::gil_scoped_release release;
               out = c.encrypt(arr.data(), static_cast<size_t>(arr.shape(0)), level);
             }
             return to_bytes_list(out);
           }, py::arg("polys"), py::arg("level"))
      .def("decrypt", [](const Client& c, const py::bytes& reply, size_t level, const py::array& keep,
                         bool with_noise) {
             const size_t n = c.context().n();
             auto kv = keep_list(keep);
             std::string r = reply;
             U64Array out(static_cast<py::ssize_t>(n));
             py::array_t<double> noise(static_cast<py::ssize_t>(with_noise ? kv.size() : 0));
             double bits;
             {
               py::gil_scoped_release release;
               bits = c.decrypt(r, level, kv, out.mutable_data(), with_noise ? noise.mutable_data() : nullptr);
             }
             return py::make_tuple(out, bits, noise);
           }, py::arg("reply"), py::arg("level"), py::arg("keep"), py::arg("with_noise") = false,
           "(message coefficients, noise bits left over `keep`, t·e per kept coefficient if with_noise)");

  py::class_<Server>(h, "Server")
      .def(py::init([](std::shared_ptr<const Context> ctx, const py::bytes& pk) {
             return new Server(std::move(ctx), std::string(pk));
           }), py::arg("context"), py::arg("public_key"))
      .def("prepare", [](const Server& s, const py::array& kernels, size_t g_in, size_t g_out, size_t level) {
             U64Array arr = polys_2d(kernels, "kernels", s.context().n());
             if (static_cast<size_t>(arr.shape(0)) != g_in * g_out)
               throw py::value_error("kernels must hold g_in * g_out polynomials");
             py::gil_scoped_release release;
             return s.prepare(arr.data(), g_in, g_out, level);
           }, py::arg("kernels"), py::arg("g_in"), py::arg("g_out"), py::arg("level"))
      .def("respond", [](const Server& s, const Kernels& k, const py::list& query, size_t reply_level,
                         int flood_bits, const py::array& keep) {
             const size_t n = s.context().n();
             auto q = bytes_list(query, "query ciphertext");
             ServerOptions opt;
             opt.reply_level = reply_level;
             opt.flood_bits = flood_bits;
             opt.keep = keep_list(keep);
             const size_t replies = k.g_in ? q.size() / k.g_in * k.g_out : 0;
             U64Array masks({static_cast<py::ssize_t>(replies), static_cast<py::ssize_t>(n)});
             std::vector<std::string> out;
             {
               py::gil_scoped_release release;
               out = s.respond(k, q, opt, masks.mutable_data());
             }
             return py::make_tuple(to_bytes_list(out), masks);
           }, py::arg("kernels"), py::arg("query"), py::arg("reply_level"), py::arg("flood_bits"), py::arg("keep"),
           "(packed replies, the server's masks: one polynomial per reply)");
}

}  // namespace pi_native
