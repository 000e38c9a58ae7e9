"""CrypTen 0.4.1 as the baseline of `pi bench relu` and `pi bench model`.

CrypTen runs as two OS processes (rank 0 = the server, holding the weights; rank 1 = the
client, holding the input) that talk torch.distributed/gloo over loopback TCP (plain TCP:
CrypTen has no TLS). Costs come from CrypTen's own communicator statistics
(`cfg.communicator.verbose = True`): each party logs the elements it sends and receives per
collective, so the total traffic is (bytes of rank 0 + bytes of rank 1) / 2 (CrypTen's own
rule), and the round count is each party's number of communication calls (the larger one).

Preprocessing: CrypTen's default provider, TFP ("trusted first party"), makes every Beaver
triple and wrap pair *during* the online computation, locally from seeds that party 0 knows
entirely (insecure: for testing). It has no offline phase, so its offline cost is not
comparable with a dealer's and is reported as unknown, never as zero; its online seconds
include the triple generation.

Setup: benchmarks/setup_crypten.sh. On current PyTorch `import crypten` needs
`torch.onnx._internal.registration`, which moved; `install_import_stub()` puts an empty
module under that name into `sys.modules` of the calling process only (never into
site-packages). Models are rebuilt from `crypten.nn` modules (CrypTen's ONNX importer fails
on the new exporter), with BatchNorm folded into the preceding convolution exactly as
`pi.compile` folds it.
"""
from __future__ import annotations

import importlib.util
import multiprocessing as mp
import operator
import os
import queue
import socket
import statistics
import sys
import time
import traceback
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from pi.compiler import _fold_bn, _Tracer
from relu_budget.models import ReluSite

# Local imports: crypten is imported only after install_import_stub() and inside the party processes.

CRYPTEN_VERSION = "0.4.1"
PROVIDER_NOTE = ("CrypTen TFP provider: triples are generated inside party 0 during the online phase "
                 "(insecure test provider); no offline phase, offline cost not comparable")
TRANSPORT_NOTE = "CrypTen: 2 processes, torch.distributed gloo over loopback TCP (no TLS)"
_STUB = "torch.onnx._internal.registration"


def install_import_stub() -> bool:
    """Makes `import crypten` work on current PyTorch: registers an empty module named
    torch.onnx._internal.registration in this process (only if the real one is missing).
    Returns True when the stub was installed."""
    if _STUB in sys.modules:
        return False
    try:
        importlib.import_module(_STUB)
        return False
    except ImportError:
        pass
    stub = types.ModuleType(_STUB)
    stub.registry = None          # crypten only imports the name; its ONNX path is never used here
    sys.modules[_STUB] = stub
    return True


def crypten_available() -> tuple[bool, str]:
    """(True, "") when crypten imports in this process (after the stub), else (False, why)."""
    if importlib.util.find_spec("crypten") is None:
        return False, "crypten is not installed (run benchmarks/setup_crypten.sh)"
    install_import_stub()
    try:
        import crypten  # noqa: F401
    except Exception as exc:  # noqa: BLE001 -- a broken install must not break the benchmark of our system
        return False, f"crypten does not import: {type(exc).__name__}: {exc}"
    return True, ""


def use_baseline(flag: str) -> tuple[bool, str]:
    """`--crypten auto|on|off` → (run the baseline?, why not). `on` without a working CrypTen
    stops the benchmark with the reason; `auto` runs it when it imports."""
    if flag == "off":
        return False, "disabled (--crypten off)"
    ok, why = crypten_available()
    if not ok and flag == "on":
        raise SystemExit(f"--crypten on: {why}")
    return ok, why


# --------------------------------------------------------------------------------------------
# The same network from crypten.nn modules
# --------------------------------------------------------------------------------------------

def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def graph_steps(model, example) -> tuple[list[tuple], dict, str]:
    """Walks the model's torch.fx graph like pi.compile does. Returns (steps, layers, output):
    steps are (out, kind, layer name or None, input names); layers map names to
    (kind, parameters) with BatchNorm folded into the preceding convolution."""
    model = model.eval()
    graph = _Tracer().trace(model)
    gm = fx.GraphModule(model, graph)
    modules = dict(gm.named_modules())
    shapes: dict[str, tuple] = {}
    interp = fx.Interpreter(gm)
    run_node = interp.run_node

    def record(n):
        out = run_node(n)
        if isinstance(out, torch.Tensor):
            shapes[n.name] = tuple(out.shape[1:])
        return out
    interp.run_node = record
    with torch.no_grad():
        interp.run(example[:1].float())

    steps, layers, folded, output = [], {}, set(), None
    for node in graph.nodes:
        args = [a.name for a in node.args if isinstance(a, fx.Node)]
        name = node.name
        if node.op == "placeholder":
            steps.append((name, "input", None, []))
        elif node.op == "output":
            output = node.args[0].name
        elif node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, nn.Conv2d):
                nxt = list(node.users)
                if len(nxt) == 1 and nxt[0].op == "call_module" and isinstance(modules[nxt[0].target], nn.BatchNorm2d):
                    w, b = _fold_bn(m, modules[nxt[0].target])
                    folded.add(nxt[0].name)
                else:
                    w = m.weight.detach().double().numpy()
                    b = None if m.bias is None else m.bias.detach().double().numpy()
                layers[name] = ("conv", {"weight": w, "bias": b, "stride": _pair(m.stride), "padding": _pair(m.padding)})
                steps.append((name, "layer", name, args))
            elif isinstance(m, nn.BatchNorm2d):
                if name not in folded:
                    raise ValueError(f"CrypTen baseline: standalone BatchNorm2d {node.target} is not supported")
                steps.append((name, "alias", None, args))
            elif isinstance(m, nn.Linear):
                layers[name] = ("linear", {"weight": m.weight.detach().double().numpy(),
                                           "bias": None if m.bias is None else m.bias.detach().double().numpy()})
                steps.append((name, "layer", name, args))
            elif isinstance(m, (nn.ReLU, ReluSite)):
                if isinstance(m, ReluSite) and not m.is_plain_relu:
                    raise ValueError(f"CrypTen baseline runs all-exact ReLU only; {node.target} has a policy")
                layers[name] = ("relu", {})
                steps.append((name, "layer", name, args))
            elif isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
                kind = "avgpool" if isinstance(m, nn.AvgPool2d) else "maxpool"
                layers[name] = (kind, {"kernel": _pair(m.kernel_size), "stride": _pair(m.stride or m.kernel_size),
                                       "padding": _pair(m.padding)})
                steps.append((name, "layer", name, args))
            elif isinstance(m, nn.AdaptiveAvgPool2d):
                _, h, w = shapes[node.args[0].name]
                oh, ow = _pair(m.output_size)
                k = (h // oh, w // ow)
                layers[name] = ("avgpool", {"kernel": k, "stride": k, "padding": (0, 0)})
                steps.append((name, "layer", name, args))
            elif isinstance(m, nn.Flatten):
                steps.append((name, "flatten", None, args))
            elif isinstance(m, (nn.Dropout, nn.Identity)):
                steps.append((name, "alias", None, args))
            else:
                raise ValueError(f"CrypTen baseline: module {type(m).__name__} ({node.target}) is not supported")
        elif node.op == "call_function":
            if node.target in (operator.add, torch.add, operator.iadd):
                steps.append((name, "add", None, args))
            elif node.target in (F.relu, torch.relu):
                layers[name] = ("relu", {})
                steps.append((name, "layer", name, args))
            elif node.target is torch.flatten:
                steps.append((name, "flatten", None, args))
            else:
                raise ValueError(f"CrypTen baseline: function {node.target} is not supported")
        elif node.op == "call_method" and node.target in ("view", "reshape", "flatten"):
            steps.append((name, "flatten", None, args))
        elif node.op == "call_method" and node.target == "contiguous":
            steps.append((name, "alias", None, args))
        else:
            raise ValueError(f"CrypTen baseline: node {node.op} {node.target} is not supported")
    return steps, layers, output


def build_crypten_model(steps, layers, output, with_weights: bool = True):
    """A crypten.nn.Module running `steps`; parameters are the given weights (the server, rank
    0) or zeros of the same shapes (the client, whose values CrypTen ignores on encryption)."""
    import crypten.nn as cnn
    class FxGraph(cnn.Module):
        def __init__(self):
            super().__init__()
            self.steps, self.output = steps, output

        def forward(self, x):
            env = {}
            for out, kind, layer, args in self.steps:
                if kind == "input":
                    env[out] = x
                elif kind == "layer":
                    env[out] = self._modules[layer](env[args[0]])
                elif kind == "add":
                    env[out] = env[args[0]] + env[args[1]]
                elif kind == "flatten":
                    v = env[args[0]]
                    env[out] = v.view(v.size(0), -1)
                else:
                    env[out] = env[args[0]]
            return env[self.output]

    def tensor(a):
        t = torch.as_tensor(np.asarray(a), dtype=torch.float32)
        return t if with_weights else torch.zeros_like(t)

    g = FxGraph()
    for name, (kind, p) in layers.items():
        if kind == "conv":
            oc, ic, kh, kw = p["weight"].shape
            m = cnn.Conv2d(ic, oc, (kh, kw), stride=p["stride"], padding=p["padding"], bias=True)
            m.set_parameter("weight", tensor(p["weight"]))
            m.set_parameter("bias", tensor(p["bias"] if p["bias"] is not None else np.zeros(oc)))
        elif kind == "linear":
            out_f, in_f = p["weight"].shape
            m = cnn.Linear(in_f, out_f, bias=True)
            m.set_parameter("weight", tensor(p["weight"]))
            m.set_parameter("bias", tensor(p["bias"] if p["bias"] is not None else np.zeros(out_f)))
        elif kind == "relu":
            m = cnn.ReLU()
        elif kind == "avgpool":
            m = cnn.AvgPool2d(p["kernel"], stride=p["stride"], padding=p["padding"])
        elif kind == "maxpool":
            m = cnn.MaxPool2d(p["kernel"], stride=p["stride"], padding=p["padding"])
        else:
            raise ValueError(f"unknown layer kind {kind}")
        g.add_module(name, m)
    return g


# --------------------------------------------------------------------------------------------
# Two processes
# --------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _party_entry(rank: int, port: int, workload: str, args: dict, out: mp.Queue, threads: int) -> None:
    os.environ.update({"DISTRIBUTED_BACKEND": "gloo", "RENDEZVOUS": f"tcp://127.0.0.1:{port}",
                       "WORLD_SIZE": "2", "RANK": str(rank), "GLOO_SOCKET_IFNAME": "lo"})
    try:
        torch.set_num_threads(threads)
        install_import_stub()
        import warnings

        import crypten
        warnings.filterwarnings("ignore")
        crypten.init()
        crypten.cfg.communicator.verbose = True
        try:
            result = {"relu": _relu_workload, "model": _model_workload}[workload](rank, args)
        finally:
            crypten.uninit()
        out.put((rank, "ok", result))
    except BaseException:  # noqa: BLE001 -- the parent process reports the party's traceback
        out.put((rank, "error", traceback.format_exc()))


def run_two_parties(workload: str, args: dict, threads: int = 1, timeout: float = 3600.0) -> list[dict]:
    """Runs a workload in two spawned CrypTen processes; returns [rank 0 result, rank 1 result]."""
    ok, why = crypten_available()
    if not ok:
        raise RuntimeError(why)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_party_entry, args=(r, port, workload, args, out, threads),
                         name=f"crypten-rank{r}", daemon=True) for r in range(2)]
    for p in procs:
        p.start()
    results: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(results) < 2:
            try:
                rank, status, payload = out.get(timeout=1.0)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CrypTen {workload} did not finish within {timeout:.0f} s") from None
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"CrypTen party {dead[0].name} exited with code {dead[0].exitcode}")
                continue
            if status != "ok":
                raise RuntimeError(f"CrypTen party {rank} failed:\n{payload}")
            results[rank] = payload
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
    return [results[0], results[1]]


def _measure(fn):
    """Runs fn between a barrier and a stats snapshot: (seconds, bytes, rounds) of this party."""
    import crypten.communicator as comm
    c = comm.get()
    c.barrier()
    c.reset_communication_stats()
    t0 = time.perf_counter()
    value = fn()
    dt = time.perf_counter() - t0
    st = c.get_communication_stats()
    return value, dt, float(st["bytes"]), int(st["rounds"])


def _relu_workload(rank: int, args: dict) -> dict:
    import crypten
    out = {}
    for n in args["sizes"]:
        g = torch.Generator().manual_seed(1234 + n)
        x = torch.randn(n, generator=g) * args.get("std", 1.0)
        enc = crypten.cryptensor(x if rank == 0 else torch.zeros(n), src=0)
        enc.relu()                                     # warm-up
        runs = []
        for _ in range(args["repeats"]):
            y, dt, nbytes, rounds = _measure(enc.relu)
            runs.append((dt, nbytes, rounds))
        plain = y.get_plain_text()
        err = float((plain - torch.relu(x)).abs().max()) if rank == 0 else None
        out[n] = {"runs": runs, "max_abs_err": err}
    return out


def _model_workload(rank: int, args: dict) -> dict:
    import crypten
    steps, layers, output = args["graph"]
    model = build_crypten_model(steps, layers, output, with_weights=(rank == 0))
    model.encrypt(src=0)
    model.eval()
    images = torch.as_tensor(args["images"], dtype=torch.float32)

    def infer(xb):
        x = crypten.cryptensor(xb if rank == 1 else torch.zeros_like(xb), src=1)
        with crypten.no_grad():
            return model(x).get_plain_text(dst=1)

    result = {"timing": {}, "eval": None}
    infer(images[:1])                                  # warm-up
    for batch in args["batches"]:
        runs = []
        for i in range(args["repeats"]):
            start = (i * batch) % max(1, len(images) - batch + 1)
            xb = images[start:start + batch]
            _, dt, nbytes, rounds = _measure(lambda xb=xb: infer(xb))
            runs.append((dt, nbytes, rounds))
        result["timing"][batch] = runs
    n_eval, eb = args["eval_images"], args["eval_batch"]
    if n_eval:
        logits = []
        for s in range(0, n_eval, eb):
            y = infer(images[s:min(s + eb, n_eval)])
            if rank == 1:
                logits.append(y.double().numpy())
        result["eval"] = np.concatenate(logits) if rank == 1 else None
    return result


def combine_runs(runs0: list, runs1: list) -> dict:
    """Per-run (seconds, bytes, rounds) of both parties → medians/min/max over runs of the
    slower party's seconds, the total traffic ((b0 + b1) / 2) and the larger round count."""
    secs = [max(a[0], b[0]) for a, b in zip(runs0, runs1)]
    nbytes = [(a[1] + b[1]) / 2 for a, b in zip(runs0, runs1)]
    rounds = [max(a[2], b[2]) for a, b in zip(runs0, runs1)]
    return {"online_s": statistics.median(secs), "online_s_min": min(secs), "online_s_max": max(secs),
            "online_bytes": statistics.median(nbytes), "rounds": int(statistics.median(rounds)),
            "repeats": len(secs)}


def relu_costs(sizes: list[int], repeats: int, threads: int = 1) -> dict[int, dict]:
    """CrypTen's ReLU on vectors of each size: per size, combined costs (see combine_runs)."""
    r0, r1 = run_two_parties("relu", {"sizes": list(sizes), "repeats": repeats}, threads)
    out = {}
    for n in sizes:
        c = combine_runs(r0[n]["runs"], r1[n]["runs"])
        c["max_abs_err"] = r0[n]["max_abs_err"]
        out[n] = c
    return out


def model_costs(model, images: np.ndarray, batches: list[int], repeats: int, eval_images: int,
                eval_batch: int, threads: int = 1) -> dict:
    """CrypTen private inference of `model` (all-exact ReLU). Returns {"timing": {batch:
    combined costs}, "logits": client logits of the first eval_images images}."""
    graph = graph_steps(model, torch.as_tensor(images[:1]))
    n_needed = max(eval_images, max(batches) * repeats)
    args = {"graph": graph, "images": np.asarray(images[:n_needed], dtype=np.float32), "batches": list(batches),
            "repeats": repeats, "eval_images": eval_images, "eval_batch": eval_batch}
    r0, r1 = run_two_parties("model", args, threads)
    return {"timing": {b: combine_runs(r0["timing"][b], r1["timing"][b]) for b in batches}, "logits": r1["eval"]}
