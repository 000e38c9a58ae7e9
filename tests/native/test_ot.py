"""Base OT (Chou–Orlandi over P-256) and IKNP extension (docs/gc.md): correctness, one-time use,
malformed messages, and that the sender's view does not depend on the receiver's choice bits."""
import numpy as np
import pytest

import pi_native

from stats import family_z   # Bonferroni: 4.5 sigma on each of 2048 indices failed 1.4 % of correct runs


def rows_int(a):
    return [int.from_bytes(r.tobytes(), "little") for r in a]


def pair():
    s, r = pi_native.IknpSender(), pi_native.IknpReceiver()
    r.base_finish(s.base_reply(r.base_message()))
    return s, r


def test_base_ot_correct():
    rng = np.random.default_rng(0)
    c = rng.integers(0, 2, 40).astype(np.uint8)
    snd = pi_native.BaseOtSender()
    reply, kc = pi_native.base_ot_receive(snd.message(), c)
    k0, k1 = snd.finish(reply, 40)
    assert len(reply) == 40 * 33
    for i in range(40):
        want, other = (k1, k0) if c[i] else (k0, k1)
        assert np.array_equal(kc[i], want[i]) and not np.array_equal(kc[i], other[i])
    assert len({bytes(k) for k in np.concatenate([k0, k1])}) == 80
    with pytest.raises(RuntimeError, match="one-time"):
        snd.finish(reply, 40)


def test_base_ot_malformed_messages():
    snd = pi_native.BaseOtSender()
    with pytest.raises(ValueError, match="33 bytes"):
        pi_native.base_ot_receive(snd.message()[:-1], np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="not a valid compressed P-256 point"):
        pi_native.base_ot_receive(b"\x02" + b"\xff" * 32, np.zeros(2, np.uint8))
    reply, _ = pi_native.base_ot_receive(snd.message(), np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="bytes"):
        pi_native.BaseOtSender().finish(reply[:-5], 3)
    bad = bytearray(reply)
    bad[33] = 0x05  # not a compressed-point prefix
    with pytest.raises(ValueError, match="point"):
        pi_native.BaseOtSender().finish(bytes(bad), 3)
    r = pi_native.IknpReceiver()
    with pytest.raises(ValueError):
        r.base_finish(b"\x00" * 10)


@pytest.mark.parametrize("n", [1, 127, 128, 1000, 4099])
def test_correlated_ot(n):
    s, r = pair()
    assert s.session_id == r.session_id
    rng = np.random.default_rng(n)
    c = rng.integers(0, 2, n).astype(np.uint8)
    s.extend(r.extend(c), n)
    q = s.correlated_ot(n)
    cc, t = r.correlated_ot(n)
    assert np.array_equal(cc, c)
    x = q ^ t
    assert not x[c == 0].any()
    ones = x[c == 1]
    if ones.size:
        assert (ones == ones[0]).all() and ones[0, 0] & 1, "t = q xor c*delta with one delta, lsb set"
        assert ones[0].any()


def test_random_ot_and_chunks():
    s, r = pair()
    rng = np.random.default_rng(1)
    c1, c2 = rng.integers(0, 2, 300).astype(np.uint8), rng.integers(0, 2, 77).astype(np.uint8)
    s.extend(r.extend(c1), 300)
    s.extend(r.extend(c2), 77)
    c = np.concatenate([c1, c2])
    # take across the two extension chunks, in pieces
    r0, r1 = s.random_ot(250, 40)
    cc, rc = r.random_ot(250, 40)
    assert np.array_equal(rc, np.where(cc == 1, r1, r0)) and np.array_equal(cc, c[:250])
    assert not np.any(rc == np.where(cc == 1, r0, r1))
    assert int(max(r0.max(), r1.max())) < 2**40
    q = s.correlated_ot(127)
    cc, t = r.correlated_ot(127)
    assert np.array_equal(cc, c[250:])
    assert not (q ^ t)[cc == 0].any()
    assert s.consumed == r.consumed == 377 == s.extended


def test_each_ot_used_once_and_in_order():
    s, r = pair()
    s.extend(r.extend(np.zeros(10, np.uint8)), 10)
    s.correlated_ot(10)
    with pytest.raises(ValueError, match="unused OTs left"):
        s.correlated_ot(1)
    r.correlated_ot(4)
    with pytest.raises(ValueError, match="unused OTs left"):
        r.random_ot(7)
    with pytest.raises(RuntimeError, match="already done"):
        r.base_finish(b"\0" * (128 * 33))
    with pytest.raises(RuntimeError, match="already done"):
        s.base_reply(r.base_message())


def test_extension_before_setup_and_bad_messages():
    s, r = pi_native.IknpSender(), pi_native.IknpReceiver()
    with pytest.raises(RuntimeError, match="base OTs first"):
        r.extend(np.zeros(4, np.uint8))
    r.base_finish(s.base_reply(r.base_message()))
    u = r.extend(np.zeros(200, np.uint8))
    with pytest.raises(ValueError, match="bytes"):
        s.extend(u[:-1], 200)
    with pytest.raises(ValueError, match="bytes"):
        s.extend(u, 300)
    with pytest.raises(ValueError, match="only 0 and 1"):
        r.extend(np.array([0, 2], np.uint8))
    with pytest.raises(TypeError):
        r.extend(np.array([0, 1], np.int64))


def _u_bits(choices):
    _, r = pair()
    u = r.extend(choices)
    return np.unpackbits(np.frombuffer(u, np.uint8)).reshape(128, -1)  # column i, bit j of OT j


def test_sender_view_independent_of_choice_bits():
    """The sender sees U = t ⊕ G(k^1) ⊕ c per column: every bit is a fair coin whatever the choices,
    and U does not correlate with c (all-zero, all-one and random choices; each family of checks
    at a false-alarm rate of 1e-6)."""
    n = 2048
    rng = np.random.default_rng(2)
    views = {name: _u_bits(c) for name, c in
             (("zeros", np.zeros(n, np.uint8)), ("ones", np.ones(n, np.uint8)),
              ("random", rng.integers(0, 2, n).astype(np.uint8)))}
    total = 128 * n
    for name, bits in views.items():
        mean = bits.mean()
        assert abs(mean - 0.5) < family_z(1) * np.sqrt(0.25 / total), name
        col = bits.mean(axis=1)   # per column
        assert np.all(np.abs(col - 0.5) < family_z(128) * np.sqrt(0.25 / n)), name
    c = rng.integers(0, 2, n).astype(np.uint8)
    bits = _u_bits(c).astype(np.int8) * 2 - 1
    cs = c.astype(np.int8) * 2 - 1
    corr = (bits[:, :n] * cs).mean(axis=1)
    assert np.all(np.abs(corr) < family_z(128) / np.sqrt(n))
    diff = views["zeros"].mean(axis=0) - views["ones"].mean(axis=0)   # per OT index, across columns
    assert np.all(np.abs(diff) < family_z(n) * np.sqrt(0.5 / 128))
