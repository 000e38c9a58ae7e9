"""Pure-Python reference of the FSS gates of pi_native (docs/fss.md), bit for bit.

Over 500 lines on purpose: it mirrors native/src/{dcf,gates}.cpp one function for one, so that
the two read side by side.

Slow on purpose: Python integers, one element at a time, written to be read next to the spec.
Only the AES block function comes from pi_native (`aes128_encrypt` keyed by the dealer's seed for
the keygen stream, `mmo_hash` for the fixed-key PRG); everything else is independent of the C++.

Blocks are Python ints of 128 bits: bytes 0..7 (little-endian) are the low word `lo`, bytes
8..15 the high word `hi`, so a block is lo | hi << 64.

Input bit width n (docs/fss.md, "Input bit width n"): relu, trunc and Circa's select work on the
ring of w = n + 1 bits (w = 64 when n = 64), drelu on n bits, Circa's sign test on n bits; the
dealer reduces r_in and the parties x^ to those low bits. Outputs are shares mod 2^64.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

import pi_native

M64 = (1 << 64) - 1
SEED_MASK = ((1 << 128) - 1) ^ 3  # the two low bits of a seed are zero
HEADER = 32
MAGIC = b"PIFK"
VERSION = 2
GATE_IDS = {"relu": 1, "drelu": 2, "circa": 3, "trunc": 4, "square": 5, "mul": 6, "dcf": 16, "dcf_bit": 17}
GATE_NAMES = {v: k for k, v in GATE_IDS.items()}
MODES = {None: 0, "poszero": 1, "negpass": 2}


# ---- primitives ------------------------------------------------------------------------------

def _to_bytes(blocks):
    return np.frombuffer(b"".join(b.to_bytes(16, "little") for b in blocks), np.uint8).reshape(-1, 16)


def _from_bytes(arr):
    return [int.from_bytes(arr[i].tobytes(), "little") for i in range(arr.shape[0])]


def mmo(blocks):
    """Fixed-key MMO hash AES_K(b) xor b of each block."""
    return _from_bytes(pi_native.mmo_hash(_to_bytes(blocks)))


def tweak(j):
    return j << 64  # Block{lo = 0, hi = j}


def lo(b):
    return b & M64


def hi(b):
    return b >> 64


def neg_if(t, v):
    return (-v) & M64 if t else v & M64


def u64(v):
    return int(v) & M64


def signed(v):
    v &= M64
    return v - (1 << 64) if v >> 63 else v


class ElementRng:
    """Keygen stream of element i: AES_seed(Block{lo = j, hi = i}), j = 0, 1, ..., as 64-bit words."""

    def __init__(self, seed: bytes, element: int):
        self.seed, self.element, self.counter, self.words = seed, element, 0, []

    def word(self):
        if not self.words:
            blocks = [self.counter + j | self.element << 64 for j in range(4)]
            self.counter += 4
            for b in _from_bytes(pi_native.aes128_encrypt(self.seed, _to_bytes(blocks))):
                self.words += [lo(b), hi(b)]
        return self.words.pop(0)

    def seed_block(self):
        a = self.word()
        b = self.word()
        return (a | b << 64) & SEED_MASK

    def share(self, value):
        """Additive sharing of value; party 0's share comes from the stream."""
        a = self.word()
        return a, (value - a) & M64


def w64(v, nb=8):
    """A ring word in nb little-endian bytes (its value mod 2^(8 nb))."""
    return (v & M64).to_bytes(8, "little")[:nb]


def r64(buf, off, nb=8):
    return int.from_bytes(buf[off:off + nb], "little")


def vbytes(ring):
    """Bytes per ring word in keys for the output ring Z_(2^ring)."""
    return (ring + 7) // 8


def r128(buf, off):
    return int.from_bytes(buf[off:off + 16], "little")


# ---- ring DCF --------------------------------------------------------------------------------

def dcf_key_bytes(bits, words, vb=8):
    return 16 + bits * (16 + vb * words) + vb * words


def _expand_ring(words, s):
    out = mmo([s ^ tweak(j) for j in range(4 if words == 2 else 3)])
    seeds = [out[0] & SEED_MASK, out[1] & SEED_MASK]
    ts = [out[0] & 1, out[1] & 1]
    if words == 1:
        vs = [[lo(out[2])], [hi(out[2])]]
    else:
        vs = [[lo(out[2]), hi(out[2])], [lo(out[3]), hi(out[3])]]
    return seeds, ts, vs


def dcf_gen_one(bits, words, alpha, beta, s0, s1, vb=8):
    """One key pair for beta * [x < alpha]; returns (key0, key1) bytes."""
    s = [s0 & SEED_MASK, s1 & SEED_MASK]
    t = [0, 1]
    V = [0] * words
    body = b""
    for i in range(bits):
        a = (alpha >> (bits - 1 - i)) & 1
        keep, lose = a, 1 - a
        e = [_expand_ring(words, s[0]), _expand_ring(words, s[1])]
        scw = e[0][0][lose] ^ e[1][0][lose]
        vcw = []
        for w in range(words):
            c = neg_if(t[1], e[1][2][lose][w] - e[0][2][lose][w] - V[w])
            if a:
                c += neg_if(t[1], beta[w])
            c &= M64
            vcw.append(c)
            V[w] = (V[w] - e[1][2][keep][w] + e[0][2][keep][w] + neg_if(t[1], c)) & M64
        tcw = [e[0][1][0] ^ e[1][1][0] ^ a ^ 1, e[0][1][1] ^ e[1][1][1] ^ a]
        body += (scw | tcw[0] | tcw[1] << 1).to_bytes(16, "little") + b"".join(w64(c, vb) for c in vcw)
        for p in range(2):
            new_s = e[p][0][keep] ^ (scw if t[p] else 0)
            new_t = e[p][1][keep] ^ (t[p] & tcw[keep])
            s[p], t[p] = new_s, new_t
    conv = mmo([s[0] ^ tweak(4), s[1] ^ tweak(4)])
    cwords = [[lo(c), hi(c)] for c in conv]
    fin = b"".join(w64(neg_if(t[1], cwords[1][w] - cwords[0][w] - V[w]), vb) for w in range(words))
    k0 = (s0 & SEED_MASK).to_bytes(16, "little") + body + fin
    k1 = (s1 & SEED_MASK).to_bytes(16, "little") + body + fin
    return k0, k1


def dcf_eval_one(party, bits, words, key, x, vb=8):
    """Party's share (list of `words` ring elements) of beta * [x < alpha] (mod 2^(8 vb))."""
    rec = 16 + vb * words
    s = r128(key, 0) & SEED_MASK
    t = party
    acc = [0] * words
    for i in range(bits):
        b = (x >> (bits - 1 - i)) & 1
        nb, vblock = mmo([s ^ tweak(b), s ^ tweak(2 + b if words == 2 else 2)])
        off = 16 + i * rec
        cw = r128(key, off)
        vcw = [r64(key, off + 16 + vb * w, vb) for w in range(words)]
        v = [hi(vblock) if b else lo(vblock)] if words == 1 else [lo(vblock), hi(vblock)]
        ns, nt = nb & SEED_MASK, nb & 1
        if t:
            ns ^= cw & SEED_MASK
            nt ^= (cw >> b) & 1
            v = [v[w] + vcw[w] for w in range(words)]
        acc = [(acc[w] + v[w]) & M64 for w in range(words)]
        s, t = ns, nt
    (conv,) = mmo([s ^ tweak(4)])
    cwords = [lo(conv), hi(conv)]
    fin = 16 + bits * rec
    for w in range(words):
        acc[w] = (acc[w] + cwords[w] + (r64(key, fin + vb * w, vb) if t else 0)) & M64
    return [neg_if(party, a) for a in acc]


# ---- bit DCF (early termination) -------------------------------------------------------------

def dcf_bit_leaf_bits(bits):
    return min(bits, 7)


def dcf_bit_key_bytes(bits):
    return 16 + 16 * (bits - dcf_bit_leaf_bits(bits)) + 8 + 16


def dcf_bit_gen_one(bits, alpha, s0, s1):
    nu = dcf_bit_leaf_bits(bits)
    depth = bits - nu
    s = [s0 & SEED_MASK, s1 & SEED_MASK]
    t = [0, 1]
    V = 0
    vbits = 0
    body = b""
    for i in range(depth):
        a = (alpha >> (bits - 1 - i)) & 1
        keep, lose = a, 1 - a
        out = mmo([s[0] ^ tweak(0), s[0] ^ tweak(1), s[1] ^ tweak(0), s[1] ^ tweak(1)])
        cs = [[out[2 * p + side] & SEED_MASK for side in range(2)] for p in range(2)]
        ct = [[out[2 * p + side] & 1 for side in range(2)] for p in range(2)]
        cv = [[(out[2 * p + side] >> 1) & 1 for side in range(2)] for p in range(2)]
        scw = cs[0][lose] ^ cs[1][lose]
        vcw = cv[0][lose] ^ cv[1][lose] ^ V ^ a
        V ^= cv[0][keep] ^ cv[1][keep] ^ vcw
        tcw = [ct[0][0] ^ ct[1][0] ^ a ^ 1, ct[0][1] ^ ct[1][1] ^ a]
        body += (scw | tcw[0] | tcw[1] << 1).to_bytes(16, "little")
        vbits |= vcw << i
        for p in range(2):
            new_s = cs[p][keep] ^ (scw if t[p] else 0)
            new_t = ct[p][keep] ^ (t[p] & tcw[keep])
            s[p], t[p] = new_s, new_t
    conv = mmo([s[0] ^ tweak(2), s[1] ^ tweak(2)])
    alow = alpha & ((1 << nu) - 1)
    cw = 0
    for j in range(1 << nu):
        entry = ((conv[0] >> j) & 1) ^ ((conv[1] >> j) & 1) ^ V ^ int(j < alow)
        cw |= entry << j
    tail = w64(vbits) + cw.to_bytes(16, "little")
    return ((s0 & SEED_MASK).to_bytes(16, "little") + body + tail,
            (s1 & SEED_MASK).to_bytes(16, "little") + body + tail)


def dcf_bit_eval_one(party, bits, key, x):
    nu = dcf_bit_leaf_bits(bits)
    depth = bits - nu
    s = r128(key, 0) & SEED_MASK
    t = party
    acc = 0
    vbits = r64(key, 16 + 16 * depth)
    for i in range(depth):
        b = (x >> (bits - 1 - i)) & 1
        (nb,) = mmo([s ^ tweak(b)])
        cw = r128(key, 16 + 16 * i)
        acc ^= (nb >> 1) & 1
        ns, nt = nb & SEED_MASK, nb & 1
        if t:
            acc ^= (vbits >> i) & 1
            ns ^= cw & SEED_MASK
            nt ^= (cw >> b) & 1
        s, t = ns, nt
    (conv,) = mmo([s ^ tweak(2)])
    leaf = x & ((1 << nu) - 1)
    cw = r128(key, 16 + 16 * depth + 8)
    acc ^= (conv >> leaf) & 1
    if t:
        acc ^= (cw >> leaf) & 1
    return acc


# ---- input width -------------------------------------------------------------------------------

def mask(bits):
    return (1 << bits) - 1


def width(n):
    """w: the ring of relu, trunc and Circa's select (one bit of headroom over n, at most 64)."""
    return 64 if n >= 64 else n + 1


def relu_headroom(n, shift):
    """h = 0 only for the exact ReLU on the full ring (the wrap term 2^64 * d * w vanishes there)."""
    return 0 if n >= 64 and shift == 0 else 1


def relu_dcf_bits(n, shift):
    return width(n) - 1 - relu_headroom(n, shift)


def _eff(shift, n=64):
    """Shifts beyond w - 2 act as w - 2 (n = 64: 63 is computed as 62)."""
    return min(shift, width(n) - 2)


def input_bits(gate, n=64):
    """Low bits of x^ each gate reads (each party's share width in the opening)."""
    if gate in ("relu", "trunc", "circa"):
        return width(n)
    if gate == "drelu":
        return n
    return 64


def online_cost(gate, n=64, **_):
    w = input_bits(gate, n)
    packed = 2 * ((w + 7) // 8)
    if gate == "mul":
        return {"bytes": 2.0 * packed, "rounds": 1, "input_bits": w, "bits": 4 * w, "word_bytes": 32.0}
    if gate == "circa":
        return {"bytes": packed + 0.25, "rounds": 2, "input_bits": w, "bits": 2 * w + 2, "word_bytes": 16.25}
    return {"bytes": float(packed), "rounds": 1, "input_bits": w, "bits": 2 * w, "word_bytes": 16.0}


# ---- key batches -----------------------------------------------------------------------------

def key_bytes_per_element(gate, n=64, k=0, mode=None, shift=0, words=0, ring=64):
    vb = vbytes(ring)
    if gate == "relu":
        return dcf_key_bytes(relu_dcf_bits(n, shift), 2, vb) + 4 * vb
    if gate == "drelu":
        return dcf_key_bytes(n - 1, 1, vb) + 2 * vb
    if gate == "circa":
        return dcf_bit_key_bytes(n - k - 1) + 6 * vb
    if gate == "trunc":
        return 2 * vb
    if gate == "square":
        return 16
    if gate == "mul":
        return 24
    if gate == "dcf":
        return dcf_key_bytes(n, words)
    if gate == "dcf_bit":
        return dcf_bit_key_bytes(n)
    raise ValueError(gate)


def header(gate, party, count, n=64, k=0, mode=None, shift=0, words=0, ring=64):
    elem = key_bytes_per_element(gate, n=n, k=k, mode=mode, shift=shift, words=words, ring=ring)
    h = struct.pack("<4sBBBBBBBBIQI", MAGIC, VERSION, GATE_IDS[gate], party, n, k, MODES[mode], shift, words,
                    elem, count, ring)    # byte 24: the output ring, bytes 25..27 reserved
    return h + struct.pack("<I", zlib.crc32(h))


def parse(key):
    """(params dict, party, count, element size, list of element key bytes)."""
    magic, ver, gid, party, n, k, mode, shift, words, elem, count, ring = struct.unpack_from(
        "<4sBBBBBBBBIQI", key, 0)
    assert magic == MAGIC and ver == VERSION and ring < 256
    assert struct.unpack_from("<I", key, 28)[0] == zlib.crc32(key[:28])
    assert len(key) == HEADER + count * elem
    mode_name = {0: None, 1: "poszero", 2: "negpass"}[mode]
    params = {"gate": GATE_NAMES[gid], "n": n, "k": k, "mode": mode_name, "shift": shift, "words": words,
              "ring": ring}
    elems = [key[HEADER + i * elem: HEADER + (i + 1) * elem] for i in range(count)]
    return params, party, elems


def _batch(gate, per_element, params):
    k0 = [header(gate, 0, len(per_element), **params)]
    k1 = [header(gate, 1, len(per_element), **params)]
    for a, b in per_element:
        k0.append(a)
        k1.append(b)
    return b"".join(k0), b"".join(k1)


def _shares(rng, values, vb=8):
    out0, out1 = b"", b""
    for v in values:
        a, b = rng.share(v)
        out0 += w64(a, vb)
        out1 += w64(b, vb)
    return out0, out1


# ---- gates: key generation --------------------------------------------------------------------

def gen_dcf(seed, alpha, beta, bits):
    beta = np.asarray(beta, dtype=np.uint64)
    words = 1 if beta.ndim == 1 else beta.shape[1]
    rows = beta.reshape(len(alpha), words)
    elems = []
    for i, a in enumerate(alpha):
        rng = ElementRng(seed, i)
        s0, s1 = rng.seed_block(), rng.seed_block()
        elems.append(dcf_gen_one(bits, words, u64(a), [u64(b) for b in rows[i]], s0, s1))
    return _batch("dcf", elems, {"n": bits, "words": words})


def eval_dcf(party, key, x):
    p, kp, elems = parse(key)
    assert p["gate"] == "dcf" and kp == party
    out = [dcf_eval_one(party, p["n"], p["words"], e, u64(xi)) for e, xi in zip(elems, x)]
    arr = np.array(out, dtype=np.uint64).reshape(len(elems), p["words"])
    return arr[:, 0] if p["words"] == 1 else arr


def gen_dcf_bit(seed, alpha, bits):
    elems = []
    for i, a in enumerate(alpha):
        rng = ElementRng(seed, i)
        s0, s1 = rng.seed_block(), rng.seed_block()
        elems.append(dcf_bit_gen_one(bits, u64(a), s0, s1))
    return _batch("dcf_bit", elems, {"n": bits})


def eval_dcf_bit(party, key, x):
    p, kp, elems = parse(key)
    assert p["gate"] == "dcf_bit" and kp == party
    return np.array([dcf_bit_eval_one(party, p["n"], e, u64(xi)) for e, xi in zip(elems, x)], dtype=np.uint8)


def gen_relu(seed, r_in, r_out, shift=0, n=64, ring=64):
    s, w, vb = _eff(shift, n), width(n), vbytes(ring)
    h = relu_headroom(n, shift)
    mp = w - 1 - h
    elems = []
    for i, (r, ro) in enumerate(zip(r_in, r_out)):
        r, ro = u64(r) & mask(w), u64(ro)  # the dealer reduces r_in mod 2^w
        rng = ElementRng(seed, i)
        alpha = r & mask(mp)
        q0 = (r >> mp) & 1
        Rt, G = r, 0
        if h:  # headroom: wrap of z + r mod 2^w is known from the top two bits of r (docs/fss.md)
            top, big = r >> (w - 2), (1 << (w - s)) & M64
            Rt = ((r >> s) - (big if top == 3 else 0)) & M64
            G = big if top == 2 else 0
        sigma = M64 if q0 else 1
        s0, s1 = rng.seed_block(), rng.seed_block()
        d0, d1 = dcf_gen_one(mp, 2, alpha, [sigma, sigma * Rt & M64], s0, s1, vb)
        B01 = (ro - q0 * Rt) & M64
        c0, c1 = _shares(rng, [q0, B01 + G, B01, ro - Rt + q0 * Rt], vb)
        elems.append((d0 + c0, d1 + c1))
    return _batch("relu", elems, {"shift": shift, "n": n, "ring": ring})


def gen_drelu(seed, r_in, r_out, n=64, ring=64):
    nb, vb = n - 1, vbytes(ring)
    elems = []
    for i, (r, ro) in enumerate(zip(r_in, r_out)):
        r, ro = u64(r), u64(ro)
        rng = ElementRng(seed, i)
        q0 = (r >> nb) & 1
        s0, s1 = rng.seed_block(), rng.seed_block()
        d0, d1 = dcf_gen_one(nb, 1, r & mask(nb), [M64 if q0 else 1], s0, s1, vb)
        c0, c1 = _shares(rng, [ro + q0, ro - q0], vb)
        elems.append((d0 + c0, d1 + c1))
    return _batch("drelu", elems, {"n": n, "ring": ring})


def _trunc_consts(r, s, w):
    """(R, Q) of trunc's expression on the w-bit ring: R = r_w >> s, Q = msb_w(r_w) * 2^(w - s) mod 2^64."""
    rw = r & mask(w)
    return rw >> s, ((rw >> (w - 1)) << (w - s)) & M64


def gen_circa(seed, r_in, r_out, k, mode, shift=0, n=64, ring=64):
    s, w, vb = _eff(shift, n), width(n), vbytes(ring)
    mp = n - k - 1
    elems = []
    for i, (r, ro) in enumerate(zip(r_in, r_out)):
        r, ro = u64(r), u64(ro)
        rng = ElementRng(seed, i)
        q = (r >> (n - 1)) & 1  # msb of the m-bit value r_n >> k
        s0, s1 = rng.seed_block(), rng.seed_block()
        d0, d1 = dcf_bit_gen_one(mp, (r >> k) & mask(mp), s0, s1)
        rd = rng.word() & 1
        g0 = rng.word() & 1
        R, Q = _trunc_consts(r, s, w)  # (n = 64, s = 0: R = r, Q = 0, C[0] = C[1], C[2] = C[3])
        C = [ro - R * rd + Q * rd, ro - R * rd, ro - R + Q + R * rd - Q * rd, ro - R + R * rd]
        c0, c1 = _shares(rng, [rd] + C, vb)
        elems.append((d0 + w64(g0, vb) + c0, d1 + w64(g0 ^ q ^ rd, vb) + c1))
    return _batch("circa", elems, {"k": k, "mode": mode, "shift": shift, "n": n, "ring": ring})


def gen_trunc(seed, r_in, r_out, shift, n=64, ring=64):
    s, w, vb = _eff(shift, n), width(n), vbytes(ring)
    elems = []
    for i, (r, ro) in enumerate(zip(r_in, r_out)):
        r, ro = u64(r), u64(ro)
        rng = ElementRng(seed, i)
        R, Q = _trunc_consts(r, s, w)
        elems.append(_shares(rng, [ro - R + Q, ro - R], vb))
    return _batch("trunc", elems, {"shift": shift, "n": n, "ring": ring})


def gen_square(seed, r_in, r_out):
    elems = []
    for i, (r, ro) in enumerate(zip(r_in, r_out)):
        r, ro = u64(r), u64(ro)
        elems.append(_shares(ElementRng(seed, i), [r, r * r + ro]))
    return _batch("square", elems, {})


def gen_mul(seed, r_x, r_y, r_out):
    elems = []
    for i, (rx, ry, ro) in enumerate(zip(r_x, r_y, r_out)):
        rx, ry, ro = u64(rx), u64(ry), u64(ro)
        elems.append(_shares(ElementRng(seed, i), [rx, ry, rx * ry + ro]))
    return _batch("mul", elems, {})


# ---- gates: evaluation --------------------------------------------------------------------------

def _open(key, gate, party):
    p, kp, elems = parse(key)
    assert p["gate"] == gate and kp == party, (p["gate"], kp)
    return p, elems


def eval_relu(party, key, xhat):
    p, elems = _open(key, "relu", party)
    n = p["n"]
    s, w = _eff(p["shift"], n), width(n)
    mp = relu_dcf_bits(n, p["shift"])
    O = 1 << mp
    K = O >> s
    vb = vbytes(p["ring"])
    D = dcf_key_bytes(mp, 2, vb)
    out = []
    for e, xh in zip(elems, xhat):
        z = (u64(xh) + O) & mask(w)  # only the low w bits of x^ matter
        U1, U2 = dcf_eval_one(party, mp, 2, e, z & (O - 1), vb)
        p0, p1 = (z >> mp) & 1, z >> (w - 1)
        Hp = ((z >> s) - K) & M64
        A, B00, B01, D1 = (r64(e, D + vb * j, vb) for j in range(4))
        if p0 == 0:
            y = A * Hp + (B01 if p1 else B00) + Hp * U1 - U2
        else:
            y = ((1 - party) - A) * Hp + D1 - Hp * U1 + U2
        out.append(y & M64)
    return np.array(out, dtype=np.uint64)


def eval_drelu(party, key, xhat):
    p, elems = _open(key, "drelu", party)
    nb, vb = p["n"] - 1, vbytes(p["ring"])
    D = dcf_key_bytes(nb, 1, vb)
    out = []
    for e, xh in zip(elems, xhat):
        xh = u64(xh)
        (U,) = dcf_eval_one(party, nb, 1, e, xh & mask(nb), vb)
        p0 = 1 ^ ((xh >> nb) & 1)
        y = (1 - party) + r64(e, D + vb, vb) - U if p0 else r64(e, D, vb) + U
        out.append(y & M64)
    return np.array(out, dtype=np.uint64)


def eval_circa_sign(party, key, xhat):
    p, elems = _open(key, "circa", party)
    n, k = p["n"], p["k"]
    m, mp = n - k, n - k - 1
    delta = -1 if p["mode"] == "poszero" else 0
    D = dcf_bit_key_bytes(mp)
    out = []
    for e, xh in zip(elems, xhat):
        hd = (((u64(xh) & mask(n)) >> k) + delta) & mask(m)
        pb = (hd >> mp) & 1
        c = dcf_bit_eval_one(party, mp, e, hd & ((1 << mp) - 1))
        gamma = r64(e, D, vbytes(p["ring"])) & 1
        out.append(c ^ gamma ^ ((1 ^ pb) if party == 0 else 0))
    return np.array(out, dtype=np.uint8)


def eval_circa_select(party, key, xhat, opened):
    p, elems = _open(key, "circa", party)
    n = p["n"]
    s, w = _eff(p["shift"], n), width(n)
    O = 1 << (w - 2)
    D = dcf_bit_key_bytes(n - p["k"] - 1)
    vb = vbytes(p["ring"])
    out = []
    for e, xh, dh in zip(elems, xhat, opened):
        z = (u64(xh) + O) & mask(w)  # trunc's expression on the w-bit ring
        p1 = 0 if w - s >= 64 else z >> (w - 1)  # n = 64, s = 0: no wrap term, C_{d,0} is used
        Hp = ((z >> s) - (O >> s)) & M64
        rd = r64(e, D + vb, vb)
        C = r64(e, D + vb * (2 + 2 * int(dh) + p1), vb)
        y = ((1 - party) * Hp - Hp * rd + C) if dh else (Hp * rd + C)
        out.append(y & M64)
    return np.array(out, dtype=np.uint64)


def eval_trunc(party, key, xhat):
    p, elems = _open(key, "trunc", party)
    s, w = _eff(p["shift"], p["n"]), width(p["n"])
    O = 1 << (w - 2)
    out = []
    for e, xh in zip(elems, xhat):
        z = (u64(xh) + O) & mask(w)
        Hp = ((z >> s) - (O >> s)) & M64
        vb = vbytes(p["ring"])
        out.append(((1 - party) * Hp + r64(e, vb if z >> (w - 1) else 0, vb)) & M64)
    return np.array(out, dtype=np.uint64)


def eval_square(party, key, xhat):
    _, elems = _open(key, "square", party)
    out = []
    for e, xh in zip(elems, xhat):
        x = u64(xh)
        out.append(((1 - party) * x * x - 2 * x * r64(e, 0) + r64(e, 8)) & M64)
    return np.array(out, dtype=np.uint64)


def eval_mul(party, key, xhat, yhat):
    _, elems = _open(key, "mul", party)
    out = []
    for e, xh, yh in zip(elems, xhat, yhat):
        x, y = u64(xh), u64(yh)
        out.append(((1 - party) * x * y - x * r64(e, 8) - y * r64(e, 0) + r64(e, 16)) & M64)
    return np.array(out, dtype=np.uint64)


# ---- the laws the gates promise (used by the statistical tests) --------------------------------

def circa_fault_probability(x, k, mode):
    """P(the sign bit of Circa is wrong) for a signed value x, over a uniform mask (docs/fss.md)."""
    if mode == "negpass":
        return (x + (1 << k)) / (1 << k) if -(1 << k) <= x <= -1 else 0.0
    return ((1 << k) - x) / (1 << k) if 0 <= x < (1 << k) else 0.0


def circa_edge_fault_probability(x, k, mode, n=64):
    """P(sign fault) just outside Circa's precondition, at the ends of the n-bit range: the
    truncated difference wraps mod 2^(n - k) when the dropped low bits carry (docs/fss.md)."""
    half, low = 1 << (n - 1), x % (1 << k)
    if mode == "negpass" and half - (1 << k) <= x < half:
        return low / (1 << k)  # reads negative: outputs 0 instead of x
    if mode == "poszero" and -half <= x < -half + (1 << k):
        return ((1 << k) - low) / (1 << k)  # reads positive: outputs x instead of 0
    return 0.0


def round_up_probability(x, shift, n=64):
    """P(e = 1) for the faithful shift: (x mod 2^s) / 2^s (s beyond w - 2 is computed as w - 2)."""
    s = _eff(shift, n)
    return (x % (1 << s)) / (1 << s) if s else 0.0
