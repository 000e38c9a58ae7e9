"""AES-128 (both paths) against FIPS-197, and the PRG built on it."""
import numpy as np
import pytest

import pi_native

FIPS_VECTORS = [  # (key, plaintext, ciphertext): FIPS-197 Appendix B and Appendix C.1
    ("2b7e151628aed2a6abf7158809cf4f3c", "3243f6a8885a308d313198a2e0370734", "3925841d02dc09fbdc118597196a0b32"),
    ("000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff", "69c4e0d86a7b0430d8cdb78070b4c55a"),
]
BACKENDS = ["portable"] + (["aesni"] if pi_native.has_aesni() else [])


def blocks(hexstr):
    return np.frombuffer(bytes.fromhex(hexstr), np.uint8).reshape(-1, 16)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key,pt,ct", FIPS_VECTORS)
def test_fips197_vectors(backend, key, pt, ct):
    out = pi_native.aes128_encrypt(bytes.fromhex(key), blocks(pt), backend)
    assert out.tobytes().hex() == ct


@pytest.mark.skipif(not pi_native.has_aesni(), reason="CPU without AES-NI")
def test_aesni_and_portable_agree_on_random_blocks():
    rng = np.random.default_rng(1)
    for n in (1, 7, 8, 9, 1000):  # around the 8-block pipelining boundary
        key = rng.bytes(16)
        data = rng.integers(0, 256, (n, 16), dtype=np.uint8)
        a = pi_native.aes128_encrypt(key, data, "aesni")
        b = pi_native.aes128_encrypt(key, data, "portable")
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(pi_native.mmo_hash(data, "aesni"), pi_native.mmo_hash(data, "portable"))


def test_mmo_is_aes_xor_input():
    data = np.random.default_rng(2).integers(0, 256, (33, 16), dtype=np.uint8)
    expected = pi_native.aes128_encrypt(pi_native.fixed_aes_key(), data) ^ data
    np.testing.assert_array_equal(pi_native.mmo_hash(data), expected)


def test_prg_is_aes_ctr_and_never_repeats_keystream():
    seed = bytes(range(16))
    prg = pi_native.Prg(seed)
    first = prg.random_u64(6)      # 3 blocks
    second = prg.random_u64(4)     # next 2 blocks: the counter moved on
    counters = np.zeros((5, 16), np.uint8)
    counters[:, 0] = np.arange(5)  # little-endian 128-bit counters 0..4
    ks = pi_native.aes128_encrypt(seed, counters).view(np.uint64).reshape(-1)
    np.testing.assert_array_equal(np.concatenate([first, second]), ks)
    assert prg.blocks_used == 5
    assert pi_native.Prg(seed, "portable").random_u64(10).tolist() == ks.tolist()


def test_prg_output_looks_uniform():
    bits = np.unpackbits(pi_native.Prg(b"\x07" * 16).random_u64(1 << 14).view(np.uint8))
    # 2^20 fair bits: the mean is within 6 standard deviations (sd = 0.5 / 1024) of 1/2.
    assert abs(bits.mean() - 0.5) < 6 * 0.5 / 1024


@pytest.mark.parametrize("bad", [b"", b"short", b"x" * 17])
def test_bad_key_lengths_are_rejected(bad):
    with pytest.raises(ValueError, match="16 bytes"):
        pi_native.Prg(bad)
    with pytest.raises(ValueError, match="16 bytes"):
        pi_native.aes128_encrypt(bad, np.zeros((1, 16), np.uint8))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="backend"):
        pi_native.Prg(b"0" * 16, "fast")
    with pytest.raises(ValueError, match=r"\(n, 16\)"):
        pi_native.mmo_hash(np.zeros((2, 8), np.uint8))
    with pytest.raises(ValueError, match="non-negative"):
        pi_native.Prg(b"0" * 16).random_u64(-1)
