"""Dealer-free linear-layer correlations from BFV homomorphic encryption (SEAL 4.1).

Over 500 lines on purpose: the encoding, the parameter choice (noise bounds that depend on the
encoding's group sizes) and the two parties' steps are one correctness argument; each part
states the invariant the next relies on, so they are read together with docs/he.md.

For one Conv2d or Linear layer with weights W (the server's) and a random r (the client's),
both mod 2^l, the two parties end with additive shares of W·r mod 2^l:

  client → server   Enc(r): seeded symmetric BFV ciphertexts (half the bytes of full ones)
  server → client   Enc(W·r − s): products by plaintext kernel polynomials, plus a fresh
                    public-key encryption of zero (re-randomizes c1), minus the server's
                    uniform mask s, plus flooding noise, mod-switched down
  client            decrypts W·r − s;  the server keeps s.

Encoding (no batching, no rotations): every layer becomes a stride-1 "valid" convolution
of a (C, H, W) input with an (M, C, kh, kw) kernel — padding is applied by the client, a
stride s by space-to-depth (the s×s phases of the padded input become channels, the kernel
is split the same way), a Linear layer is a 1×1 convolution of a (n_in, 1, 1) input. Then,
with groups of C_g input channels and M_g output channels (M_g·C_g·H·W ≤ n):

  input polynomial   Σ x[c, i, j] · X^(c·HW + i·W + j)                       (c < C_g)
  kernel polynomial  Σ K[m, c, u, v] · X^(O + m·S − c·HW − u·W − v)          (m < M_g)
  output             coefficient O + m·S + i·W + j of the product = y[m, i, j]

with S = C_g·H·W and O = (C_g − 1)·HW + (kh − 1)·W + (kw − 1); a product of one input and
one kernel polynomial of the same group pair, summed over input groups, holds M_g output
channels (docs/he.md shows why no other term lands on those coefficients).

Noise and circuit privacy (docs/he.md has the derivation): every bound below is a worst
case, so decryption cannot fail at the chosen parameters; the client also measures the
noise left and raises if it were ever below one bit. The flooding noise is uniform on
[−2^b, 2^b) with 2^b ≥ 2^κ · n · (the largest weight-dependent noise), so each reply
ciphertext's noise is within statistical distance 2^−(κ+1) of one that does not depend on
W (κ = 40).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import struct
from dataclasses import asdict, dataclass, field

import numpy as np
import pi_native

he = pi_native.he

KAPPA = 40                 # statistical security of the flooding, per reply ciphertext
ERROR_BOUND = 21           # SEAL's error sampler (centered binomial, σ ≈ 3.2) never exceeds 21
FRESH_BOUND = ERROR_BOUND + 1   # + the rounding of round(q·m/t) in a fresh encryption
SPECIAL_PRIME_BITS = 30    # SEAL's key-level prime; we never key-switch, so it can be small
MAX_PRIME_BITS = 60        # SEAL's largest prime
MIN_MARGIN_BITS = 1.0      # worst-case noise bits left that a parameter choice must keep
DEGREES = (4096, 8192, 16384, 32768)
MAX_PLAIN_BITS = 59        # SEAL: t has at most 60 bits, so 2^59 is the largest power of two

QUERY_MAGIC, REPLY_MAGIC, WIRE_VERSION = b"PIHQ", b"PIHA", 1


class HEError(ValueError):
    """Bad input to the HE protocol: shapes, dtypes, parameters or malformed bytes."""


class HEDecryptionError(RuntimeError):
    """A reply's measured noise left less than MIN_MARGIN_BITS: its shares cannot be trusted."""


# --------------------------------------------------------------------------------------------
# Layer shapes and their reduction to a stride-1 valid convolution
# --------------------------------------------------------------------------------------------

def _pair(v, what: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or any(int(x) != x for x in t):
        raise HEError(f"{what} must be an int or a pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


@dataclass(frozen=True)
class LayerShape:
    """A Conv2d (in_shape (C, H, W), weight (M, C, kh, kw)) or Linear (in_shape (n_in,),
    weight (n_out, n_in)) layer, per batch element; public."""

    kind: str
    in_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "weight_shape", tuple(int(v) for v in self.weight_shape))
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding"))
        if self.kind == "conv2d":
            if len(self.in_shape) != 3 or len(self.weight_shape) != 4:
                raise HEError(f"conv2d needs in_shape (C, H, W) and weight (M, C, kh, kw), got "
                              f"{self.in_shape} and {self.weight_shape}")
            if self.weight_shape[1] != self.in_shape[0]:
                raise HEError(f"conv2d weight {self.weight_shape} expects {self.weight_shape[1]} input "
                              f"channels, the input has {self.in_shape[0]}")
            if min(self.stride) < 1 or min(self.padding) < 0:
                raise HEError(f"conv2d stride must be ≥ 1 and padding ≥ 0, got {self.stride}, {self.padding}")
            if min(self.out_shape[1:]) < 1:
                raise HEError(f"conv2d kernel {self.weight_shape[2:]} is larger than the padded input")
        elif self.kind == "linear":
            if len(self.in_shape) != 1 or len(self.weight_shape) != 2 or self.weight_shape[1] != self.in_shape[0]:
                raise HEError(f"linear needs in_shape (n_in,) and weight (n_out, n_in), got {self.in_shape} "
                              f"and {self.weight_shape}")
        else:
            raise HEError(f"layer kind must be 'conv2d' or 'linear', got {self.kind!r}")
        if min(self.in_shape + self.weight_shape) < 1:
            raise HEError("layer dimensions must be positive")

    @classmethod
    def conv2d(cls, in_shape, weight_shape, stride=1, padding=0) -> LayerShape:
        return cls("conv2d", tuple(in_shape), tuple(weight_shape), stride, padding)

    @classmethod
    def linear(cls, n_in: int, n_out: int) -> LayerShape:
        return cls("linear", (n_in,), (n_out, n_in))

    @classmethod
    def from_plan(cls, plan, op) -> LayerShape:
        """The shape of a protocols.plan Conv2d or Linear op."""
        in_shape = plan.tensor(op.inputs[0]).shape
        if op.kind == "Conv2d":
            return cls.conv2d(in_shape, op.weight_shape, op.stride, op.padding)
        if op.kind == "Linear":
            return cls("linear", in_shape, op.weight_shape)
        raise HEError(f"op {op.name} is a {op.kind}, not a Conv2d or Linear")

    @property
    def out_shape(self) -> tuple[int, ...]:
        if self.kind == "linear":
            return (self.weight_shape[0],)
        (_, h, w), (m, _, kh, kw) = self.in_shape, self.weight_shape
        return (m, (h + 2 * self.padding[0] - kh) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - kw) // self.stride[1] + 1)

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weight_shape[1:]))

    @property
    def macs(self) -> int:
        return int(np.prod(self.out_shape)) * self.fan_in

    def describe(self) -> str:
        if self.kind == "linear":
            return f"linear {self.in_shape[0]}→{self.weight_shape[0]}"
        m, c, kh, kw = self.weight_shape
        return (f"conv {c}×{self.in_shape[1]}×{self.in_shape[2]}→{m}×{self.out_shape[1]}×{self.out_shape[2]} "
                f"k{kh}×{kw} s{self.stride[0]} p{self.padding[0]}")


@dataclass(frozen=True)
class Geometry:
    """The layer as a stride-1 valid convolution: input (C, H, W), kernel (M, C, kh, kw),
    output (M, Ho, Wo); `phases` are the stride phases kept (those the kernel touches)."""

    C: int
    H: int
    W: int
    M: int
    kh: int
    kw: int
    Ho: int
    Wo: int
    phases: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, shape: LayerShape) -> Geometry:
        if shape.kind == "linear":
            return cls(shape.in_shape[0], 1, 1, shape.weight_shape[0], 1, 1, 1, 1, ((0, 0),))
        (m, c, kh, kw), (sh, sw) = shape.weight_shape, shape.stride
        _, ho, wo = shape.out_shape
        phases = tuple((a, b) for a in range(sh) for b in range(sw) if a < kh and b < kw)
        khp, kwp = -(-kh // sh), -(-kw // sw)
        return cls(c * len(phases), ho + khp - 1, wo + kwp - 1, m, khp, kwp, ho, wo, phases)

    def input(self, shape: LayerShape, r: np.ndarray) -> np.ndarray:
        """(B, *in_shape) → (B, C, H, W): padding, then the stride phases as channels."""
        if shape.kind == "linear":
            return r.reshape(r.shape[0], self.C, 1, 1)
        (ph, pw), (sh, sw) = shape.padding, shape.stride
        xp = np.pad(r, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        out = np.zeros((r.shape[0], len(self.phases), shape.in_shape[0], self.H, self.W), dtype=np.uint64)
        for p, (a, b) in enumerate(self.phases):
            sub = xp[:, :, a::sh, b::sw][:, :, :self.H, :self.W]
            out[:, p, :, :sub.shape[2], :sub.shape[3]] = sub
        return out.reshape(r.shape[0], self.C, self.H, self.W)

    def kernel(self, shape: LayerShape, w: np.ndarray) -> np.ndarray:
        """weight → (M, C, kh, kw), split by stride phase like the input."""
        if shape.kind == "linear":
            return w.reshape(self.M, self.C, 1, 1)
        sh, sw = shape.stride
        out = np.zeros((self.M, len(self.phases), shape.in_shape[0], self.kh, self.kw), dtype=np.uint64)
        for p, (a, b) in enumerate(self.phases):
            sub = w[:, :, a::sh, b::sw]
            out[:, p, :, :sub.shape[2], :sub.shape[3]] = sub
        return out.reshape(self.M, self.C, self.kh, self.kw)


# --------------------------------------------------------------------------------------------
# Parameters: ring degree, modulus chain, level, packing, flooding, worst-case noise margin
# --------------------------------------------------------------------------------------------

@functools.cache
def _context(n: int, prime_bits: tuple[int, ...], plain_bits: int):
    return he.Context(n, list(prime_bits), plain_bits)


def chain_bits(n: int, plain_bits: int) -> tuple[tuple[int, ...], int]:
    """The modulus chain for degree n and t = 2^plain_bits (special prime last), and how
    many of its first primes form the reply level. The reply level must absorb the
    mod-switch rounding (≤ (n+1)/2) with room to spare, the rest are 60-bit primes up to
    SEAL's 128-bit-security budget."""
    need = plain_bits + math.ceil(math.log2(n + 1)) + 3
    k_reply = -(-need // MAX_PRIME_BITS)
    bits = [-(-need // k_reply)] * k_reply
    budget = he.max_bit_count(n) - SPECIAL_PRIME_BITS - sum(bits)
    while budget >= MAX_PRIME_BITS:
        bits.append(MAX_PRIME_BITS)
        budget -= MAX_PRIME_BITS
    if budget >= 20:
        bits.append(budget)
    return tuple(bits) + (SPECIAL_PRIME_BITS,), k_reply


@dataclass(frozen=True)
class LayerParams:
    """Everything both parties must agree on for one layer (public)."""

    shape: LayerShape
    plain_bits: int            # shares live mod 2^plain_bits
    weight_bits: int           # public bound: every weight's centered lift has |w| ≤ 2^weight_bits
    n: int                     # ring degree
    prime_bits: tuple[int, ...]  # modulus chain, the special prime last
    level: int                 # primes of the query (and of the products)
    reply_level: int           # primes of the reply, after mod-switching
    c_group: int               # input channels per input polynomial
    m_group: int               # output channels per reply polynomial
    flood_bits: int            # flooding noise uniform in [−2^b, 2^b)
    kappa: int                 # statistical security of the flooding (per reply ciphertext)
    margin_bits: float = field(compare=False)  # worst-case noise bits left at decryption

    @property
    def geometry(self) -> Geometry:
        return Geometry.of(self.shape)

    @property
    def in_groups(self) -> int:
        return -(-self.geometry.C // self.c_group)

    @property
    def out_groups(self) -> int:
        return -(-self.geometry.M // self.m_group)

    @property
    def context(self):
        return _context(self.n, self.prime_bits, self.plain_bits)

    @property
    def chain(self) -> tuple:
        """Key identity: parameters sharing it share one key pair."""
        return (self.n, self.prime_bits, self.plain_bits)

    def keep(self) -> np.ndarray:
        """Coefficients of a reply polynomial that hold outputs (m, i, j), in that order."""
        g = self.geometry
        o = (self.c_group - 1) * g.H * g.W + (g.kh - 1) * g.W + (g.kw - 1)
        s = self.c_group * g.H * g.W
        m, i, j = np.meshgrid(np.arange(self.m_group), np.arange(g.Ho), np.arange(g.Wo), indexing="ij")
        return (o + m * s + i * g.W + j).astype(np.uint32).ravel()

    def digest(self) -> bytes:
        """8 bytes naming these parameters on the wire."""
        d = asdict(self)
        d.pop("margin_bits")
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).digest()[:8]

    def query_bytes(self, batch: int = 1) -> int:
        """SEAL's seeded ciphertext: c0 at 8 bytes a residue, 194 bytes of header and seed."""
        return batch * self.in_groups * (self.n * self.level * 8 + 194 + 4) + 21

    def reply_bytes(self, batch: int = 1) -> int:
        widths = [int(q).bit_length() for q in self.context.primes()[:self.reply_level]]
        per = 20 + sum(-(-w * (self.n + len(self.keep())) // 8) for w in widths)
        return batch * self.out_groups * (per + 4) + 21

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = self.shape.describe()
        return d


def noise_bounds(n: int, primes: list[int], plain_bits: int, level: int, reply_level: int,
                 weight_l1: int, kappa: int) -> tuple[int, float]:
    """(flood_bits, worst-case noise bits left) for a reply whose products have weight-side
    ℓ1 norm at most weight_l1 (the sum over all kernel polynomials summed into it).

    Invariant noise of a reply coefficient, in units where decryption fails at q'/(2t):
      products        Σ P_i·e_i      ≤ weight_l1 · FRESH_BOUND        (depends on W: flooded)
      re-randomizer   −e·u + e1 + e2·s ≤ ERROR_BOUND·(2n+1), + (n+1)/2 + 1 if SEAL switched it
      mask            rounding of round(q·s/t) ≤ 1
      flooding        < 2^flood_bits
      mod switch      everything × q'/q, + (n+1)/2 + 1 (rounding of c0 and c1·s, s ternary)
    """
    t = 1 << plain_bits
    b_mul = weight_l1 * FRESH_BOUND
    flood_bits = kappa + max(1, math.ceil(math.log2(n * max(b_mul, 1))))
    b_pre = b_mul + ERROR_BOUND * (2 * n + 1) + (n + 1) // 2 + 2 + (1 << flood_bits)
    q = math.prod(primes[:level])
    qr = math.prod(primes[:reply_level])
    # |e_final| ≤ b_pre·qr/q + (n+1)/2 + 1  →  compare t·e_final with qr/2 exactly
    switch = ((n + 1) // 2 + 1) if reply_level < level else 0
    num = t * (b_pre * qr + switch * q)          # t·e_final·q
    margin = math.log2(qr / 2) + math.log2(q) - math.log2(num)
    return flood_bits, margin


def choose_params(shape: LayerShape, plain_bits: int, weight_bits: int | None = None,
                  kappa: int = KAPPA) -> LayerParams:
    """The cheapest parameters (upload + download bytes; fewer products on ties) that keep
    MIN_MARGIN_BITS of worst-case noise margin. weight_bits defaults to plain_bits − 1
    (any weights mod 2^plain_bits)."""
    if not isinstance(plain_bits, (int, np.integer)) or not 2 <= plain_bits <= MAX_PLAIN_BITS:
        raise HEError(f"ring width l must be an integer in 2..{MAX_PLAIN_BITS} (SEAL's plain modulus limit), "
                      f"got {plain_bits!r}")
    plain_bits = int(plain_bits)
    weight_bits = plain_bits - 1 if weight_bits is None else int(weight_bits)
    if not 0 <= weight_bits <= plain_bits - 1:
        raise HEError(f"weight_bits must be in 0..{plain_bits - 1} for l = {plain_bits}, got {weight_bits}")
    if not 1 <= kappa <= 128:
        raise HEError(f"kappa must be in 1..128, got {kappa}")
    g = Geometry.of(shape)
    hw = g.H * g.W
    best, best_cost = None, None
    for n in DEGREES:
        if hw > n:
            continue
        prime_bits, k_reply = chain_bits(n, plain_bits)
        primes = [int(p) for p in _context(n, prime_bits, plain_bits).primes()]
        data = len(prime_bits) - 1
        widths = [p.bit_length() for p in primes]
        seen = set()
        for n_in in range(1, g.C + 1):
            c_group = -(-g.C // n_in)
            if c_group in seen or c_group * hw > n:
                continue
            seen.add(c_group)
            in_groups = -(-g.C // c_group)
            for m_group in _m_choices(g.M, n // (c_group * hw)):
                out_groups = -(-g.M // m_group)
                l1 = (1 << weight_bits) * m_group * shape.fan_in
                for level in range(k_reply, data + 1):
                    flood, margin = noise_bounds(n, primes, plain_bits, level, k_reply, l1, kappa)
                    if margin >= MIN_MARGIN_BITS:
                        break
                else:
                    continue
                up = in_groups * n * level * 8
                keep = m_group * g.Ho * g.Wo
                down = out_groups * sum(-(-w * (n + keep) // 8) for w in widths[:k_reply])
                cost = (up + down, in_groups * out_groups * level * n)
                if best_cost is None or cost < best_cost:
                    best_cost = cost
                    best = LayerParams(shape, plain_bits, weight_bits, n, prime_bits, level, k_reply, c_group,
                                       m_group, flood, kappa, margin)
    if best is None:
        raise HEError(f"no BFV parameters up to n = {DEGREES[-1]} fit {shape.describe()} at l = {plain_bits} "
                      f"with {weight_bits}-bit weights (the image is too large for one polynomial, or the "
                      f"noise bound too high: lower weight_bits or l)")
    return best


def _m_choices(m: int, cap: int) -> list[int]:
    """Output channels per polynomial worth trying: each distinct group count."""
    cap = min(m, cap)
    return sorted({-(-m // k) for k in range(1, m + 1) if -(-m // k) <= cap})


# --------------------------------------------------------------------------------------------
# Polynomial layout (numpy)
# --------------------------------------------------------------------------------------------

def _check_ring(a, what: str, shape: tuple[int, ...], plain_bits: int) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint64:
        raise HEError(f"{what} must be a numpy uint64 array of values mod 2^{plain_bits}, got "
                      f"{type(a).__name__}{'' if not isinstance(a, np.ndarray) else ' of ' + str(a.dtype)}")
    if a.shape != shape:
        raise HEError(f"{what} has shape {a.shape}, expected {shape}")
    if plain_bits < 64 and a.size and int(a.max()) >> plain_bits:
        raise HEError(f"{what} holds values ≥ 2^{plain_bits}: reduce it mod 2^{plain_bits} first")
    return np.ascontiguousarray(a)


def input_polys(p: LayerParams, r: np.ndarray) -> np.ndarray:
    """(B, *in_shape) → (B·in_groups, n) polynomials."""
    g = p.geometry
    x = g.input(p.shape, r)
    b = x.shape[0]
    hw = g.H * g.W
    flat = np.zeros((b, p.in_groups * p.c_group * hw), dtype=np.uint64)
    flat[:, :g.C * hw] = x.reshape(b, -1)
    out = np.zeros((b * p.in_groups, p.n), dtype=np.uint64)
    out[:, :p.c_group * hw] = flat.reshape(b * p.in_groups, p.c_group * hw)
    return out


def kernel_polys(p: LayerParams, w: np.ndarray) -> np.ndarray:
    """weight → (in_groups·out_groups, n) polynomials, row-major by (input, output) group."""
    g = p.geometry
    k = np.zeros((p.out_groups * p.m_group, p.in_groups * p.c_group, g.kh, g.kw), dtype=np.uint64)
    k[:g.M, :g.C] = g.kernel(p.shape, w)
    hw = g.H * g.W
    o = (p.c_group - 1) * hw + (g.kh - 1) * g.W + (g.kw - 1)
    s = p.c_group * hw
    m, c, u, v = np.meshgrid(np.arange(p.m_group), np.arange(p.c_group), np.arange(g.kh), np.arange(g.kw),
                             indexing="ij")
    idx = (o + m * s - c * hw - u * g.W - v).ravel()
    # (out_groups, m_group, in_groups, c_group, kh, kw) → (in_groups, out_groups, m, c, u, v)
    k = k.reshape(p.out_groups, p.m_group, p.in_groups, p.c_group, g.kh, g.kw).transpose(2, 0, 1, 3, 4, 5)
    out = np.zeros((p.in_groups, p.out_groups, p.n), dtype=np.uint64)
    out[:, :, idx] = k.reshape(p.in_groups, p.out_groups, -1)
    return out.reshape(-1, p.n)


def output_values(p: LayerParams, polys: np.ndarray, batch: int) -> np.ndarray:
    """(batch·out_groups, n) reply polynomials → (batch, *out_shape)."""
    g = p.geometry
    vals = polys[:, p.keep()].reshape(batch, p.out_groups * p.m_group, g.Ho, g.Wo)[:, :g.M]
    return np.ascontiguousarray(vals.reshape((batch,) + p.shape.out_shape))


# --------------------------------------------------------------------------------------------
# Wire format: [magic 4][version 1][params digest 8][batch 4][count 4] then count × [len 4][bytes]
# --------------------------------------------------------------------------------------------

def _frame(magic: bytes, p: LayerParams, batch: int, items: list[bytes]) -> bytes:
    parts = [magic, bytes([WIRE_VERSION]), p.digest(), struct.pack("<II", batch, len(items))]
    for it in items:
        parts += [struct.pack("<I", len(it)), it]
    return b"".join(parts)


def _unframe(magic: bytes, what: str, p: LayerParams, data) -> tuple[int, list[bytes]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise HEError(f"{what} must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 21 or data[:4] != magic:
        raise HEError(f"not a {what} (bad header)")
    if data[4] != WIRE_VERSION:
        raise HEError(f"{what} has format version {data[4]}, expected {WIRE_VERSION}")
    if data[5:13] != p.digest():
        raise HEError(f"{what} was made for other layer parameters than {p.shape.describe()} "
                      f"(n={p.n}, l={p.plain_bits}): both parties must use the same LayerParams")
    batch, count = struct.unpack_from("<II", data, 13)
    items, pos = [], 21
    for i in range(count):
        if pos + 4 > len(data):
            raise HEError(f"{what} is truncated (item {i} of {count})")
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + size > len(data):
            raise HEError(f"{what} is truncated (item {i} of {count})")
        items.append(data[pos:pos + size])
        pos += size
    if pos != len(data):
        raise HEError(f"{what} has {len(data) - pos} trailing bytes")
    return batch, items


def _native(fn, what: str):
    """Runs a pi_native.he call, turning its argument errors into HEError."""
    try:
        return fn()
    except (ValueError, TypeError) as exc:
        raise HEError(f"{what}: {exc}") from None


# --------------------------------------------------------------------------------------------
# The two parties
# --------------------------------------------------------------------------------------------

class HEClient:
    """The client's keys (one pair per parameter chain) and its side of the protocol."""

    def __init__(self) -> None:
        self._keys: dict[tuple, object] = {}
        self.last_margin_bits: float | None = None

    def _key(self, p: LayerParams):
        if p.chain not in self._keys:
            self._keys[p.chain] = he.Client(p.context)
        return self._keys[p.chain]

    def public_key(self, p: LayerParams) -> bytes:
        """The public key the server needs for p's chain (send once per chain)."""
        return self._key(p).public_key()

    def encrypt(self, p: LayerParams, r: np.ndarray) -> bytes:
        """Enc(r) for r of shape (batch, *in_shape), values mod 2^l."""
        if not isinstance(r, np.ndarray) or r.ndim != len(p.shape.in_shape) + 1:
            raise HEError(f"r must be a (batch, {', '.join(map(str, p.shape.in_shape))}) uint64 array")
        r = _check_ring(r, "r", (r.shape[0],) + p.shape.in_shape, p.plain_bits)
        polys = input_polys(p, r)
        cts = _native(lambda: self._key(p).encrypt(polys, p.level), "encrypt")
        return _frame(QUERY_MAGIC, p, r.shape[0], cts)

    def decrypt(self, p: LayerParams, reply: bytes, noise: bool = False):
        """The client's share W·r − s mod 2^l, shape (batch, *out_shape). Sets
        last_margin_bits (noise bits left, the minimum over the reply); raises
        HEDecryptionError below MIN_MARGIN_BITS. With noise=True also returns t·e of every
        output coefficient (float64, for tests of the noise distribution)."""
        batch, items = _unframe(REPLY_MAGIC, "reply", p, reply)
        if len(items) != batch * p.out_groups:
            raise HEError(f"reply holds {len(items)} ciphertexts, expected {batch * p.out_groups}")
        keep = p.keep()
        key = self._key(p)
        polys = np.empty((len(items), p.n), dtype=np.uint64)
        noises, margin = [], math.inf
        for i, ct in enumerate(items):
            # The reply names its level (byte 6); only the two a server may use are accepted.
            level = ct[6] if len(ct) > 6 and ct[6] in (p.reply_level, p.level) else p.reply_level
            polys[i], bits, e = _native(lambda ct=ct, lv=level: key.decrypt(ct, lv, keep, noise), f"reply {i}")
            margin = min(margin, bits)
            noises.append(e)
        self.last_margin_bits = margin
        if margin < MIN_MARGIN_BITS:
            raise HEDecryptionError(f"{p.shape.describe()}: the reply's noise left {margin:.1f} bits "
                                    f"(< {MIN_MARGIN_BITS}); its shares are not reliable")
        share = output_values(p, polys, batch)
        if noise:
            e = np.stack(noises).reshape(len(items), -1)
            full = np.zeros((len(items), p.n))
            full[:, keep] = e
            return share, output_values(p, full, batch)
        return share


@dataclass
class PreparedLayer:
    """A layer's weights as NTT-form kernel polynomials (reusable across queries)."""

    params: LayerParams
    kernels: object


class HEServer:
    """The server's side: the client's public keys and the layers' prepared kernels."""

    def __init__(self) -> None:
        self._servers: dict[tuple, object] = {}

    def set_public_key(self, p: LayerParams, public_key: bytes) -> None:
        if not isinstance(public_key, (bytes, bytearray)):
            raise HEError(f"public key must be bytes, got {type(public_key).__name__}")
        self._servers[p.chain] = _native(lambda: he.Server(p.context, bytes(public_key)), "public key")

    def _server(self, p: LayerParams):
        if p.chain not in self._servers:
            raise HEError(f"no public key for n={p.n}, l={p.plain_bits} chain {p.prime_bits}: call set_public_key")
        return self._servers[p.chain]

    def prepare(self, p: LayerParams, weight: np.ndarray) -> PreparedLayer:
        """weight (M, C, kh, kw) or (n_out, n_in), values mod 2^l whose centered lift is
        within ±2^weight_bits (the bound the parameters were chosen for)."""
        w = _check_ring(weight, "weight", p.shape.weight_shape, p.plain_bits)
        half = np.uint64(1 << (p.plain_bits - 1))
        lift = np.where(w >= half, np.uint64(1 << p.plain_bits) - w, w)
        if w.size and int(lift.max()) > (1 << p.weight_bits):
            raise HEError(f"weights exceed the public bound 2^{p.weight_bits} the parameters were chosen for; "
                          f"choose_params with a larger weight_bits")
        polys = kernel_polys(p, w)
        k = _native(lambda: self._server(p).prepare(polys, p.in_groups, p.out_groups, p.level), "prepare")
        return PreparedLayer(p, k)

    def respond(self, layer: PreparedLayer, query: bytes, *, flood: bool = True,
                mod_switch: bool = True) -> tuple[bytes, np.ndarray]:
        """(reply, the server's share s of shape (batch, *out_shape)). flood=False and
        mod_switch=False exist for the tests that show what they protect."""
        p = layer.params
        batch, items = _unframe(QUERY_MAGIC, "query", p, query)
        if len(items) != batch * p.in_groups:
            raise HEError(f"query holds {len(items)} ciphertexts, expected {batch * p.in_groups}")
        replies, masks = _native(
            lambda: self._server(p).respond(layer.kernels, items, p.reply_level if mod_switch else p.level,
                                            p.flood_bits if flood else 0, p.keep()), "query")
        return _frame(REPLY_MAGIC, p, batch, replies), output_values(p, masks, batch)
