"""`pi bench relu` / `pi bench model` on tiny sizes: rows follow the documented schema
(docs/bench.md). No timing is asserted. CrypTen parts are skipped when it is not installed."""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pi.bench import crypten_baseline as cb
from pi.bench import model as bench_model
from pi.bench import profiles
from pi.bench import relu as bench_relu

HAS_CRYPTEN = importlib.util.find_spec("crypten") is not None
# `make test` sets PI_REQUIRE_CRYPTEN=1: the README quotes CrypTen ratios, so there a missing
# baseline is a failure, not a skip. A bare `pytest` run skips these tests and says why.
if not HAS_CRYPTEN and os.environ.get("PI_REQUIRE_CRYPTEN") == "1":
    raise RuntimeError("PI_REQUIRE_CRYPTEN=1 but crypten is not importable: run benchmarks/setup_crypten.sh .venv")
needs_crypten = pytest.mark.skipif(not HAS_CRYPTEN, reason="crypten is not installed; run "
                                   "benchmarks/setup_crypten.sh to include the CrypTen baseline")


def _args(module, argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    module.configure(p)
    return p.parse_args(argv)


def _check_schema(rows: list[dict], fields) -> None:
    assert rows
    for r in rows:
        missing = set(fields) - set(r)
        assert not missing, f"row {r.get('system')}/{r.get('policy')} lacks {sorted(missing)}"


def test_profiles_estimate():
    lan, wan = profiles.LAN, profiles.WAN
    # 125 MB at 1 Gbit/s is 1 s; 10 rounds of 0.5 ms RTT.
    assert math.isclose(lan.estimate(1.0, 125e6, 10, "pi"), 1.0 + 1.0 + 10 * 0.5e-3)
    assert math.isclose(wan.estimate(0.0, 0, 10, "crypten"), 10 * 0.5 * 40e-3)
    assert lan.estimate(None, 1, 1) is None
    with pytest.raises(ValueError, match="unknown system"):
        lan.estimate(1, 1, 1, "other")
    row = profiles.add_estimates({"online_s": 0.5, "online_bytes": 0, "rounds": 2, "offline_s": None}, "pi")
    assert math.isclose(row["wan_online_s"], 0.5 + 2 * 40e-3) and row["lan_offline_s"] is None


def test_ring_bits_option():
    assert bench_model.ring_bits_arg("calibrated") == "calibrated" and bench_model.ring_bits_arg("64") == 64
    with pytest.raises(argparse.ArgumentTypeError, match="'calibrated' or an integer"):
        bench_model.ring_bits_arg("wide")


def test_per_workload_option():
    assert bench_model._per_workload("7", ["default", "resnet18"]) == {"default": 7, "resnet18": 7}
    assert bench_model._per_workload("default=5", ["default", "resnet18"]) == {"default": 5, "resnet18": 0}


def test_relu_bench_rows(tmp_path):
    out = tmp_path / "relu.json"
    args = _args(bench_relu, ["--sizes", "64", "--kinds", "exact,identity", "--repeats", "1",
                              "--crypten", "off", "--json", str(out)])
    assert bench_relu.run(args) == 0
    doc = json.loads(out.read_text())
    assert out.with_suffix(".md").is_file()
    assert {"benchmark", "command", "machine", "notes", "rows", "load"} <= set(doc)
    rows = doc["rows"]
    _check_schema(rows, bench_relu.ROW_FIELDS)
    by = {r["policy"]: r for r in rows}
    assert set(by) == {"exact", "identity"}
    ex = by["exact"]
    # Open x̂ and return y0: 16 bytes per element plus frame headers.
    assert 16 <= ex["online_bytes_per_relu"] < 16 + 100 / 64
    assert ex["rounds"] == 1 and ex["max_abs_err"] < 1e-3 and ex["err_frac"] == 0
    # Offline, net of the identity probe: both parties' ReLU keys, plus per element the server's
    # r1 material and the client's c + r0 opening (8 B each), plus under 1 KB of batch and frame
    # headers. Without the baseline subtracted, the probe's own ≈ 2.3 KB would push it above.
    import pi_native
    keys = 2 * 64 * pi_native.key_bytes_per_element("relu", shift=12)
    assert 0 <= ex["offline_bytes"] - keys - 16 * 64 < 1024
    # A second identity probe (measured, not copied) costs nothing over the first.
    assert by["identity"]["offline_bytes"] == 0 and by["identity"]["online_bytes"] == 0
    assert any("CrypTen baseline not run: disabled" in n for n in doc["notes"])


def test_model_bench_rows(tmp_path, monkeypatch):
    # Pretend CrypTen is missing: the benchmark must still run and say why the baseline is absent.
    monkeypatch.setattr(cb, "crypten_available", lambda: (False, "crypten is not installed (test)"))
    out = tmp_path / "model.json"
    args = _args(bench_model, ["--workloads", "default", "--images", "samples", "--batches", "1", "--repeats", "1",
                               "--eval-images", "2", "--eval-batch", "2", "--policies", "exact", "--per-layer",
                               "--json", str(out)])
    assert bench_model.run(args) == 0
    doc = json.loads(out.read_text())
    _check_schema(doc["rows"], bench_model.ROW_FIELDS)
    (row,) = doc["rows"]
    # --per-layer: every byte of both phases is in some layer's row (or the dealer material's),
    # the activation layers carry the online ReLU traffic, and the .md shows both phases.
    prof = row["per_layer"]
    for phase in ("online", "offline"):
        assert sum(p["bytes"] for p in prof if p["phase"] == phase) == row[f"{phase}_bytes"]
    assert [p["bytes"] for p in prof if p["layer"] == "(dealer material)"] == [row["material_bytes"]]
    relu = [p for p in prof if p["phase"] == "online" and p["ops"] == "relu"]
    assert len(relu) == 7 and all(p["bytes"] > 0 and p["seconds"] > 0 and p["rounds"] >= 1 for p in relu)
    md = out.with_suffix(".md").read_text()
    assert "Per-layer online cost, default / exact / dealer" in md and "Per-layer offline cost" in md
    assert (row["system"], row["workload"], row["batch"], row["policy"]) == ("pi", "default", 1, "exact")
    assert row["agreement"] == 1.0 and row["eval_images"] == 2 and row["max_abs_err"] < 0.1
    assert row["offline_bytes"] > row["material_bytes"] > row["online_bytes"] > 0
    assert row["rounds"] >= 2 and row["repeats"] == 1
    # The calibrated ring by default, recorded per row; peak memory of every process.
    assert row["ring_bits"] < 64 and any("ring width calibrated" in n for n in doc["notes"])
    assert set(row["peak_rss_bytes"]) == {"client", "server", "dealer"}
    assert all(v > 10 * 2**20 for v in row["peak_rss_bytes"].values())
    assert any("CrypTen baseline not run: crypten is not installed (test)" in n for n in doc["notes"])
    assert doc["comparisons"] == []
    # Only the agreement target exists without CrypTen; 2 images are too few to judge it, so
    # it is neither met nor missed (it printed "[MISSED] ... 100%" before).
    assert [(t["value"], t["ok"]) for t in doc["targets"]] == [(1.0, None)]
    text = bench_model.report_text(doc["rows"], [], doc["targets"], [])
    assert "MISSED" not in text and "[not judged] argmax agreement 100% on ≥ 1000 test images (this run: 2)" in text
    assert "(this run: 2): 100.0 %" in text         # the agreement as a percentage, not the fraction 1


def test_target_values_are_shown_in_the_unit_their_target_states():
    """Result files keep raw values (fractions, seconds); every display (pi bench model, the
    report) shows them in the target's unit: it printed "argmax agreement ≥ 100% ... (measured 1)"
    and "online ≤ 100 ms (measured 0.02179)"."""
    from pi.bench.results import target_value_text
    doc = json.loads((Path(__file__).resolve().parents[2] / "benchmarks" / "results" /
                      "bench_model_two_party_quiet.json").read_text())
    key = lambda t: t["target"].split(": ", 1)[1].split(" (")[0]
    shown = {key(t): target_value_text(t) for t in doc["targets"]}
    raw = {key(t): t["value"] for t in doc["targets"]}
    assert shown["argmax agreement ≥ 100% on ≥ 1000 images"] == "100.0 %" and \
        raw["argmax agreement ≥ 100% on ≥ 1000 images"] == 1, shown
    assert shown["online ≤ 100 ms"] == f"{1000 * raw['online ≤ 100 ms']:.1f} ms" and raw["online ≤ 100 ms"] < 1, shown
    assert shown["≤ 300 online bytes per ReLU"] == f"{raw['≤ 300 online bytes per ReLU']:.0f} B", shown
    assert re.fullmatch(r"\d+\.\d\dx", shown["client storage ≥ 4.7x smaller"]), shown
    for t, want in (({"target": "online bytes ≤ 1/20 of CrypTen", "value": 0.025}, "1/40"),
                    ({"target": "circa-k20: accuracy within 0.5 points of all-exact (drop +0.30 points)",
                      "value": 0.3}, "+0.30 points"),
                    ({"target": "circa-k20: accuracy within 0.5 points", "value": None}, "-")):
        assert target_value_text(t) == want


def test_result_files_record_the_pi_command_for_python_m_pi(monkeypatch):
    """`python -m pi bench ...` recorded `__main__.py bench ...` as its command."""
    from pi.bench.results import command_line
    monkeypatch.setattr(sys, "argv", ["/repo/pi/__main__.py", "bench", "relu", "--json", "x.json"])
    assert command_line() == "pi bench relu --json x.json"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/pi", "bench", "gemm"])
    assert command_line() == "pi bench gemm"


def test_model_bench_rows_for_both_providers(tmp_path, monkeypatch):
    """--provider dealer,two-party: a row per provider, each with its provider and the client's
    stored bytes; the two-party row has no dealer process and reports its one-time setup."""
    from protocols.providers import PROVIDERS
    if "two-party" not in PROVIDERS:
        pytest.skip("the two-party provider is not in this build")
    monkeypatch.setattr(cb, "crypten_available", lambda: (False, "crypten is not installed (test)"))
    out = tmp_path / "model.json"
    args = _args(bench_model, ["--workloads", "default", "--images", "samples", "--batches", "1", "--repeats", "1",
                               "--eval-images", "2", "--eval-batch", "2", "--policies", "exact",
                               "--provider", "dealer,two-party", "--json", str(out)])
    assert bench_model.run(args) == 0
    doc = json.loads(out.read_text())
    _check_schema(doc["rows"], bench_model.ROW_FIELDS)
    dealer, two = doc["rows"]
    assert (dealer["provider"], two["provider"]) == ("dealer", "two-party")
    assert 0 < dealer["stored_bytes"] < dealer["material_bytes"]        # the client's half
    assert two["stored_bytes"] > 0 and two["material_bytes"] == 0 and two["agreement"] == 1.0
    assert set(two["peak_rss_bytes"]) == {"client", "server"} and two["setup_bytes"] > 0 and dealer["setup_bytes"] is None
    assert 0 < two["relu_online_bytes"] < two["online_bytes"] and two["activation_sites_per_image"] == 14592
    assert any("pi two-party: server" in n for n in doc["notes"])
    assert "two-party" in bench_model.report_text(doc["rows"], [], doc["targets"], [])


def test_two_party_targets_judge_circa_against_exact():
    base = {"system": "pi", "provider": "two-party", "workload": "default", "batch": 1, "activation_sites_per_image": 1000,
            "eval_images": 1000}
    rows = [{**base, "policy": "exact", "stored_bytes": 5_000_000, "relu_online_s": 0.30, "online_s": 0.4,
             "relu_online_bytes": 400_000, "rounds": 9, "agreement": 1.0},
            {**base, "policy": "circa-k22", "stored_bytes": 900_000, "relu_online_s": 0.09, "online_s": 0.09,
             "relu_online_bytes": 250_000, "rounds": 9, "agreement": 0.995},
            {"system": "crypten", "provider": "crypten-tfp", "workload": "default", "batch": 1, "policy": "exact",
             "rounds": 40}]
    got = {t["target"].split(": ", 1)[1].split(" (")[0]: t["ok"] for t in bench_model.two_party_targets(rows)}
    assert all(got.values()) and len(got) == 8, got
    rows[1].update(stored_bytes=1_100_000, relu_online_s=0.2, online_s=0.2, relu_online_bytes=350_000, rounds=14,
                   agreement=0.98)
    got = {t["target"].split(": ", 1)[1].split(" (")[0]: t["ok"] for t in bench_model.two_party_targets(rows)}
    assert not any(v for k, v in got.items() if not k.startswith("argmax agreement ≥ 100%")), got
    rows[0]["eval_images"] = rows[1]["eval_images"] = 64          # too few images: not judged
    assert [t["ok"] for t in bench_model.two_party_targets(rows) if "agreement" in t["target"]] == [None, None]


def test_comparisons_and_targets():
    base = {"workload": "default", "batch": 1, "lan_online_s": 1.0, "wan_online_s": 2.0}
    rows = [{**base, "system": "crypten", "policy": "exact", "online_bytes": 1000, "online_s": 1.0, "rounds": 30},
            {**base, "system": "pi", "policy": "exact", "online_bytes": 40, "online_s": 0.1, "rounds": 9,
             "offline_bytes": 300, "accuracy": 0.9, "agreement": 1.0, "eval_images": 1000},
            {**base, "system": "pi", "policy": "circa-k20", "online_bytes": 45, "online_s": 0.1, "rounds": 16,
             "offline_bytes": 100, "accuracy": 0.897, "agreement": 0.99, "eval_images": 1000}]
    comps = bench_model.comparisons(rows)
    assert [c["policy"] for c in comps] == ["exact", "circa-k20"]
    assert math.isclose(comps[0]["online_bytes_ratio"], 0.04) and math.isclose(comps[0]["rounds_ratio"], 0.3)
    tgts = bench_model.targets(rows, comps)
    assert len(tgts) == 6 and all(t["ok"] for t in tgts), tgts
    rows[2]["accuracy"] = 0.89            # 1 point below all-exact
    assert [t["ok"] for t in bench_model.targets(rows, comps)] == [True, True, True, True, False, True]


def test_graph_steps_fold_batchnorm_like_the_compiler():
    """The CrypTen model is built from the same fx graph and the same BatchNorm folding."""
    import pi
    from pi.assets import load_default_model, load_samples
    model, _ = load_default_model()
    x = load_samples().inputs[:1]
    steps, layers, output = cb.graph_steps(model, x)
    kinds = [layers[s[2]][0] for s in steps if s[1] == "layer"]
    assert kinds.count("relu") == 7 and "conv" in kinds and kinds[-1] == "linear"
    assert not any("bn" in name for name, kind, *_ in steps if kind == "layer")
    compiled = pi.compile(model, x)
    w, b = layers["stem_0"][1]["weight"], layers["stem_0"][1]["bias"]
    assert np.array_equal(compiled.fixed_point.encode(w), compiled.weights.weights["stem.0"])
    # The folding itself, against torch (not against the same helper): BatchNorm(Conv(z)) in
    # eval mode equals one convolution with the folded weight and bias.
    stem = copy.deepcopy(model.stem).double().eval()
    z = torch.randn(4, *x.shape[1:], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        want = stem(z)
    got = torch.nn.functional.conv2d(z, torch.from_numpy(w), torch.from_numpy(b), stem[0].stride, stem[0].padding)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    # Plaintext replay of the steps with the folded weights gives the model's logits.
    env = {}
    for out, kind, layer, args in steps:
        if kind == "input":
            env[out] = x.double()
        elif kind == "layer":
            k, p = layers[layer]
            v = env[args[0]]
            if k == "conv":
                env[out] = torch.nn.functional.conv2d(v, torch.from_numpy(p["weight"]), torch.from_numpy(p["bias"]),
                                                      p["stride"], p["padding"])
            elif k == "linear":
                env[out] = v @ torch.from_numpy(p["weight"]).T + torch.from_numpy(p["bias"])
            elif k == "relu":
                env[out] = torch.relu(v)
            elif k == "avgpool":
                env[out] = torch.nn.functional.avg_pool2d(v, p["kernel"], p["stride"], p["padding"])
        elif kind == "add":
            env[out] = env[args[0]] + env[args[1]]
        elif kind == "flatten":
            env[out] = env[args[0]].flatten(1)
        else:
            env[out] = env[args[0]]
    with torch.no_grad():
        ref = model(x).double()
    assert torch.allclose(env[output], ref, atol=1e-3)


def test_crypten_missing_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    ok, why = cb.crypten_available()
    assert not ok and "benchmarks/setup_crypten.sh" in why


@needs_crypten
def test_crypten_relu_costs():
    res = cb.relu_costs([1000], repeats=1)[1000]
    # CrypTen's ReLU (its published cost, our reference point): 464 bytes per element, 9 rounds.
    assert res["online_bytes"] == 464 * 1000 and res["rounds"] == 9
    assert res["max_abs_err"] < 1e-3


@needs_crypten
def test_crypten_model_matches_plaintext():
    from pi.assets import load_default_model, load_samples
    model, _ = load_default_model()
    s = load_samples()
    res = cb.model_costs(model, s.inputs[:2].numpy(), batches=[1], repeats=1, eval_images=2, eval_batch=2)
    with torch.no_grad():
        plain = model(s.inputs[:2]).double().numpy()
    assert res["logits"].shape == plain.shape
    assert np.abs(res["logits"] - plain).max() < 0.05
    t = res["timing"][1]
    assert t["online_bytes"] > 1e6 and t["rounds"] > 20 and t["repeats"] == 1


def test_budget_policy_from_a_run_directory_uses_the_runs_own_weights(tmp_path, monkeypatch):
    """`--policy DIR` with a relu-budget run: the row runs the run's fine-tuned model (not the
    workload's weights) under its policy, and agrees with that model in plaintext."""
    from pi.assets import load_default_model
    from relu_budget import models, policy, runs
    from relu_budget.train import save_checkpoint
    model, _ = load_default_model()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.05)                                  # "fine-tuned": differs from the workload
    row0 = models.count_relu_sites(model, (1, 28, 28))[0]
    kinds = (torch.arange(row0["sites"]) % 2).reshape(row0["shape"])     # every other site linearized
    dict(models.relu_sites(model))[row0["name"]].set_kinds(kinds)
    run = tmp_path / "snl-run"
    run.mkdir()
    save_checkpoint(run / "model.pt", model, {"method": "snl"})
    policy.save_policy(policy.from_model(model, (1, 28, 28)), run / "policy")
    (run / "metrics.json").write_text(json.dumps({"format": runs.RUN_FORMAT}))
    _, net = runs.load_run_or_policy(str(run))
    assert net is not None
    for a, b in zip(net.parameters(), model.parameters()):
        assert torch.equal(a, b)

    monkeypatch.setattr(cb, "crypten_available", lambda: (False, "crypten is not installed (test)"))
    out = tmp_path / "model.json"
    args = _args(bench_model, ["--workloads", "default", "--images", "samples", "--batches", "1", "--repeats", "1",
                               "--eval-images", "4", "--eval-batch", "2", "--policies", "", "--policy", str(run),
                               "--json", str(out)])
    assert bench_model.run(args) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["policy"] == "budget:snl-run"
    assert row["agreement"] == 1.0 and row["max_abs_err"] < 0.1
    # The same resnet-small run given to the resnet18 workload ran, labelled resnet18; refused now.
    args = _args(bench_model, ["--workloads", "resnet18", "--images", "samples", "--batches", "1", "--repeats", "1",
                               "--eval-images", "4", "--policies", "", "--policy", f"resnet18={run}",
                               "--json", str(out)])
    with pytest.raises(ValueError, match=r"that run's network differs from the resnet18 workload's \(widths="):
        bench_model.run(args)


def test_circa_by_bounds_sets_k_per_layer_from_the_calibrated_value_bits():
    """--circa-m M: every activation all-Circa, k = its layer's calibrated value bits − M, so the
    sign test reads M bits of each layer's own range (the compiled plan carries those k)."""
    import pi
    from pi.assets import load_default_model, load_samples
    from protocols.plan import CIRCA, Activation
    model, _ = load_default_model()
    cal = load_samples().inputs
    exact = pi.compile(model.eval(), cal[:1], calibration=cal)
    policy = bench_model.circa_by_bounds(model, cal[:1], 15, "calibrated", cal)
    secure = pi.compile(model, cal[:1], policy=policy, calibration=cal)
    bits = {op.name: op.value_bits for op in exact.plan.ops if isinstance(op, Activation)}
    acts = [op for op in secure.plan.ops if isinstance(op, Activation)]
    assert len(acts) == len(bits) == 7
    for op in acts:
        assert op.circa_k == bits[op.name] - 15 and op.circa_mode == "poszero" and (op.kinds == CIRCA).all()
    # the two-party targets judge the circa-m row, even after a circa-k row
    base = {"system": "pi", "provider": "two-party", "workload": "default", "batch": 1, "activation_sites_per_image": 10,
            "eval_images": 8, "stored_bytes": 100, "relu_online_s": 0.1, "online_s": 0.1, "relu_online_bytes": 10,
            "rounds": 8, "agreement": 1.0}
    rows = [{**base, "policy": "exact"}, {**base, "policy": "circa-k16"}, {**base, "policy": "circa-m15"}]
    named = [t["target"] for t in bench_model.two_party_targets(rows) if "vs exact" in t["target"]]
    assert named and all("circa-m15" in t for t in named)
