"""`pi bench relu`: what one ReLU costs, per element, for every site kind and for CrypTen.

Our side runs the deployed engine on a probe network x ↦ ReLU(1·x): a 1×1 convolution with
weight 1 (so the activation's input carries 2f = 24 fractional bits, as after any private
linear layer) and one activation layer over a vector of n elements, whose sites are all
exact ReLU, all Circa (k, PosZero), all identity or all polynomial. The dealer and the
server are their own processes, the client is this one, links are TLS 1.3 on loopback
(pi.bench.deployment.Deployment). Per element, from the activation layer alone:

  online bytes   the layer's online frames, both directions (merged meters)
  rounds         the layer's online rounds (max over the parties)
  online µs      the server's wall time inside the layer (open x̂ … receive y0) / n
  offline bytes  offline traffic + dealer material (both parties) of the probe minus the same
                 of the identity probe: the layer's keys and masks and the client's c + r0
  offline µs     (offline wall time(kind) − offline wall time(identity)) / n: dealer key
                 generation, serialization, TLS transfer of the keys, the c + r0 message

CrypTen: `x.relu()` on a CrypTen-shared vector of n N(0, 1) values in two processes (see
pi.bench.crypten_baseline); time = the slower party between a barrier and the result.
"""
from __future__ import annotations

import os
import statistics

import numpy as np
import pi_native
import torch
from torch import nn

from pi.bench import crypten_baseline as cb
from pi.bench import profiles
from pi.bench.crypten_baseline import PROVIDER_NOTE, TRANSPORT_NOTE, use_baseline
from pi.bench.deployment import Deployment
from pi.bench.model import TRANSPORT_NOTE as PI_NOTE
from pi.bench.model import wait_for_quiet
from pi.bench.results import add_run_flags, format_table, markdown_table, versus_crypten, write_results
from pi.compiler import SitePolicy, compile_plan
from pi.secure_model import SecureModel
from protocols import gates
from protocols.fixed_point import DEFAULT_FRAC_BITS, FixedPoint
from protocols.plan import CIRCA, IDENTITY, POLY
from relu_budget.models import ReluSite

NAME = "relu"
HELP = "per-ReLU online/offline bytes, rounds and µs: exact, Circa, identity, polynomial, CrypTen"
POLY_COEFFS = (0.1995, 0.5, 0.1995)    # c0, c1, c2: least-squares ReLU fit under N(0, 1) inputs
DEFAULT_FRAME_LIMIT = 1 << 30          # protocols.transport.frame.DEFAULT_MAX_FRAME_SIZE
ROW_FIELDS = ("system", "workload", "policy", "n", "batch", "online_bytes", "offline_bytes", "rounds",
              "offline_rounds", "online_s", "online_s_min", "online_s_max", "offline_s", "repeats",
              "online_bytes_per_relu", "offline_bytes_per_relu", "online_us_per_relu", "offline_us_per_relu",
              "lan_online_us_per_relu", "wan_online_us_per_relu", "max_abs_err", "err_frac", "note")
COLUMNS = [("system", "system", "s"), ("policy", "kind", "s"), ("n", "n", "d"),
           ("online_bytes_per_relu", "online B/ReLU", ".2f"), ("offline_bytes_per_relu", "offline B/ReLU", ".1f"),
           ("rounds", "rounds", "d"), ("online_us_per_relu", "online µs/ReLU", ".3f"),
           ("online_us_range", "(min–max)", "s"), ("offline_us_per_relu", "offline µs/ReLU", ".3f"),
           ("max_abs_err", "max|err|", ".2e"), ("err_frac", "err frac", ".2e")]


class ReluProbe(nn.Module):
    """x ↦ act(1·x) over a (1, 1, n) input: the activation sees a private linear layer's
    output at scale 2f, like every ReLU of a network."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.scale.weight.fill_(1.0)
        self.act = ReluSite()

    def forward(self, x):
        return self.act(self.scale(x))


def probe_model(kind: str, n: int, circa_k: int | None = None):
    """A SecureModel of the probe with every site of the given kind."""
    def policy(name, shape):
        if kind == "exact":
            return SitePolicy()
        if kind == "identity":
            return SitePolicy(kinds=np.full(shape, IDENTITY, np.int8))
        if kind == "circa":
            return SitePolicy(kinds=np.full(shape, CIRCA, np.int8), circa_k=circa_k, circa_mode="poszero")
        if kind == "poly":
            return SitePolicy(kinds=np.full(shape, POLY, np.int8), poly=np.array([POLY_COEFFS]))
        raise ValueError(f"unknown site kind {kind!r}")
    plan, weights = compile_plan(ReluProbe(), torch.zeros(1, 1, 1, n), site_policy=policy,
                                 fixed_point=FixedPoint(DEFAULT_FRAC_BITS))
    return SecureModel(plan, weights)


def reference(kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "identity":
        return x
    if kind == "poly":
        c0, c1, c2 = POLY_COEFFS
        return c0 + c1 * x + c2 * x * x
    return np.maximum(x, 0)


def _predicted_material(kind: str, n: int, circa_k: int | None) -> int:
    """Bytes of dealer material per party (upper estimate), to pick the frame limit."""
    if kind == "exact":
        per = pi_native.key_bytes_per_element("relu", shift=12)
    elif kind == "circa":
        per = pi_native.key_bytes_per_element("circa", k=circa_k, mode="poszero", shift=12)
    elif kind == "poly":
        per = gates.key_bytes(gates.GateSpec("poly", shift=12, out_shift=2 * DEFAULT_FRAC_BITS))
    else:
        per = 0
    return n * (per + 24) + (1 << 20)


def _layer(rows: list[dict], layer: str, phase: str) -> list[dict]:
    return [r for r in rows if r["layer"] == layer and r["phase"] == phase]


def measure_ours(kind: str, n: int, repeats: int, threads: int, circa_k: int | None = None,
                 seed: int = 0) -> dict:
    """Runs the probe `repeats` times (+1 warm-up) over TLS; per-run layer costs and the
    output error against the plaintext function."""
    secure = probe_model(kind, n, circa_k)
    x = np.random.default_rng(seed + n).standard_normal((1, 1, 1, n))
    limit = None
    big = _predicted_material(kind, n, circa_k) > DEFAULT_FRAME_LIMIT - (1 << 24)
    if big:
        limit = 1 << 40
    runs = []
    with Deployment(secure, threads=threads, max_frame_size=limit) as dep:
        y, _ = dep.infer(x)                                   # warm-up
        for _ in range(repeats):
            y, c = dep.infer(x)
            on = _layer(c["per_layer"], "act", "online")
            srv = _layer(c["server_rows"], "act", "online")
            runs.append({"online_bytes": sum(r["bytes_sent"] for r in on), "rounds": sum(r["rounds"] for r in on),
                         "online_s": sum(r["seconds"] for r in srv),
                         "offline_bytes": c["offline_bytes"], "offline_s": c["offline_s"]})
    err = np.abs(np.asarray(y).reshape(-1) - reference(kind, x.reshape(-1)))
    return {"runs": runs, "max_abs_err": float(err.max()), "err_frac": float((err > 2.0 ** -11).mean()),
            "frame_limit_raised": big}


def run_ours(kinds: list[tuple[str, int | None]], sizes: list[int], repeats: int, threads: int) -> list[dict]:
    rows = []
    for n in sizes:
        print(f"[pi] n = {n}: identity baseline", flush=True)
        base = measure_ours("identity", n, repeats, threads)
        base_off_bytes = statistics.median(r["offline_bytes"] for r in base["runs"])
        base_off = statistics.median(r["offline_s"] for r in base["runs"])
        for kind, k in kinds:
            label = f"circa-k{k}" if kind == "circa" else kind
            # identity is measured again, not copied from the baseline: its row (≈ 0 offline) then
            # says that the subtraction leaves nothing of a linearized site's probe behind.
            print(f"[pi] n = {n}: {label}", flush=True)
            m = measure_ours(kind, n, repeats, threads, k)
            runs = m["runs"]
            on_s = [r["online_s"] for r in runs]
            off_bytes = statistics.median(r["offline_bytes"] for r in runs) - base_off_bytes
            off_s = statistics.median(r["offline_s"] for r in runs) - base_off
            row = {"system": "pi", "workload": "relu", "policy": label, "n": n, "batch": 1,
                   "online_bytes": int(statistics.median(r["online_bytes"] for r in runs)),
                   "offline_bytes": int(off_bytes), "rounds": int(statistics.median(r["rounds"] for r in runs)),
                   "offline_rounds": 1 if kind != "identity" else 0,
                   "online_s": statistics.median(on_s), "online_s_min": min(on_s), "online_s_max": max(on_s),
                   "offline_s": off_s, "repeats": repeats,
                   "max_abs_err": m["max_abs_err"], "err_frac": m["err_frac"],
                   "note": ("dealer material above the deployed 1 GiB frame limit: limit raised for this run"
                            if m["frame_limit_raised"] else "")}
            rows.append(_per_element(profiles.add_estimates(row, "pi")))
    return rows


def run_crypten(sizes: list[int], repeats: int, threads: int) -> list[dict]:
    print(f"[crypten] sizes {sizes}", flush=True)
    res = cb.relu_costs(sizes, repeats, threads)
    rows = []
    for n in sizes:
        r = res[n]
        row = {"system": "crypten", "workload": "relu", "policy": "exact", "n": n, "batch": 1,
               "online_bytes": int(r["online_bytes"]), "offline_bytes": None, "rounds": r["rounds"],
               "offline_rounds": None, "online_s": r["online_s"], "online_s_min": r["online_s_min"],
               "online_s_max": r["online_s_max"], "offline_s": None, "repeats": r["repeats"],
               "max_abs_err": r["max_abs_err"], "err_frac": None, "note": cb.PROVIDER_NOTE}
        rows.append(_per_element(profiles.add_estimates(row, "crypten")))
    return rows


def _per_element(row: dict) -> dict:
    n = row["n"]
    row["online_bytes_per_relu"] = row["online_bytes"] / n
    row["offline_bytes_per_relu"] = None if row["offline_bytes"] is None else row["offline_bytes"] / n
    row["online_us_per_relu"] = 1e6 * row["online_s"] / n
    row["online_us_range"] = f"{1e6 * row['online_s_min'] / n:.3f}–{1e6 * row['online_s_max'] / n:.3f}"
    row["offline_us_per_relu"] = None if row["offline_s"] is None else 1e6 * row["offline_s"] / n
    for p in profiles.PROFILES:
        v = row.get(f"{p.name.lower()}_online_s")
        row[f"{p.name.lower()}_online_us_per_relu"] = None if v is None else 1e6 * v / n
    return row


def comparisons(rows: list[dict]) -> list[dict]:
    """Ours (each kind) against CrypTen's exact ReLU on vectors of the same length."""
    return versus_crypten(rows, ("n",), {"online_bytes_ratio": "online_bytes", "online_s_ratio": "online_s",
                                         "rounds_ratio": "rounds"})


def configure(p) -> None:
    p.add_argument("--sizes", default="10000,100000,1000000", help="vector lengths, comma-separated")
    p.add_argument("--kinds", default="exact,circa,identity,poly", help="site kinds: exact, circa, identity, poly")
    p.add_argument("--circa-k", default="8,12,16,20", help="Circa: low bits dropped (of 24 fractional bits)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--crypten", default="auto", choices=["auto", "on", "off"])
    add_run_flags(p)


def run(args) -> int:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    kinds = []
    for kind in [k for k in args.kinds.split(",") if k]:
        if kind == "circa":
            kinds += [("circa", int(k)) for k in args.circa_k.split(",") if k]
        elif kind in ("exact", "identity", "poly"):
            kinds.append((kind, None))
        else:
            raise ValueError(f"unknown kind {kind!r}: use exact, circa, identity, poly")
    load = wait_for_quiet(args.max_load, args.max_wait) if args.max_load else {"load_1min_at_start": os.getloadavg()[0]}
    notes = [PI_NOTE, f"kernel threads per party process: {args.threads}",
             f"1-minute load average at start: {load['load_1min_at_start']:.2f} (machine shared)",
             ("pi: ReLU input at 24 fractional bits with the truncation to 12 fused into the gate; "
              "inputs N(0, 1); Circa in PosZero mode; polynomial p(x) = 0.1995 + 0.5x + 0.1995x² "
              "(the poly gate: the faithful truncation fused into the degree-2 evaluation, one opening)"),
             ("pi online µs: the server's time inside the activation layer; offline µs and bytes: "
              "difference to the identity probe (dealer generation + key transfer + c+r0 message)"),
             "err frac: fraction of outputs off by more than 2^-11 from the plaintext function"]
    rows = run_ours(kinds, sizes, args.repeats, args.threads)
    use, why = use_baseline(args.crypten)
    if not use:
        notes.append(f"CrypTen baseline not run: {why}")
    else:
        rows += run_crypten(sizes, args.repeats, args.threads)
        notes += [TRANSPORT_NOTE, "CrypTen: " + PROVIDER_NOTE + "; 16 fractional bits; x.relu() with no truncation"]
    notes.append("network estimates: " + profiles.describe_all())
    comps = comparisons(rows)
    text = [format_table(rows, COLUMNS)]
    comp_cols = [("n", "n", "d"), ("policy", "pi kind", "s"), ("online_bytes_ratio", "online bytes ×", ".4f"),
                 ("online_s_ratio", "online time ×", ".3f"), ("rounds_ratio", "rounds ×", ".3f")]
    if comps:
        text += ["", "pi / CrypTen (same run, lower is better):", format_table(comps, comp_cols)]
    text += ["", *[f"- {n}" for n in notes]]
    print("\n".join(text))
    if args.json:
        md = [markdown_table(rows, COLUMNS)]
        if comps:
            md += ["", "Ratios pi / CrypTen (same run, lower is better):", "", markdown_table(comps, comp_cols)]
        md += ["", "Notes:", "", *[f"- {n}" for n in notes]]
        write_results(args.json, "pi bench relu: per-ReLU costs vs CrypTen", rows,
                      extra={"notes": notes, "profiles": [p.__dict__ for p in profiles.PROFILES],
                             "load": {**load, "load_1min_at_end": os.getloadavg()[0]}, "comparisons": comps},
                      markdown="\n".join(md))
        print(f"wrote {args.json}")
    return 0
