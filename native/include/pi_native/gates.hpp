// FSS gates of the dealer model on Z_(2^64): key batches (format, parsing), key generation for
// the dealer and evaluation for party 0/1 on public masked inputs x^ = x + r_in.
// Constructions, preconditions and error laws: docs/fss.md.
//
// Input bit width n (relu, drelu, circa, trunc; 2 <= n <= 64, header byte 7): the caller promises
// -2^(n-1) <= x < 2^(n-1) (circa: the sign test needs 2^k of margin at the ends, docs/fss.md).
// Keys and evaluation then only depend on the low w bits of r_in and x^ (the gate reduces x^
// internally; higher bits are ignored), w = gate_input_bits(): n for drelu, n + 1 for relu, trunc
// and circa when n < 64 (one bit of headroom that makes the wrap of x + r_in mod 2^w a function
// of public and dealer bits), 64 when n = 64. Outputs stay additive shares mod 2^64.
//
// Key batch layout (little-endian):
//   0  magic "PIFK"            4  version (2)        5  gate id        6  party (0/1)
//   7  n (input bits)          8  k (circa)          9  mode (0 none, 1 poszero, 2 negpass)
//   10 shift                   11 payload words (raw DCF only)
//   12 u32 bytes per element   16 u64 element count  24 out_bits   25..27 reserved (0)
//   28 u32 CRC-32 (IEEE) of bytes 0..27
// Output ring (relu, drelu, circa, trunc; out_bits 1..64, header byte 24): outputs are shares
// mod 2^out_bits, and every ring word a key holds (DCF value correction words, shares of masks
// and constants) is stored in ceil(out_bits / 8) bytes; a plan in Z_(2^l) asks for out_bits = l.
// Evaluation only adds and multiplies these words by public values, so the shares are right
// mod 2^out_bits (bits above it are meaningless). Other gates: out_bits = 64.
//   32 count x (bytes per element) element keys
// Parsing checks every field, the checksum and the exact total length, and throws
// std::invalid_argument (ValueError in Python) on anything else.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pi_native::fss {

enum class Gate : uint8_t { Relu = 1, Drelu = 2, Circa = 3, Trunc = 4, Square = 5, Mul = 6, Dcf = 16, DcfBit = 17 };
enum class CircaMode : uint8_t { None = 0, PosZero = 1, NegPass = 2 };

struct GateParams {
  Gate gate = Gate::Relu;
  int n = 64;      // input bits: 2..64 for relu/drelu/circa/trunc, 64 for square/mul, 1..64 raw DCFs
  int k = 0;       // circa: low bits dropped before the sign test
  CircaMode mode = CircaMode::None;
  int shift = 0;   // relu / circa / trunc: fused arithmetic right shift
  int words = 0;   // raw ring DCF: payload words (1 or 2)
  int out_bits = 64;  // relu / drelu / circa / trunc: output ring Z_(2^out_bits), 1..64
};

// Bytes of one ring word in a key: ceil(out_bits / 8).
inline int word_bytes(const GateParams& p) { return (p.out_bits + 7) / 8; }

constexpr size_t kHeaderBytes = 32;
constexpr uint8_t kKeyVersion = 2;

const char* gate_name(Gate g);
bool gate_from_name(const std::string& name, Gate* out);
const char* mode_name(CircaMode m);

// Throws std::invalid_argument naming the bad parameter.
void validate_params(const GateParams& p);
size_t key_bytes_per_element(const GateParams& p);
// Low bits of x^ (and of r_in) the gate reads: the width of each party's share in the opening.
int gate_input_bits(const GateParams& p);

// Online traffic per element, both parties together. `bits`: what is actually needed (each
// party's share of x^ reduced to input_bits bits, plus Circa's sign bits); `bytes`: the same
// with each share packed into ceil(input_bits / 8) bytes; `word_bytes`: what is sent when every
// share travels as a full 8-byte word (what the engine does today).
struct OnlineCost {
  double bytes;
  int rounds;
  int input_bits;
  int bits;
  double word_bytes;
};
OnlineCost online_cost(const GateParams& p);

uint32_t crc32(const uint8_t* data, size_t n);
void write_header(uint8_t* out, const GateParams& p, int party, uint64_t count);

struct KeyView {
  GateParams params;
  int party = 0;
  uint64_t count = 0;
  size_t elem_bytes = 0;
  const uint8_t* body = nullptr;
};
KeyView parse_keys(const uint8_t* data, size_t len);

// Key generation for n elements (multithreaded). body0/body1: n * key_bytes_per_element(p) bytes.
//   a, b: gate inputs — r_in (and r_y for mul, alpha for raw DCFs);  beta: raw ring DCF payload
//   (n x words);  r_out: output masks (unused by raw DCFs).
void gen_keys(const GateParams& p, const uint8_t seed[16], const uint64_t* a, const uint64_t* b,
              const uint64_t* beta, const uint64_t* r_out, size_t n, uint8_t* body0, uint8_t* body1);

// One-round evaluation: relu, drelu, trunc, square, mul (yhat only for mul), raw ring DCF
// (out has count * words entries). Multithreaded.
void eval_keys(const KeyView& kv, const uint64_t* xhat, const uint64_t* yhat, uint64_t* out);
// Raw bit DCF and the first Circa step: out[i] in {0, 1}.
void eval_bits(const KeyView& kv, const uint64_t* xhat, uint8_t* out);
// Second Circa step: opened[i] = the reconstructed masked sign bit.
void eval_circa_select(const KeyView& kv, const uint64_t* xhat, const uint8_t* opened, uint64_t* out);

}  // namespace pi_native::fss
