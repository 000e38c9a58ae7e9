"""FSS gates of pi_native (dealer model): key size, keygen and evaluation rates, online cost.

Every rate is elements per second over all kernel threads: keygen produces both parties' keys,
evaluation is one party's local work (for Circa: the sign step plus the select step; the two
network rounds are not part of it). Each configuration is also checked for correctness on the
benchmark's own data before it is timed.

Input bit width n: the rows at n = 64 use activations |x| < 2^40; the rows at a narrower n (default
40, LLAMA-style) use x uniform in [-2^(n-2), 2^(n-2)), inside every gate's precondition. Online
bytes are reported twice: packed (each party's share of x^ in ceil(input_bits / 8) bytes, what the
gate actually needs) and as 8-byte words (what the engine sends today).
"""
from __future__ import annotations

import os

import numpy as np

import pi_native
from pi.bench.results import format_table, time_runs, write_with_notes

NAME = "native"
HELP = "FSS gates (relu, drelu, circa, trunc, square, mul): key bytes, keygen/eval rates, online cost"

COLUMNS = [("gate", "gate", "s"), ("n", "n", "d"), ("params", "params", "s"),
           ("key_bytes", "key B/elem/party", "d"), ("keygen_per_s", "keygen elem/s", ",.0f"),
           ("eval_per_s", "eval elem/s/party", ",.0f"), ("eval_ns", "eval ns/elem", ".0f"),
           ("input_bits", "x^ bits read", "d"), ("online_bytes", "online B/elem packed", ".2f"),
           ("online_word_bytes", "online B/elem 8-B words", ".2f"), ("rounds", "rounds", "d")]

CIRCA_KS = (32, 40, 44, 48)
NARROW_WIDTHS = (40,)
NARROW_CIRCA_KS = (12, 16, 20)
TRUNC_SHIFT = 16


def configure(p) -> None:
    p.add_argument("--elements", type=int, default=1 << 18, help="elements per batch (default 2^18)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    p.add_argument("--threads", type=int, default=0, help="kernel threads (0: the default, all cores)")
    p.add_argument("--circa-k", default=",".join(map(str, CIRCA_KS)),
                   help="Circa k values at n = 64, comma-separated")
    p.add_argument("--widths", default=",".join(map(str, NARROW_WIDTHS)),
                   help="input bit widths n < 64 to add rows for (relu, drelu, trunc, circa), comma-separated; "
                        "'' for none (default 40)")
    p.add_argument("--narrow-circa-k", default=",".join(map(str, NARROW_CIRCA_KS)),
                   help="Circa k values at the narrower widths (m = n - k; default 12,16,20)")
    p.add_argument("--json", metavar="PATH", help="write results (and a .md twin) here")


def _configs(circa_ks, widths, narrow_ks):
    yield "relu", {}, None
    yield "drelu", {}, None
    yield "trunc", {"shift": TRUNC_SHIFT}, None
    yield "square", {}, None
    yield "mul", {}, None
    for k in circa_ks:
        yield "circa", {"k": k, "mode": "poszero"}, k
    for n in widths:
        yield "relu", {"n": n}, None
        yield "drelu", {"n": n}, None
        yield "trunc", {"shift": TRUNC_SHIFT, "n": n}, None
        for k in narrow_ks:
            if k <= n - 3:
                yield "circa", {"k": k, "mode": "poszero", "n": n}, k


def _gen(gate, params, seed, r, r2, ro):
    if gate == "mul":
        return pi_native.gen_mul(seed, r, r2, ro)
    return getattr(pi_native, "gen_" + gate)(seed, r, ro, **params)


def _eval(gate, key, xh, yh, opened):
    if gate == "mul":
        return pi_native.eval_mul(0, key, xh, yh)
    if gate == "circa":
        pi_native.eval_circa_sign(0, key, xh)
        return pi_native.eval_circa_select(0, key, xh, opened)
    return getattr(pi_native, "eval_" + gate)(0, key, xh)


def _check(gate, params, keys, x, xh, y, yh, ro):
    """Reconstructs the outputs and compares them with the plaintext gate (on up to 4096 elements)."""
    n = min(4096, x.size)
    sl = slice(0, n)
    xs = x[:n].view(np.int64)
    if gate == "circa":
        s0 = pi_native.eval_circa_sign(0, keys[0], xh)
        s1 = pi_native.eval_circa_sign(1, keys[1], xh)
        op = s0 ^ s1
        out = pi_native.eval_circa_select(0, keys[0], xh, op) + pi_native.eval_circa_select(1, keys[1], xh, op)
    elif gate == "mul":
        out = pi_native.eval_mul(0, keys[0], xh, yh) + pi_native.eval_mul(1, keys[1], xh, yh)
    else:
        out = getattr(pi_native, "eval_" + gate)(0, keys[0], xh) + getattr(pi_native, "eval_" + gate)(1, keys[1], xh)
    got = (out - ro)[sl].view(np.int64)
    if gate == "relu":
        ok = np.array_equal(got, np.maximum(xs, 0))
    elif gate == "drelu":
        ok = np.array_equal(got, (xs >= 0).astype(np.int64))
    elif gate == "trunc":
        ok = set(np.unique(got - (xs >> TRUNC_SHIFT))) <= {0, 1}
    elif gate == "square":
        ok = np.array_equal(got.view(np.uint64), x[sl] * x[sl])
    elif gate == "mul":
        ok = np.array_equal(got.view(np.uint64), x[sl] * y[sl])
    else:  # circa: exact away from zero (|x| >= 2^k), x or 0 near it
        far = np.abs(xs) >= (1 << params["k"])
        ok = np.array_equal(got[far], np.maximum(xs, 0)[far]) and bool(np.all((got == 0) | (got == xs)))
    if not ok:
        raise AssertionError(f"{gate} {params}: reconstructed outputs are wrong")


def run(args) -> int:
    if args.elements < 1:
        raise ValueError(f"--elements must be positive, got {args.elements}")
    circa_ks = [int(k) for k in str(args.circa_k).split(",") if k.strip()]
    widths = [int(w) for w in str(args.widths).split(",") if w.strip()]
    narrow_ks = [int(k) for k in str(args.narrow_circa_k).split(",") if k.strip()]
    for w in widths:
        if not 4 <= w <= 63:
            raise ValueError(f"--widths: each n must be in [4, 63] (n = 64 is always measured), got {w}")
    n = args.elements
    old_threads = pi_native.get_num_threads()
    if args.threads:
        pi_native.set_num_threads(args.threads)
    rows = []
    try:
        prg = pi_native.Prg(os.urandom(16))
        r, r2, ro = prg.random_u64(n), prg.random_u64(n), prg.random_u64(n)
        # Activations of moderate size (|x| < 2^40), as after a layer with 16 fractional bits.
        x64 = (prg.random_u64(n) >> np.uint64(23)).view(np.int64) - np.int64(1 << 40)
        raw = prg.random_u64(n)
        y = prg.random_u64(n)
        yh = y + r2
        opened = (prg.random_u64(n) & np.uint64(1)).astype(np.uint8)
        data = {}
        configs = list(_configs(circa_ks, widths, narrow_ks))
        # Timed in an interleaved order (each narrower-n row right after the n = 64 row of the same
        # gate), so that both see the same machine load; the table keeps the canonical order.
        gate_rank = {g: i for i, g in enumerate(dict.fromkeys(c[0] for c in configs))}
        order = sorted(range(len(configs)), key=lambda i: (gate_rank[configs[i][0]], configs[i][0] == "circa" and
                                                           configs[i][1].get("n", 64) < 64, i))
        load_start = os.getloadavg()[0]
        for idx in order:
            gate, params, k = configs[idx]
            width = params.get("n", 64)
            if width not in data:
                # n < 64: x uniform in [-2^(n-2), 2^(n-2)), inside every gate's precondition at that n
                xw = x64 if width == 64 else (raw >> np.uint64(65 - width)).view(np.int64) - np.int64(1 << (width - 2))
                data[width] = (xw.view(np.uint64), xw.view(np.uint64) + r)
            x, xh = data[width]
            seed = os.urandom(16)
            keys = _gen(gate, params, seed, r, r2, ro)
            _check(gate, params, keys, x, xh, y, yh, ro)
            key0 = keys[0]
            del keys
            t_gen = time_runs(lambda g=gate, p=params: _gen(g, p, os.urandom(16), r, r2, ro), args.repeats)
            t_eval = time_runs(lambda g=gate, k0=key0, xx=xh: _eval(g, k0, xx, yh, opened), args.repeats)
            key0 = None  # free the batch before the next configuration
            cost = pi_native.online_cost(gate, **params)
            label = ", ".join(f"{a}={b}" for a, b in params.items() if a not in ("mode", "n"))
            if gate == "circa":
                label = f"k={k} (m={width - k}), {params['mode']}"
            rows.append({
                "_idx": idx, "gate": gate, "params": label or "-", "n": width, "k": k,
                "m": (width - k) if k is not None else None,
                "mode": params.get("mode"), "shift": params.get("shift", 0),
                "key_bytes": pi_native.key_bytes_per_element(gate, **params),
                "keygen_per_s": n / t_gen["median_s"], "eval_per_s": n / t_eval["median_s"],
                "eval_ns": 1e9 * t_eval["median_s"] / n,
                "input_bits": cost["input_bits"], "online_bits": cost["bits"],
                "online_bytes": cost["bytes"], "online_word_bytes": cost["word_bytes"], "rounds": cost["rounds"],
                "elements": n, "repeats": args.repeats, "threads": pi_native.get_num_threads(),
            })
            print(f"  measured {gate} n={width} {label or ''}", flush=True)
        load = {"load_1min_at_start": load_start, "load_1min_at_end": os.getloadavg()[0], "cores": os.cpu_count()}
    finally:
        pi_native.set_num_threads(old_threads)

    rows.sort(key=lambda r: r.pop("_idx"))
    targets = _targets(rows)
    print(format_table(rows, COLUMNS))
    print("(medians; rates are elements per second over all kernel threads; evaluation is one party's work;")
    print(" Circa's evaluation is its sign step plus its select step; online bytes count both parties:")
    print(" packed = each share of x^ in ceil(bits read / 8) bytes, 8-B words = what the engine sends today)")
    for line in targets["lines"]:
        print(line)
    print(f"load average (1 min): {load['load_1min_at_start']:.2f} at start, {load['load_1min_at_end']:.2f} at end "
          f"({load['cores']} cores)")
    if args.json:
        notes = ["n = 64 rows: activations |x| < 2^40; n < 64 rows: x uniform in [-2^(n-2), 2^(n-2)).",
                 ("x^ bits read: low bits of each party's share of x^ the gate uses (n for drelu, n + 1 for "
                  "relu, trunc and circa when n < 64). Online bytes count both parties: packed = ceil(bits / 8) "
                  "bytes per share (+ 2 sign bits for circa), 8-B words = what the engine sends today."),
                 "Rows of the same gate at n = 64 and n = 40 were timed back to back."]
        write_with_notes(args.json, "FSS gates of pi_native (dealer model)", rows, COLUMNS, notes, load, targets)
    return 0


def _targets(rows) -> dict:
    relu = next((r for r in rows if r["gate"] == "relu" and r["n"] == 64), None)
    out = {"lines": []}
    if relu is None:
        return out
    ok_relu = (relu["eval_per_s"] >= 1e6 and relu["key_bytes"] <= 2200 and relu["rounds"] == 1
               and relu["online_bytes"] <= 16)
    out["relu"] = {"eval_per_s": relu["eval_per_s"], "key_bytes": relu["key_bytes"], "met": ok_relu}
    out["lines"].append(
        f"target exact ReLU (>= 1 M eval/s, <= 2200 B key, 1 round, <= 16 B online): "
        f"{relu['eval_per_s'] / 1e6:.2f} M/s, {relu['key_bytes']} B, {relu['rounds']} round, "
        f"{relu['online_bytes']:.0f} B -> {'met' if ok_relu else 'NOT met'}")
    for row in rows:
        if row["gate"] != "circa" or row["m"] > 24:
            continue
        # against the exact ReLU at the same input width
        base = next((r for r in rows if r["gate"] == "relu" and r["n"] == row["n"] and not r["shift"]), relu)
        key_ratio = base["key_bytes"] / row["key_bytes"]
        speed_ratio = row["eval_per_s"] / base["eval_per_s"]
        met = key_ratio >= 3 and speed_ratio >= 2
        out.setdefault("circa", []).append({"n": row["n"], "k": row["k"], "m": row["m"], "key_smaller_x": key_ratio,
                                            "eval_faster_x": speed_ratio, "met": met})
        out["lines"].append(
            f"target Circa n={row['n']} k={row['k']} (m={row['m']}) vs exact ReLU at n={base['n']} "
            f"(key >= 3x smaller, eval >= 2x faster): key {key_ratio:.1f}x smaller, eval {speed_ratio:.1f}x "
            f"faster -> {'met' if met else 'NOT met'}")
    for row in rows:
        if row["gate"] == "relu" and row["n"] < 64 and not row["shift"]:
            out.setdefault("narrow_relu", []).append({
                "n": row["n"], "key_bytes": row["key_bytes"], "eval_per_s": row["eval_per_s"],
                "key_smaller_x": relu["key_bytes"] / row["key_bytes"],
                "eval_faster_x": row["eval_per_s"] / relu["eval_per_s"]})
            out["lines"].append(
                f"exact ReLU at n={row['n']} vs n=64: {row['key_bytes']} B "
                f"({relu['key_bytes'] / row['key_bytes']:.2f}x smaller), "
                f"{row['eval_per_s'] / 1e6:.2f} M eval/s ({row['eval_per_s'] / relu['eval_per_s']:.2f}x)")
    return out
