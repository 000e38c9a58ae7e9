"""`pi report`: one self-contained HTML page (plus Markdown and JSON) from the project's results.

    pi report --out benchmarks/results/report/report.html

Inputs (each optional; a missing one gives a section that says what to run):

- optimizer run directories (`relu-budget optimize` output: metrics.json, policy/, model.pt),
  by default every `metrics.json` of a relu-budget run under benchmarks/results/;
- fairness audits (`relu-budget audit --out DIR`: audit.json), by default every audit under
  benchmarks/results/;
- benchmark result files in benchmarks/results/ (`pi bench native|gemm|relu|model`: JSON files
  with a `rows` list), recognized by their `benchmark` field;
- measurements the report takes itself, in seconds, unless --no-measure: the embedded default
  model compiled and run once in process (`pi.compile(...).run`, per-layer cost meter), the
  runs that still have their weights likewise, Circa's fault rate on the native gates, and the
  plaintext-simulated accuracy of the default model with every ReLU a Circa site.

Sections (HTML ids): overview, pareto, fairness, circa, layers, network, machine, reproduce.
Plots are matplotlib (Agg) PNGs, embedded as base64 in the HTML and written next to the
Markdown. The JSON holds every number shown. Nothing in a section is invented: measured,
predicted (cost model) and simulated numbers are labelled as such.
"""
from __future__ import annotations

# The modules, by job: inputs (what is read), measure (what the report measures itself),
# document (sections as data, value formats), tradeoffs / costs / provenance (the section
# builders), plots, build (assembly), render (HTML, Markdown, JSON), cli (`pi report`).
from pi.report.build import ReportOptions, build_report
from pi.report.cli import HELP, NAME, add_parser, run
from pi.report.document import REPORT_FORMAT, REPORT_VERSION, SECTIONS, ReportError, Section, Table
from pi.report.measure import CIRCA_KS
from pi.report.render import write_report

__all__ = ["CIRCA_KS", "HELP", "NAME", "REPORT_FORMAT", "REPORT_VERSION", "SECTIONS", "ReportError", "ReportOptions",
           "Section", "Table", "add_parser", "build_report", "run", "write_report"]
