"""A used bundle's buffer goes back to the kernel off the online phase's path
(pi_native.PageDiscard, engine.discard_spent), and only once the party's online phase is over."""
import time

import numpy as np
import torch
from torch import nn

import pi
import pi_native
from protocols import engine

PAGE = 4096


def _wait(d, timeout=10.0):
    end = time.monotonic() + timeout
    while not d.done and time.monotonic() < end:
        time.sleep(0.001)
    assert d.done


def test_page_discard_zeroes_whole_pages_only_and_holds_the_buffer():
    buf = bytearray(b"\xab" * (3 * PAGE + 100))
    start = -np.frombuffer(buf, np.uint8).ctypes.data % PAGE        # bytes before the first whole page
    d = pi_native.PageDiscard(buf)
    _wait(d)
    arr = np.frombuffer(buf, np.uint8)
    whole = (len(buf) - start) // PAGE * PAGE
    assert d.bytes == whole >= 2 * PAGE
    assert not arr[start:start + whole].any()                      # the pages read as zeros
    assert (arr[:start] == 0xAB).all() and (arr[start + whole:] == 0xAB).all()   # partial pages kept
    try:
        buf.extend(b"x")                                          # exported: cannot move while held
        raise AssertionError("a held buffer was resized")
    except BufferError:
        pass
    del d, arr
    buf.extend(b"x")                                              # released with the PageDiscard


def test_online_phase_discards_its_bundles_after_the_last_gate(monkeypatch):
    """Material of a few MB per party (above engine._DISCARD_MIN_BYTES): after a run each party's
    bundle is handed to a PageDiscard, and the output is still right, so no key was discarded
    before its layer used it."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 16 * 16, 4)).eval()
    x = torch.randn(6, 1, 16, 16)
    secure = pi.compile(model, x[:1], ring_bits="calibrated", calibration=torch.randn(64, 1, 16, 16))
    made = []
    real = pi_native.PageDiscard

    def record(buf):
        made.append(real(buf))
        return made[-1]
    monkeypatch.setattr(engine.pi_native, "PageDiscard", record)
    y = secure.run(x)
    with torch.no_grad():
        np.testing.assert_allclose(y.numpy(), model(x).numpy(), atol=2.0 ** -5)
    assert secure.last_cost.to_dict()["material_bytes"]["client"] > 2 * engine._DISCARD_MIN_BYTES
    assert len(made) == 2 and all(d.bytes > engine._DISCARD_MIN_BYTES for d in made)   # one per party
