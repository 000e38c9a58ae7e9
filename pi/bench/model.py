"""`pi bench model`: end-to-end private inference, our system and CrypTen in the same run.

Over 500 lines on purpose: one row schema, and the workloads, providers, targets and the
result file that all read it, kept where a reader checks them against each other.

Our system runs as deployed (pi.bench.deployment: dealer and server processes, the client
here, TLS 1.3 on loopback, both parties' cost reports merged).

Costs per inference (see docs/bench.md for the row schema):
  online_bytes   all online traffic, both directions, frames with headers (not TLS records)
  offline_bytes  all offline traffic between the parties (masked weights, c + r0 openings)
                 plus the material the dealer sends to both parties (FSS keys, masks)
  rounds         online rounds (a flight and its answer; max over the parties)
  online_s       the client's wall time from encoding its input to decoding the output
  offline_s      the client's wall time from its request to the end of the offline phase:
                 dealer generation, both material downloads, masked weights, openings
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import pi
from pi.assets import load_default_model, load_samples
from pi.bench import crypten_baseline as cb
from pi.bench import profiles
from pi.bench.crypten_baseline import PROVIDER_NOTE as CT_PROVIDER_NOTE
from pi.bench.crypten_baseline import TRANSPORT_NOTE as CT_NOTE
from pi.bench.crypten_baseline import use_baseline
from pi.bench.deployment import Deployment, TwoPartyDeployment
from pi.bench.layer_profile import layer_profile, profile_markdown
from pi.bench.results import add_run_flags, format_table, markdown_table, target_value_text, versus_crypten, write_results
from protocols.transport.errors import TransportError
from relu_budget.data import load_fashion_mnist_raw, normalize_fashion
from protocols.fixed_point import DEFAULT_FRAC_BITS
from protocols.plan import Activation
from protocols.providers import get_provider
from relu_budget.models import CIRCA, IDENTITY, ResNet, ResNetConfig, relu_sites
from relu_budget.policy import LayerPolicy, ReluPolicy
from relu_budget.runs import load_run_or_policy
from relu_budget.train import load_checkpoint

NAME = "model"
HELP = "end-to-end private inference (embedded model, ResNet-18-style) vs CrypTen, same run"
WORKLOADS = ("default", "resnet18", "resnet18-full")
# resnet18-full: ResNet-18 at full width (64–512 channels, 3×3 stride-1 stem) on 32×32×3 inputs,
# 557 056 ReLUs per image; random weights and N(0, 1) inputs (a timing workload: no accuracy).
FULL_SEED = 0
RESNET18_CHECKPOINT = Path(__file__).resolve().parents[2] / "benchmarks" / "resnet18_fmnist.pt"
TRANSPORT_NOTE = ("pi: dealer, server and client in 3 processes, TLS 1.3 on loopback (pinned self-signed "
                  "P-256 certificates); bytes are frames incl. headers, not TLS records")
TWO_PARTY_NOTE = ("pi two-party: server (pi.serving, as `pi serve --provider two-party`) and client in 2 processes, "
                  "TLS 1.3 on loopback; stored_bytes = what the client keeps per inference between its offline and "
                  "online phase (dealer rows: its half of the dealer's material)")
# The documented row schema (docs/bench.md); tests check every row carries these keys.
ROW_FIELDS = ("system", "provider", "workload", "batch", "policy", "online_bytes", "offline_bytes", "material_bytes",
              "stored_bytes",
              "rounds", "offline_rounds", "online_s", "online_s_min", "online_s_max", "offline_s",
              "offline_s_min", "offline_s_max", "repeats", "max_abs_err", "agreement", "accuracy",
              "plain_accuracy", "eval_images", "eval_batch", "lan_online_s", "wan_online_s", "lan_offline_s",
              "wan_offline_s", "ring_bits", "peak_rss_bytes", "note")
COLUMNS = [("system", "system", "s"), ("provider", "provider", "s"), ("workload", "workload", "s"), ("batch", "batch", "d"),
           ("policy", "policy", "s"), ("ring_bits", "l", "d"), ("online_kb", "online KB", ".1f"), ("offline_mb", "offline MB", ".2f"),
           ("rounds", "rounds", "d"), ("online_ms", "online ms", ".1f"), ("online_range", "(min–max)", "s"),
           ("offline_ms", "offline ms", ".0f"), ("stored_kb", "stored KB", ".1f"), ("max_abs_err", "max|Δlogit|", ".4f"),
           ("agreement_pct", "agree %", ".2f"), ("accuracy_pct", "acc %", ".2f"), ("eval_images", "eval n", "d"),
           ("lan_online_ms", "LAN ms", ".1f"), ("wan_online_ms", "WAN ms", ".0f"),
           ("rss_mb", "peak RSS MiB c/s/d", "s")]


# --------------------------------------------------------------------------------------------
# Workloads, policies, data
# --------------------------------------------------------------------------------------------

def run_fits_workload(w: str, d: str, run_model, model) -> None:
    """A run directory given for workload w must be of w's network: its row is labelled w."""
    if run_model is None:               # a bare policy: applied to the workload's weights (it checks shapes)
        return
    ours, theirs = getattr(model, "config", None), getattr(run_model, "config", None)
    if type(run_model) is type(model) and ours == theirs:
        return
    diff = ", ".join(f"{k}={v}" for k, v in vars(theirs).items() if vars(ours).get(k) != v) \
        if type(run_model) is type(model) and theirs is not None else type(run_model).__name__
    raise ValueError(f"--policy {w}={d}: that run's network differs from the {w} workload's ({diff}); give it to "
                     "the workload of its network (default: the embedded resnet-small; resnet18: "
                     "benchmarks/resnet18_fmnist.pt, --arch resnet18 --model-set stem_stride=2)")


def load_workload(name: str, checkpoint: str | None = None) -> tuple[torch.nn.Module, dict]:
    if name == "default":
        model, meta = load_default_model()
        return model.eval(), {**meta, "source": "demos/assets/default_model.pt"}
    if name == "resnet18":
        path = Path(checkpoint) if checkpoint else RESNET18_CHECKPOINT
        if not path.is_file():
            raise FileNotFoundError(f"no ResNet-18 checkpoint at {path}: train one with "
                                    f"`python benchmarks/train_resnet18.py` or pass --resnet18-checkpoint")
        model, meta = load_checkpoint(path)
        try:      # result files name the checkpoint relative to the repository, never by a local path
            source = str(path.resolve().relative_to(RESNET18_CHECKPOINT.parents[1]))
        except ValueError:
            source = str(path)
        return model.eval(), {**meta, "source": source}
    if name == "resnet18-full":
        torch.manual_seed(FULL_SEED)
        model = ResNet(ResNetConfig(in_channels=3, num_classes=10))      # the defaults: ResNet-18 at full width
        return model.eval(), {"arch": "resnet18 (full width, 32×32×3)", "source": f"random weights (seed {FULL_SEED})",
                              "input_shape": (3, 32, 32)}
    raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")


def random_images(shape: tuple[int, ...], n: int, seed: int = FULL_SEED) -> tuple[torch.Tensor, None, str]:
    """N(0, 1) inputs for a random-weight workload (no labels)."""
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randn((n, *shape), generator=g), None, f"N(0, 1) random inputs (seed {seed + 1})"


def load_test_images(source: str, n: int) -> tuple[torch.Tensor, np.ndarray, str]:
    """The first n test images (normalized) and labels: Fashion-MNIST's test set, or the 32
    embedded samples (`samples`, for quick runs and tests)."""
    if source == "samples":
        s = load_samples()
        return s.inputs[:n], s.labels[:n], f"embedded samples ({min(n, len(s.labels))} of 32)"
    if source == "fashion-mnist":
        raw = load_fashion_mnist_raw()
        return (normalize_fashion(raw["test_images"][:n]), raw["test_labels"][:n].astype(np.int64),
                "Fashion-MNIST test set (first images)")
    raise ValueError(f"unknown image source {source!r}; use fashion-mnist or samples")


def reference_model(model: torch.nn.Module, policy_name: str, policy_obj=None) -> torch.nn.Module:
    """The plaintext network the secure one approximates: the policy applied to a copy
    (identity sites → identity; Circa sites are exact ReLU in plaintext)."""
    ref = copy.deepcopy(model).eval()
    if policy_name == "identity":
        for _, site in relu_sites(ref):
            site.set_kinds(IDENTITY)
    elif policy_obj is not None:
        policy_obj.apply(ref)
    return ref


def load_calibration(source: str, n: int = 256) -> tuple[torch.Tensor, str]:
    """Inputs that bound the activations for the calibrated ring width: Fashion-MNIST training
    images (never the test images the rows are measured on), or the embedded samples."""
    if source == "samples":
        return load_samples().inputs, "the 32 embedded samples"
    return normalize_fashion(load_fashion_mnist_raw()["train_images"][:n]), f"the first {n} Fashion-MNIST training images"


def compile_policy(model, example, policy: str, circa_k: int | None, policy_obj=None, ring_bits="calibrated",
                   calibration: torch.Tensor | None = None, provider: str = "dealer", frac_bits: int | None = None,
                   max_ring_bits: int | None = None):
    """pi.compile for one bench policy and provider; ring_bits "calibrated" (the narrowest ring
    the calibration inputs allow, at most max_ring_bits) or an int (64: the uncalibrated full ring)."""
    ring = {"ring_bits": ring_bits, "provider": provider, "frac_bits": frac_bits}
    if ring_bits == "calibrated":
        ring["calibration"] = calibration
        if max_ring_bits is not None:
            ring["max_ring_bits"] = min(max_ring_bits, get_provider(provider).max_ring_bits)
    if policy_obj is not None:
        return pi.compile(model, example, policy=policy_obj, **ring)
    if policy == "exact":
        return pi.compile(model, example, relu="exact", **ring)
    if policy == "identity":
        return pi.compile(model, example, relu="identity", **ring)
    if policy.startswith("circa"):
        return pi.compile(model, example, relu="circa", circa_k=circa_k, circa_mode="poszero", **ring)
    raise ValueError(f"unknown policy {policy!r}")


def circa_by_bounds(model, example, m: int, ring_bits="calibrated", calibration: torch.Tensor | None = None,
                    provider: str = "dealer", frac_bits: int | None = None) -> ReluPolicy:
    """All-Circa with k per layer from the calibrated bounds: k = the layer's value bits − m,
    so every layer's sign test reads the top m bits of its own range, and faults only below
    2^(1 − m) of its bound (2^(−m − 5) of the largest value calibration saw: the bound has a 64x
    margin). Agreement follows m, not the layers' scales; a uniform k would fault far more
    often in a layer whose values are small (docs/bench.md)."""
    exact = compile_policy(model, example, "exact", None, None, ring_bits, calibration, provider, frac_bits)
    layers = {}
    for op in exact.plan.ops:
        if isinstance(op, Activation):
            shape = tuple(exact.plan.tensor(op.inputs[0]).shape)
            layers[op.name] = LayerPolicy(op.name, shape, np.full(shape, CIRCA, np.int8),
                                          max(1, op.value_bits - m), "poszero")
    return ReluPolicy(layers, {"circa": f"k = value_bits - {m} per layer"})


def ring_bits_arg(s: str):
    """--ring-bits: 'calibrated' or an integer width."""
    if s == "calibrated":
        return s
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ring-bits takes 'calibrated' or an integer (64: full ring), got {s!r}")


def wait_for_quiet(max_load: float, max_wait_s: float) -> dict:
    """Waits (up to max_wait_s) until the 1-minute load average is below max_load, since the
    machine is shared; returns what was seen, for the result file."""
    t0 = time.monotonic()
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() - t0 < max_wait_s:
        print(f"load average {load:.2f} ≥ {max_load}: waiting for a quieter machine "
              f"({time.monotonic() - t0:.0f}/{max_wait_s:.0f} s)", flush=True)
        time.sleep(30)
        load = os.getloadavg()[0]
    return {"load_1min_at_start": round(load, 2), "waited_s": round(time.monotonic() - t0),
            "quiet": load < max_load}


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _eval_fields(logits: np.ndarray, plain: np.ndarray, labels: np.ndarray | None) -> dict:
    n = len(logits)
    scored = n and labels is not None
    return {"max_abs_err": float(np.abs(logits - plain[:n]).max()) if n else None,
            "agreement": float((logits.argmax(1) == plain[:n].argmax(1)).mean()) if n else None,
            "accuracy": float((logits.argmax(1) == labels[:n]).mean()) if scored else None,
            "plain_accuracy": float((plain[:n].argmax(1) == labels[:n]).mean()) if scored else None,
            "eval_images": n}


PROVIDER_NOTES = {
    "dealer": "dealer provider (secure if the dealer colludes with neither party)",
    "two-party": "two-party provider: client and server alone (HE linear layers, garbled-circuit gates, OT); "
                 "offline per inference, the connection's one-time setup not included (setup_bytes, setup_s)",
}


def _activation_sites(secure) -> int:
    """ReLU sites of the activation layers per image (exact + Circa + polynomial), max-pool
    comparisons not included: the denominator of the per-ReLU figures."""
    return sum(r["relu"] + r["circa"] + r["poly"] for r in secure.layer_rows() if r["op"] == "Activation")


def _relu_online(cost: dict) -> tuple[float, int]:
    """(seconds, bytes) of the online phase spent in activation layers (op classes relu,
    circa, poly of the merged per-layer rows: seconds the max over parties, bytes both ways)."""
    rows = [r for r in cost.get("per_layer", []) if r["phase"] == "online" and r["op"] in ("relu", "circa", "poly")]
    return sum(r["seconds"] for r in rows), sum(r["bytes_sent"] for r in rows)


def run_ours(workload: str, policy: str, secure, images: torch.Tensor, labels: np.ndarray, plain: np.ndarray,
             batches: list[int], repeats: int, eval_images: int, eval_batch: int, threads: int,
             progress: bool = True, dealer_threads: int | None = None, policy_dir: str | None = None,
             provider: str = "dealer", per_layer: bool = False) -> list[dict]:
    """Rows of our system for one (workload, policy, provider): one per batch size; with
    per_layer, each row carries its per-layer profile (pi.bench.layer_profile)."""
    rows = []
    n_relu = sum(r["relu"] + r["circa"] + r["poly"] for r in secure.layer_rows() if r["op"] in ("Activation", "MaxPool"))
    peaks = {}
    dep = TwoPartyDeployment(secure, threads=threads) if provider == "two-party" else \
        Deployment(secure, threads=threads, dealer_threads=dealer_threads)
    with dep:
        dep.infer(images[:1])                                     # warm-up: imports, first TLS connections
        timing = {}
        for b in batches:
            runs = []
            dep.reset_peak_memory()
            for i in range(repeats):
                start = (i * b) % max(1, len(images) - b + 1)
                _, c = dep.infer(images[start:start + b])
                runs.append(c)
            timing[b] = runs
            peaks[b] = dep.peak_memory()
        logits = []
        t0 = time.perf_counter()
        for s in range(0, eval_images, eval_batch):
            y, _ = dep.infer(images[s:min(s + eval_batch, eval_images)])
            logits.append(np.asarray(y))
            if progress and len(logits) % 25 == 0:
                print(f"  … {workload}/{policy}/{provider}: {s + eval_batch}/{eval_images} images "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
        logits = np.concatenate(logits) if logits else np.zeros((0, plain.shape[1]))
        setup = {"setup_bytes": getattr(dep, "setup_bytes", None), "setup_s": getattr(dep, "setup_s", None)}
    ev = _eval_fields(logits, plain, labels)
    for b, runs in timing.items():
        on, on_min, on_max = _stats([c["online_s"] for c in runs])
        off, off_min, off_max = _stats([c["offline_s"] for c in runs])
        relu = [_relu_online(c) for c in runs]
        row = {"system": "pi", "provider": provider, "workload": workload, "batch": b, "policy": policy,
               "online_bytes": int(statistics.median(c["online_bytes"] for c in runs)),
               "offline_bytes": int(statistics.median(c["offline_bytes"] for c in runs)),
               "material_bytes": int(statistics.median(c["material_bytes"] for c in runs)),
               "stored_bytes": int(statistics.median(c["stored_bytes"] for c in runs)),
               "rounds": int(statistics.median(c["rounds"] for c in runs)),
               "offline_rounds": int(statistics.median(c["offline_rounds"] for c in runs)),
               "online_s": on, "online_s_min": on_min, "online_s_max": on_max,
               "offline_s": off, "offline_s_min": off_min, "offline_s_max": off_max,
               "relu_online_s": statistics.median(t for t, _ in relu),
               "relu_online_bytes": int(statistics.median(n for _, n in relu)),
               "activation_sites_per_image": _activation_sites(secure),
               "repeats": repeats, "gate_relus_per_image": n_relu, "ring_bits": secure.plan.ring_bits,
               "peak_rss_bytes": peaks[b], "policy_dir": policy_dir, **setup,
               **ev, "eval_batch": eval_batch, "note": PROVIDER_NOTES[provider]}
        if per_layer:
            row["per_layer"] = layer_profile(runs, b)
        rows.append(profiles.add_estimates(row, "pi"))
    return rows


def run_crypten(workload: str, model, images: torch.Tensor, labels: np.ndarray, plain: np.ndarray,
                batches: list[int], repeats: int, eval_images: int, eval_batch: int, threads: int) -> list[dict]:
    res = cb.model_costs(model, images.numpy(), batches, repeats, eval_images, eval_batch, threads)
    logits = res["logits"] if res["logits"] is not None else np.zeros((0, plain.shape[1]))
    ev = _eval_fields(logits, plain, labels)
    rows = []
    for b in batches:
        t = res["timing"][b]
        row = {"system": "crypten", "provider": "crypten-tfp", "workload": workload, "batch": b, "policy": "exact",
               "online_bytes": int(t["online_bytes"]), "offline_bytes": None, "material_bytes": None,
               "stored_bytes": None,
               "rounds": t["rounds"], "offline_rounds": None,
               "online_s": t["online_s"], "online_s_min": t["online_s_min"], "online_s_max": t["online_s_max"],
               "offline_s": None, "offline_s_min": None, "offline_s_max": None, "repeats": t["repeats"],
               **ev, "eval_batch": eval_batch, "ring_bits": 64, "peak_rss_bytes": None, "note": cb.PROVIDER_NOTE}
        rows.append(profiles.add_estimates(row, "crypten"))
    return rows


def _display(row: dict) -> dict:
    d = dict(row)
    d["online_kb"] = row["online_bytes"] / 1e3
    d["offline_mb"] = None if row.get("offline_bytes") is None else row["offline_bytes"] / 1e6
    d["online_ms"] = row["online_s"] * 1e3
    d["online_range"] = f"{row['online_s_min'] * 1e3:.1f}–{row['online_s_max'] * 1e3:.1f}"
    d["offline_ms"] = None if row.get("offline_s") is None else row["offline_s"] * 1e3
    d["stored_kb"] = None if row.get("stored_bytes") is None else row["stored_bytes"] / 1e3
    d["agreement_pct"] = None if row.get("agreement") is None else 100 * row["agreement"]
    d["accuracy_pct"] = None if row.get("accuracy") is None else 100 * row["accuracy"]
    d["lan_online_ms"] = None if row.get("lan_online_s") is None else row["lan_online_s"] * 1e3
    d["wan_online_ms"] = None if row.get("wan_online_s") is None else row["wan_online_s"] * 1e3
    rss = row.get("peak_rss_bytes")
    # "-": no such process (two-party has no dealer); "?": /proc did not say
    d["rss_mb"] = "/".join("-" if p not in rss else "?" if rss[p] is None else f"{rss[p] / 2**20:.0f}"
                           for p in ("client", "server", "dealer")) \
        if rss else None
    return d


def comparisons(rows: list[dict]) -> list[dict]:
    """Ours (each policy) against CrypTen (all-exact) on the same workload and batch."""
    return versus_crypten(rows, ("workload", "batch"), {
        "online_bytes_ratio": "online_bytes", "online_s_ratio": "online_s", "rounds_ratio": "rounds",
        "lan_ratio": "lan_online_s", "wan_ratio": "wan_online_s"})


def targets(rows: list[dict], comps: list[dict]) -> list[dict]:
    """The project's performance targets on the embedded model (batch 1): measured value and verdict."""
    out = []
    dealer = lambda r: r.get("provider", "dealer") == "dealer"     # rows of older runs have no provider
    c = next((c for c in comps if c["workload"] == "default" and c["batch"] == 1 and c["policy"] == "exact"
              and dealer(c)), None)
    if c is not None:
        out += [{"target": "online bytes ≤ 1/20 of CrypTen", "value": c["online_bytes_ratio"],
                 "ok": c["online_bytes_ratio"] <= 1 / 20},
                {"target": "online time ≤ 1/5 of CrypTen", "value": c["online_s_ratio"], "ok": c["online_s_ratio"] <= 1 / 5},
                {"target": "rounds ≤ 1/3 of CrypTen", "value": c["rounds_ratio"], "ok": c["rounds_ratio"] <= 1 / 3}]
    ex = next((r for r in rows if r["system"] == "pi" and r["workload"] == "default" and r["batch"] == 1
               and r["policy"] == "exact" and dealer(r)), None)
    if ex is not None and ex.get("agreement") is not None:
        # Judged on 1000 images or more; on fewer the run says nothing about the target.
        out.append({"target": f"argmax agreement 100% on ≥ 1000 test images (this run: {ex['eval_images']})",
                    "value": ex["agreement"],
                    "ok": None if ex["eval_images"] < 1000 else ex["agreement"] == 1.0})
        for r in rows:
            if r["system"] == "pi" and r["workload"] == "default" and r["batch"] == 1 and r["policy"].startswith("circa") \
                    and dealer(r):
                drop = 100 * (ex["accuracy"] - r["accuracy"]) if r.get("accuracy") is not None else None
                ratio = ex["offline_bytes"] / r["offline_bytes"]
                out.append({"target": f"{r['policy']}: accuracy within 0.5 points of all-exact "
                                      f"(drop {drop:+.2f} points)", "value": drop,
                            "ok": drop is not None and drop <= 0.5})
                out.append({"target": f"{r['policy']}: preprocessing bytes ≥ 3x below all-exact", "value": ratio,
                            "ok": ratio >= 3.0})
    return out + two_party_targets(rows)


def two_party_targets(rows: list[dict]) -> list[dict]:
    """The two-party provider's targets (Circa's claims in its own setting), on the embedded
    model at batch 1, all-Circa (the first circa-m row, k per layer from the bounds, else the
    first circa-k row) against all-exact."""
    def row(system, provider, policy):
        return next((r for r in rows if r["system"] == system and r.get("provider") == provider
                     and r["workload"] == "default" and r["batch"] == 1 and policy(r["policy"])), None)
    ex = row("pi", "two-party", lambda p: p == "exact")
    ci = row("pi", "two-party", lambda p: p.startswith("circa-m")) or row("pi", "two-party", lambda p: p.startswith("circa"))
    ct = row("crypten", "crypten-tfp", lambda p: p == "exact")
    out = []
    if ex is not None and ci is not None:
        stored = ex["stored_bytes"] / ci["stored_bytes"]
        relu_t = ex["relu_online_s"] / ci["relu_online_s"] if ci["relu_online_s"] else float("inf")
        out += [{"target": f"two-party {ci['policy']} vs exact: client storage ≥ 4.7x smaller", "value": stored,
                 "ok": stored >= 4.7},
                {"target": f"two-party {ci['policy']} vs exact: online ReLU time ≥ 3x lower", "value": relu_t,
                 "ok": relu_t >= 3.0}]
    for r, need in ((ex, 1.0), (ci, 0.99)):
        if r is not None and r.get("agreement") is not None:
            out.append({"target": f"two-party {r['policy']}: argmax agreement ≥ {100 * need:g}% on ≥ 1000 images "
                                  f"(this run: {r['eval_images']})", "value": r["agreement"],
                        "ok": None if r["eval_images"] < 1000 else r["agreement"] >= need})
    if ci is not None:
        sites = ci["activation_sites_per_image"]
        per_relu = ci["relu_online_bytes"] / sites
        out += [{"target": f"two-party {ci['policy']}: online ≤ 100 ms", "value": ci["online_s"],
                 "ok": ci["online_s"] <= 0.1},
                {"target": f"two-party {ci['policy']}: ≤ 300 online bytes per ReLU (activation layers' online "
                           f"bytes / {sites} sites)", "value": per_relu, "ok": per_relu <= 300},
                {"target": f"two-party {ci['policy']}: client storage ≤ 1 KB per ReLU site (all it stores / "
                           f"{sites} sites)", "value": ci["stored_bytes"] / sites,
                 "ok": ci["stored_bytes"] / sites <= 1000}]
        if ct is not None:
            ratio = ci["rounds"] / ct["rounds"]
            out.append({"target": f"two-party {ci['policy']}: online rounds ≤ 1/3 of CrypTen's", "value": ratio,
                        "ok": ratio <= 1 / 3})
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _int_list(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def _per_workload(s: str, workloads: list[str]) -> dict[str, int]:
    """'1000' or 'default=1000,resnet18=200'."""
    if "=" not in s:
        return {w: int(s) for w in workloads}
    d = {}
    for part in s.split(","):
        k, v = part.split("=", 1)
        d[k.strip()] = int(v)
    return {w: d.get(w, 0) for w in workloads}


def configure(p) -> None:
    p.add_argument("--workloads", default="default,resnet18", help=f"comma-separated from {', '.join(WORKLOADS)}")
    p.add_argument("--batches", default="1,8", help="batch sizes, comma-separated")
    p.add_argument("--provider", default="dealer",
                   help="our providers, comma-separated: dealer, two-party (every policy runs with each)")
    p.add_argument("--policies", default="exact,circa",
                   help="exact, circa (one row per --circa-k), identity; comma-separated")
    p.add_argument("--circa-k", default="16", help="Circa: low bits dropped, comma-separated for several rows")
    p.add_argument("--circa-m", default="",
                   help="Circa with k per layer = its calibrated value bits − m (rows circa-mM), comma-separated")
    p.add_argument("--policy", action="append", default=[], metavar="[WORKLOAD=]DIR",
                   help="an optimized policy from relu-budget: a run directory (its own weights and policy) or a "
                        "policy directory (applied to the workload's weights); repeatable; default workload: default")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per batch size (median, min, max)")
    p.add_argument("--eval-images", default="1000",
                   help="test images for agreement/accuracy of our system: N or default=N,resnet18=M")
    p.add_argument("--eval-batch", type=int, default=8, help="batch size of the accuracy pass")
    p.add_argument("--two-party-eval-images", default=None,
                   help="test images through the two-party provider (default: --eval-images): N or per workload")
    p.add_argument("--crypten-eval-images", default="100", help="test images through CrypTen (slower): N or per workload")
    p.add_argument("--images", default="fashion-mnist", choices=["fashion-mnist", "samples"],
                   help="test images: Fashion-MNIST's test set, or the 32 embedded samples")
    p.add_argument("--resnet18-checkpoint", default=None, help=f"default: {RESNET18_CHECKPOINT}")
    p.add_argument("--crypten", default="auto", choices=["auto", "on", "off"],
                   help="CrypTen baseline: auto = when installed (benchmarks/setup_crypten.sh)")
    add_run_flags(p)
    p.add_argument("--dealer-threads", type=int, default=None,
                   help="the dealer process's kernel threads (default: all cores; it works while the parties wait)")
    p.add_argument("--per-layer", action="store_true",
                   help="profile each of our rows per layer and phase (seconds and bytes per image; result file and "
                        "its .md)")
    p.add_argument("--ring-bits", type=ring_bits_arg, default="calibrated",
                   help="our ring width: 'calibrated' (default: the narrowest ring that Fashion-MNIST training "
                        "images allow, see --images) or an integer, e.g. 64 for the uncalibrated full ring")
    p.add_argument("--max-ring-bits", type=int, default=None,
                   help="cap on the calibrated ring width (default: each provider's widest): a narrower ring sends "
                        "fewer bytes per element, and faithful truncations (a round each) stand in for the scale "
                        "that identity layers carry where it needs more (docs/engine.md)")
    p.add_argument("--frac-bits", type=int, default=None,
                   help=f"our fixed point's fractional bits (default {DEFAULT_FRAC_BITS}; fewer leave a scale carried "
                        "through identity layers room next to polynomial sites, docs/engine.md)")


def run(args) -> int:
    workloads = [w for w in args.workloads.split(",") if w]
    batches = _int_list(args.batches)
    eval_n = _per_workload(args.eval_images, workloads)
    tp_eval_n = _per_workload(args.two_party_eval_images or args.eval_images, workloads)
    ct_eval_n = _per_workload(args.crypten_eval_images, workloads)
    for spec, n in ((args.eval_images, eval_n), (args.crypten_eval_images, ct_eval_n),
                    (args.two_party_eval_images or args.eval_images, tp_eval_n)):
        if "resnet18-full" in n and "resnet18-full=" not in spec:
            n["resnet18-full"] = 0        # random weights and inputs: timing only, unless asked
    pols = [p for p in args.policies.split(",") if p]
    providers = [p for p in args.provider.split(",") if p]
    for prov in providers:
        if prov not in PROVIDER_NOTES:
            raise ValueError(f"--provider {prov!r}: choose from {', '.join(PROVIDER_NOTES)}")
    circa_ks, circa_ms = _int_list(args.circa_k), _int_list(args.circa_m)
    use_crypten, why_not = use_baseline(args.crypten)
    budget: dict[str, list[str]] = {}
    for spec in args.policy:
        w, d = spec.split("=", 1) if "=" in spec else ("default", spec)
        budget.setdefault(w, []).append(d)
    for w in set(budget) & set(workloads):      # before anything is measured: a run of another network
        model = load_workload(w, args.resnet18_checkpoint)[0]
        for d in budget[w]:
            run_fits_workload(w, d, load_run_or_policy(d)[1], model)

    load = wait_for_quiet(args.max_load, args.max_wait) if args.max_load else {"load_1min_at_start": os.getloadavg()[0]}
    rows, notes = [], [TRANSPORT_NOTE, (f"kernel threads per party process: {args.threads}; dealer: "
                                        f"{args.dealer_threads or os.cpu_count()}"),
                       f"1-minute load average at start: {load['load_1min_at_start']:.2f} (machine shared)"]
    if "two-party" in providers:
        notes.append(TWO_PARTY_NOTE)
    if use_crypten:
        notes += [CT_NOTE, CT_PROVIDER_NOTE, f"CrypTen fixed point: 16 fractional bits (its default); ours: {args.frac_bits or DEFAULT_FRAC_BITS}"]
    else:
        notes.append(f"CrypTen baseline not run: {why_not}")
    notes.append("network estimates: " + profiles.describe_all() + " (see pi/bench/profiles.py)")
    if args.frac_bits is not None:
        notes.append(f"our fixed point: {args.frac_bits} fractional bits (--frac-bits; default {DEFAULT_FRAC_BITS})")
    if args.max_ring_bits is not None:
        if args.ring_bits != "calibrated":
            raise ValueError("--max-ring-bits caps the calibrated ring width; drop --ring-bits")
        notes.append(f"calibrated ring widths capped at {args.max_ring_bits} bits (--max-ring-bits)")
    for w in workloads:
        model, meta = load_workload(w, args.resnet18_checkpoint)
        n_images = max(eval_n[w], tp_eval_n[w], ct_eval_n[w] if use_crypten else 0, max(batches) * args.repeats, 1)
        if w == "resnet18-full":
            images, labels, source = random_images(meta["input_shape"], n_images)
        else:
            images, labels, source = load_test_images(args.images, n_images)
        notes.append(f"{w}: {meta.get('arch')} from {meta['source']}; images: {source}")
        calibration = None
        if args.ring_bits == "calibrated":
            if w == "resnet18-full":
                calibration, _, cal_source = random_images(meta["input_shape"], 64, seed=FULL_SEED + 100)
            else:
                calibration, cal_source = load_calibration(args.images)
            notes.append(f"{w}: ring width calibrated on {cal_source} (each row's ring_bits)")
        example = images[:1]
        todo = []
        for p in pols:
            if p == "circa":
                todo += [(f"circa-k{k}", k, None, model, None) for k in circa_ks]
                todo += [(f"circa-m{m}", None, circa_by_bounds(model, example, m, args.ring_bits, calibration,
                                                                      frac_bits=args.frac_bits),
                          model, None) for m in circa_ms]
            else:
                todo.append((p, None, None, model, None))
        for d in budget.get(w, []):
            pobj, run_model = load_run_or_policy(d)
            todo.append((f"budget:{Path(d).name}", None, pobj, run_model or model, d))
            if run_model is not None:
                notes.append(f"{w} budget:{Path(d).name}: the run's own fine-tuned weights and policy from {d}")
        for name, k, pobj, net, pdir in todo:
            ref = reference_model(net, name, pobj)
            with torch.no_grad():
                plain = ref(images).double().numpy()
            for prov in providers:
                n_eval = eval_n[w] if prov == "dealer" else tp_eval_n[w]
                print(f"[pi {prov}] {w} / {name}: batches {batches}, {args.repeats} runs each, {n_eval} eval images",
                      flush=True)
                try:
                    secure = compile_policy(net, example, name, k, pobj, args.ring_bits, calibration, prov,
                                            args.frac_bits, args.max_ring_bits)
                    rows += run_ours(w, name, secure, images, labels, plain, batches, args.repeats, n_eval,
                                     args.eval_batch, args.threads, dealer_threads=args.dealer_threads, policy_dir=pdir,
                                     provider=prov, per_layer=args.per_layer)
                except (ValueError, RuntimeError, OSError, TransportError) as exc:   # a plan the provider cannot run
                    notes.append(f"{w} / {name} / {prov}: not measured: {type(exc).__name__}: {exc}")
                    print(f"  not measured: {exc}", flush=True)
        if use_crypten:
            with torch.no_grad():
                plain = model(images).double().numpy()
            print(f"[crypten] {w}: batches {batches}, {args.repeats} runs each, {ct_eval_n[w]} eval images", flush=True)
            rows += run_crypten(w, model, images, labels, plain, batches, args.repeats, ct_eval_n[w],
                                args.eval_batch, args.threads)
    comps = comparisons(rows)
    tgts = targets(rows, comps)
    text = report_text(rows, comps, tgts, notes)
    print(text)
    if args.json:
        write_results(args.json, "pi bench model: end-to-end private inference vs CrypTen", rows,
                      extra={"notes": notes, "profiles": [p.__dict__ for p in profiles.PROFILES],
                             "load": {**load, "load_1min_at_end": os.getloadavg()[0]},
                             "comparisons": comps, "targets": tgts},
                      markdown=report_markdown(rows, comps, tgts, notes))
        print(f"wrote {args.json}")
    return 0


def _comp_table(comps: list[dict], md: bool) -> str:
    cols = [("provider", "provider", "s"), ("workload", "workload", "s"), ("batch", "batch", "d"),
            ("policy", "pi policy", "s"), ("online_bytes_ratio", "online bytes ×", ".4f"), ("online_s_ratio", "online time ×", ".3f"),
            ("rounds_ratio", "rounds ×", ".3f"), ("lan_ratio", "LAN ×", ".3f"), ("wan_ratio", "WAN ×", ".3f")]
    return markdown_table(comps, cols) if md else format_table(comps, cols)


def report_text(rows, comps, tgts, notes) -> str:
    parts = [format_table([_display(r) for r in rows], COLUMNS)]
    if comps:
        parts += ["", "pi / CrypTen (same run, lower is better):", _comp_table(comps, False)]
    if tgts:
        parts += ["", "targets (embedded model, batch 1; two-party: its provider's rows):"]
        verdict = {True: "ok", False: "MISSED", None: "not judged"}
        parts += [f"  [{verdict[t['ok']]}] {t['target']}: {target_value_text(t)}" for t in tgts]
    parts += ["", *[f"- {n}" for n in notes]]
    return "\n".join(parts)


def report_markdown(rows, comps, tgts, notes) -> str:
    parts = [markdown_table([_display(r) for r in rows], COLUMNS)]
    if comps:
        parts += ["", "Ratios pi / CrypTen (same run, lower is better):", "", _comp_table(comps, True)]
    if tgts:
        parts += ["", "Targets (embedded model, batch 1; two-party: its provider's rows):", ""]
        verdict = {True: "✅", False: "❌ missed", None: "– not judged"}
        parts += [f"- {verdict[t['ok']]} {t['target']}: {target_value_text(t)}" for t in tgts]
    if any(r.get("per_layer") for r in rows):
        parts += ["", profile_markdown(rows)]
    parts += ["", "Notes:", "", *[f"- {n}" for n in notes]]
    return "\n".join(parts)
