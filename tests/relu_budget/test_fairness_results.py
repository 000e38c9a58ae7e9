"""The committed second-round fairness results are what the summary script makes of the committed
audits: every table row of `summary.md` (the target checks included) comes out of
`benchmarks/fairness_summary.py` on `audit.json`, over five seeds of each network and the first
three of each network, and five seeds of the embedded one with five fine-tuning epochs
(`resnet-small-ft5`) and of plain SNL and the constraint on the ResNet-18-style one at one budget
(`resnet18-stem_stride2-ft5`), and the README's target tables are the summaries'; the driver's
`--keep-from` (a partial re-run merged with an earlier audit) rebuilds an audit exactly."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "fairness2"


@pytest.fixture(scope="module")
def summary_module():
    spec = importlib.util.spec_from_file_location("fairness_summary", ROOT / "benchmarks" / "fairness_summary.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


@pytest.mark.parametrize("net, name, only, seeds, budgets", [
    ("resnet-small", "summary.md", None, "0, 1, 2, 3, 4 (n = 5)", 3),
    ("resnet18-stem_stride2", "summary.md", None, "0, 1, 2, 3, 4 (n = 5)", 3),
    ("resnet18-stem_stride2", "summary_seeds012.md", (0, 1, 2), "0, 1, 2 (n = 3)", 3),
    ("resnet-small", "summary_seeds012.md", (0, 1, 2), "0, 1, 2 (n = 3)", 3),
    ("resnet-small-ft5", "summary.md", None, "0, 1, 2, 3, 4 (n = 5)", 3),
    ("resnet-small-ft5", "summary_seeds012.md", (0, 1, 2), "0, 1, 2 (n = 3)", 3),
    ("resnet18-stem_stride2-ft5", "summary.md", None, "0, 1, 2, 3, 4 (n = 5)", 1)])
def test_committed_summary_is_the_scripts_output_on_the_committed_audit(summary_module, net, name, only, seeds,
                                                                        budgets):
    doc = json.loads((RESULTS / net / "audit.json").read_text())
    committed = (RESULTS / net / name).read_text()
    made = summary_module.summarize(doc, ("a note",), only)
    assert f"Seeds: {seeds}." in made and "\na note\n" in made
    assert table_rows(made) == table_rows(committed)
    target = [r for r in table_rows(made) if r.endswith(("met |", "**met** |"))]
    assert len(target) == 4 * budgets      # budgets × 2 groupings, unpaired and paired
    readme = (RESULTS / "README.md").read_text()
    assert all(r in readme for r in target), [r for r in target if r not in readme]


def test_summary_usage_and_note_errors(summary_module, capsys):
    assert summary_module.main([]) == 2
    assert "AUDIT.json" in capsys.readouterr().err
    assert summary_module.main(["--note"]) == 2
    assert "--note needs a text" in capsys.readouterr().err
    assert summary_module.main(["--seeds", "a.json"]) == 2
    assert "--seeds needs one or more seeds" in capsys.readouterr().err


def test_keep_from_rebuilds_the_audit_from_a_partial_rerun_and_refuses_another_teacher():
    spec = importlib.util.spec_from_file_location("fairness_experiment", ROOT / "benchmarks" / "fairness_experiment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    full = json.loads((RESULTS / "resnet-small" / "audit.json").read_text())
    ref4 = next(r for r in full["references"] if r["seed"] == 4)
    part = {**full, "references": [json.loads(json.dumps(ref4))],
            "runs": [r for r in full["runs"] if r["label"].startswith("seed4/drop-")], "curves": {}}
    mod.keep_earlier_runs(part, full, "earlier.json")
    assert [r["label"] for r in part["runs"]] == sorted(r["label"] for r in full["runs"])
    assert len(part["references"]) == 5 and part["curves"] == full["curves"]
    other = {**full, "references": [json.loads(json.dumps(ref4))], "runs": [], "curves": {}}
    other["references"][0]["metrics"]["accuracy"]["by_group"]["6"] += 0.001
    with pytest.raises(SystemExit, match="differs"):
        mod.keep_earlier_runs(other, full, "earlier.json")


def synthetic_audit(drops: dict[str, list[float]], accuracy: dict[str, list[float]]) -> dict:
    """An audit of one budget, seeds 0.. with the given worst-class drops (accuracy units) and
    overall accuracies per method ("snl", "+drop-constraint"): class 9 carries the whole drop, so
    the worst class's and the minority's drops are known."""
    classes = [str(c) for c in range(10)]
    refs, runs = [], []
    for seed in range(len(drops["snl"])):
        racc = {c: 0.8 for c in classes}
        refs.append({"id": f"t{seed}", "seed": seed, "metrics": {"accuracy": {
            "by_group": racc, "overall": 0.8, "group_min": 0.8}}})
        for series, d in drops.items():
            acc = {**racc, "9": 0.8 - d[seed]}
            runs.append({"reference": f"t{seed}", "seed": seed, "series": series, "budget_sites": 300,
                         "optimize_command": "x --arch toy",
                         "metrics": {"accuracy": {"by_group": acc, "overall": accuracy[series][seed],
                                                  "difference": d[seed]}},
                         "drop": {"worst": d[seed], "worst_group": "9", "overall": 0.8 - accuracy[series][seed],
                                  "margin_by_group": {c: 0.0 for c in classes}}})
    return {"references": refs, "runs": runs, "groups": {"names": {c: c for c in classes}}}


def target_row(text: str, heading: str, groups: str) -> str:
    part = text.split(heading, 1)[1]
    return next(r for r in table_rows(part) if r.startswith(f"| 300 | {groups} |"))


def test_paired_check_separates_where_the_unpaired_intervals_overlap(summary_module):
    # Seeds differ a lot (plain 10-30 points), the constraint is 6-7 points lower in every seed:
    # the methods' own intervals overlap, the paired differences are all positive.
    doc = synthetic_audit({"snl": [0.10, 0.20, 0.30], "+drop-constraint": [0.04, 0.13, 0.24]},
                          {"snl": [0.78, 0.76, 0.77], "+drop-constraint": [0.781, 0.762, 0.772]})
    text = summary_module.summarize(doc)
    unpaired = target_row(text, "Target: drop constraint", "worst class")
    paired = target_row(text, "Paired by seed", "worst class")
    assert "| no | not met |" in unpaired, unpaired
    assert paired.endswith("| yes | **met** |"), paired
    # differences 6, 7, 6 points, t(2) = 4.303
    diffs = [6.0, 7.0, 6.0]
    m = sum(diffs) / 3
    sd = (sum((d - m) ** 2 for d in diffs) / 2) ** 0.5
    assert f"| 3 | {m:.2f} [{m - 4.303 * sd / 3 ** 0.5:.2f}, {m + 4.303 * sd / 3 ** 0.5:.2f}] |" in paired
    assert "| -0.17 [" in paired       # the constraint's accuracy is 0.1-0.2 points higher: cost -0.17
    # The paired check is by seed: shuffling the constraint's seeds breaks the pairing (no longer met).
    for r in doc["runs"]:
        if r["series"] == "+drop-constraint":
            r["seed"] = {0: 2, 1: 0, 2: 1}[r["seed"]]
    shuffled = target_row(summary_module.summarize(doc), "Paired by seed", "worst class")
    assert shuffled.endswith("| no | not met |"), shuffled


def test_summary_of_some_seeds(summary_module):
    doc = synthetic_audit({"snl": [0.10, 0.20, 0.30], "+drop-constraint": [0.06, 0.125, 0.175]},
                          {"snl": [0.78, 0.76, 0.77], "+drop-constraint": [0.781, 0.762, 0.772]})
    text = summary_module.summarize(doc, seeds=(0, 2))
    assert "Seeds: 0, 2 (n = 2)." in text
    assert "| 300 | plain SNL | 2 | 20.00 ± " in text


def test_noise_floor_by_hand():
    spec = importlib.util.spec_from_file_location("fairness_noise_floor", ROOT / "benchmarks" / "fairness_noise_floor.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import numpy as np
    y = np.array([0] * 4 + [1] * 5)
    teacher = np.array([1, 1, 1, 0, 1, 1, 1, 1, 1], bool)
    run = np.array([1, 0, 0, 1, 1, 1, 1, 1, 1], bool)
    # class 0: teacher right / run wrong 2 of 4, the reverse 1 of 4; class 1: no disagreement
    assert mod.class_drop_sd(teacher, run, y) == pytest.approx([((0.5 + 0.25 - 0.25 ** 2) / 4) ** 0.5, 0.0])
    f = mod.floors(np.ones(10), np.random.default_rng(0))
    assert f["worst"][0] == pytest.approx(1.5388, abs=0.01)       # E max of 10 standard normals
    assert f["two"][0] == pytest.approx(1 / (5 * np.pi) ** 0.5, abs=0.01)   # E max of two N(0, 1/5): σ/√π
    assert mod.floors(np.zeros(10), np.random.default_rng(0))["worst"] == (0.0, 0.0)
