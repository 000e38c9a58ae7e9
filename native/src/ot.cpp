// Chou–Orlandi base OT over P-256 with OpenSSL (see ot.hpp for the protocol).
#include "pi_native/ot.hpp"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace pi_native::ot {
namespace {

struct Ctx {
  EC_GROUP* group = nullptr;
  BN_CTX* bn = nullptr;
  Ctx() {
    group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    bn = BN_CTX_new();
    if (!group || !bn) throw std::runtime_error("OpenSSL: cannot create the P-256 group");
  }
  ~Ctx() {
    EC_GROUP_free(group);
    BN_CTX_free(bn);
  }
};

struct Point {
  EC_POINT* p;
  explicit Point(const EC_GROUP* g) : p(EC_POINT_new(g)) {
    if (!p) throw std::runtime_error("OpenSSL: EC_POINT_new failed");
  }
  ~Point() { EC_POINT_free(p); }
  Point(const Point&) = delete;
  Point& operator=(const Point&) = delete;
};

struct Scalar {
  BIGNUM* b;
  Scalar() : b(BN_new()) {
    if (!b) throw std::runtime_error("OpenSSL: BN_new failed");
  }
  ~Scalar() { BN_clear_free(b); }
  Scalar(const Scalar&) = delete;
  Scalar& operator=(const Scalar&) = delete;
};

void check(int ok, const char* what) {
  if (ok != 1) throw std::runtime_error(std::string("OpenSSL: ") + what + " failed");
}

// Uniform nonzero scalar mod the group order.
void random_scalar(const Ctx& c, BIGNUM* out) {
  const BIGNUM* order = EC_GROUP_get0_order(c.group);
  do check(BN_priv_rand_range(out, order), "BN_priv_rand_range");
  while (BN_is_zero(out));
}

void encode(const Ctx& c, const EC_POINT* p, uint8_t out[kPointBytes]) {
  if (EC_POINT_point2oct(c.group, p, POINT_CONVERSION_COMPRESSED, out, kPointBytes, c.bn) != kPointBytes)
    throw std::runtime_error("OpenSSL: cannot encode a point (point at infinity?)");
}

void decode(const Ctx& c, const uint8_t* in, EC_POINT* p, const char* what) {
  // oct2point checks that the point lies on the curve.
  if (EC_POINT_oct2point(c.group, p, in, kPointBytes, c.bn) != 1 || EC_POINT_is_at_infinity(c.group, p))
    throw std::invalid_argument(std::string("base OT: ") + what + " is not a valid compressed P-256 point");
}

Block kdf(uint64_t i, const uint8_t* A, const uint8_t* B, const Ctx& c, const EC_POINT* P) {
  uint8_t buf[8 + 3 * kPointBytes];
  for (int j = 0; j < 8; ++j) buf[j] = static_cast<uint8_t>(i >> (8 * j));
  std::memcpy(buf + 8, A, kPointBytes);
  std::memcpy(buf + 8 + kPointBytes, B, kPointBytes);
  encode(c, P, buf + 8 + 2 * kPointBytes);
  return sha256_block(buf, sizeof buf);
}

}  // namespace

void random_bytes(uint8_t* out, size_t n) {
  if (n && RAND_bytes(out, static_cast<int>(n)) != 1) throw std::runtime_error("OpenSSL: RAND_bytes failed");
}

Block random_block() {
  Block b;
  random_bytes(reinterpret_cast<uint8_t*>(&b), sizeof b);
  return b;
}

Block sha256_block(const uint8_t* data, size_t n) {
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  check(EVP_Digest(data, n, md, &len, EVP_sha256(), nullptr), "EVP_Digest");
  Block b;
  std::memcpy(&b, md, 16);
  return b;
}

struct BaseSender::Impl {
  Ctx c;
  Scalar a;
};

BaseSender::BaseSender() : impl_(new Impl) {
  Ctx& c = impl_->c;
  random_scalar(c, impl_->a.b);
  Point A(c.group);
  check(EC_POINT_mul(c.group, A.p, impl_->a.b, nullptr, nullptr, c.bn), "EC_POINT_mul");
  a_msg_.resize(kPointBytes);
  encode(c, A.p, a_msg_.data());
}

BaseSender::~BaseSender() = default;

void BaseSender::finish(const uint8_t* msg, size_t len, size_t n, Block* k0, Block* k1) {
  if (done_) throw std::logic_error("base OT: this sender has already finished (one-time)");
  if (len != n * kPointBytes)
    throw std::invalid_argument("base OT: the receiver's message must be " + std::to_string(n * kPointBytes) +
                                " bytes (" + std::to_string(n) + " points), got " + std::to_string(len));
  done_ = true;
  Ctx& c = impl_->c;
  Point A(c.group), aA(c.group), B(c.group), aB(c.group);
  decode(c, a_msg_.data(), A.p, "A");
  check(EC_POINT_mul(c.group, aA.p, nullptr, A.p, impl_->a.b, c.bn), "EC_POINT_mul");
  check(EC_POINT_invert(c.group, aA.p, c.bn), "EC_POINT_invert");  // −a·A
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* Bi = msg + i * kPointBytes;
    decode(c, Bi, B.p, "B_i");
    check(EC_POINT_mul(c.group, aB.p, nullptr, B.p, impl_->a.b, c.bn), "EC_POINT_mul");
    k0[i] = kdf(i, a_msg_.data(), Bi, c, aB.p);
    check(EC_POINT_add(c.group, aB.p, aB.p, aA.p, c.bn), "EC_POINT_add");
    if (EC_POINT_is_at_infinity(c.group, aB.p))
      throw std::invalid_argument("base OT: B_i equals A (malformed receiver message)");
    k1[i] = kdf(i, a_msg_.data(), Bi, c, aB.p);
  }
}

std::vector<uint8_t> base_receive(const uint8_t* a_msg, size_t len, const uint8_t* choices, size_t n, Block* keys) {
  if (len != kPointBytes)
    throw std::invalid_argument("base OT: the sender's message must be " + std::to_string(kPointBytes) +
                                " bytes (one compressed point), got " + std::to_string(len));
  Ctx c;
  Point A(c.group), B(c.group), bA(c.group);
  decode(c, a_msg, A.p, "A");
  Scalar b;
  std::vector<uint8_t> out(n * kPointBytes);
  for (size_t i = 0; i < n; ++i) {
    random_scalar(c, b.b);
    check(EC_POINT_mul(c.group, B.p, b.b, nullptr, nullptr, c.bn), "EC_POINT_mul");
    if (choices[i] & 1) check(EC_POINT_add(c.group, B.p, B.p, A.p, c.bn), "EC_POINT_add");
    uint8_t* Bi = out.data() + i * kPointBytes;
    encode(c, B.p, Bi);
    check(EC_POINT_mul(c.group, bA.p, nullptr, A.p, b.b, c.bn), "EC_POINT_mul");
    keys[i] = kdf(i, a_msg, Bi, c, bA.p);
  }
  return out;
}

}  // namespace pi_native::ot
