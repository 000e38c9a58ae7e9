"""`pi report`: the command line.
"""
from __future__ import annotations

import shlex
import sys

from pi.report.build import ReportOptions, build_report
from pi.report.document import rel
from pi.report.inputs import DEFAULT_RESULTS
from pi.report.render import write_report

# Local imports: torch and pi_native are imported by `run` only: `pi --help` imports this module.

NAME = "report"
HELP = "an HTML/Markdown/JSON report of optimizer runs, fairness audits and benchmarks"
DESCRIPTION = "One self-contained HTML page (plus Markdown and JSON) from the project's results."


def add_parser(sub) -> None:
    p = sub.add_parser("report", help=HELP, description=DESCRIPTION)
    p.add_argument("--out", required=True, help="report .html path (.md, .json and PNGs go next to it), or a directory")
    p.add_argument("--runs", nargs="+", default=None,
                   help="relu-budget run directories (or parents of them); default: the runs found in the working "
                   "directory, else the package's committed ones (the report says which)")
    p.add_argument("--audits", nargs="+", default=None,
                   help="audit.json files or audit directories; default: as for --runs")
    p.add_argument("--results-dir", default=None,
                   help="take runs, audits and `pi bench` result files not given above from this directory only")
    p.add_argument("--committed", action="store_true",
                   help=f"report the package's committed results ({rel(DEFAULT_RESULTS)}) instead of yours")
    p.add_argument("--no-measure", action="store_true",
                   help="take no measurements (default model run, run models, Circa faults and accuracy)")
    p.add_argument("--circa-images", type=int, default=1000,
                   help="test images for the simulated Circa accuracy (0: skip)")
    p.add_argument("--circa-elements", type=int, default=200_000, help="elements per k for the native fault rate")
    p.add_argument("--threads", type=int, default=1, help="torch and pi_native threads for the measurements")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.committed and args.results_dir:
        raise ValueError("--committed and --results-dir both say where to look; give one")
    import torch
    torch.set_num_threads(args.threads)
    try:
        import pi_native
        pi_native.set_num_threads(args.threads)
    except (ImportError, AttributeError):
        pass
    cmd = "pi " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("report"):]) if "report" in sys.argv \
        else "pi report --out " + shlex.quote(str(args.out))
    opts = ReportOptions(runs=args.runs, audits=args.audits, results_dir=args.results_dir, committed=args.committed,
                         measure=not args.no_measure, circa_images=args.circa_images,
                         circa_elements=args.circa_elements, command=cmd)
    doc, sections = build_report(opts)          # a ReportError is a ValueError: pi's one-line error
    paths = write_report(doc, sections, args.out)
    for s in sections:
        print(f"  {s.id:<10} {s.status}" + (f"  (to fill: {s.todo[0]})" if s.todo else ""))
    print("wrote " + ", ".join(rel(p) for p in paths))
    return 0
