"""`pi.compile` and `SecureModel`: a torch model turned into a two-party secure computation.

torch and the compiler are imported inside the functions that need them: a client or a server
loading a bundle (`pi infer`, `pi serve`) runs on numpy alone and starts in well under a second."""
from __future__ import annotations

import hashlib
import json
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pi.inputs import InputContract
from protocols import engine
from protocols.fixed_point import DEFAULT_FRAC_BITS, FixedPoint
from protocols.cost import format_bytes
from protocols.material import plan_digest
from protocols.plan import (CIRCA_MODES, RELU, Activation, Conv2d, Linear,
                            MaxPool, Plan, PlanError, ServerWeights)
from protocols.providers import get_provider

if TYPE_CHECKING:
    import torch

BUNDLE_FORMAT = 1


def default_circa_k(fp: FixedPoint) -> int:
    """Circa's dropped low bits when none are given: frac_bits + 4, i.e. values below 16 in
    magnitude (at one ulp of the truncated ring) may get a wrong sign; `pi bench` measures
    the accuracy this keeps."""
    return fp.frac_bits + 4


def _global_policy(relu: str, circa_k, circa_mode: str):
    from pi.compiler import RELU_CHOICES, SitePolicy
    if relu not in RELU_CHOICES:
        raise ValueError(f"relu must be one of {', '.join(RELU_CHOICES)}, got {relu!r}")
    if circa_mode not in CIRCA_MODES:
        raise ValueError(f"circa_mode must be one of {', '.join(CIRCA_MODES)}, got {circa_mode!r}")
    code = RELU_CHOICES[relu]

    def policy(name, shape):
        if code == RELU:
            return SitePolicy()
        return SitePolicy(kinds=np.full(shape, code, np.int8), circa_k=circa_k, circa_mode=circa_mode)
    return policy


def compile(model: torch.nn.Module, example_input: torch.Tensor, *, policy=None, relu: str = "exact",
            circa_k: int | None = None, circa_mode: str = "poszero", provider: str = "dealer",
            frac_bits: int | None = None, calibration: torch.Tensor | None = None,
            output: str = "logits", ring_bits: int | str | None = None, normalization: tuple | None = None,
            classes: list[str] | None = None, max_ring_bits: int | None = None) -> SecureModel:
    """Compiles a torch model for private inference.

    policy: a ReLU policy (path or object from relu-budget) saying per site what to compute;
    otherwise `relu` applies one choice everywhere ("exact" | "circa" | "poly" | "identity").
    relu="poly" fits, per channel, the degree-2 polynomial closest to ReLU under the input
    distribution seen on `calibration` (or the example): DaPa, as AutoReP initializes it. A
    network not trained for it loses accuracy; `relu-budget optimize --method autorep` trains
    the polynomials and writes a policy.
    circa_k: Circa's dropped low bits (default frac_bits + 4, see default_circa_k).
    calibration: representative inputs; bounds on the activations' magnitudes (with a 64x
    margin) let the comparison gates work on fewer bits. Their range becomes the input
    contract's: run() refuses inputs beyond 8x it (or clips them, with a warning). The bounds
    also let the shares live in a narrower ring.
    ring_bits: the ring Z_(2^l): an int in 2..64, or "calibrated"; default "calibrated" when
    calibration is given, else 64. max_ring_bits: a cap on the calibrated width (docs/engine.md).
    output: "logits", or "label" (the client learns only the argmax, via secure comparisons).
    normalization: (mean, std) per channel (or one number each) that maps pixel intensities in
    [0, 1] to the model's input; classes: one name per output. Both travel in the bundle's
    input contract (pi.inputs) so that `pi infer image.png` can prepare images and name the class.
    """
    import torch

    from pi.compiler import compile_plan
    if output not in ("logits", "label"):
        raise ValueError(f"output must be 'logits' or 'label', got {output!r}")
    fp = FixedPoint(DEFAULT_FRAC_BITS if frac_bits is None else frac_bits)
    if policy is not None:
        from relu_budget.policy import load_policy  # the artifact written by relu-budget
        site_policy = load_policy(policy).site_policy
    else:
        site_policy = _global_policy(relu, default_circa_k(fp) if circa_k is None else circa_k, circa_mode)
    prov = get_provider(provider)  # validate early
    if ring_bits is None and calibration is None:
        ring_bits = prov.max_ring_bits      # the widest ring the provider runs in
    cap = prov.max_ring_bits if max_ring_bits is None else max_ring_bits      # a calibrated width's cap
    if not isinstance(cap, int) or isinstance(cap, bool) or not 2 <= cap <= prov.max_ring_bits:
        raise ValueError(f"max_ring_bits must be an integer in 2..{prov.max_ring_bits}, got {max_ring_bits!r}")
    example_input = torch.as_tensor(example_input)
    kw = {"site_policy": site_policy, "fixed_point": fp, "calibration": calibration, "label_only": output == "label",
          "max_ring_bits": cap, "poly_word_bits": prov.poly_word_bits}
    plan, weights = compile_plan(model, example_input, ring_bits=ring_bits, **kw)
    if plan.meta.get("ring") == "calibrated" and prov.calibrated_ring_bits(plan) != plan.ring_bits:
        plan, weights = compile_plan(model, example_input, ring_bits=prov.calibrated_ring_bits(plan), **kw)
        plan.meta["ring"] = "calibrated"
    if plan.ring_bits > prov.max_ring_bits:
        raise PlanError(f"the {prov.name} provider runs in rings of at most {prov.max_ring_bits} bits; this model "
                        f"needs Z_2^{plan.ring_bits}: pass ring_bits ≤ {prov.max_ring_bits} (faithful truncations "
                        "are inserted where a scale needs them)")
    mean, std = (None, None) if normalization is None else normalization
    as_tuple = lambda v: None if v is None else tuple(float(a) for a in np.atleast_1d(np.asarray(v, float)))
    cal = None if calibration is None else torch.as_tensor(calibration).detach().double()
    contract = InputContract(tuple(plan.input_shape), str(example_input.dtype).removeprefix("torch."),
                             as_tuple(mean), as_tuple(std), None if classes is None else tuple(map(str, classes)),
                             None if cal is None else (float(cal.min()), float(cal.max())))
    n_out = plan.tensor(plan.output_op.inputs[0]).size
    if contract.classes is not None and len(contract.classes) != n_out:
        raise ValueError(f"classes has {len(contract.classes)} names; the model has {n_out} outputs")
    plan.meta["input"] = contract.to_dict()
    return SecureModel(plan, weights, provider=provider)


@dataclass
class CostReport:
    """The cost of one inference of a batch, counted the same way everywhere (secure.run,
    pi.connect / pi infer, pi demo, pi bench model):

    online_bytes   all online traffic between client and server, both directions (frames with
                   their 16-byte headers, as the meter counts them; TLS records not included)
    offline_bytes  all offline traffic between them, both directions, plus the preprocessing
                   material the dealer sends to both parties (its serialized size, as sent)
    rounds         online rounds: flights each party opens (a send after having received),
                   the maximum over the two parties; with strict request/response, round trips
    batch          the number of inputs in this inference: the figures are for all of them
    seconds        wall time of the client's phases (offline includes the dealer's work)
    stored_bytes   what the client keeps between the offline and the online phase for this
                   inference (dealer: its half of the material; two-party: the provider's count)
    provider       "dealer" or "two-party"
    preprocessed   the offline phase ran ahead of time (RemoteModel.preprocess): the online
                   figures are the latency the input saw
    """
    online_bytes: int
    offline_bytes: int
    rounds: int
    online_seconds: float
    offline_seconds: float
    per_layer: list[dict]
    material_bytes: dict
    batch: int = 1
    stored_bytes: int | None = None
    provider: str = "dealer"
    preprocessed: bool = False

    @classmethod
    def of_parties(cls, client, server, material_bytes: dict, batch: int, online_seconds: float,
                   offline_seconds: float, stored_bytes: int | None = None, provider: str = "dealer") -> CostReport:
        """Merges the two parties' meter reports (protocols.cost.CostReport): sent bytes add up
        to the traffic in both directions, rounds take the maximum over the parties."""
        merged = client.merge(server)
        return cls(online_bytes=merged.online_bytes,
                   offline_bytes=merged.offline_bytes + sum(material_bytes.values()),
                   rounds=merged.rounds, online_seconds=online_seconds, offline_seconds=offline_seconds,
                   per_layer=[r.to_dict() for r in merged.per_layer], material_bytes=dict(material_bytes),
                   batch=batch, stored_bytes=stored_bytes, provider=provider)

    @classmethod
    def of_phases(cls, offline, online, material_bytes: dict, batch: int, online_seconds: float,
                  offline_seconds: float, stored_bytes: int | None, provider: str,
                  preprocessed: bool = False) -> CostReport:
        """From the merged meter reports of an inference's offline phase and of its online
        phase, which may have run at different times (a preprocessed bundle)."""
        rows = [r for r in offline.per_layer if r.phase == "offline"] + \
            [r for r in online.per_layer if r.phase == "online"]
        return cls(online_bytes=online.online_bytes,
                   offline_bytes=offline.offline_bytes + sum(material_bytes.values()),
                   rounds=online.rounds, online_seconds=online_seconds, offline_seconds=offline_seconds,
                   per_layer=[r.to_dict() for r in rows], material_bytes=dict(material_bytes), batch=batch,
                   stored_bytes=stored_bytes, provider=provider, preprocessed=preprocessed)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def _offline_what(self) -> str:
        return "both directions, dealer material for both parties" if self.provider == "dealer" else \
            "both directions, client and server alone"

    def line(self) -> str:
        """One line: the figures pi infer and pi demo print."""
        stored = "" if self.stored_bytes is None else f"; client stores {format_bytes(self.stored_bytes)}"
        ahead = " ahead of time" if self.preprocessed else ""
        return (f"batch {self.batch}: online {self.online_bytes / 1e3:.1f} KB, {self.rounds} rounds, "
                f"{self.online_seconds:.3f} s; offline{ahead} {self.offline_bytes / 1e6:.2f} MB "
                f"({self._offline_what()}), {self.offline_seconds:.2f} s{stored}")

    def table(self) -> str:
        def mb(b):
            return f"{b / 1e6:.2f} MB"
        lines = [(f"one inference of a batch of {self.batch} ({self.provider} provider); bytes in "
                  f"{self._offline_what()}"),
                 f"{'phase':<8} {'bytes':>12} {'seconds':>9}",
                 f"{'offline':<8} {mb(self.offline_bytes):>12} {self.offline_seconds:>9.3f}",
                 f"{'online':<8} {mb(self.online_bytes):>12} {self.online_seconds:>9.3f}",
                 f"online rounds: {self.rounds}"]
        if self.stored_bytes is not None:
            lines.append(f"client storage for this inference: {format_bytes(self.stored_bytes)}")
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

    @property
    def input_contract(self) -> InputContract:
        """Shape, dtype, normalization, class names and calibrated range of the input."""
        return InputContract.of_plan(self.plan)

    def run(self, x: torch.Tensor | np.ndarray, timeout: float = 600.0, out_of_range: str = "refuse") -> torch.Tensor:
        """The full protocol in one process: dealer, server and client (two threads) over an
        in-process channel that counts bytes and rounds like the TLS one. Returns the output.

        x: one input or a batch, checked against the input contract (shape, dtype); values
        beyond 8x the calibrated range (pi.inputs: what calibration's margin covers) are refused,
        or clipped with an InputRangeWarning with out_of_range="clip"."""
        if self.weights is None:
            raise RuntimeError("this SecureModel holds no weights (a client-side spec): use pi.connect")
        from protocols.cost import CostMeter
        from protocols.material import Material
        from protocols.transport.channel import InProcessChannel

        x = self.input_contract.check(x, out_of_range)
        batch = x.shape[0]
        engine.check_input(self.plan, x, batch)   # before any party starts
        provider = get_provider(self.provider)
        if provider.interactive:
            return self._run_interactive(x)
        t0 = time.perf_counter()
        # Each half goes through its wire format, as the dealer service sends it: the bytes
        # counted are the bytes a deployment moves.
        payloads = dict(zip(("client", "server"), (m.to_bytes() for m in provider.preprocess(self.plan, batch))))
        client_mat, server_mat = (Material.from_bytes(payloads[p]) for p in ("client", "server"))
        deal_s = time.perf_counter() - t0
        material_bytes = {p: len(b) for p, b in payloads.items()}
        del payloads
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
            except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread below
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
        self.last_cost = CostReport.of_parties(
            meter_c.report(), meter_s.report(), material_bytes, batch,
            online_seconds=max(result["client_t"]["online_s"], result.get("server_t", {}).get("online_s", 0)),
            offline_seconds=deal_s + max(result["client_t"]["offline_s"],
                                         result.get("server_t", {}).get("offline_s", 0)),
            stored_bytes=material_bytes["client"])
        import torch
        return torch.from_numpy(y)

    def _run_interactive(self, x: np.ndarray) -> torch.Tensor:
        """run() for a provider without a dealer: both sessions (setup, offline, online) over an
        in-process channel pair; offline traffic is what the parties exchange."""
        from protocols.cost import CostMeter
        from protocols.transport.channel import InProcessChannel
        from protocols.two_party import local

        meter_s, meter_c = CostMeter("server"), CostMeter("client")
        y, server, client, bundle = local.run(self.plan, self.weights, x, InProcessChannel.pair(meter_s, meter_c))
        phase = lambda key: max(server.timings[key], client.timings[key])
        self.last_cost = CostReport.of_parties(meter_c.report(), meter_s.report(), {}, x.shape[0],
                                               online_seconds=phase("online_s"),
                                               offline_seconds=phase("setup_s") + phase("offline_s"),
                                               stored_bytes=bundle.stored_bytes, provider=self.provider)
        import torch
        return torch.from_numpy(y)

    # -- introspection --------------------------------------------------------------------
    def summary(self, batch: int = 1) -> str:
        """Per layer: ReLU sites by kind, MACs and the predicted online bytes and rounds of one
        inference of `batch` inputs, counted as CostReport counts them (run() measures the same)."""
        rows = self.layer_rows(batch)
        head = f"{'layer':<24} {'op':<11} {'relu':>7} {'circa':>7} {'poly':>6} {'ident':>7} {'MMACs':>8} " \
               f"{'online KB':>10} {'rounds':>6}"
        lines = [head, "-" * len(head)]
        for r in rows:
            lines.append(f"{r['layer']:<24} {r['op']:<11} {r['relu']:>7} {r['circa']:>7} {r['poly']:>6} "
                         f"{r['identity']:>7} {r['macs'] / 1e6:>8.3f} {r['online_bytes'] / 1e3:>10.1f} {r['rounds']:>6}")
        tot = {k: sum(r[k] for r in rows) for k in ("relu", "circa", "poly", "identity", "macs", "online_bytes")}
        lines.append("-" * len(head))
        lines.append(f"{'total':<24} {'':<11} {tot['relu']:>7} {tot['circa']:>7} {tot['poly']:>6} {tot['identity']:>7} "
                     f"{tot['macs'] / 1e6:>8.3f} {tot['online_bytes'] / 1e3:>10.1f} {self.predicted_rounds(batch):>6}")
        lines.append(f"predicted for one inference of a batch of {batch}: online bytes in both directions; "
                     "total rounds = the most any party opens (the input's and the output's flights form one "
                     "round trip, so they are less than the column's sum)")
        how = " (narrowest ring for the calibrated bounds)" if self.plan.meta.get("ring") == "calibrated" else ""
        lines.append(f"fixed point: {self.fixed_point.frac_bits} fractional bits in Z_2^{self.plan.ring_bits}{how}")
        lines.append(f"local-truncation failure probability per example ≤ {self.truncation_failure_bound():.2e} "
                     "(gates and Truncate ops are faithful; identity sites truncate locally)")
        return "\n".join(lines)

    def predicted_rounds(self, batch: int = 1) -> int:
        """Online rounds of one inference, as the cost meter counts them (max over parties)."""
        rows = self.layer_rows(batch)
        return max(sum(r["client_rounds"] for r in rows), sum(r["server_rounds"] for r in rows))

    def truncation_failure_bound(self) -> float:
        """Upper bound on the probability that some local truncation of one example fails
        (Plan.truncation_failure_bound: |v|/2^l per truncated value)."""
        return self.plan.truncation_failure_bound()

    def layer_rows(self, batch: int = 1) -> list[dict]:
        """Per op: site counts by kind (per example), MACs (per example), and the predicted online
        bytes (both directions, frames as metered) and rounds (the most either party opens) of
        one inference of `batch` inputs. Local ops without sites are left out."""
        rows = []
        for layer, nbytes, c_rounds, s_rounds in _predicted_rows(self.plan, batch):
            op = layer.op
            row = {"layer": op.name, "op": op.kind, "relu": 0, "circa": 0, "poly": 0, "identity": 0, "macs": 0,
                   "online_bytes": nbytes, "rounds": max(c_rounds, s_rounds),
                   "client_rounds": c_rounds, "server_rounds": s_rounds}
            if isinstance(op, Activation):
                row.update(op.site_counts(self.plan.tensor(op.inputs[0]).size))
            elif isinstance(op, MaxPool):
                k = op.kernel[0] * op.kernel[1]
                row["relu"] = self.plan.tensor(op.output).size * (k - 1)
            elif isinstance(op, Conv2d):
                _oc, ic, kh, kw = op.weight_shape
                row["macs"] = self.plan.tensor(op.output).size * ic * kh * kw
            elif isinstance(op, Linear):
                row["macs"] = int(np.prod(op.weight_shape))
            if op.kind in ("Activation", "MaxPool", "Conv2d", "Linear", "Input", "Output") or nbytes:
                rows.append(row)
        return rows

    def public_spec(self) -> dict:
        """What a client may know: architecture, policy, fixed point. No weights."""
        return {"format": BUNDLE_FORMAT, "plan": self.plan.to_dict(), "provider": self.provider}

    @classmethod
    def from_public_spec(cls, spec: dict) -> SecureModel:
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
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:   # EOFError: an empty file
        raise ValueError(f"{path} is not a secure-model bundle (from `pi compile` or SecureModel.save): "
                         f"{str(exc).strip() or type(exc).__name__}") from exc
    model = SecureModel.from_public_spec(spec)
    model.weights = w
    model.recorded_digests = recorded     # None for bundles written before digests existed
    return model


# -- predicted online traffic, frame by frame, as the engine's layers send it ---------------------

def _frame_bytes(shape: tuple[int, ...], itemsize: int = 1) -> int:
    """A frame carrying one array of this shape (frame header, array header, data)."""
    from protocols.transport.frame import ARRAY_HEADER, HEADER_SIZE
    return HEADER_SIZE + ARRAY_HEADER.size + 8 * len(shape) + itemsize * int(np.prod(shape))


def _ring_frame(ring, shape: tuple[int, ...]) -> int:
    """A frame of ring elements as protocols.layers.ring_send packs them."""
    n = int(np.prod(shape))
    return _frame_bytes(tuple(shape), 8) if ring.full else _frame_bytes(ring.wire_shape(n))


def _stage_actions(stage) -> tuple[list, list]:
    """A GateStage (protocols.layers): the server opens x̂ (the whole ring element, or for a
    polynomial group its narrow opening, in one flight), Circa gates exchange their packed sign
    bits (both send, then both receive), the client returns y0."""
    if not stage.n:
        return [], []
    server = [("send", _ring_frame(stage.ring, (stage.n_full,)))] if stage.n_full else []
    server += [("send", _ring_frame(ring, (stage._count(gi),))) for gi, ring in stage.narrow.items()]
    client = [RECV]
    for gi, (spec, *_) in enumerate(stage.specs):
        if spec.kind == "circa":
            bits = ("send", _frame_bytes(((stage._count(gi) + 7) // 8,), 1))
            client += [bits, RECV]
            server += [bits, RECV]
    return client + [("send", _ring_frame(stage.ring, (stage.n,)))], server + [RECV]


RECV = ("recv", 0)


def _online_actions(layer) -> tuple[list, list]:
    """(client's, server's) online sends and receives of one layer, in order."""
    from protocols import layers as L
    ring = layer.plan.ring
    if isinstance(layer, L.InputLayer):
        return [("send", _ring_frame(ring, L.shape_of(layer.plan, layer.op.output, layer.batch)))], [RECV]
    if isinstance(layer, L.LabelOutputLayer):
        (c1, s1), (c2, s2) = _stage_actions(layer.pairs), _stage_actions(layer.winner)
        return c1 + c2 + [RECV], s1 + s2 + [("send", _ring_frame(ring, (layer.batch,)))]
    if isinstance(layer, L.OutputLayer):
        return [RECV], [("send", _ring_frame(ring, L.shape_of(layer.plan, layer.op.inputs[0], layer.batch)))]
    if isinstance(layer, L.TruncateLayer):
        return _stage_actions(layer.stage)
    if isinstance(layer, L.ActivationLayer):
        return _stage_actions(layer.stage)
    if isinstance(layer, L.MaxPoolLayer):
        c, s = [], []
        for _, stage in layer.levels:
            cs, ss = _stage_actions(stage)
            c, s = c + cs, s + ss
        return c, s
    return [], []


def _predicted_rows(plan: Plan, batch: int) -> list[tuple]:
    """Per layer: (layer, online bytes sent by both, rounds the client opens, rounds the server
    opens), with the cost meter's rule: a send opens a round when the party received something
    since its previous send; each party's first online send opens one."""
    from protocols import layers as secure_layers
    out = []
    received = {"client": True, "server": True}
    for layer in secure_layers.build_layers(plan, batch):
        nbytes, opened = 0, {"client": 0, "server": 0}
        for party, actions in zip(("client", "server"), _online_actions(layer)):
            for kind, b in actions:
                if kind == "recv":
                    received[party] = True
                    continue
                nbytes += b
                if received[party]:
                    opened[party] += 1
                    received[party] = False
        out.append((layer, nbytes, opened["client"], opened["server"]))
    return out
