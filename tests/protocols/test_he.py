"""BFV linear-layer correlations (protocols.he): exact shares of W·r mod 2^l for every layer
shape of the zoo, circuit privacy of the reply's noise, clear errors on bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from protocols import he

WIDTHS = (37, 59)   # 59: the largest power-of-two plain modulus SEAL accepts

# (in_shape, weight_shape, stride, padding) — every kind of layer the zoo has, and more.
CONVS = {
    "3x3 s1 p1": ((16, 14, 14), (16, 16, 3, 3), 1, 1),
    "3x3 s2 p1": ((16, 14, 14), (32, 16, 3, 3), 2, 1),
    "3x3 s1 p0": ((8, 9, 9), (12, 8, 3, 3), 1, 0),
    "1x1 s1": ((32, 7, 7), (64, 32, 1, 1), 1, 0),
    "1x1 s2": ((16, 14, 14), (32, 16, 1, 1), 2, 0),
    "stem 1ch s2": ((1, 28, 28), (16, 1, 3, 3), 2, 1),
    "5x5 p2": ((16, 14, 14), (32, 16, 5, 5), 1, 2),
    "7x7 s2 p3": ((1, 28, 28), (16, 1, 7, 7), 2, 3),
    "odd 3x3 s2 p1": ((16, 7, 7), (16, 16, 3, 3), 2, 1),
    "many channels": ((128, 8, 8), (24, 128, 3, 3), 1, 1),   # 128·10·10 > n: several input polys
}
LINEARS = {"fc 64→10": (64, 10), "fc 1568→100": (1568, 100), "fc 9000→3": (9000, 3)}


def ref_conv(r, w, stride, pad, l):
    """W·r mod 2^l in numpy (uint64 wraps mod 2^64, a multiple of 2^l)."""
    b, _, h, wd = r.shape
    m, _, kh, kw = w.shape
    xp = np.pad(r, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((b, m, ho, wo), dtype=np.uint64)
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, u:u + stride * (ho - 1) + 1:stride, v:v + stride * (wo - 1) + 1:stride]
            out += np.einsum("bchw,mc->bmhw", patch, w[:, :, u, v])
    return out & np.uint64((1 << l) - 1)


def ref_linear(r, w, l):
    return (r @ w.T) & np.uint64((1 << l) - 1)


def uniform(rng, shape, l):
    return rng.integers(0, 1 << l, size=shape, dtype=np.uint64)


def run_layer(p, w, r, **respond):
    client, server = he.HEClient(), he.HEServer()
    server.set_public_key(p, client.public_key(p))
    reply, s = server.respond(server.prepare(p, w), client.encrypt(p, r), **respond)
    c = client.decrypt(p, reply)
    return c, s, client


@pytest.mark.parametrize("l", WIDTHS)
@pytest.mark.parametrize("name", list(CONVS))
def test_conv_shares_reconstruct_exactly(name, l):
    in_shape, w_shape, stride, pad = CONVS[name]
    rng = np.random.default_rng([l, len(name), sum(map(ord, name))])
    p = he.choose_params(he.LayerShape.conv2d(in_shape, w_shape, stride, pad), l)
    w, r = uniform(rng, w_shape, l), uniform(rng, (2,) + in_shape, l)   # any weights mod 2^l
    c, s, client = run_layer(p, w, r)
    assert c.dtype == np.uint64 and c.shape == (2,) + p.shape.out_shape
    assert np.array_equal((c + s) & np.uint64((1 << l) - 1), ref_conv(r, w, stride, pad, l))
    # The worst-case bound holds: the measured margin is at least the predicted one.
    assert client.last_margin_bits >= p.margin_bits >= he.MIN_MARGIN_BITS


@pytest.mark.parametrize("l", WIDTHS)
@pytest.mark.parametrize("name", list(LINEARS))
def test_linear_shares_reconstruct_exactly(name, l):
    n_in, n_out = LINEARS[name]
    rng = np.random.default_rng([l, len(name), sum(map(ord, name))])
    p = he.choose_params(he.LayerShape.linear(n_in, n_out), l)
    w, r = uniform(rng, (n_out, n_in), l), uniform(rng, (3, n_in), l)
    c, s, client = run_layer(p, w, r)
    assert np.array_equal((c + s) & np.uint64((1 << l) - 1), ref_linear(r, w, l))
    assert client.last_margin_bits >= p.margin_bits


def test_several_input_polynomials_are_used():
    p = he.choose_params(he.LayerShape.conv2d(*CONVS["many channels"]), 37)
    assert p.in_groups > 1
    p = he.choose_params(he.LayerShape.linear(*LINEARS["fc 9000→3"]), 37)
    assert p.in_groups > 1


def test_zero_weights_give_a_fresh_reply_not_a_transparent_one():
    """All-zero kernels (SEAL would refuse their transparent products) still yield valid,
    masked shares of 0; so does a kernel that is zero in only some polynomials."""
    l = 37
    shape = he.LayerShape.conv2d((16, 14, 14), (16, 16, 3, 3), 1, 1)
    p = he.choose_params(shape, l, weight_bits=10)
    rng = np.random.default_rng(1)
    r = uniform(rng, (1, 16, 14, 14), l)
    c, s, _ = run_layer(p, np.zeros((16, 16, 3, 3), np.uint64), r)
    assert not np.any((c + s) & np.uint64((1 << l) - 1))
    assert np.any(s)                                   # masked, not zero
    w = rng.integers(0, 1 << 10, (16, 16, 3, 3), dtype=np.uint64)
    w[:8] = 0                                          # whole output groups without weights
    c, s, _ = run_layer(p, w, r)
    assert np.array_equal((c + s) & np.uint64((1 << l) - 1), ref_conv(r, w, 1, 1, l))


def test_plan_layers_of_a_zoo_model():
    """Every Conv2d/Linear of a compiled zoo model (folded BN, strides, 1×1 shortcuts, the
    final Linear), with its ring-encoded weights and a public bound on their size."""
    from pi.compiler import compile_plan
    from relu_budget.models import build

    torch.manual_seed(0)
    model = build("resnet-small").eval()
    plan, weights = compile_plan(model, torch.zeros(1, 1, 28, 28))
    l, rng = 37, np.random.default_rng(2)
    ops = [op for op in plan.ops if op.kind in ("Conv2d", "Linear")]
    assert len(ops) >= 9
    for op in ops:
        shape = he.LayerShape.from_plan(plan, op)
        signed = weights.weights[op.name].view(np.int64)
        w = (signed.astype(np.uint64)) & np.uint64((1 << l) - 1)
        p = he.choose_params(shape, l, weight_bits=int(np.abs(signed).max()).bit_length())
        r = uniform(rng, (1,) + shape.in_shape, l)
        c, s, _ = run_layer(p, w, r)
        ref = ref_linear(r, w, l) if shape.kind == "linear" else ref_conv(r, w, op.stride[0], op.padding[0], l)
        assert np.array_equal((c + s) & np.uint64((1 << l) - 1), ref), op.name


# --------------------------------------------------------------------------------------------
# Circuit privacy: the decrypted noise does not depend on W
# --------------------------------------------------------------------------------------------

def noise_samples(w_scale: int, flood: bool, mod_switch: bool, seed: int) -> np.ndarray:
    """t·e of every output coefficient of one reply (float64), for weights uniform in
    ±2^w_scale (0: all zero)."""
    l = 37
    shape = he.LayerShape.conv2d((16, 14, 14), (16, 16, 3, 3), 1, 1)
    p = he.choose_params(shape, l)
    rng = np.random.default_rng(seed)
    r = uniform(rng, (2, 16, 14, 14), l)
    if w_scale:
        w = rng.integers(-(1 << w_scale), 1 << w_scale, (16, 16, 3, 3)).astype(np.uint64) & np.uint64((1 << l) - 1)
    else:
        w = np.zeros((16, 16, 3, 3), np.uint64)
    client, server = he.HEClient(), he.HEServer()
    server.set_public_key(p, client.public_key(p))
    reply, _ = server.respond(server.prepare(p, w), client.encrypt(p, r), flood=flood, mod_switch=mod_switch)
    _, noise = client.decrypt(p, reply, noise=True)
    return noise.ravel()


def w_dependence_pvalue(flood: bool, mod_switch: bool) -> float:
    """Two-sample Kolmogorov–Smirnov p-value: noise with W = 0 against noise with the
    largest weights (6272 coefficients each)."""
    return stats.ks_2samp(noise_samples(0, flood, mod_switch, 3), noise_samples(36, flood, mod_switch, 4)).pvalue


@pytest.mark.parametrize("mod_switch", [False, True])
def test_reply_noise_does_not_depend_on_weights(mod_switch):
    """With flooding, W = 0 and weights of ±2^36 give the same noise law (KS p > 1e-6;
    under the null the test fails with probability 1e-6, and without flooding p < 1e-12). mod_switch=False looks at the
    ciphertext the flooding protects, before the (public) mod switch."""
    assert w_dependence_pvalue(flood=True, mod_switch=mod_switch) > 1e-6


def test_without_flooding_the_noise_reveals_the_weights():
    """The same statistic without flooding tells W = 0 from large W at once: the test above
    has the power to fail."""
    assert w_dependence_pvalue(flood=False, mod_switch=False) < 1e-12


def test_flood_noise_is_uniform_over_its_range():
    """Before the mod switch, t·e ≈ t·(uniform on [−2^b, 2^b)): its spread matches the law."""
    l = 37
    p = he.choose_params(he.LayerShape.conv2d((16, 14, 14), (16, 16, 3, 3), 1, 1), l)
    e = noise_samples(0, True, False, 5) / float(1 << l) / 2.0 ** p.flood_bits   # ≈ U[−1, 1)
    assert abs(e.mean()) < 4 * np.sqrt(1 / 3 / e.size)
    assert abs(e.var() - 1 / 3) < 4 * np.sqrt(4 / 45 / e.size)    # Var of U² is 4/45
    assert e.min() >= -1 and e.max() < 1.0 + 1e-9


# --------------------------------------------------------------------------------------------
# Parameters and bad input
# --------------------------------------------------------------------------------------------

def test_parameters_keep_the_flooding_bound():
    for l in WIDTHS:
        shape = he.LayerShape.conv2d((16, 14, 14), (16, 16, 3, 3), 1, 1)
        p = he.choose_params(shape, l)
        l1 = (1 << p.weight_bits) * p.m_group * shape.fan_in
        # 2^b ≥ 2^κ · n · (weight-dependent noise): statistical distance ≤ 2^−(κ+1)
        assert 2 ** p.flood_bits >= 2 ** he.KAPPA * p.n * l1 * he.FRESH_BOUND
        assert p.margin_bits >= he.MIN_MARGIN_BITS
        assert sum(p.prime_bits) <= he.he.max_bit_count(p.n)


def make(l=37):
    shape = he.LayerShape.conv2d((4, 6, 6), (5, 4, 3, 3), 1, 1)
    p = he.choose_params(shape, l)
    client, server = he.HEClient(), he.HEServer()
    server.set_public_key(p, client.public_key(p))
    rng = np.random.default_rng(7)
    layer = server.prepare(p, uniform(rng, (5, 4, 3, 3), l))
    query = client.encrypt(p, uniform(rng, (1, 4, 6, 6), l))
    return p, client, server, layer, query


def test_bad_parameters_are_clear_errors():
    shape = he.LayerShape.linear(8, 4)
    for l in (0, 1, 60, 64, 37.5):
        with pytest.raises(he.HEError, match="ring width"):
            he.choose_params(shape, l)
    with pytest.raises(he.HEError, match="weight_bits"):
        he.choose_params(shape, 37, weight_bits=37)
    with pytest.raises(he.HEError, match="channels"):
        he.LayerShape.conv2d((3, 8, 8), (4, 2, 3, 3))
    with pytest.raises(he.HEError, match="larger than the padded input"):
        he.LayerShape.conv2d((3, 2, 2), (4, 3, 3, 3))
    with pytest.raises(he.HEError, match="no BFV parameters"):
        he.choose_params(he.LayerShape.conv2d((1, 200, 200), (1, 1, 3, 3)), 37)


def test_bad_arrays_are_clear_errors():
    p, client, server, _, _ = make()
    rng = np.random.default_rng(0)
    with pytest.raises(he.HEError, match="uint64"):
        client.encrypt(p, np.zeros((1, 4, 6, 6), np.int64))
    with pytest.raises(he.HEError, match="shape"):
        client.encrypt(p, np.zeros((1, 4, 6, 5), np.uint64))
    with pytest.raises(he.HEError, match="2\\^37"):
        client.encrypt(p, np.full((1, 4, 6, 6), 1 << 37, np.uint64))
    with pytest.raises(he.HEError, match="shape"):
        server.prepare(p, uniform(rng, (5, 4, 3, 2), 37))
    small = he.choose_params(p.shape, 37, weight_bits=4)
    server.set_public_key(small, client.public_key(small))
    with pytest.raises(he.HEError, match="public bound"):
        server.prepare(small, np.full((5, 4, 3, 3), 17, np.uint64))
    other = he.choose_params(he.LayerShape.linear(8, 4), 40)
    with pytest.raises(he.HEError, match="public key"):
        he.HEServer().prepare(other, np.zeros((4, 8), np.uint64))


def test_malformed_bytes_are_clear_errors():
    p, client, server, layer, query = make()
    for bad in (b"", b"PIHQ", query[:-1], query + b"\0", b"x" * len(query)):
        with pytest.raises(he.HEError):
            server.respond(layer, bad)
    # A valid frame around a corrupted SEAL ciphertext: SEAL's checks catch it.
    body = bytearray(query)
    body[40:48] = b"\xff" * 8
    with pytest.raises(he.HEError, match="query"):
        server.respond(layer, bytes(body))
    # A query for another layer's parameters.
    other = he.choose_params(he.LayerShape.conv2d((4, 6, 6), (6, 4, 3, 3), 1, 1), 37)
    layer2 = server.prepare(other, np.zeros((6, 4, 3, 3), np.uint64))
    with pytest.raises(he.HEError, match="other layer parameters"):
        server.respond(layer2, query)
    with pytest.raises(he.HEError, match="public key"):
        he.HEServer().set_public_key(p, b"not a key")
    with pytest.raises(he.HEError, match="bytes"):
        server.respond(layer, "a string")
    reply, _ = server.respond(layer, query)
    for bad in (reply[:-3], reply[:30], b"PIHA" + reply[4:12] + b"\0" * 20):
        with pytest.raises(he.HEError):
            client.decrypt(p, bad)


def test_random_corruption_never_crashes():
    """Byte flips anywhere in a query or reply: an error, or (a flip inside ciphertext data
    that still parses) some shares — never a crash."""
    p, client, server, layer, query = make()
    reply, _ = server.respond(layer, query)
    rng = np.random.default_rng(11)
    for blob, use in ((query, lambda b: server.respond(layer, b)), (reply, lambda b: client.decrypt(p, b))):
        for _ in range(40):
            b = bytearray(blob)
            for i in rng.integers(0, len(b), 3):
                b[i] ^= int(rng.integers(1, 256))
            try:
                use(bytes(b))
            except (he.HEError, he.HEDecryptionError):
                pass


def test_reply_c1_is_rerandomized():
    """Two replies to one query with the same weights: without the server's fresh encryption
    of zero, c1 = Σ K·a would be the same known function of W both times (the mask and the
    flooding only touch c0)."""
    p, _, server, layer, query = make()
    (r1, _), (r2, _) = server.respond(layer, query), server.respond(layer, query)
    _, items1 = he._unframe(he.REPLY_MAGIC, "reply", p, r1)
    _, items2 = he._unframe(he.REPLY_MAGIC, "reply", p, r2)
    c1_bytes = -(-int(p.context.primes()[0]).bit_length() * p.n // 8)   # c1 of the first prime
    for a, b in zip(items1, items2):
        assert a[20:20 + c1_bytes] != b[20:20 + c1_bytes]


def test_message_sizes():
    """Seeded queries carry c0 only (half a full ciphertext); replies are packed at the
    primes' bit widths with c0 only where outputs are read."""
    p, _, server, layer, query = make()
    full = 2 * p.n * p.level * 8 * p.in_groups
    assert len(query) == p.query_bytes(1) and len(query) < 0.51 * full
    reply, _ = server.respond(layer, query)
    assert len(reply) == p.reply_bytes(1)
    assert len(reply) < p.out_groups * 2 * p.n * p.reply_level * 8 * 0.6
