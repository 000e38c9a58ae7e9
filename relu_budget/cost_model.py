"""Cost model of a private inference, so that a budget can be given in seconds or bytes.

Per ReLU-site kind (exact ReLU, Circa with its k, polynomial, identity) and per MAC of the
linear layers, the model knows:

- key_bytes     preprocessing material per site and party (dealer → party, offline)
- online_bytes  traffic per site during the online phase, both directions together
- rounds        message flights per *layer* that holds at least one site of this kind
- keygen_per_s  sites per second the dealer generates keys for (one core)
- eval_per_s    sites per second a party evaluates online (one core)

Where they come from: measured rows in `benchmarks/results/*.json` when present (any JSON
file with a list `rows` whose entries have a `gate` field; `native.json` is the native gate
benchmark), otherwise the documented defaults below, taken from docs/engine.md and the
protocol notes (LLAMA-style FSS ReLU: ≈ 2.1 KB key per party at 64 bits, one round, two ring
elements of 8 bytes online; identity sites are free: a local truncation).

Measured row fields (all required): gate ("relu" | "circa" | "poly" | "identity"; "trunc" and
"square" make "poly" unless a "poly" row is given: the engine's poly gate opens x̂ once as
trunc does and computes what trunc and square compute; other gates are ignored), n (input
bit width of the gate, 64 in our ring; rows with n = 64 are preferred, else the largest n),
k (Circa's dropped low bits; null otherwise), key_bytes (per site and party), keygen_per_s,
eval_per_s (sites per second), online_bytes (per site, both directions), rounds (per layer).
A Circa gate's cost depends on the bits left for its sign test, m = n − k (the row's `m` when
given): the model stores Circa costs by m and, for a site with k dropped bits and values of
`value_bits` bits, uses m = value_bits − k, interpolating linearly in m between measured rows
(key bytes and seconds per site), extrapolating from the two nearest outside them.

Linear layers: the server computes W·a online and the client Ŵ·c offline (one MAC each per
weight use), the server ships Ŵ = W + R offline (8 bytes per weight). MAC throughput comes
from `gemm.json` (single-thread native GMAC/s of the largest shape) when present.

Seconds of a phase = compute + bytes / bandwidth + rounds × RTT, with a `NetworkProfile`.
Parties compute concurrently, so online compute counts one party's evaluation time.

Objectives (what a budget is measured in): "relus" (kept ReLU + Circa sites), "latency"
(predicted online seconds) and "bytes" (online + offline bytes: all of it crosses a wire).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from torch import nn

from protocols.fixed_point import DEFAULT_FRAC_BITS
from protocols.site_kinds import SITE_KINDS
from relu_budget.models import count_relu_sites, dry_run, relu_sites

OBJECTIVES = ("relus", "latency", "bytes")
POLY_PARTS = ("trunc", "square")      # the gates of a polynomial site, in order
RING_BITS = 64
DEFAULT_RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
ROW_FIELDS = ("gate", "n", "k", "key_bytes", "keygen_per_s", "eval_per_s", "online_bytes", "rounds")


class CostModelError(ValueError):
    """A benchmark result file or a cost query is malformed; the message names what and where."""


@dataclass(frozen=True)
class SiteCost:
    key_bytes: float        # per site and party, offline
    online_bytes: float     # per site, both directions
    rounds: int             # per layer holding such sites
    keygen_per_s: float     # sites/s (dealer, one core); inf = free
    eval_per_s: float       # sites/s (one party, one core); inf = free
    source: str = "default"


@dataclass(frozen=True)
class LinearCost:
    macs_per_s: float = 2.0e9            # ring MACs per second, one core
    offline_bytes_per_weight: float = 8  # Ŵ = W + R sent to the client
    source: str = "default"


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    bandwidth_bytes_per_s: float
    rtt_s: float

    def __post_init__(self) -> None:
        if not self.bandwidth_bytes_per_s > 0:
            raise CostModelError(f"bandwidth must be > 0 bytes/s, got {self.bandwidth_bytes_per_s}")
        if not self.rtt_s >= 0:
            raise CostModelError(f"RTT must be >= 0 s, got {self.rtt_s}")


# LAN: 1 Gbit/s, 0.5 ms round trip; WAN: 100 Mbit/s, 40 ms (the settings PI papers usually use).
PROFILES = {
    "lan": NetworkProfile("lan", 125e6, 0.5e-3),
    "wan": NetworkProfile("wan", 12.5e6, 40e-3),
}

# Defaults (see the module docstring for where they come from).
DEFAULT_RELU = SiteCost(key_bytes=2100, online_bytes=16, rounds=1, keygen_per_s=0.5e6, eval_per_s=1.0e6)
# Degree-2 polynomial, as the engine computes it: the poly gate fuses the faithful truncation
# (the input comes at scale 2f) into the degree-2 evaluation, so a site is opened once (1 round):
# x̂ >> f to the client (64 − f bits: 7 B at f = 12), y0 back (8 B); its key is 4 words of l + 2f
# bits on the server and none on the client (the client's share comes from its seed): 22 B per
# party on average at 64 bits (at a calibrated width: poly_online_bytes, poly_key_bytes).
DEFAULT_TRUNC = SiteCost(key_bytes=16, online_bytes=16, rounds=1, keygen_per_s=20e6, eval_per_s=100e6)
DEFAULT_SQUARE = SiteCost(key_bytes=16, online_bytes=16, rounds=1, keygen_per_s=20e6, eval_per_s=100e6)


def poly_key_bytes(bits: int = RING_BITS) -> float:
    """A poly site's key bytes per party, averaged over the two (the server's 4 words of l + 2f
    bits, protocols.gates.key_bytes: 44 B at 64 bits, 32 B at 40; the client's come from its seed)."""
    return 4 * math.ceil((bits + 2 * DEFAULT_FRAC_BITS) / 8) / 2


def poly_online_bytes(bits: int = RING_BITS) -> int:
    """A poly site's online bytes on `bits`-bit values: x̂ >> f (protocols.gates.poly_opening:
    w − f bits, w = bits + 1 below 64) and y0 in a `bits`-bit ring (the calibrated ring the
    plan runs it in; 15 B at 64 bits, 9 B at 40)."""
    w = RING_BITS if bits >= RING_BITS else bits + 1
    return math.ceil((w - DEFAULT_FRAC_BITS) / 8) + math.ceil(bits / 8)


def fused_poly(trunc: SiteCost, square: SiteCost, source: str = "", bits: int = RING_BITS) -> SiteCost:
    """The poly gate: trunc's round, x̂ >> f and y0 on the wire, both gates' compute, 4 words of key."""
    return SiteCost(key_bytes=poly_key_bytes(bits), online_bytes=poly_online_bytes(bits), rounds=trunc.rounds,
                    keygen_per_s=1 / (1 / trunc.keygen_per_s + 1 / square.keygen_per_s),
                    eval_per_s=1 / (1 / trunc.eval_per_s + 1 / square.eval_per_s), source=source)


DEFAULT_POLY = fused_poly(DEFAULT_TRUNC, DEFAULT_SQUARE)
DEFAULT_IDENTITY = SiteCost(key_bytes=0, online_bytes=0, rounds=0, keygen_per_s=math.inf, eval_per_s=math.inf)


def default_circa_m(m: int) -> SiteCost:
    """Circa whose sign test runs on m bits: key ≈ 16·m − 40 bytes (a 1-bit-output DCF with early
    termination plus the select; the fit of the native benchmark at m = 16..32), two rounds
    (sign opening, then select), online x̂ and y0 (16 B) plus the sign shares (≈ 0.25 B)."""
    if not 2 <= m <= RING_BITS:
        raise CostModelError(f"Circa needs 2..{RING_BITS} bits left for its sign test, got m = {m}")
    speed = RING_BITS / m
    return SiteCost(key_bytes=max(16 * m - 40, 16), online_bytes=16.25, rounds=2,
                    keygen_per_s=0.5e6 * speed, eval_per_s=1.0e6 * speed)


def default_circa(k: int, bits: int = RING_BITS) -> SiteCost:
    """Circa with k dropped bits on values of `bits` bits (m = bits − k)."""
    if not 0 <= k < bits:
        raise CostModelError(f"Circa k must be in 0..{bits - 1}, got {k}")
    return default_circa_m(bits - k)


@dataclass
class CostEstimate:
    """Predicted cost of one inference (batch 1)."""
    relus: int                  # kept ReLU + Circa sites
    online_bytes: float
    offline_bytes: float
    rounds: int
    online_seconds: float
    offline_seconds: float
    macs: int
    per_layer: list[dict] = field(default_factory=list)

    def value(self, objective: str) -> float:
        if objective == "relus":
            return float(self.relus)
        if objective == "latency":
            return self.online_seconds
        if objective == "bytes":
            return self.online_bytes + self.offline_bytes
        raise CostModelError(f"objective must be one of {OBJECTIVES}, got {objective!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CostModel:
    relu: SiteCost = DEFAULT_RELU
    poly: SiteCost = DEFAULT_POLY
    identity: SiteCost = DEFAULT_IDENTITY
    circa: dict[int, SiteCost] = field(default_factory=dict)   # measured m (= n − k) → cost
    value_bits: int = RING_BITS      # bit width of activation values (m = value_bits − k)
    linear: LinearCost = LinearCost()
    profile: NetworkProfile = PROFILES["lan"]
    sources: list[str] = field(default_factory=list)

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, results_dir: str | Path | None = None, profile: str | NetworkProfile = "lan",
             bits: int = RING_BITS) -> CostModel:
        """Defaults overridden by measured rows found in `results_dir` (default:
        benchmarks/results of this checkout). A missing directory means defaults only.
        `bits`: the activations' bit width (64: the whole ring, conservative; the engine may
        calibrate a smaller one): gate rows with n = bits are preferred, and a Circa site with
        k dropped bits is priced at m = bits − k."""
        if not 2 <= bits <= RING_BITS:
            raise CostModelError(f"bits must be in 2..{RING_BITS}, got {bits}")
        model = cls(profile=get_profile(profile), value_bits=bits, poly=fused_poly(DEFAULT_TRUNC, DEFAULT_SQUARE,
                                                                                  bits=bits))
        d = Path(results_dir) if results_dir is not None else DEFAULT_RESULTS_DIR
        if not d.is_dir():
            if results_dir is not None:
                raise CostModelError(f"results directory {d} does not exist")
            return model
        files = sorted(d.glob("*.json"))
        native = d / "native.json"
        if native in files:                     # native.json wins over other files
            files.remove(native)
            files.append(native)
        gate_rows: dict[tuple[str, int | None], tuple[int, dict, str]] = {}
        for path in files:
            try:
                doc = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                warnings.warn(f"cost model: skipping {path}: not readable JSON ({exc})", stacklevel=2)
                continue
            rows = doc.get("rows") if isinstance(doc, dict) else None
            if not isinstance(rows, list):
                continue
            if path.name == "gemm.json":
                model.linear = _linear_from_gemm(rows, path) or model.linear
            for i, row in enumerate(rows):
                if not isinstance(row, dict) or "gate" not in row:
                    continue
                missing = [f for f in ROW_FIELDS if f not in row]
                if missing:
                    raise CostModelError(f"{path}: row {i} (gate {row.get('gate')!r}) lacks fields {missing}; "
                                         f"gate rows need {', '.join(ROW_FIELDS)}")
                gate = row["gate"]
                if gate not in SITE_KINDS + POLY_PARTS:
                    continue                    # drelu, mul, ...: not part of a site kind
                n = int(row["n"])
                k = None
                if gate == "circa":
                    if not isinstance(row["k"], int):
                        raise CostModelError(f"{path}: row {i}: a circa row needs an integer k, got {row['k']!r}")
                    k = int(row.get("m") or n - row["k"])      # stored by m, the sign test's bits
                rank = (n == bits, n)
                key = (gate, k)
                old = gate_rows.get(key)
                if old is None or rank >= old[0]:
                    gate_rows[key] = (rank, row, f"{path.name} row {i}")
        parts = {}
        for (gate, k), (_rank, row, where) in gate_rows.items():
            cost = _site_cost_from_row(row, where)
            if gate == "circa":
                model.circa[int(k)] = cost
            elif gate in POLY_PARTS:
                parts[gate] = cost
            else:
                setattr(model, gate, cost)
            model.sources.append(where)
        if parts and ("poly", None) not in gate_rows:
            trunc, square = parts.get("trunc", DEFAULT_TRUNC), parts.get("square", DEFAULT_SQUARE)
            model.poly = fused_poly(trunc, square, f"trunc ({trunc.source or 'default'}) fused with square "
                                                   f"({square.source or 'default'})", bits=bits)
        return model

    # -- per-site queries -------------------------------------------------------------------
    def site_cost(self, kind: str, k: int | None = None) -> SiteCost:
        if kind == "relu":
            return self.relu
        if kind == "identity":
            return self.identity
        if kind == "poly":
            return self.poly
        if kind == "circa":
            if k is None:
                raise CostModelError("the cost of a Circa site depends on k; pass k")
            m = self.value_bits - int(k)
            if not 2 <= m <= RING_BITS:
                raise CostModelError(f"Circa k = {k} leaves m = {m} bits of {self.value_bits}-bit values; "
                                     f"need 2..{RING_BITS}")
            if m in self.circa:
                return self.circa[m]
            if len(self.circa) >= 2:
                return _interpolate_m(self.circa, m)
            if len(self.circa) == 1:      # one measurement: scale it by the bit width
                (m0, c), = self.circa.items()
                f = m / m0
                return replace(c, key_bytes=c.key_bytes * f, keygen_per_s=c.keygen_per_s / f,
                               eval_per_s=c.eval_per_s / f, source=f"{c.source} scaled from m={m0}")
            return default_circa_m(m)
        raise CostModelError(f"site kind must be one of {SITE_KINDS}, got {kind!r}")

    def per_site(self, kind: str, k: int | None = None) -> dict:
        """Marginal cost of one more site of this kind in a layer that already has such sites."""
        c = self.site_cost(kind, k)
        bw = self.profile.bandwidth_bytes_per_s
        online_s = (1.0 / c.eval_per_s if c.eval_per_s else 0.0) + c.online_bytes / bw
        offline_bytes = 2 * c.key_bytes
        offline_s = (1.0 / c.keygen_per_s if c.keygen_per_s else 0.0) + offline_bytes / bw
        return {"online_bytes": c.online_bytes, "offline_bytes": offline_bytes,
                "online_seconds": online_s, "offline_seconds": offline_s, "rounds": c.rounds}

    def per_mac(self) -> dict:
        s = 1.0 / self.linear.macs_per_s
        return {"online_seconds": s, "offline_seconds": s, "online_bytes": 0.0, "offline_bytes": 0.0}

    def site_value(self, kind: str, objective: str, k: int | None = None) -> float:
        """Cost of one site in the units of `objective` (rounds excluded: they are per layer)."""
        if objective == "relus":
            return 1.0 if kind in ("relu", "circa") else 0.0
        p = self.per_site(kind, k)
        if objective == "latency":
            return p["online_seconds"]
        if objective == "bytes":
            return p["online_bytes"] + p["offline_bytes"]
        raise CostModelError(f"objective must be one of {OBJECTIVES}, got {objective!r}")

    # -- whole networks ---------------------------------------------------------------------
    def layer_cost(self, counts: dict[str, int], circa_k: int | None = None) -> dict:
        """Cost of one ReLU layer given its site counts per kind."""
        out = {"online_bytes": 0.0, "offline_bytes": 0.0, "online_seconds": 0.0, "offline_seconds": 0.0}
        rounds = 0
        for kind in SITE_KINDS:
            n = int(counts.get(kind, 0))
            if n == 0:
                continue
            p = self.per_site(kind, circa_k if kind == "circa" else None)
            for key in out:
                out[key] += n * p[key]
            rounds = max(rounds, p["rounds"])
        out["rounds"] = rounds
        out["online_seconds"] += rounds * self.profile.rtt_s
        return out

    def estimate(self, model: nn.Module, input_shape: tuple[int, ...]) -> CostEstimate:
        """Predicted cost of one inference of `model` under its current kind maps."""
        rows = count_relu_sites(model, input_shape)
        sites = dict(relu_sites(model))
        macs, _weights, linear_rows = linear_layers(model, input_shape)
        per_layer = []
        tot = {"online_bytes": 0.0, "offline_bytes": 0.0, "online_seconds": 0.0, "offline_seconds": 0.0}
        rounds = 0
        for r in rows:
            circa = sites[r["name"]].circa or {}
            c = self.layer_cost(r, circa.get("k"))
            per_layer.append({"name": r["name"], "kind": "activation", **{k: r[k] for k in SITE_KINDS}, **c})
            for key in tot:
                tot[key] += c[key]
            rounds += c["rounds"]
        pm = self.per_mac()
        for lr in linear_rows:
            c = {"online_seconds": lr["macs"] * pm["online_seconds"],
                 "offline_seconds": lr["macs"] * pm["offline_seconds"]
                 + lr["weights"] * self.linear.offline_bytes_per_weight / self.profile.bandwidth_bytes_per_s,
                 "online_bytes": 0.0, "offline_bytes": lr["weights"] * self.linear.offline_bytes_per_weight,
                 "rounds": 0}
            per_layer.append({"name": lr["name"], "kind": "linear", "macs": lr["macs"], **c})
            for key in tot:
                tot[key] += c[key]
        # Input sharing and output reconstruction: one round each way.
        rounds += 1
        tot["online_seconds"] += self.profile.rtt_s
        relus = sum(r["relu"] + r["circa"] for r in rows)
        return CostEstimate(relus=relus, online_bytes=tot["online_bytes"], offline_bytes=tot["offline_bytes"],
                            rounds=rounds, online_seconds=tot["online_seconds"],
                            offline_seconds=tot["offline_seconds"], macs=macs, per_layer=per_layer)

    def sites_for_budget(self, model: nn.Module, input_shape: tuple[int, ...], budget: float, objective: str,
                         kept_kind: str = "relu", other_kind: str = "identity", circa_k: int | None = None) -> int:
        """How many kept sites (`kept_kind`) fit a budget in `objective` units when all other
        sites become `other_kind`. Conservative: every ReLU layer is assumed to keep paying its
        rounds (a layer emptied by the optimizer only makes the result cheaper)."""
        if objective not in OBJECTIVES:
            raise CostModelError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        rows = count_relu_sites(model, input_shape)
        total = sum(r["sites"] for r in rows)
        if objective == "relus":
            return int(min(max(budget, 0), total))
        if not budget > 0:
            raise CostModelError(f"a {objective} budget must be > 0, got {budget}")
        # Cost with zero kept sites, plus the kept-kind rounds of every layer.
        saved = [{k: 0 for k in SITE_KINDS} for _ in rows]
        for s, r in zip(saved, rows):
            s[other_kind] = r["sites"]
        base = self._network_value(model, input_shape, saved, objective, circa_k)
        kept = self.site_cost(kept_kind, circa_k)
        if objective == "latency":
            extra_rounds = sum(max(0, kept.rounds - self.site_cost(other_kind).rounds) for _ in rows)
            base += extra_rounds * self.profile.rtt_s
        per = self.site_value(kept_kind, objective, circa_k) - self.site_value(other_kind, objective)
        if base > budget:
            raise CostModelError(f"a {objective} budget of {budget:g} is below the cost of the network with no "
                                 f"kept sites ({base:g}: linear layers, rounds, {other_kind} sites)")
        if per <= 0:
            return total
        return int(min(total, math.floor((budget - base) / per + 1e-9)))

    def _network_value(self, model, input_shape, layer_counts, objective, circa_k) -> float:
        macs, weights, _ = linear_layers(model, input_shape)
        pm = self.per_mac()
        if objective == "latency":
            v = macs * pm["online_seconds"] + self.profile.rtt_s
        else:
            v = weights * self.linear.offline_bytes_per_weight
        for counts in layer_counts:
            c = self.layer_cost(counts, circa_k)
            v += c["online_seconds"] if objective == "latency" else c["online_bytes"] + c["offline_bytes"]
        return v

    def describe(self) -> dict:
        return {"profile": asdict(self.profile), "relu": asdict(self.relu), "poly": asdict(self.poly),
                "identity": {k: (None if isinstance(v, float) and math.isinf(v) else v)
                             for k, v in asdict(self.identity).items()},
                "circa_by_m": {str(k): asdict(v) for k, v in self.circa.items()},
                "value_bits": self.value_bits, "linear": asdict(self.linear),
                "sources": list(self.sources)}




def _interpolate_m(table: dict[int, SiteCost], m: int) -> SiteCost:
    """Linear in m between (or beyond) the two nearest measured m: key bytes and seconds/site."""
    ms = sorted(table)
    lo = max([x for x in ms if x < m], default=None)
    hi = min([x for x in ms if x > m], default=None)
    if lo is None:
        lo, hi = ms[0], ms[1]
    elif hi is None:
        lo, hi = ms[-2], ms[-1]
    a, b = table[lo], table[hi]
    t = (m - lo) / (hi - lo)

    def lin(x, y):
        return x + t * (y - x)
    key = max(lin(a.key_bytes, b.key_bytes), 1.0)
    gen_s = max(lin(1 / a.keygen_per_s, 1 / b.keygen_per_s), 1e-12)
    eval_s = max(lin(1 / a.eval_per_s, 1 / b.eval_per_s), 1e-12)
    return SiteCost(key_bytes=key, online_bytes=lin(a.online_bytes, b.online_bytes), rounds=max(a.rounds, b.rounds),
                    keygen_per_s=1 / gen_s, eval_per_s=1 / eval_s,
                    source=f"interpolated at m={m} from m={lo} ({a.source}), m={hi} ({b.source})")


def get_profile(profile: str | NetworkProfile) -> NetworkProfile:
    if isinstance(profile, NetworkProfile):
        return profile
    if profile not in PROFILES:
        raise CostModelError(f"unknown network profile {profile!r}; choose one of {', '.join(PROFILES)} "
                             "or pass a NetworkProfile(name, bandwidth_bytes_per_s, rtt_s)")
    return PROFILES[profile]


def _site_cost_from_row(row: dict, where: str) -> SiteCost:
    vals = {}
    for f in ("key_bytes", "keygen_per_s", "eval_per_s", "online_bytes", "rounds"):
        v = row[f]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0 or (
                f in ("keygen_per_s", "eval_per_s") and v == 0):
            raise CostModelError(f"{where}: field {f} must be a number >= 0 (rates > 0), got {v!r}")
        vals[f] = v
    return SiteCost(key_bytes=float(vals["key_bytes"]), online_bytes=float(vals["online_bytes"]),
                    rounds=int(vals["rounds"]), keygen_per_s=float(vals["keygen_per_s"]),
                    eval_per_s=float(vals["eval_per_s"]), source=where)


def _linear_from_gemm(rows: list, path: Path) -> LinearCost | None:
    best = None
    for row in rows:
        if not isinstance(row, dict) or row.get("threads") != 1 or "native_gmacs" not in row:
            continue
        size = row.get("m", 0) * row.get("k", 0) * row.get("n", 0)
        if best is None or size > best[0]:
            best = (size, float(row["native_gmacs"]))
    if best is None or not best[1] > 0:
        return None
    return LinearCost(macs_per_s=best[1] * 1e9, source=f"{path.name} (single thread, largest shape)")


def linear_layers(model: nn.Module, input_shape) -> tuple[int, int, list[dict]]:
    """(total MACs, total weights, rows per Conv2d / Linear) for one example."""
    def record(name, mod, _inputs, out):
        w = mod.weight
        per_out = w.shape[1] * w.shape[2] * w.shape[3] if isinstance(mod, nn.Conv2d) else w.shape[1]
        return {"name": name, "macs": int(out[0].numel() * per_out), "weights": int(w.numel())}
    rows = dry_run(model, input_shape, [(n, m) for n, m in model.named_modules()
                                        if isinstance(m, (nn.Conv2d, nn.Linear))], record)
    return sum(r["macs"] for r in rows), sum(r["weights"] for r in rows), rows
