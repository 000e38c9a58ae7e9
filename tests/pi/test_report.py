"""`pi report`: every section is present with or without inputs (missing inputs say what to run,
never crash), the numbers come from the inputs, and the HTML renders in headless Chromium to a
page that is not blank. The Chromium test is skipped, with the reason, when the binary is
absent (.ci/run installs Debian's `chromium`)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pi import report
from pi.cli import main as pi_main
from pi.report.document import human_ratio
from pi.report.inputs import gather
from pi.report.provenance import portable_commands
from pi.report.summary import section_summary
from relu_budget import cli as rb_cli

SECTION_IDS = [s[0] for s in report.SECTIONS]
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p),
                None)


pytestmark = pytest.mark.usefixtures("one_thread")


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.h2, self.imgs, self._in_h2 = set(), [], [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        if tag == "img":
            self.imgs.append(a.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


def parse(html_text: str) -> _Ids:
    p = _Ids()
    p.feed(html_text)
    return p


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny real sweep (two SNL runs, one with the fairness penalty), its audit, and a
    results directory holding the committed benchmark files (native, gemm, model, relu)."""
    d = tmp_path_factory.mktemp("report_inputs")
    common = ["--arch", "resnet-small", "--dataset", "synthetic", "--epochs", "1", "--finetune-epochs", "1",
              "--no-progress", "--model-set", "widths=4,8", "--model-set", "blocks=1,1", "--model-set",
              "strides=1,2", "--batch-size", "64"]
    assert rb_cli.main(["optimize", "--method", "snl", "--budget", "0.6", "--out", str(d / "runs" / "a"),
                        "--pretrain-epochs", "2", *common]) == 0
    assert rb_cli.main(["optimize", "--method", "snl", "--budget", "0.4", "--out", str(d / "runs" / "b"),
                        "--teacher", str(d / "runs" / "a" / "teacher.pt"), "--fairness-penalty", *common]) == 0
    assert rb_cli.main(["audit", str(d / "runs"), "--out", str(d / "audit")]) == 0
    res = d / "results"
    res.mkdir()
    for name in ("native.json", "gemm.json", "bench_model.json", "bench_relu.json"):
        if (RESULTS / name).is_file():
            shutil.copy(RESULTS / name, res / name)
    return d


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory):
    """The report of the tiny inputs, with the report's own (small) measurements."""
    opts = report.ReportOptions(runs=[str(inputs / "runs")], audits=[str(inputs / "audit")],
                                results_dir=str(inputs / "results"), circa_images=32, circa_elements=20_000,
                                command="pi report --out test")
    doc, sections = report.build_report(opts, log=lambda *_: None)
    paths = report.write_report(doc, sections, tmp_path_factory.mktemp("report") / "report.html")
    return doc, sections, paths


def test_missing_inputs_give_sections_that_say_what_to_run(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert pi_main(["report", "--out", str(tmp_path / "r"), "--results-dir", str(empty), "--no-measure"]) == 0
    html_text = (tmp_path / "r" / "report.html").read_text()
    p = parse(html_text)
    assert set(SECTION_IDS) <= p.ids
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert list(doc["sections"]) == SECTION_IDS
    st = {k: v["status"] for k, v in doc["sections"].items()}
    assert st["pareto"] == st["fairness"] == st["layers"] == st["network"] == "missing"
    assert st["circa"] == "partial"                      # the analytic law is always there
    assert any("relu-budget audit" in t for t in doc["sections"]["fairness"]["todo"])
    assert any("relu-budget optimize" in t for t in doc["sections"]["pareto"]["todo"])
    assert any("pi bench model" in t for t in doc["sections"]["network"]["todo"])
    assert "To fill this section, run:" in html_text
    # The summary comes first and lists what is missing with the command that fills it.
    summary = doc["sections"]["summary"]
    assert p.h2[0].startswith("Summary") and summary["status"] == "missing"
    missing = {m["section"]: m["run"] for m in summary["data"]["missing"]}
    assert {"Accuracy vs cost (Pareto)", "Per-group accuracy vs budget (fairness audit)"} <= set(missing)
    assert "relu-budget optimize" in missing["Accuracy vs cost (Pareto)"]
    assert summary["data"]["best_per_budget"] == [] and summary["data"]["headline"]["sentences"] == []
    md = (tmp_path / "r" / "report.md").read_text()
    assert all(f'<a id="{i}"></a>' in md for i in SECTION_IDS)
    # The law in the JSON: 2^k / (σ·√(8π)).
    law = {r["k"]: r["sigma_2^24"] for r in doc["sections"]["circa"]["data"]["law"]}
    assert law[16] == pytest.approx(2 ** 16 / (2 ** 24 * np.sqrt(8 * np.pi)))


def test_report_numbers_come_from_the_inputs(inputs, built):
    doc, sections, (html_path, md_path, json_path) = built
    secs = doc["sections"]
    assert [s.id for s in sections] == SECTION_IDS
    runs = {Path(r["run"]).name: r for r in secs["pareto"]["data"]["runs"]}
    for name in ("a", "b"):
        m = json.loads((inputs / "runs" / name / "metrics.json").read_text())
        assert runs[name]["relus"] == m["relus"] and runs[name]["test_accuracy"] == m["test"]["accuracy"]
        assert runs[name]["measured_online_s"] > 0           # the report ran it (model.pt present)
    assert runs["b"]["method"] == "snl +fairness (μ=0.1)"
    audit = json.loads((inputs / "audit" / "audit.json").read_text())
    summary = secs["fairness"]["data"]["audits"][0]["summary"]
    assert sorted(r["worst_drop_pts"] for r in summary) == pytest.approx(
        sorted(100 * r["drop"]["worst"] for r in audit["runs"]))
    faults = secs["circa"]["data"]["native_faults"]
    assert [r["k"] for r in faults] == list(report.CIRCA_KS)
    for r in faults:       # measured rate vs the law averaged over the Gaussian exactly (4 sd)
        p = r["gaussian"]
        assert abs(r["rate"] - p) <= 4 * np.sqrt(p * (1 - p) / r["n"]) + 1e-4, r
        if 2 ** r["k"] <= 2 ** r["sigma_log2"] / 16:        # where the approximate law holds (2^k ≪ σ)
            assert r["law"] == pytest.approx(p, rel=0.05)
    layers = secs["layers"]["data"]
    assert layers["run"]["online_bytes"] > 0 and layers["rows"]
    relu_rows = [r for r in layers["rows"] if r["kind"] == "relu"]
    assert sum(r["relu_sites"] for r in relu_rows) == 14592     # the embedded resnet-small
    assert all(r["online_bytes"] > 0 for r in relu_rows)
    net = secs["network"]["data"]["rows"][0]
    assert net["wan_online_s"] > net["lan_online_s"] > net["online_s"]
    # The report's own run is uncalibrated (twice the bench's preprocessing): its rows say so.
    assert "uncalibrated Z_2^64 ring" in net["what"] and "about half the preprocessing" in md_path.read_text()
    cmds = [c["command"] for c in secs["reproduce"]["data"]["commands"]]
    assert "pi report --out test" in cmds and any(c.startswith("relu-budget audit") for c in cmds)
    assert any("--fairness-penalty" in c for c in cmds)
    assert json.loads(json_path.read_text())["format"] == report.REPORT_FORMAT
    # Summary: the best run at each budget (one run per budget here), the headline ratios from
    # the benchmark files, where the inputs came from.
    summary = secs["summary"]["data"]
    best = {r["budget"]: r for r in summary["best_per_budget"]}
    for name in ("a", "b"):
        m = json.loads((inputs / "runs" / name / "metrics.json").read_text())
        assert best[m["budget_sites"]]["test_accuracy"] == m["test"]["accuracy"]
        assert best[m["budget_sites"]]["run"].endswith(name)
    model_doc = json.loads((inputs / "results" / "bench_model.json").read_text())
    head = next(c for c in model_doc["comparisons"] if (c["workload"], c["batch"], c["policy"]) == ("default", 1, "exact"))
    sentence = summary["headline"]["sentences"][0]
    assert human_ratio(head["online_bytes_ratio"]) in sentence and human_ratio(head["rounds_ratio"]) in sentence
    # Counted, and each place named once with why it was taken.
    assert secs["summary"]["notes"][0].startswith("Inputs: 2 runs from the paths given with --runs; 1 audit from the "
                                                  "paths given with --audits; "), secs["summary"]["notes"][0]
    assert "(the newest of each kind) from " in secs["summary"]["notes"][0]
    # Readable units: no byte count in scientific notation, accuracies as percentages.
    md = md_path.read_text()
    assert not re.search(r"\d\.\d+e\+\d\d", md)
    assert re.search(r"\| \d+\.\d\d % \|", md) and re.search(r"\d+(\.\d+)? (KB|MB) \|", md)
    # Per-layer rows carry people's names: no builder-internal op name is shown.
    names = [r["name"] for r in secs["layers"]["data"]["rows"]]
    assert any(n.startswith(("fixed-point", "residual add")) for n in names)
    assert not any(re.fullmatch(r"(upscale|to_masked|trunc|add|pool)_?\d*", n) for n in names), names
    for s in sections:
        for name, _c, _png in s.figures:
            assert f"report-{name}.png" in md and (html_path.parent / f"report-{name}.png").is_file()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install -y chromium); "
                                             ".ci/run installs it")
def test_report_renders_in_headless_chromium(built, tmp_path):
    _doc, sections, (html_path, _md, _json) = built
    html_text = html_path.read_text()
    p = parse(html_text)
    assert set(SECTION_IDS) <= p.ids
    assert p.h2 == [s.title + s.status for s in sections]     # heading text + its status badge
    assert p.imgs and all(src.startswith("data:image/png;base64,") for src in p.imgs)   # self-contained
    assert not re.search(r'(src|href)="(https?:)?//', html_text)
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,4000"]
    url = html_path.resolve().as_uri()
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=180)
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], check=True, capture_output=True, timeout=180,
                         text=True).stdout
    rendered = parse(dom)
    assert set(SECTION_IDS) <= rendered.ids                 # the browser parsed every section
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    gray = img[..., :3].mean(axis=2)
    assert gray.std() > 0.05, "the screenshot is (nearly) blank"
    # Plots drew: the region of the first figure is far from uniform.
    assert (np.abs(np.diff(gray, axis=1)) > 0.2).mean() > 0.001


def test_inputs_come_from_the_working_directory_else_the_committed_results(inputs, tmp_path, monkeypatch):
    # A working directory holding a run (any depth up to a few levels) is the user's.
    work = tmp_path / "work"
    shutil.copytree(inputs / "runs" / "a", work / "experiments" / "a")
    monkeypatch.chdir(work)
    found = gather(None, None)
    assert [Path(r["_dir"]).name for r in found.runs] == ["a"]
    assert found.origins["runs"].startswith("the working directory") and "runs" not in found.fallback
    # Nothing there: the package's committed results stand in, and the report says so.
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    found = gather(None, None)
    assert found.fallback == ["runs", "audits", "benchmarks"] and found.runs
    # It says where they are and why the working directory's search did not find them (it may be
    # the repository itself, whose benchmarks/ is not searched).
    assert all(where.startswith("the package's committed results in ") and "outside the package's own benchmarks/"
               in where for where in found.origins.values()), found.origins
    summary = section_summary([], found.origins, found.fallback, {},
                              {"runs": 3, "audits": 1, "benchmarks": 2})
    assert summary.notes[0].startswith("Inputs: 3 runs and 1 audit and 2 benchmark files (the newest of each kind) "
                                       "from the package's committed results in "), summary.notes[0]
    assert summary.notes[0].count("committed results") == 1 and "No runs or audits or benchmark files" in \
        summary.notes[1]
    assert gather(None, None, committed=True).origins["runs"].endswith("(--committed)")


def test_reproduce_commands_point_where_the_runs_are_now(tmp_path):
    run = tmp_path / "kept" / "snl-5"
    run.mkdir(parents=True)
    gone = "/tmp/gone-for-good-xyz"
    runs = [{"_dir": str(run), "command": f"relu-budget optimize --budget 5% --out {gone}/runs/snl-5 "
                                           f"--teacher {gone}/runs/teacher.pt"}]
    cmds, work = portable_commands([runs[0]["command"], f"relu-budget audit {gone}/runs/snl-5 --out audit"], runs)
    assert f"--out {run!s}" in cmds[0] or "--out kept/snl-5" in cmds[0]
    assert "/tmp/gone" not in " ".join(cmds) and work
    assert "--teacher WORK/runs/teacher.pt" in cmds[0] and cmds[1].startswith("relu-budget audit " + cmds[0].split("--out ")[1].split()[0])


def test_reproduce_labels_hide_gone_temporary_paths():
    """An audit's runs are labelled by the paths they had when audited: a temporary directory
    that is gone was shown as such ("audited run /tmp/fairexp/runs/snl-3000")."""
    from pi.report.provenance import section_reproduce
    gone = "/tmp/gone-for-good-xyz"
    audits = [{"_path": "audit/audit.json", "command": f"relu-budget audit {gone}/runs/snl-3 --out audit",
               "runs": [{"label": f"{gone}/runs/snl-3",
                         "optimize_command": f"relu-budget optimize --budget 3 --out {gone}/runs/snl-3"}]}]
    rows = section_reproduce("pi report --out r", [], audits, {}).data["commands"]
    assert rows[-1]["what"] == "audited run WORK/runs/snl-3", rows
    assert not any(gone in r["what"] or gone in r["command"] for r in rows), rows


def test_best_per_budget_picks_the_most_accurate_run_of_each_budget():
    from pi.report.summary import best_per_budget
    rows = [{"network": "n", "budget_sites": 100, "total_sites": 1000, "method": m, "run": m, "test_accuracy": a,
             "predicted_online_s": 0.01, "predicted_bytes": 1e6} for m, a in (("snl", 0.8), ("autorep", 0.9))]
    rows.append({**rows[0], "budget_sites": 10, "method": "deepreduce", "run": "dr", "test_accuracy": 0.5})
    best = best_per_budget(rows)
    assert [(r["budget"], r["best"], r["runner_up"]) for r in best] == [(100, "autorep", "snl (80.00 %)"),
                                                                         (10, "deepreduce", "-")]
    assert best[0]["budget_share"] == 0.1 and best[0]["cost_source"] == "predicted"


def test_fairness_section_shows_the_drop_curve_across_seeds(tmp_path):
    """An audit whose series have several seeds per budget: the fairness section adds the
    worst-group drop vs budget table (mean and 95 % half-width over seeds) and its figure."""
    from pi.report.tradeoffs import section_fairness
    from relu_budget.fairness import audit, mean_interval
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)

    def probs(noise):   # class probabilities that are right except on a `noise` share
        p = np.full((len(y), 3), 0.1)
        wrong = rng.random(len(y)) < noise
        p[np.arange(len(y)), np.where(wrong, (y + 1) % 3, y)] = 0.8
        return p
    refs = {f"t{s}": {"probs": probs(0.05), "relus": 100} for s in range(3)}
    entries = [{"probs": probs(0.05 + 0.1 * b / 50), "reference": f"t{s}", "label": f"s{s}-b{b}", "series": "snl",
                "relus": b, "budget_sites": b, "seed": s} for s in range(3) for b in (10, 50)]
    doc = audit(entries, refs, np.zeros((len(y), 1)), y)
    doc["_path"] = str(tmp_path / "audit.json")
    sec = section_fairness([doc])
    curve = sec.data["curves"][0]["rows"]
    assert [(r["budget"], r["seeds"]) for r in curve] == [(50, 3), (10, 3)]
    want = mean_interval([r["drop"]["worst"] for r in doc["runs"] if r["budget_sites"] == 10])
    assert curve[1]["worst_drop_pts"] == pytest.approx(100 * want["mean"])
    assert curve[1]["worst_drop_ci"] == pytest.approx(100 * want["half"])
    assert any("across seeds" in t.title for t in sec.tables) and len(sec.figures) == 2
    # One seed per point: no curve table (the per-run table already says it all).
    single = audit(entries[:2], {"t0": refs["t0"]}, np.zeros((len(y), 1)), y)
    single["_path"] = doc["_path"]
    assert "curves" not in section_fairness([single]).data and len(section_fairness([single]).figures) == 1


def test_the_committed_report_reads_the_committed_results_and_cites_only_the_repository():
    """The committed report (benchmarks/results/report) was built from files in the repository:
    every input it lists exists, and every document it cites is one of ours. A report left from
    before a file moved, or citing a file outside the repository, fails here: regenerate it with
    the command it records (`command` in report.json)."""
    root = RESULTS.parent.parent
    doc = json.loads((RESULTS / "report" / "report.json").read_text())
    text = (RESULTS / "report" / "report.md").read_text()
    inputs = doc["sections"]["overview"]["data"]["inputs"]
    named = [p for kind in ("runs", "audits", "benchmarks") for p in inputs[kind]["paths"]]
    assert len(named) > 3 and all(p.startswith(("benchmarks/results/", "demos/assets/")) for p in named), named
    docs = set(re.findall(r"[\w./-]*\w\.md\b", text))       # the documents its notes cite
    assert docs
    assert not [p for p in sorted(set(named) | docs) if not (root / p).exists()]


def pareto_run(name: str, method: str, relus: int, acc: float, online_s: float, total_bytes: float) -> dict:
    """A run's metrics as the report reads them (no weights)."""
    return {"_dir": f"/runs/{name}", "method": method, "relus": relus, "arch": "net", "dataset": "data",
            "test": {"accuracy": acc}, "val": {"accuracy": acc},
            "cost": {"online_seconds": online_s, "online_bytes": total_bytes / 4, "offline_bytes": 3 * total_bytes / 4}}


def test_pareto_combined_front_covers_every_run_unless_all_were_measured():
    """The report's combined front over all methods is drawn over every run of the network: in
    predicted costs when only some runs were measured (a front over the measured runs alone left
    the others out), in measured costs when every run was; the section says which."""
    from pi.report.tradeoffs import section_pareto
    runs = [pareto_run("a", "snl", 100, 0.90, 0.010, 1e6), pareto_run("b", "snl", 200, 0.92, 0.020, 2e6),
            pareto_run("c", "autorep", 50, 0.91, 0.005, 3e6)]
    meas = {"/runs/a": {"online_s": 0.05, "online_bytes": 2e5, "offline_bytes": 8e5}}
    s = section_pareto(runs, {}, meas)
    fronts = {f["axis"]: f for f in s.data["fronts"]}
    names = {axis: [Path(p["run"]).name for p in f["front"]] for axis, f in fronts.items()}
    assert fronts["latency"]["source"] == fronts["bytes"]["source"] == "predicted"
    assert fronts["latency"]["runs_covered"] == 3 and names["latency"] == ["c", "b"]      # a: beaten by c
    assert names["bytes"] == ["a", "b"] and names["relus"] == ["c", "b"]
    note = next(n for n in s.notes if n.startswith("net / data"))
    assert "predicted (cost model)" in note and "only 1 of them" in note and "latency over 3" in note
    table = next(t for t in s.tables if t.title.startswith("Combined front"))
    assert [Path(r["run"]).name for r in table.rows] == ["c", "b", "a", "b"]
    # Every run measured: the fronts are in measured costs.
    meas.update({"/runs/b": {"online_s": 0.03, "online_bytes": 1e5, "offline_bytes": 1e5},
                 "/runs/c": {"online_s": 0.04, "online_bytes": 1e5, "offline_bytes": 2e6}})
    s = section_pareto(runs, {}, meas)
    fronts = {f["axis"]: f for f in s.data["fronts"]}
    assert fronts["latency"]["source"] == "measured"
    assert [Path(p["run"]).name for p in fronts["latency"]["front"]] == ["b"]
    assert any("every run was measured here" in n for n in s.notes)
