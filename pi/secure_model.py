"""`pi.compile` and `SecureModel`: a torch model turned into a two-party secure computation."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pi.compiler import RELU_CHOICES, SitePolicy, compile_plan
from protocols import engine
from protocols.fixed_point import DEFAULT_FRAC_BITS, FixedPoint
from protocols.material import plan_digest
from protocols.plan import (CIRCA, CIRCA_MODES, RELU, Activation, Conv2d, Linear,
                            MaxPool, Plan, ServerWeights)
from protocols.providers import get_provider

BUNDLE_FORMAT = 1


def _global_policy(relu: str, circa_k, circa_mode: str):
    if relu not in RELU_CHOICES:
        raise ValueError(f"relu must be one of {', '.join(RELU_CHOICES)}, got {relu!r}")
    if circa_mode not in CIRCA_MODES:
        raise ValueError(f"circa_mode must be one of {', '.join(CIRCA_MODES)}, got {circa_mode!r}")
    code = RELU_CHOICES[relu]
    if code == CIRCA and circa_k is None:
        raise ValueError("relu='circa' needs circa_k (the number of low bits the sign test drops)")

    def policy(name, shape):
        if code == RELU:
            return SitePolicy()
        return SitePolicy(kinds=np.full(shape, code, np.int8), circa_k=circa_k, circa_mode=circa_mode)
    return policy


def compile(model: torch.nn.Module, example_input: torch.Tensor, *, policy=None, relu: str = "exact",
            circa_k: int | None = None, circa_mode: str = "poszero", provider: str = "dealer",
            frac_bits: int | None = None, calibration: torch.Tensor | None = None,
            output: str = "logits", ring_bits: int | str | None = None) -> "SecureModel":
    """Compiles a torch model for private inference.

    policy: a ReLU policy (path or object from relu-budget) saying per site what to compute;
    otherwise `relu` applies one choice everywhere ("exact" | "circa" | "poly" | "identity").
    relu="poly" fits, per channel, the degree-2 polynomial closest to ReLU under the input
    distribution seen on `calibration` (or the example): DaPa, as AutoReP initializes it. A
    network not trained for it loses accuracy; `relu-budget optimize --method autorep` trains
    the polynomials and writes a policy.
    calibration: representative inputs; bounds on every layer's magnitudes (with a 64x
    margin) let the comparison gates work on fewer bits and the shares live in a narrower
    ring. Inputs beyond them are not supported.
    ring_bits: the ring Z_(2^l): an int in 2..64, or "calibrated"; default "calibrated" when
    calibration is given, else 64.
    output: "logits", or "label" (the client learns only the argmax, via secure comparisons).
    """
    if output not in ("logits", "label"):
        raise ValueError(f"output must be 'logits' or 'label', got {output!r}")
    fp = FixedPoint(DEFAULT_FRAC_BITS if frac_bits is None else frac_bits)
    if policy is not None:
        from relu_budget.policy import load_policy  # the artifact written by relu-budget
        site_policy = load_policy(policy).site_policy
    else:
        site_policy = _global_policy(relu, circa_k, circa_mode)
    get_provider(provider)  # validate early
    plan, weights = compile_plan(model, example_input, site_policy=site_policy, fixed_point=fp,
                                 calibration=calibration, label_only=output == "label", ring_bits=ring_bits)
    return SecureModel(plan, weights, provider=provider)


@dataclass
class CostReport:
    online_bytes: int
    offline_bytes: int
    rounds: int
    online_seconds: float
    offline_seconds: float
    per_layer: list[dict]
    material_bytes: dict

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def table(self) -> str:
        def mb(b):
            return f"{b / 1e6:.2f} MB"
        lines = [f"{'phase':<8} {'bytes':>12} {'seconds':>9}",
                 f"{'offline':<8} {mb(self.offline_bytes):>12} {self.offline_seconds:>9.3f}",
                 f"{'online':<8} {mb(self.online_bytes):>12} {self.online_seconds:>9.3f}",
                 f"online rounds: {self.rounds}"]
        return "\n".join(lines)


class SecureModel:
    """A compiled model: the public plan, the server's private weights, a provider."""

    def __init__(self, plan: Plan, weights: ServerWeights | None, provider: str = "dealer") -> None:
        self.plan, self.weights, self.provider = plan, weights, provider
        self.last_cost: CostReport | None = None
        self.recorded_digests: dict | None = None   # from a loaded bundle (see bundle_digests)

    @property
    def fixed_point(self) -> FixedPoint:
        return self.plan.fixed_point

    def run(self, x: torch.Tensor | np.ndarray, timeout: float = 600.0) -> torch.Tensor:
        """The full protocol in one process: dealer, server and client (two threads) over an
        in-process channel that counts bytes and rounds like the TLS one. Returns the output."""
        if self.weights is None:
            raise RuntimeError("this SecureModel holds no weights (a client-side spec): use pi.connect")
        from protocols.cost import CostMeter
        from protocols.transport.channel import InProcessChannel

        x = torch.as_tensor(x).detach().double().numpy()
        if x.shape == tuple(self.plan.input_shape):
            x = x[None]
        batch = x.shape[0]
        engine.check_input(self.plan, x, batch)   # before any party starts
        provider = get_provider(self.provider)
        t0 = time.perf_counter()
        client_mat, server_mat = provider.preprocess(self.plan, batch)
        deal_s = time.perf_counter() - t0
        material_bytes = {"client": client_mat.nbytes, "server": server_mat.nbytes}
        meter_s, meter_c = CostMeter("server"), CostMeter("client")
        chan_s, chan_c = InProcessChannel.pair(meter_s, meter_c)
        result: dict = {}
        errors: list[BaseException] = []

        def server():
            try:
                run = engine.ServerRun(self.plan, self.weights, server_mat, batch)
                run.offline(chan_s)
                run.online(chan_s)
                result["server_t"] = run.timings
            except BaseException as exc:  # surfaced below
                errors.append(exc)
                chan_s.close()

        th = threading.Thread(target=server, name="pi-server", daemon=True)
        th.start()
        try:
            run = engine.ClientRun(self.plan, client_mat, batch)
            run.offline(chan_c)
            y = run.online(chan_c, x)
            result["client_t"] = run.timings
        except BaseException:
            chan_c.close()
            th.join(5)
            if errors:
                raise errors[0]
            raise
        th.join(timeout)
        if errors:
            raise errors[0]
        rep_s, rep_c = meter_s.report(), meter_c.report()
        merged = rep_s.merge(rep_c)
        self.last_cost = CostReport(
            online_bytes=merged.online_bytes,
            offline_bytes=merged.offline_bytes + sum(material_bytes.values()),
            rounds=merged.rounds,
            online_seconds=max(result["client_t"]["online_s"], result.get("server_t", {}).get("online_s", 0)),
            offline_seconds=deal_s + max(result["client_t"]["offline_s"], result.get("server_t", {}).get("offline_s", 0)),
            per_layer=[r.to_dict() for r in merged.per_layer], material_bytes=material_bytes)
        return torch.from_numpy(y)

    # -- introspection --------------------------------------------------------------------
    def summary(self) -> str:
        rows = self.layer_rows()
        head = f"{'layer':<24} {'op':<11} {'relu':>7} {'circa':>7} {'poly':>6} {'ident':>7} {'MMACs':>8} " \
               f"{'online KB':>10} {'rounds':>6}"
        lines = [head, "-" * len(head)]
        for r in rows:
            lines.append(f"{r['layer']:<24} {r['op']:<11} {r['relu']:>7} {r['circa']:>7} {r['poly']:>6} "
                         f"{r['identity']:>7} {r['macs'] / 1e6:>8.3f} {r['online_bytes'] / 1e3:>10.1f} {r['rounds']:>6}")
        tot = {k: sum(r[k] for r in rows) for k in ("relu", "circa", "poly", "identity", "macs", "online_bytes", "rounds")}
        lines.append("-" * len(head))
        lines.append(f"{'total':<24} {'':<11} {tot['relu']:>7} {tot['circa']:>7} {tot['poly']:>6} {tot['identity']:>7} "
                     f"{tot['macs'] / 1e6:>8.3f} {tot['online_bytes'] / 1e3:>10.1f} {tot['rounds']:>6}")
        how = " (narrowest ring for the calibrated bounds)" if self.plan.meta.get("ring") == "calibrated" else ""
        lines.append(f"fixed point: {self.fixed_point.frac_bits} fractional bits in Z_2^{self.plan.ring_bits}{how}; "
                     "predicted per example")
        lines.append(f"local-truncation failure probability per example ≤ {self.truncation_failure_bound():.2e} "
                     "(gates and Truncate ops are faithful; identity sites truncate locally)")
        return "\n".join(lines)

    def truncation_failure_bound(self) -> float:
        """Upper bound on the probability that some local truncation of one example fails
        (Plan.truncation_failure_bound: |v|/2^l per truncated value)."""
        return self.plan.truncation_failure_bound()

    def layer_rows(self) -> list[dict]:
        """Per op: site counts by kind, MACs and predicted online bytes/rounds (per example)."""
        from protocols import gates
        rows = []
        eb = self.plan.ring.elem_bytes           # bytes per ring element on the wire
        for op in self.plan.ops:
            t_out = self.plan.tensor(op.output) if op.output >= 0 else None
            row = {"layer": op.name, "op": op.kind, "relu": 0, "circa": 0, "poly": 0, "identity": 0, "macs": 0,
                   "online_bytes": 0, "rounds": 0}
            if isinstance(op, Activation):
                counts = op.site_counts(self.plan.tensor(op.inputs[0]).size)
                row.update(counts)
                gate_sites = counts["relu"] + counts["circa"] + counts["poly"]
                row["online_bytes"] = int(2 * eb * gate_sites + counts["circa"] * gates.extra_online_bytes("circa"))
                row["rounds"] = 1 + (1 if counts["circa"] else 0) if gate_sites else 0
            elif isinstance(op, MaxPool):
                n = t_out.size
                levels = int(np.ceil(np.log2(op.kernel[0] * op.kernel[1])))
                row["relu"] = n * (op.kernel[0] * op.kernel[1] - 1)
                row["online_bytes"] = 2 * eb * row["relu"]
                row["rounds"] = levels
            elif isinstance(op, Conv2d):
                oc, ic, kh, kw = op.weight_shape
                row["macs"] = t_out.size * ic * kh * kw
            elif isinstance(op, Linear):
                row["macs"] = int(np.prod(op.weight_shape))
            elif op.kind == "Output" and op.label_only:
                c = self.plan.tensor(op.inputs[0]).size
                row["relu"] = 0
                row["online_bytes"], row["rounds"] = 2 * eb * (c * (c - 1) // 2 + c) + eb, 3
            elif op.kind in ("Input", "Output"):
                t = self.plan.tensor(op.output if op.kind == "Input" else op.inputs[0])
                row["online_bytes"], row["rounds"] = eb * t.size, 1
            if op.kind in ("Activation", "MaxPool", "Conv2d", "Linear", "Input", "Output"):
                rows.append(row)
        return rows

    def public_spec(self) -> dict:
        """What a client may know: architecture, policy, fixed point. No weights."""
        return {"format": BUNDLE_FORMAT, "plan": self.plan.to_dict(), "provider": self.provider}

    @classmethod
    def from_public_spec(cls, spec: dict) -> "SecureModel":
        if spec.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"spec format {spec.get('format')!r} is not supported (expected {BUNDLE_FORMAT})")
        return cls(Plan.from_dict(spec["plan"]), None, spec.get("provider", "dealer"))

    def save(self, path: str | Path) -> Path:
        """The server's bundle: public spec + private weights (npz, no pickle)."""
        if self.weights is None:
            raise RuntimeError("a client-side spec has no weights to save")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"w:{k}": v for k, v in self.weights.weights.items()}
        arrays.update({f"b:{k}": v for k, v in self.weights.biases.items()})
        spec = json.dumps(self.public_spec()).encode()
        digest = json.dumps(bundle_digests(self.plan, self.weights)).encode()
        with open(path, "wb") as f:
            np.savez(f, __spec__=np.frombuffer(spec, np.uint8), __digest__=np.frombuffer(digest, np.uint8), **arrays)
        return path


def bundle_digests(plan, weights: ServerWeights) -> dict:
    """SHA-256 of the public plan and of the weights (names, dtypes, shapes, bytes): written
    into a bundle by `save`, checked by `pi serve` at start-up."""
    h = hashlib.sha256()
    for kind, table in (("w", weights.weights), ("b", weights.biases)):
        for name in sorted(table):
            a = np.ascontiguousarray(table[name])
            h.update(f"{kind}:{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
    return {"plan": plan_digest(plan.to_dict()), "weights": h.hexdigest()}


def load(path: str | Path) -> SecureModel:
    """Loads a server bundle written by SecureModel.save."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no secure-model bundle at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            spec = json.loads(bytes(z["__spec__"]).decode())
            recorded = json.loads(bytes(z["__digest__"]).decode()) if "__digest__" in z.files else None
            w = ServerWeights({k[2:]: z[k] for k in z.files if k.startswith("w:")},
                              {k[2:]: z[k] for k in z.files if k.startswith("b:")})
    except (ValueError, KeyError, OSError) as exc:
        raise ValueError(f"{path} is not a secure-model bundle: {exc}") from exc
    model = SecureModel.from_public_spec(spec)
    model.weights = w
    model.recorded_digests = recorded     # None for bundles written before digests existed
    return model
