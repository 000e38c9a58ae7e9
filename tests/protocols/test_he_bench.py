"""`pi bench he` end to end on the embedded model (one repeat, a few trials)."""
from __future__ import annotations

import json

from pi.bench import he as bench_he
from pi.cli import main


def test_bench_he_rows(tmp_path, capsys):
    out = tmp_path / "he.json"
    assert main(["bench", "he", "--workloads", "default", "--repeats", "1", "--trials", "2",
                 "--trial-widths", "20", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    layers = [r for r in rows if r["layer"] != "total"]
    total = next(r for r in rows if r["layer"] == "total")
    assert len(layers) == 10 and all(set(bench_he.ROW_FIELDS) <= set(r) for r in rows)
    assert all(r["correct"] and r["noise_bits_left"] >= r["margin_bits"] >= 1 for r in layers)
    assert total["upload_bytes"] == total["public_key_bytes"] + sum(r["upload_bytes"] for r in layers)
    assert total["download_bytes"] == sum(r["download_bytes"] for r in layers)
    assert doc["complete"] and doc["reconstruction"] and all(t["errors"] == 0 for t in doc["reconstruction"])
    assert out.with_suffix(".md").read_text().startswith("# HE linear-layer")


def test_bench_he_bad_ring_bits(capsys):
    for bad in ("60", "x", "1"):
        assert main(["bench", "he", "--ring-bits", bad]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("pi: error: --ring-bits must be"), line
