"""`pi bench gc`: the row schema, the correctness checks it runs, and clean argument errors."""
import json

import pytest

from pi.cli import main


def test_gc_bench_rows(tmp_path):
    out = tmp_path / "gc.json"
    assert main(["bench", "gc", "--relus", "64", "--repeats", "1", "--ots", "1024",
                 "--configs", "relu:16,drelu:16,circa:16:8,trunc:20:bits=12:shift=3,argmax:20:bits=12:classes=4",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = {r["circuit"]: r for r in doc["rows"]}
    keys = {"circuit", "l", "k", "and_gates", "table_bytes", "label_bytes_online", "ot_per_relu",
            "stored_bytes_per_relu", "garble_per_s", "eval_per_s"}
    for name in ("relu", "drelu", "circa"):
        assert keys <= set(rows[name])
    assert rows["relu"]["and_gates"] == 3 * 16 - 3 and rows["circa"]["and_gates"] == 7
    assert rows["relu"]["stored_bytes_per_relu"] == 32 * 44 + 16 + 2 + 16 / 8     # tables, 1 bit per label OT
    assert rows["relu"]["stored_bytes_with_labels"] == 32 * 44 + 16 + 2 + 16 * 16
    assert rows["circa"]["stored_bytes_per_relu"] == 32 * 7 + 1 + 9 / 8 + 16.125 and rows["circa"]["share_bytes"] == 8
    assert rows["trunc"]["and_gates"] == 11 + 8 + 11 and rows["trunc"]["bits"] == 12 and rows["trunc"]["shift"] == 3
    assert rows["argmax"]["classes"] == 4 and rows["argmax"]["relus"] == 64 // 4
    assert rows["circa"]["ot_per_relu"] == 8 + 2 and rows["circa"]["label_bytes_online"] == 8 * 16
    assert rows["ot-extension"]["ot_per_s"] > 0 and rows["and-gate"]["garble_per_s"] > 0
    assert "load" in doc and out.with_suffix(".md").exists()
    assert "Command:" in out.with_suffix(".md").read_text() and "load average" in out.with_suffix(".md").read_text().lower()


@pytest.mark.parametrize("argv", [["--configs", "relu:99"], ["--configs", "foo"], ["--relus", "0"],
                                  ["--configs", "relu:40:bits=50"], ["--configs", "relu:40:width=3"],
                                  ["--configs", "argmax:40"]])
def test_gc_bench_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "gc", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pi: error: argument") and "pi bench gc --help" in err[0]
