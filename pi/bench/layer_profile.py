"""`pi bench model --per-layer`: where an inference's time and bytes go, per layer and phase.

From the merged cost-meter rows of the timed runs (pi.bench.deployment): per (layer, phase),
op classes summed, the median over the runs of the seconds (the slower party's) and of the
bytes (both directions), divided by the batch. A party's seconds in a layer include its waits
for the other party, so the layers' seconds add up to more than the phase's wall time. One
offline row is not a layer: the dealer's material (generation and download, as the client
waits for it; its serialized size).
"""
from __future__ import annotations

import statistics

MATERIAL = "(dealer material)"


def layer_profile(runs: list[dict], batch: int) -> list[dict]:
    """Rows {layer, phase, ops, seconds, bytes, rounds} per image (rounds: per inference),
    in the plan's order, online rows first."""
    per_run = []
    for c in runs:
        rows: dict[tuple[str, str], dict] = {}
        for r in c.get("per_layer") or []:
            row = rows.setdefault((r["layer"], r["phase"]), {"ops": [], "seconds": 0.0, "bytes": 0, "rounds": 0})
            if r["op"] not in row["ops"]:
                row["ops"].append(r["op"])
            row["seconds"] += r["seconds"]
            row["bytes"] += r["bytes_sent"]
            row["rounds"] += r["rounds"]
        if c.get("fetch_s") is not None:
            rows[(MATERIAL, "offline")] = {"ops": ["fetch"], "seconds": c["fetch_s"],
                                           "bytes": c.get("material_bytes") or 0, "rounds": 0}
        per_run.append(rows)
    keys = list(dict.fromkeys(k for rows in per_run for k in rows))
    keys.sort(key=lambda k: k[1] != "online")                   # stable: plan order within a phase
    out = []
    for layer, phase in keys:
        got = [rows[(layer, phase)] for rows in per_run if (layer, phase) in rows]
        out.append({"layer": layer, "phase": phase, "ops": "+".join(got[0]["ops"]),
                    "seconds": statistics.median(g["seconds"] for g in got) / batch,
                    "bytes": statistics.median(g["bytes"] for g in got) / batch,
                    "rounds": int(statistics.median(g["rounds"] for g in got))})
    return out


def profile_markdown(rows: list[dict]) -> str:
    """Per (workload, policy, provider) with a profile: per phase a table of the layers, ms and
    KB per image at each batch, then the shares of the largest batch."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("per_layer"):
            groups.setdefault((r["workload"], r["policy"], r.get("provider", "dealer")), []).append(r)
    parts = []
    for (workload, policy, provider), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["batch"])
        batches = [r["batch"] for r in rs]
        for phase in ("online", "offline"):
            layers = list(dict.fromkeys((p["layer"], p["ops"]) for r in rs for p in r["per_layer"]
                                        if p["phase"] == phase))
            cell = {(r["batch"], p["layer"]): p for r in rs for p in r["per_layer"] if p["phase"] == phase}
            head = ["layer", "ops", *[f"ms/img b{b}" for b in batches], *[f"KB/img b{b}" for b in batches]]
            lines = [(f"Per-layer {phase} cost, {workload} / {policy} / {provider} (per image; seconds: the slower "
                      "party's, waits for the peer included, median of the timed runs; bytes: both directions):"), "",
                     "| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (2 * len(batches))]
            for layer, ops in layers:
                ms = [_fmt(cell.get((b, layer)), "seconds", 1e3, ".3f") for b in batches]
                kb = [_fmt(cell.get((b, layer)), "bytes", 1e-3, ".1f") for b in batches]
                lines.append(f"| {layer} | {ops} | " + " | ".join(ms + kb) + " |")
            wall = "online_s" if phase == "online" else "offline_s"
            lines.append("| **phase wall time** | | " + " | ".join(f"{r[wall] / r['batch'] * 1e3:.3f}" for r in rs)
                         + " | " + " | ".join(f"{r[phase + '_bytes'] / r['batch'] / 1e3:.1f}" for r in rs) + " |")
            top = sorted((p for p in rs[-1]["per_layer"] if p["phase"] == phase), key=lambda p: -p["seconds"])[:3]
            total = rs[-1][wall] / rs[-1]["batch"]
            if top and total > 0:
                lines += ["", f"Largest {phase} shares at batch {batches[-1]}: " + ", ".join(
                    f"{p['layer']} {100 * p['seconds'] / total:.0f} %" for p in top) + "."]
            parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _fmt(p: dict | None, key: str, scale: float, spec: str) -> str:
    return "-" if p is None else format(p[key] * scale, spec)
