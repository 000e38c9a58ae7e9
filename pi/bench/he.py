"""`pi bench he`: the dealer-free linear-layer correlation (protocols.he) per layer.

For every Conv2d/Linear of a workload's compiled plan (its ring-encoded weights reduced mod
2^l, their public size bound from the plan), at batch 1: the client encrypts a uniform r,
the server answers Enc(W·r − s), the client decrypts; both shares are checked against W·r
mod 2^l. Rows (docs/he.md): bytes as sent (framed), client/server seconds (medians), the
measured noise bits left. The `total` row of a workload adds the public keys the client
sends once per parameter chain. `--trials N` also counts reconstruction errors over N random
(W, r) per distinct layer shape, with weights uniform over the whole ring.
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pi_native

from pi.bench.model import load_test_images, load_workload
from pi.bench.results import format_table, markdown_table, write_results
from pi.compiler import compile_plan
from protocols import he

NAME = "he"
HELP = "dealer-free linear layers: BFV (SEAL) correlation W·r − s per Conv2d/Linear, embedded model and ResNet-18"
WORKLOADS = ("default", "resnet18")
ROW_FIELDS = ("workload", "layer", "shape", "macs", "n_poly", "upload_bytes", "download_bytes", "client_s",
              "server_s", "noise_bits_left")
COLUMNS = [("workload", "workload", "s"), ("layer", "layer", "s"), ("shape", "shape", "s"),
           ("macs", "MACs", "d"), ("n_poly", "polys ↑+↓", "s"), ("n", "n", "d"), ("levels", "primes ↑/↓", "s"),
           ("upload_kb", "up KB", ".1f"), ("download_kb", "down KB", ".1f"), ("client_ms", "client ms", ".1f"),
           ("server_ms", "server ms", ".1f"), ("prepare_ms", "prepare ms", ".1f"),
           ("noise_bits_left", "noise bits left", ".1f"), ("margin_bits", "bound", ".1f")]


def _ring(x: np.ndarray, l: int) -> np.ndarray:
    return np.asarray(x, dtype=np.uint64) & np.uint64((1 << l) - 1)


def reference(shape: he.LayerShape, w: np.ndarray, r: np.ndarray, l: int) -> np.ndarray:
    """W·r mod 2^l with the ring kernels of pi_native (mod 2^64, then reduced)."""
    if shape.kind == "linear":
        return _ring(pi_native.ring_matmul(r, np.ascontiguousarray(w.T)), l)
    return _ring(pi_native.ring_conv2d(r, w, shape.stride, shape.padding), l)


def plan_layers(workload: str, ring_bits: int | None, checkpoint: str | None = None
                ) -> tuple[int, list[tuple[str, he.LayerShape, np.ndarray, int]]]:
    """The workload's plan in Z_2^l (l = ring_bits, or the calibrated width on the embedded
    samples when None, as pi.compile derives it) and, for every Conv2d/Linear, (op name,
    shape, weights mod 2^l, public weight bits)."""
    model, _ = load_workload(workload, checkpoint)
    x, _, _ = load_test_images("samples", 32)
    plan, weights = compile_plan(model, x[:1], calibration=x,
                                 ring_bits="calibrated" if ring_bits is None else ring_bits)
    l = plan.ring_bits
    if l > he.MAX_PLAIN_BITS:
        raise ValueError(f"{workload}: the plan needs a {l}-bit ring, more than BFV's 2^{he.MAX_PLAIN_BITS}")
    out = []
    for op in plan.ops:
        if op.kind not in ("Conv2d", "Linear"):
            continue
        w = np.asarray(weights.weights[op.name], dtype=np.uint64)
        bits = int(np.abs(plan.ring.signed(w)).max()).bit_length()
        out.append((op.name, he.LayerShape.from_plan(plan, op), w, bits))
    return l, out


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def bench_layer(client: he.HEClient, server: he.HEServer, p: he.LayerParams, w: np.ndarray, repeats: int,
                rng) -> dict:
    t0 = time.perf_counter()
    layer = server.prepare(p, w)
    prepare_s = time.perf_counter() - t0
    client_s, server_s, margins, up, down = [], [], [], 0, 0
    for _ in range(repeats):
        r = rng.integers(0, 1 << p.plain_bits, (1,) + p.shape.in_shape, dtype=np.uint64)
        t0 = time.perf_counter()
        query = client.encrypt(p, r)
        t1 = time.perf_counter()
        reply, s = server.respond(layer, query)
        t2 = time.perf_counter()
        c = client.decrypt(p, reply)
        t3 = time.perf_counter()
        if not np.array_equal(_ring(c + s, p.plain_bits), reference(p.shape, w, r, p.plain_bits)):
            raise AssertionError(f"{p.shape.describe()}: shares do not reconstruct W·r mod 2^{p.plain_bits}")
        client_s.append((t1 - t0) + (t3 - t2))
        server_s.append(t2 - t1)
        margins.append(client.last_margin_bits)
        up, down = len(query), len(reply)
    return {"macs": p.shape.macs, "n_poly": f"{p.in_groups}+{p.out_groups}", "queries": p.in_groups,
            "replies": p.out_groups, "products": p.in_groups * p.out_groups, "upload_bytes": up,
            "download_bytes": down, "client_s": _median(client_s), "server_s": _median(server_s),
            "server_prepare_s": prepare_s, "noise_bits_left": min(margins), "margin_bits": p.margin_bits,
            "n": p.n, "levels": f"{p.level}/{p.reply_level}", "prime_bits": list(p.prime_bits),
            "c_group": p.c_group, "m_group": p.m_group, "flood_bits": p.flood_bits, "weight_bits": p.weight_bits,
            "l": p.plain_bits, "kappa": p.kappa, "correct": True, "repeats": repeats}


def run_workload(workload: str, ring_bits: int | None, repeats: int, checkpoint: str | None, rng) -> list[dict]:
    l, layers = plan_layers(workload, ring_bits, checkpoint)
    client, server = he.HEClient(), he.HEServer()
    rows, key_bytes, keygen_s, chains = [], 0, 0.0, set()
    for name, shape, w, bits in layers:
        p = he.choose_params(shape, l, weight_bits=bits)
        if p.chain not in chains:
            t0 = time.perf_counter()
            pk = client.public_key(p)
            keygen_s += time.perf_counter() - t0
            server.set_public_key(p, pk)
            key_bytes += len(pk)
            chains.add(p.chain)
        row = {"workload": workload, "layer": name, "shape": shape.describe(), **bench_layer(client, server, p, w,
                                                                                           repeats, rng)}
        rows.append(row)
        print(f"  {workload} {name}: {row['shape']}  up {row['upload_bytes'] / 1e3:.0f} KB  down "
              f"{row['download_bytes'] / 1e3:.0f} KB  server {1e3 * row['server_s']:.0f} ms", flush=True)
    total = {"workload": workload, "layer": "total", "shape": f"{len(rows)} layers",
             "macs": sum(r["macs"] for r in rows), "n_poly": str(sum(r["queries"] + r["replies"] for r in rows)),
             "upload_bytes": key_bytes + sum(r["upload_bytes"] for r in rows),
             "download_bytes": sum(r["download_bytes"] for r in rows),
             "client_s": keygen_s + sum(r["client_s"] for r in rows), "server_s": sum(r["server_s"] for r in rows),
             "server_prepare_s": sum(r["server_prepare_s"] for r in rows),
             "noise_bits_left": min(r["noise_bits_left"] for r in rows),
             "margin_bits": min(r["margin_bits"] for r in rows), "public_key_bytes": key_bytes,
             "key_chains": len(chains), "l": l, "correct": all(r["correct"] for r in rows), "repeats": repeats}
    return rows + [total]


def reconstruction_trials(shapes: list[he.LayerShape], l: int, trials: int, rng, out: list[dict],
                          on_case=None) -> list[dict]:
    """Appends to `out` the errors over `trials` random (W, r) per shape (W uniform mod 2^l,
    a fresh key pair per shape; r batched by 10 per query); on_case() after each shape."""
    for shape in shapes:
        p = he.choose_params(shape, l)
        client, server = he.HEClient(), he.HEServer()
        server.set_public_key(p, client.public_key(p))
        errors, done, min_bits = 0, 0, float("inf")
        t0 = time.perf_counter()
        while done < trials:
            b = min(10, trials - done)
            w = rng.integers(0, 1 << l, shape.weight_shape, dtype=np.uint64)
            r = rng.integers(0, 1 << l, (b,) + shape.in_shape, dtype=np.uint64)
            reply, s = server.respond(server.prepare(p, w), client.encrypt(p, r))
            c = client.decrypt(p, reply)
            ok = _ring(c + s, l) == reference(shape, w, r, l)
            errors += int(np.sum(~ok.reshape(b, -1).all(axis=1)))
            done += b
            min_bits = min(min_bits, client.last_margin_bits)
        out.append({"shape": shape.describe(), "l": l, "trials": trials, "errors": errors,
                    "min_noise_bits_left": min_bits, "bound_bits": p.margin_bits,
                    "seconds": time.perf_counter() - t0})
        print(f"  trials {shape.describe()} l={l}: {errors} errors in {trials}", flush=True)
        if on_case:
            on_case()
    return out


def configure(p) -> None:
    p.add_argument("--workloads", default="default,resnet18", help=f"comma-separated from {', '.join(WORKLOADS)}")
    p.add_argument("--ring-bits", default="calibrated",
                   help="l: shares mod 2^l, 2..59, or 'calibrated': the plan's width on the embedded samples")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per layer (median)")
    p.add_argument("--trials", type=int, default=0,
                   help="also count reconstruction errors over N random (W, r) per distinct layer shape")
    p.add_argument("--trial-widths", default="37,59", help="l values of the --trials runs")
    p.add_argument("--threads", type=int, default=1, help="kernel threads (the server's products)")
    p.add_argument("--resnet18-checkpoint", default=None)
    p.add_argument("--json", metavar="PATH", help="write results (and a .md twin) here")


def _display(row: dict) -> dict:
    return {**row, "upload_kb": row["upload_bytes"] / 1e3, "download_kb": row["download_bytes"] / 1e3,
            "client_ms": 1e3 * row["client_s"], "server_ms": 1e3 * row["server_s"],
            "prepare_ms": 1e3 * row["server_prepare_s"], "n": row.get("n"), "levels": row.get("levels", "")}


def run(args) -> int:
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            raise ValueError(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}")
    ring_bits = None if args.ring_bits == "calibrated" else args.ring_bits
    if ring_bits is not None:
        if not str(ring_bits).isdigit() or not 2 <= int(ring_bits) <= he.MAX_PLAIN_BITS:
            raise ValueError(f"--ring-bits must be 'calibrated' or an integer in 2..{he.MAX_PLAIN_BITS}")
        ring_bits = int(ring_bits)
    pi_native.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0]
    rows = []
    for w in workloads:
        rows += run_workload(w, ring_bits, args.repeats, args.resnet18_checkpoint, rng)
    trials: list[dict] = []
    if args.trials:
        seen = {}
        for w in workloads:
            for _, shape, _, _ in plan_layers(w, ring_bits, args.resnet18_checkpoint)[1]:
                seen.setdefault(shape, None)
        # A long run leaves what it has measured: the file is rewritten after every case.
        partial = (lambda: _write(args, rows, trials, load, complete=False)) if args.json else None
        for l in (int(v) for v in args.trial_widths.split(",")):
            reconstruction_trials(list(seen), l, args.trials, rng, trials, partial)
    print(format_table([_display(r) for r in rows], COLUMNS))
    if trials:
        print(f"reconstruction: {sum(t['errors'] for t in trials)} errors over "
              f"{sum(t['trials'] for t in trials)} random (W, r) in {len(trials)} (shape, l) cases")
    if args.json:
        _write(args, rows, trials, load, complete=True)
        print(f"wrote {args.json}")
    return 0


def _write(args, rows: list[dict], trials: list[dict], load: float, complete: bool) -> None:
    load_after = os.getloadavg()[0]
    shown = [_display(r) for r in rows]
    extra = {"ring_bits": args.ring_bits, "kappa": he.KAPPA, "seal": he.he.SEAL_VERSION,
             "load_average_1min": [load, load_after], "reconstruction": trials, "complete": complete}
    md = markdown_table(shown, COLUMNS)
    if trials:
        md += "\n\nReconstruction over random (W, r), W uniform mod 2^l:\n\n" + markdown_table(
            trials, [("shape", "shape", "s"), ("l", "l", "d"), ("trials", "trials", "d"), ("errors", "errors", "d"),
                     ("min_noise_bits_left", "min noise bits left", ".1f"), ("bound_bits", "bound", ".1f")])
    md += (f"\n\n1-minute load average before/after: {load:.2f} / {load_after:.2f} (shared machine). "
           f"l = {args.ring_bits} (per workload: the `l` field), κ = {he.KAPPA}, SEAL {he.he.SEAL_VERSION}, "
           f"batch 1, {args.threads} kernel thread(s).")
    if not complete:
        md += " **Partial: the run was still going when this file was written.**"
    write_results(args.json, "HE linear-layer correlations (BFV, SEAL)", rows, extra=extra, markdown=md)
