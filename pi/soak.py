"""`pi soak`: many clients against one `pi serve` + `pi dealer` deployment for a while.

The dealer and the server run as OS processes started from the command line (the way a
deployment runs them, with the default limits), the clients as threads of this process,
each with its own session, looping over the embedded samples. Every answer is compared
with the plaintext network the plan computes (`pi.compiler.plaintext_twin`): an answer is
wrong when a logit is off by more than `--tolerance` (default 2^-3; the fixed-point error of
the embedded model at 12 fractional bits is about 0.025 on its samples), or when the label
differs where the plaintext top-2 margin exceeds twice the tolerance. Reported: inferences per second,
latency p50/p95/max, errors, wrong answers, and the resident memory of the server and the
dealer (peak, and growth from the end of the warm-up, `min(60 s, S/2)`, to the end).
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from pi.bench.results import machine, write_results


def add_parser(sub) -> None:
    p = sub.add_parser("soak", help="load test: N clients against dealer and server processes for S seconds")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients, one session each")
    p.add_argument("--seconds", type=float, default=120.0, help="how long the clients run")
    p.add_argument("--batch", type=int, default=1, help="inputs per inference")
    p.add_argument("--tolerance", type=float, default=2 ** -3, help="largest |secure - plaintext| logit")
    p.add_argument("--workdir", default=None, help="keep certificates, bundle and logs here")
    p.add_argument("--json", default=None, help="write the result (with command, machine and load) here")
    p.set_defaults(func=run)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _load() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def run(args) -> int:
    import torch     # here, not at the top: `pi --help` imports this module

    import pi
    from pi.assets import load_default_model, load_samples
    from pi.compiler import plaintext_twin
    from pi.demo import _free_port, _wait_listening, stop_processes
    from pi.serving import Endpoint, connect
    from protocols.transport.certs import TlsConfig, write_self_signed

    if args.clients < 1 or args.seconds <= 0 or args.batch < 1:
        raise ValueError("--clients and --batch must be >= 1 and --seconds > 0")
    model, _ = load_default_model()
    samples = load_samples()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pi-soak-"))
    certs = {n: write_self_signed(work / "certs", n, overwrite=True) for n in ("server", "dealer", "client")}
    secure = pi.compile(model, samples.inputs[:1], relu="exact", calibration=samples.inputs)
    bundle = secure.save(work / "model.npz")
    with torch.no_grad():
        reference = plaintext_twin(model, secure.plan)(samples.inputs).double().numpy()

    sport, dport = _free_port(), _free_port()
    py = [sys.executable, "-m", "pi"]
    logs = {name: work / f"{name}.log" for name in ("dealer", "server")}
    own = lambda role: ["--cert", str(certs[role].cert), "--key", str(certs[role].key)]
    procs = {
        "dealer": subprocess.Popen(py + ["dealer", "--dealer-port", str(dport), *own("dealer"),
                                         "--server-cert", str(certs["server"].cert),
                                         "--client-cert", str(certs["client"].cert)],
                                   stdout=open(logs["dealer"], "w"), stderr=subprocess.STDOUT),
        "server": subprocess.Popen(py + ["serve", "--model", str(bundle), "--server-port", str(sport),
                                         "--dealer-port", str(dport), *own("server"),
                                         "--dealer-fingerprint", certs["dealer"].fingerprint],
                                   stdout=open(logs["server"], "w"), stderr=subprocess.STDOUT),
    }
    try:
        _wait_listening(dport, procs["dealer"], logs["dealer"])
        _wait_listening(sport, procs["server"], logs["server"])
        server = Endpoint("127.0.0.1", sport, TlsConfig(peer_fingerprint=certs["server"].fingerprint))
        dealer = Endpoint("127.0.0.1", dport, TlsConfig(certs["client"].cert, certs["client"].key,
                                                        peer_fingerprint=certs["dealer"].fingerprint))
        result = _soak(args, server, dealer, samples.inputs, reference, procs, connect)
    finally:
        stop_processes(procs.values())
    result.update({"clients": args.clients, "seconds": args.seconds, "batch": args.batch,
                   "tolerance": args.tolerance})
    if args.workdir:
        result["workdir"] = args.workdir
    print(_summary(result))
    if args.json:
        load = {"load_before": result.pop("load_before"), "load_after": result.pop("load_after")}
        write_results(args.json, "soak", [result], extra=load,
                      markdown="```\n" + _summary(result) + "\n```\n\n" + _load_line(load))
        print(f"wrote {args.json}")
    ok = result["errors"] == 0 and result["wrong"] == 0
    return 0 if ok else 1


def _soak(args, server, dealer, inputs, reference, procs, connect) -> dict:
    stop = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    wrong = [0]
    worst = [0.0]
    n = len(inputs)
    top2 = np.sort(reference, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * args.tolerance

    def client(i: int) -> None:
        rng = np.random.default_rng(i)
        remote = None
        while not stop.is_set():
            try:
                if remote is None:
                    remote = connect(server, dealer)
                idx = rng.integers(0, n, size=args.batch)
                t0 = time.perf_counter()
                y = remote.run(inputs[idx]).numpy()
                dt = time.perf_counter() - t0
                err = float(np.abs(y - reference[idx]).max())
                flipped = (y.argmax(1) != reference[idx].argmax(1)) & clear[idx]
                with lock:
                    latencies.append(dt)
                    wrong[0] += bool(err > args.tolerance or flipped.any())
                    worst[0] = max(worst[0], err)
            except Exception as exc:  # noqa: BLE001 -- counted and reported; the client reconnects
                with lock:
                    errors.append(f"client {i}: {type(exc).__name__}: {exc}")
                if remote is not None:
                    remote.close()
                remote = None
        if remote is not None:
            remote.close()

    pids = {role: p.pid for role, p in procs.items()}
    warmup = min(60.0, args.seconds / 2)
    load_before = _load()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    rss = {role: [] for role in pids}
    at_warmup = None
    while (elapsed := time.monotonic() - t_start) < args.seconds:
        for role, pid in pids.items():
            rss[role].append(_rss(pid))
        if at_warmup is None and elapsed >= warmup:
            at_warmup = {role: v[-1] for role, v in rss.items()}
        time.sleep(min(1.0, args.seconds - elapsed))
    end = {role: _rss(pid) for role, pid in pids.items()}
    stop.set()
    for t in threads:
        t.join(120)
    wall = time.monotonic() - t_start
    at_warmup = at_warmup or {role: v[0] for role, v in rss.items()}
    lat = sorted(latencies)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None
    return {
        "inferences": len(lat), "inferences_per_s": len(lat) / wall, "images_per_s": len(lat) * args.batch / wall,
        "latency_p50_s": statistics.median(lat) if lat else None, "latency_p95_s": pct(0.95),
        "latency_max_s": lat[-1] if lat else None, "errors": len(errors), "error_samples": errors[:5],
        "wrong": wrong[0], "max_abs_err": worst[0], "warmup_s": warmup,
        **{f"{role}_rss_mb_warm": at_warmup[role] / 1e6 for role in pids},
        **{f"{role}_rss_mb_end": end[role] / 1e6 for role in pids},
        **{f"{role}_rss_mb_peak": max(rss[role] + [end[role]]) / 1e6 for role in pids},
        **{f"{role}_rss_growth_pct": 100.0 * (end[role] - at_warmup[role]) / at_warmup[role] for role in pids},
        "load_before": load_before, "load_after": _load(), "machine": machine()["cpu"],
    }


def _summary(r: dict) -> str:
    lines = [f"pi soak: {r['clients']} clients, {r['seconds']:g} s, batch {r['batch']} (embedded model, exact ReLU)",
             f"  inferences   {r['inferences']} ({r['inferences_per_s']:.2f}/s, {r['images_per_s']:.2f} images/s)"]
    if r["inferences"]:
        lines.append(f"  latency      p50 {r['latency_p50_s'] * 1e3:.0f} ms, p95 {r['latency_p95_s'] * 1e3:.0f} ms, "
                     f"max {r['latency_max_s'] * 1e3:.0f} ms")
    lines.append(f"  errors       {r['errors']}" + "".join(f"\n    {e}" for e in r["error_samples"]))
    lines.append(f"  wrong        {r['wrong']} (a logit off by more than {r['tolerance']:g}, or a clear label "
                 f"flipped; largest |secure - plaintext| {r['max_abs_err']:.4f})")
    for role in ("server", "dealer"):
        lines.append(f"  {role:<6} RSS   {r[f'{role}_rss_mb_warm']:.0f} MB after {r['warmup_s']:g} s warm-up -> "
                     f"{r[f'{role}_rss_mb_end']:.0f} MB at the end ({r[f'{role}_rss_growth_pct']:+.1f} %), "
                     f"peak {r[f'{role}_rss_mb_peak']:.0f} MB")
    return "\n".join(lines)


def _load_line(load: dict) -> str:
    fmt = lambda v: "/".join(f"{x:.2f}" for x in v) or "unknown"
    return (f"Load average (1/5/15 min) before the run {fmt(load['load_before'])}, after it "
            f"{fmt(load['load_after'])}; the dealer, the server and the 8 clients share the machine's cores "
            "with whatever else runs.")
