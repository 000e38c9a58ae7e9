"""Dealer-free ReLUs (garbled circuits + OT, docs/gc.md): sizes, storage and rates per ReLU,
the AND-gate rate of the garbling engine and the IKNP OT-extension rate.

Per ReLU row: `and_gates` (hashed gates: ANDs, plus relu's one half-gate), `table_bytes` (garbled
tables + output decode bits), `label_bytes_online` (the garbler's labels for its share, sent
online), `ot_per_relu` (evaluator-label OTs, + 2 product OTs for Circa), `stored_bytes_per_relu`
(what the evaluator keeps from the offline phase: tables, its 16-B input labels, Circa's product
OT values) and `stored_bytes_seeded` (the same without the labels, which it recomputes from its
128 IKNP seeds, as this implementation does). `garble_per_s`: the garbler's offline work (absorb
the IKNP message, garble, product OTs); `eval_per_s`: the evaluator's online work (recompute its
labels, evaluate, Circa's product step). Each configuration is checked against plaintext first.
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
HELP = "garbled-circuit ReLUs (exact, drelu, Circa), AND-gate and IKNP OT rates, stored bytes per ReLU"

COLUMNS = [("circuit", "circuit", "s"), ("l", "l", "d"), ("k", "k", "d"), ("and_gates", "AND", "d"),
           ("table_bytes", "tables B", "d"), ("label_bytes_online", "labels online B", "d"),
           ("ot_per_relu", "OT/ReLU", "d"), ("stored_bytes_per_relu", "stored B", "d"),
           ("stored_bytes_seeded", "stored B (seeded)", "d"), ("garble_per_s", "garble /s", ",.0f"),
           ("eval_per_s", "eval /s", ",.0f"), ("ot_per_s", "OT /s", ",.0f")]

DEFAULT_CONFIGS = "relu:64,drelu:64,circa:64:40,circa:64:48,relu:40,drelu:40,circa:40:16,circa:40:20"
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
                   help="comma-separated circuit:l[:k] (Circa in PosZero mode); default " + DEFAULT_CONFIGS)
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
            if parts[0] == "circa" and len(parts) == 3:
                out.append(GcSpec("circa", int(parts[1]), int(parts[2]), "poszero"))
            elif parts[0] in ("relu", "drelu") and len(parts) == 2:
                out.append(GcSpec(parts[0], int(parts[1])))
            else:
                raise ValueError
        except ValueError as e:
            why = f": {e}" if str(e) else ""
            raise ValueError(f"bad entry {item!r} (use relu:L, drelu:L or circa:L:K){why}") from None
    return out


def _data(spec: GcSpec, n: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations |x| < 2^(l−2) (inside Circa's precondition), uniformly shared."""
    l = spec.l
    x = rng.integers(-(1 << (l - 2)), 1 << (l - 2), n, dtype=np.int64)
    m = spec.mask
    a = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False) & m
    b = (x.view(np.uint64) - a) & m
    return x, a, b


def _check(spec: GcSpec, x, out) -> None:
    l, m = spec.l, spec.mask
    if spec.circuit == "drelu":
        ok = np.array_equal(out[0] ^ out[1], (x >= 0).astype(np.uint8))
    else:
        y = (out[0] + out[1]) & m
        ys = y.view(np.int64) if l == 64 else y.astype(np.int64) - ((y >> np.uint64(l - 1)).astype(np.int64) << l)
        if spec.circuit == "relu":
            ok = np.array_equal(ys, np.maximum(x, 0))
        else:
            far = np.abs(x) >= (1 << spec.k)
            ok = np.array_equal(ys[far], np.maximum(x, 0)[far]) and bool(np.all((ys == 0) | (ys == x)))
    if not ok:
        raise AssertionError(f"{spec}: reconstructed outputs are wrong")


def _relu_once(ga, ev, spec: GcSpec, a, b) -> tuple[float, float, tuple]:
    """One batch, both sides; returns (garbler offline s, evaluator online s, output shares)."""
    eb, m1 = ev.offline(spec, a)
    t0 = time.perf_counter()
    gb, m2 = ga.offline(spec, a.size, m1)
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
    data = [_data(spec, n, rng) for spec in specs]
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
    for spec, (t_g, t_e) in zip(specs, times):
        info, st = spec.info, stored_bytes(spec)
        rows.append({
            "circuit": spec.circuit, "l": spec.l, "k": spec.k if spec.circuit == "circa" else None,
            "m": spec.l - spec.k if spec.circuit == "circa" else None, "mode": spec.mode,
            "and_gates": info["and_gates"] + info["andc_gates"], "half_gates": info["andc_gates"],
            "table_bytes": st["tables"], "label_bytes_online": 16 * info["n_garb"],
            "ot_per_relu": info["n_eval"] + (2 if spec.circuit == "circa" else 0),
            "stored_bytes_per_relu": st["with_labels"], "stored_bytes_seeded": st["seeded"],
            "garble_per_s": n / float(np.median(t_g)), "eval_per_s": n / float(np.median(t_e)),
            "garble_best_per_s": n / min(t_g), "eval_best_per_s": n / min(t_e),
            "relus": n, "repeats": repeats})
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
            ("Rates are per ReLU (AND gates for and-gate, OTs for ot-extension) on "
             f"{threads} kernel thread(s); medians of {args.repeats} runs (the JSON also has the best run, "
             "`*_best_per_s`); the ReLU rows' runs are interleaved across rows."),
            ("garble /s: the garbler's offline work; eval /s: the evaluator's online work (recompute its labels "
             "from its IKNP seeds, evaluate, Circa's product step). Circa rows: PosZero, product by two OTs."),
            ("stored B: tables + decode bits + the evaluator's 16-B input labels (+ Circa's product-OT values); "
             "stored B (seeded): without the labels, which this implementation recomputes from 128 seeds."),
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
    exact64 = next((r for r in rows if r["circuit"] == "relu" and r["l"] == 64), None)
    if exact64:
        for key, what in (("stored_bytes_per_relu", "labels stored"), ("stored_bytes_seeded", "labels recomputed")):
            line(f"exact64_{key}", exact64[key] <= STORED_EXACT_64,
                 f"exact ReLU l=64 stored <= 6.5 KB ({what}): {exact64[key]} B")
    for r in rows:
        if r["circuit"] != "circa" or r["m"] > 24:
            continue
        base = next((e for e in rows if e["circuit"] == "relu" and e["l"] == r["l"]), None)
        for key, what in (("stored_bytes_per_relu", "labels stored"), ("stored_bytes_seeded", "labels recomputed")):
            ratio = base[key] / r[key] if base else float("nan")
            ok = r[key] <= STORED_CIRCA and (base is not None and ratio >= 4.7)
            line(f"circa_l{r['l']}_k{r['k']}_{key}", ok,
                 f"Circa l={r['l']} k={r['k']} (m={r['m']}), {what}: {r[key]} B (<= 1 KB), "
                 f"{ratio:.2f}x less than exact at l={r['l']} (>= 4.7x)")
        if base:
            speed = r["eval_per_s"] / base["eval_per_s"]
            line(f"circa_l{r['l']}_k{r['k']}_speed", speed >= 3,
                 f"Circa l={r['l']} k={r['k']} eval {speed:.1f}x faster than exact (>= 3x)")
    return out
