#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "pi_native/aes.hpp"

namespace pi_native {
namespace {

AesBackend parse_backend(const std::string& b) {
  if (b == "auto") return AesBackend::Auto;
  if (b == "aesni") return AesBackend::AesNi;
  if (b == "portable") return AesBackend::Portable;
  throw py::value_error("backend must be 'auto', 'aesni' or 'portable', got '" + b + "'");
}

std::string key_bytes(const py::bytes& key, const char* what) {
  std::string k = key;
  if (k.size() != 16)
    throw py::value_error(std::string(what) + " must be 16 bytes, got " + std::to_string(k.size()));
  return k;
}

// AES-CTR keystream generator keyed by a secret 16-byte seed. Not thread-safe: one per user.
class Prg {
 public:
  Prg(const py::bytes& seed, const std::string& backend)
      : aes_(reinterpret_cast<const uint8_t*>(key_bytes(seed, "seed").data()), parse_backend(backend)) {}

  py::array_t<uint64_t> random_u64(py::ssize_t n) {
    if (n < 0) throw py::value_error("n must be non-negative");
    py::array_t<uint64_t> out(n);
    fill(reinterpret_cast<uint8_t*>(out.mutable_data()), static_cast<size_t>(n) * 8);
    return out;
  }
  py::bytes random_bytes(py::ssize_t n) {
    if (n < 0) throw py::value_error("n must be non-negative");
    std::string s(static_cast<size_t>(n), '\0');
    fill(reinterpret_cast<uint8_t*>(s.data()), s.size());
    return py::bytes(s);
  }
  uint64_t blocks_used() const { return counter_; }
  bool uses_aesni() const { return aes_.uses_aesni(); }

 private:
  void fill(uint8_t* dst, size_t nbytes) {
    py::gil_scoped_release nogil;
    const size_t nblocks = (nbytes + 15) / 16;
    std::vector<Block> ks(nblocks);
    aes_ctr(aes_, Block{counter_, 0}, ks.data(), nblocks);
    counter_ += nblocks;  // never reuse a counter value: every call draws fresh keystream
    std::memcpy(dst, ks.data(), nbytes);
  }
  Aes128 aes_;
  uint64_t counter_ = 0;
};

py::array_t<uint8_t> blocks_in(const py::array& blocks) {
  auto arr = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(blocks);
  if (!arr || arr.dtype().kind() != 'u' || arr.itemsize() != 1 || arr.ndim() != 2 || arr.shape(1) != 16)
    throw py::value_error("blocks must be a uint8 array of shape (n, 16)");
  return arr;
}

}  // namespace

void bind_prg(py::module_& m) {
  m.def(
      "aes128_encrypt",
      [](const py::bytes& key, const py::array& blocks, const std::string& backend) {
        const std::string k = key_bytes(key, "key");
        auto in = blocks_in(blocks);
        Aes128 aes(reinterpret_cast<const uint8_t*>(k.data()), parse_backend(backend));
        py::array_t<uint8_t> out({in.shape(0), py::ssize_t{16}});
        aes.encrypt(reinterpret_cast<const Block*>(in.data()), reinterpret_cast<Block*>(out.mutable_data()),
                    static_cast<size_t>(in.shape(0)));
        return out;
      },
      py::arg("key"), py::arg("blocks"), py::arg("backend") = "auto",
      "AES-128 ECB encryption of an (n, 16) uint8 array of blocks.");
  m.def(
      "mmo_hash",
      [](const py::array& blocks, const std::string& backend) {
        auto in = blocks_in(blocks);
        const Aes128& fixed = fixed_key_aes();
        Aes128 aes(fixed.round_keys(), parse_backend(backend));  // round key 0 is the key
        py::array_t<uint8_t> out({in.shape(0), py::ssize_t{16}});
        std::memcpy(out.mutable_data(), in.data(), static_cast<size_t>(in.size()));
        aes.mmo(reinterpret_cast<Block*>(out.mutable_data()), static_cast<size_t>(in.shape(0)));
        return out;
      },
      py::arg("blocks"), py::arg("backend") = "auto",
      "Fixed-key Matyas-Meyer-Oseas hash AES_K(x) xor x of each 16-byte block (the FSS PRG core).");
  m.def("fixed_aes_key", [] { return py::bytes(reinterpret_cast<const char*>(fixed_key_aes().round_keys()), 16); },
        "The public fixed AES key of the MMO hash.");

  py::class_<Prg>(m, "Prg", "AES-128-CTR pseudorandom generator keyed by a secret 16-byte seed.")
      .def(py::init<const py::bytes&, const std::string&>(), py::arg("seed"), py::arg("backend") = "auto")
      .def("random_u64", &Prg::random_u64, py::arg("n"), "n uniform ring elements (uint64).")
      .def("random_bytes", &Prg::random_bytes, py::arg("n"))
      .def_property_readonly("blocks_used", &Prg::blocks_used)
      .def_property_readonly("uses_aesni", &Prg::uses_aesni);
}

}  // namespace pi_native
