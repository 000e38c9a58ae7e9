"""Pure-Python reference of the garbled ReLU circuits and of the garbling scheme (docs/gc.md).

Slow on purpose, one instance at a time, written to be read next to the spec. Only the AES block
function comes from pi_native (`aes128_encrypt` under the public garbling key); the netlists,
the hash, half-gates garbling and evaluation are written here independently of the C++.

Blocks are Python ints of 128 bits: bytes 0..7 (little-endian) are the low word, 8..15 the high.
"""
from __future__ import annotations

import numpy as np

import pi_native

M64 = (1 << 64) - 1
GC_KEY = bytes.fromhex("6a09e667bb67ae853c6ef372a54ff53a")   # π's fixed public key


# ---- netlists -------------------------------------------------------------------------------

class Net:
    """Gates as tuples (op, a, b, priv); wires 0..ne-1 evaluator inputs, then ng garbler inputs."""

    def __init__(self, ne, ng, npriv):
        self.ne, self.ng, self.npriv = ne, ng, npriv
        self.nw = ne + ng
        self.gates, self.outputs = [], []

    def _add(self, op, a, b=None, priv=None):
        self.gates.append((op, a, b, priv, self.nw))
        self.nw += 1
        return self.nw - 1

    def XOR(self, a, b): return self._add("xor", a, b)
    def NOT(self, a): return self._add("not", a)
    def PNOT(self, a, p): return self._add("pnot", a, priv=p)
    def AND(self, a, b): return self._add("and", a, b)
    def ANDC(self, a, p): return self._add("andc", a, priv=p)

    @property
    def and_gates(self):
        return sum(g[0] == "and" for g in self.gates)

    @property
    def andc_gates(self):
        return sum(g[0] == "andc" for g in self.gates)


def _carries(g, a, b, cin):
    n = len(a)
    c = [None] * n
    if n < 2:
        return c
    c[1] = g.NOT(g.AND(g.NOT(a[0]), g.NOT(b[0]))) if cin else g.AND(a[0], b[0])
    for i in range(1, n - 1):
        c[i + 1] = g.XOR(c[i], g.AND(g.XOR(a[i], c[i]), g.XOR(b[i], c[i])))
    return c


def sign_net(n, cin):
    g = Net(n, n, 1)
    a, b = list(range(n)), [n + i for i in range(n)]
    c = _carries(g, a, b, cin)
    top = g.XOR(a[n - 1], b[n - 1])
    if n >= 2:
        top = g.XOR(top, c[n - 1])
    elif cin:
        top = g.NOT(top)
    g.outputs.append(g.PNOT(g.NOT(top), 0))
    return g


def circa_shift_net(m, cin):
    """Circa with a shift: outputs d ⊕ ρ (msb of the m-bit sum) and (d ∧ w) ⊕ ρ_t (w its carry out)."""
    g = Net(m, m, 2)
    a, b = list(range(m)), [m + i for i in range(m)]
    if m == 1:
        d = g.XOR(a[0], b[0])
        if cin:
            d = g.NOT(d)
        w = g.NOT(g.AND(g.NOT(a[0]), g.NOT(b[0]))) if cin else g.AND(a[0], b[0])
    else:
        c = _carries(g, a, b, cin)
        ac = g.XOR(a[m - 1], c[m - 1])
        d = g.XOR(ac, b[m - 1])
        w = g.XOR(c[m - 1], g.AND(ac, g.XOR(b[m - 1], c[m - 1])))
    g.outputs.append(g.PNOT(d, 0))
    g.outputs.append(g.PNOT(g.AND(d, w), 1))
    return g


def _carry_out(g, a, b, cin):
    n = len(a)
    if n == 1:
        return g.NOT(g.AND(g.NOT(a[0]), g.NOT(b[0]))) if cin else g.AND(a[0], b[0])
    c = _carries(g, a, b, cin)
    return g.XOR(c[n - 1], g.AND(g.XOR(a[n - 1], c[n - 1]), g.XOR(b[n - 1], c[n - 1])))


def _value(g, n, v):
    """Bits of a + b mod 2^n for value v (input wires v·n .. v·n + n − 1 per side)."""
    a = [v * n + i for i in range(n)]
    b = [g.ne + v * n + i for i in range(n)]
    c = _carries(g, a, b, 0)
    return [g.XOR(a[0], b[0])] + [g.XOR(g.XOR(a[i], b[i]), c[i]) for i in range(1, n)]


def _reshare(g, y, l):
    """Outputs z = y + r' mod 2^l, y non-negative given by its low bits, r' the private bits."""
    j = len(y)
    if j == 0:
        zero = g.XOR(0, 0)
        g.outputs += [g.PNOT(zero, t) for t in range(l)]
        return
    g.outputs.append(g.PNOT(y[0], 0))
    carry = g.ANDC(y[0], 0)
    for t in range(1, l):
        if t < j:
            yc = g.XOR(y[t], carry)
            g.outputs.append(g.PNOT(yc, t))
            if t + 1 < l:
                carry = g.XOR(carry, g.AND(yc, g.PNOT(carry, t)))
        else:
            g.outputs.append(g.PNOT(carry, t))
            if t + 1 < l:
                carry = g.ANDC(carry, t)


def relu_net(l, n=None, s=0):
    n = l if n is None else n
    g = Net(n, n, l)
    j = n - 1 - s
    y = []
    if j > 0:
        x = _value(g, n, 0)
        d = g.NOT(x[n - 1])
        y = [g.AND(d, x[s + t]) for t in range(j)]
    _reshare(g, y, l)
    return g


def trunc_net(l, n=None, s=0):
    n = l if n is None else n
    g = Net(n, n, l)
    x = _value(g, n, 0)
    x[n - 1] = g.NOT(x[n - 1])
    _reshare(g, x[s:], l)
    return g


def index_bits(classes):
    return (classes - 1).bit_length()


def argmax_net(classes, n):
    g = Net(classes * n, classes * n, 0)
    L = index_bits(classes)
    idx = [None] * L                       # None: the constant 0

    def unsigned(v):
        x = _value(g, n, v)
        x[n - 1] = g.NOT(x[n - 1])
        return x

    cur = unsigned(0)
    for i in range(1, classes):
        u = unsigned(i)
        gt = _carry_out(g, u, [g.NOT(w) for w in cur], 0)
        if i + 1 < classes:
            cur = [g.XOR(cur[t], g.AND(gt, g.XOR(u[t], cur[t]))) for t in range(n)]
        for b in range(L):
            ib = (i >> b) & 1
            if idx[b] is None:
                if ib:
                    idx[b] = gt
            else:
                idx[b] = g.XOR(idx[b], g.AND(gt, g.NOT(idx[b]) if ib else idx[b]))
    g.outputs += idx
    return g


def and_layer_net(l):
    g = Net(l, l, 0)
    for i in range(l):
        g.outputs.append(g.AND(i, l + i))
    return g


def build(circuit, l, k=0, mode=None, bits=None, shift=0, classes=0):
    n = l if bits is None else bits
    if circuit == "relu":
        return relu_net(l, n, shift)
    if circuit == "trunc":
        return trunc_net(l, n, shift)
    if circuit == "drelu":
        return sign_net(n, 0)
    if circuit == "circa":
        return (circa_shift_net if shift else sign_net)(n - k, 1 if mode == "negpass" else 0)
    if circuit == "argmax":
        return argmax_net(classes, n)
    if circuit == "and-layer":
        return and_layer_net(l)
    raise ValueError(circuit)


def and_count(circuit, l, k=0, bits=None, shift=0, classes=0):
    """The AND / half-gate counts docs/gc.md states, from the formulas (not the netlists)."""
    n = l if bits is None else bits
    if circuit == "relu":
        j = n - 1 - shift
        return (n - 1 + 2 * j - 1, l - j) if j > 0 else (0, 0)
    if circuit == "trunc":
        j = min(n - shift, l - 1)
        return (n - 1 + j - 1, l - j)
    if circuit == "drelu":
        return (n - 1, 0)
    if circuit == "circa":
        return (n - k + 1 if shift else n - k - 1, 0)
    if circuit == "argmax":
        C = classes
        return (C * (n - 1) + (C - 1) * n + (C - 2) * n + sum((i - 1).bit_length() for i in range(1, C)), 0)
    raise ValueError(circuit)


def eval_plain(net, ebits, gbits, priv):
    v = list(ebits) + list(gbits) + [None] * (net.nw - net.ne - net.ng)
    for op, a, b, p, o in net.gates:
        if op == "xor":
            v[o] = v[a] ^ v[b]
        elif op == "not":
            v[o] = v[a] ^ 1
        elif op == "pnot":
            v[o] = v[a] ^ priv[p]
        elif op == "and":
            v[o] = v[a] & v[b]
        elif op == "andc":
            v[o] = v[a] & priv[p]
        else:
            raise ValueError(f"unknown gate {op!r}")
    return [v[o] for o in net.outputs]


# ---- what the circuits compute over shares ----------------------------------------------------

def signed(v, l):
    v &= (1 << l) - 1
    return v - (1 << l) if v >> (l - 1) else v


def bits(v, n, shift=0):
    return [(v >> (shift + i)) & 1 for i in range(n)]


def relu_shares(a, b, r, l, bits=None, shift=0):
    """Plain semantics of the relu circuit: z with z + r = ReLU(x) >> shift mod 2^l, x the signed
    value of (a + b) mod 2^bits."""
    n = l if bits is None else bits
    return ((max(signed(a + b, n), 0) >> shift) - r) % (1 << l)


def trunc_shares(a, b, r, l, bits=None, shift=0):
    """z with z + r = ⌊x / 2^shift⌋ mod 2^l (Python's >> floors), x as in relu_shares."""
    n = l if bits is None else bits
    return ((signed(a + b, n) >> shift) - r) % (1 << l)


def argmax_index(a, b, bits):
    """First index of the maximum of the signed values (a_c + b_c) mod 2^bits."""
    xs = [signed(x + y, bits) for x, y in zip(a, b)]
    return xs.index(max(xs))


def circa_sign(a, b, l, k, mode, bits=None):
    """d = 1 − msb((a' >> k) + (b' >> k) + δ mod 2^m), a' = a mod 2^bits, m = bits − k, δ = 1 for NegPass."""
    n = l if bits is None else bits
    m = n - k
    t = ((a % (1 << n)) >> k) + ((b % (1 << n)) >> k) + (1 if mode == "negpass" else 0)
    return 1 - ((t % (1 << m)) >> (m - 1))


def circa_shift_bits(a, b, l, k, mode, bits, shift):
    """Circa with a shift: (d, w) from the shares. The garbler's share is offset by 2^(n−1) − 1, so
    the m-bit sum of the truncated shares is ((x − 1 + 2^(n−1)) >> k) − γ + δ (+ 2^m·w): its msb is
    the sign test on x − 1 and its carry out w the wrap of the n-bit share sum."""
    n, m = bits, bits - k
    bo = (b + (1 << (n - 1)) - 1) % (1 << l)
    t = ((a % (1 << n)) >> k) + ((bo % (1 << n)) >> k) + (1 if mode == "negpass" else 0)
    return (t >> (m - 1)) & 1, t >> m


def circa_shift_output(a, b, l, k, mode, bits, shift):
    """The value d·((x >> s) + e) the protocol's shares add up to, from the integer formulas of
    docs/gc.md (α + β − 2^(n−s)·w), mod 2^l."""
    n, s = bits, shift
    d, w = circa_shift_bits(a, b, l, k, mode, bits, shift)
    alpha = (a % (1 << n)) >> s
    beta = (((b + (1 << (n - 1)) - 1) % (1 << n)) >> s) - (1 << (n - 1 - s)) + 1
    return (d * (alpha + beta - (w << (n - s)))) % (1 << l)


def circa_fault_probability(x, k, mode):
    """P(the truncated sign test is wrong at signed x) for a uniform additive sharing (docs/gc.md)."""
    K = 1 << k
    if mode == "poszero" and 0 <= x < K:
        return (K - 1 - x) / K
    if mode == "negpass" and -K <= x <= -1:
        return (K + x + 1) / K
    return 0.0


# ---- garbling scheme ------------------------------------------------------------------------

def _pi(blocks):
    arr = np.frombuffer(b"".join(x.to_bytes(16, "little") for x in blocks), np.uint8).reshape(-1, 16)
    out = pi_native.aes128_encrypt(GC_KEY, arr, "auto")
    return [int.from_bytes(out[i].tobytes(), "little") for i in range(len(blocks))]


def sigma(x):
    lo, hi = x & M64, x >> 64
    return hi | ((hi ^ lo) << 64)


def H(x, t):
    y = sigma(x) ^ t
    return _pi([y])[0] ^ y


def tweak(g, j):
    return 2 * g + j


def lsb(x):
    return x & 1


def garble(net, delta, ezero, gzero, priv, gate_base):
    """One instance: returns (table bytes, decode bits as a list)."""
    L = list(ezero) + list(gzero) + [None] * (net.nw - net.ne - net.ng)
    out, h = bytearray(), 0
    for op, a, b, p, o in net.gates:
        if op == "xor":
            L[o] = L[a] ^ L[b]
        elif op == "not":
            L[o] = L[a] ^ delta
        elif op == "pnot":
            L[o] = L[a] ^ (delta if priv[p] else 0)
        elif op == "and":
            A0, B0 = L[a], L[b]
            j0, j1 = tweak(gate_base + h, 0), tweak(gate_base + h, 1)
            ha0, ha1, hb0, hb1 = H(A0, j0), H(A0 ^ delta, j0), H(B0, j1), H(B0 ^ delta, j1)
            TG = ha0 ^ ha1 ^ (delta if lsb(B0) else 0)
            WG = ha0 ^ (TG if lsb(A0) else 0)
            TE = hb0 ^ hb1 ^ A0
            WE = hb0 ^ (TE ^ A0 if lsb(B0) else 0)
            L[o] = WG ^ WE
            out += TG.to_bytes(16, "little") + TE.to_bytes(16, "little")
            h += 1
        else:  # andc
            A0 = L[a]
            j0 = tweak(gate_base + h, 0)
            ha0, ha1 = H(A0, j0), H(A0 ^ delta, j0)
            TG = ha0 ^ ha1 ^ (delta if priv[p] else 0)
            L[o] = ha0 ^ (TG if lsb(A0) else 0)
            out += TG.to_bytes(16, "little")
            h += 1
    decode = [lsb(L[w]) for w in net.outputs]
    return bytes(out), decode


def evaluate(net, tables, decode, elabels, glabels, gate_base):
    L = list(elabels) + list(glabels) + [None] * (net.nw - net.ne - net.ng)
    pos, h = 0, 0
    for op, a, b, p, o in net.gates:
        if op == "xor":
            L[o] = L[a] ^ L[b]
        elif op in ("not", "pnot"):
            L[o] = L[a]
        elif op == "and":
            A, B = L[a], L[b]
            TG = int.from_bytes(tables[pos:pos + 16], "little")
            TE = int.from_bytes(tables[pos + 16:pos + 32], "little")
            pos += 32
            WG = H(A, tweak(gate_base + h, 0)) ^ (TG if lsb(A) else 0)
            WE = H(B, tweak(gate_base + h, 1)) ^ (TE ^ A if lsb(B) else 0)
            L[o] = WG ^ WE
            h += 1
        else:
            A = L[a]
            TG = int.from_bytes(tables[pos:pos + 16], "little")
            pos += 16
            L[o] = H(A, tweak(gate_base + h, 0)) ^ (TG if lsb(A) else 0)
            h += 1
    return [lsb(L[w]) ^ d for w, d in zip(net.outputs, decode)]


def pack_decode(decode):
    out = bytearray((len(decode) + 7) // 8)
    for i, d in enumerate(decode):
        out[i // 8] |= d << (i % 8)
    return bytes(out)
