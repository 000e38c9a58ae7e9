#!/usr/bin/env bash
# Fairness of SNL linearization on group-imbalanced Fashion-MNIST, with and without the
# group loss-gap penalty (docs/fairness.md). Run from the repository root:
#
#     bash benchmarks/results/fairness/run_experiment.sh [WORKDIR]     # default WORKDIR /tmp/fairexp
#
# Set-up (Das, Romanelli, Fioretto 2024): training classes 5-9 kept at 10% of their samples
# (--dataset fashion-mnist-imbalanced), validation and test balanced; groups = classes.
# resnet-small (14 592 ReLU sites), one torch thread. One all-ReLU teacher (10 epochs) shared by
# every run; SNL at 3000 / 1000 / 300 kept sites (search <= 6 epochs, fine-tuning 4 epochs).
# The penalty acts only in fine-tuning, so each +fairness run starts from the plain run's
# finished search (its state/ checkpoints are copied, --resume skips the search): both runs
# of a budget have the same ReLU mask and differ only in fine-tuning (penalty, dual ascent,
# epoch selection by worst-group validation accuracy). Dual step mu = 0.1 (the default);
# at 3000 sites also mu = 1.0, to show what too large a step does.
set -euo pipefail
W=${1:-/tmp/fairexp}
R="$(pwd)/.venv/bin/relu-budget"
export OMP_NUM_THREADS=1
mkdir -p "$W/runs"
COMMON=(--arch resnet-small --dataset fashion-mnist-imbalanced --epochs 6 --finetune-epochs 4 --finetune-lr 0.01
        --set lam=1e-4 --set alpha_lr=0.02 --set lam_warmup_epochs=1 --threads 1 --no-progress)
TEACHER="$W/runs/snl-3000/teacher.pt"

fair_run() {   # fair_run BUDGET NAME DUAL_LR: fine-tuning with the penalty from snl-BUDGET's search
  local B=$1 NAME=$2 MU=$3
  [ -f "$W/runs/$NAME/metrics.json" ] && return
  mkdir -p "$W/runs/$NAME/state"
  cp "$W/runs/snl-$B/state/snl_search.done.pt" "$W/runs/snl-$B/state/snl_binarized.done.pt" "$W/runs/$NAME/state/"
  "$R" optimize --method snl --budget "$B" --out "$W/runs/$NAME" --teacher "$TEACHER" --resume \
      --fairness-penalty --dual-lr "$MU" "${COMMON[@]}"
}

for B in 3000 1000 300; do
  if [ ! -f "$W/runs/snl-$B/metrics.json" ]; then
    if [ $B = 3000 ]; then   # the first run also trains the shared all-ReLU teacher
      "$R" optimize --method snl --budget $B --out "$W/runs/snl-$B" --pretrain-epochs 10 --resume "${COMMON[@]}"
    else
      "$R" optimize --method snl --budget $B --out "$W/runs/snl-$B" --teacher "$TEACHER" --resume "${COMMON[@]}"
    fi
  fi
  fair_run $B "snl-$B-fair" 0.1
done
fair_run 3000 snl-3000-fair-mu1 1.0

# Audits: groups = classes, and majority (0-4) / minority (5-9) from a group file.
"$R" audit "$W"/runs/snl-* --out benchmarks/results/fairness/classes --threads 1
.venv/bin/python -c "
from relu_budget import data; import numpy as np
np.save('$W/minority_groups.npy', (data.load('fashion-mnist').test[1].numpy() >= 5).astype(np.int64))"
"$R" audit "$W"/runs/snl-* --groups "$W/minority_groups.npy" --group-names "majority (0-4),minority (5-9)" \
    --out benchmarks/results/fairness/minority --threads 1
# The runs' metrics (no weights) for `pi report`.
for d in "$W"/runs/snl-*; do
  mkdir -p "benchmarks/results/fairness/runs/$(basename "$d")"
  cp "$d/metrics.json" "benchmarks/results/fairness/runs/$(basename "$d")/"
done
