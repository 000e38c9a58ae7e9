"""Cost model: documented defaults, measured rows, Circa by bit width, network estimates and
the conversion of a latency / bytes budget into a number of kept sites."""
import json
import math

import pytest
import torch

from relu_budget import models
from relu_budget.cost_model import (
    PROFILES,
    CostModel,
    CostModelError,
    NetworkProfile,
    default_circa,
    get_profile,
)
from protocols.fixed_point import DEFAULT_FRAC_BITS
from protocols.gates import GateSpec, poly_opening_bits
from relu_budget.models import IDENTITY, RELU, relu_sites

SHAPE = (1, 12, 12)


def tiny():
    torch.manual_seed(0)
    return models.build("smallcnn", image_size=12, num_classes=4, channels=(2, 4), hidden=8)


def row(gate, key, online=16.0, rounds=1, k=None, n=64, **extra):
    return {"gate": gate, "n": n, "k": k, "key_bytes": key, "keygen_per_s": 1e6, "eval_per_s": 2e6,
            "online_bytes": online, "rounds": rounds, **extra}


def test_defaults_without_results(tmp_path):
    cm = CostModel.load(tmp_path)
    assert cm.relu.key_bytes == 2100 and cm.relu.online_bytes == 16 and cm.relu.rounds == 1
    assert cm.per_site("identity") == {"online_bytes": 0, "offline_bytes": 0, "online_seconds": 0.0,
                                       "offline_seconds": 0.0, "rounds": 0}
    assert cm.sources == []
    # Circa gets cheaper as k grows (fewer bits left for its sign test) and stays below a ReLU.
    keys = [cm.site_cost("circa", k).key_bytes for k in (8, 16, 24, 32)]
    assert keys == sorted(keys, reverse=True) and keys[0] < cm.relu.key_bytes
    assert cm.site_cost("circa", 16) == default_circa(16)
    with pytest.raises(CostModelError, match="pass k"):
        cm.site_cost("circa")
    with pytest.raises(CostModelError, match="site kind"):
        cm.site_cost("maxpool")


def test_missing_explicit_results_dir_is_an_error(tmp_path):
    with pytest.raises(CostModelError, match="does not exist"):
        CostModel.load(tmp_path / "nope")


def test_measured_rows_override_defaults(tmp_path):
    rows = [row("relu", 2080, n=32), row("relu", 1999), row("square", 16), row("trunc", 16),
            row("circa", 472, 16.25, 2, k=32, m=32), row("circa", 216, 16.25, 2, k=48, m=16)]
    (tmp_path / "native.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "gemm.json").write_text(json.dumps({"rows": [
        {"m": 64, "k": 64, "n": 64, "threads": 1, "native_gmacs": 1.0},
        {"m": 512, "k": 512, "n": 512, "threads": 1, "native_gmacs": 4.0},
        {"m": 512, "k": 512, "n": 512, "threads": 2, "native_gmacs": 7.0}]}))
    (tmp_path / "other.json").write_text("not json")
    with pytest.warns(UserWarning, match="other.json"):
        cm = CostModel.load(tmp_path)
    assert cm.relu.key_bytes == 1999          # n = 64 preferred over n = 32
    # A polynomial site is the poly gate: one round, x̂ >> 12 (7 B) out and y0 (8 B) back, both
    # gates' compute, the engine's key (4 words of 64 + 24 bits on the server, none on the client).
    assert (cm.poly.key_bytes, cm.poly.online_bytes, cm.poly.rounds) == (22, 15, 1)
    assert cm.poly.eval_per_s == pytest.approx(1e6)
    # At a calibrated width the poly gate opens fewer bits of x̂ and returns y0 in the narrower
    # ring: priced as protocols.gates defines the opening.
    for bits in (64, 40, 29):
        opening = poly_opening_bits(GateSpec("poly", shift=DEFAULT_FRAC_BITS, bits=bits, ring=bits))
        want = math.ceil(opening / 8) + math.ceil(bits / 8)
        assert CostModel.load(tmp_path, bits=bits).poly.online_bytes == want
    assert CostModel.load(tmp_path, bits=40).poly.online_bytes == 9
    assert cm.linear.macs_per_s == 4e9        # single thread, largest shape
    # Circa by m = 64 − k: measured points exactly, linear interpolation in between.
    assert cm.site_cost("circa", 32).key_bytes == 472
    assert cm.site_cost("circa", 48).key_bytes == 216
    assert cm.site_cost("circa", 40).key_bytes == pytest.approx((472 + 216) / 2)
    assert cm.site_cost("circa", 40).rounds == 2
    with pytest.raises(CostModelError, match="m = 0"):
        cm.site_cost("circa", 64)


def test_malformed_gate_row_names_the_field(tmp_path):
    bad = row("relu", 2080)
    del bad["eval_per_s"]
    (tmp_path / "native.json").write_text(json.dumps({"rows": [bad]}))
    with pytest.raises(CostModelError, match=r"native.json: row 0 .*eval_per_s"):
        CostModel.load(tmp_path)
    (tmp_path / "native.json").write_text(json.dumps({"rows": [row("relu", -1)]}))
    with pytest.raises(CostModelError, match="key_bytes"):
        CostModel.load(tmp_path)


def test_network_profiles():
    assert get_profile("wan").rtt_s > get_profile("lan").rtt_s
    with pytest.raises(CostModelError, match="unknown network profile"):
        get_profile("moon")
    with pytest.raises(CostModelError, match="bandwidth"):
        NetworkProfile("x", 0, 1)
    m = tiny()
    lan = CostModel(profile=PROFILES["lan"]).estimate(m, SHAPE)
    wan = CostModel(profile=PROFILES["wan"]).estimate(m, SHAPE)
    assert wan.online_seconds > lan.online_seconds
    assert wan.online_bytes == lan.online_bytes


def test_estimate_counts_sites_rounds_and_macs(tmp_path):
    cm = CostModel.load(tmp_path)
    m = tiny()
    full = cm.estimate(m, SHAPE)
    n_sites = 2 * 144 + 4 * 36 + 8
    assert full.relus == n_sites
    assert full.online_bytes == pytest.approx(16 * n_sites)
    assert full.rounds == 3 + 1               # one per ReLU layer, plus input/output
    conv1 = 2 * 144 * 25
    conv2 = 4 * 36 * 2 * 25
    fc = 4 * 9 * 8 + 8 * 4
    assert full.macs == conv1 + conv2 + fc
    # Linearize the first layer completely: its bytes and its round disappear.
    sites = dict(relu_sites(m))
    sites["relu1"].set_kinds(torch.full((2, 12, 12), IDENTITY, dtype=torch.int8))
    lin = cm.estimate(m, SHAPE)
    assert lin.relus == n_sites - 288
    assert full.online_bytes - lin.online_bytes == pytest.approx(16 * 288)
    assert full.offline_bytes - lin.offline_bytes == pytest.approx(2 * 2100 * 288)
    assert lin.rounds == full.rounds - 1
    assert lin.value("relus") == lin.relus
    assert lin.value("bytes") == lin.online_bytes + lin.offline_bytes
    with pytest.raises(CostModelError):
        lin.value("joules")


@pytest.mark.parametrize("objective", ["bytes", "latency"])
def test_sites_for_budget_is_tight_and_safe(tmp_path, objective):
    cm = CostModel.load(tmp_path)
    m = tiny()

    def cost_with(kept):
        # Spread `kept` sites over every layer (all layers stay active: the conservative case).
        share = {"relu1": kept - 2, "relu2": 1, "relu3": 1}
        for name, site in relu_sites(m):
            shape = {"relu1": (2, 12, 12), "relu2": (4, 6, 6), "relu3": (8,)}[name]
            flat = torch.full((int(torch.tensor(shape).prod()),), IDENTITY, dtype=torch.int8)
            flat[:share[name]] = RELU
            site.set_kinds(flat.reshape(shape))
        return cm.estimate(m, SHAPE).value(objective)

    budget = (cost_with(10) + cost_with(300)) / 2
    b = cm.sites_for_budget(m, SHAPE, budget, objective)
    assert 10 < b < 300

    assert cost_with(b) <= budget * (1 + 1e-9)
    assert cost_with(b + 1) > budget
    assert cm.sites_for_budget(m, SHAPE, 10 ** 12, objective) == 2 * 144 + 4 * 36 + 8
    with pytest.raises(CostModelError, match="below the cost"):
        cm.sites_for_budget(m, SHAPE, 1e-12, objective)


def test_describe_is_json_serializable():
    json.dumps(CostModel.load().describe())


@pytest.mark.parametrize("bits", [40, 49, 56, 64])
def test_poly_key_bytes_are_the_dealers_wide_key_words(bits):
    """The cost model's poly key (per party, averaged) is half the server's four words of l + 2f
    bits as the dealer stores them (protocols.gates.key_bytes)."""
    from protocols.gates import key_bytes
    from relu_budget.cost_model import poly_key_bytes
    assert 2 * poly_key_bytes(bits) == key_bytes(GateSpec("poly", shift=12, bits=bits - 1, ring=bits, out_shift=24))
