"""Assembles a report: reads the inputs, takes the measurements, builds every section.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

from pi.report.costs import section_layers, section_network
from pi.report.document import REPORT_FORMAT, REPORT_VERSION, Section, rel
from pi.report.inputs import INPUT_SHAPES, gather, load_run_model
from pi.report.measure import measure_circa_faults, measure_secure, simulate_circa_accuracy
from pi.report.provenance import section_machine, section_overview, section_reproduce
from pi.report.summary import section_summary
from pi.report.tradeoffs import section_circa, section_fairness, section_pareto

# Local imports: torch and the assets are imported where used: `pi --help` imports pi.report.


@dataclass
class ReportOptions:
    runs: list[str] | None = None
    audits: list[str] | None = None
    results_dir: str | None = None
    committed: bool = False              # the package's committed results instead of the user's
    measure: bool = True
    circa_images: int = 1000
    circa_elements: int = 200_000
    command: str | None = None


def build_report(opts: ReportOptions, log=print) -> tuple[dict, list[Section]]:
    t0 = time.time()
    found = gather(opts.runs, opts.audits, opts.results_dir, opts.committed)
    runs, audits, bench = found.runs, found.audits, found.bench
    cmd = opts.command or "pi report"
    measured, measured_runs, faults, sim, failures = None, {}, None, None, []
    if opts.measure:
        import torch
        try:
            from pi.assets import load_default_model, load_samples
            model, _meta = load_default_model()
            samples = load_samples()
            log("measuring the default model in process ...")
            measured = measure_secure(model, samples.inputs[:1])
        except FileNotFoundError as exc:
            log(f"default model not measured: {exc}")
            samples = None
        for r in runs:
            try:
                loaded = load_run_model(r)
            except (ValueError, FileNotFoundError) as exc:
                log(f"{r['_dir']}: not measured ({exc})")
                continue
            if loaded is None:
                continue
            m, pol = loaded
            shape = INPUT_SHAPES.get(str(r.get("dataset", "")).replace("-imbalanced", ""))
            if shape is None:
                log(f"{r['_dir']}: not measured (unknown input shape of dataset {r.get('dataset')!r})")
                continue
            example = samples.inputs[:1] if samples is not None and tuple(samples.inputs.shape[1:]) == shape else \
                torch.zeros(1, *shape)
            log(f"measuring {r['_dir']} in process ...")
            try:
                meas = measure_secure(m, example, policy=str(pol))
            except (ValueError, RuntimeError) as exc:   # e.g. a plan the engine refuses
                log(f"{r['_dir']}: not measured ({exc})")
                failures.append(f"{rel(r['_dir'])}: {exc}")
                continue
            meas.pop("summary")
            meas.pop("layer_rows")
            meas.pop("per_layer")
            measured_runs[r["_dir"]] = meas
        log("measuring Circa faults on the native gates ...")
        faults = measure_circa_faults(n=opts.circa_elements)
        if opts.circa_images > 0 and measured is not None:
            try:
                from relu_budget.data import load_fashion_mnist_raw, normalize_fashion
                raw = load_fashion_mnist_raw()
                images = normalize_fashion(raw["test_images"][:opts.circa_images])
                labels = raw["test_labels"][:opts.circa_images].astype("int64")
                log(f"simulating Circa accuracy on {len(labels)} test images ...")
                sim = simulate_circa_accuracy(model, images, labels)
            except FileNotFoundError as exc:
                log(f"Circa accuracy not simulated: {exc}")
    sections = [section_pareto(runs, bench, measured_runs, failures), section_fairness(audits),
                section_circa(bench, faults, sim, runs), section_layers(measured, bench),
                section_network(measured, measured_runs, bench), section_machine(bench, runs, audits),
                section_reproduce(cmd, runs, audits, bench)]
    inputs = {"runs": {"paths": [rel(r["_dir"]) for r in runs], "origin": found.origins["runs"]},
              "audits": {"paths": [rel(a["_path"]) for a in audits], "origin": found.origins["audits"]},
              "benchmarks": {"paths": [rel(v["_path"]) for _, v in sorted(bench.items())],
                             "origin": found.origins["benchmarks"]},
              "measured here": {"paths": ([f"default model ({measured['repeats']} runs)"] if measured else [])
                                + [f"{len(measured_runs)} run(s) with weights"] * bool(measured_runs)
                                + (["native Circa faults"] if faults else [])
                                + (["simulated Circa accuracy"] if sim else []), "origin": "this report"}}
    sections.insert(0, section_overview(inputs, sections, cmd, time.time() - t0))
    sections.insert(0, section_summary(sections, found.origins, found.fallback, bench,
                                       {"runs": len(runs), "audits": len(audits), "benchmarks": len(bench)}))
    doc = {"format": REPORT_FORMAT, "version": REPORT_VERSION,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "command": cmd,
           "sections": {s.id: s.to_dict() for s in sections}}
    return doc, sections
