// Wire format of the OT products' correction messages (protocols/ot_mul.py): a row-major
// n × K matrix of ring words where column k keeps only its low widths[k] bits (the bits that
// survive the weight 2^(l − widths[k]) it is multiplied by), as one LSB-first bit stream padded
// with zero bits to a whole byte.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pi_native::ot_mul {

// Bytes of the packed form: ceil(n · Σ widths / 8).
size_t packed_bytes(size_t n, const uint8_t* widths, size_t k);
// values[i·k + j] (bits above widths[j] ignored) → out[0, packed_bytes).
void pack_bits(const uint64_t* values, size_t n, const uint8_t* widths, size_t k, uint8_t* out);
// Inverse of pack_bits; returns false when a padding bit is set (not this layout).
bool unpack_bits(const uint8_t* in, size_t n, const uint8_t* widths, size_t k, uint64_t* values);

}  // namespace pi_native::ot_mul
