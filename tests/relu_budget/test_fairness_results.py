"""The committed second-round fairness results are what the summary script makes of the committed
audits: every table row of `summary.md` (the target check included) comes out of
`benchmarks/fairness_summary.py` on `audit.json`, over five seeds of `resnet-small` and three of
the ResNet-18-style network, and the README's target tables are the summaries'; the driver's
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


@pytest.mark.parametrize("net, seeds", [("resnet-small", "0, 1, 2, 3, 4 (n = 5)"),
                                        ("resnet18-stem_stride2", "0, 1, 2 (n = 3)")])
def test_committed_summary_is_the_scripts_output_on_the_committed_audit(summary_module, net, seeds):
    doc = json.loads((RESULTS / net / "audit.json").read_text())
    committed = (RESULTS / net / "summary.md").read_text()
    made = summary_module.summarize(doc, ("a note",))
    assert f"Seeds: {seeds}." in made and "\na note\n" in made
    assert table_rows(made) == table_rows(committed)
    target = [r for r in table_rows(made) if r.endswith(("met |", "**met** |"))]
    assert len(target) == 6
    readme = (RESULTS / "README.md").read_text()
    assert all(r in readme for r in target), [r for r in target if r not in readme]


def test_summary_usage_and_note_errors(summary_module, capsys):
    assert summary_module.main([]) == 2
    assert "AUDIT.json" in capsys.readouterr().err
    assert summary_module.main(["--note"]) == 2
    assert "--note needs a text" in capsys.readouterr().err


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
