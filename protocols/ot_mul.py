"""Products of shares in Z_(2^l) by oblivious transfer, and the two-party polynomial site
(docs/two_party.md, "Polynomial sites").

**Products (Gilboa over IKNP random OTs).** The client is the OT receiver: its choice bits are
bits of values it knows offline (its share of every tensor is known before the input exists);
the server is the OT sender: its values, known only online, enter through one correction per
OT. For a batch of n rows with K products each, public weights 2^ω_k (0 ≤ ω_k < l), client bits
b_ik and server values v_ik, the parties end with additive shares of

    Σ_k 2^ω_k · b_ik · v_ik  (mod 2^l)

  offline  C: cb, msg = client.offline(weights, b)     → S    IKNP message, 16 B per OT
           S: sb = server.offline(weights, n, msg)            sb.share known here
  online   S: corr = server.send(sb, v)                → C    Σ_k (l − ω_k) bits per row
           C: share = client.receive(cb, corr)

Per OT k: random OT (R0, R1) / (b, R_b); the server sends d = R0 − R1 + v mod 2^(l − ω_k)
(only those bits survive the weight), the client takes u = R_b + b·d = R0 + b·v, the server
keeps −R0: u − R0 = b·v. The client sees only d, uniform because R_(1−b) is hidden from it.
Each batch's OTs are one-time: a second send/receive raises.

**Polynomial site** y = c2·t² + c1·t + c0, t the faithful truncation of x by s (the dealer's
`poly` gate, protocols/gates.py). With x = a + c (server a online, client c offline), the
client plays the dealer for its own mask: x̂ := c, r_in := −a. Then t = H − R_p, where H and the
bit p come from c alone (poly_eval's H, p) and R_0, R_1 from a alone (poly_key's R), and

    y = [c2·H² + c1·H + c0]_client + [c2·R1² − c1·R1 + 2·c2·C·R1]_server
        + Σ_j 2^(j+1)·zs_j·(−c2·R1) + Σ_j 2^(j+w−s+1)·(p̄·zs_j)·(c2·q) + 2^(w−s)·p̄·q·(c1 − c2(R0 + R1) − 2·c2·C)

(zs = H + C, C = 2^(w−2) >> s, p̄ = 1 − p, q = bit w − 1 of −a mod 2^w): every cross term is a
client bit times a server value, so one batch of products computes the site. The client's
share then depends on the server's corrections, so it answers with W = (its share) + s_out
and keeps −s_out, known offline as the engine needs; the server's share is p(t) + s_out.
Online: the corrections (server → client) and W (client → server), one round trip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import pi_native
from protocols import gates

U64 = np.uint64
MAX_L = 64              # products mod 2^l in uint64 words (the IKNP random OTs give l ≤ 64 bits)


def _mask(bits: int) -> U64:
    return U64((1 << bits) - 1)


def _check_l(l: int) -> int:
    if not isinstance(l, (int, np.integer)) or isinstance(l, bool) or not 2 <= l <= MAX_L:
        raise ValueError(f"ring bits l must be an integer in 2..{MAX_L}, got {l!r}")
    return int(l)


@dataclass(frozen=True)
class Layout:
    """The public shape of a batch: ring bits l and the weight exponent ω_k of each product."""
    l: int
    weights: tuple

    def __post_init__(self) -> None:
        _check_l(self.l)
        if not all(0 <= int(w) < self.l for w in self.weights):
            raise ValueError(f"weights must lie in 0..{self.l - 1}")

    @property
    def k(self) -> int:
        return len(self.weights)

    @property
    def omega(self) -> np.ndarray:
        return np.asarray(self.weights, U64)

    @property
    def widths(self) -> np.ndarray:
        """Bits of each correction: those that survive the weight mod 2^l."""
        return self.l - np.asarray(self.weights, np.int64)

    def correction_bytes(self, n: int) -> int:
        return (n * int(self.widths.sum()) + 7) // 8


def _weighted_sum(values: np.ndarray, layout: Layout) -> np.ndarray:
    """Σ_k values[:, k]·2^ω_k mod 2^l (uint64 sums wrap mod 2^64)."""
    return (values << layout.omega).sum(axis=1, dtype=U64) & _mask(layout.l) if layout.k else \
        np.zeros(len(values), U64)


@dataclass
class ClientBatch:
    layout: Layout
    n: int
    bits: np.ndarray | None          # packed choice bits (n·K, np.packbits)
    base: np.ndarray | None          # Σ_k 2^ω_k R_(b_k) per row
    done: bool = False

    @property
    def stored_bytes(self) -> int:
        """What the client keeps for the online step: its choice bits and one ring word per row."""
        return (self.n * self.layout.k + 7) // 8 + self.n * ((self.layout.l + 7) // 8)


@dataclass
class ServerBatch:
    layout: Layout
    n: int
    delta: np.ndarray | None         # (n, K): R0 − R1
    share: np.ndarray                # −Σ_k 2^ω_k R0_k per row (the server's share, offline)
    done: bool = False


class Client:
    """The OT receiver (its choice bits are known offline)."""

    def __init__(self) -> None:
        self.ot = pi_native.IknpReceiver()

    def offline(self, layout: Layout, bits) -> tuple[ClientBatch, bytes]:
        b = np.asarray(bits)
        if b.dtype != np.uint8 or b.ndim != 2 or b.shape[1] != layout.k or (b.size and b.max() > 1):
            raise ValueError(f"choice bits must be a (n, {layout.k}) uint8 array of 0/1")
        flat = np.ascontiguousarray(b).reshape(-1)
        msg = self.ot.extend(flat)
        # Taken right away: this session serves only these products, so its cursor is here.
        got, r = self.ot.random_ot(flat.size, layout.l)
        assert np.array_equal(got, flat)
        base = _weighted_sum(r.reshape(b.shape), layout)
        return ClientBatch(layout, b.shape[0], np.packbits(flat), base), msg

    def receive(self, cb: ClientBatch, corrections: bytes) -> np.ndarray:
        """The client's shares (one per row) from the server's corrections; once per batch."""
        if cb.done:
            raise ValueError("this batch's OTs were used already (one-time): make a new batch")
        if not isinstance(corrections, (bytes, bytearray)):
            raise ValueError(f"corrections must be bytes, got {type(corrections).__name__}")
        d = pi_native.unpack_bits(bytes(corrections), cb.layout.widths, cb.n)   # length-checked
        b = np.unpackbits(cb.bits, count=cb.n * cb.layout.k).reshape(cb.n, cb.layout.k).astype(U64)
        share = (cb.base + _weighted_sum(b * d, cb.layout)) & _mask(cb.layout.l)
        cb.done, cb.bits, cb.base = True, None, None
        return share


class Server:
    """The OT sender (its values are known online)."""

    def __init__(self) -> None:
        self.ot = pi_native.IknpSender()

    def offline(self, layout: Layout, n: int, message) -> ServerBatch:
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if not isinstance(message, (bytes, bytearray)):
            raise ValueError(f"the IKNP message must be bytes, got {type(message).__name__}")
        self.ot.extend(bytes(message), n * layout.k)     # checks the length
        r0, r1 = self.ot.random_ot(n * layout.k, layout.l)
        r0, r1 = r0.reshape(n, layout.k), r1.reshape(n, layout.k)
        return ServerBatch(layout, n, r0 - r1, (U64(0) - _weighted_sum(r0, layout)) & _mask(layout.l))

    def send(self, sb: ServerBatch, values) -> bytes:
        """Corrections for the server's values (n, K) uint64; once per batch."""
        if sb.done:
            raise ValueError("this batch's OTs were used already (one-time): make a new batch")
        v = np.asarray(values)
        if v.dtype != U64 or v.shape != (sb.n, sb.layout.k):
            raise ValueError(f"values must be a ({sb.n}, {sb.layout.k}) uint64 array, got {v.dtype} {v.shape}")
        msg = pi_native.pack_bits(np.ascontiguousarray(sb.delta + v), sb.layout.widths)
        sb.done, sb.delta = True, None
        return msg


def connect() -> tuple[Server, Client]:
    """One IKNP session (128 base OTs) in one process; over a channel the same three calls run
    as: client sends client.ot.base_message(), server answers server.ot.base_reply(m), client
    calls client.ot.base_finish(reply)."""
    s, c = Server(), Client()
    c.ot.base_finish(s.ot.base_reply(c.ot.base_message()))
    return s, c


# --------------------------------------------------------------------------------------------
# Products of two values: a (server, online) × c (client, offline)
# --------------------------------------------------------------------------------------------

def product_layout(l: int) -> Layout:
    """c's bits as choice bits (weights 2^0 .. 2^(l−1)), a as the value of every OT."""
    return Layout(_check_l(l), tuple(range(l)))


def bits_of(x: np.ndarray, count: int, offset: int = 0) -> np.ndarray:
    """Bits offset .. offset + count − 1 of each x (uint8, one row per element)."""
    pos = np.arange(offset, offset + count, dtype=U64)
    return ((np.asarray(x, U64)[:, None] >> pos) & U64(1)).astype(np.uint8)


def run_product(server: Server, client: Client, l: int, a, c) -> tuple[np.ndarray, np.ndarray]:
    """Both sides in one process: shares (server, client) of a·c mod 2^l."""
    layout = product_layout(l)
    a, c = _reduced(a, l, "a"), _reduced(c, l, "c")
    cb, msg = client.offline(layout, bits_of(c, l))
    sb = server.offline(layout, len(c), msg)
    corr = server.send(sb, np.repeat(a[:, None], l, axis=1))
    return sb.share, client.receive(cb, corr)


def _reduced(x, l: int, name: str) -> np.ndarray:
    v = np.asarray(x)
    if v.dtype != U64 or v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D uint64 array of ring elements, got {v.dtype} {v.shape}")
    if l < 64 and v.size and int(v.max()) >> l:
        raise ValueError(f"{name} must be reduced mod 2^{l}")
    return np.ascontiguousarray(v)


# --------------------------------------------------------------------------------------------
# The polynomial site
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolySpec:
    """A batch of polynomial sites: the ring l its products compute in, the truncation shift and
    the value bound (|x| < 2^(bits − 1)), as the dealer's GateSpec("poly", shift, bits); and
    out_shift d: both output shares are shifted right by d into Z_(2^(l − d)), the ring of the
    inputs and outputs (gates.poly_share_out: exact up to one ulp, no wrap can fail it)."""
    l: int
    shift: int
    bits: int = 64
    out_shift: int = 0

    def __post_init__(self) -> None:
        _check_l(self.l)
        if not 0 <= self.out_shift < self.l:
            raise ValueError(f"out_shift must lie in 0..{self.l - 1}")
        w = self.geometry[0]
        if w > self.out_bits:
            raise ValueError(f"a poly site with |x| < 2^{self.bits - 1} reads {w} bits of the shares, more than "
                             f"the {self.out_bits}-bit ring holds")

    @property
    def out_bits(self) -> int:
        """The ring of the shares in and out: l − out_shift."""
        return self.l - self.out_shift

    @property
    def gate(self) -> gates.GateSpec:
        """The dealer's gate that computes the same."""
        return gates.GateSpec("poly", shift=self.shift, bits=self.bits, ring=self.out_bits, out_shift=self.out_shift)

    def share_out(self, y: np.ndarray) -> np.ndarray:
        """A share of p(t) + s_out·2^d mod 2^l → its share mod 2^(l − d), shifted by d."""
        return gates.poly_share_out(self.gate, y[None])

    @property
    def geometry(self) -> tuple[int, int]:
        """(w, s) of the dealer's trunc expression (gates.trunc_geometry)."""
        return gates.trunc_geometry(self.gate)

    def _weights(self) -> np.ndarray:
        """Weight exponents of the products per site, before dropping those ≥ l: zs_j (j + 1),
        p̄·zs_j (j + w − s + 1, j < w − s − 1: p̄·zs_top = 0), p̄ (w − s)."""
        w, s = self.geometry
        m = w - s
        return np.concatenate([np.arange(1, m + 1), np.arange(m + 1, 2 * m), [m]])

    @property
    def layout(self) -> Layout:
        """The products of a site whose weight is below l (the others vanish mod 2^l)."""
        return Layout(self.l, tuple(int(x) for x in self._weights() if x < self.l))

    def _keep(self) -> np.ndarray:
        return self._weights() < self.l


def poly_cost(spec: PolySpec, n: int = 1) -> dict:
    """Bytes and flights of n poly sites (docs/two_party.md): the IKNP message (offline, client →
    server, 16 B per OT in 128-OT tiles), the corrections (online, server → client, packed bits),
    W (online, client → server, one ring element each as Ring.pack sends it) and what the client
    keeps between offline and online (its choice bits, packed, and one ring word per site)."""
    lay = spec.layout
    return {"ots": n * lay.k, "offline_bytes": 16 * 128 * (-(-n * lay.k // 128)),
            "online_server_bytes": lay.correction_bytes(n), "online_client_bytes": n * ((spec.out_bits + 7) // 8),
            "client_stored_bytes": (n * lay.k + 7) // 8 + n * ((spec.l + 7) // 8),
            "offline_flights": 1, "online_flights": 2}


def _coeffs(coeffs, n: int, l: int) -> tuple[np.ndarray, ...]:
    """(c2, c1, c0): uint64 ring elements (fixed-point encoded), scalars or one per site."""
    if len(coeffs) != 3:
        raise ValueError("coefficients must be (c2, c1, c0)")
    out = []
    for c in coeffs:
        v = np.asarray(c)
        if v.dtype != U64:
            raise ValueError(f"coefficients must be uint64 ring elements (fixed-point encoded), got {v.dtype}")
        try:
            out.append(np.broadcast_to(v, (n,)))
        except ValueError:
            raise ValueError(f"coefficients must be scalars or have one element per site ({n})") from None
    return tuple(out)


def poly_client_terms(spec: PolySpec, c: np.ndarray, coeffs) -> tuple[np.ndarray, np.ndarray]:
    """From the client's share c alone: its choice bits (n, K) and its local term c2·H² + c1·H + c0."""
    w, s = spec.geometry
    m = w - s
    c2, c1, c0 = _coeffs(coeffs, len(c), spec.l)
    const = U64((1 << (w - 2)) >> s)
    zs = (((c & _mask(w)) >> U64(s)) + const) & _mask(m)
    H = zs - const
    pbar = U64(1) - ((zs >> U64(m - 1)) & U64(1))
    zbits = bits_of(zs, m)
    choices = np.concatenate([zbits, zbits[:, :m - 1] * pbar.astype(np.uint8)[:, None],
                              pbar.astype(np.uint8)[:, None]], axis=1)[:, spec._keep()]
    return np.ascontiguousarray(choices), c2 * H * H + c1 * H + c0


def poly_server_terms(spec: PolySpec, a: np.ndarray, coeffs) -> tuple[np.ndarray, np.ndarray]:
    """From the server's share a alone: its OT values (n, K) and its local term."""
    w, s = spec.geometry
    m = w - s
    c2, c1, _ = _coeffs(coeffs, len(a), spec.l)
    const = U64((1 << (w - 2)) >> s)
    r = (U64(0) - a) & _mask(w)
    R1 = r >> U64(s)
    q = (r >> U64(w - 1)) & U64(1)
    R0 = R1 - q * (U64(1 << m) if m < 64 else U64(0))        # 2^(w−s) q, vanishing at w − s = 64
    v = np.concatenate([np.repeat((U64(0) - c2 * R1)[:, None], m, axis=1),
                        np.repeat((c2 * q)[:, None], m - 1, axis=1),
                        (q * (c1 - c2 * (R0 + R1) - U64(2) * c2 * const))[:, None]], axis=1)[:, spec._keep()]
    return np.ascontiguousarray(v), c2 * R1 * R1 - c1 * R1 + U64(2) * c2 * const * R1


@dataclass
class PolyClientBatch:
    spec: PolySpec
    batch: ClientBatch

    @property
    def stored_bytes(self) -> int:
        return self.batch.stored_bytes


@dataclass
class PolyServerBatch:
    spec: PolySpec
    batch: ServerBatch
    coeffs: tuple
    partial: np.ndarray | None = None


def poly_client_offline(client: Client, spec: PolySpec, c, coeffs, s_out) -> tuple[PolyClientBatch, bytes]:
    """The client's offline step for n sites: its share c of x and the output mask s_out (its
    output share is −s_out), both mod 2^(l − d). Returns the batch and the IKNP message."""
    c = _reduced(c, spec.out_bits, "c")
    s_out = _reduced(s_out, spec.out_bits, "s_out")
    if s_out.shape != c.shape:
        raise ValueError("s_out must have one element per site")
    choices, local = poly_client_terms(spec, c, coeffs)
    cb, msg = client.offline(spec.layout, choices)
    # folded: W needs only the corrections
    cb.base = (cb.base + local + (s_out << U64(spec.out_shift))) & _mask(spec.l)
    return PolyClientBatch(spec, cb), msg


def poly_server_offline(server: Server, spec: PolySpec, n: int, coeffs, message) -> PolyServerBatch:
    return PolyServerBatch(spec, server.offline(spec.layout, n, message), _coeffs(coeffs, n, spec.l))


def poly_server_online(server: Server, pb: PolyServerBatch, a) -> bytes:
    """The corrections for the client (server → client)."""
    a = _reduced(a, pb.spec.out_bits, "a")
    if a.shape != (pb.batch.n,):
        raise ValueError(f"a must have {pb.batch.n} elements, got {a.shape}")
    values, local = poly_server_terms(pb.spec, a, pb.coeffs)
    msg = server.send(pb.batch, values)
    pb.partial = pb.batch.share + local
    return msg


def poly_client_online(client: Client, pcb: PolyClientBatch, corrections) -> np.ndarray:
    """W for the server (client → server): the client's share of p(t) plus s_out·2^d, shifted by d."""
    return pcb.spec.share_out(client.receive(pcb.batch, corrections))


def poly_server_finish(pb: PolyServerBatch, W) -> np.ndarray:
    """The server's share of p(t) >> d: (p(t) >> d) + s_out mod 2^(l − d), one ulp low at most."""
    if pb.partial is None:
        raise ValueError("poly_server_online first, and finish once per batch")
    W = _reduced(W, pb.spec.out_bits, "W")
    if W.shape != pb.partial.shape:
        raise ValueError(f"W must have {len(pb.partial)} elements, got {W.shape}")
    y = (pb.spec.share_out(pb.partial) + W) & _mask(pb.spec.out_bits)
    pb.partial = None
    return y


def run_poly(server: Server, client: Client, spec: PolySpec, a, c, coeffs, s_out) -> np.ndarray:
    """Both sides in one process; returns the server's final share (the client's is −s_out)."""
    pcb, msg = poly_client_offline(client, spec, c, coeffs, s_out)
    pb = poly_server_offline(server, spec, len(pcb.batch.base), coeffs, msg)
    corr = poly_server_online(server, pb, a)
    return poly_server_finish(pb, poly_client_online(client, pcb, corr))
