"""Ring GEMM mod 2^64: pi_native.ring_matmul against numpy's uint64 matmul, in the same run."""
from __future__ import annotations

import numpy as np

import pi_native
from pi.bench.results import format_table, markdown_table, time_runs, write_results

NAME = "gemm"
HELP = "ring matrix product mod 2^64 (pi_native) vs numpy uint64 matmul"
COLUMNS = [("shape", "M×K×N", "s"), ("threads", "threads", "d"), ("native_ms", "native ms", ".2f"),
           ("numpy_ms", "numpy ms", ".2f"), ("native_gmacs", "native GMAC/s", ".3f"),
           ("numpy_gmacs", "numpy GMAC/s", ".3f"), ("speedup", "speedup ×", ".1f")]


def configure(p) -> None:
    p.add_argument("--sizes", default="128,256,512", help="square sizes, comma-separated")
    p.add_argument("--threads", default="1,2", help="kernel thread counts, comma-separated")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", metavar="PATH", help="write results (and a .md twin) here")


def run(args) -> int:
    sizes = [int(s) for s in args.sizes.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    old = pi_native.get_num_threads()
    try:
        for n in sizes:
            a = rng.integers(0, 2**64, (n, n), dtype=np.uint64, endpoint=False)
            b = rng.integers(0, 2**64, (n, n), dtype=np.uint64, endpoint=False)
            if not np.array_equal(pi_native.ring_matmul(a, b), a @ b):
                raise AssertionError(f"ring_matmul disagrees with numpy at {n}×{n}×{n}")
            ref = time_runs(lambda a=a, b=b: a @ b, args.repeats)
            for t in thread_counts:
                pi_native.set_num_threads(t)
                nat = time_runs(lambda a=a, b=b: pi_native.ring_matmul(a, b), args.repeats)
                macs = n ** 3
                rows.append({"shape": f"{n}×{n}×{n}", "m": n, "k": n, "n": n, "threads": t,
                             "native_ms": 1e3 * nat["median_s"], "native_min_ms": 1e3 * nat["min_s"],
                             "native_max_ms": 1e3 * nat["max_s"], "numpy_ms": 1e3 * ref["median_s"],
                             "native_gmacs": macs / nat["median_s"] / 1e9,
                             "numpy_gmacs": macs / ref["median_s"] / 1e9,
                             "speedup": ref["median_s"] / nat["median_s"], "repeats": args.repeats})
    finally:
        pi_native.set_num_threads(old)
    print(format_table(rows, COLUMNS))
    print("(medians; numpy's uint64 matmul is single-threaded, so its time is the same for each row)")
    if args.json:
        write_results(args.json, "ring GEMM mod 2^64 vs numpy uint64 matmul", rows,
                      markdown=markdown_table(rows, COLUMNS))
        print(f"wrote {args.json}")
    return 0
