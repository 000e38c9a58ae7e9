// Python bindings of the dealer-free ReLU core: base OT, IKNP, and garbled circuits over
// additive shares (docs/gc.md). Thin: every buffer is checked here (type, size, header, session,
// order) before a kernel runs, and kernels run with the GIL released. Over 500 lines, one file on purpose: the
// Garbler/Evaluator wrap the IKNP objects' state (Δ, cursors, session id) and the wire formats
// below are checked against it, so the OT and GC bindings share these structs and helpers; the
// sections are: buffer helpers, OT classes, garbling (Batch, Garbler), parsing + Evaluator,
// module registration (with the test entries gc_*_raw, gc_eval_plain, gc_hash).
//
// Garbled batch ("tables", sent garbler → evaluator offline), little-endian:
//   0 magic "PIGC"   4 version (2)   5 kind   6 l   7 k   8 mode   9 bits   10 shift   11 zero
//   12 u32 bytes per instance   16 u64 count   24 u64 first evaluator-label OT index
//   32 u64 first hashed-gate index (tweaks)   40 16-B session id   56 u32 classes   60 u32 CRC-32 of 0..59
//   64 count × [tables (32 B per AND, 16 B per ANDC) | output decode bits]
// Garbler labels ("labels", sent online):
//   0 magic "PIGL"   4 version (2)   5..11 as above   12 u32 labels per instance
//   16 u64 count   24 u64 first hashed-gate index   32 16-B session id   48 u32 classes   52 u32 CRC-32 of 0..51
//   56 count × labels × 16 B
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "pi_native/circuits.hpp"
#include "pi_native/gates.hpp"
#include "pi_native/gc.hpp"
#include "pi_native/iknp.hpp"
#include "pi_native/ot.hpp"

namespace pi_native {
namespace {

using gc::Kind;
using gc::Mode;
using gc::Spec;

constexpr size_t kTablesHeader = 64, kLabelsHeader = 56;
constexpr uint8_t kVersion = 2;

void st32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void st64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t ld32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t ld64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

Kind parse_kind(const std::string& s) {
  if (s == "relu") return Kind::Relu;
  if (s == "drelu") return Kind::Drelu;
  if (s == "circa") return Kind::Circa;
  if (s == "trunc") return Kind::Trunc;
  if (s == "argmax") return Kind::Argmax;
  if (s == "and-layer") return Kind::AndLayer;
  throw py::value_error("circuit must be 'relu', 'drelu', 'circa', 'trunc', 'argmax' or 'and-layer', got '" + s + "'");
}

Mode parse_mode(const py::object& m) {
  if (m.is_none()) return Mode::None;
  const std::string s = py::str(m);
  if (s == "poszero") return Mode::PosZero;
  if (s == "negpass") return Mode::NegPass;
  throw py::value_error("mode must be 'poszero' or 'negpass', got '" + s + "'");
}

// bits = None means l (the circuit reads the whole share).
Spec make_spec(const std::string& kind, int l, int k, const py::object& mode, const py::object& bits = py::none(),
               int shift = 0, int classes = 0) {
  Spec s{parse_kind(kind), l, k, parse_mode(mode), bits.is_none() ? l : bits.cast<int>(), shift, classes};
  try {
    gc::validate(s);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  return s;
}

// Bytes 5..11 of both headers (kind, l, k, mode, bits, shift, 0).
void put_spec(uint8_t* p, const Spec& s) {
  p[5] = static_cast<uint8_t>(s.kind);
  p[6] = static_cast<uint8_t>(s.l);
  p[7] = static_cast<uint8_t>(s.k);
  p[8] = static_cast<uint8_t>(s.mode);
  p[9] = static_cast<uint8_t>(s.bits);
  p[10] = static_cast<uint8_t>(s.shift);
  p[11] = 0;
}
bool same_spec(const uint8_t* p, const Spec& s, uint32_t classes) {
  uint8_t q[12] = {};
  put_spec(q, s);
  return std::memcmp(p + 5, q + 5, 7) == 0 && classes == static_cast<uint32_t>(s.classes);
}

py::bytes new_bytes(size_t n, uint8_t** data) {
  PyObject* o = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(n));
  if (!o) throw py::error_already_set();
  *data = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(o));
  return py::reinterpret_steal<py::bytes>(o);
}

py::bytes to_bytes(const std::vector<uint8_t>& v) {
  return py::bytes(reinterpret_cast<const char*>(v.data()), v.size());
}

// (n, 16) uint8 array <-> blocks
py::array_t<uint8_t> blocks_array(const std::vector<Block>& v) {
  py::array_t<uint8_t> out({static_cast<py::ssize_t>(v.size()), py::ssize_t{16}});
  if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * 16);
  return out;
}

std::vector<Block> blocks_from(const py::array& a, size_t expected, const char* name) {
  if (!py::isinstance<py::array_t<uint8_t>>(a) || a.dtype().kind() != 'u' || a.itemsize() != 1)
    throw py::type_error(std::string(name) + " must be a uint8 array of shape (n, 16)");
  auto arr = py::array_t<uint8_t, py::array::c_style>::ensure(a);
  if (arr.ndim() != 2 || arr.shape(1) != 16 || static_cast<size_t>(arr.shape(0)) != expected)
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(expected) + ", 16)");
  std::vector<Block> v(expected);
  if (expected) std::memcpy(v.data(), arr.data(), expected * 16);
  return v;
}

std::vector<uint8_t> bits_from(const py::array& a, size_t expected, const char* name) {
  if (!py::isinstance<py::array_t<uint8_t>>(a) || a.dtype().kind() != 'u' || a.itemsize() != 1)
    throw py::type_error(std::string(name) + " must be a uint8 array of 0/1");
  auto arr = py::array_t<uint8_t, py::array::c_style>::ensure(a);
  if (static_cast<size_t>(arr.size()) != expected)
    throw py::value_error(std::string(name) + " must have " + std::to_string(expected) + " entries, got " +
                          std::to_string(arr.size()));
  std::vector<uint8_t> v(arr.data(), arr.data() + expected);
  for (uint8_t x : v)
    if (x > 1) throw py::value_error(std::string(name) + " must hold only 0 and 1");
  return v;
}

U64Array shares(const py::array& a, int l, const char* name, py::ssize_t expected = -1) {
  U64Array v = as_u64(a, name);
  if (v.ndim() != 1) throw py::value_error(std::string(name) + " must be a 1-D array");
  if (expected >= 0 && v.shape(0) != expected)
    throw py::value_error(std::string(name) + " has " + std::to_string(v.shape(0)) + " entries, the batch has " +
                          std::to_string(expected));
  const uint64_t lim = l >= 64 ? ~uint64_t{0} : (uint64_t{1} << l) - 1;
  const uint64_t* p = v.data();
  for (py::ssize_t i = 0; i < v.shape(0); ++i)
    if (p[i] > lim)
      throw py::value_error(std::string(name) + "[" + std::to_string(i) + "] is not reduced mod 2^" + std::to_string(l));
  return v;
}

size_t stride_of(const gc::Circuit& c) { return c.table_bytes() + c.decode_bytes(); }

// ---- OT classes ------------------------------------------------------------------------------

struct PySender {
  ot::IknpSender s;
  py::bytes base_reply(const py::object& msg) {
    ByteView b = byte_view(msg, "base OT message");
    std::vector<uint8_t> r;
    try {
      r = s.base_reply(b.data, b.len);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
    return to_bytes(r);
  }
  void extend(const py::object& u, py::ssize_t n) {
    if (n < 0) throw py::value_error("n must be non-negative");
    ByteView b = byte_view(u, "IKNP message");
    py::gil_scoped_release nogil;
    s.extend(b.data, b.len, static_cast<size_t>(n));
  }
  std::vector<Block> take(py::ssize_t n) {
    if (n < 0) throw py::value_error("n must be non-negative");
    std::vector<Block> rows(static_cast<size_t>(n));
    s.take(s.consumed(), rows.size(), rows.data());
    return rows;
  }
};

struct PyReceiver {
  ot::IknpReceiver r;
  py::bytes extend(const py::array& choices) {
    auto c = bits_from(choices, static_cast<size_t>(choices.size()), "choices");
    std::vector<uint8_t> u;
    {
      py::gil_scoped_release nogil;
      u = r.extend(c.data(), c.size());
    }
    return to_bytes(u);
  }
};

uint64_t mask_of(int bits) { return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

py::array_t<uint64_t> words_of(const std::vector<Block>& h, int bits) {
  py::array_t<uint64_t> out(static_cast<py::ssize_t>(h.size()));
  uint64_t* p = out.mutable_data();
  for (size_t j = 0; j < h.size(); ++j) p[j] = h[j].lo & mask_of(bits);
  return out;
}

int check_bits(int bits) {
  if (bits < 1 || bits > 64) throw py::value_error("bits must be in [1, 64], got " + std::to_string(bits));
  return bits;
}

// ---- garbling ----------------------------------------------------------------------------------

struct Batch {
  Spec spec;
  size_t count = 0;
  uint64_t and_base = 0;
  Block sid{}, delta{}, label_seed{};
  py::bytes tables;
  std::vector<uint64_t> r;    // relu / trunc: the garbler's output share
  std::vector<uint8_t> rho;   // drelu / circa: the garbler's output bit (argmax: none)
  size_t next = 0;            // instances whose labels were produced (parts go in order, once)
  bool encoded = false;

  // The garbler's labels for instances first .. first + part − 1 (b: their shares), one message;
  // the whole batch in one call, or in parts (in order, each once) that the evaluator evaluates
  // as they arrive. A part's header carries its own count and gate-id base (and_base + first ·
  // hashed gates per instance), so a whole batch is the one-part case of the same format.
  py::bytes encode(const py::array& b, py::ssize_t first) {
    if (encoded) throw py::value_error("this batch's garbler labels were already produced (one-time): garble a new batch");
    if (first < 0 || static_cast<size_t>(first) != next)
      throw py::value_error("labels from instance " + std::to_string(first) + " requested, the next not produced is " +
                            std::to_string(next) + " (parts in order, each once: one-time)");
    const gc::Circuit c = gc::build(spec);
    const size_t nv = static_cast<size_t>(gc::values_per_instance(spec));
    auto v = shares(b, spec.l, "b");
    const size_t part = static_cast<size_t>(v.size()) / nv;
    if (static_cast<size_t>(v.size()) % nv || part > count - next || (part == 0 && count > 0))
      throw py::value_error("b holds " + std::to_string(v.size()) + " values: not whole instances of the " +
                            std::to_string(count - next) + " not yet encoded (at least one)");
    const size_t ng = c.n_garb, nb = static_cast<size_t>(gc::input_bits(spec));  // ng = nv · nb
    uint8_t* out = nullptr;
    py::bytes msg = new_bytes(kLabelsHeader + part * ng * 16, &out);
    std::memset(out, 0, kLabelsHeader);
    std::memcpy(out, "PIGL", 4);
    out[4] = kVersion;
    put_spec(out, spec);
    st32(out + 12, static_cast<uint32_t>(ng));
    st64(out + 16, part);
    st64(out + 24, and_base + next * c.n_hashed());
    std::memcpy(out + 32, &sid, 16);
    st32(out + 48, static_cast<uint32_t>(spec.classes));
    st32(out + 52, fss::crc32(out, 52));
    const uint64_t* bv = v.data();
    const int shift = gc::input_shift(spec);
    const uint64_t off = gc::garbler_offset(spec), lmask = mask_of(spec.l);
    {
      py::gil_scoped_release nogil;
      std::vector<Block> zero(part * ng);   // the batch's zero labels from counter first · ng on
      aes_ctr(Aes128(reinterpret_cast<const uint8_t*>(&label_seed)), Block{next * ng, 0}, zero.data(), zero.size());
      for (size_t i = 0; i < part * nv; ++i)  // value i's wires are i·nb .. i·nb + nb − 1
        for (size_t w = 0; w < nb; ++w) {
          Block lab = zero[i * nb + w];
          if ((((bv[i] + off) & lmask) >> (shift + w)) & 1) lab ^= delta;
          std::memcpy(out + kLabelsHeader + (i * nb + w) * 16, &lab, 16);
        }
    }
    next += part;
    if (next == count) {
      encoded = true;
      label_seed = Block{};
    }
    return msg;
  }
};

struct PyGarbler {
  PySender& sender;
  uint64_t next_gate = 0;
  explicit PyGarbler(PySender& s) : sender(s) {}

  Batch garble(const std::string& kind, int l, py::ssize_t count, int k, const py::object& mode,
               const py::object& bits, int shift, int classes) {
    if (!sender.s.ready()) throw py::value_error("garbler: run the OT setup (base OTs) first");
    if (count < 0 || count > (py::ssize_t{1} << 40)) throw py::value_error("count must be in [0, 2^40]");
    Batch bt;
    bt.spec = make_spec(kind, l, k, mode, bits, shift, classes);
    if (bt.spec.kind == Kind::AndLayer) throw py::value_error("and-layer is a benchmark circuit: use gc_garble_raw");
    bt.count = static_cast<size_t>(count);
    const gc::Circuit c = gc::build(bt.spec);
    const size_t n = bt.count, ne = c.n_eval, np = c.n_priv;
    const size_t need = n * ne;
    if (need > sender.s.extended() - sender.s.consumed())
      throw py::value_error("garbler: " + std::to_string(need) + " evaluator-label OTs needed, " +
                            std::to_string(sender.s.extended() - sender.s.consumed()) +
                            " unused: the evaluator must extend with its share bits first");
    const size_t stride = stride_of(c);
    if (n > (std::numeric_limits<size_t>::max() - kTablesHeader) / std::max<size_t>(stride, 1))
      throw py::value_error("count too large");
    uint8_t* out = nullptr;
    bt.tables = new_bytes(kTablesHeader + n * stride, &out);
    const uint64_t label_start = sender.s.consumed();
    bt.and_base = next_gate;
    next_gate += n * c.n_hashed();
    bt.sid = sender.s.session_id();
    bt.delta = sender.s.delta();
    bt.label_seed = ot::random_block();
    std::memset(out, 0, kTablesHeader);
    std::memcpy(out, "PIGC", 4);
    out[4] = kVersion;
    put_spec(out, bt.spec);
    st32(out + 12, static_cast<uint32_t>(stride));
    st64(out + 16, n);
    st64(out + 24, label_start);
    st64(out + 32, bt.and_base);
    std::memcpy(out + 40, &bt.sid, 16);
    st32(out + 56, static_cast<uint32_t>(bt.spec.classes));
    st32(out + 60, fss::crc32(out, 60));
    {
      py::gil_scoped_release nogil;
      std::vector<Block> ez(need), gz(n * c.n_garb);
      sender.s.take(label_start, need, ez.data());
      const Aes128 prg(reinterpret_cast<const uint8_t*>(&bt.label_seed));
      aes_ctr(prg, Block{0, 0}, gz.data(), gz.size());
      // Fresh output masks from a second keystream of the same secret seed.
      std::vector<Block> mask(n);
      aes_ctr(prg, Block{0, 1}, mask.data(), n);
      std::vector<uint8_t> priv(n * np);
      if (bt.spec.kind == Kind::Relu || bt.spec.kind == Kind::Trunc) {
        // The circuit adds r' (uniform) to a non-negative value; trunc's value is offset by
        // 2^(n−1−shift) (circuits.cpp), which the garbler's share removes: r = −r' − offset.
        const uint64_t m = mask_of(l);
        const uint64_t offset =
            bt.spec.kind == Kind::Trunc ? uint64_t{1} << (bt.spec.bits - 1 - bt.spec.shift) : 0;
        bt.r.resize(n);
        for (size_t i = 0; i < n; ++i) {
          const uint64_t rp = mask[i].lo & m;
          bt.r[i] = (0 - rp - offset) & m;
          for (size_t j = 0; j < np; ++j) priv[i * np + j] = static_cast<uint8_t>((rp >> j) & 1);
        }
      } else if (np > 0) {  // drelu / circa: ρ (circa with a shift: ρ, ρ_t)
        bt.rho.resize(n * np);
        for (size_t i = 0; i < n * np; ++i)
          priv[i] = bt.rho[i] = static_cast<uint8_t>((mask[i / np].lo >> (i % np)) & 1);
      }
      gc::garble(c, n, bt.delta, ez.data(), gz.data(), priv.data(), bt.and_base, out + kTablesHeader);
    }
    return bt;
  }
};

struct Header {
  Spec spec;
  size_t count;
  uint64_t label_start, and_base;
  Block sid;
};

Header parse_tables(const ByteView& t) {
  if (t.len < kTablesHeader) throw py::value_error("tables: truncated (shorter than the 64-byte header)");
  const uint8_t* p = t.data;
  if (std::memcmp(p, "PIGC", 4) != 0) throw py::value_error("tables: bad magic (not a garbled batch)");
  if (p[4] != kVersion) throw py::value_error("tables: unsupported version " + std::to_string(p[4]));
  if (fss::crc32(p, 60) != ld32(p + 60)) throw py::value_error("tables: header checksum mismatch (corrupted)");
  Header h;
  if (p[11] != 0) throw py::value_error("tables: reserved header byte is not zero");
  h.spec = Spec{static_cast<Kind>(p[5]), p[6], p[7], static_cast<Mode>(p[8]), p[9], p[10],
                static_cast<int>(std::min<uint32_t>(ld32(p + 56), 1u << 30))};
  try {
    gc::validate(h.spec);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string("tables: ") + e.what());
  }
  const gc::Circuit c = gc::build(h.spec);
  const size_t stride = stride_of(c);
  if (ld32(p + 12) != stride) throw py::value_error("tables: bytes per instance do not match the circuit");
  h.count = ld64(p + 16);
  if (h.count > (t.len - kTablesHeader) / std::max<size_t>(stride, 1) || t.len != kTablesHeader + h.count * stride)
    throw py::value_error("tables: length " + std::to_string(t.len) + " does not match the header (" +
                          std::to_string(h.count) + " instances × " + std::to_string(stride) + " B + 64): truncated or padded");
  h.label_start = ld64(p + 24);
  h.and_base = ld64(p + 32);
  std::memcpy(&h.sid, p + 40, 16);
  return h;
}

// A batch's evaluator input labels, recomputed from the OT seeds before its garbler labels arrive
// (take_labels), and its evaluation so far: the garbler's labels may come in parts, each evaluated
// as it arrives (evaluate_part), the outputs read once all are in (result). One-time.
struct OwnLabels {
  uint64_t start = 0;
  size_t count = 0;
  Block sid{};
  std::vector<Block> rows;
  size_t done = 0;             // instances evaluated
  std::vector<uint8_t> bits;   // their output bits, (count, outputs)
  bool used = false;
};

struct PyEvaluator {
  PyReceiver& receiver;
  explicit PyEvaluator(PyReceiver& r) : receiver(r) {}

  void check_order(const Header& h) const {
    if (h.label_start < receiver.r.consumed())
      throw py::value_error("tables use evaluator labels from OT index " + std::to_string(h.label_start) +
                            ", but the next unused OT is " + std::to_string(receiver.r.consumed()) +
                            ": batch already evaluated, or a later batch was evaluated first (one-time, in order)");
  }

  Header tables_header(const ByteView& t) const {
    if (!receiver.r.ready()) throw py::value_error("evaluator: run the OT setup (base OTs) first");
    const Header h = parse_tables(t);
    if (!(h.sid == receiver.r.session_id())) throw py::value_error("tables belong to another OT session");
    return h;
  }

  // Checks a garbler labels message (a whole batch or a part) against the tables, for the part
  // that starts at instance `first`; returns how many instances it covers.
  static size_t check_labels(const ByteView& g, const Header& h, const gc::Circuit& c, size_t first) {
    if (g.len < kLabelsHeader) throw py::value_error("labels: truncated (shorter than the 56-byte header)");
    const uint8_t* q = g.data;
    if (std::memcmp(q, "PIGL", 4) != 0 || q[4] != kVersion) throw py::value_error("labels: bad magic or version");
    if (fss::crc32(q, 52) != ld32(q + 52)) throw py::value_error("labels: header checksum mismatch (corrupted)");
    const uint64_t part = ld64(q + 16);
    if (!same_spec(q, h.spec, ld32(q + 48)) || ld32(q + 12) != c.n_garb || part > h.count - first ||
        ld64(q + 24) != h.and_base + first * c.n_hashed() || std::memcmp(q + 32, &h.sid, 16) != 0)
      throw py::value_error("labels were produced for another garbled batch (or another part of it)");
    if (part == 0 && h.count > first) throw py::value_error("labels: an empty part");
    if (g.len != kLabelsHeader + part * c.n_garb * 16)
      throw py::value_error("labels: length " + std::to_string(g.len) + " does not match the header: truncated or padded");
    return static_cast<size_t>(part);
  }

  // The evaluator's own input labels for a batch: they need no garbler message, so the online
  // phase recomputes them while it waits for the garbler's labels.
  OwnLabels take_labels(const py::object& tables) {
    ByteView t = byte_view(tables, "tables");
    const Header h = tables_header(t);
    check_order(h);
    return take(h);
  }

  OwnLabels take(const Header& h) {
    OwnLabels own;
    own.start = h.label_start;
    own.count = h.count;
    own.sid = h.sid;
    const gc::Circuit c = gc::build(h.spec);
    own.rows.resize(h.count * c.n_eval);
    own.bits.resize(h.count * c.outputs.size());
    {
      py::gil_scoped_release nogil;
      receiver.r.take(h.label_start, own.rows.size(), own.rows.data(), nullptr);
    }
    return own;
  }

  // Evaluates the instances a labels part covers (the next ones of the batch); returns how many
  // instances of the batch are evaluated so far.
  size_t evaluate_part(const py::object& tables, const py::object& labels, OwnLabels& own) {
    ByteView t = byte_view(tables, "tables"), g = byte_view(labels, "labels");
    const Header h = tables_header(t);
    const gc::Circuit c = gc::build(h.spec);
    if (own.used || own.start != h.label_start || own.count != h.count || !(own.sid == h.sid) ||
        own.rows.size() != (own.done == h.count ? 0 : h.count * c.n_eval))
      throw py::value_error("own labels were taken for another batch, or used already (one-time)");
    const size_t first = own.done, part = check_labels(g, h, c, first);
    if (part == 0) return own.done;   // (an empty batch)
    const size_t ne = c.n_eval, no = c.outputs.size(), stride = stride_of(c);
    {
      py::gil_scoped_release nogil;
      std::vector<Block> gl(part * c.n_garb);
      if (!gl.empty()) std::memcpy(static_cast<void*>(gl.data()), g.data + kLabelsHeader, gl.size() * 16);
      gc::evaluate(c, part, t.data + kTablesHeader + first * stride, own.rows.data() + first * ne, gl.data(),
                   h.and_base + first * c.n_hashed(), own.bits.data() + first * no);
    }
    own.done += part;
    if (own.done == own.count) std::vector<Block>().swap(own.rows);
    return own.done;
  }

  // The outputs once every instance is evaluated.
  py::object result(const py::object& tables, OwnLabels& own) {
    ByteView t = byte_view(tables, "tables");
    const Header h = tables_header(t);
    if (own.used || own.start != h.label_start || own.count != h.count || !(own.sid == h.sid))
      throw py::value_error("own labels were taken for another batch, or used already (one-time)");
    if (own.done != own.count)
      throw py::value_error("labels of " + std::to_string(own.done) + " of " + std::to_string(own.count) +
                            " instances evaluated: the rest of the parts first");
    own.used = true;
    const size_t n = h.count, no = gc::build(h.spec).outputs.size();
    std::vector<uint8_t> bits;
    bits.swap(own.bits);
    if (h.spec.kind == Kind::Relu || h.spec.kind == Kind::Trunc || h.spec.kind == Kind::Argmax) {
      // relu / trunc: the l bits of the evaluator's share z; argmax: the bits of the class index.
      py::array_t<uint64_t> out(static_cast<py::ssize_t>(n));
      uint64_t* o = out.mutable_data();
      for (size_t i = 0; i < n; ++i) {
        uint64_t v = 0;
        for (size_t j = 0; j < no; ++j) v |= static_cast<uint64_t>(bits[i * no + j]) << j;
        o[i] = v;
      }
      return out;
    }
    // drelu / circa: e (n,), circa with a shift: (e, e_t) as (n, 2)
    py::array_t<uint8_t> out = no == 1 ? py::array_t<uint8_t>(static_cast<py::ssize_t>(n))
                                       : py::array_t<uint8_t>({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(no)});
    if (!bits.empty()) std::memcpy(out.mutable_data(), bits.data(), bits.size());
    return out;
  }

  // A whole batch's labels in one message: with `own` from take_labels, else its labels taken
  // now (after every check, so a refused message consumes nothing).
  py::object evaluate(const py::object& tables, const py::object& labels, OwnLabels* own) {
    if (own) {
      if (own->done != 0) throw py::value_error("own labels were used already (one-time): evaluate_part for the rest");
      evaluate_part(tables, labels, *own);
      return result(tables, *own);
    }
    ByteView t = byte_view(tables, "tables"), g = byte_view(labels, "labels");
    const Header h = tables_header(t);
    if (check_labels(g, h, gc::build(h.spec), 0) != h.count)
      throw py::value_error("labels: a part of the batch; evaluate_part takes parts");
    check_order(h);
    OwnLabels mine = take(h);
    evaluate_part(tables, labels, mine);
    return result(tables, mine);
  }
};

py::dict circuit_info(const Spec& s) {
  const gc::Circuit c = gc::build(s);
  py::dict d;
  d["n_eval"] = c.n_eval;
  d["n_garb"] = c.n_garb;
  d["n_priv"] = c.n_priv;
  d["n_wires"] = c.n_wires;
  d["and_gates"] = c.n_and;
  d["andc_gates"] = c.n_andc;
  d["table_bytes"] = c.table_bytes();
  d["decode_bytes"] = c.decode_bytes();
  d["outputs"] = c.outputs.size();
  d["input_shift"] = gc::input_shift(s);
  d["garbler_offset"] = gc::garbler_offset(s);
  d["values"] = gc::values_per_instance(s);
  d["value_bits"] = gc::input_bits(s);
  d["bits"] = s.bits;
  d["shift"] = s.shift;
  d["classes"] = s.classes;
  return d;
}

}  // namespace

void bind_gc(py::module_& m) {
  py::class_<PySender>(m, "IknpSender",
                       "IKNP OT-extension sender (the garbler): draws Δ (lsb 1); base OTs as receiver of 128 "
                       "Chou–Orlandi OTs over P-256; hands out each OT once, in order. docs/gc.md.")
      .def(py::init<>())
      .def("base_reply", &PySender::base_reply, py::arg("message"),
           "Answer the receiver's base-OT message (33 B); returns the reply (128 × 33 B).")
      .def("extend", &PySender::extend, py::arg("message"), py::arg("n"),
           "Absorb the receiver's extension message for n OTs.")
      .def("correlated_ot",
           [](PySender& s, py::ssize_t n) {
             auto rows = s.take(n);
             return blocks_array(rows);
           },
           py::arg("n"), "The next n COT rows q_j as an (n, 16) uint8 array (receiver holds q_j ⊕ c_j·Δ).")
      .def("random_ot",
           [](PySender& s, py::ssize_t n, int bits) {
             check_bits(bits);
             const uint64_t first = s.s.consumed();
             auto rows = s.take(n);
             std::vector<Block> h0(rows.size()), h1(rows.size());
             {
               py::gil_scoped_release nogil;
               ot::rot_hash(rows.data(), rows.size(), first, Block{}, h0.data());
               ot::rot_hash(rows.data(), rows.size(), first, s.s.delta(), h1.data());
             }
             return py::make_tuple(words_of(h0, bits), words_of(h1, bits));
           },
           py::arg("n"), py::arg("bits") = 64, "The next n random OTs: (R0, R1), uint64 arrays of `bits`-bit messages.")
      .def_property_readonly("extended", [](const PySender& s) { return s.s.extended(); })
      .def_property_readonly("consumed", [](const PySender& s) { return s.s.consumed(); })
      .def_property_readonly("session_id", [](const PySender& s) {
        const Block b = s.s.session_id();
        return py::bytes(reinterpret_cast<const char*>(&b), 16);
      });

  py::class_<PyReceiver>(m, "IknpReceiver",
                         "IKNP OT-extension receiver (the evaluator): base-OT sender; keeps only its 128 seeds "
                         "and recomputes its rows when they are used; each OT is used once, in order.")
      .def(py::init<>())
      .def("base_message", [](const PyReceiver& r) { return to_bytes(r.r.base_message()); },
           "The first base-OT message (a compressed P-256 point).")
      .def("base_finish",
           [](PyReceiver& r, const py::object& msg) {
             ByteView b = byte_view(msg, "base OT reply");
             try {
               r.r.base_finish(b.data, b.len);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           },
           py::arg("reply"))
      .def("extend", &PyReceiver::extend, py::arg("choices"),
           "Append OTs with these choice bits (uint8 0/1); returns the message for the sender.")
      .def("correlated_ot",
           [](PyReceiver& r, py::ssize_t n) {
             if (n < 0) throw py::value_error("n must be non-negative");
             std::vector<Block> rows(static_cast<size_t>(n));
             py::array_t<uint8_t> c(n);
             {
               uint8_t* cp = c.mutable_data();
               py::gil_scoped_release nogil;
               r.r.take(r.r.consumed(), rows.size(), rows.data(), cp);
             }
             return py::make_tuple(c, blocks_array(rows));
           },
           py::arg("n"), "The next n COTs: (choice bits, rows t_j as an (n, 16) uint8 array).")
      .def("random_ot",
           [](PyReceiver& r, py::ssize_t n, int bits) {
             check_bits(bits);
             if (n < 0) throw py::value_error("n must be non-negative");
             const uint64_t first = r.r.consumed();
             std::vector<Block> rows(static_cast<size_t>(n)), h(static_cast<size_t>(n));
             py::array_t<uint8_t> c(n);
             {
               uint8_t* cp = c.mutable_data();
               py::gil_scoped_release nogil;
               r.r.take(first, rows.size(), rows.data(), cp);
               ot::rot_hash(rows.data(), rows.size(), first, Block{}, h.data());
             }
             return py::make_tuple(c, words_of(h, bits));
           },
           py::arg("n"), py::arg("bits") = 64, "The next n random OTs: (choice bits, R_c).")
      .def_property_readonly("extended", [](const PyReceiver& r) { return r.r.extended(); })
      .def_property_readonly("consumed", [](const PyReceiver& r) { return r.r.consumed(); })
      .def_property_readonly("session_id", [](const PyReceiver& r) {
        const Block b = r.r.session_id();
        return py::bytes(reinterpret_cast<const char*>(&b), 16);
      });

  py::class_<Batch>(m, "GarbledBatch", "Garbler-side state of one garbled batch (keep it secret; send `tables`).")
      .def_property_readonly("tables", [](const Batch& b) { return b.tables; })
      .def("release_tables", [](Batch& b) { b.tables = py::bytes(); },
           "Drops this batch's reference to its tables (once sent, the garbler needs them no more).")
      .def_property_readonly("count", [](const Batch& b) { return b.count; })
      .def_property_readonly("output_share",
                             [](const Batch& b) -> py::object {
                               if (b.spec.kind == Kind::Relu || b.spec.kind == Kind::Trunc)
                                 return py::array_t<uint64_t>(static_cast<py::ssize_t>(b.r.size()), b.r.data());
                               if (b.spec.kind == Kind::Argmax) return py::none();
                               if (b.rho.size() == b.count)
                                 return py::array_t<uint8_t>(static_cast<py::ssize_t>(b.rho.size()), b.rho.data());
                               return py::array_t<uint8_t>({static_cast<py::ssize_t>(b.count), py::ssize_t{2}}, b.rho.data());
                             },
                             "relu/trunc: r with z + r = (ReLU(x) or x) >> shift mod 2^l; drelu/circa: ρ with "
                             "e ⊕ ρ = the sign bit d; argmax: None (the garbler learns nothing).")
      .def("encode", &Batch::encode, py::arg("b"), py::arg("first") = 0,
           "The garbler's labels for its share b (uint64, reduced mod 2^l) of instances first, first + 1, ...: "
           "the whole batch, or parts in order (each once); one-time.");

  py::class_<PyGarbler>(m, "Garbler", "Garbles ReLU circuits with the Δ and the COTs of an IknpSender.")
      .def(py::init<PySender&>(), py::arg("sender"), py::keep_alive<1, 2>())
      .def("garble", &PyGarbler::garble, py::arg("circuit"), py::arg("l"), py::arg("count"), py::arg("k") = 0,
           py::arg("mode") = py::none(), py::arg("bits") = py::none(), py::arg("shift") = 0, py::arg("classes") = 0,
           "Garble `count` instances of relu / trunc / drelu / circa / argmax over Z_(2^l) (bits = value bits, "
           "default l); consumes count × input-wire COTs.");

  py::class_<OwnLabels>(m, "OwnLabels", "A garbled batch's evaluator input labels (Evaluator.take_labels); one-time.");
  py::class_<PyEvaluator>(m, "Evaluator", "Evaluates garbled batches with the labels of an IknpReceiver.")
      .def(py::init<PyReceiver&>(), py::arg("receiver"), py::keep_alive<1, 2>())
      .def("take_labels", &PyEvaluator::take_labels, py::arg("tables"),
           "The evaluator's own input labels for these tables (from the OT seeds; they need no garbler "
           "message): pass them to evaluate(); takes the batch's OTs, in order, like evaluate().")
      .def("evaluate", &PyEvaluator::evaluate, py::arg("tables"), py::arg("labels"), py::arg("own") = nullptr,
           "relu/trunc: z (uint64, z + r = the output mod 2^l); drelu/circa: e (uint8, e ⊕ ρ = d); argmax: the "
           "class index (uint64). One-time per batch.")
      .def("evaluate_part", &PyEvaluator::evaluate_part, py::arg("tables"), py::arg("labels"), py::arg("own"),
           "Evaluates the instances of one part of the garbler's labels (the next ones, in order); returns how "
           "many of the batch are evaluated so far. result() once all are.")
      .def("result", &PyEvaluator::result, py::arg("tables"), py::arg("own"),
           "The outputs (as evaluate()) once every part is evaluated; one-time.");

  m.def("gc_circuit",
        [](const std::string& kind, int l, int k, const py::object& mode, const py::object& bits, int shift, int classes) {
          return circuit_info(make_spec(kind, l, k, mode, bits, shift, classes));
        },
        py::arg("circuit"), py::arg("l"), py::arg("k") = 0, py::arg("mode") = py::none(), py::arg("bits") = py::none(),
        py::arg("shift") = 0, py::arg("classes") = 0,
        "Gate counts and sizes of a circuit.");
  m.def("gc_garble_raw",
        [](const std::string& kind, int l, int k, const py::object& mode, const py::bytes& delta,
           const py::array& eval_zero, const py::array& garb_zero, const py::array& priv, uint64_t and_base,
           py::ssize_t count, const py::object& bits, int shift, int classes) {
          const Spec s = make_spec(kind, l, k, mode, bits, shift, classes);
          const gc::Circuit c = gc::build(s);
          const std::string d = delta;
          if (d.size() != 16) throw py::value_error("delta must be 16 bytes");
          Block D;
          std::memcpy(&D, d.data(), 16);
          if (!(D.lo & 1)) throw py::value_error("delta must have its lsb set");
          if (count < 0) throw py::value_error("count must be non-negative");
          const size_t n = static_cast<size_t>(count);
          auto ez = blocks_from(eval_zero, n * c.n_eval, "eval_zero");
          auto gz = blocks_from(garb_zero, n * c.n_garb, "garb_zero");
          auto pv = bits_from(priv, n * c.n_priv, "priv");
          uint8_t* out = nullptr;
          py::bytes body = new_bytes(n * stride_of(c), &out);
          {
            py::gil_scoped_release nogil;
            gc::garble(c, n, D, ez.data(), gz.data(), pv.data(), and_base, out);
          }
          return body;
        },
        py::arg("circuit"), py::arg("l"), py::arg("k"), py::arg("mode"), py::arg("delta"), py::arg("eval_zero"),
        py::arg("garb_zero"), py::arg("priv"), py::arg("and_base"), py::arg("count"), py::arg("bits") = py::none(),
        py::arg("shift") = 0, py::arg("classes") = 0,
        "Test/benchmark entry: garble with explicit Δ, zero labels and private bits; returns the body.");
  m.def("gc_evaluate_raw",
        [](const std::string& kind, int l, int k, const py::object& mode, const py::object& body,
           const py::array& eval_labels, const py::array& garb_labels, uint64_t and_base, py::ssize_t count,
           const py::object& bits, int shift, int classes) {
          const Spec s = make_spec(kind, l, k, mode, bits, shift, classes);
          const gc::Circuit c = gc::build(s);
          if (count < 0) throw py::value_error("count must be non-negative");
          const size_t n = static_cast<size_t>(count);
          ByteView b = byte_view(body, "body");
          if (b.len != n * stride_of(c))
            throw py::value_error("body must be " + std::to_string(n * stride_of(c)) + " bytes, got " + std::to_string(b.len));
          auto el = blocks_from(eval_labels, n * c.n_eval, "eval_labels");
          auto gl = blocks_from(garb_labels, n * c.n_garb, "garb_labels");
          py::array_t<uint8_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(c.outputs.size())});
          {
            uint8_t* o = out.mutable_data();
            py::gil_scoped_release nogil;
            gc::evaluate(c, n, b.data, el.data(), gl.data(), and_base, o);
          }
          return out;
        },
        py::arg("circuit"), py::arg("l"), py::arg("k"), py::arg("mode"), py::arg("body"), py::arg("eval_labels"),
        py::arg("garb_labels"), py::arg("and_base"), py::arg("count"), py::arg("bits") = py::none(),
        py::arg("shift") = 0, py::arg("classes") = 0,
        "Test/benchmark entry: evaluate a body from gc_garble_raw; returns output bits (count, outputs).");
  m.def("gc_eval_plain",
        [](const std::string& kind, int l, int k, const py::object& mode, const py::array& eval_bits,
           const py::array& garb_bits, const py::array& priv, const py::object& bits, int shift, int classes) {
          const Spec s = make_spec(kind, l, k, mode, bits, shift, classes);
          const gc::Circuit c = gc::build(s);
          auto e = bits_from(eval_bits, c.n_eval, "eval_bits");
          auto g = bits_from(garb_bits, c.n_garb, "garb_bits");
          auto p = bits_from(priv, c.n_priv, "priv");
          py::array_t<uint8_t> out(static_cast<py::ssize_t>(c.outputs.size()));
          gc::eval_plain(c, e.data(), g.data(), p.data(), out.mutable_data());
          return out;
        },
        py::arg("circuit"), py::arg("l"), py::arg("k"), py::arg("mode"), py::arg("eval_bits"), py::arg("garb_bits"),
        py::arg("priv"), py::arg("bits") = py::none(), py::arg("shift") = 0, py::arg("classes") = 0,
        "Plain boolean evaluation of one instance of the netlist.");
  m.def("gc_hash",
        [](const py::array& x, const py::array& t) {
          const size_t n = static_cast<size_t>(x.size() / 16);
          auto xb = blocks_from(x, n, "x");
          auto tb = blocks_from(t, n, "t");
          std::vector<Block> out(n);
          gc::tccr_hash(xb.data(), tb.data(), out.data(), n);
          return blocks_array(out);
        },
        py::arg("x"), py::arg("t"), "H(x, t) = π(σ(x) ⊕ t) ⊕ σ(x) ⊕ t for (n, 16) uint8 arrays.");
  m.def("base_ot_receive",
        [](const py::object& msg, const py::array& choices) {
          auto c = bits_from(choices, static_cast<size_t>(choices.size()), "choices");
          ByteView b = byte_view(msg, "base OT message");
          std::vector<Block> keys(c.size());
          std::vector<uint8_t> reply;
          try {
            reply = ot::base_receive(b.data, b.len, c.data(), c.size(), keys.data());
          } catch (const std::invalid_argument& e) {
            throw py::value_error(e.what());
          }
          return py::make_tuple(to_bytes(reply), blocks_array(keys));
        },
        py::arg("message"), py::arg("choices"), "Chou–Orlandi receiver: (reply, chosen keys as (n, 16) uint8).");
  py::class_<ot::BaseSender>(m, "BaseOtSender", "Chou–Orlandi base-OT sender over P-256 (one-time).")
      .def(py::init<>())
      .def("message", [](const ot::BaseSender& s) { return to_bytes(s.first_message()); })
      .def("finish",
           [](ot::BaseSender& s, const py::object& reply, py::ssize_t n) {
             if (n < 0) throw py::value_error("n must be non-negative");
             ByteView b = byte_view(reply, "base OT reply");
             std::vector<Block> k0(static_cast<size_t>(n)), k1(static_cast<size_t>(n));
             try {
               s.finish(b.data, b.len, k0.size(), k0.data(), k1.data());
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
             return py::make_tuple(blocks_array(k0), blocks_array(k1));
           },
           py::arg("reply"), py::arg("n"), "(k0, k1) as (n, 16) uint8 arrays.");
}

}  // namespace pi_native
