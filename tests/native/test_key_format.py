"""Key batch format: header fields, and malformed input always raises ValueError (never crashes)."""
import os
import struct
import zlib

import numpy as np
import pytest

import pi_native

from reference import fss_ref as ref

U64 = np.uint64


def batches():
    """(name, key0, key1, evaluate(party, key)) for every gate."""
    r = np.arange(3, dtype=U64) * U64(0x9E3779B97F4A7C15)
    x = r + U64(1)
    seed = os.urandom(16)
    out = []
    for gate, params in [("relu", {}), ("relu", {"shift": 9}), ("drelu", {}), ("trunc", {"shift": 5}),
                         ("square", {}), ("circa", {"k": 12, "mode": "negpass", "shift": 2}),
                         ("relu", {"n": 40}), ("drelu", {"n": 33}), ("trunc", {"shift": 5, "n": 17}),
                         ("circa", {"k": 16, "mode": "poszero", "n": 40})]:
        k0, k1 = getattr(pi_native, "gen_" + gate)(seed, r, r, **params)
        if gate == "circa":
            def ev(p, k):
                bits = pi_native.eval_circa_sign(p, k, x)
                return pi_native.eval_circa_select(p, k, x, bits)
        else:
            def ev(p, k, g=gate):
                return getattr(pi_native, "eval_" + g)(p, k, x)
        out.append((gate, params, k0, k1, ev))
    k0, k1 = pi_native.gen_mul(seed, r, r, r)
    out.append(("mul", {}, k0, k1, lambda p, k: pi_native.eval_mul(p, k, x, x)))
    return out


BATCHES = batches()


def test_header_layout():
    r = np.zeros(5, U64)
    k0, k1 = pi_native.gen_circa(os.urandom(16), r, r, k=40, mode="poszero", shift=7)
    assert k0[:4] == b"PIFK" and k0[4] == 2 and k0[5] == 3
    assert (k0[6], k1[6]) == (0, 1)
    n, k, mode, shift, words, elem, count, ring, reserved, crc = struct.unpack_from("<BBBBBIQB3sI", k0, 7)
    assert (n, k, mode, shift, words, count, ring, reserved) == (64, 40, 1, 7, 0, 5, 64, b"\0\0\0")
    assert elem == pi_native.key_bytes_per_element("circa", k=40, mode="poszero", shift=7)
    assert crc == zlib.crc32(k0[:28])
    assert len(k0) == pi_native.FSS_KEY_HEADER_BYTES + 5 * elem
    info = pi_native.key_info(k1)
    assert info == {"gate": "circa", "party": 1, "n": 64, "k": 40, "mode": "poszero", "shift": 7, "words": 0,
                    "ring": 64, "count": 5, "bytes_per_element": elem}


@pytest.mark.parametrize("case", BATCHES, ids=[f"{b[0]}{b[1]}" for b in BATCHES])
def test_valid_keys_evaluate_from_any_byte_buffer(case):
    _, _, k0, k1, ev = case
    a = ev(0, k0)
    np.testing.assert_array_equal(ev(0, bytearray(k0)), a)
    np.testing.assert_array_equal(ev(0, memoryview(k0)), a)
    np.testing.assert_array_equal(ev(0, np.frombuffer(k0, np.uint8)), a)
    ev(1, k1)
    with pytest.raises(TypeError):
        ev(0, k0.decode("latin-1"))


@pytest.mark.parametrize("case", BATCHES, ids=[f"{b[0]}{b[1]}" for b in BATCHES])
def test_truncated_or_padded_keys_raise(case):
    _, _, k0, _, ev = case
    lengths = sorted(set(list(range(40)) + [len(k0) - 1, len(k0) - 8, len(k0) // 2]))
    for n in lengths:
        with pytest.raises(ValueError):
            ev(0, k0[:n])
        with pytest.raises(ValueError):
            pi_native.key_info(k0[:n])
    with pytest.raises(ValueError):
        ev(0, k0 + b"\0")


@pytest.mark.parametrize("case", BATCHES, ids=[f"{b[0]}{b[1]}" for b in BATCHES])
def test_every_header_bit_flip_raises(case):
    _, _, k0, _, ev = case
    for byte in range(32):
        for bit in range(8):
            bad = bytearray(k0)
            bad[byte] ^= 1 << bit
            with pytest.raises(ValueError):
                ev(0, bytes(bad))


def forge(header28: bytes) -> bytes:
    """A header with a correct checksum, to reach the field checks behind it."""
    return header28 + struct.pack("<I", zlib.crc32(header28))


def test_forged_headers_with_valid_checksum_raise():
    _, _, k0, _, ev = BATCHES[0]  # relu, 3 elements
    body = k0[32:]
    fields = list(struct.unpack_from("<4sBBBBBBBBIQI", k0, 0))
    # index: 0 magic, 1 version, 2 gate, 3 party, 4 n, 5 k, 6 mode, 7 shift, 8 words, 9 elem, 10 count,
    # 11 ring (byte 24) and reserved (bytes 25..27)
    changes = [(1, 1), (1, 3), (2, 0), (2, 7), (2, 99), (3, 2), (4, 63), (4, 0), (5, 3), (6, 1), (6, 9), (7, 64),
               (7, 200), (8, 1), (9, 2079), (9, 0), (10, 4), (10, 2), (10, 2**63), (10, 2**64 - 1), (11, 0),
               (11, 1), (11, 42), (11, 65), (11, 64 | 1 << 8), (11, 64 | 1 << 24)]
    for idx, value in changes:
        f = list(fields)
        f[idx] = value
        bad = forge(struct.pack("<4sBBBBBBBBIQI", *f)) + body
        with pytest.raises(ValueError):
            ev(0, bad)
        with pytest.raises(ValueError):
            pi_native.key_info(bad)


def test_wrong_gate_and_party_raise():
    keys = {b[0] + str(b[1]): b for b in BATCHES}
    relu0 = keys["relu{}"][2]
    drelu0 = keys["drelu{}"][2]
    x = np.zeros(3, U64)
    with pytest.raises(ValueError, match="not 'relu'"):
        pi_native.eval_relu(0, drelu0, x)
    with pytest.raises(ValueError, match="not 'circa'"):
        pi_native.eval_circa_sign(0, relu0, x)
    with pytest.raises(ValueError, match="not 'circa'"):
        pi_native.eval_circa_select(0, relu0, x, np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="not 'mul'"):
        pi_native.eval_mul(0, relu0, x, x)
    with pytest.raises(ValueError, match="not 'dcf'"):
        pi_native.eval_dcf(0, relu0, x)
    with pytest.raises(ValueError, match="party"):
        pi_native.eval_relu(1, relu0, x)


def test_random_garbage_raises():
    rng = np.random.default_rng(0)
    x = np.zeros(3, U64)
    for i in range(300):
        n = int(rng.integers(0, 400))
        junk = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        if i % 3 == 0:
            junk = b"PIFK\x02" + junk  # past the magic and version
        if i % 3 == 1 and n >= 28:
            junk = forge(b"PIFK\x02" + junk[5:28]) + junk[32:]  # and past the checksum
        for fn in (lambda k: pi_native.eval_relu(0, k, x), pi_native.key_info,
                   lambda k: pi_native.eval_circa_sign(0, k, x)):
            with pytest.raises(ValueError):
                fn(junk)


@pytest.mark.parametrize("case", BATCHES, ids=[f"{b[0]}{b[1]}" for b in BATCHES])
def test_corrupted_body_never_crashes(case):
    """The body is not authenticated: corruption gives wrong shares, but never a crash or an error."""
    _, _, k0, _, ev = case
    rng = np.random.default_rng(1)
    for _ in range(50):
        bad = bytearray(k0)
        for pos in rng.integers(32, len(k0), 8):
            bad[pos] = int(rng.integers(0, 256))
        ev(0, bytes(bad))


@pytest.mark.parametrize("n", [64, 40, 33, 17, 2])
def test_header_n_field(n):
    """Byte 7 holds the input bit width; it sizes the keys."""
    r = np.zeros(4, U64)
    for gate, params in [("relu", {"shift": 3}), ("drelu", {}), ("trunc", {"shift": 1}),
                         ("circa", {"k": 0, "mode": "negpass"})]:
        k0, k1 = getattr(pi_native, "gen_" + gate)(os.urandom(16), r, r, n=n, **params)
        assert k0[4] == 2 and k0[7] == k1[7] == n
        elem = struct.unpack_from("<I", k0, 12)[0]
        assert elem == pi_native.key_bytes_per_element(gate, n=n, **params) == ref_elem(gate, n, params)
        info = pi_native.key_info(k0)
        assert info["n"] == n and info["gate"] == gate and info["bytes_per_element"] == elem
        assert len(k0) == 32 + 4 * elem


def ref_elem(gate, n, params):
    return ref.key_bytes_per_element(gate, n=n, k=params.get("k", 0), shift=params.get("shift", 0))


def test_forged_n_field_raises():
    """A checksummed header with an n out of range, or an n that changes the key size, is rejected."""
    r = np.zeros(3, U64)
    x = np.zeros(3, U64)
    cases = [("relu", {}, 64), ("relu", {"n": 40}, 40), ("drelu", {"n": 33}, 33),
             ("circa", {"k": 16, "mode": "poszero", "n": 40}, 40), ("trunc", {"shift": 2, "n": 17}, 17),
             ("square", {}, 64)]
    for gate, params, n in cases:
        k0, _ = getattr(pi_native, "gen_" + gate)(os.urandom(16), r, r, **params)
        bad_ns = [0, 1, 65, 255] + ([n - 1, n + 1] if gate != "trunc" else [])
        if gate == "square":
            bad_ns = [0, 1, 40, 63, 65]  # square/mul only exist at n = 64
        if gate == "circa":
            bad_ns += [17]  # k = 16 > n - 2
        for bad_n in bad_ns:
            bad = bytearray(k0[:28])
            bad[7] = bad_n
            forged = forge(bytes(bad)) + k0[32:]
            with pytest.raises(ValueError):
                pi_native.key_info(forged)
            ev = {"circa": lambda k: pi_native.eval_circa_sign(0, k, x)}.get(
                gate, lambda k, g=gate: getattr(pi_native, "eval_" + g)(0, k, x))
            with pytest.raises(ValueError):
                ev(forged)
