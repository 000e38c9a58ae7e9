"""Circa's one-round product step in native code (pi_native.circa_*, docs/two_party.md "Circa in
one round"): bit for bit the formulas of the protocol written out in numpy, both sides, with and
without a shift; the server refuses a malformed reply."""
import numpy as np
import pytest

import pi_native
from protocols.fixed_point import Ring
from protocols.garbled import GcSpec, circa_values, wrap_weight

U64 = np.uint64


def rand_words(rng, n, l):
    return rng.integers(0, 1 << l, n, dtype=np.uint64) if l < 64 else rng.integers(0, 2 ** 63, n, dtype=np.uint64)


@pytest.mark.parametrize("l,bits,shift,n", [(42, 35, 12, 37), (42, 35, 0, 64), (59, 59, 20, 9), (20, 16, 0, 1), (20, 16, 4, 5)])
def test_both_sides_match_the_protocols_formulas(l, bits, shift, n):
    rng = np.random.default_rng(l + shift + n)
    ring, spec = Ring(l), GcSpec("circa", l, 4, "poszero", shift=shift, bits=bits)
    mask = spec.mask
    words = {k: rand_words(rng, n, l) for k in ("a", "d_s", "d_t", "r_c1", "s0", "s0_t", "s_out", "vu", "b", "r0", "r1",
                                                  "s_rho", "s_rt", "q", "w", "v")}
    per = 2 if shift else 1
    e = rng.integers(0, 2, (n, per) if shift else n).astype(np.uint8)
    rho = rng.integers(0, 2, (n, per) if shift else n).astype(np.uint8)
    c1_bits = rng.integers(0, 2, n).astype(np.uint8)
    k = wrap_weight(spec) if shift else U64(0)
    W = words

    # client: f = e ⊕ c1, w = (1 − 2e)·α + d_s, v = (1 − 2e_t)·K + d_t, q = z_E + s_out
    f_packed, packed = pi_native.circa_client_reply(
        e, np.packbits(c1_bits), W["a"], W["d_s"], W["d_t"] if shift else None, W["r_c1"], W["s0"],
        W["s0_t"] if shift else None, W["s_out"], ring.pack(W["vu"]).ravel(), int(k), l)
    e0 = (e[:, 0] if shift else e).astype(U64)
    f = e0 ^ c1_bits.astype(U64)
    w = ((U64(1) - U64(2) * e0) * W["a"] + W["d_s"]) & mask
    z = e0 * (W["a"] + W["vu"]) + (U64(1) - U64(2) * f) * W["r_c1"] - W["s0"] + W["s_out"]
    expect = [w]
    if shift:
        et = e[:, 1].astype(U64)
        expect.append(((U64(1) - U64(2) * et) * k + W["d_t"]) & mask)
        z = z + et * k - W["s0_t"]
    expect.append(z & mask)
    assert np.array_equal(f_packed, np.packbits(f.astype(np.uint8), bitorder="little"))
    assert np.array_equal(packed, ring.pack(np.concatenate(expect)))

    # server: V − u = (1 − 2ρ)·β − (R1 − R0), base = ρ·β − R0 + S_ρ (+ S'_ρt), then its share
    b = W["b"] & mask
    vu, base = pi_native.circa_server_send(b, rho, W["r0"], W["r1"], W["s_rho"], W["s_rt"] if shift else None,
                                           bits, shift, l)
    beta = circa_values(spec, b, garbler=True)
    r0 = (rho[:, 0] if shift else rho).astype(U64)
    assert np.array_equal(vu, ring.pack(((U64(1) - U64(2) * r0) * beta - (W["r1"] - W["r0"])) & mask))
    expect_base = r0 * beta - W["r0"] + W["s_rho"] + (W["s_rt"] if shift else U64(0))
    assert np.array_equal(base, expect_base & mask)
    reply = [W["w"], *([W["v"]] if shift else []), W["q"]]
    y = pi_native.circa_server_share(np.packbits(c1_bits, bitorder="little"), ring.pack(np.concatenate(reply)).ravel(),
                                     base, W["r0"], W["r1"], rho, l)
    expect_y = base + c1_bits.astype(U64) * (W["r0"] + W["r1"]) + r0 * W["w"] + W["q"]
    if shift:
        expect_y = expect_y + rho[:, 1].astype(U64) * W["v"]
    assert np.array_equal(y, expect_y & mask)


def test_a_malformed_reply_or_v_minus_u_is_refused():
    l, n = 42, 13
    ring, rng = Ring(l), np.random.default_rng(3)
    z = np.zeros(n, U64)
    rho = np.zeros(n, np.uint8)
    good_f, good_w = np.zeros(2, np.uint8), ring.pack(np.zeros(2 * n, U64)).ravel()
    pi_native.circa_server_share(good_f, good_w, z, z, z, rho, l)           # the well-formed reply passes
    bad_f = good_f.copy()
    bad_f[1] = 0x80                                                          # bit 15 of 13
    with pytest.raises(ValueError, match="padding bits"):
        pi_native.circa_server_share(bad_f, good_w, z, z, z, rho, l)
    with pytest.raises(ValueError, match="expected 13 bits"):
        pi_native.circa_server_share(good_f[:1], good_w, z, z, z, rho, l)
    high = good_w.copy()
    high[5] = 0x04                                                           # bit 42 of the first word
    with pytest.raises(ValueError, match="exceed 42 bits"):
        pi_native.circa_server_share(good_f, high, z, z, z, rho, l)
    with pytest.raises(ValueError, match="ring elements of 6 bytes"):
        pi_native.circa_server_share(good_f, good_w[:-6], z, z, z, rho, l)
    e, c1 = rng.integers(0, 2, n).astype(np.uint8), np.packbits(np.zeros(n, np.uint8))
    with pytest.raises(ValueError, match="exceed 42 bits"):
        pi_native.circa_client_reply(e, c1, z, z, None, z, z, None, z, high[:6 * n], 0, l)
    with pytest.raises(ValueError, match="d_t and s0_t"):
        pi_native.circa_client_reply(e, c1, z, z, z, z, z, None, z, good_w[:6 * n], 0, l)
