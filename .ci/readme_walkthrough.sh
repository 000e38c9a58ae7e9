#!/usr/bin/env bash
# A newcomer's run of README.md on a fresh clone: every command in it, as written, in the order
# it gives them, with the hour-long ones scaled down (each scaled step says how). It stops at the
# first step that fails and prints the step, its command and the last lines of its output; at the
# end it prints the seconds each step took (also in $DIR/walkthrough.tsv).
#
#   .ci/readme_walkthrough.sh [REPO] [DIR]     # REPO: what to clone (default: this checkout)
#
# Not part of `make test`: the setup alone takes minutes. WALK_SKIP_TEST=1 leaves out `make test`
# (the whole suite, the longest step); WALK_SOAK_SECONDS (default 120) and WALK_OPT_SUBSET
# (default 2000 training images for the scaled optimize) shorten those steps further.
# WALK_FROM=STEP [DIR must then be an earlier run's directory] resumes at that step (no clone).
set -uo pipefail

REPO=${1:-$(cd "$(dirname "$0")/.." && pwd)}
DIR=${2:-$(mktemp -d /tmp/fresh-XXXXXX)}
SOAK_SECONDS=${WALK_SOAK_SECONDS:-120}
OPT_SUBSET=${WALK_OPT_SUBSET:-2000}
PIDS=()

cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

FROM=${WALK_FROM:-}
if [ -z "$FROM" ]; then
  git clone -q "$REPO" "$DIR" || { echo "cannot clone $REPO into $DIR"; exit 1; }
fi
cd "$DIR" || exit 1
LOG=$DIR/walkthrough.log
TSV=$DIR/walkthrough.tsv
[ -n "$FROM" ] || : > "$TSV"

# step NAME COMMAND...: runs COMMAND (a bash string), records its wall time, stops on failure.
step() {
  local name=$1; shift
  if [ -n "$FROM" ]; then
    [ "$name" = "$FROM" ] || { echo "(skipped $name)"; return 0; }
    FROM=
  fi
  local t0=$SECONDS
  echo "== $name: $*" | tee -a "$LOG"
  if ! bash -c "$*" >> "$LOG" 2>&1; then
    echo "FAILED: $name ($((SECONDS - t0)) s): $*" | tee -a "$LOG"
    tail -n 25 "$LOG"
    exit 1
  fi
  printf '%s\t%d\n' "$name" "$((SECONDS - t0))" | tee -a "$TSV"
}

# --- top of the README ----------------------------------------------------------------------
step make-demo "make demo"
[ -n "${WALK_SKIP_TEST:-}" ] || step make-test "make test"

# --- Quickstart (the README's commands, verbatim) --------------------------------------------
export PATH=$DIR/.venv/bin:$PATH VIRTUAL_ENV=$DIR/.venv
step quick-setup "make setup"
step quick-optimize "relu-budget optimize --method snl --arch resnet-small --teacher demos/assets/default_model.pt \
    --budget 20% --train-subset 4000 --epochs 1 --finetune-epochs 2 --out runs/quick"
step quick-eval "relu-budget eval runs/quick"
step quick-demo "pi demo --policy runs/quick --samples 8"

# --- Private inference in Python: the README's code block, extracted and run as it stands -----
python - "$DIR/README.md" > "$DIR/example_api.py" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
block = text.split("## Private inference in Python", 1)[1]
print(re.search(r"```python\n(.*?)```", block, re.S).group(1))
EOF
step python-api "python example_api.py"

# --- Three processes, three terminals ------------------------------------------------------
step keys "pi keys --name server > keys-server.txt && pi keys --name dealer > keys-dealer.txt \
    && pi keys --name client > keys-client.txt"
fp() { awk '/^fingerprint/ {print $2}' "keys-$1.txt"; }
step compile "pi compile default --calibration samples --out model.npz"
[ -n "$FROM" ] || pi dealer --cert certs/dealer.crt --key certs/dealer.key \
          --server-cert certs/server.crt --client-cert certs/client.crt > dealer.log 2>&1 &
PIDS+=($!)
[ -n "$FROM" ] || pi serve --model model.npz --cert certs/server.crt --key certs/server.key \
         --dealer-fingerprint "$(fp dealer)" > server.log 2>&1 &
PIDS+=($!)
step sample-images "python -c \"from pi.assets import save_sample_images; save_sample_images('images')\""
# The server validates its bundle before it listens: wait for the port (at most 60 s).
step wait-server "for i in \$(seq 120); do python -c 'import socket; socket.create_connection((\"127.0.0.1\", 7410), 1)' 2>/dev/null && exit 0; sleep 0.5; done; exit 1"
step infer "pi infer images/0-ankle-boot.png --cert certs/client.crt --key certs/client.key \
         --server-fingerprint $(fp server) --dealer-fingerprint $(fp dealer) | tee infer.txt \
    && grep -q 'Ankle boot (label 9)' infer.txt"
cleanup; PIDS=()
step soak "pi soak --clients 8 --seconds $SOAK_SECONDS"

# --- Optimizing the ReLU budget -------------------------------------------------------------
# The README's command with its schedule cut to one epoch each on $OPT_SUBSET images (the full
# one takes about an hour); every other flag as written.
step optimize-scaled "relu-budget optimize --method snl --arch resnet18 --model-set stem_stride=2 --dataset fashion-mnist \
    --budget 5% --teacher benchmarks/resnet18_fmnist.pt --out runs/snl-5 \
    --epochs 1 --finetune-epochs 1 --train-subset $OPT_SUBSET"
step eval "relu-budget eval runs/snl-5"
step compile-run "pi compile runs/snl-5/model.pt --policy runs/snl-5/policy --out snl-5.npz"
step pareto "relu-budget pareto runs/ --plot pareto.png"
step audit "relu-budget audit runs/snl-5 --out audit/"
# One repeat and 100 test images (the defaults take 1000 images through both systems).
step bench-model "pi bench model --policy resnet18=runs/snl-5 --workloads resnet18 --policies exact \
    --repeats 1 --eval-images 100 --crypten-eval-images 20"
step report "pi report --out report/report.html"
step methods "relu-budget methods"

# --- The embedded default model (one epoch instead of 30, into a scratch directory) ----------
step train-default "python demos/train_default.py --epochs 1 --out /tmp/$(basename "$DIR")-assets"

# --- Data: the README's code block with one epoch on 2 000 images instead of five on all -----
python - "$DIR/README.md" > "$DIR/example_data.py" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
block = text.split("## Data", 1)[1]
code = re.search(r"```python\n(.*?)```", block, re.S).group(1)
code = code.replace('splits = data.load("fashion-mnist")\n', 'splits = data.load("fashion-mnist")\n'
                    'import dataclasses; splits = dataclasses.replace(splits, train=tuple(t[:2000] for t in splits.train))\n')
print(code.replace("epochs=5", "epochs=1"))
EOF
step python-data "python example_data.py"

# --- Benchmarks (the quick ones, into a scratch file instead of the committed results) -------
step bench-gemm "pi bench gemm --json /tmp/$(basename "$DIR")-gemm.json"
step bench-native "pi bench native --json /tmp/$(basename "$DIR")-native.json"

echo "all steps passed; seconds per step in $TSV"
