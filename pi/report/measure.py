"""The measurements a report takes itself (seconds each): in-process secure runs, Circa's fault
rate on the native gates and its simulated accuracy effect, and this machine.
"""
from __future__ import annotations

import copy
import math
import os
import platform
import statistics

import numpy as np

# Local imports: torch, pi and the relu_budget models are imported inside the measurements: `pi --help`
# imports pi.report.

CIRCA_KS = (12, 14, 16, 18, 20, 22, 24)


def measure_secure(model, example, policy=None, repeats: int = 3) -> dict:
    """Compiles and runs a model in process (dealer, server and client threads): the median of
    `repeats` runs of online/offline seconds, bytes, rounds and the per-layer meter rows."""
    import pi
    sm = pi.compile(model, example, policy=policy)
    runs = []
    for _ in range(max(1, repeats)):
        sm.run(example)
        runs.append(sm.last_cost)
    best = runs[len(runs) // 2]
    return {"online_s": statistics.median(c.online_seconds for c in runs),
            "offline_s": statistics.median(c.offline_seconds for c in runs),
            "online_bytes": best.online_bytes, "offline_bytes": best.offline_bytes, "rounds": best.rounds,
            "material_bytes": best.material_bytes, "per_layer": best.per_layer, "repeats": len(runs),
            "layer_rows": sm.layer_rows(), "summary": sm.summary(),
            "ops": [(op.name, op.kind) for op in sm.plan.ops], "ring_bits": sm.plan.ring_bits}


def measure_circa_faults(ks=CIRCA_KS, sigma_log2: int = 24, n: int = 200_000, mode: str = "poszero") -> list[dict]:
    """Fault rate of the native Circa gates on x ~ N(0, σ²) ulps: the fraction of outputs that
    differ from ReLU(x) (the x = 0 'fault' is invisible and not counted)."""
    import pi_native
    rng = np.random.default_rng(12345)          # ML-style randomness for the test inputs only
    rows = []
    sigma = 2.0 ** sigma_log2
    for k in ks:
        x = np.round(rng.normal(0.0, sigma, n)).astype(np.int64)
        r_in = np.frombuffer(os.urandom(8 * n), dtype=np.uint64).copy()
        r_out = np.frombuffer(os.urandom(8 * n), dtype=np.uint64).copy()
        k0, k1 = pi_native.gen_circa(os.urandom(16), r_in, r_out, k=k, mode=mode)
        xhat = x.view(np.uint64) + r_in
        opened = pi_native.eval_circa_sign(0, k0, xhat) ^ pi_native.eval_circa_sign(1, k1, xhat)
        y = (pi_native.eval_circa_select(0, k0, xhat, opened) + pi_native.eval_circa_select(1, k1, xhat, opened)
             - r_out).view(np.int64)
        faults = int(np.sum(y != np.maximum(x, 0)))
        rows.append({"k": k, "sigma_log2": sigma_log2, "n": n, "mode": mode, "faults": faults,
                     "rate": faults / n, "law": circa_law(k, sigma), "gaussian": circa_gaussian_rate(k, sigma)})
    return rows


def circa_gaussian_rate(k: int, sigma_ulps: float) -> float:
    """The fault law averaged over x ~ N(0, σ²) without approximating the density (PosZero:
    ∫_0^t φ_σ(x)·(1 − x/t) dx with t = 2^k, = Φ(a) − 1/2 − (φ(0) − φ(a))/a, a = t/σ); it tends to
    the law 2^k/(σ√(8π)) for 2^k ≪ σ and is below it as 2^k nears σ."""
    a = 2.0 ** k / sigma_ulps
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return 0.5 * (1 + math.erf(a / math.sqrt(2))) - 0.5 - (pdf(0.0) - pdf(a)) / a


def circa_law(k: int, sigma_ulps: float) -> float:
    """docs/fss.md: for Gaussian activations of std σ ulps the fault rate is
    about 2^k / (σ·√(8π)) (valid while 2^k ≪ σ)."""
    return 2.0 ** k / (sigma_ulps * math.sqrt(8 * math.pi))


def simulate_circa_accuracy(model, images, labels, ks=CIRCA_KS, seed: int = 0) -> list[dict]:
    """Plaintext accuracy of a model with every ReLU a Circa site (PosZero), faults drawn from
    the law at the engine's scale (relu_budget.circa_sim), one draw per k."""
    import torch

    from relu_budget import circa_sim
    from relu_budget.models import CIRCA, relu_sites
    rows = []
    with torch.no_grad():
        plain = (model(images).argmax(1).numpy() == labels).mean()
        for k in ks:
            m = copy.deepcopy(model).eval()
            for _, site in relu_sites(m):
                site.set_kinds(CIRCA)
                site.circa = {"k": int(k), "mode": "poszero"}
            with circa_sim.simulated(m, seed=seed + k):
                acc = (m(images).argmax(1).numpy() == labels).mean()
            rows.append({"k": k, "accuracy": float(acc), "plain_accuracy": float(plain),
                         "drop": float(plain - acc), "images": len(labels)})
    return rows


def this_machine() -> dict:
    try:
        from pi.bench.results import machine
        info = machine()
    except Exception as exc:  # noqa: BLE001 - the machine description must never stop a report
        info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "error": str(exc)}
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        info["load_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    return info
