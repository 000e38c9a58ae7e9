#!/usr/bin/env bash
# A newcomer's run of README.md (and docs/byom.md) on a fresh clone: every command in them, as
# written, in the order they give them, with the hour-long ones scaled down (each scaled step
# says how). It stops at the first step that fails and prints the step, its command and the
# last lines of its output; at the end it prints each step's seconds and the 1-minute load at
# its start (also in walkthrough/walkthrough.tsv next to its log).
#
#   git clone REPO x && cd x && bash .ci/readme_walkthrough.sh   # in a fresh clone: runs there
#   .ci/readme_walkthrough.sh REPO DIR                           # clones REPO into DIR first
#
# Without arguments it runs in the checkout it belongs to if that is fresh (none of the files
# the README's commands write exist yet: certs/, runs/, model.npz, ...); otherwise it clones
# that checkout into a temporary directory. Not part of `make test`: the setup alone takes
# minutes, the whole run about an hour on 2 cores. WALK_SKIP_TEST=1 leaves out `make test`
# (the whole suite, the longest step); WALK_SOAK_SECONDS (default 120) and WALK_OPT_SUBSET
# (default 2000 training images for the scaled optimize) shorten those steps further.
# WALK_FROM=STEP [DIR must then be an earlier run's directory] resumes at that step (no clone).
set -uo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
SOAK_SECONDS=${WALK_SOAK_SECONDS:-120}
OPT_SUBSET=${WALK_OPT_SUBSET:-2000}
FROM=${WALK_FROM:-}
PIDS=()

cleanup() { [ ${#PIDS[@]} -eq 0 ] || { kill "${PIDS[@]}" 2>/dev/null; wait "${PIDS[@]}" 2>/dev/null; }; PIDS=(); }
trap cleanup EXIT

used() {   # what the README's commands leave in a checkout
  local f
  for f in certs runs images model.npz model2.npz report audit byom walkthrough; do
    [ -e "$1/$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

if [ $# -eq 0 ] && [ -z "$FROM" ] && ! left=$(used "$HERE"); then
  DIR=$HERE
  echo "running in this checkout ($DIR): it is fresh"
else
  REPO=${1:-$HERE}
  DIR=${2:-$(mktemp -d /tmp/fresh-XXXXXX)}
  if [ -z "$FROM" ]; then
    [ $# -gt 0 ] || echo "this checkout has been used (${left:-?} exists): cloning it into $DIR"
    git clone -q "$REPO" "$DIR" || { echo "cannot clone $REPO into $DIR"; exit 1; }
  fi
fi
cd "$DIR" || exit 1
W=$DIR/walkthrough                 # the log, the seconds per step, the helpers below
mkdir -p "$W"
LOG=$W/walkthrough.log
TSV=$W/walkthrough.tsv
[ -n "$FROM" ] || { : > "$TSV"; : > "$LOG"; }

# step NAME COMMAND...: runs COMMAND (a bash string), records its wall time and the load at its
# start, stops on failure.
step() {
  local name=$1; shift
  if [ -n "$FROM" ]; then
    [ "$name" = "$FROM" ] || { echo "(skipped $name)"; return 0; }
    FROM=
  fi
  local t0=$SECONDS load
  load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
  echo "== $name: $*" | tee -a "$LOG"
  if ! bash -c "$*" >> "$LOG" 2>&1; then
    echo "FAILED: $name ($((SECONDS - t0)) s): $*" | tee -a "$LOG"
    tail -n 25 "$LOG"
    exit 1
  fi
  printf '%s\t%d\t%s\n' "$name" "$((SECONDS - t0))" "$load" | tee -a "$TSV"
}

# background DIR NAME COMMAND...: a terminal of the README (dealer, server) run in DIR in the
# background, its output in DIR/NAME.log; a `listening` step waits for its port.
background() {
  local dir=$1 name=$2; shift 2
  [ -z "$FROM" ] || return 0
  (cd "$dir" && exec "$@") > "$dir/$name.log" 2>&1 &
  PIDS+=($!)
}

# listening PORT NAME...: waits until something listens on each PORT, up to pi demo's wait for
# its own children (60 s times the 1-minute load per core).
cat > "$W/listening.py" <<'EOF'
import socket, sys, time
from pi.demo import start_timeout
for port, name in zip(sys.argv[1::2], sys.argv[2::2]):
    deadline = time.monotonic() + start_timeout()
    while True:
        try:
            socket.create_connection(("127.0.0.1", int(port)), 1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"the {name} does not listen on port {port} after {start_timeout():.0f} s: see {name}.log")
            time.sleep(0.5)
EOF
listening() { echo "python $W/listening.py $*"; }

# python_block FILE HEADING [N]: the N-th (default first) ```python block after HEADING in FILE.
python_block() {
  python - "$@" <<'EOF'
import re, sys
path, heading = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 0
text = open(path).read().split(heading, 1)[1]
print(re.findall(r"```python\n(.*?)```", text, re.S)[n])
EOF
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

# --- Private inference in Python: the README's code block, run as it stands -------------------
python_block README.md "## Private inference in Python" > "$W/example_api.py"
step python-api "python $W/example_api.py"

# --- Three processes, three terminals (default ports: dealer 7411, server 7410) -------------
step keys "pi keys --name server > keys-server.txt && pi keys --name dealer > keys-dealer.txt \
    && pi keys --name client > keys-client.txt"
fp() { awk '/^fingerprint/ {print $2}' "keys-$1.txt"; }
step compile "pi compile default --calibration samples --out model.npz"
background . dealer pi dealer --cert certs/dealer.crt --key certs/dealer.key \
          --server-cert certs/server.crt --client-cert certs/client.crt
background . server pi serve --model model.npz --cert certs/server.crt --key certs/server.key \
         --dealer-fingerprint "$(fp dealer)"
step sample-images "python -c \"from pi.assets import save_sample_images; save_sample_images('images')\""
step wait-server "$(listening 7411 dealer 7410 server)"
step infer "pi infer images/0-ankle-boot.png --cert certs/client.crt --key certs/client.key \
         --server-fingerprint $(fp server) --dealer-fingerprint $(fp dealer) | tee infer.txt \
    && grep -q 'Ankle boot (label 9)' infer.txt"
cleanup
step demo-policy "pi demo --policy demos/assets/snl-10 --samples 8"
step soak "pi soak --clients 8 --seconds $SOAK_SECONDS"

# --- Two processes: the two-party provider ---------------------------------------------------
step compile-two-party "pi compile default --calibration samples --provider two-party --out model2.npz"
background . server2 pi serve --model model2.npz --cert certs/server.crt --key certs/server.key
step wait-server2 "$(listening 7410 server2)"
step infer-two-party "pi infer images/0-ankle-boot.png images/1-pullover.png --preprocess 2 \
    --server-fingerprint $(fp server) | tee infer2.txt && grep -q 'Ankle boot (label 9)' infer2.txt \
    && grep -q '^preprocessed 2 bundles' infer2.txt"
cleanup
step demo-two-party "pi demo --provider two-party"

# --- docs/byom.md: its code with a small network of one's own in place of MyNet -------------
mkdir -p byom
cat > "$W/byom_prelude.py" <<'EOF'
# What docs/byom.md assumes the reader has: a network (MyNet), its weights, a calibration batch.
import torch
from torch import nn


class MyNet(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 28 * 28, 3))


torch.manual_seed(0)
torch.save(MyNet().state_dict(), "weights.pt")
torch.save(torch.randn(200, 1, 28, 28), "calibration_batch.pt")
EOF
{ cat "$W/byom_prelude.py"; python_block docs/byom.md "## 3. Calibrate, compile, save"; } > byom/compile.py
step byom-compile "cd byom && python compile.py"
step byom-keys "cd byom && pi keys --name server > keys-server.txt && pi keys --name dealer > keys-dealer.txt \
    && pi keys --name client > keys-client.txt \
    && python -c \"import matplotlib.image as m, numpy as np; m.imsave('photo.png', np.random.default_rng(0).random((28, 28)), cmap='gray')\""
bfp() { awk '/^fingerprint/ {print $2}' "byom/keys-$1.txt"; }
background byom dealer pi dealer --cert certs/dealer.crt --key certs/dealer.key \
    --server-cert certs/server.crt --client-cert certs/client.crt
background byom server pi serve --model model.npz --cert certs/server.crt --key certs/server.key \
    --dealer-fingerprint "$(bfp dealer)"
step byom-wait "$(listening 7411 byom/dealer 7410 byom/server)"
step byom-infer "cd byom && pi infer photo.png --cert certs/client.crt --key certs/client.key \
    --server-fingerprint $(bfp server) --dealer-fingerprint $(bfp dealer) | grep -E '^photo.png: (cat|dog|bird)'"
cleanup

# --- Optimizing the ReLU budget -------------------------------------------------------------
# The README's command with its schedule cut to one epoch each on $OPT_SUBSET images (the full
# one takes about 20 minutes of a quiet core); every other flag as written.
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
python_block README.md "## Data" | python -c '
import sys
code = sys.stdin.read()
code = code.replace("splits = data.load(\"fashion-mnist\")\n", "splits = data.load(\"fashion-mnist\")\n"
                    "import dataclasses; splits = dataclasses.replace(splits, train=tuple(t[:2000] for t in splits.train))\n")
print(code.replace("epochs=5", "epochs=1"))' > "$W/example_data.py"
step python-data "python $W/example_data.py"

# --- Benchmarks (scaled down, into scratch files instead of the committed results) -----------
SCRATCH=/tmp/$(basename "$DIR")
step bench-gemm "pi bench gemm --json $SCRATCH-gemm.json"
step bench-native "pi bench native --json $SCRATCH-native.json"
step bench-relu "pi bench relu --sizes 10000 --repeats 1 --json $SCRATCH-relu.json"     # 10^4 only
step bench-gc "pi bench gc --relus 1024 --ots 65536 --repeats 1 --configs relu:42:bits=35:shift=12 \
    --json $SCRATCH-gc.json"                                                            # one circuit
step bench-he "pi bench he --workloads default --repeats 1 --json $SCRATCH-he.json"    # the embedded model

echo "all steps passed; seconds per step (and the 1-minute load at its start) in $TSV"
