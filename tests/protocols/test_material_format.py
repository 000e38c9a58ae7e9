"""Material's wire form: a round trip keeps every item (arrays as zero-copy views, key bytes),
and malformed payloads are refused with MaterialMismatch, never half-parsed."""
import json
import struct

import numpy as np
import pytest

from protocols.material import ALIGN, MAGIC, Material, MaterialMismatch


def sample() -> Material:
    m = Material("server", "ab" * 32, 3)
    m.put("l/r1", np.arange(10, dtype=np.uint64) * np.uint64(2**61))
    m.put("l/packed", np.arange(21, dtype=np.uint8).reshape(7, 3))
    m.put("l/key0", b"\x01\x02\x03" * 5)
    m.put("empty", np.zeros(0, np.uint64))
    return m


def test_round_trip_keeps_items_and_views_the_payload():
    data = sample().to_bytes()
    back = Material.from_bytes(data)
    assert (back.party, back.plan_digest, back.batch) == ("server", "ab" * 32, 3)
    r1 = back.take("l/r1")
    np.testing.assert_array_equal(r1, np.arange(10, dtype=np.uint64) * np.uint64(2**61))
    assert r1.dtype == np.uint64 and r1.ctypes.data % 8 == 0
    np.testing.assert_array_equal(back.take("l/packed"), np.arange(21, dtype=np.uint8).reshape(7, 3))
    assert bytes(back.take("l/key0")) == b"\x01\x02\x03" * 5
    assert back.take("empty").shape == (0,)
    assert np.shares_memory(r1, np.frombuffer(data, np.uint8))      # a view of the payload, no copy
    assert back.nbytes == 0


def _with_header(data: bytearray, edit) -> bytearray:
    (hlen,) = struct.unpack("<Q", data[len(MAGIC):len(MAGIC) + 8])
    header = json.loads(bytes(data[len(MAGIC) + 8:len(MAGIC) + 8 + hlen]))
    edit(header)
    new = json.dumps(header).encode()
    body_start = -(-(len(MAGIC) + 8 + hlen) // ALIGN) * ALIGN
    start = -(-(len(MAGIC) + 8 + len(new)) // ALIGN) * ALIGN
    out = bytearray(start) + data[body_start:]
    out[:len(MAGIC) + 8 + len(new)] = MAGIC + struct.pack("<Q", len(new)) + new
    return out


@pytest.mark.parametrize("corrupt, match", [
    (lambda d: d[:40], "header runs past the end"),
    (lambda d: b"PK\x03\x04" + d[4:], "bad magic"),
    (lambda d: d[:-70], "inconsistent offset"),
    (lambda d: _with_header(d, lambda h: h["items"][0].__setitem__(2, "|O")), "unsupported dtype"),
    (lambda d: _with_header(d, lambda h: h["items"][0].__setitem__(3, [11])), "inconsistent"),
    (lambda d: _with_header(d, lambda h: h["items"][1].__setitem__(4, 3)), "inconsistent"),
    (lambda d: _with_header(d, lambda h: h.__setitem__("format", 1)), "format 1 is not supported"),
])
def test_malformed_payloads_are_refused(corrupt, match):
    good = sample().to_bytes()
    assert Material.from_bytes(_with_header(good, lambda h: None)).batch == 3    # the editor itself is sound
    with pytest.raises(MaterialMismatch, match=match):
        Material.from_bytes(corrupt(bytearray(good)))
