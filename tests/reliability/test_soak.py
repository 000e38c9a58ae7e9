"""`pi soak` end to end, briefly: its processes start, its clients get correct answers, and it
reports every figure it promises."""
from __future__ import annotations

import json

from pi.cli import main


def test_pi_soak_reports_throughput_latency_errors_wrong_answers_and_memory(tmp_path, capsys):
    out = tmp_path / "soak.json"
    assert main(["soak", "--clients", "2", "--seconds", "4", "--workdir", str(tmp_path / "w"),
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for word in ("inferences", "latency", "p95", "errors       0", "wrong        0", "server RSS", "dealer RSS"):
        assert word in text, text
    doc = json.loads(out.read_text())
    row = doc["rows"][0]
    assert row["inferences"] >= 1 and row["errors"] == 0 and row["wrong"] == 0
    assert {"latency_p50_s", "latency_p95_s", "latency_max_s", "server_rss_growth_pct",
            "dealer_rss_growth_pct", "max_abs_err"} <= set(row)
    assert doc["command"] and doc["machine"] and doc["load_before"]
