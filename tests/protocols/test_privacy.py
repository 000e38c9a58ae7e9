"""What each party receives is independent of the other's secret.

For a small network we run many inferences (fresh preprocessing each time) on two different
inputs and record every array one party receives online. Under the protocol those arrays are
uniform ring elements whatever the input; we check each of the l bit positions of every
received element (l = 64, and the narrower ring calibration gives): the frequency of ones
must match between the two inputs (two-proportion z-test) and be 1/2 (binomial test), with
|z| < 5 over all positions (with ~1000 tests at |z| < 5 the chance of a false alarm is below
1e-3)."""

import struct
from statistics import NormalDist

import numpy as np
import pytest
import torch
from torch import nn
from two_party import run_recorded

import pi
from protocols.providers import PROVIDERS

RUNS = 200


def views(sm, x, provider, runs):
    plan = sm.plan
    client_views, server_views = [], []
    for _ in range(runs):
        _y, _srun, _crun, rs, rc = run_recorded(plan, sm.weights, x, provider)
        # The client's last message is the output share the server sends: its result, not a view
        # to hide (it is the client's own output). Everything before it must look uniform.
        # At l < 64 ring elements arrive packed in ceil(l/8) bytes: back to uint64 elements.
        client_views.append(np.concatenate([plan.ring.unpack(v) for v in rc.seen[:-1]]))
        server_views.append(np.concatenate([plan.ring.unpack(v) for v in rs.seen]))
    return np.stack(client_views), np.stack(server_views)


def bits(v: np.ndarray, l: int) -> np.ndarray:
    """(runs, elements) uint64 → (runs, elements·l) bits: the l bits of each ring element."""
    b = np.unpackbits(v.view(np.uint8), axis=1, bitorder="little").reshape(v.shape[0], v.shape[1], 64)
    return b[:, :, :l].reshape(v.shape[0], -1)


def z_scores(b1: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p1, p2 = b1.mean(0), b2.mean(0)
    n = b1.shape[0]
    pooled = (p1 + p2) / 2
    se = np.sqrt(np.maximum(pooled * (1 - pooled) * 2 / n, 1e-12))
    z_diff = (p1 - p2) / se
    z_half = (np.concatenate([b1, b2]).mean(0) - 0.5) / np.sqrt(0.25 / (2 * n))
    return z_diff, z_half


@pytest.mark.parametrize("width", [64, "calibrated"])
@pytest.mark.parametrize("provider", sorted(p for p in PROVIDERS if not PROVIDERS[p].interactive))
def test_received_messages_do_not_depend_on_the_secret_input(provider, width):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    x_a = np.array([[3.0, -2.0, 0.5, 1.0]])
    x_b = np.array([[-7.0, 4.0, 0.0, -0.25]])
    kw = {"calibration": torch.tensor(np.vstack([x_a, x_b]))} if width == "calibrated" else {}
    sm = pi.compile(model, torch.zeros(1, 4), provider=provider, **kw)
    assert (sm.plan.ring_bits < 64) == (width == "calibrated")
    client_a, server_a = views(sm, x_a, provider, RUNS)
    client_b, server_b = views(sm, x_b, provider, RUNS)
    for name, va, vb in (("client", client_a, client_b), ("server", server_a, server_b)):
        assert va.shape == vb.shape and va.shape[1] > 0
        z_diff, z_half = z_scores(bits(va, sm.plan.ring_bits), bits(vb, sm.plan.ring_bits))
        assert np.abs(z_diff).max() < 5, f"{name}'s view depends on the input (max |z| {np.abs(z_diff).max():.1f})"
        assert np.abs(z_half).max() < 5, f"{name}'s view is not uniform (max |z| {np.abs(z_half).max():.1f})"


# -- two-party: every array each party receives online, over many bundles of one session ------

def two_party_views(plan, weights, x, runs, sites: int):
    """(client views, server views): per run, the bits of every array received online. Ring
    vectors (2-D packed arrays) contribute their l bits per element; byte strings their bits,
    garbler-label buffers without their public header (the last 16 bytes per label are the
    labels), Circa's bit vector f its `sites` bits without the padding, a parcel (Circa's
    messages) each of its parts. The client's last
    message (the server's output share) is its result, not a view."""
    from two_party import record_bundles
    l = plan.ring_bits
    client_views, server_views = [], []
    for rs, rc in record_bundles(plan, weights, x, runs):
        client_views.append(np.concatenate([view_bits(v, l, sites) for v in rc[:-1]]))
        server_views.append(np.concatenate([view_bits(v, l, sites) for v in rs]))
    return np.stack(client_views), np.stack(server_views)


def view_bits(v: np.ndarray, l: int, sites: int) -> np.ndarray:
    if v.ndim == 2:                                        # packed ring elements: (n, ceil(l/8))
        wide = np.zeros((v.shape[0], 8), np.uint8)
        wide[:, :v.shape[1]] = v
        return bits(wide.reshape(1, -1).view(np.uint64), l)[0]
    raw = v.tobytes()
    if raw[:4] == b"PIPC":     # a parcel (u32 count, u64 lengths): labels, Circa's f, or ring elements
        count = struct.unpack_from("<I", raw, 4)[0]
        at, out = 8 + 8 * count, []
        for n in struct.unpack_from(f"<{count}Q", raw, 8):
            part = np.frombuffer(raw[at:at + n], np.uint8)
            at += n
            plain = part[:4].tobytes() == b"PIGL" or n == (sites + 7) // 8
            out.append(view_bits(part if plain else part.reshape(-1, (l + 7) // 8), l, sites))
        return np.concatenate(out)
    if raw[:4] == b"PIGL":     # garbler labels: a public header (u32 labels per instance at 12, u64 count at 16)
        per, count = struct.unpack_from("<IQ", raw, 12)
        raw = raw[len(raw) - 16 * per * count:]
    out = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")
    return out[:sites] if len(raw) == (sites + 7) // 8 else out


@pytest.mark.parametrize("relu", ["exact", "circa"])
@pytest.mark.parametrize("width", ["full", "narrow"])
def test_two_party_received_messages_do_not_depend_on_the_secret_input(relu, width):
    """At 59 bits and in a narrower ring (exact: the calibrated one; Circa, which the provider
    runs at 59 bits because of its local rescale: an explicit 40)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    x_a = np.array([[3.0, -2.0, 0.5, 1.0]])
    x_b = np.array([[-7.0, 4.0, 0.0, -0.25]])
    kw = {}
    if width == "narrow":
        kw = {"calibration": torch.tensor(np.vstack([x_a, x_b])), "ring_bits": "calibrated" if relu == "exact" else 40}
    sm = pi.compile(model, torch.zeros(1, 4), provider="two-party", relu=relu, circa_k=4, **kw)
    assert (sm.plan.ring_bits < 59) == (width == "narrow")
    client_a, server_a = two_party_views(sm.plan, sm.weights, x_a, RUNS, sites=3)
    client_b, server_b = two_party_views(sm.plan, sm.weights, x_b, RUNS, sites=3)
    for name, va, vb in (("client", client_a, client_b), ("server", server_a, server_b)):
        assert va.shape == vb.shape and va.shape[1] > 0
        z_diff, z_half = z_scores(va, vb)
        # tens of thousands of bit positions (16-byte labels): Bonferroni for a family
        # false-alarm rate of 1e-6 per assertion (|z| < 5 alone fails ~1 % of correct runs)
        limit = max(5.0, NormalDist().inv_cdf(1 - 0.5e-6 / va.shape[1]))
        assert np.abs(z_diff).max() < limit, f"{name}'s view depends on the input (max |z| {np.abs(z_diff).max():.1f})"
        assert np.abs(z_half).max() < limit, f"{name}'s view is not uniform (max |z| {np.abs(z_half).max():.1f})"
