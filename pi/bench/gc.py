"""Dealer-free ReLUs (garbled circuits + OT, docs/gc.md): sizes, storage and rates per ReLU,
the AND-gate rate of the garbling engine and the IKNP OT-extension rate.

Per circuit row (one instance = one ReLU, or one argmax over `classes` values): `bits` (the value
bound n), `shift`, `and_gates` (hashed gates: ANDs plus half-gates), `table_bytes` (garbled tables
+ output decode bits), `label_bytes_online` (the garbler's labels for its share, sent online),
`ot_per_relu` (evaluator-label OTs, + 2 product OTs for Circa), `stored_bytes_per_relu` (what the
evaluator keeps from the offline phase in this implementation's format: tables, 1 bit per label
OT it receives — the labels and Circa's R_c1 are recomputed from its 128 IKNP seeds — and
Circa's reverse-OT words, 2 or 4 with a shift, and c1), `stored_bytes_with_labels` (the same if the 16-B labels were stored instead),
`share_bytes` (Circa's own 8-B share, kept for the product: the linear layer's share).
`garble_per_s`: the garbler's offline work (absorb the IKNP message, garble, product OTs);
`eval_per_s`: the evaluator's online work (recompute its labels, evaluate, Circa's product step).
Each configuration is checked against plaintext first.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import pi_native
from pi.bench.model import wait_for_quiet
from pi.bench.results import format_table, time_runs, write_with_notes
from protocols.garbled import GcSpec, connect, stored_bytes

NAME = "gc"
HELP = ("garbled circuits (exact ReLU, trunc, drelu, Circa, argmax), AND-gate and IKNP OT rates, "
        "stored bytes per ReLU")

COLUMNS = [("circuit", "circuit", "s"), ("l", "l", "d"), ("bits", "n", "d"), ("k", "k", "d"), ("shift", "s", "d"),
           ("classes", "C", "d"), ("and_gates", "AND", "d"),
           ("table_bytes", "tables B", "d"), ("label_bytes_online", "labels online B", "d"),
           ("ot_per_relu", "OT/ReLU", "d"), ("stored_bytes_per_relu", "stored B", ",.1f"),
           ("stored_bytes_with_labels", "stored B if labels kept", ",.1f"), ("garble_per_s", "garble /s", ",.0f"),
           ("eval_per_s", "eval /s", ",.0f"), ("ot_per_s", "OT /s", ",.0f")]

# Full-width rows (the storage targets at l = 64, 40), then the embedded model's sites: values
# below 2^34 (n = 35), shift 12, rings of 42 (calibrated) and 59 bits (SEAL's limit), 10 classes.
DEFAULT_CONFIGS = ("relu:64,drelu:64,circa:64:40,circa:64:48,relu:40,circa:40:16,circa:40:20,"
                   "relu:42:bits=35:shift=12,trunc:42:bits=35:shift=12,drelu:42:bits=35,circa:42:11:bits=35,"
                   "circa:42:16:bits=35,circa:42:11:bits=35:shift=12,circa:42:16:bits=35:shift=12,"
                   "relu:59:bits=35:shift=12,circa:59:11:bits=35,circa:59:16:bits=35,circa:59:16:bits=35:shift=12,"
                   "argmax:42:bits=35:classes=10")
STORED_EXACT_64 = 6.5 * 1024
STORED_CIRCA = 1024


def _at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        return v
    return parse


def configure(p) -> None:
    p.add_argument("--relus", type=_at_least(1), default=1 << 14, help="ReLUs per batch (default 2^14)")
    p.add_argument("--repeats", type=_at_least(1), default=5, help="timed runs per measurement (median reported)")
    p.add_argument("--threads", type=_at_least(0), default=1, help="kernel threads (default 1: the per-core targets)")
    p.add_argument("--configs", type=_configs, default=DEFAULT_CONFIGS,
                   help="comma-separated circuit:l[:k][:bits=N][:shift=S][:classes=C] (k for Circa, in PosZero "
                        "mode); default " + DEFAULT_CONFIGS)
    p.add_argument("--ots", type=_at_least(128), default=1 << 21, help="OTs per IKNP measurement (default 2^21)")
    p.add_argument("--max-load", type=float, default=None,
                   help="first wait (up to --max-wait s) until the 1-minute load average is below this")
    p.add_argument("--max-wait", type=float, default=600)
    p.add_argument("--json", metavar="PATH", help="write results (and a .md twin) here")


def _configs(text: str) -> list[GcSpec]:
    try:
        return _parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parse(configs: str) -> list[GcSpec]:
    out = []
    for item in configs.split(","):
        parts = item.strip().split(":")
        try:
            named = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            plain = [p for p in parts[1:] if "=" not in p]
            if set(named) - {"bits", "shift", "classes"}:
                raise ValueError(f"unknown option {min(set(named) - {'bits', 'shift', 'classes'})!r}")
            opts = {key: int(v) for key, v in named.items()}
            if parts[0] == "circa" and len(plain) == 2:
                out.append(GcSpec("circa", int(plain[0]), int(plain[1]), "poszero", **opts))
            elif parts[0] in ("relu", "drelu", "trunc", "argmax") and len(plain) == 1:
                out.append(GcSpec(parts[0], int(plain[0]), **opts))
            else:
                raise ValueError
        except (ValueError, TypeError) as e:
            why = f": {e}" if str(e) else ""
            raise ValueError(f"bad entry {item!r} (use relu:L, trunc:L, drelu:L, circa:L:K or argmax:L:classes=C, "
                             f"each with optional :bits=N:shift=S){why}") from None
    return out


def _data(spec: GcSpec, n: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations |x| < 2^(bits−2) (inside Circa's precondition), uniformly shared mod 2^l."""
    x = rng.integers(-(1 << (spec.bits - 2)), 1 << (spec.bits - 2), n * spec.values, dtype=np.int64)
    m = spec.mask
    a = rng.integers(0, 2**64, x.size, dtype=np.uint64, endpoint=False) & m
    b = (x.view(np.uint64) - a) & m
    return x, a, b


def _check(spec: GcSpec, x, out) -> None:
    l, m = spec.l, spec.mask
    if spec.circuit == "drelu":
        ok = np.array_equal(out[0] ^ out[1], (x >= 0).astype(np.uint8))
    elif spec.circuit == "argmax":
        ok = out[1] is None and np.array_equal(out[0], np.argmax(x.reshape(-1, spec.classes), axis=1).astype(np.uint64))
    else:
        y = (out[0] + out[1]) & m
        ys = y.view(np.int64) if l == 64 else y.astype(np.int64) - ((y >> np.uint64(l - 1)).astype(np.int64) << l)
        if spec.circuit == "relu":
            ok = np.array_equal(ys, np.maximum(x, 0) >> spec.shift)
        elif spec.circuit == "trunc":
            ok = np.array_equal(ys, x >> spec.shift)
        else:   # circa: y = d·((x >> s) + e), e ∈ {0, 1} (0 without a shift); d exact for |x| > 2^k
            t = x >> spec.shift
            e = ys - t
            far = np.abs(x) > (1 << spec.k)
            ok = (bool(np.all((ys == 0) | (e == 0) | (e == 1 if spec.shift else False)))
                  and not ys[far & (x < 0)].any()
                  and bool(np.all((e[far & (x >= 0)] == 0) | (e[far & (x >= 0)] == (1 if spec.shift else 0)))))
    if not ok:
        raise AssertionError(f"{spec}: reconstructed outputs are wrong")


def _relu_once(ga, ev, spec: GcSpec, a, b) -> tuple[float, float, tuple]:
    """One batch, both sides; returns (garbler offline s, evaluator online s, output shares)."""
    eb, m1 = ev.offline(spec, a)
    t0 = time.perf_counter()
    gb, m2 = ga.offline(spec, eb.instances, m1)
    t_g = time.perf_counter() - t0
    ev.receive(eb, m2)
    labels = ga.labels(gb, b)
    t0 = time.perf_counter()
    out = ev.evaluate(eb, labels)
    t_e = time.perf_counter() - t0
    if spec.circuit != "circa":
        return t_g, t_e, (out, gb.share)
    h, z_g = ga.finish(gb, *out)
    t0 = time.perf_counter()
    z_e = ev.finish(eb, h)
    return t_g, t_e + time.perf_counter() - t0, (z_e, z_g)


def _relu_rows(ga, ev, specs, n: int, repeats: int, rng) -> list[dict]:
    """Repeats are interleaved across configurations (rep 1 of every row, then rep 2, ...), so
    that a change of machine load hits all rows alike and the ratios between rows hold."""
    counts = [max(1, n // spec.values) for spec in specs]     # argmax: n values per batch
    data = [_data(spec, c, rng) for spec, c in zip(specs, counts)]
    times = [([], []) for _ in specs]
    for rep in range(repeats + 1):   # the first round checks correctness and warms up
        for i, spec in enumerate(specs):
            x, a, b = data[i]
            t_g, t_e, out = _relu_once(ga, ev, spec, a, b)
            if rep == 0:
                _check(spec, x, out)
            else:
                times[i][0].append(t_g)
                times[i][1].append(t_e)
        print(f"  round {rep}/{repeats} done", flush=True)
    rows = []
    for spec, c, (t_g, t_e) in zip(specs, counts, times):
        info, st = spec.info, stored_bytes(spec)
        circa = spec.circuit == "circa"
        rows.append({
            "circuit": spec.circuit, "l": spec.l, "bits": spec.bits, "k": spec.k if circa else None,
            "m": spec.bits - spec.k if circa else None, "mode": spec.mode,
            "shift": spec.shift if spec.circuit in ("relu", "trunc", "circa") else None,
            "classes": spec.classes or None,
            "and_gates": info["and_gates"] + info["andc_gates"], "half_gates": info["andc_gates"],
            "table_bytes": st["tables"], "label_bytes_online": 16 * info["n_garb"],
            "ot_per_relu": info["n_eval"] + ((3 if spec.shift else 2) if circa else 0),
            "stored_bytes_per_relu": st["stored"], "stored_bytes_with_labels": st["with_labels"],
            "share_bytes": st["share"],
            "garble_per_s": c / float(np.median(t_g)), "eval_per_s": c / float(np.median(t_e)),
            "garble_best_per_s": c / min(t_g), "eval_best_per_s": c / min(t_e),
            "relus": c, "repeats": repeats})
    return rows


def _and_row(n: int, repeats: int) -> dict:
    """Independent AND gates (64 per instance, inputs loaded per instance), explicit labels."""
    l = 64
    rng = np.random.default_rng(1)
    delta = bytearray(os.urandom(16))
    delta[0] |= 1
    ez = np.frombuffer(rng.bytes(16 * n * l), np.uint8).reshape(-1, 16)
    gz = np.frombuffer(rng.bytes(16 * n * l), np.uint8).reshape(-1, 16)
    priv = np.zeros(0, np.uint8)
    body = pi_native.gc_garble_raw("and-layer", l, 0, None, bytes(delta), ez, gz, priv, 0, n)
    out = pi_native.gc_evaluate_raw("and-layer", l, 0, None, body, ez, gz, 0, n)
    if out.any():
        raise AssertionError("and-gate: zero labels must evaluate to 0")
    tg = time_runs(lambda: pi_native.gc_garble_raw("and-layer", l, 0, None, bytes(delta), ez, gz, priv, 0, n), repeats)
    te = time_runs(lambda: pi_native.gc_evaluate_raw("and-layer", l, 0, None, body, ez, gz, 0, n), repeats)
    gates = n * l
    return {"circuit": "and-gate", "garble_per_s": gates / tg["median_s"], "eval_per_s": gates / te["median_s"],
            "garble_best_per_s": gates / tg["min_s"], "eval_best_per_s": gates / te["min_s"],
            "gates": gates, "repeats": repeats}


def _ot_row(n: int, repeats: int) -> dict:
    """IKNP correlated OTs end to end: receiver message, sender rows, receiver rows (recomputed)."""
    s, r = pi_native.IknpSender(), pi_native.IknpReceiver()
    t0 = time.perf_counter()
    r.base_finish(s.base_reply(r.base_message()))
    base_s = time.perf_counter() - t0
    c = (np.frombuffer(os.urandom(n), np.uint8) & 1).astype(np.uint8)

    def once():
        s.extend(r.extend(c), n)
        q = s.correlated_ot(n)
        cc, t = r.correlated_ot(n)
        return q, cc, t

    q, cc, t = once()
    if np.any((q ^ t)[cc == 0]):
        raise AssertionError("ot-extension: t != q for choice 0")
    tm = time_runs(once, repeats)
    return {"circuit": "ot-extension", "ot_per_s": n / tm["median_s"], "ot_best_per_s": n / tm["min_s"], "base_ots": 128,
            "base_ot_s": base_s, "ots": n, "repeats": repeats}


def run(args) -> int:
    specs = args.configs if isinstance(args.configs, list) else _parse(args.configs)
    old = pi_native.get_num_threads()
    if args.threads:
        pi_native.set_num_threads(args.threads)
    rows = []
    rng = np.random.default_rng(0)
    try:
        waited = wait_for_quiet(args.max_load, args.max_wait) if args.max_load else {}
        load_start = os.getloadavg()[0]
        ga, ev = connect()
        rows += _relu_rows(ga, ev, specs, args.relus, args.repeats, rng)
        rows.append(_and_row(max(args.relus, 1 << 14), args.repeats))
        rows.append(_ot_row(args.ots, args.repeats))
        load = {"load_1min_at_start": load_start, "load_1min_at_end": os.getloadavg()[0], "cores": os.cpu_count(),
                **{k: v for k, v in waited.items() if k != "load_1min_at_start"}}
        threads = pi_native.get_num_threads()
    finally:
        pi_native.set_num_threads(old)
    targets = _targets(rows)
    print(format_table(rows, COLUMNS))
    for line in targets["lines"]:
        print(line)
    print(f"load average (1 min): {load['load_1min_at_start']:.2f} at start, {load['load_1min_at_end']:.2f} at end "
          f"({load['cores']} cores); {threads} kernel thread(s)")
    if args.json:
        notes = [
            ("Rates are per instance (a ReLU; one argmax over C values; AND gates for and-gate, OTs for "
             "ot-extension) on "
             f"{threads} kernel thread(s); medians of {args.repeats} runs (the JSON also has the best run, "
             "`*_best_per_s`); the ReLU rows' runs are interleaved across rows."),
            ("garble /s: the garbler's offline work; eval /s: the evaluator's online work (recompute its labels "
             "from its IKNP seeds, evaluate, Circa's product step). Circa rows: PosZero, product by two OTs "
             "(three with a shift s)."),
            ("stored B: what the evaluator keeps per instance in this implementation: tables + decode bits, 1 bit "
             "per OT it receives (its labels and Circa's R_c1 are recomputed from its 128 IKNP seeds, 4 KB per "
             "session), Circa's two 8-B reverse-OT words (four with a shift) and packed c1 (Circa also keeps its own "
             "8-B share for the product: the linear layer's share, not counted). stored B if labels kept: the 16-B "
             "input labels instead of the bits."),
            ("n = bits: the value bound |x| < 2^(n-1) (circuits read n share bits); s = shift. The l = 42 / 59, "
             "n = 35, s = 12 rows are the embedded model's sites (calibrated ring 42; 59 = SEAL's limit)."),
        ]
        write_with_notes(args.json, "Dealer-free ReLUs: garbled circuits and OT (pi_native)", rows, COLUMNS, notes,
                         load, targets)
    return 0


def _targets(rows) -> dict:
    out = {"lines": []}

    def line(name, ok, text):
        out[name] = ok
        out["lines"].append(f"target {text} -> {'met' if ok else 'NOT met'}")

    ag = next(r for r in rows if r["circuit"] == "and-gate")
    line("and_gate", ag["garble_per_s"] >= 1e7 and ag["eval_per_s"] >= 1e7,
         f"AND gates >= 10 M/s garble and eval (median): {ag['garble_per_s'] / 1e6:.1f} M/s, "
         f"{ag['eval_per_s'] / 1e6:.1f} M/s (best run {ag['garble_best_per_s'] / 1e6:.1f}, "
         f"{ag['eval_best_per_s'] / 1e6:.1f} M/s)")
    ot = next(r for r in rows if r["circuit"] == "ot-extension")
    line("iknp", ot["ot_per_s"] >= 2e6, f"IKNP >= 2 M COT/s (median): {ot['ot_per_s'] / 1e6:.2f} M/s "
         f"(best run {ot['ot_best_per_s'] / 1e6:.2f} M/s)")
    exact64 = next((r for r in rows if r["circuit"] == "relu" and r["l"] == 64 and r["bits"] == 64), None)
    if exact64:
        line("exact64_stored", exact64["stored_bytes_per_relu"] <= STORED_EXACT_64,
             f"exact ReLU l=64 stored <= 6.5 KB: {exact64['stored_bytes_per_relu']:.1f} B "
             f"({exact64['stored_bytes_with_labels']:.0f} B if the labels were kept)")
    for r in rows:
        if r["circuit"] != "circa" or r["m"] > 24:
            continue
        base = next((e for e in rows if e["circuit"] == "relu" and e["l"] == r["l"] and e["bits"] == r["bits"]), None)
        what = f"Circa l={r['l']} n={r['bits']} k={r['k']}" + (f" s={r['shift']}" if r["shift"] else "") + \
            f" (m={r['m']})"
        vs = f"exact l={r['l']} n={r['bits']}" + (f" s={base['shift']}" if base and base["shift"] else "")
        ratio = base["stored_bytes_per_relu"] / r["stored_bytes_per_relu"] if base else float("nan")
        tag = f"circa_l{r['l']}_n{r['bits']}_k{r['k']}" + (f"_s{r['shift']}" if r["shift"] else "")
        line(f"{tag}_stored",
             r["stored_bytes_per_relu"] <= STORED_CIRCA and base is not None and ratio >= 4.7,
             f"{what}: stored {r['stored_bytes_per_relu']:.1f} B (<= 1 KB), {ratio:.2f}x less than {vs} (>= 4.7x)")
        if base:
            speed = r["eval_per_s"] / base["eval_per_s"]
            line(f"{tag}_speed", speed >= 3,
                 f"{what} eval {speed:.1f}x faster than {vs} (>= 3x)")
    return out
