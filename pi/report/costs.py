"""Sections on where the cost goes: per layer of the default model, and LAN / WAN estimates.
"""
from __future__ import annotations

from pi.report.document import SECTIONS, Section, Table, rel
from pi.report.plots import fig_png, pyplot

# Local imports: pi.bench imports torch: it is imported where used, since `pi --help` imports pi.report.

GATE_OPS = {"relu", "circa", "poly", "trunc", "select", "compare", "argmax", "mul"}
# What the plan builder's own ops do, for the per-layer table: they have no torch module name.
OP_WORDS = {"MulConst": "fixed-point scale-up", "Truncate": "fixed-point truncation", "ToMasked": "re-masking",
            "Add": "residual add", "SumPool": "average pooling", "Reshape": "flatten", "Input": "client input",
            "Output": "output to the client", "MaxPool": "max pooling", "Activation": "activation"}


def layer_label(name: str, kind: str | None, previous: str | None) -> str:
    """A per-layer row's name for people: the torch module's name for convolutions, linear
    layers and activations; for the ops the compiler adds or names itself (`upscale6`, `add_1`),
    what the op does and after which layer ("fixed-point scale-up after layers.0.0.relu2")."""
    if name == "offline-exchange":
        return "offline exchange (all layers)"
    if kind is None or kind in ("Conv2d", "Linear", "Activation"):
        return name
    words = OP_WORDS.get(kind, name)
    return f"{words} after {previous}" if previous and kind not in ("Input", "Output") else words


def section_layers(measured: dict | None, bench: dict) -> Section:
    s = Section("layers", dict(SECTIONS)["layers"])
    if measured is None:
        s.status = "missing"
        s.notes.append("The default model was not compiled and run (--no-measure, or the embedded model is "
                       "missing).")
        s.todo.append("pi report --out benchmarks/results/report/report.html   # without --no-measure")
        return s
    pred = {r["layer"]: r for r in measured["layer_rows"]}
    agg: dict[str, dict] = {}
    for r in measured["per_layer"]:
        layer = r["layer"]
        a = agg.setdefault(layer, {"layer": layer, "ops": set(), "online_bytes": 0, "offline_bytes": 0,
                                   "online_s": 0.0, "offline_s": 0.0, "rounds": 0})
        a["ops"].add(r["op"])
        a[f"{r['phase']}_bytes"] += r["bytes_sent"]
        a[f"{r['phase']}_s"] += r["seconds"]
        if r["phase"] == "online":
            a["rounds"] += r["rounds"]
    key_bytes = {}
    for r in (bench.get("native") or {}).get("rows", []):
        if r.get("gate") == "relu" and r.get("n") == 64:
            key_bytes["relu"] = r.get("key_bytes")
    rows = []
    op_kinds = dict(measured.get("ops") or [])           # plan op name -> op kind
    names = list(op_kinds)
    for layer, a in agg.items():
        p = pred.get(layer, {})
        kind = "relu" if GATE_OPS & a["ops"] else "linear" if {"linear", "pool"} & a["ops"] else "io/setup"
        i = names.index(layer) if layer in op_kinds else -1
        previous = next((n for n in reversed(names[:i]) if op_kinds[n] in ("Conv2d", "Linear", "Activation")), None) \
            if i > 0 else None
        row = {"layer": layer, "name": layer_label(layer, op_kinds.get(layer), previous), "kind": kind,
               "op": p.get("op", op_kinds.get(layer, "-")), "relu_sites": p.get("relu", 0) + p.get("circa", 0),
               "macs": p.get("macs", 0), "predicted_online_bytes": p.get("online_bytes"),
               "online_bytes": a["online_bytes"], "offline_bytes": a["offline_bytes"],
               "online_s": a["online_s"], "offline_s": a["offline_s"],
               "online_ms": 1e3 * a["online_s"], "offline_ms": 1e3 * a["offline_s"], "rounds": a["rounds"]}
        if key_bytes.get("relu") and row["relu_sites"]:
            row["predicted_key_bytes"] = 2 * key_bytes["relu"] * row["relu_sites"]
        rows.append(row)
    order = {n: i for i, n in enumerate(names)} or {r["layer"]: i for i, r in enumerate(measured["layer_rows"])}
    rows.sort(key=lambda r: order.get(r["layer"], len(order)))
    totals = {k: sum(r.get(k) or 0 for r in rows) for k in ("online_bytes", "offline_bytes", "online_ms", "offline_ms")}
    by_kind = {}
    for r in rows:
        b = by_kind.setdefault(r["kind"], {"kind": r["kind"], "online_bytes": 0, "offline_bytes": 0,
                                           "online_s": 0.0, "offline_s": 0.0, "online_ms": 0.0, "offline_ms": 0.0})
        for k in ("online_bytes", "offline_bytes", "online_s", "offline_s", "online_ms", "offline_ms"):
            b[k] += r[k]
    s.data.update({"rows": rows, "by_kind": list(by_kind.values()), "totals": totals,
                   "run": {k: measured[k] for k in ("online_s", "offline_s", "online_bytes", "offline_bytes",
                                                    "rounds", "material_bytes", "repeats")}})
    s.notes.append(f"Measured: `pi.compile(default model).run(x)`, {ring_words(measured)}, in one process (dealer, server and client threads "
                   f"over an in-process channel that meters like the TLS one), batch 1, median of "
                   f"{measured['repeats']} runs: online {1e3 * measured['online_s']:.1f} ms, "
                   f"{measured['online_bytes'] / 1e3:.1f} KB, {measured['rounds']} rounds; offline "
                   f"{1e3 * measured['offline_s']:.0f} ms, {measured['offline_bytes'] / 1e6:.2f} MB, of which dealer "
                   f"material {sum(measured['material_bytes'].values()) / 1e6:.2f} MB (not attributed to layers by "
                   "the meter; 'pred. dealer keys' estimates it per ReLU layer from native.json's key size, both parties). "
                   "Calibrated (`pi compile default --calibration samples`, `pi bench model`, the README's figures) the "
                   "ring is narrower and the keys smaller: about half the preprocessing bytes.")
    s.notes.append("Per-layer bytes and seconds are the cost meter's rows (both parties' sent bytes added, seconds "
                   "the maximum over parties); 'pred. online' is `SecureModel.layer_rows()`'s prediction.")
    s.tables.append(Table("Per layer (measured unless marked predicted)",
                          [("name", "layer", "s"), ("op", "op", "s"), ("kind", "cost class", "s"),
                           ("relu_sites", "ReLUs", ",d"), ("macs", "MACs", ",d"),
                           ("online_bytes", "online bytes", "B"), ("predicted_online_bytes", "pred. online bytes", "B"),
                           ("offline_bytes", "offline bytes", "B"), ("predicted_key_bytes", "pred. dealer keys", "B"),
                           ("online_s", "online time", "ms"), ("offline_s", "offline time", "ms"),
                           ("rounds", "rounds", "d")], rows))
    s.tables.append(Table("By cost class", [("kind", "class", "s"), ("online_bytes", "online bytes", "B"),
                                            ("offline_bytes", "offline bytes", "B"), ("online_s", "online time", "ms"),
                                            ("offline_s", "offline time", "ms")], list(by_kind.values())))
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6))
    labels = [r["name"] for r in rows]
    idx = list(range(len(rows)))
    colors = ["C3" if r["kind"] == "relu" else "C0" if r["kind"] == "linear" else "C7" for r in rows]
    axes[0].bar(idx, [r["online_bytes"] / 1e3 for r in rows], color=colors, label="online (measured)")
    axes[0].bar(idx, [r.get("predicted_key_bytes", 0) / 1e3 for r in rows], bottom=[r["online_bytes"] / 1e3 for r in rows],
                color=colors, alpha=0.35, hatch="//", label="dealer keys (predicted)")
    axes[0].set_yscale("symlog", linthresh=1)
    axes[0].set_ylabel("KB per inference")
    axes[0].set_title("bytes per layer (red: ReLU layers, blue: linear)")
    axes[1].bar([i - 0.2 for i in idx], [r["online_ms"] for r in rows], 0.4, color=colors, label="online")
    axes[1].bar([i + 0.2 for i in idx], [r["offline_ms"] for r in rows], 0.4, color=colors, alpha=0.4,
                label="offline")
    axes[1].set_ylabel("ms")
    axes[1].set_title("seconds per layer (solid online, light offline)")
    for ax in axes:
        ax.set_xticks(idx)
        ax.set_xticklabels(labels, rotation=70, fontsize=7, ha="right")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    s.figures.append(("layers", "Per-layer cost of the default model (measured in process, batch 1).", fig_png(fig)))
    return s


def section_network(measured: dict | None, measured_runs: dict, bench: dict) -> Section:
    from pi.bench import profiles
    s = Section("network", dict(SECTIONS)["network"])
    s.notes.append("estimate = measured seconds (loopback / in process) + bytes·8 / bandwidth + rounds·RTT "
                   f"(pi/bench/profiles.py; {profiles.describe_all()}). All traffic is counted on one pipe; "
                   "these compare configurations, they do not predict a deployment.")
    rows = []
    if measured is not None:
        rows.append({"what": f"default model, all exact, {ring_words(measured)} (in process)", **estimates(measured)})
    for d, m in sorted(measured_runs.items()):
        rows.append({"what": f"{rel(d)} (in process)", **estimates(m)})
    for r in (bench.get("model") or {}).get("rows", []):
        system = r.get("system") if r.get("system") != "pi" else f"pi {r.get('provider', 'dealer')}"
        rows.append({"what": f"pi bench model: {system} {r.get('workload')}/{r.get('policy')} "
                             f"batch {r.get('batch')} (deployed)",
                     "online_s": r.get("online_s"), "online_bytes": r.get("online_bytes"), "rounds": r.get("rounds"),
                     "lan_online_s": r.get("lan_online_s"), "wan_online_s": r.get("wan_online_s"),
                     "offline_s": r.get("offline_s"), "offline_bytes": r.get("offline_bytes"),
                     "lan_offline_s": r.get("lan_offline_s"), "wan_offline_s": r.get("wan_offline_s")})
    relu_rows = [r for r in (bench.get("relu") or {}).get("rows", []) if r.get("lan_online_us_per_relu") is not None]
    s.data["rows"] = rows
    s.data["bench_relu"] = [{k: r.get(k) for k in ("system", "policy", "n", "online_us_per_relu",
                                                   "lan_online_us_per_relu", "wan_online_us_per_relu")}
                            for r in relu_rows]
    if not rows and not relu_rows:
        s.status = "missing"
        s.notes.append("Nothing measured: no in-process run (--no-measure) and no `pi bench model/relu` results.")
        s.todo += ["pi bench model --json benchmarks/results/bench_model.json",
                   "pi bench relu --json benchmarks/results/bench_relu.json"]
        return s
    if rows:
        s.tables.append(Table("Per inference", [("what", "what", "s"), ("online_s", "online time", "ms"),
                                                ("online_bytes", "online bytes", "B"), ("rounds", "rounds", "d"),
                                                ("lan_online_s", "LAN online time", "ms"),
                                                ("wan_online_s", "WAN online time", "ms"),
                                                ("offline_s", "offline time", "ms"),
                                                ("offline_bytes", "offline bytes", "B"),
                                                ("lan_offline_s", "LAN offline time", "ms"),
                                                ("wan_offline_s", "WAN offline time", "ms")], rows))
    if relu_rows:
        s.tables.append(Table("Per ReLU (pi bench relu)", [("system", "system", "s"), ("policy", "kind", "s"),
                                                           ("n", "n", "d"), ("online_us_per_relu", "µs/ReLU", ".3f"),
                                                           ("lan_online_us_per_relu", "LAN µs/ReLU", ".3f"),
                                                           ("wan_online_us_per_relu", "WAN µs/ReLU", ".3f")],
                              s.data["bench_relu"]))
    tp_doc = bench.get("model_two_party") or {}
    two_party = [r for r in tp_doc.get("rows", []) if r.get("provider") == "two-party"]
    s.data["two_party"] = two_party
    if two_party:
        s.tables.append(Table("Two-party provider (pi bench model: client and server alone, 2 processes; stored = "
                              "what the client keeps per inference between its offline and online phase)",
                              [("workload", "workload", "s"), ("policy", "policy", "s"), ("batch", "batch", "d"),
                               ("online_s", "online time", "ms"), ("online_bytes", "online bytes", "B"),
                               ("rounds", "rounds", "d"), ("offline_s", "offline time", "ms"),
                               ("offline_bytes", "offline bytes", "B"), ("stored_bytes", "stored", "B"),
                               ("lan_online_s", "LAN online time", "ms"), ("wan_online_s", "WAN online time", "ms")],
                              two_party))
        from pi.bench.results import target_value_text
        verdict = {True: "met", False: "NOT met", None: "not judged"}
        s.notes += [f"Two-party target {verdict[t.get('ok')]}: {t['target']} (measured {target_value_text(t)})."
                    for t in tp_doc.get("targets", []) if "two-party" in t["target"]]
        s.notes.append(f"Two-party rows from {rel(tp_doc['_path'])} ({tp_doc.get('command', '')}).")
    if not bench.get("model"):
        s.status = "partial"
        s.todo.append("pi bench model --json benchmarks/results/bench_model.json   # deployed (3 processes, TLS)")
    if not two_party:
        s.todo.append("pi bench model --provider dealer,two-party --json benchmarks/results/bench_model_two_party.json")
    return s


def ring_words(m: dict) -> str:
    """How the report's own measurement compiled the model: uncalibrated, the full ring."""
    return f"uncalibrated Z_2^{m.get('ring_bits', 64)} ring"


def estimates(m: dict) -> dict:
    from pi.bench import profiles
    out = {"online_s": m["online_s"], "online_bytes": m["online_bytes"], "rounds": m["rounds"],
           "offline_s": m["offline_s"], "offline_bytes": m["offline_bytes"]}
    for p in profiles.PROFILES:
        key = p.name.lower()
        out[f"{key}_online_s"] = p.estimate(m["online_s"], m["online_bytes"], m["rounds"], "pi")
        out[f"{key}_offline_s"] = p.estimate(m["offline_s"], m["offline_bytes"], 1, "pi")
    return out
